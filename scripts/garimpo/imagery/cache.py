"""On-disk cache of STAC API searches, so a rerun of the workflow does not query again.

One JSON file (a GeoJSON FeatureCollection of the items, i.e. a pystac ItemCollection)
per search, keyed by a hash of (API url, collection, bbox, period, max_cloud, max_items).
Files are written atomically (temporary file in the same folder, then ``os.replace``), so
a crash or a concurrent job never leaves a half-written cache entry behind. Hrefs stored
here are the unsigned ones (signing happens right before each read), so the cache holds
no credential.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pystac

from garimpo.atomic import atomic_path
from garimpo.errors import FolderInTheWayError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def search_key(
    url: str,
    collection: str,
    bbox: Sequence[float],
    period: Sequence[str],
    max_cloud: float,
    max_items: int | None = None,
) -> str:
    """A stable file-name-safe key (32 hex digits) of everything that shapes a search's answer: the API
    ``url`` (trailing slash aside), ``collection``, ``bbox`` (lon/lat degrees, to 1e-7), ``period`` (ISO
    texts), ``max_cloud`` (percent), ``max_items`` and :data:`CACHE_VERSION`."""
    payload = {
        "v": CACHE_VERSION,
        "url": url.rstrip("/"),
        "collection": collection,
        "bbox": [round(float(v), 7) for v in bbox],
        "period": [str(p) for p in period],
        "max_cloud": float(max_cloud),
        "max_items": max_items,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class SearchCache:
    """The search cache in folder ``cache_dir``: ``get(key)`` -> list of Items or None; ``put(key, items)``
    writes atomically. Keys come from :func:`search_key`."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)

    def path(self, key: str) -> Path:
        """The entry file of ``key``: ``<cache_dir>/search-<key>.json`` (whether or not it exists)."""
        return self.dir / f"search-{key}.json"

    def get(self, key: str) -> list[pystac.Item] | None:
        """The cached items of ``key``; None on a miss.

        An entry that cannot be used (not JSON, not a FeatureCollection of STAC Items, or one pystac
        refuses) is a miss too: it is deleted, with a warning naming the file, and the search runs again.
        A FeatureCollection without its ``features`` list is refused, not read as "no scene found". A folder
        at the entry's path raises :class:`FolderInTheWayError` (it is never deleted: it may hold anything).
        Entries that are well-formed but whose items cannot be read are dropped by the caller
        (:func:`garimpo.imagery.stac.search`, :func:`garimpo.imagery.stac.with_fresh_search`).
        Raises :class:`garimpo.errors.FolderInTheWayError` as said.
        """
        p = self.path(key)
        if not p.is_file():
            if p.exists():  # never deleted here: it may hold anything
                raise FolderInTheWayError(p, "STAC search cache")
            return None
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as err:  # unreadable, cut short, not UTF-8, not JSON
            return self._drop(p, f"{type(err).__name__}: {err}")
        problem = _shape_problem(data)
        if problem:
            return self._drop(p, problem)
        try:
            return list(pystac.ItemCollection.from_dict(data, preserve_dict=False).items)
        except Exception as err:  # pystac raises STACError, STACTypeError, KeyError, AttributeError, ValueError...
            return self._drop(p, f"pystac: {type(err).__name__}: {err}")

    @staticmethod
    def _drop(p: Path, why: str) -> None:
        drop_entry(p, why)
        return None

    def put(self, key: str, items: Sequence[pystac.Item]) -> Path:
        """Write ``items`` (unsigned hrefs, as searched) as the entry of ``key``, atomically and fsynced;
        returns its path. Raises ``OSError`` when the folder cannot be written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        data = pystac.ItemCollection(items, clone_items=True).to_dict(transform_hrefs=False)
        with atomic_path(p, suffix=".tmp") as tmp, open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return p


def drop_entry(path: str | os.PathLike, why: str) -> None:
    """Delete a search cache entry that cannot be used, with a warning naming it and ``why``; the search runs again."""
    p = Path(path)
    try:
        p.unlink(missing_ok=True)
        done = "deleted"
    except OSError as err:
        done = f"could not delete it ({err}); delete it by hand"
    log.warning("STAC search cache file %s cannot be used (%s): %s, searching again", p, why, done)


def _shape_problem(data) -> str | None:
    """What keeps ``data`` from being a cache entry as ``put`` writes it (a FeatureCollection of Items), or None."""
    if not isinstance(data, dict):
        return f"JSON {json.dumps(data)[:40]}, not a FeatureCollection object"
    if data.get("type") != "FeatureCollection":
        return f"a JSON object of type {data.get('type')!r}, not a FeatureCollection"
    features = data.get("features")
    if not isinstance(features, list):
        return "a FeatureCollection without a features list"
    for i, f in enumerate(features):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            return f"features[{i}] is not a Feature"
        if not isinstance(f.get("id"), str) or not f["id"]:
            return f"features[{i}] has no id"
        if not isinstance(f.get("properties"), dict):
            return f"features[{i}] has no properties"
        bbox = f.get("bbox")
        if bbox is not None and not (
            isinstance(bbox, list) and len(bbox) in (4, 6) and all(isinstance(v, (int, float)) for v in bbox)
        ):
            return f"features[{i}] has a bbox that is not 4 or 6 numbers"
        assets = f.get("assets")
        if not isinstance(assets, dict) or not all(
            isinstance(a, dict) and isinstance(a.get("href"), str) for a in assets.values()
        ):
            return f"features[{i}] has assets that are not a mapping of objects with an href"
    return None
