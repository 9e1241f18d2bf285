"""Cloud-free composites of large grids, written block by block so memory stays bounded.

A full tile (about 11,000 x 11,000 px) composited at once would hold every scene's bands in
memory (tens of GB); here the scenes are searched once for the whole grid and each block is
read, composited and written before the next one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

from garimpo.atomic import atomic_path
from garimpo.errors import NoImageryError
from garimpo.geo.raster import Grid
from garimpo.imagery.stac import (
    ImageryRequest,
    Source,
    acquired,
    band_medians,
    fetch_composite,
    no_scene_message,
    radiometry_record,
    select_items,
    warn_if_implausible,
    with_fresh_search,
)

log = logging.getLogger(__name__)


def grid_blocks(grid: Grid, block_px: int) -> Iterator[tuple[Window, Grid]]:
    """(window, sub-grid) pairs that tile ``grid`` without overlap, row by row."""
    t = grid.transform
    for row in range(0, grid.height, block_px):
        for col in range(0, grid.width, block_px):
            h, w = min(block_px, grid.height - row), min(block_px, grid.width - col)
            sub = Grid(grid.crs, t @ Affine.translation(col, row), w, h)
            yield Window(col, row, w, h), sub


def with_halo(grid: Grid, window: Window, halo_px: int) -> tuple[Grid, tuple[slice, slice]]:
    """The sub-grid of ``window`` grown by ``halo_px`` on each side (clamped to ``grid``), and the slices
    that cut the window back out of it. A cloud mask grown by a buffer must see the clouds just across
    a block's edge, or block-wise composites would differ from whole-grid ones along every block edge."""
    r0, c0 = max(0, int(window.row_off) - halo_px), max(0, int(window.col_off) - halo_px)
    r1 = min(grid.height, int(window.row_off + window.height) + halo_px)
    c1 = min(grid.width, int(window.col_off + window.width) + halo_px)
    sub = Grid(grid.crs, grid.transform @ Affine.translation(c0, r0), c1 - c0, r1 - r0)
    rows = slice(int(window.row_off) - r0, int(window.row_off) - r0 + int(window.height))
    cols = slice(int(window.col_off) - c0, int(window.col_off) - c0 + int(window.width))
    return sub, (rows, cols)


def write_composite(
    path: str | os.PathLike,
    source: Source,
    request: ImageryRequest,
    grid: Grid,
    block_px: int = 2048,
    items: Sequence | None = None,
    allow_empty: bool = False,
) -> list:
    """Composite ``request`` onto ``grid`` into a tiled GeoTIFF at ``path`` (float32, NaN = no clear pixel).

    Returns the items that gave clear pixels somewhere.  Blocks with no clear pixel stay NaN.
    Items are chosen once for the whole grid (:func:`garimpo.imagery.stac.select_items`: an item lacking an asset is
    skipped with a warning, an acquisition listed twice is read once), then read block by block; the
    plausibility of the reflectance is checked once, on the median of the blocks' band medians.
    With ``allow_empty`` a grid without any clear scene is written all NaN (one cloudy tile
    must not stop a region-wide run) instead of raising ``NoImageryError``.
    Each block is read with a halo as wide as the cloud buffer (:func:`with_halo`), so the file equals the
    whole grid composited at once. Without ``items`` the grid's search is run here, and items that came
    from the search cache are searched again once when they cannot be read
    (:func:`garimpo.imagery.stac.with_fresh_search`).
    ZSTD (level 1) rather than deflate: the detect stage reads every pixel, and ZSTD decodes ~1.5x
    faster on this CPU. The file appears only when complete (written to a temporary name, then
    renamed), so a killed run never leaves a half-written scene that looks finished.
    """
    if items is None:
        return with_fresh_search(
            source,
            grid.bbox_lonlat(),
            request,
            lambda found: write_composite(path, source, request, grid, block_px, found, allow_empty),
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    found = list(items)
    plans = select_items(found, request.bands)[: request.max_scenes]
    items = [p.item for p in plans]
    if not items:
        message = no_scene_message(source, request, grid, len(found))
        if not allow_empty:
            raise NoImageryError(message)
        log.warning("%s: writing an empty (all NaN) scene", message)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(request.bands),
        "dtype": "float32",
        "crs": CRS.from_user_input(grid.crs).to_wkt(),
        "transform": grid.transform,
        "nodata": float("nan"),
        "compress": "zstd",
        "zstd_level": 1,
        "predictor": 3,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }
    used: dict[str, object] = {}
    block_medians: list[dict[str, float]] = []
    with atomic_path(path, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(request.bands, start=1):
                dst.set_band_description(i, name)
            # The cloud buffer reaches this far across a block's edge (clear_mask's dilation radius).
            halo = int(round(request.cloud_buffer_m / grid.resolution))
            for window, _ in grid_blocks(grid, block_px):
                sub, (rows, cols) = with_halo(grid, window, halo)
                try:
                    image, block_items = fetch_composite(source, request, sub, items, check=False)
                except NoImageryError:
                    continue  # cloudy or outside every scene: the block stays NaN
                image = image[:, rows, cols]
                dst.write(image.astype(np.float32, copy=False), window=window)
                used.update({it.id: it for it in block_items})
                block_medians.append(band_medians(image, request.bands))
            if not used and not allow_empty:
                raise NoImageryError(f"all {len(items)} scenes over {grid.bbox_lonlat()} are cloudy or empty there")
            ordered = [it for it in items if it.id in used]
            if block_medians:  # (bands, blocks, 1): the median of the blocks' medians, per band
                per_block = np.array([[m[b] for b in request.bands] for m in block_medians]).T[:, :, None]
                warn_if_implausible(
                    band_medians(per_block, request.bands),
                    [p for p in plans if p.item.id in used],
                    f"scene {path.name}",
                )
            dst.update_tags(
                scene_ids=";".join(it.id for it in ordered),
                dates=";".join(acquired(it).date().isoformat() for it in ordered),
                radiometry=json.dumps([radiometry_record(it, request.bands) for it in ordered]),
            )
            # Overviews make quicklooks and maps of a whole tile cheap to read.
            factors = [f for f in (4, 16, 64) if min(grid.width, grid.height) // f >= 64]
            if factors:
                dst.build_overviews(factors, rasterio.enums.Resampling.average)
    log.info("composite %s: %d x %d px from %d scenes", path, grid.width, grid.height, len(used))
    return ordered


def tile_scene_grid(tile: str, region_lonlat, size_m: float, margin_m: float, resolution: float = 10.0) -> Grid:
    """The grid a tile's scene is composited on: the tile's processing grid (cell plus margin, UTM)
    cut down to the region's part of it plus the margin, so a small region never pays for a whole cell.
    """
    from garimpo.geo.cells import tile_cell, tile_processing_grid
    from garimpo.geo.geojson import reproject
    from garimpo.geo.raster import bounds_grid

    full = tile_processing_grid(tile, size_m, resolution, margin_m)
    _, cell = tile_cell(tile, size_m)
    part = region_lonlat.intersection(cell)
    if part.is_empty:
        raise ValueError(f"tile {tile} does not intersect the region; the tile list is stale: delete it and rerun")
    left, bottom, right, top = reproject(part, "EPSG:4326", full.crs).buffer(margin_m).bounds
    f_left, f_bottom, f_right, f_top = full.bounds
    clipped = (max(left, f_left), max(bottom, f_bottom), min(right, f_right), min(top, f_top))
    return bounds_grid(full.crs, clipped, resolution)
