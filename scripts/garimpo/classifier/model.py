"""ResNet chip classifier: architecture, first-layer band adaptation, checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

from garimpo.atomic import atomic_path
from garimpo.errors import ModelLoadError

ARCHS: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
}

# What a checkpoint must describe so inference can reproduce training's preprocessing.
REQUIRED_META = (
    "arch",
    "bands",
    "input_size",
    "in_channels",
    "dropout",
    "low",
    "high",
    "mean",
    "std",
    "threshold",
)


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` (weights stay fp32), or nothing for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations and flips of a batch [N, C, H, W] (test-time augmentation).

    A mine seen from above has no up or down, so averaging over them removes orientation noise.
    """
    rots = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return rots + [torch.flip(v, dims=(-1,)) for v in rots]


def view_probs(model: nn.Module, x: torch.Tensor, tta: bool = False, channels_last: bool = False) -> torch.Tensor:
    """P(mining) of a preprocessed batch, view by view: the one place inference applies test-time augmentation.

    ``x``: [N, C, H, W] network input (``garimpo.classifier.data.preprocess``) on the model's device. Returns
    float32 [V, N] in [0, 1], V = 8 (``dihedral_views``, the chip itself first) with ``tta``, else 1; callers
    average over axis 0. The caller sets eval mode, ``torch.inference_mode`` and any ``autocast``.
    ``channels_last`` hands each view to the network in that memory format (faster with oneDNN on CPU).
    """
    out = []
    for view in dihedral_views(x) if tta else [x]:
        if channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        out.append(torch.sigmoid(model(view).float()).flatten())
    return torch.stack(out)


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Copy of a 3-channel (RGB) conv that takes ``in_channels`` bands.

    The first three input kernels stay the RGB ones (callers put R, G, B first);
    extra bands get the mean RGB kernel.  With 1-2 bands every band gets the mean
    kernel.  All kernels are scaled by 3/in_channels so that a constant image
    gives the same response as before: pretrained activation statistics hold.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if in_channels == conv.in_channels:
        return conv
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError("adapt_first_conv expects an ungrouped 3-channel conv")
    w = conv.weight.detach()
    # Ignored below: torch's stub types _ConvNd's kernel_size/stride/padding/dilation as tuple[int, ...];
    # a Conv2d's are 2-tuples (padding may be a str), which Conv2d's parameters (int | tuple[int, int]) take.
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    mean_kernel = w.mean(dim=1, keepdim=True)
    if in_channels > 3:
        new_w = torch.cat([w, mean_kernel.expand(-1, in_channels - 3, -1, -1)], dim=1)
    else:
        new_w = mean_kernel.expand(-1, in_channels, -1, -1)
    with torch.no_grad():
        new.weight.copy_(new_w * (3.0 / in_channels))
        if conv.bias is not None:
            assert new.bias is not None  # made with bias=True above
            new.bias.copy_(conv.bias.detach())
    return new


def build_classifier(
    arch: str = "resnet34",
    in_channels: int = 3,
    dropout: float = 0.5,
    imagenet_state_dict: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """torchvision ResNet with fc = Dropout + Linear(512, 1): one logit per chip.

    ``in_channels`` bands go through a first convolution adapted by ``adapt_first_conv``.

    Raises:
        ValueError: ``arch`` is not one of ``ARCHS``.
        ModelLoadError: ``imagenet_state_dict`` does not fit ``arch``.
    """
    if arch not in ARCHS:
        raise ValueError(f"classifier arch {arch!r} unsupported; use one of {sorted(ARCHS)}")
    net = ARCHS[arch](weights=None)  # never download here; weights come from a file
    if imagenet_state_dict is not None:
        try:
            net.load_state_dict(imagenet_state_dict)
        except RuntimeError as err:
            raise ModelLoadError(f"the ImageNet weights given do not fit {arch} (wrong arch?): {err}") from err
    net.conv1 = adapt_first_conv(net.conv1, in_channels)
    net.fc = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(net.fc.in_features, 1))
    return net


def weights_id(state_dict: dict[str, torch.Tensor], length: int = 12) -> str:
    """Short sha256 of the weights: tells apart models in reports and file names."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:length]


def _json_safe(obj: Any) -> Any:
    """Plain Python types only, so the checkpoint loads with ``weights_only=True``."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (np.ndarray, torch.Tensor)):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"meta value of type {type(o).__name__} is not serialisable")

    return json.loads(json.dumps(obj, default=default))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write next to the target then rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> dict:
    """Save ``{"state_dict", "meta"}`` atomically; fills model_id, created, torch_version.

    Returns the meta as written.
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    full = dict(meta)
    full["model_id"] = weights_id(state)
    full.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    full.setdefault("torch_version", torch.__version__)
    full.setdefault("train_config", {})
    full = _json_safe(full)
    atomic_torch_save({"state_dict": state, "meta": full}, path)
    return full


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model described by a checkpoint; returns ``(model.eval(), meta)``.

    Raises:
        ModelLoadError: the file is missing, unreadable, not a garimpo checkpoint, its meta lacks
            ``REQUIRED_META`` keys, or its weights do not fit its own meta; the message says how to retrain.
    """
    path = Path(path)
    hint = "train it with the train_classifier rule (or point classifier.model at an existing .pth)"
    if not path.is_file():
        raise ModelLoadError(f"classifier checkpoint {path} not found; {hint}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle, zip, EOF errors all mean the same to the user
        raise ModelLoadError(f"classifier checkpoint {path} is corrupt or unreadable ({err}); {hint}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise ModelLoadError(
            f"{path} is not a garimpo classifier checkpoint (expected keys 'state_dict' and 'meta'); {hint}"
        )
    meta = ckpt["meta"]
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ModelLoadError(f"checkpoint {path} meta lacks {missing}; {hint}")
    try:
        model = build_classifier(meta["arch"], int(meta["in_channels"]), float(meta["dropout"]))
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError) as err:
        raise ModelLoadError(f"checkpoint {path} does not match its own meta ({err}); {hint}") from err
    return model.to(device).eval(), meta
