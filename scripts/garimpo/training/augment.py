"""Training-image augmentation: geometric and radiometric, on (bands, H, W) float arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    copies: int = 5
    rotate90: bool = True
    flip: bool = True
    brightness: float = 0.15  # multiplicative factor in [1-b, 1+b]
    contrast: float = 0.15  # spread around the band mean scaled by [1-c, 1+c]
    # Colour balance, off in the method: each band's own factor in [1-g, 1+g], and each pixel's spread
    # around its mean over bands scaled by [1-s, 1+s]. For imagery rendered or corrected differently.
    band_gain: float = 0.0
    saturation: float = 0.0
    haze_probability: float = 0.3
    haze_strength: tuple[float, float] = (0.1, 0.35)  # blend fraction towards the haze colour
    noise_sigma: float = 0.02  # in units of each band's reference range (P98 - P2)

    @classmethod
    def from_config(cls, cfg: Mapping) -> AugmentParams:
        fields = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__}
        if "haze_strength" in fields:
            fields["haze_strength"] = tuple(fields["haze_strength"])
        return cls(**fields)


def augment(
    array: np.ndarray, rng: np.random.Generator, params: AugmentParams, ref_low: np.ndarray, ref_high: np.ndarray
) -> np.ndarray:
    """One random augmented copy of a (bands, H, W) training image matched to the reference range.

    Haze pulls every band towards the reference P98 (bright, flat, like thin cloud); noise is
    Gaussian with sigma ``noise_sigma`` times each band's reference range.
    """
    out = np.array(array, dtype=np.float32, copy=True)
    if params.rotate90:
        out = np.rot90(out, k=int(rng.integers(4)), axes=(1, 2))
    if params.flip:
        if rng.random() < 0.5:
            out = out[:, :, ::-1]
        if rng.random() < 0.5:
            out = out[:, ::-1, :]
    low = np.asarray(ref_low, dtype=np.float32)[:, None, None]
    high = np.asarray(ref_high, dtype=np.float32)[:, None, None]
    span = high - low
    if params.brightness:
        out = out * rng.uniform(1 - params.brightness, 1 + params.brightness)
    if params.contrast:
        mean = np.nanmean(out, axis=(1, 2), keepdims=True)
        out = (out - mean) * rng.uniform(1 - params.contrast, 1 + params.contrast) + mean
    # Drawn only when on, so the method's default augmentation keeps its random stream.
    if params.band_gain:
        gains = rng.uniform(1 - params.band_gain, 1 + params.band_gain, (out.shape[0], 1, 1))
        out = out * gains.astype(np.float32)
    if params.saturation:
        valid = ~np.isnan(out)  # nodata pixels stay NaN; a pixel's mean is over its valid bands
        grey = np.where(valid, out, 0).sum(0, keepdims=True) / np.maximum(valid.sum(0, keepdims=True), 1)
        out = (out - grey) * rng.uniform(1 - params.saturation, 1 + params.saturation) + grey
    if params.haze_probability and rng.random() < params.haze_probability:
        strength = rng.uniform(*params.haze_strength)
        out = out * (1 - strength) + high * strength
    if params.noise_sigma:
        out = out + rng.normal(0.0, 1.0, out.shape).astype(np.float32) * (params.noise_sigma * span)
    return np.ascontiguousarray(out, dtype=np.float32)
