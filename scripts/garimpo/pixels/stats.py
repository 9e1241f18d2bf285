"""Per-band statistics of the positive training images by reservoir sampling (memory bounded by the reservoir)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class BandReservoir:
    """Uniform random sample of at most ``size`` values from a stream (Algorithm R), plus exact moments.

    Memory is O(size) however many values stream through, so P2/P98 of millions of
    images cost the same memory as of ten.
    """

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = int(size)
        self.rng = rng
        self.sample = np.empty(self.size, dtype=np.float64)
        self.seen = 0
        self._sum = 0.0
        self._sumsq = 0.0

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self._sum += float(values.sum())
        self._sumsq += float(np.square(values).sum())
        fill = min(self.size - min(self.seen, self.size), values.size)
        if fill:
            self.sample[self.seen : self.seen + fill] = values[:fill]
        rest = values[fill:]
        if rest.size:
            # Item number k (0-based, over the whole stream) replaces slot j ~ U[0, k] when j < size.
            k = self.seen + fill + np.arange(rest.size)
            j = (self.rng.random(rest.size) * (k + 1)).astype(np.int64)
            keep = j < self.size
            # Assign in stream order so a later item overwrites an earlier one in the same slot.
            for slot, value in zip(j[keep], rest[keep]):
                self.sample[slot] = value
        self.seen += values.size

    @property
    def values(self) -> np.ndarray:
        return self.sample[: min(self.seen, self.size)]

    def summary(self, p_low: float = 2.0, p_high: float = 98.0) -> dict:
        if self.seen == 0:
            raise ValueError("no finite value seen")
        mean = self._sum / self.seen
        var = max(self._sumsq / self.seen - mean * mean, 0.0)
        lo, hi = np.percentile(self.values, [p_low, p_high])
        return {
            "p2": float(lo),
            "p98": float(hi),
            "mean": float(mean),
            "std": float(np.sqrt(var)),
            "n_samples": int(self.values.size),
            "n_seen": int(self.seen),
        }


def band_statistics(
    arrays: Iterable[tuple[np.ndarray, Sequence[str]]], sample_size: int = 100_000, seed: int = 0
) -> dict:
    """Stream (bands, H, W) arrays with their band names; return the stats JSON document."""
    rng = np.random.default_rng(seed)
    reservoirs: dict[str, BandReservoir] = {}
    n_images = 0
    for array, names in arrays:
        n_images += 1
        for band, name in zip(array, names):
            reservoirs.setdefault(name, BandReservoir(sample_size, rng)).update(band)
    if not n_images:
        raise ValueError("no image to compute statistics from")
    return {
        "bands": {name: r.summary() for name, r in reservoirs.items()},
        "n_images": n_images,
        "sample_size": sample_size,
        "seed": seed,
    }
