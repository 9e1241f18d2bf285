"""The sensor profile is the seam for imagery: the default reads real Sentinel-2 L2A items as before, and
another sensor is a new profile that goes through the same generic code (planning, reading, clear mask,
compositing, provenance) unchanged."""

import json
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
from affine import Affine
from conftest import EPSG, ORIGIN, write_band_cog
from pyproj import Transformer

from garimpo.errors import MissingAssetError
from garimpo.geo.raster import Grid
from garimpo.imagery.assets import find_asset, plan_item
from garimpo.imagery.composite import fetch_composite
from garimpo.imagery.provenance import provenance
from garimpo.imagery.sensor import SENTINEL2_L2A, BandSpec, SensorProfile
from garimpo.imagery.stac import ImageryRequest, Source

S2_COLLECTIONS = ("sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-s2-l2a-cogs")

# A second sensor, made up: its own band names, asset keys, mask band and classes, scale and offset.
TOY = SensorProfile(
    name="toy-l2",
    bands={"RED": BandSpec(30, 0.655, ("red",)), "NIR": BandSpec(30, 0.865, ("nir08",))},
    asset_keys={"toy_api": {"RED": "sr_red", "NIR": "sr_nir", "QA": "qa_scene"}},
    mask_band="QA",
    not_clear=(1, 5, 7),
    cloudy=(5,),
    dn_scale=2e-5,
    offset_dn=-10000.0,
    offset_baseline=(1, 0),
    offset_date=datetime(2000, 1, 1, tzinfo=UTC),
    plausible_range=(-0.2, 1.5),
)


def _recorded_s2_items(shared_dir):
    for path in sorted((shared_dir / "data" / "stac-real").glob("*.json")):
        doc = json.loads(path.read_text())
        for feature in doc.get("features") or ([doc] if doc.get("type") == "Feature" else []):
            if feature.get("collection") in S2_COLLECTIONS:
                yield path.name, pystac.Item.from_dict(feature)


@pytest.mark.filterwarnings("ignore:Could not parse bucket")  # pystac migrating storage fields of c1 items
def test_default_profile_plans_every_recorded_item_with_its_providers_keys(shared_dir):
    """All 12 bands and SCL of each real item (Planetary Computer, Earth Search v0 and v1) are found under
    the keys the profile gives its provider, COGs rather than JPEG 2000 copies, with today's rules."""
    rules = {}
    for name, item in _recorded_s2_items(shared_dir):
        plan = plan_item(item, list(SENTINEL2_L2A.bands))
        provider = "earth_search" if name.startswith("earth-search") else "planetary_computer"
        keys = SENTINEL2_L2A.asset_keys[provider]
        assert dict(plan.assets) == {b: keys[b] for b in SENTINEL2_L2A.bands}, (name, item.id)
        assert plan.mask == keys["SCL"]
        radiometry = {(r.rule, r.scale, r.offset) for r in plan.radiometry.values()}
        assert len(radiometry) == 1, (name, item.id)
        rules.setdefault(item.collection_id, set()).update(radiometry)
    assert rules == {
        "sentinel-2-l2a": {
            ("processing_baseline<04.00", 1e-4, 0.0),  # Planetary Computer, 2019
            ("earthsearch:boa_offset_applied", 1e-4, 0.0),  # Earth Search, offset already removed
        },
        "sentinel-2-c1-l2a": {("raster:bands", 1e-4, -0.1)},
        "sentinel-s2-l2a-cogs": {("processing_baseline<04.00", 1e-4, 0.0)},
    }


def test_default_profile_is_sentinel2_l2a():
    """The profile's tables are the product's: resolutions, SCL classes, the baseline 04.00 offset."""
    s2 = SENTINEL2_L2A
    by_res = {r: sorted(b for b, spec in s2.bands.items() if spec.resolution_m == r) for r in (10, 20, 60)}
    assert by_res == {
        10: ["B02", "B03", "B04", "B08"],
        20: ["B05", "B06", "B07", "B11", "B12", "B8A"],
        60: ["B01", "B09"],
    }
    assert s2.known_keys("B04") == ("B04", "red") and s2.known_keys("SCL") == ("SCL", "scl")
    assert s2.band_of_key("NIR08") == "B8A" and s2.band_of_key("visual") is None
    assert s2.band_named("b4") == "B04" and s2.band_named("B08A") == "B8A" and s2.band_named("B10") is None
    assert s2.band_at(0.833) == "B08" and s2.band_at(1.0) is None  # S2A's own B08 centre; no band at 1 um
    # SCL: 2 dark area, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 11 snow are clear ground.
    assert np.flatnonzero(s2.clear_mask(np.arange(12))).tolist() == [2, 4, 5, 6, 7, 11]
    assert (s2.dn_scale, s2.offset_dn * s2.dn_scale, s2.offset_baseline) == (1e-4, -0.1, (4, 0))


def test_clear_mask_grows_only_the_cloudy_classes():
    scl = np.full((7, 7), 4, dtype=np.uint8)
    scl[3, 3] = 9  # cloud: grown
    scl[0, 6] = 0  # no data: not clear, not grown
    clear = SENTINEL2_L2A.clear_mask(scl, 1)
    assert not clear[2:5, 3].any() and not clear[3, 2:5].any() and clear[2, 2]  # a disc of radius 1
    assert not clear[0, 6] and clear[0, 5] and clear[1, 6]


def _toy_item(tmp_path, grid: Grid, red_dn, nir_dn, qa) -> pystac.Item:
    """A toy item: RED under its provider key, NIR declared by spectrum under a key the profile does not
    know, the QA mask, and a multi-band asset that must never be taken for a band."""
    to_ll = Transformer.from_crs(EPSG, "EPSG:4326", always_xy=True)
    left, bottom, right, top = grid.bounds
    lon, lat = to_ll.transform([left, right, right, left], [bottom, bottom, top, top])
    geometry = {"type": "Polygon", "coordinates": [[*zip(lon, lat, strict=True), (lon[0], lat[0])]]}
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    item = pystac.Item("TOY_1", geometry, bbox, datetime(2020, 6, 1, tzinfo=UTC), {"eo:cloud_cover": 10.0})
    item.collection_id = "toy-l2"
    nir = {"name": "band5", "common_name": "nir08", "center_wavelength": 0.86}
    for key, array, fields in (
        ("sr_red", red_dn, {}),
        ("band5", nir_dn, {"eo:bands": [nir]}),
        ("qa_scene", qa, {}),
        ("rgb", red_dn, {"eo:bands": [{"name": "RED"}, {"name": "NIR"}]}),
    ):
        path = tmp_path / "assets" / f"{key}.tif"
        write_band_cog(path, array, grid.transform)
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG, extra_fields=fields))
    return item


def test_a_second_profile_goes_through_the_same_generic_path(tmp_path):
    """Planning, reading, the clear mask, compositing and provenance take the toy profile as it is."""
    grid = Grid(EPSG, Affine(30, 0, ORIGIN[0], 0, -30, ORIGIN[1]), 8, 8)
    red = np.full((8, 8), 20000, dtype=np.uint16)  # 20000 * 2e-5 - 0.2 = 0.2
    nir = np.full((8, 8), 35000, dtype=np.uint16)  # 0.5
    qa = np.zeros((8, 8), dtype=np.uint16)
    qa[:2, :2] = 5  # cloud: not clear, grown by the buffer
    qa[7, 7] = 7  # not clear, not grown
    item = _toy_item(tmp_path, grid, red, nir, qa)

    plan = plan_item(item, ["RED", "NIR"], TOY)
    assert dict(plan.assets) == {"RED": "sr_red", "NIR": "band5"} and plan.mask == "qa_scene"
    rad = plan.radiometry["RED"]
    assert rad.rule == "date>=2000-01-01" and (rad.scale, rad.offset) == pytest.approx((2e-5, -0.2))
    assert find_asset(item, "QA", TOY) == "qa_scene" and find_asset(item, "B04") is None
    with pytest.raises(MissingAssetError, match="band B04"):
        plan_item(item, ["B04"])  # Sentinel-2 knows none of these keys

    assert TOY.clear_mask(np.array([0, 1, 2, 5, 7])).tolist() == [True, False, True, False, False]

    catalog = pystac.Catalog("toy", "toy sensor catalog")
    catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "catalog"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    source = Source("local", str(tmp_path / "catalog" / "catalog.json"), collection="toy-l2", sensor=TOY)
    request = ImageryRequest(("RED", "NIR"), ("2020-01-01", "2020-12-31"), 50.0, cloud_buffer_m=30.0)
    image, used = fetch_composite(source, request, grid)
    assert [it.id for it in used] == ["TOY_1"]
    never_clear = np.zeros((8, 8), dtype=bool)
    never_clear[:3, :3] = True  # the cloud and its 1 px (30 m) buffer
    never_clear[2, 2] = False  # outside the disc
    never_clear[7, 7] = True
    assert np.isnan(image[:, never_clear]).all()
    assert (~never_clear).sum() == 55
    np.testing.assert_allclose(image[:, ~never_clear], [[0.2] * 55, [0.5] * 55], atol=1e-6)
    record = provenance(used, request.bands, TOY)["radiometry"][0]
    assert record["item"] == "TOY_1" and record["rule"] == "date>=2000-01-01"
