"""Stage 1 of detection: propose candidate zones for the classifier to judge.

A proposer is tuned for recall: anything it misses is lost for good, while its
false positives (sandbars, fish ponds, pasture, roads...) are the classifier's
job. Its cost is the area it passes on, which ``proposer_recall`` measures.

Methods:
- ``spectral``: weight-free index thresholds (bare soil, turbid water, vegetation loss);
- ``segformer``: a semantic-segmentation model's "suspicious" classes (e.g. LoveDA barren/water);
- ``union``: both OR'd.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from garimpo.pixels.indices import bsi, mndwi, ndvi, ndwi
from garimpo.schema import default

SPECTRAL_BANDS = ("B02", "B03", "B04", "B08", "B11")

# Defaults, checked against typical L2A reflectances (forest B04~0.025 B08~0.30;
# turbid mining ponds B04~0.11; sediment B11~0.30; clear dark river B04~0.03).
# Thresholds and morphology (at 10 m pixels; see smooth_mask): the schema's defaults, with the reason for
# each value in its description (config/schema.yaml, proposer.spectral and proposer.smoothing).
DEFAULT_SPECTRAL: dict[str, Any] = default("proposer.spectral")
DEFAULT_SMOOTHING: dict[str, int] = default("proposer.smoothing")

METHODS = ("spectral", "segformer", "union")


class MaskPredictor(Protocol):
    """What ``propose`` needs from a model proposer (``garimpo.detection.segformer.SegformerProposer`` fits)."""

    def predict_mask(
        self,
        rgb: np.ndarray,
        suspicious_classes: list[str],
        *,
        window: int = ...,
        overlap: int = ...,
        batch_size: int = ...,
    ) -> np.ndarray: ...


def valid_mask(bands: Mapping[str, np.ndarray], names: tuple[str, ...] = SPECTRAL_BANDS) -> np.ndarray:
    """True where every named band is finite (not nodata)."""
    missing = [n for n in names if n not in bands]
    if missing:
        raise KeyError(f"bands {missing} missing; got {sorted(bands)}")
    valid = np.ones(np.shape(bands[names[0]]), dtype=bool)
    for name in names:
        valid &= np.isfinite(bands[name])
    return valid


def _merged_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    unknown = set(params) - set(DEFAULT_SPECTRAL) - {"reference_ndvi"}
    if unknown:
        # A typo would silently fall back to the default threshold; say so instead.
        raise ValueError(
            f"unknown spectral parameters {sorted(unknown)}; known: {sorted(DEFAULT_SPECTRAL)} + reference_ndvi"
        )
    return {**DEFAULT_SPECTRAL, **params}


def _forest_fraction(ndvi_img: np.ndarray, forest_ndvi_min: float, radius_px: int) -> np.ndarray:
    """Share of valid pixels in a (2r+1)^2 box whose NDVI exceeds forest_ndvi_min."""
    valid = np.isfinite(ndvi_img)
    with np.errstate(invalid="ignore"):
        forest = (ndvi_img > forest_ndvi_min) & valid
    size = 2 * int(radius_px) + 1
    # uniform_filter gives local means; their ratio ignores nodata in the window.
    n_forest = ndimage.uniform_filter(forest.astype(np.float32), size=size, mode="reflect")
    n_valid = ndimage.uniform_filter(valid.astype(np.float32), size=size, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_valid > 0, n_forest / np.maximum(n_valid, 1e-12), 0.0)
    return frac.astype(np.float32)


def spectral_candidates(bands: Mapping[str, np.ndarray], params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Weight-free, recall-oriented candidate mask: bare soil | turbid water | vegetation loss.

    ``params`` overrides ``DEFAULT_SPECTRAL``; an optional ``reference_ndvi`` array (same
    shape, an earlier NDVI) switches the vegetation-loss test to an NDVI drop. NaN pixels
    (in any band used) are never candidates.
    """
    p = _merged_params(params)
    valid = valid_mask(bands)
    nd = ndvi(bands)
    water_idx_m = mndwi(bands)
    water_idx_n = ndwi(bands)
    red = np.asarray(bands["B04"], dtype=np.float32)

    # Comparisons with NaN are False, so nodata falls out of each branch; errstate silences
    # the "invalid value in comparison" warning some NumPy builds emit for NaN.
    with np.errstate(invalid="ignore"):
        bare = (bsi(bands) > p["bsi_min"]) & (nd < p["ndvi_max_bare"])
        water = (water_idx_m > p["mndwi_min"]) | (water_idx_n > p["ndwi_min"])
        turbid = water & (red > p["turbid_red_min"])
        loss = _vegetation_loss(nd, water, p)

    return (bare | turbid | loss) & valid


def _vegetation_loss(nd: np.ndarray, water: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    reference = p.get("reference_ndvi")
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float32)
        if reference.shape != nd.shape:
            raise ValueError(f"reference_ndvi shape {reference.shape} != image shape {nd.shape}")
        # With a before image, new water (fresh ponds) counts as loss too: a river was
        # already low-NDVI before, so it shows no drop.
        with np.errstate(invalid="ignore"):
            return (reference - nd) > p["ndvi_drop"]
    if not p["loss_enabled"]:
        return np.zeros(nd.shape, dtype=bool)
    # Without a reference, rivers inside forest would look like "loss": exclude water here
    # (turbid water is caught by its own branch; clear rivers should not be).
    in_forest = _forest_fraction(nd, p["forest_ndvi_min"], p["forest_context_px"]) >= p["forest_fraction_min"]
    with np.errstate(invalid="ignore"):
        return (nd < p["ndvi_max_loss"]) & in_forest & ~water


def _closing(mask: np.ndarray, radius: int) -> np.ndarray:
    fp = disk(radius).astype(bool)
    grown = ndimage.binary_dilation(mask, structure=fp)
    # border_value=1: treat outside as "set" so closing does not eat objects touching the edge.
    return ndimage.binary_erosion(grown, structure=fp, border_value=1)


def _opening(mask: np.ndarray, radius: int) -> np.ndarray:
    fp = disk(radius).astype(bool)
    shrunk = ndimage.binary_erosion(mask, structure=fp, border_value=1)
    return ndimage.binary_dilation(shrunk, structure=fp)


def remove_small_zones(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Drop 8-connected components with fewer than min_area_px pixels."""
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
    """Closing (join ponds/sediment) -> opening (drop speckle, thin tracks) -> min area -> dilation (fringe)."""
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


def label_zones(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected zones; returns (int32 labels, 0 = background; number of zones)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return labels.astype(np.int32, copy=False), int(n)


def _segformer_candidates(
    bands: Mapping[str, np.ndarray], seg_params: Mapping[str, Any], segformer: MaskPredictor | None
) -> np.ndarray:
    # Imported lazily: torch/transformers are heavy and the spectral path must not need them.
    from garimpo.detection.segformer import SegformerProposer, rgb_from_bands

    if segformer is None:
        model_ref = seg_params.get("model")
        if not model_ref:
            raise ValueError("method needs a SegFormer: pass segformer= or set proposer.segformer.model")
        segformer = SegformerProposer.from_pretrained(str(model_ref), device=seg_params.get("device"))
    classes = list(seg_params.get("suspicious_classes", ["barren", "water"]))
    rgb = rgb_from_bands(bands, low=float(seg_params.get("rgb_low", 0.0)), high=float(seg_params.get("rgb_high", 0.3)))
    kwargs = {k: int(seg_params[k]) for k in ("window", "overlap", "batch_size") if k in seg_params}
    return np.asarray(segformer.predict_mask(rgb, classes, **kwargs), dtype=bool)


def propose(
    bands: Mapping[str, np.ndarray],
    method: str,
    params: Mapping[str, Any] | None = None,
    segformer: MaskPredictor | None = None,
) -> np.ndarray:
    """Candidate mask for one region, smoothed.

    ``params`` is the ``proposer`` config section: optional sub-mappings ``spectral``
    (see DEFAULT_SPECTRAL), ``segformer`` (model, suspicious_classes, window, overlap,
    batch_size, rgb_low, rgb_high, device) and ``smoothing`` (see DEFAULT_SMOOTHING).
    """
    if method not in METHODS:
        raise ValueError(f"unknown proposer method {method!r}; choose one of {METHODS}")
    params = params or {}
    valid = valid_mask(bands, ("B02", "B03", "B04"))
    if method in ("spectral", "union"):
        valid &= valid_mask(bands)

    mask = np.zeros(valid.shape, dtype=bool)
    if method in ("spectral", "union"):
        mask |= spectral_candidates(bands, params.get("spectral"))
    if method in ("segformer", "union"):
        mask |= _segformer_candidates(bands, params.get("segformer", {}), segformer)

    smoothing = {**DEFAULT_SMOOTHING, **dict(params.get("smoothing", {}))}
    unknown = set(smoothing) - set(DEFAULT_SMOOTHING)
    if unknown:
        raise ValueError(f"unknown smoothing parameters {sorted(unknown)}; known: {sorted(DEFAULT_SMOOTHING)}")
    mask = smooth_mask(mask, **{k: int(v) for k, v in smoothing.items()})
    # Closing/dilation can spread into nodata; nothing there can be judged, so cut it out.
    return mask & valid


def proposer_recall(
    candidate_mask: np.ndarray, truth_mask: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, float]:
    """Recall of truth pixels and the share of (valid) area the proposer passes on.

    ``recall`` is NaN when there are no truth pixels; ``area_fraction`` is candidate
    pixels / valid pixels (all pixels when ``valid`` is None).
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
