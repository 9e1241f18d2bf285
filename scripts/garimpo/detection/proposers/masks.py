"""Candidate masks, whatever proposed them: valid pixels, the common smoothing, zones and recall.

Every proposer's raw mask goes through the same ``smooth_mask`` (parameters: config ``proposer.smoothing``,
at 10 m pixels; ``scale_smoothing`` for a decimated run), then is cut to the pixels where every band the
proposer reads is finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from garimpo.schema import default

# Morphology at 10 m pixels: the schema's defaults, with the reason for each value in its description
# (config/schema.yaml, proposer.smoothing).
DEFAULT_SMOOTHING: dict[str, int] = default("proposer.smoothing")


def valid_mask(bands: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """Bool (H, W): True where every band in ``names`` (default: every band of ``bands``) is finite (not nodata).

    Raises:
        KeyError: a band of ``names`` is not in ``bands``.
    """
    names = tuple(bands) if names is None else tuple(names)
    missing = [n for n in names if n not in bands]
    if missing:
        raise KeyError(f"bands {missing} missing; got {sorted(bands)}")
    valid = np.ones(np.shape(bands[names[0]]), dtype=bool)
    for name in names:
        valid &= np.isfinite(bands[name])
    return valid


def _closing(mask: np.ndarray, radius: int) -> np.ndarray:
    fp = disk(radius).astype(bool)
    grown = ndimage.binary_dilation(mask, structure=fp)
    # border_value=1: treat outside as "set" so closing does not eat objects touching the edge.
    return ndimage.binary_erosion(grown, structure=fp, border_value=1)


def _opening(mask: np.ndarray, radius: int) -> np.ndarray:
    fp = disk(radius).astype(bool)
    shrunk = ndimage.binary_erosion(mask, structure=fp, border_value=1)
    return ndimage.binary_dilation(shrunk, structure=fp)


def label_zones(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected zones of a bool (H, W) mask: (int32 (H, W) labels, 0 = background; number of zones)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return labels.astype(np.int32, copy=False), int(n)


def remove_small_zones(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Bool (H, W) ``mask`` without its 8-connected components of fewer than ``min_area_px`` pixels."""
    if min_area_px <= 1:
        return mask.copy()
    labels, n = label_zones(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area_px
    keep[0] = False
    return keep[labels]


def smooth_mask(
    mask: np.ndarray,
    closing_radius_px: int,
    opening_radius_px: int,
    min_area_px: int,
    dilate_px: int = 0,
) -> np.ndarray:
    """Closing (join ponds/sediment) -> opening (drop speckle, thin tracks) -> min area -> dilation (fringe).

    ``mask``: bool (H, W); radii and areas in pixels (0 skips a step). Returns bool (H, W).

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    out = np.asarray(mask, dtype=bool)
    if out.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {out.shape}")
    if closing_radius_px > 0:
        out = _closing(out, closing_radius_px)
    if opening_radius_px > 0:
        out = _opening(out, opening_radius_px)
    out = remove_small_zones(out, min_area_px)
    if dilate_px > 0:
        out = ndimage.binary_dilation(out, structure=disk(dilate_px).astype(bool))
    return out


def smoothing_params(smoothing: Mapping[str, int] | None) -> dict[str, int]:
    """Config ``proposer.smoothing`` over the schema's defaults (``DEFAULT_SMOOTHING``), as ints.

    Raises:
        ValueError: an unknown parameter (a typo would silently fall back to the default).
    """
    out = {**DEFAULT_SMOOTHING, **dict(smoothing or {})}
    unknown = set(out) - set(DEFAULT_SMOOTHING)
    if unknown:
        raise ValueError(f"unknown smoothing parameters {sorted(unknown)}; known: {sorted(DEFAULT_SMOOTHING)}")
    return {k: int(v) for k, v in out.items()}


def scale_smoothing(smoothing: Mapping[str, int] | None, factor: int) -> dict[str, int]:
    """The smoothing (over the schema's defaults) for pixels ``factor`` times coarser: radii and the dilation
    rounded up, the minimum area down (at least 1 px); the opening only at 10 m scale (floor)."""
    sm = {**DEFAULT_SMOOTHING, **dict(smoothing or {})}
    return {
        "closing_radius_px": int(math.ceil(sm["closing_radius_px"] / factor)),
        # An opening of radius >= 1 coarse px would erase objects 2 coarse px wide: keep it at
        # 10 m scale only.
        "opening_radius_px": int(sm["opening_radius_px"] // factor),
        "min_area_px": max(1, int(math.floor(sm["min_area_px"] / factor**2))),
        "dilate_px": int(math.ceil(sm["dilate_px"] / factor)),
    }


def proposer_recall(
    candidate_mask: np.ndarray, truth_mask: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, float]:
    """Recall of truth pixels and the share of (valid) area the proposer passes on.

    All masks bool (H, W). ``recall`` (in [0, 1]) is NaN when there are no truth pixels; ``area_fraction``
    is candidate pixels / valid pixels (all pixels when ``valid`` is None); pixel counts as floats too.

    Raises:
        ValueError: the candidate and truth masks differ in shape.
    """
    cand = np.asarray(candidate_mask, dtype=bool)
    truth = np.asarray(truth_mask, dtype=bool)
    if cand.shape != truth.shape:
        raise ValueError(f"candidate shape {cand.shape} != truth shape {truth.shape}")
    valid = np.ones(cand.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    truth = truth & valid
    cand = cand & valid
    n_truth = int(truth.sum())
    n_valid = int(valid.sum())
    n_cand = int(cand.sum())
    hit = int((cand & truth).sum())
    return {
        "recall": hit / n_truth if n_truth else float("nan"),
        "area_fraction": n_cand / n_valid if n_valid else float("nan"),
        "truth_pixels": float(n_truth),
        "candidate_pixels": float(n_cand),
        "valid_pixels": float(n_valid),
    }
