"""One STAC reading path for every imagery source.

Sources are a local static catalog (the offline demo, or any catalog on disk) or
a STAC API (Microsoft Planetary Computer, Earth Search). Items are searched by
bbox, period and scene cloud cover; pixels are read per asset through a warped
view onto the caller's target grid, so only the needed windows of each COG are
fetched and a window straddling two granules or UTM zones comes out seamless.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pystac
import rasterio
from scipy import ndimage
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from .errors import InputDataError, NoImageryError
from .raster import Grid

log = logging.getLogger(__name__)

# Sentinel-2 band name -> asset key, per provider (Earth Search uses common names).
ASSET_KEYS: dict[str, dict[str, str]] = {
    "planetary_computer": {
        b: b for b in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL")
    },
    "earth_search": {
        "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
        "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
        "B11": "swir16", "B12": "swir22", "SCL": "scl",
    },
}
ASSET_KEYS["local"] = ASSET_KEYS["planetary_computer"]

# SCL classes that are not clear ground: no data, defective, cloud shadow,
# cloud medium/high probability, thin cirrus.
SCL_NOT_CLEAR = (0, 1, 3, 8, 9, 10)
# Of those, the ones whose edges SCL under-flags (haze halos, soft shadows): buffered.
SCL_CLOUDY = (3, 8, 9, 10)
BASELINE_OFFSET_DATE = datetime(2022, 1, 25, tzinfo=timezone.utc)
DN_OFFSET = 1000.0
DN_SCALE = 10000.0


@dataclass(frozen=True)
class Source:
    """Where imagery comes from; built from the ``imagery.source`` config block."""

    kind: str  # local | planetary_computer | earth_search
    url: str  # catalog.json path for local, API root URL otherwise
    collection: str = "sentinel-2-l2a"
    harmonized: bool = False  # True for collections already corrected for the 04.00 offset

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Source":
        kind = cfg["kind"]
        if kind not in ASSET_KEYS:
            raise InputDataError(f"imagery.source.kind {kind!r} unknown; use one of {sorted(ASSET_KEYS)}")
        collection = cfg.get("collection", "sentinel-2-l2a")
        harmonized = bool(cfg.get("harmonized", collection == "sentinel-2-c1-l2a"))
        return cls(kind, str(cfg["url"]), collection, harmonized)

    def asset_key(self, band: str) -> str:
        try:
            return ASSET_KEYS[self.kind][band]
        except KeyError:
            raise InputDataError(f"band {band!r} has no asset key for source {self.kind!r}") from None


def _parse_period(period: Sequence[str]) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(str(period[0])).replace(tzinfo=timezone.utc)
    end = datetime.fromisoformat(str(period[1])).replace(tzinfo=timezone.utc)
    end = end.replace(hour=23, minute=59, second=59)
    return start, end


def _bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def search_items(
    source: Source, bbox: Sequence[float], period: Sequence[str], max_cloud: float, max_items: int = 500
) -> list[pystac.Item]:
    """Items of the source's collection over ``bbox`` (lon/lat) in ``period`` with cloud < ``max_cloud`` %."""
    start, end = _parse_period(period)
    if source.kind == "local":
        items = _search_static(source, bbox, start, end, max_cloud)
    else:
        items = _search_api(source, bbox, start, end, max_cloud, max_items)
    items.sort(key=lambda it: (it.properties.get("eo:cloud_cover", 100.0), it.id))
    log.info("STAC %s: %d items over %s in %s..%s with cloud < %s%%", source.kind, len(items),
             [round(v, 4) for v in bbox], period[0], period[1], max_cloud)
    return items


def _search_static(source: Source, bbox, start, end, max_cloud) -> list[pystac.Item]:
    path = Path(source.url)
    if not path.exists():
        raise InputDataError(
            f"local STAC catalog {path} not found; build it (the demo's `make_demo_world` rule) "
            "or point imagery.source.url at a catalog.json"
        )
    catalog = pystac.Catalog.from_file(str(path))
    out = []
    for item in catalog.get_items(recursive=True):
        if item.collection_id not in (None, source.collection):
            continue
        when = item.datetime
        cloud = item.properties.get("eo:cloud_cover", 100.0)
        if item.bbox and _bbox_intersects(item.bbox, bbox) and start <= when <= end and cloud < max_cloud:
            out.append(item)
    return out


def _search_api(source: Source, bbox, start, end, max_cloud, max_items) -> list[pystac.Item]:
    import pystac_client

    modifier = None
    if source.kind == "planetary_computer":
        import planetary_computer

        modifier = planetary_computer.sign_inplace
    client = pystac_client.Client.open(source.url, modifier=modifier)
    search = client.search(
        collections=[source.collection],
        bbox=list(bbox),
        datetime=f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
        query={"eo:cloud_cover": {"lt": max_cloud}},
        max_items=max_items,
    )
    return list(search.items())


def dn_offset(item: pystac.Item, source: Source) -> float:
    """The DN offset to remove: 1000 for processing baseline >= 04.00 unless harmonised."""
    if source.harmonized:
        return 0.0
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is not None:
        return DN_OFFSET if float(baseline) >= 4.0 else 0.0
    return DN_OFFSET if item.datetime >= BASELINE_OFFSET_DATE else 0.0


def read_asset(href: str, grid: Grid, resampling: Resampling) -> tuple[np.ndarray, float]:
    """Read one single-band asset warped onto ``grid``; only the overlapping windows are fetched."""
    with rasterio.open(href) as src:
        nodata = src.nodata if src.nodata is not None else 0
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=nodata,
            nodata=nodata,
        ) as vrt:
            arr = vrt.read(1)
    return arr, nodata


def clear_mask(scl: np.ndarray, buffer_px: int = 0) -> np.ndarray:
    """Pixels SCL calls clear ground, with cloud and shadow classes grown by ``buffer_px``.

    SCL misses the thin, bright fringe of clouds; left in, it survives a median of few
    scenes as pale halos that look like bare soil to the proposer.
    """
    cloudy = np.isin(scl, SCL_CLOUDY)
    if buffer_px > 0 and cloudy.any():
        yy, xx = np.mgrid[-buffer_px : buffer_px + 1, -buffer_px : buffer_px + 1]
        cloudy = ndimage.binary_dilation(cloudy, structure=(xx**2 + yy**2) <= buffer_px**2)
    return ~cloudy & ~np.isin(scl, SCL_NOT_CLEAR)


def read_item(
    item: pystac.Item, source: Source, bands: Sequence[str], grid: Grid, cloud_buffer_m: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (bands, H, W) with NaN where no data, and the clear-pixel mask from SCL."""
    offset = dn_offset(item, source)
    out = np.full((len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    for i, band in enumerate(bands):
        dn, nodata = read_asset(_href(item, source, band), grid, Resampling.bilinear)
        valid = dn != nodata
        out[i][valid] = (dn[valid].astype(np.float32) - offset) / DN_SCALE
    scl, _ = read_asset(_href(item, source, "SCL"), grid, Resampling.nearest)
    clear = clear_mask(scl, int(round(cloud_buffer_m / grid.resolution))) & np.all(np.isfinite(out), axis=0)
    return out, clear


def _href(item: pystac.Item, source: Source, band: str) -> str:
    key = source.asset_key(band)
    if key not in item.assets:
        raise InputDataError(f"item {item.id} has no asset {key!r} (band {band}); has {sorted(item.assets)}")
    return item.assets[key].get_absolute_href()


def composite(stack: np.ndarray, clear: np.ndarray, method: str = "median") -> np.ndarray:
    """Combine scenes (scenes, bands, H, W) into one image using only clear pixels.

    ``median``: per-pixel median of the clear observations (robust to missed cloud).
    ``least_cloudy``: first clear observation in the given order (caller sorts by cloud cover).
    Pixels never clear stay NaN.
    """
    masked = np.where(clear[:, None], stack, np.nan)
    if method == "median":
        with warnings.catch_warnings():  # all-NaN pixels are expected (never clear)
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(masked, axis=0).astype(np.float32)
    if method == "least_cloudy":
        out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
        for scene in masked:
            fill = np.isnan(out) & np.isfinite(scene)
            out[fill] = scene[fill]
        return out
    raise ValueError(f"composite method {method!r} unknown; use 'median' or 'least_cloudy'")


@dataclass(frozen=True)
class ImageryRequest:
    """What to fetch: bands, period, scene cloud limit, composite method."""

    bands: tuple[str, ...]
    period: tuple[str, str]
    max_cloud: float
    composite: str = "median"
    max_scenes: int = 8
    cloud_buffer_m: float = 0.0

    @classmethod
    def from_config(cls, cfg: Mapping) -> "ImageryRequest":
        return cls(tuple(cfg["bands"]), tuple(cfg["period"]), float(cfg["max_cloud_cover"]),
                   cfg.get("composite", "median"), int(cfg.get("max_scenes", 8)), float(cfg.get("cloud_buffer_m", 0.0)))


def fetch_composite(
    source: Source, request: ImageryRequest, grid: Grid, items: Iterable[pystac.Item] | None = None
) -> tuple[np.ndarray, list[pystac.Item]]:
    """Search (unless ``items`` given), read and composite imagery onto ``grid``.

    Returns the composite (bands, H, W) and the items that contributed clear pixels.
    """
    if items is None:
        items = search_items(source, grid.bbox_lonlat(), request.period, request.max_cloud)
    items = list(items)[: request.max_scenes]
    if not items:
        raise NoImageryError(
            f"no {source.collection} scene with cloud < {request.max_cloud}% over {grid.bbox_lonlat()} "
            f"in {request.period[0]}..{request.period[1]}; widen imagery.period or raise imagery.max_cloud_cover"
        )
    stacks, clears, used = [], [], []
    for item in items:
        refl, clear = read_item(item, source, request.bands, grid, request.cloud_buffer_m)
        if clear.any():
            stacks.append(refl)
            clears.append(clear)
            used.append(item)
    if not used:
        raise NoImageryError(f"all {len(items)} scenes over {grid.bbox_lonlat()} are cloudy or empty there")
    image = composite(np.stack(stacks), np.stack(clears), request.composite)
    return image, used


def provenance(items: Sequence[pystac.Item]) -> dict:
    """Scene ids and dates for the outputs' metadata (never hrefs: they may be signed)."""
    return {
        "scene_ids": [it.id for it in items],
        "dates": [it.datetime.date().isoformat() for it in items],
        "cloud_cover": [it.properties.get("eo:cloud_cover") for it in items],
    }
