"""Where a composite saw the ground: clear-pixel counts on the chip lattice's unit grid.

A composite is NaN where no scene gave a clear pixel (cloud, shadow, outside every swath). A chip mostly NaN
cannot show a mine, so "not detected" there means "not seen"; the change products need to tell the two apart.
The counts are kept per *unit*, a square of gcd(chip, stride) px: every lattice chip is a whole number of units
(its clear share is a sum of units), and so is every chip square a detection is made of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from garimpo.geo.raster import band_indexes, read_bands


def unit_px(chip_px: int, stride: int) -> int:
    """Side (px) of the unit squares chips and detections are made of: gcd(``chip_px``, ``stride``)."""
    return math.gcd(int(chip_px), int(stride))


def clear_pixel_counts(
    path: str | Path, unit: int, bands: Sequence[str] | None = None, rows_per_read: int = 2048
) -> np.ndarray:
    """Clear pixels per ``unit`` x ``unit`` px square of a composite: uint16 [ceil(H/unit), ceil(W/unit)].

    A pixel is clear when every band in ``bands`` (default: all of the file's) is finite after decoding
    (``garimpo.geo.raster.read_bands``: nodata and NaN are not). Squares along the right and bottom edges reach
    past the composite; their outside part counts as not clear, as the lattice's outer chips do. The file is
    read in strips of about ``rows_per_read`` rows (a multiple of ``unit``), so memory stays bounded.

    Raises:
        ValueError: ``unit`` is not in 1..255 (counts must fit uint16).
        InputDataError: a band of ``bands`` is missing.
        rasterio.errors.RasterioError: the file cannot be read.
    """
    if not 1 <= unit <= 255:
        raise ValueError(f"unit {unit} px must be in 1..255")
    with rasterio.open(path) as src:
        h, w = src.height, src.width
        idx = band_indexes(src, bands) if bands is not None else list(range(1, src.count + 1))
        uh, uw = -(-h // unit), -(-w // unit)
        out = np.zeros((uh, uw), np.uint16)
        step = max(unit, rows_per_read // unit * unit)
        for r0 in range(0, h, step):
            rows = min(step, h - r0)
            window = rasterio.windows.Window(0, r0, w, rows)
            clear = np.all(np.isfinite(read_bands(src, idx, window)), axis=0)
            padded = np.zeros((-(-rows // unit) * unit, uw * unit), bool)
            padded[:rows, :w] = clear
            counts = padded.reshape(-1, unit, uw, unit).sum(axis=(1, 3))
            out[r0 // unit : r0 // unit + counts.shape[0]] = counts
    return out
