"""Reflectance from Sentinel-2 L2A digital numbers, decided from each item's own metadata.

``reflectance = DN * scale + offset``. Which ``offset`` applies is not a property of a provider or a
collection name but of what each item says, decided once per item and asset, first rule that applies:

1. ``earthsearch:boa_offset_applied: true`` (Earth Search ``sentinel-2-l2a``): Earth Search already
   subtracted the +1000 DN from the pixels, so the offset is 0, even though these items' ``raster:bands``
   still declare -0.1 (applying it again puts every reflectance 0.1 too low).
2. The asset's ``raster:bands`` ``scale``/``offset`` (STAC raster extension), or the collection's
   ``item_assets`` entry for that asset key when the item has none. Earth Search ``sentinel-2-c1-l2a``
   keeps the offset in the pixels and says ``scale 0.0001, offset -0.1`` here.
3. The processing baseline (``s2:processing_baseline``, Earth Search v0 ``sentinel:processing_baseline``,
   else the ``_Nxxyy`` of the product/granule id): from 04.00 on ESA adds +1000 DN (MTD_MSIL2A.xml
   ``BOA_ADD_OFFSET`` -1000), whatever the acquisition date: Collection-1 reprocessing (05.xx) carries it
   for acquisitions of any year.
4. Only when nothing above is known, the acquisition date: baseline 04.00 went into production on
   2022-01-25.

The numbers (scale, offset, the baseline and the date from which the offset applies, the plausible range)
are the sensor profile's (:data:`garimpo.imagery.sensor.SENTINEL2_L2A` by default); the metadata names read
here (``earthsearch:boa_offset_applied``, ``s2:processing_baseline``, product ids) are the two providers'
Sentinel-2 conventions. Everything here is pure (metadata in, numbers out); reading pixels is
:mod:`garimpo.imagery.read`'s job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import numpy as np
from pystac.extensions.raster import RasterBand

from garimpo.errors import InputDataError
from garimpo.imagery.sensor import SENTINEL2_L2A, SensorProfile

# Earth Search v1 item property: true when the +1000 was already removed from the pixels.
ES_OFFSET_APPLIED = "earthsearch:boa_offset_applied"


def baseline_rule(profile: SensorProfile, offset: bool) -> str:
    """The provenance name of the baseline rule: "processing_baseline>=04.00" when ``offset`` (the
    baseline is at or after the profile's ``offset_baseline``), "processing_baseline<04.00" otherwise."""
    major, minor = profile.offset_baseline
    return f"processing_baseline{'>=' if offset else '<'}{major:02d}.{minor:02d}"


def date_rule(profile: SensorProfile, offset: bool) -> str:
    """The provenance name of the date rule: "date>=2022-01-25" when ``offset``, "date<2022-01-25" otherwise
    (the profile's ``offset_date``)."""
    return f"date{'>=' if offset else '<'}{profile.offset_date:%Y-%m-%d}"


# Rule names recorded in provenance (those of the baseline and the date: Sentinel-2 L2A's).
RULE_FLAG = ES_OFFSET_APPLIED
RULE_RASTER = "raster:bands"
RULE_ITEM_ASSETS = "item_assets:raster:bands"
RULE_BASELINE_NEW = baseline_rule(SENTINEL2_L2A, True)
RULE_BASELINE_OLD = baseline_rule(SENTINEL2_L2A, False)
RULE_DATE_NEW = date_rule(SENTINEL2_L2A, True)
RULE_DATE_OLD = date_rule(SENTINEL2_L2A, False)

# Properties and ids where a baseline may be written, in order of trust.
_BASELINE_PROPS = ("s2:processing_baseline", "sentinel:processing_baseline")
_ID_PROPS = ("s2:product_uri", "sentinel:product_id", "s2:granule_id", "s2:tile_id", "s2:datatake_id")
_BASELINE_TEXT = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\s*$")
_BASELINE_IN_ID = re.compile(r"_N(\d{2})\.?(\d{2})(?=[_.]|$)")


@dataclass(frozen=True)
class Radiometry:
    """How one asset's DN become surface reflectance: ``DN * scale + offset``.

    Reflectance is dimensionless, about 0..1 over land (slightly negative over dark water is legitimate);
    DN are uint16, 1..65535. ``scale``: reflectance per DN (1e-4 for Sentinel-2 L2A). ``offset``:
    reflectance added after scaling (-0.1 where the pixels keep ESA's +1000 DN, else 0). ``nodata``: the
    DN that means no data when the metadata says so (``raster:bands``), else None (the file's own nodata,
    or 0, applies). ``rule``: which metadata decided (``raster:bands``, ``processing_baseline>=04.00``...:
    the ``RULE_*`` names of this module, :func:`baseline_rule` and :func:`date_rule`).
    """

    scale: float
    offset: float
    nodata: float | None
    rule: str

    def reflectance(self, dn: np.ndarray, file_nodata: float | None = None) -> np.ndarray:
        """float32 reflectance of ``dn`` (any shape), NaN where ``dn`` is nodata.

        Nodata is this radiometry's ``nodata``, else ``file_nodata``, else 0 (Sentinel-2's NODATA value).
        Negative reflectance (DN below the offset, dark water) is legitimate and kept.
        """
        nodata = self.effective_nodata(file_nodata)
        # in float64, then rounded once to float32; whole-array operations, not a masked gather and scatter
        # (4x faster on a 2048 px block: this runs for every band of every scene of a composite)
        out = np.multiply(dn, self.scale, dtype=np.float64)
        out += self.offset
        out = out.astype(np.float32)
        out[np.isnan(dn) if math.isnan(nodata) else dn == nodata] = np.nan
        return out

    def effective_nodata(self, file_nodata: float | None = None) -> float:
        """The DN treated as no data: the metadata's, else the file's, else 0."""
        for value in (self.nodata, file_nodata):
            if value is not None:
                return float(value)
        return 0.0

    def record(self) -> dict:
        """``{"rule", "scale", "offset"}`` for provenance (JSON-ready)."""
        return {"rule": self.rule, "scale": self.scale, "offset": self.offset}


def offset_already_applied(properties: Mapping[str, Any]) -> bool:
    """True when the item says its pixels already had the +1000 DN removed (Earth Search flag)."""
    return properties.get(ES_OFFSET_APPLIED) is True


def processing_baseline(properties: Mapping[str, Any], item_id: str = "") -> tuple[int, int] | None:
    """The processing baseline as (major, minor), e.g. (5, 9) for "05.09"; None when nothing says it.

    Read from ``s2:processing_baseline`` or ``sentinel:processing_baseline``, else from the ``_Nxxyy``
    (or ``_Nxx.yy``) of the product URI, product id, granule/tile id, datatake id or the item id.
    Raises :class:`InputDataError` when a baseline property is present but not ``NN.NN``.
    """
    for key in _BASELINE_PROPS:
        value = properties.get(key)
        if value is None:
            continue
        m = _BASELINE_TEXT.match(str(value))
        if not m:
            raise InputDataError(
                f"item {item_id}: {key} {value!r} is not a processing baseline like '05.09'; "
                "fix the item's metadata or leave the property out"
            )
        return int(m.group(1)), int(m.group(2))
    # The item id last: Planetary Computer and Copernicus ids are product names (..._N0400_R067_...).
    for text in (*(properties.get(key) for key in _ID_PROPS), item_id):
        m = _BASELINE_IN_ID.search(str(text or ""))
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def _raster_band(fields: Mapping[str, Any] | None) -> RasterBand | None:
    """The first ``raster:bands`` entry of an asset's (or item_assets entry's) fields, if any.

    pystac's ``RasterBand`` wraps the dict directly: ``RasterExtension.ext`` would refuse the many items
    that use the fields without declaring the extension's schema. STAC 1.1 ``bands`` (``raster:scale``,
    ``raster:offset``, ``nodata``) are read too.
    """
    if not fields:
        return None
    bands = fields.get("raster:bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], Mapping):
        return RasterBand(dict(bands[0]))
    bands = fields.get("bands")
    if isinstance(bands, list) and bands and isinstance(bands[0], Mapping):
        b = bands[0]
        return RasterBand(
            {
                k: v
                for k, v in (
                    ("scale", b.get("raster:scale")),
                    ("offset", b.get("raster:offset")),
                    ("nodata", b.get("nodata")),
                )
                if v is not None
            }
        )
    return None


def _declares_scaling(band: RasterBand | None) -> TypeGuard[RasterBand]:
    return band is not None and (band.scale is not None or band.offset is not None)


def _nodata(*bands: RasterBand | None) -> float | None:
    for band in bands:
        if band is not None and band.nodata is not None:
            value = band.nodata
            return float("nan") if value == "nan" else float(value)
    return None


def decide(
    item_id: str,
    properties: Mapping[str, Any],
    when: datetime | None,
    asset_fields: Mapping[str, Any] | None,
    item_assets_entry: Mapping[str, Any] | None = None,
    profile: SensorProfile = SENTINEL2_L2A,
) -> Radiometry:
    """The radiometry of one asset from its item's metadata (rules in the module docstring).

    ``properties``: the item's properties. ``when``: its acquisition time (timezone-aware; naive is taken
    as UTC). ``asset_fields``: the asset's fields (``raster:bands`` etc.). ``item_assets_entry``: the
    collection's ``item_assets`` entry for the same key, when at hand. ``profile``: the sensor's DN scale,
    offset and the baseline and date from which the offset applies, for items whose metadata declare none.
    Returns a :class:`Radiometry` whose ``rule`` names the metadata that decided. Raises
    :class:`InputDataError` (naming the item) when a baseline property is malformed, or when nothing,
    not even a date, tells the offset.
    """
    own = _raster_band(asset_fields)
    shared = _raster_band(item_assets_entry)
    nodata = _nodata(own, shared)
    if offset_already_applied(properties):
        scale = own.scale if own is not None and own.scale is not None else profile.dn_scale
        return Radiometry(float(scale), 0.0, nodata, RULE_FLAG)
    for band, rule in ((own, RULE_RASTER), (shared, RULE_ITEM_ASSETS)):
        if _declares_scaling(band):
            # The raster extension's defaults: scale 1, offset 0.
            scale = 1.0 if band.scale is None else float(band.scale)
            offset = 0.0 if band.offset is None else float(band.offset)
            return Radiometry(scale, offset, nodata, rule)
    scale, offset = profile.dn_scale, profile.offset_dn * profile.dn_scale
    baseline = processing_baseline(properties, item_id)
    if baseline is not None:
        if baseline >= profile.offset_baseline:
            return Radiometry(scale, offset, nodata, baseline_rule(profile, True))
        return Radiometry(scale, 0.0, nodata, baseline_rule(profile, False))
    if when is None:
        raise InputDataError(
            f"item {item_id}: no {ES_OFFSET_APPLIED}, raster:bands scale/offset, processing "
            "baseline or datetime tells whether its pixels carry the +1000 DN offset; add "
            "s2:processing_baseline to the item"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when >= profile.offset_date:
        return Radiometry(scale, offset, nodata, date_rule(profile, True))
    return Radiometry(scale, 0.0, nodata, date_rule(profile, False))


def asset_radiometry(
    item, key: str, item_assets: Mapping[str, Any] | None = None, profile: SensorProfile = SENTINEL2_L2A
) -> Radiometry:
    """:func:`decide` for asset ``key`` of a ``pystac.Item``; ``item_assets``: the collection's, if known.

    Raises :class:`InputDataError` when the item has no asset ``key`` or its metadata is unusable.
    """
    if key not in item.assets:
        raise InputDataError(f"item {item.id} has no asset {key!r}; has {sorted(item.assets)}")
    when = item.datetime
    if when is None and item.properties.get("start_datetime"):
        when = datetime.fromisoformat(str(item.properties["start_datetime"]).replace("Z", "+00:00"))
    entry = (item_assets or {}).get(key)
    return decide(
        item.id,
        item.properties,
        when,
        item.assets[key].extra_fields,
        entry if isinstance(entry, Mapping) else None,
        profile,
    )


def nir_band(bands) -> str | None:
    """The near-infrared band among ``bands`` for NDVI: B08, else B8A."""
    return next((b for b in ("B08", "B8A") if b in bands), None)


def implausible(medians: Mapping[str, float], bounds: tuple[float, float] = SENTINEL2_L2A.plausible_range) -> list[str]:
    """Why clear-pixel band medians (reflectance, band -> value) look mis-scaled; empty when plausible.

    A median outside ``bounds`` (a profile's ``plausible_range``) is not a land surface; an NDVI of the
    B04/B08 (or B8A) medians outside [-1, 1] only happens when an offset went the wrong way (negative red).
    NaN medians are ignored.
    """
    low, high = bounds
    reasons = [
        f"{band} median {value:.4f} outside [{low}, {high}]"
        for band, value in medians.items()
        if np.isfinite(value) and not low <= value <= high
    ]
    nir = nir_band(medians)
    red, nir_value = medians.get("B04"), medians.get(nir) if nir else None
    if red is not None and nir_value is not None and np.isfinite(red) and np.isfinite(nir_value):
        total = red + nir_value
        if total != 0:
            ndvi = (nir_value - red) / total
            if not -1.0 <= ndvi <= 1.0:
                reasons.append(f"NDVI of the medians {ndvi:.2f} outside [-1, 1]")
    return reasons
