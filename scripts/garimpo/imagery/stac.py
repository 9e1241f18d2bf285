"""Where imagery comes from and which items cover a place and period: the one STAC search path.

Sources are a local static catalog (the offline demo, or any catalog on disk) or a STAC API (Microsoft
Planetary Computer, Earth Search). Items are searched by bbox, period and scene cloud cover; API searches
are retried (:mod:`garimpo.imagery.retry`), cached on disk (:mod:`garimpo.imagery.cache`) and re-checked
client side. Hrefs stay unsigned here: Planetary Computer's signer (:func:`signer_for`) is applied by the
reader right before each read (:mod:`garimpo.imagery.read`), so a SAS token never outlives its hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pystac

from garimpo.errors import ImageryAccessError, InputDataError
from garimpo.imagery.assets import acquired, plan_item
from garimpo.imagery.cache import SearchCache, drop_entry, search_key
from garimpo.imagery.redact import redact_url
from garimpo.imagery.retry import RetryPolicy, classify_search_error, retry
from garimpo.imagery.sensor import SENTINEL2_L2A, SensorProfile
from garimpo.schema import default

log = logging.getLogger(__name__)
T = TypeVar("T")

SOURCE_KINDS = ("local", "planetary_computer", "earth_search")


@dataclass(frozen=True)
class Source:
    """Where imagery comes from; built from the ``imagery.source`` config block.

    ``cache_dir``: where API searches are cached as JSON (None: no cache). ``retry``:
    backoff for searches and asset reads. ``signer``: ``href -> signed href`` applied
    right before each read (default: ``planetary_computer.sign`` for Planetary Computer,
    none otherwise); a signer with a ``refresh()`` method has it called before the one
    re-sign that follows a 403. ``page_size``: items per search page asked of the API.
    ``sensor``: what the collection's items hold (band names, asset keys, mask band and classes,
    radiometry defaults); every read and composite of this source uses it.
    """

    kind: str  # local | planetary_computer | earth_search
    url: str  # catalog.json path for local, API root URL otherwise
    collection: str = "sentinel-2-l2a"
    cache_dir: str | None = None
    retry: RetryPolicy = RetryPolicy()
    signer: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    page_size: int = 100
    sensor: SensorProfile = field(default=SENTINEL2_L2A, repr=False)

    @classmethod
    def from_config(cls, cfg: Mapping) -> Source:
        """The source of an ``imagery.source`` block (``kind``, ``url``, ``collection``, ``cache_dir``,
        ``retry``), reading :data:`~garimpo.imagery.sensor.SENTINEL2_L2A`.

        Raises :class:`InputDataError` for an unknown ``kind``, the retired ``harmonized`` key, or a
        retry block with ``attempts`` < 1; ``KeyError`` when ``kind`` or ``url`` is missing.
        """
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


@dataclass(frozen=True)
class ImageryRequest:
    """What to fetch: bands, period, scene cloud limit, composite method.

    ``bands``: band names of the source's sensor ("B04"...), in output order. ``period``: (start, end)
    ISO dates, both included. ``max_cloud``: scene cloud cover limit, percent (0..100, exclusive).
    ``composite``: "median" or "least_cloudy". ``max_scenes``: most items read. ``cloud_buffer_m``: metres
    by which the cloudy mask classes are grown. Defaults: the config schema's.
    """

    bands: tuple[str, ...]
    period: tuple[str, str]
    max_cloud: float
    composite: str = default("imagery.composite")
    max_scenes: int = default("imagery.max_scenes")
    cloud_buffer_m: float = default("imagery.cloud_buffer_m")

    @classmethod
    def from_config(cls, cfg: Mapping) -> ImageryRequest:
        """The request of the ``imagery`` config block (``bands``, ``period``, ``max_cloud_cover`` required;
        ``composite``, ``max_scenes``, ``cloud_buffer_m`` default to the schema's). Raises ``KeyError``
        for a missing required key, ``ValueError`` for a non-numeric one."""
        return cls(
            tuple(cfg["bands"]),
            tuple(cfg["period"]),
            float(cfg["max_cloud_cover"]),
            cfg.get("composite", default("imagery.composite")),
            int(cfg.get("max_scenes", default("imagery.max_scenes"))),
            float(cfg.get("cloud_buffer_m", default("imagery.cloud_buffer_m"))),
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
    """Items of the source's collection over ``bbox`` (lon/lat degrees: west, south, east, north) in
    ``period`` (ISO dates, both included) with cloud < ``max_cloud`` % (at most ``max_items`` from an API),
    least cloudy first. Raises as :func:`search`."""
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
    Raises :class:`InputDataError` when a local catalog is missing or an item has no datetime,
    :class:`ImageryAccessError` when the API cannot be reached after ``source.retry``'s attempts, and
    :class:`~garimpo.errors.FolderInTheWayError` when a folder sits at the cache entry's path.
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
    unusable is searched again before ``read`` (:func:`search`). Returns what ``read`` returns; raises what
    ``read`` and :func:`search` raise (:class:`ImageryAccessError` on fresh items included).
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


def _unusable(items: Sequence[pystac.Item], bands: Sequence[str], profile: SensorProfile) -> str | None:
    """Why none of ``items`` can be read for ``bands`` (the first one's fault), or None when one can."""
    first = None
    for item in items:
        try:
            plan_item(item, bands, profile)
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
        fault = _unusable(hit, bands, source.sensor) if hit and bands else None
        if fault:
            drop_entry(
                cache.path(key), f"none of its {len(hit or ())} items can be read for {list(bands or ())}; {fault}"
            )
        elif hit is not None:
            log.info("STAC search cache hit (%s): %d items", cache.path(key).name, len(hit))
            return SearchResult(hit, cache.path(key))
    where = redact_url(source.url)
    items = retry(
        lambda: _query_api(source, bbox, period, max_cloud, max_items),
        f"STAC search at {where}",
        source.retry,
        classify_search_error,
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


# ---- signing -------------------------------------------------------------------------------


class PlanetaryComputerSigner:
    """``planetary_computer.sign`` for one href; ``refresh()`` drops cached SAS tokens (after a 403).

    Tokens last about an hour (Planetary Computer's data access docs), hence signing right before each read.
    """

    def __call__(self, href: str) -> str:
        """``href`` with a SAS token appended (a credential: never log it). Raises what the
        ``planetary_computer`` package raises when no token can be had (a ``requests`` error)."""
        import planetary_computer

        return planetary_computer.sign(href)

    def refresh(self) -> None:
        """Forget the cached SAS tokens, so the next call fetches a fresh one."""
        from planetary_computer import sas

        getattr(sas, "TOKEN_CACHE", {}).clear()


def signer_for(source: Source) -> Callable[[str], str] | None:
    """The signer applied to ``source``'s hrefs right before each read: ``source.signer`` when given,
    :class:`PlanetaryComputerSigner` for Planetary Computer, else None (hrefs are read as they are)."""
    if source.signer is not None:
        return source.signer
    if source.kind == "planetary_computer":
        return PlanetaryComputerSigner()
    return None
