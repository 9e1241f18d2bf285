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
from pathlib import Path
from typing import Sequence

import pystac

from .atomic import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def search_key(url: str, collection: str, bbox: Sequence[float], period: Sequence[str], max_cloud: float,
               max_items: int | None = None) -> str:
    """A stable file-name-safe key of everything that shapes a search's answer."""
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
    """``get(key)`` -> list of Items or None; ``put(key, items)`` writes atomically."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)

    def path(self, key: str) -> Path:
        return self.dir / f"search-{key}.json"

    def get(self, key: str) -> list[pystac.Item] | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text())
            return list(pystac.ItemCollection.from_dict(data, preserve_dict=False).items)
        except (OSError, ValueError, KeyError, TypeError) as err:  # corrupt entry: ignore, search again
            log.warning("ignoring unreadable STAC search cache %s (%s)", p.name, type(err).__name__)
            return None

    def put(self, key: str, items: Sequence[pystac.Item]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        data = pystac.ItemCollection(items, clone_items=True).to_dict(transform_hrefs=False)
        with atomic_path(p, suffix=".tmp") as tmp, open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return p
