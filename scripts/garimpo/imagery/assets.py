"""What each STAC item is and what to read of it: which asset holds which band, each asset's radiometry,
which listings are one acquisition, which items are usable.

Assets are found by the band they declare, not by who serves the item (:func:`find_asset`): a catalog with
either provider's asset keys, or its own, reads the same. Band names, wavelengths, the providers' keys and
the mask band come from a :class:`~garimpo.imagery.sensor.SensorProfile` (default
:data:`~garimpo.imagery.sensor.SENTINEL2_L2A`). Pure metadata: nothing here reads a pixel or makes a request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pystac
from pystac.extensions.eo import Band

from garimpo.errors import InputDataError, MissingAssetError
from garimpo.imagery.radiometry import Radiometry, asset_radiometry, processing_baseline
from garimpo.imagery.sensor import SENTINEL2_L2A, SensorProfile

log = logging.getLogger(__name__)

# Sentinel-2 naming (ESA product format specification): MGRS granule "21MXN" (optionally "T21MXN") in
# product and granule ids; Earth Search's item ids end in the processing sequence ("_1_L2A"); product
# ids start with the platform ("S2B_").
_TILE_IN_TEXT = re.compile(r"(?:^|_)T?(\d{2}[C-X][A-Z]{2})(?=_|$)")
_SEQUENCE_IN_ID = re.compile(r"_(\d+)_L2A$")
_PLATFORM_IN_ID = re.compile(r"^S2([A-D])_", re.IGNORECASE)


# ---- which asset is which band -------------------------------------------------------------------


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


def band_of(declared: Band, profile: SensorProfile = SENTINEL2_L2A) -> tuple[str | None, int]:
    """Which band of ``profile`` one declared band (an ``eo:bands`` entry) is, and how it was known:
    (band, 0) by its name, (band, 1) by its spectrum, (None, 9) when it is none of ``profile.bands``.

    By spectrum: the centre wavelength (micrometres) names the nearest band of the profile within its
    tolerance (a declared common name must then agree with it); without a wavelength, a common name that
    only one band uses.
    """
    band = profile.band_named(declared.name)
    if band:
        return band, 0
    common = (declared.common_name or "").lower() or None
    if declared.center_wavelength is not None:
        band = profile.band_at(float(declared.center_wavelength))
        if band and (common is None or common in profile.bands[band].common_names):
            return band, 1
        return None, 9
    owners = profile.bands_called(common)
    return (owners[0], 1) if len(owners) == 1 else (None, 9)


def _format_rank(key: str, asset: pystac.Asset) -> int:
    """0 GeoTIFF/COG, 1 unknown, 2 JPEG 2000: Earth Search lists each band twice (COG and ``-jp2``)."""
    media = (asset.media_type or "").lower()
    if "jp2" in media or key.lower().endswith("-jp2"):
        return 2
    return 0 if "tiff" in media else 1


def find_asset(item: pystac.Item, band: str, profile: SensorProfile = SENTINEL2_L2A) -> str | None:
    """The key of ``item``'s single-band asset holding ``band`` (e.g. "B04", or the mask band "SCL"), or None.

    An asset holds ``band`` when the one band it declares (``eo:bands``) is named ``band`` or has its
    common name and centre wavelength (Earth Search v1 declares "red", 0.665 um), or, declaring nothing,
    when its key is a provider's for it in ``profile.asset_keys`` ("B04"/"red", "SCL"/"scl"; any case).
    Multi-band assets (``visual``) never match. Among several, a declared one beats a key-only one, then a
    COG beats a JPEG 2000 copy, then a provider's key beats another.
    """
    known = profile.known_keys(band)
    candidates = []
    for key, asset in item.assets.items():
        declared = _declared_bands(asset.extra_fields)
        if len(declared) == 1:
            if band_of(declared[0], profile)[0] != band:
                continue
            by_key = False
        elif not declared and profile.band_of_key(key) == band:
            by_key = True
        else:
            continue
        candidates.append((by_key, _format_rank(key, asset), key not in known, key))
    return min(candidates)[-1] if candidates else None


def collection_item_assets(item: pystac.Item) -> Mapping | None:
    """The ``item_assets`` of the item's collection when it is on disk or already loaded, else None
    (never a request while reading; a broken collection link only loses this optional fallback)."""
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


@dataclass(frozen=True, eq=False)
class ItemPlan:
    """What to read of one item: the asset key and radiometry of each requested band, and the mask asset.

    ``assets``: band -> asset key. ``radiometry``: band -> how its DN become reflectance. ``mask``: asset
    key of the profile's mask band (SCL for Sentinel-2 L2A). ``mask_nodata``: the mask's nodata value from
    its ``raster:bands``, when given.
    """

    item: pystac.Item
    assets: Mapping[str, str]
    radiometry: Mapping[str, Radiometry]
    mask: str
    mask_nodata: float | None


def plan_item(item: pystac.Item, bands: Sequence[str], profile: SensorProfile = SENTINEL2_L2A) -> ItemPlan:
    """Find every asset ``bands`` and the profile's mask band need in ``item`` and decide each one's
    radiometry (:func:`garimpo.imagery.radiometry.asset_radiometry` with ``profile``).

    Raises :class:`MissingAssetError` naming the item and the first missing band, or
    :class:`InputDataError` when the item's radiometry metadata is unusable.
    """
    item_assets = collection_item_assets(item)
    keys, rads = {}, {}
    for band in (*bands, profile.mask_band):
        key = find_asset(item, band, profile)
        if key is None:
            raise MissingAssetError(
                f"item {item.id} has no asset for band {band} (assets: {sorted(item.assets)}); "
                "if the band is there under another key, declare it in the asset's eo:bands"
            )
        keys[band] = key
        rads[band] = asset_radiometry(item, key, item_assets, profile)
    mask = profile.mask_band
    return ItemPlan(item, {b: keys[b] for b in bands}, {b: rads[b] for b in bands}, keys[mask], rads[mask].nodata)


# ---- what each item is ---------------------------------------------------------------------------


def acquired(item: pystac.Item) -> datetime:
    """When the item was acquired: its ``datetime``, or its ``start_datetime`` where ``datetime`` is null
    (STAC item spec: null only with start_datetime and end_datetime given). Raises InputDataError when
    it has neither."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise InputDataError(f"STAC item {item.id} has no datetime nor start_datetime: fix the catalog")
    return when


def mgrs_tile(item: pystac.Item) -> str | None:
    """The item's MGRS granule ("21MXN"): ``s2:mgrs_tile``, the ``mgrs:``/``sentinel:`` parts, ``grid:code``,
    else the ``T21MXN`` / ``21MXN`` of a product id or the item id; None when nothing says it."""
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
    """Sort key of one acquisition's listings, newest processing last: baseline (major, minor; (-1, -1)
    unknown or malformed), then sequence (``s2:sequence``, ``sentinel:sequence`` or the ``_1_`` of an Earth
    Search id; -1 unknown), ``updated``, ``created`` (ISO text)."""
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


def select_items(
    items: Iterable[pystac.Item], bands: Sequence[str], profile: SensorProfile = SENTINEL2_L2A
) -> list[ItemPlan]:
    """Plans of the usable items (:func:`plan_item`), in the given order: an item lacking a needed asset
    (or with unusable metadata) is skipped with a WARNING naming it; an acquisition listed twice is used
    once (logged). Raises nothing for an unusable item; the list may be empty."""
    plans = {}
    for item in items:
        try:
            plans[id(item)] = plan_item(item, bands, profile)
        except InputDataError as err:
            log.warning("skipping item %s (left out of the composite and its provenance): %s", item.id, err)
    usable = [p.item for p in plans.values()]
    kept, dropped = unique_acquisitions(usable)
    for gone, best in dropped:
        log.info("item %s is the same acquisition as %s, which is newer processing: using %s once", gone, best, best)
    return [plans[id(it)] for it in kept]
