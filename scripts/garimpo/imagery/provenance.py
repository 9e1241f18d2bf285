"""What the outputs say about the imagery they came from: scene ids, dates, cloud cover, radiometry rules.

JSON-ready dicts for the metadata written beside every result; never an href (it may be signed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pystac

from garimpo.imagery.assets import acquired, collection_item_assets, find_asset
from garimpo.imagery.radiometry import asset_radiometry
from garimpo.imagery.sensor import SENTINEL2_L2A, SensorProfile


def radiometry_record(
    item: pystac.Item, bands: Sequence[str] | None = None, profile: SensorProfile = SENTINEL2_L2A
) -> dict:
    """How ``item``'s pixels were turned into reflectance, for provenance: ``{"item", "rule", "scale",
    "offset"}``, or ``{"item", "bands": {band: {...}}}`` when its bands differ, or ``{"item", "rule": None}``
    when it has none of them.

    ``bands``: the bands read (default: every band of ``profile`` the item has). Bands it lacks are left
    out. Raises :class:`~garimpo.errors.InputDataError` when the item's radiometry metadata is unusable.
    """
    item_assets = collection_item_assets(item)
    records = {}
    for band in bands if bands is not None else profile.bands:
        key = find_asset(item, band, profile)
        if key is not None:
            records[band] = asset_radiometry(item, key, item_assets, profile).record()
    distinct = {json.dumps(r, sort_keys=True) for r in records.values()}
    if len(distinct) == 1:
        return {"item": item.id, **next(iter(records.values()))}
    return {"item": item.id, "bands": records} if records else {"item": item.id, "rule": None}


def provenance(
    items: Sequence[pystac.Item], bands: Sequence[str] | None = None, profile: SensorProfile = SENTINEL2_L2A
) -> dict:
    """Scene ids, acquisition dates (ISO), cloud cover (percent, None when unknown) and the radiometry rule
    of each item (:func:`radiometry_record`), as parallel lists, for the outputs' metadata (never hrefs:
    they may be signed). ``bands``: the bands read (default: all of ``profile`` the items have).
    Raises :class:`~garimpo.errors.InputDataError` when an item has no datetime or unusable metadata."""
    return {
        "scene_ids": [it.id for it in items],
        "dates": [acquired(it).date().isoformat() for it in items],
        "cloud_cover": [it.properties.get("eo:cloud_cover") for it in items],
        "radiometry": [radiometry_record(it, bands, profile) for it in items],
    }
