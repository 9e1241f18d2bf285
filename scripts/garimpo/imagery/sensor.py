"""The sensor profile: everything the imagery code knows about one sensor and product level, in one place.

Generic code (asset planning in :mod:`garimpo.imagery.assets`, reading and the clear mask in
:mod:`garimpo.imagery.read`, compositing in :mod:`garimpo.imagery.composite`, the radiometry rule in
:mod:`garimpo.imagery.radiometry`) takes a :class:`SensorProfile` and never names a Sentinel-2 band, asset
key or mask class itself; :data:`SENTINEL2_L2A` is the default everywhere. Another sensor or product level
(Sentinel-2 L1C, Landsat Collection 2 L2) is another instance of the profile, not new branches in that code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
from scipy import ndimage

_NUMBERED = re.compile(r"^B0?(\d{1,2})(A?)$")


@dataclass(frozen=True)
class BandSpec:
    """One spectral band: native pixel size ``resolution_m`` (metres), centre wavelength ``wavelength_um``
    (micrometres) and the STAC ``eo:common_name`` values providers give it (lower case)."""

    resolution_m: float
    wavelength_um: float
    common_names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class SensorProfile:
    """What is specific to one sensor and product level; frozen, compared by identity.

    ``bands``: spectral band name -> :class:`BandSpec`; the names are the ones requests and outputs use
    (``imagery.bands``). ``wavelength_tolerance_um``: a declared centre wavelength names the nearest band
    when within this many micrometres. ``asset_keys``: provider (a :data:`garimpo.imagery.stac.SOURCE_KINDS`
    name) -> band or mask band name -> asset key; the last resort for an asset that declares no band.
    ``mask_band``: the per-pixel classification band, ``mask_resolution_m`` its native pixel size (metres; 0:
    unknown, the mask is then read on the target grid like the bands);
    ``not_clear``: its classes that are not clear ground;
    ``cloudy``: those among them whose edges the classification under-flags (grown by the cloud buffer).
    ``dn_scale``: reflectance per DN; ``offset_dn``: DN added to the pixels from processing baseline
    ``offset_baseline`` (major, minor) on, or from ``offset_date`` when no baseline is known (UTC);
    see :mod:`garimpo.imagery.radiometry` for the order in which item metadata decides.
    ``plausible_range``: (low, high) clear-pixel median reflectance of a land surface; outside it a
    composite is taken as mis-scaled.
    """

    name: str
    bands: Mapping[str, BandSpec]
    asset_keys: Mapping[str, Mapping[str, str]]
    mask_band: str
    not_clear: tuple[int, ...]
    cloudy: tuple[int, ...]
    dn_scale: float
    offset_dn: float
    offset_baseline: tuple[int, int]
    offset_date: datetime
    plausible_range: tuple[float, float]
    wavelength_tolerance_um: float = 0.03
    mask_resolution_m: float = 0.0

    @cached_property
    def _by_number(self) -> dict[tuple[int, str], str]:
        numbered = {}
        for band in self.bands:
            m = _NUMBERED.match(band.upper())
            if m:
                numbered[int(m.group(1)), m.group(2)] = band
        return numbered

    def band_named(self, name: object) -> str | None:
        """The band ``name`` is in this profile's spelling, or None.

        Case and spaces aside, a name matches a band's name; a numbered name "B" + one or two digits (+ "A")
        matches with or without one leading zero ("B4", "b04", "B004" -> "B04"; "b8a", "B08A" -> "B8A").
        """
        text = str(name or "").strip().upper()
        by_upper = {b.upper(): b for b in self.bands}
        if text in by_upper:
            return by_upper[text]
        m = _NUMBERED.match(text)
        return self._by_number.get((int(m.group(1)), m.group(2))) if m else None

    def band_at(self, wavelength_um: float) -> str | None:
        """The band whose centre is nearest ``wavelength_um`` (micrometres), if within
        ``wavelength_tolerance_um`` of it; else None."""
        distance = {b: abs(spec.wavelength_um - wavelength_um) for b, spec in self.bands.items()}
        nearest = min(distance, key=distance.__getitem__)
        return nearest if distance[nearest] <= self.wavelength_tolerance_um else None

    def bands_called(self, common_name: str | None) -> list[str]:
        """The bands that STAC common name (any case) is given to, in table order; empty for None."""
        common = (common_name or "").lower()
        return [b for b, spec in self.bands.items() if common and common in spec.common_names]

    def known_keys(self, band: str) -> tuple[str, ...]:
        """The providers' asset keys of ``band`` (or of the mask band), in :attr:`asset_keys` order."""
        return tuple(dict.fromkeys(keys[band] for keys in self.asset_keys.values() if band in keys))

    @cached_property
    def _key_aliases(self) -> dict[str, str]:
        return {key.lower(): band for keys in self.asset_keys.values() for band, key in keys.items()}

    def band_of_key(self, key: str) -> str | None:
        """The band (or mask band) whose asset some provider calls ``key`` (any case), or None."""
        return self._key_aliases.get(key.lower())

    def clear_mask(self, mask: np.ndarray, buffer_px: int = 0) -> np.ndarray:
        """Pixels the mask band calls clear ground (bool, shape of ``mask``): not a :attr:`not_clear` class
        and farther than ``buffer_px`` pixels (a disc) from a :attr:`cloudy` one.

        ``mask``: class values of :attr:`mask_band` (H, W), any integer dtype. The classification misses
        the thin, bright fringe of clouds; left in, it survives a median of few scenes as pale halos that
        look like bare soil to the proposer.
        """
        cloudy = np.isin(mask, self.cloudy)
        if buffer_px > 0 and cloudy.any():
            yy, xx = np.mgrid[-buffer_px : buffer_px + 1, -buffer_px : buffer_px + 1]
            cloudy = ndimage.binary_dilation(cloudy, structure=(xx**2 + yy**2) <= buffer_px**2)
        return ~cloudy & ~np.isin(mask, self.not_clear)


def _s2(resolution_m: float, wavelength_um: float, *common_names: str) -> BandSpec:
    return BandSpec(resolution_m, wavelength_um, common_names)


SENTINEL2_L2A = SensorProfile(
    name="sentinel-2-l2a",
    # Native resolutions: ESA Sentinel-2 User Handbook (10 m B02-B04 B08; 20 m B05-B07 B8A B11 B12, and SCL;
    # 60 m B01 B09). Centres: ESA's S2 MSI spectral response functions (COPE-GSEG-EOPG-TN-15-0007) as both
    # providers' eo:bands give them; S2A's and S2B's own centres stray up to ~0.012 um from these (B12
    # 2.202 / 2.186, B08 0.833), well inside the 0.03 um tolerance. Common names: the STAC eo extension's
    # table; B8A is "nir08" at Earth Search and "rededge" at Planetary Computer.
    bands={
        "B01": _s2(60, 0.443, "coastal"),
        "B02": _s2(10, 0.490, "blue"),
        "B03": _s2(10, 0.560, "green"),
        "B04": _s2(10, 0.665, "red"),
        "B05": _s2(20, 0.704, "rededge"),
        "B06": _s2(20, 0.740, "rededge"),
        "B07": _s2(20, 0.783, "rededge"),
        "B08": _s2(10, 0.842, "nir"),
        "B8A": _s2(20, 0.865, "nir08", "rededge"),
        "B09": _s2(60, 0.945, "nir09"),
        "B11": _s2(20, 1.610, "swir16"),
        "B12": _s2(20, 2.190, "swir22"),
    },
    # Asset keys: Planetary Computer's sentinel-2-l2a item_assets (band ids), Earth Search v1's
    # sentinel-2-l2a / sentinel-2-c1-l2a item_assets (common names, rededge1-3, lower-case scl).
    asset_keys={
        "planetary_computer": {
            **{b: b for b in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")},
            "SCL": "SCL",
        },
        "earth_search": {
            "B01": "coastal",
            "B02": "blue",
            "B03": "green",
            "B04": "red",
            "B05": "rededge1",
            "B06": "rededge2",
            "B07": "rededge3",
            "B08": "nir",
            "B8A": "nir08",
            "B09": "nir09",
            "B11": "swir16",
            "B12": "swir22",
            "SCL": "scl",
        },
    },
    # Scene Classification Layer (ESA Sen2Cor L2A product definition, S2-PDGS-MPC-L2A-SUM): 0 no data,
    # 1 saturated/defective, 3 cloud shadow, 8/9 cloud medium/high probability, 10 thin cirrus are not clear;
    # of those, shadow, cloud and cirrus have edges SCL under-flags (haze halos, soft shadows).
    mask_band="SCL",
    # SCL is produced at 20 m; compositing at 20 m where it is native (garimpo.imagery.composite.band_layout) is
    # 4.5x faster on a full granule but not yet on: with it the demo's classifier, retrained on composites that
    # differ by ~1e-4 in B11/B12, came out with two more false detections (precision 0.73) in one CI run. Until
    # that is understood, the mask and every band are read on the 10 m grid, as before (0: no coarse grid).
    mask_resolution_m=0.0,
    not_clear=(0, 1, 3, 8, 9, 10),
    cloudy=(3, 8, 9, 10),
    # MTD_MSIL2A.xml: BOA_QUANTIFICATION_VALUE 10000, and from processing baseline 04.00 (in production
    # from 2022-01-25, ESA's "Processing baseline 04.00" notice) BOA_ADD_OFFSET -1000 for every band.
    dn_scale=1e-4,
    offset_dn=-1000.0,
    offset_baseline=(4, 0),
    offset_date=datetime(2022, 1, 25, tzinfo=UTC),
    # A little below 0 is legitimate noise over dark water; fresh snow and sun glint stay below ~1.2
    # (the project's bound, not a product value).
    plausible_range=(-0.05, 1.2),
)
"""Sentinel-2 MSI Level-2A surface reflectance, as Planetary Computer and Earth Search serve it."""
