"""The spectral proposer: weight-free index thresholds (bare soil, turbid water, vegetation loss).

Thresholds were checked against typical L2A reflectances (forest B04~0.025 B08~0.30; turbid mining ponds
B04~0.11; sediment B11~0.30; clear dark river B04~0.03). Their defaults are the schema's, with the reason for
each value in its description (config/schema.yaml, ``proposer.spectral``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from garimpo.detection.proposers.masks import valid_mask
from garimpo.detection.proposers.registry import MaskPredictor, Proposer, register
from garimpo.pixels.indices import bsi, mndwi, ndvi, ndwi
from garimpo.schema import default

# Blue, green, red, NIR, SWIR1: what bsi/mndwi/ndvi/ndwi read.
SPECTRAL_BANDS = ("B02", "B03", "B04", "B08", "B11")
DEFAULT_SPECTRAL: dict[str, Any] = default("proposer.spectral")


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


def _vegetation_loss(nd: np.ndarray, water: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Bool (H, W) vegetation loss of the NDVI ``nd`` (``water``: bool (H, W), the water branch's mask).

    Without ``p["reference_ndvi"]``: NDVI below ``ndvi_max_loss`` inside forest surroundings, outside water
    (only when ``loss_enabled``). With it (float32 (H, W), an earlier NDVI): an NDVI drop of more than
    ``ndvi_drop`` since then; where the reference is NaN (no clear pixel then, e.g. cloud) those pixels
    fall back to the reference-free test, so an earlier cloud neither hides new loss nor flags everything.

    Raises:
        ValueError: ``reference_ndvi`` has another shape than ``nd``.
    """
    reference = p.get("reference_ndvi")
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float32)
        if reference.shape != nd.shape:
            raise ValueError(f"reference_ndvi shape {reference.shape} != image shape {nd.shape}")
        # With a before image, new water (fresh ponds) counts as loss too: a river was
        # already low-NDVI before, so it shows no drop.
        with np.errstate(invalid="ignore"):
            loss = (reference - nd) > p["ndvi_drop"]
        unseen = ~np.isfinite(reference) & np.isfinite(nd)
        if unseen.any():
            # NaN - x compares False: without this, a cloud in the earlier image would hide new loss.
            loss |= unseen & _loss_in_forest(nd, water, p)
        return loss
    return _loss_in_forest(nd, water, p)


def _loss_in_forest(nd: np.ndarray, water: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """The reference-free vegetation-loss test: low NDVI inside forest, outside water (if ``loss_enabled``)."""
    if not p["loss_enabled"]:
        return np.zeros(nd.shape, dtype=bool)
    # Without a reference, rivers inside forest would look like "loss": exclude water here
    # (turbid water is caught by its own branch; clear rivers should not be).
    in_forest = _forest_fraction(nd, p["forest_ndvi_min"], p["forest_context_px"]) >= p["forest_fraction_min"]
    with np.errstate(invalid="ignore"):
        return (nd < p["ndvi_max_loss"]) & in_forest & ~water


def spectral_candidates(bands: Mapping[str, np.ndarray], params: Mapping[str, Any] | None = None) -> np.ndarray:
    """Weight-free, recall-oriented candidate mask, bool (H, W): bare soil | turbid water | vegetation loss.

    ``bands``: ``SPECTRAL_BANDS`` as float32 (H, W) reflectance (0-1). ``params`` overrides
    ``DEFAULT_SPECTRAL`` (config ``proposer.spectral``); an optional ``reference_ndvi`` array (same
    shape, an earlier NDVI, e.g. the previous period's composite: the scan's ``reference``) switches the
    vegetation-loss test to an NDVI drop of more than ``ndvi_drop``; pixels where it is NaN keep the
    reference-free test. NaN pixels (in any band used) are never candidates.

    Raises:
        KeyError: a band of ``SPECTRAL_BANDS`` is missing.
        ValueError: an unknown parameter, or a ``reference_ndvi`` of another shape.
    """
    p = _merged_params(params)
    valid = valid_mask(bands, SPECTRAL_BANDS)
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


def scale_spectral(params: dict[str, Any], factor: int) -> dict[str, Any]:
    """``proposer.spectral`` for pixels ``factor`` times coarser: the forest context box (px) shrinks (>= 1 px)."""
    return {**params, "forest_context_px": max(1, int(round(params["forest_context_px"] / factor)))}


def _candidates(bands: Mapping[str, np.ndarray], config: Mapping[str, Any], model: MaskPredictor | None) -> np.ndarray:
    return spectral_candidates(bands, config.get("spectral"))


SPECTRAL = register(
    Proposer(
        "spectral",
        SPECTRAL_BANDS,
        _candidates,
        section="spectral",
        rescale=scale_spectral,
        description="weight-free band-index thresholds",
        reference_section="spectral",  # _vegetation_loss reads reference_ndvi
    )
)
