"""Detection chips: their side in composite pixels, cutting them out, and stretching them as training did.

A chip is what the classifier judges: a square of the composite covering the model's training footprint
(``model_chip_px``, checked against the config and the composite by ``composite_chip_px``), resized to the
model's ``input_size`` by ``garimpo.classifier.data.preprocess``. Each chip's own per-band P2/P98 is stretched
onto the positives' P2/P98 (``garimpo.pixels.matching.stretch_to_reference``), as every training image was:
``prepare_chips`` does it chip by chip, ``match_chips`` for a whole batch at once (bit-identical).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from garimpo.contract import check_composite, collection_units
from garimpo.geo.raster import Raster, read_header
from garimpo.pixels.matching import reference_bounds, stretch_to_reference


def model_chip_px(meta: Mapping, resolution: float) -> int:
    """Composite pixels per chip side (>= 1) that cover the model's training footprint ``meta["footprint_m"]``
    (metres) at ``resolution`` (metres per pixel); ``meta["input_size"]`` for a checkpoint that records no
    footprint. ``composite_chip_px`` is what refuses a composite of another pixel size or kind."""
    if meta.get("footprint_m"):
        return max(1, int(round(float(meta["footprint_m"]) / resolution)))
    return int(meta["input_size"])


def composite_chip_px(meta: Mapping, composite: str | Path, composite_meta: Mapping, chip_size_m: float) -> int:
    """Chip side (composite pixels) at which the model sees the ground it was trained on, checked before any scan.

    ``meta``: the checkpoint's metadata; ``composite``: the cell's composite GeoTIFF (its pixel size is read);
    ``composite_meta``: the composite's JSON (``source.collection`` gives its units; default
    ``sentinel-2-l2a``); ``chip_size_m``: config ``chips.size_m``, the chip's ground side in metres.

    Raises:
        ContractError: the model's footprint, pixel size or units disagree with them, or the checkpoint
            records none (see ``garimpo.contract.check_composite``).
        garimpo.errors.InputDataError: the composite cannot be read.
    """
    resolution = abs(read_header(composite).transform.a)
    collection = (composite_meta.get("source") or {}).get("collection", "sentinel-2-l2a")
    return check_composite(
        meta,
        chip_size_m,
        resolution,
        collection_units(collection),
        f"composite {composite} ({collection}, imagery.source.collection)",
    )


def extract_chip(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """float32 (bands, size, size) window of the (bands, H, W) ``image`` with top-left pixel (row, col), which
    may lie outside it; parts outside the image are NaN."""
    bands, h, w = image.shape
    chip = np.full((bands, size, size), np.nan, dtype=np.float32)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size, h), min(col + size, w)
    if r1 > r0 and c1 > c0:
        chip[:, r0 - row : r1 - row, c0 - col : c1 - col] = image[:, r0:r1, c0:c1]
    return chip


def prepare_chips(
    composite: Raster, windows: Sequence[tuple[int, int]], chip_px: int, stats: Mapping, bands: Sequence[str]
) -> np.ndarray:
    """float32 [N, len(bands), chip_px, chip_px]: the chips at top-left pixels ``windows`` of ``composite``,
    matched to the positive statistics ``stats`` (positive.json) exactly as the training images were, in
    ``bands`` order. The reference the batched ``match_chips`` is tested against.

    Raises:
        garimpo.errors.InputDataError: ``stats`` lack a band of the composite.
        ValueError: the composite lacks one of ``bands``.
    """
    low, high = reference_bounds(stats, composite.band_names)
    idx = [composite.band_names.index(b) for b in bands]
    chips = []
    for row, col in windows:
        chip = extract_chip(composite.array, row, col, chip_px)
        matched = stretch_to_reference(chip, low, high)
        chips.append(matched[idx])
    return np.stack(chips) if chips else np.zeros((0, len(bands), chip_px, chip_px), np.float32)


def gather_chips(buf: np.ndarray, rows: np.ndarray, cols: np.ndarray, chip: int) -> np.ndarray:
    """Chips [N, C, chip, chip] (``buf``'s dtype) at buffer-relative top-left pixels (rows, cols) of the
    (C, H, W) ``buf``; every chip must lie inside ``buf``."""
    n = len(rows)
    out = np.empty((n, buf.shape[0], chip, chip), dtype=buf.dtype)
    for k in range(n):
        r, c = rows[k], cols[k]
        out[k] = buf[:, r : r + chip, c : c + chip]
    return out


def reference_from_meta(meta: Mapping, stats: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positives' (P2, P98), float64 [len(meta["bands"])] reflectance, in ``meta["bands"]`` order: from
    ``stats`` (positive.json, via ``garimpo.pixels.matching.reference_bounds``) when given, else the
    checkpoint's ``low``/``high`` (training writes the same numbers there).

    Raises:
        garimpo.errors.InputDataError: ``stats`` lack one of the model's bands.
    """
    if stats is not None:
        return reference_bounds(stats, list(meta["bands"]))
    return np.asarray(meta["low"], np.float64), np.asarray(meta["high"], np.float64)


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

    ``ref_low``/``ref_high``: [C] reflectance the chips' ``p_low``/``p_high`` percentiles (0-100) are mapped
    to; a band whose spread is below ``min_spread`` (reflectance) is only shifted. NaN pixels are ignored by
    the percentiles and stay NaN. Returns float32 [N, C, H, W]. The defaults are ``stretch_to_reference``'s.

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
