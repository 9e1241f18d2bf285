"""Spectral indices on Sentinel-2 L2A surface reflectance.

Every index is a normalized difference (a - b) / (a + b). Reflectance is
float (0..~1) with NaN for nodata; a denominator that is zero or near zero
(dark shadow, nodata filled with 0) gives NaN instead of a huge, meaningless
ratio, and no floating-point warning leaks out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# |a + b| below this is treated as "no signal": at reflectance scale 1e-6 is far
# below the sensor's quantisation step (1 DN = 1e-4), so real pixels never hit it.
DENOMINATOR_EPS = 1e-6


def normalized_difference(a: np.ndarray, b: np.ndarray, eps: float = DENOMINATOR_EPS) -> np.ndarray:
    """Return (a - b) / (a + b) as float32; NaN where an input is NaN or |a + b| <= eps."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        num = a - b
        den = a + b
        # NaN inputs make den NaN, and NaN > eps is False, so they stay NaN too.
        ok = np.abs(den) > eps
        out = np.full(np.broadcast(a, b).shape, np.nan, dtype=np.float32)
        np.divide(num, den, out=out, where=ok)
    return out


def _band(bands: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return np.asarray(bands[name], dtype=np.float32)
    except KeyError:
        raise KeyError(f"band {name!r} missing; got {sorted(bands)}") from None


def ndvi(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """NDVI = (B08 - B04) / (B08 + B04): high over forest, low over soil and water."""
    return normalized_difference(_band(bands, "B08"), _band(bands, "B04"))


def ndwi(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """McFeeters NDWI = (B03 - B08) / (B03 + B08): positive over open water."""
    return normalized_difference(_band(bands, "B03"), _band(bands, "B08"))


def mndwi(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """MNDWI = (B03 - B11) / (B03 + B11): water index that separates water from built-up/soil better than NDWI."""
    return normalized_difference(_band(bands, "B03"), _band(bands, "B11"))


def bsi(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Bare-soil index ((B11 + B04) - (B08 + B02)) / ((B11 + B04) + (B08 + B02))."""
    return normalized_difference(
        _band(bands, "B11") + _band(bands, "B04"),
        _band(bands, "B08") + _band(bands, "B02"),
    )
