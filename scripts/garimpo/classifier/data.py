"""Chips into network input (shared by training, evaluation and inference), and the dataset of training images.

A chip is what the classifier looks at (one training image, or a window of a composite); training images are
read with ``garimpo.geo.raster.read_bands_by_name`` (bands by name, nodata as NaN).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from garimpo.contract import RESIZE
from garimpo.geo.raster import RGB_BANDS, read_bands_by_name
from garimpo.pixels.matching import reference_bounds

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
    """Per-band (P2, P98) of the positives in ``bands`` order, from results/stats/positive.json.

    Raises:
        InputDataError: the statistics lack one of ``bands``.
    """
    with open(stats_json) as fh:
        low, high = reference_bounds(json.load(fh), bands, str(stats_json))
    return [float(v) for v in low], [float(v) for v in high]


def scale_to_unit(arr: np.ndarray, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """clip((x - low) / (high - low), 0, 1) per band (axis -3); NaN (nodata) -> 0.

    ``arr``: reflectance [..., C, H, W]; ``low``/``high``: C reflectance values (the positives' P2/P98). Returns
    float32 of ``arr``'s shape in [0, 1]; a flat band (high == low) divides by 1e-12.

    Raises:
        ValueError: the number of limits differs from the number of bands.
    """
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
    """Reflectance chips [N, C, H, W] -> normalised network input float32 tensor [N, C, S, S], S = ``input_size``.

    ``scale_to_unit`` with ``low``/``high`` (C values), then (x - mean) / std per band (``normalisation_stats``).
    Chips of another size are resized as ``garimpo.contract.RESIZE`` says (what checkpoints record).

    Raises:
        ValueError: the number of limits differs from the number of bands.
    """
    x = torch.from_numpy(scale_to_unit(chips, low, high))
    if x.shape[-2:] != (input_size, input_size):
        # antialias: downsampling large chips must not alias fine mining texture (no effect when upsampling).
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


class ChipDataset(Dataset):
    """(network input float32 [C, S, S], label float32) for each chip image path (training images, or any
    GeoTIFF chip with named bands); the label is -1.0 when ``labels`` is None.

    ``bands``: read by name (``read_bands_by_name``); ``low``/``high``: per-band reflectance range scaled to
    [0, 1] (the positives' P2/P98); ``input_size``: network input side (px, chips of another size are
    resized); ``mean``/``std``: normalisation after scaling (``normalisation_stats``). Raw chips are cached in
    memory after the first read (``cache``) because training revisits every one each epoch and they are small.

    Raises:
        ValueError: ``labels`` and ``paths`` differ in length.
        InputDataError: (when an item is read) the file lacks one of ``bands``.
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
        arr = read_bands_by_name(self.paths[idx], self.bands)
        if self.cache:
            self._raw[idx] = arr
        return arr

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocess(self._read(idx)[None], self.low, self.high, self.input_size, self.mean, self.std)[0]
        y = -1.0 if self.labels is None else float(self.labels[idx])
        return x, torch.tensor(y, dtype=torch.float32)
