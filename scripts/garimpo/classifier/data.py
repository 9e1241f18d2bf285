"""Reading tiles and turning them into network input (shared by training and inference)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from garimpo.contract import RESIZE
from garimpo.errors import InputDataError
from garimpo.geo.raster import RGB_BANDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Without ImageNet weights the [0, 1] range is simply centred and spread to ~unit variance.
PLAIN_MEAN, PLAIN_STD = 0.5, 0.25
# ImageNet kernels expect R, G, B in that order: Sentinel-2 B04, B03, B02.


def rgb_first(bands: Sequence[str]) -> list[str]:
    """Band order for an ImageNet start: R, G, B (those present) first, the rest as given."""
    rgb = [b for b in RGB_BANDS if b in bands]
    return rgb + [b for b in bands if b not in rgb]


def normalisation_stats(n_bands: int, weights: str) -> tuple[list[float], list[float]]:
    """Per-band mean/std applied after scaling to [0, 1].

    ImageNet values for the first three bands when starting from ImageNet (bands
    beyond three, or all of them if fewer, get the mean of the ImageNet values);
    0.5/0.25 for every band otherwise.
    """
    if weights != "imagenet":
        return [PLAIN_MEAN] * n_bands, [PLAIN_STD] * n_bands
    m, s = float(np.mean(IMAGENET_MEAN)), float(np.mean(IMAGENET_STD))
    if n_bands < 3:
        return [m] * n_bands, [s] * n_bands
    return list(IMAGENET_MEAN) + [m] * (n_bands - 3), list(IMAGENET_STD) + [s] * (n_bands - 3)


def band_limits(stats_json: str | os.PathLike, bands: Sequence[str]) -> tuple[list[float], list[float]]:
    """Per-band (P2, P98) of the positives, from results/stats/positive.json."""
    with open(stats_json) as fh:
        stats = json.load(fh)
    per_band = stats.get("bands", {})
    missing = [b for b in bands if b not in per_band]
    if missing:
        raise InputDataError(f"{stats_json} has no statistics for bands {missing}; it has {sorted(per_band)}")
    return [float(per_band[b]["p2"]) for b in bands], [float(per_band[b]["p98"]) for b in bands]


def read_tile(path: str | os.PathLike, bands: Sequence[str]) -> np.ndarray:
    """Bands picked by name from the band descriptions, as float32 [C, H, W]; nodata -> NaN."""
    with rasterio.open(path) as src:
        names = [d.strip() if d else None for d in src.descriptions]
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputDataError(f"{path} lacks bands {missing}; its band descriptions are {names}")
        arr = src.read([names.index(b) + 1 for b in bands]).astype(np.float32, copy=False)
        nodata = src.nodata
    if nodata is not None and not np.isnan(nodata):
        arr[arr == nodata] = np.nan
    return arr


def scale_to_unit(arr: np.ndarray, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """clip((x - low) / (high - low), 0, 1) per band (axis -3); NaN (nodata) -> 0."""
    arr = np.asarray(arr, dtype=np.float32)
    shape = (-1, 1, 1)
    lo = np.asarray(low, dtype=np.float32).reshape(shape)
    hi = np.asarray(high, dtype=np.float32).reshape(shape)
    if lo.shape[0] != arr.shape[-3]:
        raise ValueError(f"{lo.shape[0]} band limits for an array with {arr.shape[-3]} bands")
    span = np.maximum(hi - lo, np.float32(1e-12))  # a flat band must not divide by zero
    arr = np.where(np.isnan(arr), lo, arr)
    return np.clip((arr - lo) / span, 0.0, 1.0).astype(np.float32)


def preprocess(
    chips: np.ndarray,
    low: Sequence[float],
    high: Sequence[float],
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Reflectance chips [N, C, H, W] -> normalised network input [N, C, S, S].

    Chips of another size are resized as ``garimpo.contract.RESIZE`` says (what checkpoints record).
    """
    x = torch.from_numpy(scale_to_unit(chips, low, high))
    if x.shape[-2:] != (input_size, input_size):
        # antialias: downsampling large tiles must not alias fine mining texture (no effect when upsampling).
        x = F.interpolate(
            x,
            size=(input_size, input_size),
            mode=RESIZE["method"],
            align_corners=RESIZE["align_corners"],
            antialias=RESIZE["antialias"],
        )
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


class TileDataset(Dataset):
    """(input tensor [C, S, S], label float) for each tile path.

    Raw tiles are cached in memory after the first read (``cache``) because
    training revisits every tile each epoch and tiles are small.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[int] | None,
        bands: Sequence[str],
        low: Sequence[float],
        high: Sequence[float],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        cache: bool = True,
    ) -> None:
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = None if labels is None else [int(v) for v in labels]
        self.bands, self.low, self.high = list(bands), list(low), list(high)
        self.input_size, self.mean, self.std = int(input_size), list(mean), list(std)
        self.cache = cache
        self._raw: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, idx: int) -> np.ndarray:
        if idx in self._raw:
            return self._raw[idx]
        arr = read_tile(self.paths[idx], self.bands)
        if self.cache:
            self._raw[idx] = arr
        return arr

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocess(self._read(idx)[None], self.low, self.high, self.input_size, self.mean, self.std)[0]
        y = -1.0 if self.labels is None else float(self.labels[idx])
        return x, torch.tensor(y, dtype=torch.float32)
