"""One STAC reading path for every imagery source.

Sources are a local static catalog (the offline demo, or any catalog on disk) or
a STAC API (Microsoft Planetary Computer, Earth Search). Items are searched by
bbox, period and scene cloud cover; pixels are read per asset through a warped
view onto the caller's target grid, so only the needed windows of each COG are
fetched and a window straddling two granules or UTM zones comes out seamless.

Each item is read by what it declares, not by who serves it: assets are found by the band they hold
(:func:`find_asset`), DN become reflectance by the rule the item's own metadata implies
(:mod:`garimpo.imagery.radiometry`), an item lacking a needed asset is skipped and an acquisition listed twice
is read once (:func:`select_items`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pystac
import rasterio
from pystac.extensions.eo import Band
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from scipy import ndimage

from garimpo.errors import GarimpoError, InputDataError, NoImageryError
from garimpo.geo.raster import Grid
from garimpo.imagery.cache import SearchCache, drop_entry, search_key
from garimpo.imagery.radiometry import Radiometry, asset_radiometry, implausible, processing_baseline
from garimpo.imagery.redact import install_redaction, redact, redact_url
from garimpo.schema import default

log = logging.getLogger(__name__)
T = TypeVar("T")

SOURCE_KINDS = ("local", "planetary_computer", "earth_search")

# Sentinel-2 MSI bands: centre wavelength (micrometres, ESA's S2 MSI spectral response, as the providers'
# eo:bands give it) and the STAC common names providers use for it. Assets are matched to bands by what
# they declare, so a catalog with either provider's keys (or its own) reads the same.
S2_BANDS: dict[str, tuple[float, tuple[str, ...]]] = {
    "B01": (0.443, ("coastal",)),
    "B02": (0.490, ("blue",)),
    "B03": (0.560, ("green",)),
    "B04": (0.665, ("red",)),
    "B05": (0.704, ("rededge",)),
    "B06": (0.740, ("rededge",)),
    "B07": (0.783, ("rededge",)),
    "B08": (0.842, ("nir",)),
    "B8A": (0.865, ("nir08", "rededge")),  # Earth Search says nir08, Planetary Computer rededge
    "B09": (0.945, ("nir09",)),
    "B11": (1.610, ("swir16",)),
    "B12": (2.190, ("swir22",)),
}
# A declared centre names the nearest band of the table if within this (um): S2A's and S2B's own
# centres stray up to ~0.012 um from the table's (B12 2.202 / 2.186, B08 0.833).
_WAVELENGTH_TOLERANCE = 0.03
# Asset keys of the two providers (Planetary Computer, Earth Search), the last resort when an asset
# declares no band (SCL never does; Earth Search v0 items declare none).
KNOWN_ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B01": ("B01", "coastal"),
    "B02": ("B02", "blue"),
    "B03": ("B03", "green"),
    "B04": ("B04", "red"),
    "B05": ("B05", "rededge1"),
    "B06": ("B06", "rededge2"),
    "B07": ("B07", "rededge3"),
    "B08": ("B08", "nir"),
    "B8A": ("B8A", "nir08"),
    "B09": ("B09", "nir09"),
    "B11": ("B11", "swir16"),
    "B12": ("B12", "swir22"),
    "SCL": ("SCL", "scl"),
}

# SCL classes that are not clear ground: no data, defective, cloud shadow,
# cloud medium/high probability, thin cirrus.
SCL_NOT_CLEAR = (0, 1, 3, 8, 9, 10)
# Of those, the ones whose edges SCL under-flags (haze halos, soft shadows): buffered.
SCL_CLOUDY = (3, 8, 9, 10)


class ImageryAccessError(GarimpoError, ConnectionError):
    """A STAC API or an asset could not be reached after the configured retries.

    Deliberately not a :class:`NoImageryError`: an outage must fail the run, not be
    recorded as "no imagery here" and skipped.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff: ``base_delay * 2**(attempt-1)`` seconds, capped at ``max_delay``."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    timeout: float = 60.0  # seconds per HTTP request of a search

    def __post_init__(self):
        if self.attempts < 1:
            raise InputDataError(f"retry attempts must be >= 1, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> RetryPolicy:
        cfg = cfg or {}
        return cls(
            int(cfg.get("attempts", 4)),
            float(cfg.get("base_delay_s", 1.0)),
            float(cfg.get("max_delay_s", 30.0)),
            float(cfg.get("timeout_s", 60.0)),
        )


@dataclass(frozen=True)
class Source:
    """Where imagery comes from; built from the ``imagery.source`` config block.

    ``cache_dir``: where API searches are cached as JSON (None: no cache). ``retry``:
    backoff for searches and asset reads. ``signer``: ``href -> signed href`` applied
    right before each read (default: ``planetary_computer.sign`` for Planetary Computer,
    none otherwise); a signer with a ``refresh()`` method has it called before the one
    re-sign that follows a 403.
    """

    kind: str  # local | planetary_computer | earth_search
    url: str  # catalog.json path for local, API root URL otherwise
    collection: str = "sentinel-2-l2a"
    cache_dir: str | None = None
    retry: RetryPolicy = RetryPolicy()
    signer: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    page_size: int = 100  # items per search page asked of the API

    @classmethod
    def from_config(cls, cfg: Mapping) -> Source:
        kind = cfg["kind"]
        if kind not in SOURCE_KINDS:
            raise InputDataError(f"imagery.source.kind {kind!r} unknown; use one of {sorted(SOURCE_KINDS)}")
        if "harmonized" in cfg:
            raise InputDataError(
                "imagery.source.harmonized is gone: whether the +1000 DN offset is still in the pixels is now "
                "read from each item's metadata (earthsearch:boa_offset_applied, raster:bands, "
                "s2:processing_baseline); delete the key"
            )
        cache_dir = cfg.get("cache_dir")
        return cls(
            kind,
            str(cfg["url"]),
            cfg.get("collection", "sentinel-2-l2a"),
            str(cache_dir) if cache_dir else None,
            RetryPolicy.from_config(cfg.get("retry")),
        )


def _parse_period(period: Sequence[str]) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(str(period[0])).replace(tzinfo=UTC)
    end = datetime.fromisoformat(str(period[1])).replace(tzinfo=UTC)
    end = end.replace(hour=23, minute=59, second=59)
    return start, end


def _bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


@dataclass(frozen=True)
class SearchResult:
    """A search's items, and the search cache entry they were read from (None: a fresh answer, or no cache)."""

    items: list[pystac.Item]
    cache_file: Path | None = None


def search_items(
    source: Source, bbox: Sequence[float], period: Sequence[str], max_cloud: float, max_items: int = 500
) -> list[pystac.Item]:
    """Items of the source's collection over ``bbox`` (lon/lat) in ``period`` with cloud < ``max_cloud`` %."""
    return search(source, bbox, period, max_cloud, max_items).items


def search(
    source: Source,
    bbox: Sequence[float],
    period: Sequence[str],
    max_cloud: float,
    max_items: int = 500,
    bands: Sequence[str] | None = None,
    refresh: bool = False,
) -> SearchResult:
    """:func:`search_items`, saying whether the items came from the search cache (``cache_file``).

    ``bands``: the bands the items will be read for. A cached answer none of whose items can be read for
    them (each lacks an asset or has unusable metadata: an entry edited, or written by another version) is
    not trusted: the entry is deleted with a warning and the search runs again. ``refresh``: search again
    whatever the cache holds (the fresh answer replaces the entry).
    """
    start, end = _parse_period(period)
    if source.kind == "local":
        found = SearchResult(_search_static(source, bbox, start, end, max_cloud))
    else:
        found = _search_api(source, bbox, start, end, max_cloud, max_items, bands, refresh)
    found.items.sort(key=lambda it: (it.properties.get("eo:cloud_cover", 100.0), it.id))
    log.info(
        "STAC %s: %d items over %s in %s..%s with cloud < %s%%",
        source.kind,
        len(found.items),
        [round(v, 4) for v in bbox],
        period[0],
        period[1],
        max_cloud,
    )
    return found


def with_fresh_search(
    source: Source, bbox: Sequence[float], request: ImageryRequest, read: Callable[[list[pystac.Item]], T]
) -> T:
    """``read(items)`` on the items of ``request``'s search over ``bbox`` (lon/lat), searched again once when
    cached ones fail.

    Items from the search cache are trusted only as long as they can be read: when ``read`` fails with
    :class:`ImageryAccessError` on them (an asset link that no longer resolves: a catalog reprocessed or
    moved since the search), the entry is deleted with a warning and ``read`` runs once more on a fresh
    search. A fresh answer that fails the same way raises as it is. A cached answer whose every item is
    unusable is searched again before ``read`` (:func:`search`).
    """
    found = search(source, bbox, request.period, request.max_cloud, bands=request.bands)
    try:
        return read(found.items)
    except ImageryAccessError as err:
        if found.cache_file is None:
            raise
        drop_entry(found.cache_file, f"reading its items failed: {str(err)[:300]}")
    fresh = search(source, bbox, request.period, request.max_cloud, bands=request.bands, refresh=True)
    return read(fresh.items)


def _unusable(items: Sequence[pystac.Item], bands: Sequence[str]) -> str | None:
    """Why none of ``items`` can be read for ``bands`` (the first one's fault), or None when one can."""
    first = None
    for item in items:
        try:
            plan_item(item, bands)
            return None
        except InputDataError as err:
            first = first or f"item {item.id}: {err}"
    return first


def _search_static(source: Source, bbox, start, end, max_cloud) -> list[pystac.Item]:
    path = Path(source.url)
    if not path.exists():
        raise InputDataError(
            f"local STAC catalog {path} not found; build it (the demo's `make_demo_world` rule) "
            "or point imagery.source.url at a catalog.json"
        )
    catalog = pystac.Catalog.from_file(str(path))
    out, others = [], set()
    for item in catalog.get_items(recursive=True):
        if item.collection_id not in (None, source.collection):
            others.add(item.collection_id)
            continue
        when = acquired(item)
        cloud = item.properties.get("eo:cloud_cover", 100.0)
        if item.bbox and _bbox_intersects(item.bbox, bbox) and start <= when <= end and cloud < max_cloud:
            out.append(item)
    if others:  # a search that finds nothing then says why, not only "widen the period"
        log.warning(
            "local catalog %s: items of collection(s) %s left out; imagery.source.collection is %r",
            path,
            sorted(others),
            source.collection,
        )
    return out


def _search_api(source: Source, bbox, start, end, max_cloud, max_items, bands=None, refresh=False) -> SearchResult:
    """Search a STAC API with pystac-client (pages followed), retried, cached, re-checked client side.

    No signing here: hrefs stay unsigned (in memory and in the cache); they are signed
    right before each read, so a SAS token never outlives its hour in a long run.
    """
    period = (f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{end:%Y-%m-%dT%H:%M:%SZ}")
    cache = SearchCache(source.cache_dir) if source.cache_dir else None
    key = search_key(source.url, source.collection, bbox, period, max_cloud, max_items)
    if cache is not None and not refresh:
        hit = cache.get(key)
        fault = _unusable(hit, bands) if hit and bands else None
        if fault:
            drop_entry(
                cache.path(key), f"none of its {len(hit or ())} items can be read for {list(bands or ())}; {fault}"
            )
        elif hit is not None:
            log.info("STAC search cache hit (%s): %d items", cache.path(key).name, len(hit))
            return SearchResult(hit, cache.path(key))
    where = redact_url(source.url)
    items = _retry(
        lambda: _query_api(source, bbox, period, max_cloud, max_items),
        f"STAC search at {where}",
        source.retry,
        _classify_search_error,
    )
    kept, seen = [], set()
    for item in items:  # the API's filter, trusted but verified
        cloud = item.properties.get("eo:cloud_cover")
        if item.id in seen or cloud is None or not cloud < max_cloud:
            continue
        if item.bbox and not _bbox_intersects(item.bbox, bbox):
            continue
        if not start <= acquired(item) <= end:
            continue
        seen.add(item.id)
        kept.append(item)
    if len(kept) < len(items):
        log.warning(
            "STAC search at %s: dropped %d items the API returned outside the filter", where, len(items) - len(kept)
        )
    if cache is not None:
        cache.put(key, kept)
    return SearchResult(kept)


def _query_api(source: Source, bbox, period, max_cloud, max_items) -> list[pystac.Item]:
    import pystac_client
    from pystac_client.stac_api_io import StacApiIO

    # Retries are ours (backoff, attempt count in the error), so none inside requests.
    stac_io = StacApiIO(timeout=source.retry.timeout, max_retries=None)
    client = pystac_client.Client.open(source.url, stac_io=stac_io, timeout=source.retry.timeout)
    search = client.search(
        collections=[source.collection],
        bbox=list(bbox),
        datetime=f"{period[0]}/{period[1]}",
        query={"eo:cloud_cover": {"lt": max_cloud}},
        limit=source.page_size,
        max_items=max_items,
    )
    return list(search.items())


# ---- retries, redaction, signing -------------------------------------------------------------


def _status_of(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None)
    response = getattr(err, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if status is None:
        m = re.search(r"HTTP (?:response code|status)[: ]+(\d{3})", str(err))
        status = int(m.group(1)) if m else None
    return status


def _classify_search_error(err: BaseException) -> str:
    """'retry' (network, 429, 5xx), 'fail' (other HTTP/API errors) or 'raise' (not an I/O problem)."""
    import requests
    from pystac_client.exceptions import APIError

    if isinstance(err, (requests.ConnectionError, requests.Timeout)):
        return "retry"
    if isinstance(err, (APIError, requests.RequestException)):
        status = _status_of(err)
        return "retry" if status is None or status == 429 or status >= 500 else "fail"
    return "raise"


_PERMANENT = ("HTTP response code: 404", "No such file or directory", "does not exist in the file system")


def _classify_read_error(err: BaseException) -> str:
    """'forbidden' (403: token expired, re-sign), 'retry', 'fail' or 'raise' for a raster read."""
    from rasterio.errors import RasterioError

    try:
        from rasterio._err import CPLE_BaseError
    except ImportError:  # pragma: no cover - rasterio internals moved
        CPLE_BaseError = RasterioError
    if not isinstance(err, (RasterioError, CPLE_BaseError, OSError)):
        return "raise"
    status = _status_of(err)
    text = str(err)
    if status == 403 or "AuthenticationFailed" in text or "Signature not valid" in text:
        return "forbidden"
    if status is not None and status != 429 and status < 500:
        return "fail"
    if any(p in text for p in _PERMANENT):
        return "fail"
    return "retry"


def _retry(fn, what: str, policy: RetryPolicy, classify, sleep=None):
    """``fn()`` up to ``policy.attempts`` times with exponential backoff on transient errors."""
    sleep = sleep or time.sleep
    last: BaseException | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below
            verdict = classify(err)
            if verdict == "raise":
                raise
            if verdict != "retry":
                raise ImageryAccessError(f"{what} failed: {type(err).__name__}: {redact(err)}") from None
            last = err
            if attempt < policy.attempts:
                delay = policy.delay(attempt)
                log.warning(
                    "%s failed (attempt %d/%d: %s); retrying in %.2f s",
                    what,
                    attempt,
                    policy.attempts,
                    redact(err)[:300],
                    delay,
                )
                sleep(delay)
    raise ImageryAccessError(
        f"{what} failed after {policy.attempts} attempts; last error: {type(last).__name__}: {redact(last)[:500]}"
    ) from None


def _install_redaction() -> None:
    """Put the redacting filter on every handler of the root logger (whoever logs) and on every rasterio
    logger (its GDAL error and debug lines name the signed href), where it is not already."""
    names = {
        "rasterio",
        "rasterio._base",
        "rasterio._io",
        "rasterio._warp",
        "rasterio._env",
        "rasterio.env",
        "rasterio._err",
        "rasterio._filepath",
        "rasterio.vrt",
        "rasterio.io",
        "rasterio._path",
    }
    names |= {n for n in list(logging.root.manager.loggerDict) if n.startswith("rasterio")}
    install_redaction(None, sorted(names))


class PlanetaryComputerSigner:
    """``planetary_computer.sign`` for one href; ``refresh()`` drops cached SAS tokens (after a 403)."""

    def __call__(self, href: str) -> str:
        import planetary_computer

        return planetary_computer.sign(href)

    def refresh(self) -> None:
        from planetary_computer import sas

        getattr(sas, "TOKEN_CACHE", {}).clear()


def _signer_for(source: Source) -> Callable[[str], str] | None:
    if source.signer is not None:
        return source.signer
    if source.kind == "planetary_computer":
        return PlanetaryComputerSigner()
    return None


# ---- which asset is which band, what each item is ------------------------------------------------

_ASSET_KEY_ALIASES = {key.lower(): band for band, keys in KNOWN_ASSET_KEYS.items() for key in keys}
_BAND_ID = re.compile(r"^B0?(\d{1,2}A?)$", re.IGNORECASE)


def _band_id(name: object) -> str | None:
    """A Sentinel-2 band id in the table's spelling ("B4", "b04" -> "B04"), else None."""
    m = _BAND_ID.match(str(name or "").strip())
    if not m:
        return None
    digits = m.group(1).upper()
    band = f"B{digits}" if digits.endswith("A") else f"B{digits.zfill(2)}"
    return band if band in S2_BANDS else None


def _declared_bands(fields: Mapping) -> list[Band]:
    """The bands an asset declares: ``eo:bands`` (STAC 1.0), else STAC 1.1 ``bands`` with ``eo:`` fields.

    pystac's ``Band`` wraps the dicts as they are: ``EOExtension.ext`` refuses items that use the
    fields without declaring the extension's schema, as many catalogs do.
    """
    bands = fields.get("eo:bands")
    if isinstance(bands, list) and bands:
        return [Band(dict(b)) for b in bands if isinstance(b, Mapping)]
    bands = fields.get("bands")
    if isinstance(bands, list) and bands:
        return [
            Band(
                {
                    "name": b.get("name"),
                    "common_name": b.get("eo:common_name"),
                    "center_wavelength": b.get("eo:center_wavelength"),
                }
            )
            for b in bands
            if isinstance(b, Mapping)
        ]
    return []


def _band_by_wavelength(wavelength: float) -> str | None:
    nearest = min(S2_BANDS, key=lambda b: abs(S2_BANDS[b][0] - wavelength))
    return nearest if abs(S2_BANDS[nearest][0] - wavelength) <= _WAVELENGTH_TOLERANCE else None


def band_of(declared: Band) -> tuple[str | None, int]:
    """Which Sentinel-2 band one declared band (``eo:bands`` entry) is, and how it was known:
    (band, 0) by its name, (band, 1) by its spectrum, (None, 9) when it is no band of :data:`S2_BANDS`.

    By spectrum: the centre wavelength names the nearest band of :data:`S2_BANDS` (a declared common
    name must then agree with it); without a wavelength, a common name that only one band uses.
    """
    band = _band_id(declared.name)
    if band:
        return band, 0
    common = (declared.common_name or "").lower() or None
    if declared.center_wavelength is not None:
        band = _band_by_wavelength(float(declared.center_wavelength))
        if band and (common is None or common in S2_BANDS[band][1]):
            return band, 1
        return None, 9
    owners = [b for b, (_, names) in S2_BANDS.items() if common in names]
    return (owners[0], 1) if len(owners) == 1 else (None, 9)


def _format_rank(key: str, asset: pystac.Asset) -> int:
    """0 GeoTIFF/COG, 1 unknown, 2 JPEG 2000: Earth Search lists each band twice (COG and ``-jp2``)."""
    media = (asset.media_type or "").lower()
    if "jp2" in media or key.lower().endswith("-jp2"):
        return 2
    return 0 if "tiff" in media else 1


def find_asset(item: pystac.Item, band: str) -> str | None:
    """The key of ``item``'s single-band asset holding ``band`` (e.g. "B04", "SCL"), or None.

    An asset holds ``band`` when the one band it declares (``eo:bands``) is named ``band`` or has its
    common name and centre wavelength (Earth Search v1 declares "red", 0.665 um), or, declaring nothing,
    when its key is either provider's ("B04"/"red", "SCL"/"scl"). Multi-band assets (``visual``) never
    match. Among several, a declared one beats a key-only one, then a COG beats a JPEG 2000 copy.
    """
    candidates = []
    for key, asset in item.assets.items():
        declared = _declared_bands(asset.extra_fields)
        if len(declared) == 1:
            if band_of(declared[0])[0] != band:
                continue
            by_key = False
        elif not declared and _ASSET_KEY_ALIASES.get(key.lower()) == band:
            by_key = True
        else:
            continue
        candidates.append((by_key, _format_rank(key, asset), key not in KNOWN_ASSET_KEYS.get(band, ()), key))
    return min(candidates)[-1] if candidates else None


def _collection_item_assets(item: pystac.Item) -> Mapping | None:
    """The ``item_assets`` of the item's collection when it is on disk (never a request while reading)."""
    link = item.get_single_link(pystac.RelType.COLLECTION)
    if link is None:
        return None
    if not link.is_resolved() and urlsplit(link.get_absolute_href() or "").scheme in ("http", "https"):
        return None
    try:
        collection = item.get_collection()
    except Exception:  # noqa: BLE001 - a broken link only loses an optional fallback
        return None
    return collection.extra_fields.get("item_assets") if collection is not None else None


class MissingAssetError(InputDataError):
    """An item has no asset for a band the request needs."""


@dataclass(frozen=True, eq=False)
class ItemPlan:
    """What to read of one item: the asset key and radiometry of each requested band, and the SCL asset."""

    item: pystac.Item
    assets: Mapping[str, str]  # band -> asset key
    radiometry: Mapping[str, Radiometry]  # band -> how its DN become reflectance
    scl: str  # asset key of the Scene Classification Layer
    scl_nodata: float | None  # from the SCL asset's raster:bands, when given


def plan_item(item: pystac.Item, bands: Sequence[str]) -> ItemPlan:
    """Find every asset ``bands`` and SCL need in ``item`` and decide each one's radiometry.

    Raises :class:`MissingAssetError` naming the item and the first missing band, or
    :class:`InputDataError` when the item's radiometry metadata is unusable.
    """
    item_assets = _collection_item_assets(item)
    keys, rads = {}, {}
    for band in (*bands, "SCL"):
        key = find_asset(item, band)
        if key is None:
            raise MissingAssetError(
                f"item {item.id} has no asset for band {band} (assets: {sorted(item.assets)}); "
                "if the band is there under another key, declare it in the asset's eo:bands"
            )
        keys[band] = key
        rads[band] = asset_radiometry(item, key, item_assets)
    return ItemPlan(item, {b: keys[b] for b in bands}, {b: rads[b] for b in bands}, keys["SCL"], rads["SCL"].nodata)


_TILE_IN_TEXT = re.compile(r"(?:^|_)T?(\d{2}[C-X][A-Z]{2})(?=_|$)")
_SEQUENCE_IN_ID = re.compile(r"_(\d+)_L2A$")
_PLATFORM_IN_ID = re.compile(r"^S2([A-D])_", re.IGNORECASE)


def mgrs_tile(item: pystac.Item) -> str | None:
    """The item's MGRS granule ("21MXN"): ``s2:mgrs_tile``, the ``mgrs:``/``sentinel:`` parts, ``grid:code``,
    else the ``T21MXN`` / ``21MXN`` of a product id or the item id."""
    p = item.properties
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"]).upper().lstrip("T")
    for prefix in ("mgrs:", "sentinel:"):
        parts: tuple[Any, Any, Any] = (
            p.get(f"{prefix}utm_zone"),
            p.get(f"{prefix}latitude_band"),
            p.get(f"{prefix}grid_square"),
        )
        if all(v is not None for v in parts):
            return f"{int(parts[0]):02d}{parts[1]}{parts[2]}".upper()
    if str(p.get("grid:code", "")).upper().startswith("MGRS-"):
        return str(p["grid:code"])[5:].upper()
    for text in (p.get("s2:product_uri"), p.get("sentinel:product_id"), p.get("s2:granule_id"), item.id):
        m = _TILE_IN_TEXT.search(str(text or ""))
        if m:
            return m.group(1).upper()
    return None


def acquisition_key(item: pystac.Item) -> tuple:
    """(platform, sensing time to the second, MGRS granule): the same for every listing of one acquisition.

    Without a granule the footprint (bbox to ~100 m) stands in, so different granules never merge.
    """
    platform = str(item.properties.get("platform") or "").lower().replace(" ", "-") or None
    if platform is None:
        m = _PLATFORM_IN_ID.match(item.id)
        platform = f"sentinel-2{m.group(1).lower()}" if m else None
    when = item.datetime or item.properties.get("start_datetime")
    when = when.replace(microsecond=0).isoformat() if isinstance(when, datetime) else str(when)
    where = mgrs_tile(item) or tuple(round(v, 3) for v in (item.bbox or ()))
    return platform, when, where


def processing_rank(item: pystac.Item) -> tuple:
    """Sort key of one acquisition's listings, newest processing last: baseline, then sequence
    (``s2:sequence``, ``sentinel:sequence`` or the ``_1_`` of an Earth Search id), ``updated``, ``created``."""
    p = item.properties
    try:
        baseline = processing_baseline(p, item.id) or (-1, -1)
    except InputDataError:
        baseline = (-1, -1)
    sequence = p.get("s2:sequence", p.get("sentinel:sequence"))
    if sequence is None:
        m = _SEQUENCE_IN_ID.search(item.id)
        sequence = m.group(1) if m else -1
    try:
        sequence = int(sequence)
    except (TypeError, ValueError):
        sequence = -1
    return baseline, sequence, str(p.get("updated") or ""), str(p.get("created") or "")


def unique_acquisitions(items: Sequence[pystac.Item]) -> tuple[list[pystac.Item], list[tuple[str, str]]]:
    """``items`` with each acquisition once (its newest processing, at the place of its first listing),
    and the (dropped id, kept id) pairs."""
    groups: dict[tuple, list[pystac.Item]] = {}
    for item in items:
        groups.setdefault(acquisition_key(item), []).append(item)
    kept, dropped = [], []
    for group in groups.values():
        best = max(group, key=processing_rank)  # max keeps the first of equals
        kept.append(best)
        dropped += [(it.id, best.id) for it in group if it is not best]
    return kept, dropped


def select_items(items: Iterable[pystac.Item], bands: Sequence[str]) -> list[ItemPlan]:
    """Plans of the usable items, in the given order: an item lacking a needed asset (or with unusable
    metadata) is skipped with a WARNING naming it; an acquisition listed twice is used once (logged)."""
    plans = {}
    for item in items:
        try:
            plans[id(item)] = plan_item(item, bands)
        except InputDataError as err:
            log.warning("skipping item %s (left out of the composite and its provenance): %s", item.id, err)
    usable = [p.item for p in plans.values()]
    kept, dropped = unique_acquisitions(usable)
    for gone, best in dropped:
        log.info("item %s is the same acquisition as %s, which is newer processing: using %s once", gone, best, best)
    return [plans[id(it)] for it in kept]


# ---- reading ---------------------------------------------------------------------------------


def read_band(
    item: pystac.Item,
    source: Source,
    band: str,
    grid: Grid,
    resampling: Resampling,
    key: str | None = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, float]:
    """One band of ``item`` on ``grid``: signed right before reading, retried, re-signed once on 403.

    ``key``: the asset (default: :func:`find_asset`). ``nodata``: the DN meaning no data when the
    metadata says so (default: the file's, else 0). Returns (DN array (H, W), nodata DN).
    Errors and log lines name the unsigned href only, never a signed one.
    """
    href = _href(item, band, key)
    safe = redact_url(href)
    _install_redaction()
    signer = _signer_for(source)
    policy = source.retry
    resigned = False
    failures = 0
    while True:
        signed = signer(href) if signer else href
        try:
            return read_asset(signed, grid, resampling, fresh=resigned or failures > 0, nodata=nodata)
        except Exception as err:  # noqa: BLE001 - classified below
            verdict = _classify_read_error(err)
            message = redact(f"{type(err).__name__}: {err}", signed)
            if verdict == "raise":
                if signed != href and signed in f"{err!s}{err!r}":  # not ours to classify, nor to leak
                    raise ImageryAccessError(
                        f"reading {safe} (item {item.id}, band {band}) failed: {message}"
                    ) from None
                raise
            if verdict == "forbidden" and signer is not None and not resigned:
                resigned = True  # an expired token: sign again once, no backoff, not counted as an attempt
                log.warning("asset %s refused (%s); signing it again", safe, message[:300])
                if hasattr(signer, "refresh"):
                    signer.refresh()
                continue
            if verdict != "retry":
                raise ImageryAccessError(f"reading {safe} (item {item.id}, band {band}) failed: {message}") from None
            failures += 1
            if failures >= policy.attempts:
                raise ImageryAccessError(
                    f"reading {safe} (item {item.id}, band {band}) failed after "
                    f"{policy.attempts} attempts; last error: {message[:500]}"
                ) from None
            delay = policy.delay(failures)
            log.warning(
                "reading %s failed (attempt %d/%d: %s); retrying in %.2f s",
                safe,
                failures,
                policy.attempts,
                message[:300],
                delay,
            )
            time.sleep(delay)


def read_asset(
    href: str, grid: Grid, resampling: Resampling, fresh: bool = False, nodata: float | None = None
) -> tuple[np.ndarray, float]:
    """Read one single-band asset warped onto ``grid``; only the overlapping windows are fetched.

    ``fresh``: bypass GDAL's /vsicurl/ cache for this URL (it remembers a failed answer,
    so a retry without it would only replay the 503). ``nodata``: the DN that means no data
    (default: the file's, else 0, Sentinel-2's NODATA); those pixels never enter the resampling.
    Returns (DN array (H, W) in the file's dtype, nodata DN).
    """
    remote = urlsplit(href).scheme in ("http", "https")
    options = {}
    if remote:
        options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": 0}
        if fresh:
            options["CPL_VSIL_CURL_NON_CACHED"] = "/vsicurl/" + redact_url(href)
    env = rasterio.Env(**options)
    with env, rasterio.open(href) as src:
        if nodata is None:
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
    item: pystac.Item,
    source: Source,
    bands: Sequence[str],
    grid: Grid,
    cloud_buffer_m: float = default("imagery.cloud_buffer_m"),
    plan: ItemPlan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (bands, H, W) float32 with NaN where no data, and the clear-pixel mask (H, W) from SCL.

    Each band's DN become reflectance by the radiometry its item's metadata implies (``plan``, default
    :func:`plan_item`). Raises :class:`MissingAssetError` when ``item`` lacks a band (without a plan).
    """
    plan = plan or plan_item(item, bands)
    out = np.full((len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    for i, band in enumerate(bands):
        rad = plan.radiometry[band]
        dn, nodata = read_band(item, source, band, grid, Resampling.bilinear, plan.assets[band], rad.nodata)
        out[i] = rad.reflectance(dn, nodata)
    scl, _ = read_band(item, source, "SCL", grid, Resampling.nearest, plan.scl, plan.scl_nodata)
    clear = clear_mask(scl, int(round(cloud_buffer_m / grid.resolution))) & np.all(np.isfinite(out), axis=0)
    return out, clear


def _href(item: pystac.Item, band: str, key: str | None = None) -> str:
    key = key or find_asset(item, band)
    if key is None or key not in item.assets:
        raise MissingAssetError(f"item {item.id} has no asset for band {band} (assets: {sorted(item.assets)})")
    href = item.assets[key].get_absolute_href()
    if href is None:  # pystac's answer for a relative href whose item has no self link
        raise MissingAssetError(
            f"item {item.id}, asset {key}: its href {item.assets[key].href!r} is relative and the item has no self "
            "link to resolve it against; give the catalog's items absolute hrefs or self links"
        )
    return href


def composite(stack: np.ndarray, clear: np.ndarray, method: str = "median") -> np.ndarray:
    """Combine scenes (scenes, bands, H, W) into one image using only clear pixels.

    ``median``: per-pixel median of the clear observations (robust to missed cloud).
    ``least_cloudy``: first clear observation in the given order (caller sorts by cloud cover).
    Pixels never clear stay NaN.
    """
    masked = np.where(clear[:, None], stack, np.nan)
    if method == "median":
        return _nanmedian_scenes(masked)
    if method == "least_cloudy":
        out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
        for scene in masked:
            fill = np.isnan(out) & np.isfinite(scene)
            out[fill] = scene[fill]
        return out
    raise ValueError(f"composite method {method!r} unknown; use 'median' or 'least_cloudy'")


def _nanmedian_scenes(masked: np.ndarray) -> np.ndarray:
    """``np.nanmedian(masked, axis=0)`` as float32, NaN where no scene has a value.

    Sorting the few scenes once (NaN sort last) and averaging the middle finite pair is ~50x faster than
    ``np.nanmedian``, which falls back to a per-pixel loop when some pixels are all NaN (every cloudy or
    out-of-swath one).
    """
    ordered = np.sort(masked, axis=0)
    count = np.isfinite(masked).sum(axis=0)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2)[None], axis=0)[0] if len(masked) > 1 else low
    with np.errstate(invalid="ignore"):
        out = ((low.astype(np.float64) + high) / 2).astype(np.float32)
    out[count == 0] = np.nan
    return out


@dataclass(frozen=True)
class ImageryRequest:
    """What to fetch: bands, period, scene cloud limit, composite method."""

    bands: tuple[str, ...]
    period: tuple[str, str]
    max_cloud: float
    composite: str = default("imagery.composite")
    max_scenes: int = default("imagery.max_scenes")
    cloud_buffer_m: float = default("imagery.cloud_buffer_m")

    @classmethod
    def from_config(cls, cfg: Mapping) -> ImageryRequest:
        return cls(
            tuple(cfg["bands"]),
            tuple(cfg["period"]),
            float(cfg["max_cloud_cover"]),
            cfg.get("composite", default("imagery.composite")),
            int(cfg.get("max_scenes", default("imagery.max_scenes"))),
            float(cfg.get("cloud_buffer_m", default("imagery.cloud_buffer_m"))),
        )


def no_scene_message(source: Source, request: ImageryRequest, grid: Grid, found: int = 0) -> str:
    """The "no usable item" error text; ``found``: items the search gave that all had to be skipped."""
    skipped = f" ({found} found, none usable: each one skipped is named in a warning above)" if found else ""
    return (
        f"no {source.collection} scene with cloud < {request.max_cloud}% over {grid.bbox_lonlat()} "
        f"in {request.period[0]}..{request.period[1]}{skipped}; widen imagery.period or raise "
        f"imagery.max_cloud_cover, and check that imagery.source.collection ({source.collection}) is the "
        "catalog's"
    )


def fetch_composite(
    source: Source,
    request: ImageryRequest,
    grid: Grid,
    items: Iterable[pystac.Item] | None = None,
    check: bool = True,
) -> tuple[np.ndarray, list[pystac.Item]]:
    """Search (unless ``items`` given), read and composite imagery onto ``grid``.

    Items lacking a needed asset are skipped and an acquisition listed twice is read once
    (:func:`select_items`) before the first ``request.max_scenes`` are taken. With ``check`` a
    WARNING names the items when the composite's band medians are not physical reflectance.
    Returns the composite (bands, H, W) float32 reflectance (NaN: never clear) and the items that
    contributed clear pixels. Raises :class:`NoImageryError` when no item is usable or clear.
    """
    if items is None:
        items = search_items(source, grid.bbox_lonlat(), request.period, request.max_cloud)
    items = list(items)
    plans = select_items(items, request.bands)[: request.max_scenes]
    if not plans:
        raise NoImageryError(no_scene_message(source, request, grid, len(items)))
    stacks, clears, used = [], [], []
    for plan in plans:
        refl, clear = read_item(plan.item, source, request.bands, grid, request.cloud_buffer_m, plan)
        if clear.any():
            stacks.append(refl)
            clears.append(clear)
            used.append(plan)
    if not used:
        raise NoImageryError(f"all {len(plans)} scenes over {grid.bbox_lonlat()} are cloudy or empty there")
    image = composite(np.stack(stacks), np.stack(clears), request.composite)
    if check:
        warn_if_implausible(band_medians(image, request.bands), used, f"composite over {grid.bbox_lonlat()}")
    return image, [p.item for p in used]


def band_medians(image: np.ndarray, bands: Sequence[str]) -> dict[str, float]:
    """Median of each band's finite (clear) pixels of a composite (bands, H, W); NaN for an empty band."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {b: float(np.nanmedian(image[i])) for i, b in enumerate(bands)}


def warn_if_implausible(medians: Mapping[str, float], used: Sequence[ItemPlan], where: str) -> bool:
    """Log a WARNING naming the items and their radiometry rules when ``medians`` are not physical
    (:func:`garimpo.imagery.radiometry.implausible`); True when it warned."""
    reasons = implausible(medians)
    if reasons:
        rules = sorted({f"{p.item.id} ({', '.join(sorted({r.rule for r in p.radiometry.values()}))})" for p in used})
        log.warning(
            "%s: implausible reflectance (%s) from items %s; check their earthsearch:boa_offset_applied, "
            "raster:bands and s2:processing_baseline",
            where,
            "; ".join(reasons),
            ", ".join(rules),
        )
    return bool(reasons)


def radiometry_record(item: pystac.Item, bands: Sequence[str] | None = None) -> dict:
    """How ``item``'s pixels were turned into reflectance, for provenance: ``{"item", "rule", "scale",
    "offset"}``, or ``{"item", "bands": {band: {...}}}`` when its bands differ.

    ``bands``: the bands read (default: every Sentinel-2 band the item has). Bands it lacks are left out.
    """
    item_assets = _collection_item_assets(item)
    records = {}
    for band in bands if bands is not None else S2_BANDS:
        key = find_asset(item, band)
        if key is not None:
            records[band] = asset_radiometry(item, key, item_assets).record()
    distinct = {json.dumps(r, sort_keys=True) for r in records.values()}
    if len(distinct) == 1:
        return {"item": item.id, **next(iter(records.values()))}
    return {"item": item.id, "bands": records} if records else {"item": item.id, "rule": None}


def acquired(item: pystac.Item) -> datetime:
    """When the item was acquired: its ``datetime``, or its ``start_datetime`` where ``datetime`` is null
    (STAC item spec: null only with start_datetime and end_datetime given). Raises InputDataError when
    it has neither."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise InputDataError(f"STAC item {item.id} has no datetime nor start_datetime: fix the catalog")
    return when


def provenance(items: Sequence[pystac.Item], bands: Sequence[str] | None = None) -> dict:
    """Scene ids, dates, cloud cover and the radiometry rule of each item, for the outputs' metadata
    (never hrefs: they may be signed). ``bands``: the bands read (default: all the items have)."""
    return {
        "scene_ids": [it.id for it in items],
        "dates": [acquired(it).date().isoformat() for it in items],
        "cloud_cover": [it.properties.get("eo:cloud_cover") for it in items],
        "radiometry": [radiometry_record(it, bands) for it in items],
    }
