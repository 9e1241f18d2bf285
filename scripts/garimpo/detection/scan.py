"""Windowed, streaming chip scan of a cell's whole composite (any size, e.g. a 10980 x 10980 px granule).

Both modes score chips of ``chip_px`` (by default the model's training footprint in composite pixels,
``garimpo.detection.chips.model_chip_px``; each is resized to the model's ``input_size`` as in training) on one
sliding-window lattice (origins every ``stride`` px, default half a chip: ``garimpo.detection.lattice``) and
stream the composite in blocks, reading only a block plus a halo with rasterio, so peak memory depends on the
block size, not on the composite's:

- ``brute_force_scan``: every lattice chip is classified (the reference baseline);
- ``two_stage_scan``: the proposer named by ``proposer["method"]`` (looked up in the registry,
  ``garimpo.detection.proposers``) runs on each block (optionally on a 2x/4x decimated copy, ``decimate``:
  ``garimpo.detection.candidates``), and only lattice chips that contain at least one candidate pixel
  (``select="any"``) or hold one in their central stride x stride square (``select="centre"``: these squares
  tile the composite, ~2-4x fewer chips) are classified. With ``reference`` (an earlier composite of the same
  cell on the same pixel grid, config ``proposer.earlier_reference``), its B04/B08 over each block's window
  give the spectral proposer an earlier NDVI, so vegetation loss is an NDVI drop since then.

Peak memory: ~0.9 GB for torch + the model, plus ~0.5 GB per 2048 px block (GDAL cache capped).

Chips are prepared exactly as ``garimpo.detection.chips.prepare_chips`` does (per-chip, per-band P2/P98
stretched onto the positives' P2/P98, bands in ``meta["bands"]`` order), vectorised over a batch by
``match_chips``; then ``garimpo.classifier.data.preprocess`` as in training (``garimpo.detection.batching``).

Composites may be float reflectance (what the composite rule writes: NaN nodata) or integer DN with GDAL
scale/offset (e.g. uint16 reflectance x 10000, scale 1e-4, nodata 0): both are read as float32 reflectance
(``garimpo.geo.raster.read_bands``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import rasterio

from garimpo.contract import per_chip_matching
from garimpo.detection.batching import Batch, ChipScorer, prefetch, rebatch
from garimpo.detection.candidates import REFERENCE_BANDS, coarse_candidate_mask, proposer_method
from garimpo.detection.chip_scores import ChipScores
from garimpo.detection.chips import gather_chips, match_chips, model_chip_px, reference_from_meta
from garimpo.detection.lattice import (
    DEFAULT_BLOCK_PX,
    DEFAULT_HALO_PX,
    Block,
    Lattice,
    boxes_touching,
    centre_boxes,
    chips_touching,
    count_in_box,
    iter_blocks,
    pad_to_buffer,
)
from garimpo.detection.proposers import MaskPredictor, get
from garimpo.geo.raster import band_indexes, read_bands
from garimpo.schema import default

log = logging.getLogger(__name__)

GDAL_CACHE_BYTES = 192 * 2**20  # holds the GeoTIFF tiles shared with the next block of a row
SELECT = ("any", "centre")  # the schema's enum of detection.select


def _scan(
    path: str | Path,
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
    proposer_model: MaskPredictor | None = None,
    reference: str | Path | None = None,
) -> ChipScores:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    # read/propose/select/prepare run in the prefetch thread, overlapping the classifier; "wait" is
    # the time the classifier waited for chips.
    secs = {"read": 0.0, "propose": 0.0, "select": 0.0, "prepare": 0.0, "classify": 0.0, "wait": 0.0}
    model_bands = list(meta["bands"])
    per_chip = per_chip_matching(meta)  # as the checkpoint's training chips were stretched
    ref_low, ref_high = reference_from_meta(meta, stats)
    scorer = ChipScorer(model, meta, batch_size, precision, channels_last, tta, device)
    step = max(scorer.batch_size, 1024)
    prop_bands = list(get(proposer_method(proposer)).bands) if mode == "two_stage" else []
    # The earlier composite is read only for a proposer that uses it (not brute force, not segformer).
    if mode != "two_stage" or not get(proposer_method(proposer)).reference_section:
        reference = None
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

    def block_batches(block: Block, src, ref_src) -> Iterator[Batch]:
        t0 = time.perf_counter()
        arr = read_bands(src, indexes, block.read)
        earlier = None
        if ref_src is not None:  # the same window (halo included) of the same grid: pixel for pixel
            ref = read_bands(ref_src, band_indexes(ref_src, REFERENCE_BANDS), block.read)
            earlier = dict(zip(REFERENCE_BANDS, ref))
        t1 = time.perf_counter()
        secs["read"] += t1 - t0
        ii, jj = np.meshgrid(np.arange(block.i0, block.i1), np.arange(block.j0, block.j1), indexing="ij")
        rows, cols = (ii * stride).ravel(), (jj * stride).ravel()
        n_cand = 0
        if mode == "two_stage":
            mask = coarse_candidate_mask(arr, names, proposer, decimate, proposer_model, earlier)
            del earlier
            t2 = time.perf_counter()
            secs["propose"] += t2 - t1
            rr, cc = int(block.read.row_off), int(block.read.col_off)
            shape = arr.shape[1:]
            if select == "centre":
                b0, b1, b2, b3 = centre_boxes(ii.ravel(), jj.ravel(), lat)
                keep = boxes_touching(mask, b0 - rr, b1 - cc, b2 - rr, b3 - cc, decimate, shape)
            else:
                keep = chips_touching(mask, rows - rr, cols - cc, chip, decimate, shape)
            # candidate pixels in the part of the composite this block owns (each pixel counted once)
            n_cand = count_in_box(mask, *block.owned_box(lat), decimate)
            rows, cols = rows[keep], cols[keep]
            secs["select"] += time.perf_counter() - t2
        if len(rows) == 0:
            yield Batch(rows, cols, None, n_cand, 1)
            return
        buf = pad_to_buffer(arr[model_idx] if len(names) > len(model_bands) else arr, block)
        del arr
        r0, c0 = block.buf[0], block.buf[1]
        for k in range(0, len(rows), step):
            t3 = time.perf_counter()
            chips = gather_chips(buf, rows[k : k + step] - r0, cols[k : k + step] - c0, chip)
            if per_chip:
                chips = match_chips(chips, ref_low, ref_high, exact=exact_match)
            secs["prepare"] += time.perf_counter() - t3
            yield Batch(rows[k : k + step], cols[k : k + step], chips, n_cand if k == 0 else 0, int(k == 0))

    def batches() -> Iterator[Batch]:
        # The dataset is opened in the thread that reads it. Each window is read once: a small GDAL
        # block cache (the default is 5 % of RAM) keeps the peak memory independent of the composite's
        # size; GDAL_NUM_THREADS lets the rule's threads decompress GeoTIFF tiles in parallel.
        with contextlib.ExitStack() as stack:
            stack.enter_context(rasterio.Env(**gdal_env))
            src = stack.enter_context(rasterio.open(path))
            ref_src = stack.enter_context(rasterio.open(reference)) if reference is not None else None
            blocks = iter_blocks(lat, block_px, halo)
            gen = (b for block in blocks for b in block_batches(block, src, ref_src))
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

    return ChipScores(
        cat(out_r, np.int64),
        cat(out_c, np.int64),
        cat(out_s, np.float32),
        chip,
        stride,
        height,
        width,
        crs,
        transform,
        mode=mode,
        lattice_chips=lat.size,
        classifier_calls=scorer.calls,
        km2=height * width * res * res / 1e6,
        seconds=secs,
        candidate_pixels=n_cand,
        blocks=n_blocks,
    )


def brute_force_scan(
    path: str | Path,
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
) -> ChipScores:
    """Classify every chip of the sliding-window lattice of the composite at ``path`` (the reference baseline).

    ``model``/``meta``: the classifier and its checkpoint metadata (``bands``, ``low``/``high``, ``input_size``,
    ``mean``/``std``, ``footprint_m``, ``matching``). ``chip_px``: chip side in composite pixels (default the
    model's footprint, ``model_chip_px``); ``stride``: lattice step in px (default half a chip); ``block_px``,
    ``halo``: streaming block and its halo in px; ``batch_size``, ``precision`` (fp32/bf16), ``channels_last``,
    ``tta``: as ``ChipScorer``; ``stats``: positive.json (default the checkpoint's low/high); ``threads``: torch
    and GDAL threads; ``exact_match``: float64 chip matching (bit-identical to ``prepare_chips``, ~3x slower).
    Defaults of block_px, batch_size, precision and tta are the schema's ``detection.*``.

    Raises:
        garimpo.errors.InputDataError: the composite lacks a model band (by band description), or ``stats``
            lack one.
        ValueError: ``precision`` is unknown.
        rasterio.errors.RasterioError: the composite cannot be read.
    """
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


def check_reference_grid(path: str | Path, reference: str | Path) -> None:
    """Refuse an earlier composite ``reference`` that the composite at ``path`` cannot be compared with pixel
    for pixel.

    Raises:
        ValueError: its shape, transform or CRS differs from the composite's; the message names both files.
        garimpo.errors.InputDataError: it lacks B04 or B08 (by band description).
        rasterio.errors.RasterioError: either file cannot be opened.
    """
    with rasterio.open(path) as src, rasterio.open(reference) as ref:
        diff = []
        if (ref.height, ref.width) != (src.height, src.width):
            diff.append(f"shape {ref.height} x {ref.width} px != {src.height} x {src.width} px")
        if not ref.transform.almost_equals(src.transform):
            diff.append(f"transform {tuple(ref.transform)[:6]} != {tuple(src.transform)[:6]}")
        if ref.crs != src.crs:
            diff.append(f"CRS {ref.crs} != {src.crs}")
        if diff:
            raise ValueError(
                f"reference composite {reference} is not on the pixel grid of composite {path}: "
                + "; ".join(diff)
                + " (every period's composite of a cell must share one grid)"
            )
        band_indexes(ref, REFERENCE_BANDS)


def two_stage_scan(
    path: str | Path,
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
    proposer_model: MaskPredictor | None = None,
    reference: str | Path | None = None,
) -> ChipScores:
    """A proposer per block, then classify only the lattice chips holding a candidate pixel.

    ``proposer``: the config ``proposer`` section: ``method`` (a registered proposer, default the schema's)
    and its parameters (``spectral`` / ``segformer`` / ``smoothing`` overrides); ``proposer_model``: the model a
    proposer that needs one runs (a loaded ``SegformerProposer`` for segformer and union).
    ``decimate``: run the proposer on f x f block means (2 = 20 m, 4 = 40 m at 10 m pixels).
    ``select``: "any" classifies every chip holding a candidate pixel; "centre" only the chip whose
    central stride x stride square holds it (~4x fewer chips at half-chip stride; each candidate
    pixel is still seen, in the chip where it is most central).
    ``reference``: path of an earlier composite of the same cell on the same pixel grid (e.g. the previous
    period's), or None. For each block its B04 and B08 are read over the same window (halo included),
    decimated as the block's bands are, and their NDVI is the spectral proposer's ``reference_ndvi``
    (spectral, and union's spectral part): vegetation loss becomes an NDVI drop of more than
    ``proposer.spectral.ndvi_drop`` since then; where the earlier NDVI is NaN the reference-free test holds.
    Ignored by a proposer without a use for it (segformer). Other arguments: as ``brute_force_scan``.
    Defaults of decimate and select are the schema's ``detection.*``.

    Raises:
        ValueError: ``select`` is not one of ``SELECT``, the method is not registered, it needs a model and
            ``proposer_model`` is None, ``precision`` is unknown, or ``reference`` is on another grid (shape,
            transform or CRS) than the composite.
        garimpo.errors.InputDataError: the composite lacks a band of the model or of the proposer, or the
            reference lacks B04 or B08.
        rasterio.errors.RasterioError: the composite or the reference cannot be read.
    """
    if select not in SELECT:
        raise ValueError(f"select must be one of {SELECT}, got {select!r}")
    proposer_def = get(proposer_method(proposer))  # an unknown method fails here, before any read
    if proposer_def.needs_model and proposer_model is None:
        raise ValueError(
            f"proposer.method {proposer_def.name!r} needs its model passed to the scan (proposer_model=, e.g. "
            "garimpo.detection.segformer.SegformerProposer.from_pretrained(proposer.segformer.local_dir))"
        )
    if reference is not None:
        check_reference_grid(path, reference)  # before any block is read
        if not proposer_def.reference_section:
            log.info("proposer %r has no use for the earlier composite %s: ignored", proposer_def.name, reference)
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
        proposer_model=proposer_model,
        reference=reference,
    )
