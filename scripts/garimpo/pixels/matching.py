"""Distribution matching: stretch an image's own P2/P98 (a training image's or a chip's) onto the positives'
P2/P98, band by band.

Imagery from other sensors, dates or local folders then lands in the value range the
classifier was trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from garimpo.errors import InputDataError


def image_percentiles(array: np.ndarray, p_low: float = 2.0, p_high: float = 98.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) percentiles of a (bands, H, W) array, ignoring NaN."""
    flat = array.reshape(array.shape[0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(flat, [p_low, p_high], axis=1)
    return lo, hi


def stretch_to_reference(
    array: np.ndarray,
    ref_low: np.ndarray,
    ref_high: np.ndarray,
    p_low: float = 2.0,
    p_high: float = 98.0,
    min_spread: float = 1e-4,
) -> np.ndarray:
    """Map each band's [P_low, P_high] linearly onto [ref_low, ref_high].

    A band whose own spread is below ``min_spread`` (flat: water body, cloud, blank) is
    only shifted, not stretched, so noise is not blown up to the full reference range.
    """
    ref_low = np.asarray(ref_low, dtype=np.float64)[:, None, None]
    ref_high = np.asarray(ref_high, dtype=np.float64)[:, None, None]
    lo, hi = image_percentiles(array, p_low, p_high)
    lo, hi = lo[:, None, None], hi[:, None, None]
    spread = hi - lo
    flat = ~(spread > min_spread)
    gain = np.where(flat, 1.0, (ref_high - ref_low) / np.where(flat, 1.0, spread))
    out = (array - np.nan_to_num(lo)) * gain + ref_low
    return out.astype(np.float32)


def reference_bounds(
    stats: Mapping, bands: Sequence[str], where: str = "positive statistics"
) -> tuple[np.ndarray, np.ndarray]:
    """(P2, P98) float64 arrays of the positive statistics (``results/stats/positive.json``) in ``bands`` order.

    The one place the positives' per-band range is put in band order, for matching, training and scanning.

    Raises:
        InputDataError: the statistics lack one of ``bands``; ``where`` names them in the message.
    """
    per_band = stats.get("bands", {})
    missing = [b for b in bands if b not in per_band]
    if missing:
        raise InputDataError(
            f"{where} have no band(s) {missing}; they have {sorted(per_band)}. "
            "Rebuild them with the same imagery.bands as the classifier (snakemake results/stats/positive.json)."
        )
    low = np.array([per_band[b]["p2"] for b in bands], np.float64)
    high = np.array([per_band[b]["p98"] for b in bands], np.float64)
    return low, high
