"""Mining probabilities for chips with a trained classifier."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from garimpo.classifier.data import ChipDataset, preprocess
from garimpo.classifier.model import view_probs


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


@torch.inference_mode()
def _probs(model: nn.Module, batches, device: torch.device, tta: bool = False) -> np.ndarray:
    was_training = model.training
    model.eval()  # dropout off, BatchNorm on running stats
    try:
        out = [view_probs(model, x.to(device), tta).mean(0).cpu() for x in batches]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def predict_proba(
    model: nn.Module,
    meta: dict,
    chips: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    tta: bool = False,
) -> np.ndarray:
    """P(mining) for chips [N, C, H, W] of reflectance, bands in ``meta["bands"]`` order.

    ``tta``: average over the 8 rotations/flips of each chip (``garimpo.classifier.model.view_probs``). A mine
    has no up or down, so this removes orientation noise from a model trained on few sites (8x the calls).
    Returns float32 [N] in [0, 1].

    Raises:
        ValueError: ``chips`` is not [N, len(meta["bands"]), H, W].
    """
    chips = np.asarray(chips, dtype=np.float32)
    if chips.ndim != 4 or chips.shape[1] != len(meta["bands"]):
        raise ValueError(f"chips must be [N, {len(meta['bands'])}, H, W] (bands {meta['bands']}), got {chips.shape}")
    device = _device_of(model, device)
    model.to(device)
    args = (meta["low"], meta["high"], int(meta["input_size"]), meta["mean"], meta["std"])
    # Preprocess per batch so memory stays bounded for many chips.
    batches = (preprocess(chips[i : i + batch_size], *args) for i in range(0, len(chips), batch_size))
    return _probs(model, batches, device, tta)


def predict_paths(
    model: nn.Module,
    meta: dict,
    paths: Sequence[str | os.PathLike],
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """P(mining), float32 [N] in [0, 1], of GeoTIFF chips (any size; bands picked by name, ``ChipDataset``).

    Raises:
        InputDataError: a file lacks one of ``meta["bands"]``.
    """
    ds = ChipDataset(
        paths,
        None,
        meta["bands"],
        meta["low"],
        meta["high"],
        int(meta["input_size"]),
        meta["mean"],
        meta["std"],
        cache=False,
    )
    device = _device_of(model, device)
    model.to(device)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    return _probs(model, (x for x, _ in loader), device)
