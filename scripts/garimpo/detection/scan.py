"""Windowed, streaming chip scan of a whole scene (any size, e.g. a 10980 x 10980 px granule).

Both modes score chips of ``chip_px`` (by default the model's training footprint in raster pixels,
``model_chip_px``; each is resized to the model's ``input_size`` as in training) on one sliding-window
lattice (origins every ``stride`` px, default half a chip) and stream the raster in blocks,
reading only a block plus a halo with rasterio, so peak memory depends on the block size,
not on the raster size:

- ``brute_force_scan``: every lattice chip is classified (the reference baseline);
- ``two_stage_scan``: the spectral proposer (``garimpo.detection.proposers.propose``) runs on each block
  (optionally on a 2x/4x decimated copy, ``decimate``), and only lattice chips that contain at
  least one candidate pixel (``select="any"``) or hold one in their central stride x stride
  square (``select="centre"``: these squares tile the raster, ~2-4x fewer chips) are classified.

``chip_polygons`` turns positive chips into polygons (union of chip squares) in the raster CRS.
Peak memory: ~0.9 GB for torch + the model, plus ~0.5 GB per 2048 px block (GDAL cache capped).

A block owns the lattice origins in its rows/columns of the lattice, so every chip is scored
exactly once; the halo (default 64 px) gives the proposer its context (forest fraction box
of 51 px, closing, opening, dilation) so block edges do not change the candidate mask.

Chips are prepared exactly as ``garimpo.detection.chip_scores.prepare_chips`` does (per-chip, per-band P2/P98
stretched onto the positives' P2/P98, bands in ``meta["bands"]`` order), vectorised over a
batch by ``match_chips``; then ``garimpo.classifier.data.preprocess`` as in training.

Rasters may be float reflectance (what the scene rule writes: NaN nodata) or integer DN with
GDAL scale/offset (e.g. uint16 reflectance x 10000, scale 1e-4, nodata 0): both are read as
float32 reflectance.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box, shape

from garimpo.detection.proposers import DEFAULT_SMOOTHING, DEFAULT_SPECTRAL, SPECTRAL_BANDS, propose
from garimpo.schema import default

if TYPE_CHECKING:  # torch is imported where a model is used
    from torch import Tensor

log = logging.getLogger(__name__)

DEFAULT_BLOCK_PX: int = default("detection.block_px")
DEFAULT_HALO_PX = 64
GDAL_CACHE_BYTES = 192 * 2**20  # holds the tiles shared with the next block of a row


# --------------------------------------------------------------------------- lattice and blocks


@dataclass(frozen=True)
class Lattice:
    """Top-left corners of ``chip`` px chips every ``stride`` px over a ``height`` x ``width`` raster.

    The last row/column of chips may stick out of the raster by less than a stride (its outside
    part is NaN, as in ``extract_chip``), so every pixel is inside at least one chip.
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
        return self._count(self.height, self.chip, self.stride)

    @property
    def n_cols(self) -> int:
        return self._count(self.width, self.chip, self.stride)

    @property
    def size(self) -> int:
        return self.n_rows * self.n_cols

    def origins(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of every chip, row-major."""
        r = np.arange(self.n_rows) * self.stride
        c = np.arange(self.n_cols) * self.stride
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return rr.ravel(), cc.ravel()


@dataclass(frozen=True)
class Block:
    """Lattice indices [i0, i1) x [j0, j1) owned by a block, and the pixel window read for it.

    ``buf`` = (row0, col0, rows, cols): the (unclipped) pixel box holding the owned chips plus the
    halo; ``read`` = the part of it inside the raster (rasterio Window).
    """

    i0: int
    i1: int
    j0: int
    j1: int
    buf: tuple[int, int, int, int]
    read: Window

    @property
    def n_chips(self) -> int:
        return (self.i1 - self.i0) * (self.j1 - self.j0)

    def owned_box(self, lattice: Lattice) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1) of the pixels this block owns, in its ``read`` window's frame: blocks'
        owned boxes tile the raster, so per-pixel counts summed over blocks count each pixel once."""
        s = lattice.stride
        rr, cc = int(self.read.row_off), int(self.read.col_off)
        r0, c0 = max(self.i0 * s - rr, 0), max(self.j0 * s - cc, 0)
        r1 = int(self.read.height) if self.i1 == lattice.n_rows else max(self.i1 * s - rr, 0)
        c1 = int(self.read.width) if self.j1 == lattice.n_cols else max(self.j1 * s - cc, 0)
        return r0, r1, c0, c1


def iter_blocks(lattice: Lattice, block_px: int = DEFAULT_BLOCK_PX, halo: int = DEFAULT_HALO_PX) -> Iterator[Block]:
    """Blocks of about ``block_px`` px (a whole number of strides) tiling the lattice, row-major."""
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


# --------------------------------------------------------------------------- reading


def band_indexes(src, names: Sequence[str]) -> list[int]:
    """1-based band indexes of ``names`` from the band descriptions."""
    desc = [d.strip() if d else f"band{i + 1}" for i, d in enumerate(src.descriptions)]
    missing = [n for n in names if n not in desc]
    if missing:
        raise KeyError(f"{src.name} lacks bands {missing}; its band descriptions are {desc}")
    return [desc.index(n) + 1 for n in names]


def read_reflectance(src, indexes: Sequence[int], window: Window) -> np.ndarray:
    """float32 (bands, rows, cols) reflectance of a window: GDAL scale/offset applied, nodata -> NaN."""
    arr = src.read(list(indexes), window=window)
    nodata = src.nodata
    if np.issubdtype(arr.dtype, np.integer):
        bad = arr == nodata if nodata is not None else None
        out = arr.astype(np.float32)
        scales = [src.scales[i - 1] for i in indexes]
        offsets = [src.offsets[i - 1] for i in indexes]
        for b, (sc, of) in enumerate(zip(scales, offsets)):
            if sc != 1.0 or of != 0.0:
                out[b] *= np.float32(sc)
                out[b] += np.float32(of)
        if bad is not None:
            out[bad] = np.nan
        return out
    out = arr.astype(np.float32, copy=False)
    if nodata is not None and not np.isnan(nodata):
        out[out == nodata] = np.nan
    return out


def _pad_to_buffer(arr: np.ndarray, block: Block) -> np.ndarray:
    """Place a clipped read into the block's full (unclipped) box, NaN outside the raster."""
    r0, c0, h, w = block.buf
    win = block.read
    if (win.row_off, win.col_off, win.height, win.width) == (r0, c0, h, w):
        return arr
    out = np.full(arr.shape[:-2] + (h, w), np.nan if arr.dtype.kind == "f" else 0, dtype=arr.dtype)
    rr, cc = int(win.row_off) - r0, int(win.col_off) - c0
    out[..., rr : rr + arr.shape[-2], cc : cc + arr.shape[-1]] = arr
    return out


# --------------------------------------------------------------------------- chip preparation


def _percentiles_last_axis(flat: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """np.nanpercentile(flat, qs, axis=-1) for NaN-free rows, computed with one partition along the
    contiguous last axis (numpy moves the axis first, which is slow for many short rows).

    Same virtual index and the same lerp as numpy's "linear" method, so results are bit-identical.
    """
    n = flat.shape[-1]
    q = np.asarray(qs, dtype=np.float64) / 100.0
    virtual = (n - 1) * q
    prev = np.floor(virtual).astype(np.intp)
    nxt = np.minimum(prev + 1, n - 1)
    gamma = virtual - prev
    kth = np.unique(np.concatenate([prev, nxt]))
    part = np.partition(flat, kth, axis=-1)
    out = []
    for k in range(len(q)):
        a, b = part[..., prev[k]], part[..., nxt[k]]
        diff = b - a
        g = gamma[k]
        out.append(b - diff * (1 - g) if g >= 0.5 else a + diff * g)
    return np.stack(out)


def match_chips(
    chips: np.ndarray,
    ref_low: np.ndarray,
    ref_high: np.ndarray,
    p_low: float = 2.0,
    p_high: float = 98.0,
    min_spread: float = 1e-4,
    exact: bool = True,
) -> np.ndarray:
    """``garimpo.pixels.matching.stretch_to_reference`` applied to every chip of [N, C, H, W] at once.

    ``exact``: the same float64 arithmetic as stretch_to_reference (bit-identical arrays);
    otherwise the linear map is applied in float32 in place (~3x faster, within float32 rounding:
    |diff| <~ 1e-7 x the value).
    """
    chips = np.asarray(chips, dtype=np.float32)
    n, c = chips.shape[:2]
    if n == 0:
        return chips.copy()
    flat = chips.reshape(n, c, -1)
    has_nan = np.isnan(flat).any(axis=-1)
    lo_hi = np.empty((2, n, c), dtype=np.float64)
    clean = ~has_nan
    if clean.all():
        lo_hi[:] = _percentiles_last_axis(flat, (p_low, p_high))
    else:
        if clean.any():
            lo_hi[:, clean] = _percentiles_last_axis(flat[clean], (p_low, p_high))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo_hi[:, has_nan] = np.nanpercentile(flat[has_nan], [p_low, p_high], axis=-1)
    lo, hi = lo_hi[0][:, :, None, None], lo_hi[1][:, :, None, None]
    ref_low = np.asarray(ref_low, dtype=np.float64)[None, :, None, None]
    ref_high = np.asarray(ref_high, dtype=np.float64)[None, :, None, None]
    spread = hi - lo
    flat_band = ~(spread > min_spread)
    gain = np.where(flat_band, 1.0, (ref_high - ref_low) / np.where(flat_band, 1.0, spread))
    if exact:
        out = (chips - np.nan_to_num(lo)) * gain + ref_low
        return out.astype(np.float32)
    out = chips - np.nan_to_num(lo).astype(np.float32)
    out *= gain.astype(np.float32)
    out += np.broadcast_to(ref_low, gain.shape).astype(np.float32)
    return out


def reference_from_meta(meta: Mapping, stats: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positives' (P2, P98) in ``meta["bands"]`` order: from ``stats`` (positive.json) when given,
    else the checkpoint's low/high (training writes the same numbers there)."""
    bands = list(meta["bands"])
    if stats is not None:
        return (
            np.array([stats["bands"][b]["p2"] for b in bands], np.float64),
            np.array([stats["bands"][b]["p98"] for b in bands], np.float64),
        )
    return np.asarray(meta["low"], np.float64), np.asarray(meta["high"], np.float64)


def gather_chips(buf: np.ndarray, rows: np.ndarray, cols: np.ndarray, chip: int) -> np.ndarray:
    """Chips [N, C, chip, chip] at buffer-relative (rows, cols) (every chip inside ``buf``)."""
    n = len(rows)
    out = np.empty((n, buf.shape[0], chip, chip), dtype=buf.dtype)
    for k in range(n):
        r, c = rows[k], cols[k]
        out[k] = buf[:, r : r + chip, c : c + chip]
    return out


# --------------------------------------------------------------------------- classifier


class ChipScorer:
    """Batched P(mining) for matched chips: inference_mode, optional channels_last / bf16 / TTA.

    With ``precision="fp32"``, ``channels_last=False`` and ``tta=False`` the scores are those of
    ``garimpo.classifier.infer.predict_proba``.
    """

    def __init__(
        self,
        model,
        meta: Mapping,
        batch_size: int = 256,
        precision: str = "fp32",
        channels_last: bool = True,
        tta: bool = False,
        device: str | None = None,
    ):
        import torch

        from garimpo.classifier.model import PRECISIONS

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}; choose one of {PRECISIONS}")
        self.torch = torch
        self.meta = meta
        self.batch_size = int(batch_size)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.tta = bool(tta)
        self.device = torch.device(device) if device else next(model.parameters()).device
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.calls = 0  # images through the network (8 per chip with TTA)

    def __call__(self, matched: np.ndarray) -> np.ndarray:
        from garimpo.classifier.data import preprocess
        from garimpo.classifier.model import autocast, dihedral_views

        torch = self.torch
        m = self.meta
        args = (m["low"], m["high"], int(m["input_size"]), m["mean"], m["std"])
        out = []
        with torch.inference_mode(), autocast(self.device, self.precision):
            for i in range(0, len(matched), self.batch_size):
                x = preprocess(matched[i : i + self.batch_size], *args).to(self.device)
                views = dihedral_views(x) if self.tta else [x]
                probs: Tensor | int = 0
                for v in views:
                    if self.channels_last:
                        v = v.contiguous(memory_format=torch.channels_last)
                    probs = probs + torch.sigmoid(self.model(v).float()).flatten()
                    self.calls += len(v)
                assert not isinstance(probs, int)  # views is never empty
                out.append((probs / len(views)).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- proposer per block


def scale_proposer_params(params: Mapping | None, factor: int) -> dict:
    """The proposer config for pixels ``factor`` times coarser (radii/areas in px scaled down)."""
    params = dict(params or {})
    if factor == 1:
        return params
    spectral = {**DEFAULT_SPECTRAL, **dict(params.get("spectral", {}))}
    spectral["forest_context_px"] = max(1, int(round(spectral["forest_context_px"] / factor)))
    sm = {**DEFAULT_SMOOTHING, **dict(params.get("smoothing", {}))}
    sm = {
        "closing_radius_px": int(math.ceil(sm["closing_radius_px"] / factor)),
        # An opening of radius >= 1 coarse px would erase objects 2 coarse px wide: keep it at
        # 10 m scale only.
        "opening_radius_px": int(sm["opening_radius_px"] // factor),
        "min_area_px": max(1, int(math.floor(sm["min_area_px"] / factor**2))),
        "dilate_px": int(math.ceil(sm["dilate_px"] / factor)),
    }
    return {**params, "spectral": spectral, "smoothing": sm}


def block_mean_nan(arr: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks of the last two axes; a partial edge block is padded with NaN."""
    if f == 1:
        return arr
    *lead, h, w = arr.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    if (H, W) != (h, w):
        pad = np.full((*lead, H, W), np.nan, arr.dtype)
        pad[..., :h, :w] = arr
        arr = pad
    # Sum of the f*f strided sub-grids: ~8x faster than reshape(...).mean(axis=(-3, -1)), which
    # reduces over two non-contiguous axes; NaN propagates the same way.
    out = np.array(arr[..., 0::f, 0::f], dtype=np.float32)  # a copy: arr is left as it is
    for di in range(f):
        for dj in range(f):
            if di or dj:
                out += arr[..., di::f, dj::f]
    out *= np.float32(1.0 / (f * f))
    return out


def coarse_candidate_mask(
    arr: np.ndarray, band_names: Sequence[str], proposer: Mapping | None = None, decimate: int = 1, segformer=None
) -> np.ndarray:
    """Proposer mask of a (bands, rows, cols) window computed on ``decimate`` x ``decimate`` means,
    at that coarse resolution (ceil(rows / decimate), ceil(cols / decimate)).  ``segformer`` (a
    loaded SegFormer predictor) is needed for the segformer and union methods."""
    proposer = dict(proposer or {})
    method = proposer.pop("method", "spectral")
    if method != "spectral" and segformer is None:
        raise ValueError(f"proposer.method {method!r} needs the SegFormer model passed to the scan")
    proposer = {k: v for k, v in proposer.items() if k in ("spectral", "smoothing", "segformer")}
    # only the bands a proposer reads are decimated (the model may carry more, e.g. B12)
    bands = {n: block_mean_nan(arr[i], decimate) for i, n in enumerate(band_names) if n in SPECTRAL_BANDS}
    return propose(bands, method, scale_proposer_params(proposer, decimate), segformer=segformer)


def candidate_mask(
    arr: np.ndarray, band_names: Sequence[str], proposer: Mapping | None = None, decimate: int = 1, segformer=None
) -> np.ndarray:
    """``coarse_candidate_mask`` expanded back to the window's full resolution."""
    mask = coarse_candidate_mask(arr, band_names, proposer, decimate, segformer)
    if decimate > 1:
        mask = np.repeat(np.repeat(mask, decimate, axis=0), decimate, axis=1)[: arr.shape[1], : arr.shape[2]]
    return mask


def _coarse_box(lo, hi, n_full: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution [lo, hi) clipped to [0, n_full) -> the coarse cells [lo', hi') it meets."""
    lo, hi = np.clip(lo, 0, n_full), np.clip(hi, 0, n_full)
    clo, chi = lo // f, -(-hi // f)
    return clo, np.where(hi > lo, chi, clo)  # an empty box stays empty


def boxes_touching(
    mask: np.ndarray, r0, c0, r1, c1, factor: int = 1, full_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Does each pixel box [r0, r1) x [c0, c1) (``mask``'s frame, clipped to it) hold a True pixel?

    ``factor``: ``mask`` is ``factor`` times coarser than the frame of the boxes (whose size is
    ``full_shape``); a box then holds a True pixel iff a coarse cell it meets is True, exactly as
    for the mask expanded to full resolution, without building it.
    """
    h, w = mask.shape
    H, W = full_shape if full_shape is not None else (h * factor, w * factor)
    sat = np.zeros((h + 1, w + 1), np.int32)  # int32: a 46k x 46k mask still fits
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int32), axis=1, out=sat[1:, 1:])
    r0, r1 = _coarse_box(np.asarray(r0), np.asarray(r1), H, factor)
    c0, c1 = _coarse_box(np.asarray(c0), np.asarray(c1), W, factor)
    return (sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]) > 0


def count_in_box(mask: np.ndarray, r0: int, r1: int, c0: int, c1: int, factor: int = 1) -> int:
    """True pixels of ``mask`` expanded ``factor`` times, inside the full-resolution box [r0, r1) x [c0, c1)."""
    h, w = mask.shape
    # full-resolution pixels of each coarse row / column inside the box
    wr = np.clip(np.minimum((np.arange(h) + 1) * factor, r1) - np.maximum(np.arange(h) * factor, r0), 0, None)
    wc = np.clip(np.minimum((np.arange(w) + 1) * factor, c1) - np.maximum(np.arange(w) * factor, c0), 0, None)
    return int(wr @ mask.astype(np.int64) @ wc)


def chips_touching(
    mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    chip: int,
    factor: int = 1,
    full_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """For chips at (rows, cols) of ``mask``'s frame: does the chip hold at least one True pixel?
    (``factor``, ``full_shape``: as in ``boxes_touching``.)"""
    return boxes_touching(mask, rows, cols, rows + chip, cols + chip, factor, full_shape)


def centre_boxes(ii: np.ndarray, jj: np.ndarray, lattice: Lattice) -> tuple[np.ndarray, ...]:
    """Raster boxes (r0, c0, r1, c1) of the central stride x stride square of lattice chips (ii, jj).

    These squares tile the raster (those of the first/last row/column reach out to its edge), so
    selecting the chips whose centre square holds a candidate classifies every candidate pixel in
    the one chip where it is most central.
    """
    s, off = lattice.stride, (lattice.chip - lattice.stride) // 2
    big = 1 << 40
    r0 = np.where(ii == 0, -big, ii * s + off)
    c0 = np.where(jj == 0, -big, jj * s + off)
    r1 = np.where(ii == lattice.n_rows - 1, big, ii * s + off + s)
    c1 = np.where(jj == lattice.n_cols - 1, big, jj * s + off + s)
    return r0, c0, r1, c1


# --------------------------------------------------------------------------- the scans


def model_chip_px(meta: Mapping, resolution: float) -> int:
    """Raster pixels per chip side that cover the model's training footprint (``meta["footprint_m"]``);
    ``input_size`` for a checkpoint that records no footprint. ``garimpo.contract.check_scene`` is what
    refuses a raster of another pixel size or kind."""
    if meta.get("footprint_m"):
        return max(1, int(round(float(meta["footprint_m"]) / resolution)))
    return int(meta["input_size"])


@dataclass
class ScanResult:
    """Chip scores of one scan. rows/cols: chip top-left pixel in the raster; scores: P(mining)."""

    mode: str
    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    chip_px: int
    stride: int
    height: int
    width: int
    crs: str | None
    transform: Affine
    lattice_chips: int
    classifier_calls: int
    km2: float
    seconds: dict = field(default_factory=dict)
    candidate_pixels: int = 0
    blocks: int = 0

    @property
    def chips_classified(self) -> int:
        return len(self.scores)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "chips_classified": self.chips_classified,
            "lattice_chips": self.lattice_chips,
            "classifier_calls": self.classifier_calls,
            "km2": round(self.km2, 3),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "candidate_fraction": round(self.candidate_pixels / max(self.height * self.width, 1), 5),
            "blocks": self.blocks,
            "chip_px": self.chip_px,
            "stride": self.stride,
        }


def prefetch(items, ahead: int = 1) -> Iterator:
    """The items of an iterable, produced in a background thread at most ``ahead`` items ahead of
    the consumer, so at most ``ahead + 1`` of them are alive at once (bounded memory).

    GDAL reads, NumPy and most of SciPy release the GIL, so block k+1 is read and proposed while
    block k is classified. An exception while producing an item is raised in the consumer.
    """
    slots = threading.Semaphore(ahead + 1)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        it = iter(items)
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(it)
                except StopIteration:
                    break
                results.put((True, item))
            results.put((None, None))
        except BaseException as exc:  # handed to the consumer
            results.put((False, exc))
        finally:
            if hasattr(it, "close"):
                it.close()  # a generator's with-blocks (open datasets) end in this thread

    worker = threading.Thread(target=work, name="scan-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = results.get()
            if ok is None:
                return
            if not ok:
                raise value
            yield value
            slots.release()  # the consumer is done with the previous result
            del value
    finally:
        stop.set()
        worker.join()


@dataclass
class _Batch:
    """Chips ready for the classifier (stretched as in training) with their lattice origins, and
    the candidate pixels / blocks finished since the last batch (a block with nothing to classify
    still counts)."""

    rows: np.ndarray
    cols: np.ndarray
    chips: np.ndarray | None
    n_candidates: int = 0
    blocks: int = 0


def rebatch(batches: Iterator[_Batch], size: int) -> Iterator[_Batch]:
    """The same chips in batches of exactly ``size`` (the last one smaller), across block borders.

    Fixed-size batches let oneDNN reuse its compiled kernels; a block's last partial batch would
    otherwise give a new batch shape almost every time in a sparse two-stage scan.
    """

    def join(parts: list[_Batch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(parts) == 1:
            chips = parts[0].chips
            assert chips is not None  # only batches with chips are kept in parts
            return parts[0].rows, parts[0].cols, chips
        return (
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.chips for p in parts]),
        )

    parts: list[_Batch] = []
    n = cand = blocks = 0
    for b in batches:
        cand += b.n_candidates
        blocks += b.blocks
        if b.chips is not None and len(b.rows):
            parts.append(b)
            n += len(b.rows)
        while n >= size:
            rows, cols, chips = join(parts)
            n -= size
            # copies, so neither piece keeps the other alive through a shared base array
            parts = [_Batch(rows[size:], cols[size:], chips[size:].copy())] if n else []
            head = chips[:size] if chips.shape[0] == size else chips[:size].copy()
            del chips
            yield _Batch(rows[:size], cols[:size], head, cand, blocks)
            cand = blocks = 0
    if n or cand or blocks:
        empty = np.zeros(0, np.int64)
        yield _Batch(*join(parts), cand, blocks) if parts else _Batch(empty, empty, None, cand, blocks)


def _scan(
    path,
    model,
    meta: Mapping,
    mode: str,
    *,
    stride: int | None,
    block_px: int,
    halo: int,
    batch_size: int,
    precision: str,
    channels_last: bool,
    tta: bool,
    stats: Mapping | None,
    threads: int | None,
    proposer: Mapping | None,
    decimate: int,
    device: str | None,
    exact_match: bool = False,
    select: str = "any",
    chip_px: int | None = None,
    segformer=None,
) -> ScanResult:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    # read/propose/select/prepare run in the prefetch thread, overlapping the classifier; "wait" is
    # the time the classifier waited for chips.
    secs = {"read": 0.0, "propose": 0.0, "select": 0.0, "prepare": 0.0, "classify": 0.0, "wait": 0.0}
    model_bands = list(meta["bands"])
    per_tile = bool((meta.get("matching") or {}).get("per_tile", True))
    ref_low, ref_high = reference_from_meta(meta, stats)
    scorer = ChipScorer(model, meta, batch_size, precision, channels_last, tta, device)
    step = max(scorer.batch_size, 1024)
    prop_bands = list(SPECTRAL_BANDS) if mode == "two_stage" else []
    names = model_bands + [b for b in prop_bands if b not in model_bands]
    model_idx = list(range(len(model_bands)))
    gdal_env = dict(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS=str(int(threads or 1)))
    with rasterio.open(path) as src:
        indexes = band_indexes(src, names)
        crs = src.crs.to_string() if src.crs else None
        transform, height, width, res = src.transform, src.height, src.width, abs(src.transform.a)
        chip = int(chip_px or model_chip_px(meta, res))  # resized to input_size by preprocess, as in training
        stride = int(stride or max(1, chip // 2))
        lat = Lattice(src.height, src.width, chip, stride)

    def block_batches(block: Block, src) -> Iterator[_Batch]:
        t0 = time.perf_counter()
        arr = read_reflectance(src, indexes, block.read)
        t1 = time.perf_counter()
        secs["read"] += t1 - t0
        ii, jj = np.meshgrid(np.arange(block.i0, block.i1), np.arange(block.j0, block.j1), indexing="ij")
        rows, cols = (ii * stride).ravel(), (jj * stride).ravel()
        n_cand = 0
        if mode == "two_stage":
            mask = coarse_candidate_mask(arr, names, proposer, decimate, segformer)
            t2 = time.perf_counter()
            secs["propose"] += t2 - t1
            rr, cc = int(block.read.row_off), int(block.read.col_off)
            shape = arr.shape[1:]
            if select == "centre":
                b0, b1, b2, b3 = centre_boxes(ii.ravel(), jj.ravel(), lat)
                keep = boxes_touching(mask, b0 - rr, b1 - cc, b2 - rr, b3 - cc, decimate, shape)
            else:
                keep = chips_touching(mask, rows - rr, cols - cc, chip, decimate, shape)
            # candidate pixels in the part of the raster this block owns (each pixel counted once)
            n_cand = count_in_box(mask, *block.owned_box(lat), decimate)
            rows, cols = rows[keep], cols[keep]
            secs["select"] += time.perf_counter() - t2
        if len(rows) == 0:
            yield _Batch(rows, cols, None, n_cand, 1)
            return
        buf = _pad_to_buffer(arr[model_idx] if len(names) > len(model_bands) else arr, block)
        del arr
        r0, c0 = block.buf[0], block.buf[1]
        for k in range(0, len(rows), step):
            t3 = time.perf_counter()
            chips = gather_chips(buf, rows[k : k + step] - r0, cols[k : k + step] - c0, chip)
            # The checkpoint says whether training tiles were stretched one by one.
            if per_tile:
                chips = match_chips(chips, ref_low, ref_high, exact=exact_match)
            secs["prepare"] += time.perf_counter() - t3
            yield _Batch(rows[k : k + step], cols[k : k + step], chips, n_cand if k == 0 else 0, int(k == 0))

    def batches() -> Iterator[_Batch]:
        # The dataset is opened in the thread that reads it. Each window is read once: a small GDAL
        # block cache (the default is 5 % of RAM) keeps the peak memory independent of the raster
        # size; GDAL_NUM_THREADS lets the rule's threads decompress tiles in parallel.
        with rasterio.Env(**gdal_env), rasterio.open(path) as src:
            blocks = iter_blocks(lat, block_px, halo)
            gen = (b for block in blocks for b in block_batches(block, src))
            yield from rebatch(gen, scorer.batch_size)

    out_r, out_c, out_s = [], [], []
    n_cand = 0
    n_blocks = 0
    # Two batches ahead at most: the producer holds one block (~0.1 GB at 2048 px) plus <= 2 x 1024 chips.
    stream = prefetch(batches(), ahead=1)
    while True:
        t_wait = time.perf_counter()
        item = next(stream, None)
        secs["wait"] += time.perf_counter() - t_wait
        if item is None:
            break
        n_blocks += item.blocks
        n_cand += item.n_candidates
        if len(item.rows) == 0:
            continue
        t4 = time.perf_counter()
        out_s.append(scorer(item.chips))
        secs["classify"] += time.perf_counter() - t4
        out_r.append(item.rows)
        out_c.append(item.cols)
        del item
    secs["total"] = time.perf_counter() - t_start

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return ScanResult(
        mode,
        cat(out_r, np.int64),
        cat(out_c, np.int64),
        cat(out_s, np.float32),
        chip,
        stride,
        height,
        width,
        crs,
        transform,
        lat.size,
        scorer.calls,
        height * width * res * res / 1e6,
        secs,
        n_cand,
        n_blocks,
    )


def brute_force_scan(
    path,
    model,
    meta: Mapping,
    *,
    chip_px: int | None = None,
    stride: int | None = None,
    block_px: int = DEFAULT_BLOCK_PX,
    halo: int = DEFAULT_HALO_PX,
    batch_size: int = default("detection.batch_size"),
    precision: str = default("detection.precision"),
    channels_last: bool = True,
    tta: bool = default("detection.tta"),
    stats: Mapping | None = None,
    threads: int | None = None,
    device: str | None = None,
    exact_match: bool = False,
) -> ScanResult:
    """Classify every chip of the sliding-window lattice (the reference baseline)."""
    return _scan(
        path,
        model,
        meta,
        "brute_force",
        stride=stride,
        block_px=block_px,
        halo=halo,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        tta=tta,
        stats=stats,
        threads=threads,
        proposer=None,
        decimate=1,
        device=device,
        exact_match=exact_match,
        chip_px=chip_px,
    )


def two_stage_scan(
    path,
    model,
    meta: Mapping,
    *,
    proposer: Mapping | None = None,
    decimate: int = default("detection.proposer_decimate"),
    chip_px: int | None = None,
    stride: int | None = None,
    block_px: int = DEFAULT_BLOCK_PX,
    halo: int = DEFAULT_HALO_PX,
    batch_size: int = default("detection.batch_size"),
    precision: str = default("detection.precision"),
    channels_last: bool = True,
    tta: bool = default("detection.tta"),
    stats: Mapping | None = None,
    threads: int | None = None,
    device: str | None = None,
    exact_match: bool = False,
    select: str = default("detection.select"),
    segformer=None,
) -> ScanResult:
    """Spectral proposer per block, then classify only the lattice chips holding a candidate pixel.

    ``proposer``: the config ``proposer`` section (``spectral`` / ``smoothing`` overrides);
    ``decimate``: run the proposer on f x f block means (2 = 20 m, 4 = 40 m at 10 m pixels).
    ``select``: "any" classifies every chip holding a candidate pixel; "centre" only the chip whose
    central stride x stride square holds it (~4x fewer chips at half-chip stride; each candidate
    pixel is still seen, in the chip where it is most central).
    """
    if select not in ("any", "centre"):
        raise ValueError(f"select must be 'any' or 'centre', got {select!r}")
    if halo < 32:
        log.warning("halo %d px is smaller than the proposer's context (~32 px): block edges may differ", halo)
    return _scan(
        path,
        model,
        meta,
        "two_stage",
        stride=stride,
        block_px=block_px,
        halo=halo,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        tta=tta,
        stats=stats,
        threads=threads,
        proposer=proposer,
        decimate=int(decimate),
        device=device,
        exact_match=exact_match,
        select=select,
        chip_px=chip_px,
        segformer=segformer,
    )


# --------------------------------------------------------------------------- chips -> polygons


def chip_polygons(result: ScanResult, threshold: float) -> list[dict]:
    """Positive chips (score >= threshold) as polygons in the raster CRS: the union of chip squares,
    one dict per connected group with its geometry, max score, chip count and area (km²).

    Chip squares are painted on a grid of gcd(chip, stride) px cells and vectorised, then clipped
    to the raster extent.
    """
    pos = result.scores >= threshold
    if not pos.any():
        return []
    chip, stride = result.chip_px, result.stride
    cell = math.gcd(chip, stride)
    k = chip // cell
    rows, cols, scores = result.rows[pos] // cell, result.cols[pos] // cell, result.scores[pos]
    h = int(rows.max()) + k + 1
    w = int(cols.max()) + k + 1
    hit = np.zeros((h, w), np.uint8)
    best = np.zeros((h, w), np.float32)
    n_chips = np.zeros((h, w), np.int32)
    for di in range(k):
        for dj in range(k):
            hit[rows + di, cols + dj] = 1
            np.maximum.at(best, (rows + di, cols + dj), scores)
    np.add.at(n_chips, (rows, cols), 1)
    from scipy import ndimage

    labels, n = ndimage.label(hit)
    tr = result.transform @ Affine.scale(cell, cell)
    left, top = result.transform.c, result.transform.f
    right = left + result.transform.a * result.width
    bottom = top + result.transform.e * result.height
    extent = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    max_score = ndimage.maximum(best, labels, index=np.arange(1, n + 1))
    counts = ndimage.sum(n_chips, labels, index=np.arange(1, n + 1))
    out = []
    geoms: dict[int, list] = {}
    for geom, value in rasterio.features.shapes(labels.astype(np.int32), mask=labels > 0, transform=tr, connectivity=4):
        geoms.setdefault(int(value), []).append(shape(geom))
    from shapely.ops import unary_union

    for value in sorted(geoms):
        g = unary_union(geoms[value]).intersection(extent)
        if g.is_empty:
            continue
        out.append(
            {
                "geometry": g,
                "score": float(max_score[value - 1]),
                "n_chips": int(counts[value - 1]),
                "area_km2": g.area / 1e6,
            }
        )
    return out
