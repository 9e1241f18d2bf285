"""ImageNet weights for the ResNet backbone: fetched once (needs internet), loaded offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

from garimpo.atomic import scratch_dir
from garimpo.classifier.model import ARCHS, atomic_torch_save
from garimpo.errors import ModelLoadError

IMAGENET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
}


def fetch_resnet_imagenet(arch: str, out_path: str | os.PathLike) -> Path:
    """Download torchvision's IMAGENET1K_V1 weights for ``arch`` and save the state_dict."""
    if arch not in IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights known for {arch!r}; use one of {sorted(IMAGENET_WEIGHTS)}")
    url = IMAGENET_WEIGHTS[arch].url
    # Beside the output, not in /tmp: what a killed download leaves is swept by the next attempt (garimpo.atomic).
    with scratch_dir(out_path) as tmp:
        # check_hash: torchvision file names carry a sha256 prefix; a truncated download fails here.
        state = torch.hub.load_state_dict_from_url(
            url, model_dir=str(tmp), map_location="cpu", progress=False, check_hash=True
        )
    ARCHS[arch](weights=None).load_state_dict(state)  # fail now, not at training time
    atomic_torch_save(state, out_path)
    return Path(out_path)


def load_imagenet_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict saved by :func:`fetch_resnet_imagenet` (or a compatible file).

    Raises:
        ModelLoadError: the file is missing, unreadable, or holds no ResNet weights (no ``conv1.weight``).
    """
    path = Path(path)
    hint = "run the fetch_imagenet_weights rule on a machine with internet, or set classifier.weights: none"
    if not path.is_file():
        raise ModelLoadError(f"ImageNet weights {path} not found; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(f"ImageNet weights {path} are corrupt or unreadable ({err}); {hint}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ModelLoadError(f"{path} does not hold ResNet weights (no conv1.weight); {hint}")
    return state
