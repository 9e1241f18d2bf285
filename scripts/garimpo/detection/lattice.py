"""The chip lattice of a composite, the blocks it is streamed in, and which lattice chips a candidate mask selects.

Chips of ``chip`` px have their top-left corners every ``stride`` px (``Lattice``). The scan reads the
composite in blocks (``iter_blocks``): a block owns the lattice origins in its rows/columns of the lattice,
so every chip is scored exactly once, and reads them plus a halo (default 64 px) that gives the proposer
its context (forest fraction box of 51 px, closing, opening, dilation) so block edges do not change the
candidate mask. All coordinates are pixels of the composite (rows down, columns right).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from garimpo.schema import default

DEFAULT_BLOCK_PX: int = default("detection.block_px")
# Wider than the spectral proposer's context: forest box half-side 25 px + closing 3 + dilation 2 (+ margin).
DEFAULT_HALO_PX = 64


@dataclass(frozen=True)
class Lattice:
    """Top-left corners of ``chip`` px chips every ``stride`` px over a ``height`` x ``width`` px composite.

    The last row/column of chips may stick out of the composite by less than a stride (its outside part is
    NaN, as in ``garimpo.detection.chips.extract_chip``), so every pixel is inside at least one chip.

    Raises:
        ValueError: ``chip`` or ``stride`` is below 1.
    """

    height: int
    width: int
    chip: int
    stride: int

    def __post_init__(self):
        if self.chip < 1 or self.stride < 1:
            raise ValueError(f"chip ({self.chip}) and stride ({self.stride}) must be >= 1")

    @staticmethod
    def _count(n: int, chip: int, stride: int) -> int:
        return 1 if n <= chip else int(math.ceil((n - chip) / stride)) + 1

    @property
    def n_rows(self) -> int:
        """Lattice rows (>= 1)."""
        return self._count(self.height, self.chip, self.stride)

    @property
    def n_cols(self) -> int:
        """Lattice columns (>= 1)."""
        return self._count(self.width, self.chip, self.stride)

    @property
    def size(self) -> int:
        """Chips in the lattice: ``n_rows * n_cols``."""
        return self.n_rows * self.n_cols

    def origins(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols): int64 [size] top-left pixel of every chip, row-major."""
        r = np.arange(self.n_rows) * self.stride
        c = np.arange(self.n_cols) * self.stride
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return rr.ravel(), cc.ravel()


@dataclass(frozen=True)
class Block:
    """Lattice indices [i0, i1) x [j0, j1) owned by a block, and the pixel window read for it.

    ``buf`` = (row0, col0, rows, cols): the (unclipped) pixel box holding the owned chips plus the
    halo, which may reach outside the composite; ``read`` = the part of it inside the composite
    (a rasterio Window, possibly empty).
    """

    i0: int
    i1: int
    j0: int
    j1: int
    buf: tuple[int, int, int, int]
    read: Window

    @property
    def n_chips(self) -> int:
        """Lattice chips the block owns."""
        return (self.i1 - self.i0) * (self.j1 - self.j0)

    def owned_box(self, lattice: Lattice) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1) of the pixels this block owns, in its ``read`` window's frame: blocks'
        owned boxes tile the composite, so per-pixel counts summed over blocks count each pixel once."""
        s = lattice.stride
        rr, cc = int(self.read.row_off), int(self.read.col_off)
        r0, c0 = max(self.i0 * s - rr, 0), max(self.j0 * s - cc, 0)
        r1 = int(self.read.height) if self.i1 == lattice.n_rows else max(self.i1 * s - rr, 0)
        c1 = int(self.read.width) if self.j1 == lattice.n_cols else max(self.j1 * s - cc, 0)
        return r0, r1, c0, c1


def iter_blocks(lattice: Lattice, block_px: int = DEFAULT_BLOCK_PX, halo: int = DEFAULT_HALO_PX) -> Iterator[Block]:
    """Blocks of about ``block_px`` px (a whole number of strides, at least one) tiling the lattice, row-major.

    ``halo``: pixels read around the owned chips on every side (clipped to the composite in ``read``).
    ``block_px`` defaults to the schema's ``detection.block_px``.
    """
    k = max(1, int(block_px) // lattice.stride)  # lattice steps per block
    s, chip = lattice.stride, lattice.chip
    for i0 in range(0, lattice.n_rows, k):
        i1 = min(i0 + k, lattice.n_rows)
        for j0 in range(0, lattice.n_cols, k):
            j1 = min(j0 + k, lattice.n_cols)
            r0, c0 = i0 * s - halo, j0 * s - halo
            r1, c1 = (i1 - 1) * s + chip + halo, (j1 - 1) * s + chip + halo
            rr0, cc0 = max(r0, 0), max(c0, 0)
            rr1, cc1 = min(r1, lattice.height), min(c1, lattice.width)
            yield Block(
                i0, i1, j0, j1, (r0, c0, r1 - r0, c1 - c0), Window(cc0, rr0, max(cc1 - cc0, 0), max(rr1 - rr0, 0))
            )


def pad_to_buffer(arr: np.ndarray, block: Block) -> np.ndarray:
    """A clipped read (..., rows, cols) placed into the block's full (unclipped) ``buf`` box: NaN (0 for an
    integer array) outside the composite; ``arr`` itself when the read was not clipped."""
    r0, c0, h, w = block.buf
    win = block.read
    if (win.row_off, win.col_off, win.height, win.width) == (r0, c0, h, w):
        return arr
    out = np.full(arr.shape[:-2] + (h, w), np.nan if arr.dtype.kind == "f" else 0, dtype=arr.dtype)
    rr, cc = int(win.row_off) - r0, int(win.col_off) - c0
    out[..., rr : rr + arr.shape[-2], cc : cc + arr.shape[-1]] = arr
    return out


# --------------------------------------------------------------------------- chips a mask selects


def _coarse_box(lo, hi, n_full: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution [lo, hi) clipped to [0, n_full) -> the coarse cells [lo', hi') it meets."""
    lo, hi = np.clip(lo, 0, n_full), np.clip(hi, 0, n_full)
    clo, chi = lo // f, -(-hi // f)
    return clo, np.where(hi > lo, chi, clo)  # an empty box stays empty


def boxes_touching(
    mask: np.ndarray, r0, c0, r1, c1, factor: int = 1, full_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Bool [N]: does each pixel box [r0, r1) x [c0, c1) (int arrays [N], ``mask``'s frame, clipped to it)
    hold a True pixel of the bool (h, w) ``mask``?

    ``factor``: ``mask`` is ``factor`` times coarser than the frame of the boxes (whose size is
    ``full_shape``, default (h * factor, w * factor)); a box then holds a True pixel iff a coarse cell it
    meets is True, exactly as for the mask expanded to full resolution, without building it. A summed-area
    table (int32: masks up to ~46k x 46k px) makes every box O(1).
    """
    h, w = mask.shape
    H, W = full_shape if full_shape is not None else (h * factor, w * factor)
    sat = np.zeros((h + 1, w + 1), np.int32)  # int32: a 46k x 46k mask still fits
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int32), axis=1, out=sat[1:, 1:])
    r0, r1 = _coarse_box(np.asarray(r0), np.asarray(r1), H, factor)
    c0, c1 = _coarse_box(np.asarray(c0), np.asarray(c1), W, factor)
    return (sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]) > 0


def chips_touching(
    mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    chip: int,
    factor: int = 1,
    full_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Bool [N]: does the ``chip`` px chip at (rows, cols) (int [N], ``mask``'s frame) hold a True pixel?
    (``factor``, ``full_shape``: as in ``boxes_touching``.)"""
    return boxes_touching(mask, rows, cols, rows + chip, cols + chip, factor, full_shape)


def count_in_box(mask: np.ndarray, r0: int, r1: int, c0: int, c1: int, factor: int = 1) -> int:
    """True pixels of the bool (h, w) ``mask`` expanded ``factor`` times, inside the full-resolution box
    [r0, r1) x [c0, c1) (pixels, >= 0)."""
    h, w = mask.shape
    # full-resolution pixels of each coarse row / column inside the box
    wr = np.clip(np.minimum((np.arange(h) + 1) * factor, r1) - np.maximum(np.arange(h) * factor, r0), 0, None)
    wc = np.clip(np.minimum((np.arange(w) + 1) * factor, c1) - np.maximum(np.arange(w) * factor, c0), 0, None)
    return int(wr @ mask.astype(np.int64) @ wc)


def centre_boxes(ii: np.ndarray, jj: np.ndarray, lattice: Lattice) -> tuple[np.ndarray, ...]:
    """Composite pixel boxes (r0, c0, r1, c1), int64 arrays [N], of the central stride x stride square of
    lattice chips (ii, jj) (lattice indices, int [N]).

    These squares tile the composite (those of the first/last row/column reach out to ±2**40 px, past its
    edge), so selecting the chips whose centre square holds a candidate classifies every candidate pixel in
    the one chip where it is most central.
    """
    s, off = lattice.stride, (lattice.chip - lattice.stride) // 2
    big = 1 << 40
    r0 = np.where(ii == 0, -big, ii * s + off)
    c0 = np.where(jj == 0, -big, jj * s + off)
    r1 = np.where(ii == lattice.n_rows - 1, big, ii * s + off + s)
    c1 = np.where(jj == lattice.n_cols - 1, big, jj * s + off + s)
    return r0, c0, r1, c1
