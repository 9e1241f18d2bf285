"""One STAC reading path for every imagery source.

Sources are a local static catalog (the offline demo, or any catalog on disk) or
a STAC API (Microsoft Planetary Computer, Earth Search). Items are searched by
bbox, period and scene cloud cover; pixels are read per asset through a warped
view onto the caller's target grid, so only the needed windows of each COG are
fetched and a window straddling two granules or UTM zones comes out seamless.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pystac
import rasterio
from scipy import ndimage
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from .errors import GarimpoError, InputDataError, NoImageryError
from .raster import Grid
from .stac_cache import SearchCache, search_key

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
    def from_config(cls, cfg: Mapping | None) -> "RetryPolicy":
        cfg = cfg or {}
        return cls(int(cfg.get("attempts", 4)), float(cfg.get("base_delay_s", 1.0)),
                   float(cfg.get("max_delay_s", 30.0)), float(cfg.get("timeout_s", 60.0)))


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
    harmonized: bool = False  # True for collections already corrected for the 04.00 offset
    cache_dir: str | None = None
    retry: RetryPolicy = RetryPolicy()
    signer: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    page_size: int = 100  # items per search page asked of the API

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Source":
        kind = cfg["kind"]
        if kind not in ASSET_KEYS:
            raise InputDataError(f"imagery.source.kind {kind!r} unknown; use one of {sorted(ASSET_KEYS)}")
        collection = cfg.get("collection", "sentinel-2-l2a")
        harmonized = bool(cfg.get("harmonized", collection == "sentinel-2-c1-l2a"))
        cache_dir = cfg.get("cache_dir")
        return cls(kind, str(cfg["url"]), collection, harmonized,
                   str(cache_dir) if cache_dir else None, RetryPolicy.from_config(cfg.get("retry")))

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
    """Search a STAC API with pystac-client (pages followed), retried, cached, re-checked client side.

    No signing here: hrefs stay unsigned (in memory and in the cache); they are signed
    right before each read, so a SAS token never outlives its hour in a long run.
    """
    period = (f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{end:%Y-%m-%dT%H:%M:%SZ}")
    cache = SearchCache(source.cache_dir) if source.cache_dir else None
    key = search_key(source.url, source.collection, bbox, period, max_cloud, max_items)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            log.info("STAC search cache hit (%s): %d items", cache.path(key).name, len(hit))
            return hit
    where = redact_url(source.url)
    items = _retry(lambda: _query_api(source, bbox, period, max_cloud, max_items), f"STAC search at {where}",
                   source.retry, _classify_search_error)
    kept, seen = [], set()
    for item in items:  # the API's filter, trusted but verified
        cloud = item.properties.get("eo:cloud_cover")
        if item.id in seen or cloud is None or not cloud < max_cloud:
            continue
        if item.bbox and not _bbox_intersects(item.bbox, bbox):
            continue
        if item.datetime is not None and not start <= item.datetime <= end:
            continue
        seen.add(item.id)
        kept.append(item)
    if len(kept) < len(items):
        log.warning("STAC search at %s: dropped %d items the API returned outside the filter",
                    where, len(items) - len(kept))
    if cache is not None:
        cache.put(key, kept)
    return kept


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

_QUERY_IN_URL = re.compile(r"((?:https?|s3|gs|az)://[^\s?#'\"<>]+)[?#][^\s'\"<>]*")


def redact_url(url: str) -> str:
    """``url`` without query string or fragment (where SAS tokens live); safe to log."""
    parts = urlsplit(str(url))
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a path (or a Windows drive)
        return str(url).split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def redact(text: object, *secrets: str) -> str:
    """``text`` with every URL's query string removed and each of ``secrets`` (signed hrefs) redacted."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, redact_url(secret))
    return _QUERY_IN_URL.sub(r"\1", out)


def _status_of(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None)
    if status is None and getattr(err, "response", None) is not None:
        status = getattr(err.response, "status_code", None)
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
                log.warning("%s failed (attempt %d/%d: %s); retrying in %.2f s", what, attempt, policy.attempts,
                            redact(err)[:300], delay)
                sleep(delay)
    raise ImageryAccessError(
        f"{what} failed after {policy.attempts} attempts; last error: {type(last).__name__}: {redact(last)[:500]}"
    ) from None


class _RedactFilter(logging.Filter):
    """Strips URL query strings (SAS tokens) from log records; rasterio's DEBUG lines name the signed href."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to break
            return True
        if "?" in text or "#" in text:
            record.msg, record.args = redact(text), ()
        return True


_REDACT_FILTER = _RedactFilter()


def _install_redaction() -> None:
    """Put the redacting filter on every rasterio logger (filters on a logger do not reach its children)."""
    names = {"rasterio", "rasterio._base", "rasterio._io", "rasterio._warp", "rasterio._env", "rasterio.env",
             "rasterio._err", "rasterio._filepath", "rasterio.vrt", "rasterio.io", "rasterio._path"}
    names |= {n for n in list(logging.root.manager.loggerDict) if n.startswith("rasterio")}
    for name in names:
        logger = logging.getLogger(name)
        if _REDACT_FILTER not in logger.filters:
            logger.addFilter(_REDACT_FILTER)


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


def read_band(item: pystac.Item, source: Source, band: str, grid: Grid,
              resampling: Resampling) -> tuple[np.ndarray, float]:
    """One band of ``item`` on ``grid``: signed right before reading, retried, re-signed once on 403.

    Errors and log lines name the unsigned href only, never a signed one.
    """
    href = _href(item, source, band)
    safe = redact_url(href)
    _install_redaction()
    signer = _signer_for(source)
    policy = source.retry
    resigned = False
    failures = 0
    while True:
        signed = signer(href) if signer else href
        try:
            return read_asset(signed, grid, resampling, fresh=resigned or failures > 0)
        except Exception as err:  # noqa: BLE001 - classified below
            verdict = _classify_read_error(err)
            message = redact(f"{type(err).__name__}: {err}", signed)
            if verdict == "raise":
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
                raise ImageryAccessError(f"reading {safe} (item {item.id}, band {band}) failed after "
                                         f"{policy.attempts} attempts; last error: {message[:500]}") from None
            delay = policy.delay(failures)
            log.warning("reading %s failed (attempt %d/%d: %s); retrying in %.2f s", safe, failures,
                        policy.attempts, message[:300], delay)
            time.sleep(delay)


def dn_offset(item: pystac.Item, source: Source) -> float:
    """The DN offset to remove: 1000 for processing baseline >= 04.00 unless harmonised."""
    if source.harmonized:
        return 0.0
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is not None:
        return DN_OFFSET if float(baseline) >= 4.0 else 0.0
    return DN_OFFSET if item.datetime >= BASELINE_OFFSET_DATE else 0.0


def read_asset(href: str, grid: Grid, resampling: Resampling, fresh: bool = False) -> tuple[np.ndarray, float]:
    """Read one single-band asset warped onto ``grid``; only the overlapping windows are fetched.

    ``fresh``: bypass GDAL's /vsicurl/ cache for this URL (it remembers a failed answer,
    so a retry without it would only replay the 503).
    """
    remote = urlsplit(href).scheme in ("http", "https")
    options = {}
    if remote:
        options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": 0}
        if fresh:
            options["CPL_VSIL_CURL_NON_CACHED"] = "/vsicurl/" + redact_url(href)
    env = rasterio.Env(**options)
    with env, rasterio.open(href) as src:
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
        dn, nodata = read_band(item, source, band, grid, Resampling.bilinear)
        valid = dn != nodata
        out[i][valid] = (dn[valid].astype(np.float32) - offset) / DN_SCALE
    scl, _ = read_band(item, source, "SCL", grid, Resampling.nearest)
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
