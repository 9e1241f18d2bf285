"""The end-to-end bench's acts (``scripts/bench_e2e.py`` is its command line): synthetic Sentinel-2 L2A items of
one granule stored as the imagery services store them, the product's composite and scan of that granule as one
cell, and the decode floor they are measured against.

Items: the bench granule (``garimpo.synthetic.bench_world``: reflectance x 10000, six bands at 10 m) seen on
``n`` dates of one year, each with its own gain, noise, clouds (smooth noise thresholded to 5-40 % cover, bright
cloud with a thin cirrus rim, its shadow shifted away) and, on the second and fifth item, a part out of swath
(nodata 0). Each item is written as Planetary Computer stores an L2A item: one COG per band, uint16 DN =
round(reflectance x 10000) + 1000 (processing baseline >= 04.00), B02 B03 B04 B08 at 10 m, B11 B12 (2 x 2 means)
and SCL (uint8, the top-left 10 m pixel's class) at 20 m; DEFLATE, 512 px tiles, internal overviews, nodata 0;
and listed in a static STAC catalog by ``garimpo.synthetic.demo_world.write_stac`` (the demo world's catalog:
Planetary Computer asset keys, eo:cloud_cover, s2:processing_baseline, proj and raster extensions). Items are
rendered block by block, so memory stays bounded for a full granule (10980 px), one process per item.

What is the product's: the composite (``garimpo.imagery.composite.write_composite``, configured by
``Source.from_config`` / ``ImageryRequest.from_config`` as the composite_cell rule does), the scan
(``garimpo.detection.scan.two_stage_scan``, as the detect_cell rule runs it) and the assets a composite reads
(``garimpo.imagery.assets.plan_item``). What is the bench's own: the items, the decode floor (those assets'
pixels over the grid decoded at their native resolution, nothing else) and the figures.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import Transformer
from rasterio.windows import Window

from garimpo.atomic import atomic_path
from garimpo.geo.raster import Grid
from garimpo.synthetic import bench_world as bw
from garimpo.synthetic.demo_world import (
    BAND_RES,
    BANDS,
    BASELINE_OFFSET_DN,
    SPEC,
    Scene,
    block_mean,
    mgrs_tile,
    to_dn,
    transform_at,
    write_stac,
)

log = logging.getLogger(__name__)

ASSETS = (*BANDS, "SCL")  # what each item holds, one COG each: the composite reads all of them
TILE_PX = 512  # COG tile side, as Sentinel-2 L2A COGs (Element 84, Planetary Computer) are tiled
MIN_OVERVIEW_PX = 256  # overviews halve until the next would be smaller than this (as the real COGs' levels)
GEN_BLOCK_PX = 1024  # items are rendered in blocks of this side (a multiple of TILE_PX and of 2)
YEAR = 2024  # every item's acquisition year
BASELINE = "05.10"  # processing baseline >= 04.00: DN carry the +1000 offset
COVER_RANGE = (0.05, 0.40)  # an item's cloud cover (cloud + cirrus of the SCL) is drawn in this range
OUT_OF_SWATH = (1, 4)  # items (0-based) with a part out of swath
MAX_CLOUD_COVER = 60.0  # the bench's imagery.max_cloud_cover: every item is searched in
CLOUD_SCALE_PX = (300.0, 60.0)  # cloud field: large cells, then their ragged detail (10 m px)
CIRRUS_RIM = 0.12  # field units below the cloud threshold read thin cirrus
CLOUD_SPAN = 0.8  # field units above the threshold over which a cloud turns from medium to high probability
SHADOW_GAIN = 0.45  # reflectance factor under a cloud shadow


@dataclass(frozen=True)
class ItemSpec:
    """One synthetic acquisition of the granule.

    ``index``: 0-based order; ``scene``: date, platform, processing baseline, product-id parts (the demo world's
    ``Scene``); ``cover``: cloud fraction the item's cloud field is thresholded at (0-1); ``gain``: per-band
    calibration factor (BANDS order); ``noise``: extra sensor noise (reflectance std); ``shadow_px``: (rows,
    cols) from a cloud to its shadow; ``swath``: "east" / "west" for the side of an item partly out of swath,
    else None.
    """

    index: int
    scene: Scene
    cover: float
    gain: tuple[float, ...]
    noise: float
    shadow_px: tuple[int, int]
    swath: str | None


def item_specs(n: int, seed: int, year: int = YEAR) -> list[ItemSpec]:
    """``n`` acquisitions of ``year``, dates spread over it (all different), deterministic in ``seed``.

    Raises:
        ValueError: ``n`` is not in 1..120 (dates three days apart at the least).
    """
    if not 1 <= n <= 120:
        raise ValueError(f"items must be 1..120, got {n}")
    rng = bw.sub_rng(seed, "e2e-items")
    specs = []
    for k in range(n):
        when = datetime(year, 1, 3, 14, 0, 51, 24000) + timedelta(days=k * 360 // n)
        platform = "Sentinel-2A" if k % 2 == 0 else "Sentinel-2B"
        generated = (when + timedelta(hours=5, minutes=int(rng.integers(0, 60)))).strftime("%Y%m%dT%H%M%S")
        cover = float(rng.uniform(*COVER_RANGE))
        scene = Scene(f"{when:%Y-%m-%dT%H:%M:%S.%f}Z", platform, BASELINE, 100 * cover, generated, 50.0, 55.0)
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(30, 80)
        specs.append(
            ItemSpec(
                k,
                scene,
                cover,
                tuple(float(g) for g in rng.normal(1.0, 0.015, len(BANDS))),
                0.002,
                (int(round(dist * math.sin(angle))), int(round(dist * math.cos(angle)))),
                ("east" if k == OUT_OF_SWATH[0] else "west") if k in OUT_OF_SWATH else None,
            )
        )
    return specs


class CloudField:
    """An item's clouds over a ``size`` x ``size`` px granule, any window of it on demand (seamless, bounded
    memory): smooth noise (``bench_world.CoarseField``, two scales) thresholded so that about ``spec.cover`` of
    the granule is cloud or its thin cirrus rim."""

    def __init__(self, size: int, spec: ItemSpec, seed: int):
        rng = bw.sub_rng(seed, f"e2e-clouds-{spec.index}")
        self.spec = spec
        self.fields = [bw.CoarseField(size, s, rng) for s in CLOUD_SCALE_PX]
        # the threshold: the field's quantile over a lattice of small sample windows
        step = max(size // 24, 8)
        side = min(8, size)
        starts = range(0, size - side + 1, step)
        samples = [self.value(r, c, side, side) for r in starts for c in starts]
        # cloud and its cirrus rim together cover about spec.cover
        values = np.concatenate([s.ravel() for s in samples])
        self.threshold = float(np.quantile(values, 1 - spec.cover)) + CIRRUS_RIM

    def value(self, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """The field (float32 [h, w], about unit std) over rows r0.. and cols c0.. (may reach outside the
        granule: the field goes on)."""
        big, small = (f.window(r0, c0, h, w) for f in self.fields)
        return big + np.float32(0.5) * small

    def layers(self, r0: int, c0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The window's cloud classes, cloud opacity and shadow.

        Returns (SCL class uint8 [h, w]: 10 cirrus, 8 medium / 9 high probability cloud, 3 shadow, 0 none;
        opacity float32 [h, w] in [0, 1], the weight of the cloud's own reflectance; shadow bool [h, w]).
        """
        t = self.threshold
        f = self.value(r0, c0, h, w)
        dr, dc = self.spec.shadow_px
        shadow = (self.value(r0 - dr, c0 - dc, h, w) >= t) & (f < t - CIRRUS_RIM)
        cls = np.zeros((h, w), np.uint8)
        cls[shadow] = 3
        cls[(f >= t - CIRRUS_RIM) & (f < t)] = 10
        cls[f >= t] = 8
        cls[f >= t + CLOUD_SPAN / 2] = 9
        opacity = np.where(f >= t, 0.6 + 0.4 * np.clip((f - t) / CLOUD_SPAN, 0, 1), 0.0).astype(np.float32)
        opacity[cls == 10] = 0.25
        return cls, opacity, shadow


def swath_valid(spec: ItemSpec, size: int, r0: int, c0: int, h: int, w: int) -> np.ndarray:
    """Pixels of the window inside the item's swath (bool [h, w]): all of them, or those west (``swath``
    "east": the east is out) or east ("west") of a slanted swath edge."""
    if spec.swath is None:
        return np.ones((h, w), bool)
    rows = np.arange(r0, r0 + h, dtype=np.float64)[:, None] / size
    cols = np.arange(c0, c0 + w, dtype=np.float64)[None, :] / size
    if spec.swath == "east":
        return cols < 0.85 - 0.2 * rows
    return cols >= 0.08 + 0.15 * rows


def surface_classes(refl20: np.ndarray) -> np.ndarray:
    """SCL of clear ground from 20 m reflectance (float32 [6, h, w], BANDS order): 6 water (NIR darker than
    green and below 0.08), 4 vegetation (NDVI >= 0.45), else 5 not vegetated; uint8 [h, w]."""
    green, red, nir = (refl20[BANDS.index(b)] for b in ("B03", "B04", "B08"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    out = np.full(green.shape, 5, np.uint8)
    out[ndvi >= 0.45] = 4
    out[(nir < 0.08) & (nir < green)] = 6
    return out


def render_item_block(
    dn: np.ndarray, spec: ItemSpec, clouds: CloudField, size: int, r0: int, c0: int, seed: int
) -> dict[str, np.ndarray]:
    """One block of an item as its files hold it, from the granule's DN over it.

    ``dn``: the bench granule's uint16 [6, h, w] (reflectance x 10000, BANDS order; h, w even) at rows r0..,
    cols c0.. (even). Returns asset -> array: B02 B03 B04 B08 uint16 [h, w], B11 B12 uint16 [h/2, w/2] (2 x 2
    means), DN = round(reflectance x 10000) + 1000, 0 out of swath; SCL uint8 [h/2, w/2] (the top-left 10 m
    pixel's cloud class, else the ground's, 0 out of swath).
    """
    h, w = dn.shape[1:]
    rng = np.random.default_rng([seed, spec.index, r0, c0])
    refl = dn.astype(np.float32) / np.float32(bw.DN_SCALE)
    refl *= np.asarray(spec.gain, np.float32)[:, None, None]
    refl += np.float32(spec.noise) * rng.standard_normal(refl.shape, dtype=np.float32)
    scl = surface_classes(block_mean(refl, 2))
    cls, opacity, shadow = clouds.layers(r0, c0, h, w)
    refl[:, shadow] *= np.float32(SHADOW_GAIN)
    texture = 1 + 0.05 * clouds.fields[1].window(r0, c0, h, w)
    cloud = SPEC["cloud"][:, None, None] * texture[None]
    refl = refl * (1 - opacity)[None] + opacity[None] * cloud
    valid = swath_valid(spec, size, r0, c0, h, w)
    valid20 = block_mean(valid.astype(np.float32), 2) == 1
    out: dict[str, np.ndarray] = {}
    for i, band in enumerate(BANDS):
        if BAND_RES[band] == 10:
            out[band] = np.where(valid, to_dn(refl[i], BASELINE_OFFSET_DN), 0).astype(np.uint16)
        else:
            out[band] = np.where(valid20, to_dn(block_mean(refl[i], 2), BASELINE_OFFSET_DN), 0).astype(np.uint16)
    top_left = cls[::2, ::2]
    scl = np.where(top_left > 0, top_left, scl)
    scl[~valid20] = 0
    out["SCL"] = scl
    return out


def overview_count(side: int) -> int:
    """Overview levels of a COG ``side`` px wide: halvings while the result stays >= MIN_OVERVIEW_PX (as the
    real Sentinel-2 COGs have them), at least one."""
    n = 0
    while side / 2 ** (n + 1) >= MIN_OVERVIEW_PX:
        n += 1
    return max(n, 1)


def to_cog(src: Path, dst: Path, categorical: bool, threads: int = 1) -> Path:
    """Copy a single-band GeoTIFF into a COG as Sentinel-2 L2A COGs are stored: DEFLATE (no predictor), 512 px
    tiles, internal overviews (``overview_count``; mode for a class map, else average). Atomic; GDAL streams
    the copy, so memory does not grow with the raster. Returns ``dst``.

    Raises:
        rasterio.errors.RasterioError: ``src`` cannot be read or ``dst`` written.
    """
    with rasterio.open(src) as ds:
        side = max(ds.width, ds.height)
    with atomic_path(dst, suffix=".tif") as tmp:
        rasterio.shutil.copy(
            src,
            tmp,
            driver="COG",
            compress="DEFLATE",
            blocksize=TILE_PX,
            overview_resampling="mode" if categorical else "average",
            overview_count=overview_count(side),
            num_threads=str(threads),
        )
    return dst


def write_item(
    granule: str | Path, spec: ItemSpec, cat_dir: str | Path, tile: str, seed: int, threads: int = 1
) -> dict:
    """Render one item of ``granule`` block by block into ``cat_dir/<item id>/<asset>.tif`` (COGs, ``to_cog``).

    ``tile``: the MGRS tile in the item id; ``threads``: GDAL threads for the COGs' compression. Returns the
    record ``demo_world.write_stac`` lists it from (``scene``, ``id``, ``tile``, ``paths``, ``cloud_cover``:
    SCL 8, 9, 10 over valid pixels, %; ``generated_iso``) plus ``nodata_fraction`` and ``seconds``.

    Raises:
        ValueError: the granule's side is odd (its 20 m files would not cover it).
        rasterio.errors.RasterioError: the granule cannot be read or a file written.
    """
    t0 = time.perf_counter()
    item_id = spec.scene.item_id(tile)
    out = Path(cat_dir) / item_id
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(granule) as src:
        size, transform, crs = src.width, src.transform, src.crs
        if src.height != size or size % 2:
            raise ValueError(f"the bench granule must be square with an even side, got {src.width} x {src.height}")
        grid = Grid(str(crs), transform, size, size)
        clouds = CloudField(size, spec, seed)
        raw = {key: out / f".{key}.raw.tif" for key in ASSETS}
        dsts = {}
        for key in ASSETS:
            res = BAND_RES[key]
            dsts[key] = rasterio.open(
                raw[key],
                "w",
                driver="GTiff",
                width=size * 10 // res,
                height=size * 10 // res,
                count=1,
                dtype="uint8" if key == "SCL" else "uint16",
                crs=crs,
                transform=transform_at(grid, res),
                nodata=0,
                tiled=True,
                blockxsize=TILE_PX,
                blockysize=TILE_PX,
            )
            dsts[key].set_band_description(1, key)
        cloudy = valid = 0
        try:
            for r0 in range(0, size, GEN_BLOCK_PX):
                for c0 in range(0, size, GEN_BLOCK_PX):
                    h, w = min(GEN_BLOCK_PX, size - r0), min(GEN_BLOCK_PX, size - c0)
                    dn = src.read(window=Window(c0, r0, w, h))
                    arrays = render_item_block(dn, spec, clouds, size, r0, c0, seed)
                    for key, arr in arrays.items():
                        f = BAND_RES[key] // 10  # 1 at 10 m, 2 at 20 m
                        dsts[key].write(arr, 1, window=Window(c0 // f, r0 // f, arr.shape[1], arr.shape[0]))
                    scl = arrays["SCL"]
                    valid += int((scl != 0).sum())
                    cloudy += int(np.isin(scl, (8, 9, 10)).sum())
        finally:
            for d in dsts.values():
                d.close()
    paths = {}
    for key in ASSETS:
        paths[key] = to_cog(raw[key], out / f"{key}.tif", key == "SCL", threads)
        raw[key].unlink()
    n20 = (size // 2) ** 2
    generated = datetime.strptime(spec.scene.generated, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    seconds = time.perf_counter() - t0
    log.info("item %s: cloud %.1f %% (%.1fs)", item_id, 100 * cloudy / max(valid, 1), seconds)
    return {
        "scene": spec.scene,
        "id": item_id,
        "tile": tile,
        "paths": paths,
        "cloud_cover": round(100.0 * cloudy / valid, 1) if valid else 0.0,
        "generated_iso": generated.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "nodata_fraction": round(1 - valid / n20, 4),
        "seconds": round(seconds, 2),
    }


def granule_grid(granule: str | Path) -> Grid:
    """The bench granule's own pixel grid (the whole granule as one cell).

    Raises:
        rasterio.errors.RasterioError: the granule cannot be read.
    """
    with rasterio.open(granule) as src:
        return Grid(str(src.crs), src.transform, src.width, src.height)


def write_catalog(granule: str | Path, cat_dir: str | Path, n_items: int, seed: int, threads: int = 1) -> dict:
    """``n_items`` items of ``granule`` (``item_specs``, ``write_item``) and their static STAC catalog
    ``cat_dir/catalog.json`` (``demo_world.write_stac``), items rendered in up to ``threads`` processes.

    Returns the summary (also written to ``cat_dir/bench_items.json``): ``catalog``, ``size_px``, ``seed``,
    ``items`` (id -> date, eo:cloud_cover %, nodata fraction, seconds), ``seconds`` (wall) and
    ``seconds_per_item`` (mean of the items' own).

    Raises:
        ValueError: ``n_items`` out of range, or a granule that is not square with an even side.
        rasterio.errors.RasterioError: the granule cannot be read or a file written.
    """
    t0 = time.perf_counter()
    cat_dir = Path(cat_dir)
    cat_dir.mkdir(parents=True, exist_ok=True)
    grid = granule_grid(granule)
    specs = item_specs(n_items, seed)
    left, bottom, right, top = grid.bounds
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(
        (left + right) / 2, (bottom + top) / 2
    )
    tile = mgrs_tile(lon, lat)
    workers = max(1, min(threads, n_items))
    per = max(1, threads // workers)
    if workers == 1:
        records = [write_item(granule, s, cat_dir, tile, seed, per) for s in specs]
    else:
        with ProcessPoolExecutor(workers) as ex:
            futures = [ex.submit(write_item, granule, s, cat_dir, tile, seed, per) for s in specs]
            records = [f.result() for f in futures]
    cat = write_stac(cast(Any, SimpleNamespace(grid=grid, seed=seed, scale=1.0)), records, cat_dir)
    cat.id = "garimpo-e2e-bench"
    cat.title = "garimpo end-to-end bench"
    cat.description = (
        f"Synthetic Sentinel-2 L2A items of the bench granule {Path(granule).name} (NOT real imagery), "
        f"{n_items} dates of {YEAR}, seed={seed}: the end-to-end bench's input."
    )
    cat.save()
    summary = {
        "catalog": str(cat_dir / "catalog.json"),
        "size_px": grid.width,
        "seed": seed,
        "items": {
            r["id"]: {
                "datetime": r["scene"].datetime,
                "eo:cloud_cover": r["cloud_cover"],
                "nodata_fraction": r["nodata_fraction"],
                "seconds": r["seconds"],
            }
            for r in records
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_item": round(float(np.mean([r["seconds"] for r in records])), 2),
        "processes": workers,
    }
    (cat_dir / "bench_items.json").write_text(json.dumps(summary, indent=1))
    return summary


def imagery_config(catalog: str | Path, n_items: int, year: int = YEAR) -> dict:
    """The ``imagery`` config block the bench composites with: the schema's defaults, the catalog as a local
    source, ``year`` as the period, ``MAX_CLOUD_COVER`` (every item searched in) and ``max_scenes`` raised to
    ``n_items`` when the default is fewer (every item read)."""
    from garimpo.schema import default

    cfg = dict(default("imagery"))
    cfg["source"] = {"kind": "local", "url": str(catalog), "collection": cfg["source"]["collection"]}
    cfg["period"] = [f"{year}-01-01", f"{year}-12-31"]
    cfg["max_cloud_cover"] = MAX_CLOUD_COVER
    cfg["max_scenes"] = max(int(cfg["max_scenes"]), n_items)
    return cfg


def run_composite(
    catalog: str | Path, grid: Grid, out: str | Path, block_px: int, n_items: int, threads: int = 1
) -> dict:
    """The composite of ``grid`` from the catalog's items, as the composite_cell rule makes it
    (``write_composite`` with ``allow_empty``, and the rule's ``threads`` where the function takes them),
    written to ``out`` (float32 reflectance, NaN never clear).

    Returns ``items_used`` (ids of the items that gave clear pixels), ``seconds`` (the call's wall time) and
    ``threads`` (those passed to ``write_composite``; None where it takes none).

    Raises:
        garimpo.errors.InputDataError: the catalog is missing.
        rasterio.errors.RasterioError: an item's COG cannot be read or the composite written.
    """
    from garimpo.imagery.composite import write_composite
    from garimpo.imagery.stac import ImageryRequest, Source

    cfg = imagery_config(catalog, n_items)
    source, request = Source.from_config(cfg["source"]), ImageryRequest.from_config(cfg)
    kw: dict[str, Any] = {"block_px": block_px, "allow_empty": True}
    if "threads" in inspect.signature(write_composite).parameters:
        kw["threads"] = threads
    t0 = time.perf_counter()
    used = write_composite(out, source, request, grid, **kw)
    return {
        "items_used": [it.id for it in used],
        "seconds": round(time.perf_counter() - t0, 3),
        "threads": kw.get("threads"),
    }


def run_detect(
    composite: str | Path,
    model: str | Path,
    out_npz: str | Path,
    block_px: int,
    threads: int,
    precision: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """The two-stage scan of the composite as the detect_cell rule runs it (``load_classifier``,
    ``two_stage_scan``, ``save_chip_scores`` to ``out_npz``) with the schema's detection settings (stride,
    proposer and its decimation, chip selection, TTA; ``precision`` and ``batch_size`` too unless given) and the
    checkpoint's own chip size and low/high (no positive stats), on the CPU in ``threads`` threads.

    Returns the scan's summary (``ChipScores.summary``) plus ``model_id``.

    Raises:
        garimpo.errors.ModelLoadError: the checkpoint cannot be loaded.
        garimpo.errors.InputDataError: the composite lacks a band of the model.
    """
    import torch

    from garimpo.classifier.model import load_classifier
    from garimpo.detection.chip_scores import save_chip_scores
    from garimpo.detection.scan import two_stage_scan
    from garimpo.schema import default

    torch.set_num_threads(threads)
    model_, meta = load_classifier(model)
    result = two_stage_scan(
        composite,
        model_,
        meta,
        stride=default("detection.stride_px"),
        block_px=block_px,
        batch_size=batch_size or default("detection.batch_size"),
        precision=precision or default("detection.precision"),
        tta=default("detection.tta"),
        threads=threads,
        device="cpu",
        decimate=default("detection.proposer_decimate"),
        select=default("detection.select"),
    )
    save_chip_scores(out_npz, result, {"model_id": meta["model_id"], "mode": "two_stage"})
    return {**result.summary(), "model_id": meta["model_id"]}


def composite_assets(catalog: str | Path, item_ids: Sequence[str], n_items: int) -> list[str]:
    """Absolute paths of every asset the composite reads of the items ``item_ids``: each requested band's and
    the mask band's (``plan_item`` with the bench's imagery config), in item order.

    Raises:
        KeyError: an item id is not in the catalog.
        garimpo.errors.InputDataError: an item lacks an asset or its metadata is unusable.
    """
    import pystac

    from garimpo.imagery.assets import plan_item
    from garimpo.imagery.stac import ImageryRequest, Source

    cfg = imagery_config(catalog, n_items)
    source, request = Source.from_config(cfg["source"]), ImageryRequest.from_config(cfg)
    items = {it.id: it for it in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)}
    paths = []
    for item_id in item_ids:
        plan = plan_item(items[item_id], request.bands, source.sensor)
        for key in (*plan.assets.values(), plan.mask):
            paths.append(str(items[item_id].assets[key].get_absolute_href()))
    return paths


def _native_window(src, grid: Grid) -> Window:
    """The window of ``src`` (its own pixels) that ``grid`` covers, clipped to the file."""
    win = rasterio.windows.from_bounds(*grid.bounds, transform=src.transform).round_offsets().round_lengths()
    return win.intersection(Window(0, 0, src.width, src.height))


def _decode(path: str, grid: Grid, strip_px: int) -> int:
    """Decode ``grid``'s window of one asset at its native resolution, strips of ``strip_px`` rows; returns the
    bytes decoded."""
    n = 0
    with rasterio.open(path) as src:
        win = _native_window(src, grid)
        for r in range(int(win.row_off), int(win.row_off + win.height), strip_px):
            strip = Window(win.col_off, r, win.width, min(strip_px, int(win.row_off + win.height) - r))
            n += src.read(1, window=strip).nbytes
    return n


def _tile_bytes(path: str, grid: Grid) -> int:
    """Compressed bytes of the full-resolution tiles of one asset that ``grid``'s window touches."""
    with rasterio.open(path) as src:
        win = _native_window(src, grid)
        bh, bw_ = src.block_shapes[0]
        r0, r1 = int(win.row_off) // bh, (int(win.row_off + win.height) - 1) // bh
        c0, c1 = int(win.col_off) // bw_, (int(win.col_off + win.width) - 1) // bw_
        return sum(src.block_size(1, i, j) for i in range(r0, r1 + 1) for j in range(c0, c1 + 1))


def decode_floor(paths: Sequence[str], grid: Grid, threads: int, strip_px: int = 4 * TILE_PX) -> dict:
    """The decode floor: the time to decode, and do nothing else with, the pixels of ``grid`` in every asset
    of ``paths`` (``composite_assets``) at each file's native resolution (no warp, no resampling), assets
    read in ``threads`` threads (GDAL releases the GIL), each in strips of ``strip_px`` rows.

    Returns ``seconds`` (wall of the decoding alone), ``assets``, ``bytes_decoded`` (uncompressed pixels) and
    ``bytes_read`` (the compressed full-resolution tiles the windows touch, counted after the timing).

    Raises:
        rasterio.errors.RasterioError: an asset cannot be read.
    """
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, threads)) as ex:
        decoded = sum(ex.map(lambda p: _decode(p, grid, strip_px), paths))
    seconds = time.perf_counter() - t0
    read = sum(_tile_bytes(p, grid) for p in paths)
    return {"seconds": seconds, "assets": len(paths), "bytes_decoded": decoded, "bytes_read": read}


def _sig(x: float) -> float:
    """``x`` to four significant digits."""
    return float(f"{x:.4g}")


def e2e_figures(runs: Mapping[str, Mapping], km2: float, threads: int) -> dict:
    """The JSON line's figures from the three measured runs, figures and times to four significant digits.

    ``runs``: "composite", "detect" and "floor" -> that child's summary with ``wall_s`` (process wall, s) and
    ``peak_rss_mb`` (its own ru_maxrss, MB); the floor's also ``seconds`` (decoding alone), ``bytes_read``,
    ``bytes_decoded``, ``assets``; the detect's ``classifier_calls`` and ``candidate_fraction``. ``km2``: the
    grid's area; ``threads``: cores each run was given. km2 per core-second = km2 / (seconds x threads);
    end to end = composite + detect process walls; ``ratio_to_floor`` = end to end / the floor's decoding time.

    Raises:
        KeyError: a run or one of its keys is missing.
    """
    comp, det, floor = runs["composite"], runs["detect"], runs["floor"]
    e2e = comp["wall_s"] + det["wall_s"]
    out = {
        "grid_km2": round(km2, 2),
        "composite_km2_per_core_s": _sig(km2 / (comp["wall_s"] * threads)),
        "detect_km2_per_core_s": _sig(km2 / (det["wall_s"] * threads)),
        "end_to_end_km2_per_core_s": _sig(km2 / (e2e * threads)),
        "decode_floor_km2_per_core_s": _sig(km2 / (floor["seconds"] * threads)),
        "ratio_to_floor": _sig(e2e / floor["seconds"]),
        "composite_wall_s": _sig(comp["wall_s"]),
        "detect_wall_s": _sig(det["wall_s"]),
        "end_to_end_wall_s": _sig(e2e),
        "floor_decode_s": _sig(floor["seconds"]),
        "floor_wall_s": _sig(floor["wall_s"]),
        "composite_peak_rss_mb": round(comp["peak_rss_mb"], 1),
        "detect_peak_rss_mb": round(det["peak_rss_mb"], 1),
        "floor_peak_rss_mb": round(floor["peak_rss_mb"], 1),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in (comp, det, floor)), 1),
        "composite_work_s": comp["seconds"],
        "detect_scan_s": det["seconds"]["total"],
        "detect_classifier_calls": det["classifier_calls"],
        "detect_candidate_fraction": det["candidate_fraction"],
        "floor_assets": floor["assets"],
        "bytes_read": floor["bytes_read"],
        "bytes_decoded": floor["bytes_decoded"],
    }
    return out
