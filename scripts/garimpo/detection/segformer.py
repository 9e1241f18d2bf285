"""SegFormer proposer: a semantic-segmentation model's "suspicious" classes as candidates.

The seed model is fine-tuned on LoveDA (0.3 m aerial imagery; classes background,
building, road, water, barren, forest, agriculture). At 10 m the domain gap is
large, so this proposer is measured (``proposers.proposer_recall``), never assumed.

Inference runs on sliding windows so activation memory is bounded by the window,
not the region; logits are averaged where windows overlap to hide seams.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from garimpo.classifier.data import IMAGENET_MEAN, IMAGENET_STD
from garimpo.errors import InputDataError, ModelLoadError

if TYPE_CHECKING:  # transformers is heavy: imported where a model is loaded
    from transformers import SegformerForSemanticSegmentation

log = logging.getLogger(__name__)

# ImageNet normalisation (the classifier's constants): SegFormer encoders are pretrained on ImageNet.
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]

# The 4 encoder stages downsample by 32 in total; tinier inputs are edge-padded up to this.
MIN_SIDE = 32

_HELP = (
    "run the `fetch_segformer` rule on a machine with internet access, "
    "or point `proposer.segformer.local_dir` at a local directory holding config.json and the weights"
)


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(ref: str) -> bool:
    # Hub ids are "owner/name"; anything absolute, relative-dotted, home-based or existing is a path.
    return os.path.exists(ref) or ref.startswith(("/", "./", "../", "~")) or os.path.isabs(ref)


def suspicious_ids(id2label: Mapping[Any, str], suspicious_classes: list[str]) -> list[int]:
    """Model class ids whose label matches one of suspicious_classes (case-insensitive)."""
    if not suspicious_classes:
        raise ValueError("suspicious_classes is empty: the proposer would never propose anything")
    by_name: dict[str, list[int]] = {}
    for key, label in id2label.items():
        by_name.setdefault(str(label).strip().lower(), []).append(int(key))
    unknown = [c for c in suspicious_classes if c.strip().lower() not in by_name]
    if unknown:
        labels = [id2label[k] for k in sorted(id2label, key=int)]
        raise ValueError(f"unknown suspicious classes {unknown}; the model's labels are {labels}")
    return sorted({i for c in suspicious_classes for i in by_name[c.strip().lower()]})


def rgb_from_bands(bands: Mapping[str, np.ndarray], low: float = 0.0, high: float = 0.3) -> np.ndarray:
    """(3, H, W) float32 true-colour (B04, B03, B02) stretched linearly from [low, high] to [0, 1]; NaN kept."""
    if high <= low:
        raise ValueError(f"high ({high}) must exceed low ({low})")
    rgb = np.stack([np.asarray(bands[b], dtype=np.float32) for b in ("B04", "B03", "B02")])
    # np.clip keeps NaN, so nodata survives to predict_mask, which masks it out.
    return np.clip((rgb - low) / (high - low), 0.0, 1.0).astype(np.float32)


def normalise_rgb(rgb: np.ndarray) -> np.ndarray:
    """float32 (3, H, W) network input of true colour ``rgb`` (3, H, W) in [0, 1]: ImageNet mean/std
    (``garimpo.classifier.data.IMAGENET_MEAN``/``IMAGENET_STD``) per channel; NaN and inf -> 0, the mean colour."""
    norm = (np.asarray(rgb, dtype=np.float32) - _MEAN) / _STD
    # Normalised 0 = ImageNet mean colour: the most neutral fill for nodata.
    return np.nan_to_num(norm, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with windows of `window` and at least `overlap` overlap.

    The last window is shifted back to end flush with the edge instead of running past it.
    """
    if window <= 0 or not 0 <= overlap < window:
        raise ValueError(f"need window > 0 and 0 <= overlap < window; got window={window}, overlap={overlap}")
    if length <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def _windows(h: int, w: int, win_h: int, win_w: int, overlap: int) -> Iterator[tuple[int, int]]:
    for y in window_starts(h, win_h, min(overlap, win_h - 1)):
        for x in window_starts(w, win_w, min(overlap, win_w - 1)):
            yield y, x


def sliding_window_logits(
    image: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    num_labels: int,
    window: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
) -> torch.Tensor:
    """Average per-pixel logits (num_labels, H, W) of `forward` over overlapping windows of image (C, H, W).

    `forward` maps a (B, C, h, w) batch to (B, num_labels, h, w) logits at window resolution.
    Windows larger than the image shrink to it, so no content padding is needed.
    """
    _, h, w = image.shape
    win_h, win_w = min(window, h), min(window, w)
    acc = torch.zeros((num_labels, h, w), dtype=torch.float32)
    weight = torch.zeros((h, w), dtype=torch.float32)
    positions = list(_windows(h, w, win_h, win_w, overlap))
    for i in range(0, len(positions), batch_size):
        chunk = positions[i : i + batch_size]
        batch = torch.stack([image[:, y : y + win_h, x : x + win_w] for y, x in chunk])
        logits = forward(batch).float().cpu()
        for (y, x), lg in zip(chunk, logits):
            acc[:, y : y + win_h, x : x + win_w] += lg
            weight[y : y + win_h, x : x + win_w] += 1.0
    return acc / weight


class SegformerProposer:
    """Wraps a ``SegformerForSemanticSegmentation`` for tiled binary "suspicious" prediction."""

    def __init__(self, model: SegformerForSemanticSegmentation, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        id2label = model.config.id2label
        assert id2label is not None  # PretrainedConfig always fills it (typed Optional for its argument)
        self.id2label: dict[int, str] = {int(k): v for k, v in id2label.items()}

    @classmethod
    def from_pretrained(
        cls,
        model_ref: str,
        device: str | torch.device | None = None,
        local_files_only: bool | None = None,
        suspicious_classes: list[str] | None = None,
    ) -> SegformerProposer:
        """Load from a hub id or a local directory.

        With ``suspicious_classes`` the names are checked against the model's own ``id2label`` right
        after loading, before any scan (:func:`check_labels`).
        Raises ModelLoadError (with what to do) when the model cannot be loaded, InputDataError when
        it lacks one of ``suspicious_classes``.
        """
        from transformers import SegformerForSemanticSegmentation

        ref = str(model_ref)
        if _looks_like_path(ref):
            path = Path(ref).expanduser()
            if not (path / "config.json").is_file():
                raise ModelLoadError(f"SegFormer model directory {path} not found or lacks config.json: {_HELP}")
            ref, local_files_only = str(path), True
        elif local_files_only is None:
            local_files_only = _env_offline()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = SegformerForSemanticSegmentation.from_pretrained(ref, local_files_only=local_files_only)
        except Exception as exc:  # OSError, HF validation/HTTP errors, corrupt weights: all mean "cannot load"
            raise ModelLoadError(f"cannot load SegFormer {model_ref!r} ({type(exc).__name__}: {exc}): {_HELP}") from exc
        log.info("loaded SegFormer %s on %s (labels %s)", model_ref, device, list(model.config.id2label.values()))
        if suspicious_classes is not None:
            check_labels(model.config.id2label, suspicious_classes, str(model_ref))
        return cls(model, device)

    def suspicious_ids(self, suspicious_classes: list[str]) -> list[int]:
        """The model's class ids labelled one of ``suspicious_classes``; ValueError for an unknown class."""
        return suspicious_ids(self.id2label, suspicious_classes)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        # SegFormer predicts at 1/4 resolution; upsample to the window so windows align pixel-exactly.
        logits = self.model(pixel_values=batch.to(self.device)).logits
        return F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)

    @torch.inference_mode()
    def predict_logits(
        self, rgb: np.ndarray, window: int = 512, overlap: int = 64, batch_size: int = 4
    ) -> torch.Tensor:
        """Window-averaged logits (num_labels, H, W) for rgb (3, H, W) in 0..1; NaN treated as the mean colour."""
        rgb = np.asarray(rgb, dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[0] != 3:
            raise ValueError(f"rgb must have shape (3, H, W), got {rgb.shape}")
        norm = normalise_rgb(rgb)
        _, h, w = norm.shape
        pad_h, pad_w = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
        if pad_h or pad_w:
            norm = np.pad(norm, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        logits = sliding_window_logits(
            torch.from_numpy(np.ascontiguousarray(norm)),
            self._forward,
            num_labels=len(self.id2label),
            window=window,
            overlap=overlap,
            batch_size=batch_size,
        )
        return logits[:, :h, :w]

    def predict_mask(
        self,
        rgb: np.ndarray,
        suspicious_classes: list[str],
        window: int = 512,
        overlap: int = 64,
        batch_size: int = 4,
    ) -> np.ndarray:
        """Bool (H, W): argmax class is one of suspicious_classes; nodata (NaN) pixels are False."""
        ids = self.suspicious_ids(suspicious_classes)  # validate before spending compute
        logits = self.predict_logits(rgb, window=window, overlap=overlap, batch_size=batch_size)
        cls_map = logits.argmax(dim=0).numpy()
        mask = np.isin(cls_map, ids)
        return mask & np.all(np.isfinite(rgb), axis=0)


def check_labels(id2label: Mapping[Any, str], suspicious_classes: list[str], model_ref: str) -> list[int]:
    """Ids of ``suspicious_classes`` in a model's label map; InputDataError naming the labels it has.

    The default classes (``barren``, ``water``) are LoveDA's (Wang et al. 2021, "LoveDA: A Remote Sensing
    Land-Cover Dataset for Domain Adaptive Semantic Segmentation"); a model fine-tuned on another set
    (e.g. ADE20K's 150 classes) has other names, and must not be used with them unnoticed.
    """
    try:
        return suspicious_ids(id2label, suspicious_classes)
    except ValueError as exc:
        raise InputDataError(
            f"SegFormer {model_ref}: {exc}. Set proposer.segformer.suspicious_classes to some of these labels, "
            "or proposer.segformer.hub_id to a model whose labels hold them (then rerun fetch_segformer)"
        ) from None


def fetch_segformer(
    model_id: str, out_dir: str | os.PathLike[str], suspicious_classes: list[str] | None = None
) -> Path:
    """Download a SegFormer (config + weights) from the Hugging Face Hub into out_dir.

    With ``suspicious_classes`` the downloaded ``config.json`` must label them (:func:`check_labels`);
    otherwise the download is removed and InputDataError lists the model's labels.

    Raises:
        ModelLoadError: the download fails (no internet, unknown id) or holds no ``config.json``.
        InputDataError: the model does not label ``suspicious_classes``.
    """
    from huggingface_hub import snapshot_download

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(
            repo_id=model_id,
            local_dir=str(out),
            # Only what from_pretrained needs; skip TF/Flax/ONNX copies of the weights.
            allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.md"],
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot download SegFormer {model_id!r} ({type(exc).__name__}: {exc}); "
            "this rule needs internet access to huggingface.co"
        ) from exc
    if not (out / "config.json").is_file():
        raise ModelLoadError(f"download of {model_id!r} into {out} holds no config.json")
    if suspicious_classes is not None:
        id2label = json.loads((out / "config.json").read_text()).get("id2label") or {}
        try:
            check_labels(id2label, suspicious_classes, model_id)
        except InputDataError:
            shutil.rmtree(out, ignore_errors=True)  # no model on disk that the proposer cannot use
            raise
    log.info("fetched %s into %s", model_id, out)
    return out
