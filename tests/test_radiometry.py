"""Reflectance from each item's own metadata, and item-level faults, through the paths a run takes.

Real-world cases (/work/shared/cases/real-world/stac), the real Sentinel-2 bytes of /work/shared/data/s2-real
and the recorded STAC responses of /work/shared/data/stac-real; the unit rules first.
"""

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from stac_server import StacServer

from garimpo.errors import InputDataError, NoImageryError
from garimpo.geo.raster import Grid, read_raster
from garimpo.imagery import radiometry as R
from garimpo.imagery.assets import find_asset, plan_item, select_items, unique_acquisitions
from garimpo.imagery.composite import fetch_composite, write_composite
from garimpo.imagery.provenance import provenance, radiometry_record
from garimpo.imagery.read import read_item
from garimpo.imagery.retry import RetryPolicy
from garimpo.imagery.sensor import SENTINEL2_L2A
from garimpo.imagery.stac import ImageryRequest, Source
from garimpo.training.images import _cache_key, fetch_training_images

BANDS = ("B02", "B03", "B04", "B08")
RIGHT = {"B02": 0.0200, "B03": 0.0400, "B04": 0.0300, "B08": 0.3000}
REQ = ImageryRequest(BANDS, ("2023-01-01", "2023-12-31"), 50.0)
CASE_GRID = Grid("EPSG:32721", Affine(10, 0, 600000, 0, -10, 9320000), 32, 32)  # every case granule
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, timeout=5.0)
WHEN = datetime(2023, 7, 15, tzinfo=UTC)


# ---- the rule, unit by unit ------------------------------------------------------------------


def _asset(scale=None, offset=None, nodata=None):
    band = {k: v for k, v in (("scale", scale), ("offset", offset), ("nodata", nodata)) if v is not None}
    return {"raster:bands": [band]} if band else {}


def test_flag_beats_raster_bands_which_beat_baseline_which_beats_date():
    es_l2a = R.decide(
        "a", {R.ES_OFFSET_APPLIED: True, "s2:processing_baseline": "05.09"}, WHEN, _asset(0.0001, -0.1, 0)
    )
    assert (es_l2a.scale, es_l2a.offset, es_l2a.nodata) == (0.0001, 0.0, 0.0)
    assert es_l2a.rule == "earthsearch:boa_offset_applied"
    c1 = R.decide("b", {"s2:processing_baseline": "05.09"}, WHEN, _asset(0.0001, -0.1, 0))
    assert (c1.offset, c1.rule) == (-0.1, "raster:bands")
    flag_false = R.decide("c", {R.ES_OFFSET_APPLIED: False}, WHEN, _asset(0.0001, 0.0))
    assert (flag_false.offset, flag_false.rule) == (0.0, "raster:bands")
    # Baseline 05.xx (Collection-1 reprocessing) carries the offset even for a 2019 acquisition.
    old_date = datetime(2019, 6, 29, tzinfo=UTC)
    reproc = R.decide("d", {"s2:processing_baseline": "05.00"}, old_date, {})
    assert (reproc.offset, reproc.rule) == (-0.1, "processing_baseline>=04.00")
    pre = R.decide("e", {"s2:processing_baseline": "02.12"}, WHEN, _asset(nodata=0))  # nodata only: no scaling
    assert (pre.offset, pre.nodata, pre.rule) == (0.0, 0.0, "processing_baseline<04.00")
    assert R.decide("f", {}, WHEN, {}).rule == "date>=2022-01-25"
    assert R.decide("g", {}, old_date, {}).offset == 0.0
    # The collection's item_assets when the item says nothing of its own.
    shared = R.decide("h", {}, old_date, {}, _asset(0.0001, -0.1))
    assert (shared.offset, shared.rule) == (-0.1, "item_assets:raster:bands")


def test_baseline_from_properties_and_ids():
    assert R.processing_baseline({"s2:processing_baseline": "04.00"}) == (4, 0)
    assert R.processing_baseline({"sentinel:processing_baseline": "02.14"}) == (2, 14)
    pid = "S2A_MSIL2A_20200714T115221_N0214_R123_T28QCH_20200714T191310"
    assert R.processing_baseline({"sentinel:product_id": pid}) == (2, 14)
    assert R.processing_baseline({"s2:datatake_id": "GS2A_20231008T175231_043324_N05.09"}) == (5, 9)
    assert R.processing_baseline({}) is None
    # A product-style item id alone decides too, before the date: a 2021 acquisition reprocessed at 04.00
    # keeps the offset (the user test's catalog, B04 0.1300 instead of 0.0300 when only the date was read).
    item_id = "S2A_MSIL2A_20210710T140000_N0400_R067_T21MXN_20210710T180000"
    assert R.processing_baseline({}, item_id) == (4, 0)
    when = datetime(2021, 7, 10, tzinfo=UTC)
    assert R.decide(item_id, {}, when, None).rule == R.RULE_BASELINE_NEW
    with pytest.raises(InputDataError, match="item x: s2:processing_baseline 'new'"):
        R.processing_baseline({"s2:processing_baseline": "new"}, "x")


def test_reflectance_keeps_negatives_and_masks_nodata():
    rad = R.Radiometry(1e-4, -0.1, None, "processing_baseline>=04.00")
    out = rad.reflectance(np.array([0, 900, 1000, 5082], dtype=np.uint16))
    assert np.isnan(out[0]) and out.dtype == np.float32
    np.testing.assert_allclose(out[1:], [-0.01, 0.0, 0.4082], atol=1e-6)


def test_implausible_medians():
    assert R.implausible({"B02": 0.02, "B04": 0.03, "B08": 0.30}) == []
    reasons = R.implausible({"B04": -0.07, "B08": 0.20})
    assert any("B04 median -0.0700" in r for r in reasons) and any("NDVI" in r for r in reasons)
    assert R.implausible({"B04": 1.5}) and R.implausible({"B04": float("nan")}) == []


# ---- recorded STAC responses: every Sentinel-2 L2A item gets the rule its metadata implies ----------

S2_L2A = {"sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-s2-l2a-cogs"}


def _expected_rule(feature: dict) -> tuple[str, float]:
    """What the metadata implies, written out per record kind (README of stac-real)."""
    props = feature["properties"]
    if props.get("earthsearch:boa_offset_applied") is True:
        return "earthsearch:boa_offset_applied", 0.0  # Earth Search sentinel-2-l2a, 2023 and 2025
    if feature["collection"] == "sentinel-2-c1-l2a":
        return "raster:bands", -0.1  # Earth Search c1: pixels keep the +1000, metadata says how to remove it
    if feature["collection"] == "sentinel-s2-l2a-cogs":
        return "processing_baseline<04.00", 0.0  # Earth Search v0: N0214 in sentinel:product_id
    # Planetary Computer, baseline 02.12; the odc-stac _raster_ext copy's raster:bands give nodata only.
    return "processing_baseline<04.00", 0.0


def _recorded_items(stac_real: Path):
    for path in sorted(stac_real.glob("*.json")):
        doc = json.loads(path.read_text())
        features = doc.get("features") or ([doc] if doc.get("type") == "Feature" else [])
        for feature in features:
            if feature.get("collection") in S2_L2A:
                yield path, feature


@pytest.mark.filterwarnings("ignore:Could not parse bucket")  # pystac migrating storage fields of c1 items
def test_every_recorded_sentinel2_item_gets_its_rule_and_assets(shared_dir):
    seen = set()
    for path, feature in _recorded_items(shared_dir / "data" / "stac-real"):
        item = pystac.Item.from_dict(feature)
        rule, offset = _expected_rule(feature)
        plan = plan_item(item, BANDS)  # raises if any of B02 B03 B04 B08 SCL is not found
        for band in BANDS:
            rad = plan.radiometry[band]
            assert (rad.rule, rad.scale, rad.offset) == (rule, 0.0001, offset), (path.name, item.id, band)
            asset = item.assets[plan.assets[band]]
            assert "jp2" not in (asset.media_type or "") and not plan.assets[band].endswith("-jp2")
        if "_raster_ext" in path.name:
            assert plan.radiometry["B04"].nodata == 0 and plan.mask_nodata == 0  # from its raster:bands
        assert plan.mask in ("SCL", "scl") and find_asset(item, "B8A") in ("B8A", "nir08")
        seen.add((feature["collection"], rule))
    assert seen == {
        ("sentinel-2-l2a", "earthsearch:boa_offset_applied"),
        ("sentinel-2-c1-l2a", "raster:bands"),
        ("sentinel-2-l2a", "processing_baseline<04.00"),
        ("sentinel-s2-l2a-cogs", "processing_baseline<04.00"),
    }


def test_earth_search_band_names_matched_by_spectrum(shared_dir):
    """2023 Earth Search items name their bands "red", "nir08"...: common name + wavelength find them."""
    doc = json.loads((shared_dir / "data/stac-real/earth-search_search_multiple_collections.json").read_text())
    item = pystac.Item.from_dict(next(f for f in doc["features"] if f["collection"] == "sentinel-2-l2a"))
    assert item.assets["red"].extra_fields["eo:bands"][0]["name"] == "red"
    assert [find_asset(item, b) for b in ("B02", "B04", "B05", "B07", "B08", "B8A", "B11", "B12", "SCL")] == [
        "blue",
        "red",
        "rededge1",
        "rededge3",
        "nir",
        "nir08",
        "swir16",
        "swir22",
        "scl",
    ]


def test_band_names_wavelengths_and_keys():
    """By name (any spelling), by spectrum (nearest centre, common name agreeing), never a multi-band asset."""
    from pystac.extensions.eo import Band

    from garimpo.imagery.assets import band_of

    assert band_of(Band({"name": "B8A"})) == ("B8A", 0) and band_of(Band({"name": "b4"})) == ("B04", 0)
    assert band_of(Band({"name": "nir08", "common_name": "nir08", "center_wavelength": 0.865})) == ("B8A", 1)
    assert band_of(Band({"name": "x", "common_name": "rededge", "center_wavelength": 0.865})) == ("B8A", 1)
    assert band_of(Band({"name": "x", "center_wavelength": 0.833})) == ("B08", 1)  # S2A's own B08 centre
    assert band_of(Band({"name": "x", "common_name": "red", "center_wavelength": 0.842})) == (None, 9)
    assert band_of(Band({"name": "x", "common_name": "rededge"})) == (None, 9)  # B05, B06 or B07?
    item = pystac.Item("i", None, None, WHEN, {})
    tci = [{"name": "B04"}, {"name": "B03"}, {"name": "B02"}]
    item.add_asset("visual", pystac.Asset("tci.tif", media_type=pystac.MediaType.COG, extra_fields={"eo:bands": tci}))
    item.add_asset("B04", pystac.Asset("b04.jp2", media_type="image/jp2", extra_fields={"eo:bands": [{"name": "B04"}]}))
    assert find_asset(item, "B04") == "B04" and find_asset(item, "B03") is None  # never the 3-band visual
    red = {"name": "red", "common_name": "red", "center_wavelength": 0.665}
    item.add_asset("red", pystac.Asset("b04.tif", media_type=pystac.MediaType.COG, extra_fields={"eo:bands": [red]}))
    assert find_asset(item, "B04") == "red"  # the same band as a COG beats the JPEG 2000 copy


def test_collection_item_assets_fill_in_for_items_without_raster_bands(shared_dir, tmp_path):
    """A local catalog whose collection (Earth Search c1's, recorded) declares raster:bands in item_assets."""
    colls = json.loads((shared_dir / "data/stac-real/earth-search_collections_q-sentinel.json").read_text())
    c1 = next(c for c in colls["collections"] if c["id"] == "sentinel-2-c1-l2a")
    collection = pystac.Collection(
        "sentinel-2-c1-l2a",
        "c1",
        pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])),
    )
    collection.extra_fields["item_assets"] = c1["item_assets"]
    item = pystac.Item("S2B_T21MXN_20190715T135000_L2A", None, None, datetime(2019, 7, 15, tzinfo=UTC), {})
    for key in ("red", "scl"):
        item.add_asset(key, pystac.Asset(f"./{key}.tif", media_type=pystac.MediaType.COG))
    collection.add_item(item)
    collection.normalize_hrefs(str(tmp_path / "c1"))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    reread = next(iter(pystac.Collection.from_file(str(tmp_path / "c1/collection.json")).get_items()))
    rad = plan_item(reread, ["B04"]).radiometry["B04"]
    assert (rad.rule, rad.offset) == ("item_assets:raster:bands", -0.1)


# ---- the real-world cases, read as a user's run reads them ---------------------------------------


def _case(shared_dir: Path, name: str) -> tuple[Path, str]:
    folder = next((shared_dir / "cases/real-world/stac").glob(f"{name}*"))
    cat = folder / "catalog.json"
    collection = next(iter(pystac.Catalog.from_file(str(cat)).get_items(recursive=True))).collection_id
    return cat, collection


def _centre_point() -> pd.DataFrame:
    lon, lat = Transformer.from_crs("EPSG:32721", "EPSG:4326", always_xy=True).transform(600160, 9319840)
    return pd.DataFrame({"point_id": ["p"], "lon": [lon], "lat": [lat], "source": ["case"], "name": [""]})


def _medians(image: np.ndarray) -> dict:
    return {b: float(np.nanmedian(image[i])) for i, b in enumerate(BANDS)}


def _assert_right(image: np.ndarray, b04=RIGHT["B04"]):
    got = _medians(image)
    for band, want in {**RIGHT, "B04": b04}.items():
        assert got[band] == pytest.approx(want, abs=5e-5), (band, got)


def _all_paths(src: Source, tmp_path: Path) -> dict:
    """Training image (fetch_training_images), composite in memory (fetch_composite), cell composite
    (write_composite)."""
    index = fetch_training_images(_centre_point(), src, REQ, 200, tmp_path / "images", tmp_path / "cache")
    assert index.status.tolist() == ["ok"]
    training_image = read_raster(index.path[0])
    image, used = fetch_composite(src, REQ, CASE_GRID)
    written_used = write_composite(tmp_path / "composite.tif", src, REQ, CASE_GRID, block_px=16)
    with rasterio.open(tmp_path / "composite.tif") as ds:
        written, written_tags = ds.read(), ds.tags()
    return {
        "training_image": training_image,
        "index": index,
        "image": image,
        "used": used,
        "written": written,
        "written_tags": written_tags,
        "written_used": written_used,
    }


@pytest.mark.parametrize("name, rule", [("01", "earthsearch:boa_offset_applied"), ("02", "raster:bands")])
def test_cases_01_02_as_local_catalog(shared_dir, tmp_path, caplog, name, rule):
    cat, collection = _case(shared_dir, name)
    out = _all_paths(Source.from_config({"kind": "local", "url": str(cat), "collection": collection}), tmp_path)
    for image in (out["training_image"].array, out["image"], out["written"]):
        _assert_right(image)
    (record,) = json.loads(out["training_image"].tags["radiometry"])
    assert record["rule"] == rule and record["item"] == out["used"][0].id
    assert json.loads(out["written_tags"]["radiometry"]) == [record]
    assert provenance(out["used"])["radiometry"][0]["rule"] == rule  # what composite_cell writes into its JSON
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_catalog_of_another_collection_is_named_in_the_log_and_the_error(shared_dir, caplog):
    """Case 02's items are sentinel-2-c1-l2a: asked as sentinel-2-l2a, the run must say so, not only 'widen'."""
    cat, collection = _case(shared_dir, "02")
    src = Source.from_config({"kind": "local", "url": str(cat), "collection": "sentinel-2-l2a"})
    with caplog.at_level(logging.WARNING), pytest.raises(NoImageryError, match="imagery.source.collection"):
        fetch_composite(src, REQ, CASE_GRID)
    assert any(collection in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)


def _served(cat: Path, collection: str):
    items = list(pystac.Catalog.from_file(str(cat)).get_items(recursive=True))
    for item in items:
        item.make_asset_hrefs_absolute()
    return StacServer(items, collection=collection, asset_root=cat.parent, page_size=10)


@pytest.mark.parametrize("name, rule", [("01", "earthsearch:boa_offset_applied"), ("02", "raster:bands")])
def test_cases_01_02_served_as_earth_search(shared_dir, tmp_path, caplog, name, rule):
    cat, collection = _case(shared_dir, name)
    with _served(cat, collection) as srv:
        src = Source("earth_search", srv.url, collection, retry=FAST)
        index = fetch_training_images(_centre_point(), src, REQ, 200, tmp_path / "images", tmp_path / "cache")
        image, used = fetch_composite(src, REQ, CASE_GRID)
        assert srv.count_path("/assets/") > 0  # read over HTTP, not from the disk
    training_image = read_raster(index.path[0])
    _assert_right(training_image.array)
    _assert_right(image)
    assert [r["rule"] for r in json.loads(training_image.tags["radiometry"])] == [rule]
    assert not [r for r in caplog.records if "implausible" in r.getMessage()]


def test_case_03_item_without_scl_is_skipped_and_named(shared_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    cat, collection = _case(shared_dir, "03")
    out = _all_paths(Source.from_config({"kind": "local", "url": str(cat), "collection": collection}), tmp_path)
    good, bad = "S2A_MSIL2A_20230710T140000_GOOD", "S2B_MSIL2A_20230705T140000_NOSCL"
    for image in (out["training_image"].array, out["image"], out["written"]):
        _assert_right(image)  # B04 0.0300: the good item alone (the skipped one has 0.0900)
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and bad in r.getMessage()]
    assert skipped and all("SCL" in m for m in skipped)
    assert out["index"].scene_ids[0] == good and [i.id for i in out["used"]] == [good]
    assert [r["item"] for r in json.loads(out["training_image"].tags["radiometry"])] == [good]
    assert out["written_tags"]["scene_ids"] == good and [i.id for i in out["written_used"]] == [good]
    prov = provenance(out["written_used"])
    assert bad not in json.dumps(prov)


def test_case_03_without_any_usable_item_is_no_imagery(shared_dir, tmp_path):
    cat, collection = _case(shared_dir, "03")
    src = Source.from_config({"kind": "local", "url": str(cat), "collection": collection})
    items = [i for i in pystac.Catalog.from_file(str(cat)).get_items(recursive=True) if i.id.endswith("NOSCL")]
    with pytest.raises(NoImageryError, match="1 found, none usable.*widen imagery.period"):
        fetch_composite(src, REQ, CASE_GRID, items)


def test_case_04_one_acquisition_listed_twice_counts_once(shared_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cat, collection = _case(shared_dir, "04")
    out = _all_paths(Source.from_config({"kind": "local", "url": str(cat), "collection": collection}), tmp_path)
    for image in (out["training_image"].array, out["image"], out["written"]):
        _assert_right(image, b04=0.0500)  # median of 1300, 1500, 1700 DN less 1000
    kept = {"S2A_21MXN_20230710_1_L2A", "S2B_21MXN_20230720_0_L2A", "S2A_21MXN_20230730_0_L2A"}
    assert set(out["index"].scene_ids[0].split(";")) == kept
    assert {i.id for i in out["used"]} == kept and {i.id for i in out["written_used"]} == kept
    assert len(json.loads(out["training_image"].tags["radiometry"])) == 3
    assert any(
        "S2A_21MXN_20230710_0_L2A" in r.getMessage() and "S2A_21MXN_20230710_1_L2A" in r.getMessage()
        for r in caplog.records
    )


def test_newest_processing_wins_by_baseline_then_sequence_then_updated():
    def item(id_, **props):
        return pystac.Item(id_, None, [0, 0, 1, 1], WHEN, {"platform": "sentinel-2b", "s2:mgrs_tile": "21MXN", **props})

    a = item("a", **{"s2:processing_baseline": "05.09", "s2:sequence": "1"})
    b = item("b", **{"s2:processing_baseline": "05.10", "s2:sequence": "0"})
    c = item("c", **{"s2:processing_baseline": "05.10", "s2:sequence": "0", "updated": "2025-01-01T00:00:00Z"})
    other_tile = item("d", **{"s2:mgrs_tile": "21MXP"})
    kept, dropped = unique_acquisitions([a, b, other_tile, c])
    assert [i.id for i in kept] == ["c", "d"] and sorted(dropped) == [("a", "c"), ("b", "c")]


# ---- the plausibility check and the cache key -------------------------------------------------------


def _case01_without_flag(shared_dir: Path, tmp_path: Path) -> Path:
    """Case 01 with its flag removed: its raster:bands offset -0.1 then applies twice (B04 -0.07)."""
    folder = tmp_path / "case01"
    shutil.copytree(_case(shared_dir, "01")[0].parent, folder)
    item_json = next(folder.glob("*/*.json"))
    doc = json.loads(item_json.read_text())
    del doc["properties"]["earthsearch:boa_offset_applied"]
    item_json.write_text(json.dumps(doc))
    return folder / "catalog.json"


def test_implausible_composite_is_logged_with_its_items(shared_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    src = Source.from_config({"kind": "local", "url": str(_case01_without_flag(shared_dir, tmp_path))})
    image, used = fetch_composite(src, REQ, CASE_GRID)
    assert _medians(image)["B04"] == pytest.approx(-0.07, abs=5e-5)
    warned = [r.getMessage() for r in caplog.records if "implausible" in r.getMessage()]
    assert len(warned) == 1 and "S2B_21MXN_20230715_0_L2A (raster:bands)" in warned[0] and "NDVI" in warned[0]
    caplog.clear()
    write_composite(tmp_path / "composite.tif", src, REQ, CASE_GRID, block_px=8)  # 16 blocks, one warning
    assert len([r for r in caplog.records if "implausible" in r.getMessage()]) == 1


def test_tile_cache_key_follows_the_radiometry_rule(shared_dir):
    cat, collection = _case(shared_dir, "01")
    src = Source.from_config({"kind": "local", "url": str(cat), "collection": collection})
    items = list(pystac.Catalog.from_file(str(cat)).get_items(recursive=True))
    before = _cache_key(src, REQ, CASE_GRID, items)
    assert _cache_key(src, REQ, CASE_GRID, items) == before
    items[0].properties["earthsearch:boa_offset_applied"] = False  # same files, another reading of them
    assert radiometry_record(items[0], BANDS)["rule"] == "raster:bands"
    assert _cache_key(src, REQ, CASE_GRID, items) != before


# ---- real Sentinel-2 bytes -----------------------------------------------------------------------


def _catalog_of(item: pystac.Item, folder: Path) -> Path:
    catalog = pystac.Catalog(item.id, "test catalog over real bytes")
    catalog.add_item(item)
    catalog.normalize_hrefs(str(folder))
    catalog.save(pystac.CatalogType.ABSOLUTE_PUBLISHED)
    return folder / "catalog.json"


def test_real_earth_search_cogs_29RKH(shared_dir, tmp_path):
    """Baseline 02.14, flag false, raster:bands offset 0: reflectance = DN / 10000 (README: B04 median 3414)."""
    root = shared_dir / "data/s2-real/29RKH_20200219_L2A"
    doc = json.loads((root / "S2A_29RKH_20200219_0_L2A.json").read_text())
    for asset in doc["assets"].values():  # the files we have; the rest (jp2 copies, AOT...) stay remote
        local = root / asset["href"].rsplit("/", 1)[-1]
        if local.is_file() and asset["href"].startswith("https://"):
            asset["href"] = str(local)
    item = pystac.Item.from_dict(doc)
    src = Source.from_config({"kind": "local", "url": str(_catalog_of(item, tmp_path / "cat"))})
    grid = Grid("EPSG:32629", Affine(100, 0, 199980, 0, -100, 2800020), 1098, 1098)  # the stored 100 m grid
    (plan,) = select_items([item], ("B02", "B04", "B08"))
    assert plan.assets == {"B02": "blue", "B04": "red", "B08": "nir"} and plan.mask == "scl"  # COGs, not -jp2
    assert {r.rule for r in plan.radiometry.values()} == {"raster:bands"}
    refl, clear = read_item(item, src, ("B02", "B04", "B08"), grid, plan=plan)
    for i, (p1, p50, p99) in enumerate(((1012, 1666, 2639), (2108, 3414, 4424), (2403, 3906, 5072))):
        np.testing.assert_allclose(np.nanpercentile(refl[i], [1, 50, 99]), np.array([p1, p50, p99]) / 1e4, atol=1e-6)
    image, used = fetch_composite(src, ImageryRequest(("B04",), ("2020-01-01", "2020-12-31"), 50.0), grid)
    assert [u.id for u in used] == [item.id]
    assert float(np.nanmedian(image[0])) == pytest.approx(0.3414, abs=0.002)  # clouds (SCL 8-10) masked
    assert np.isnan(image[0][~clear]).all() and np.isfinite(image[0][clear]).all()


def _safe_item(granule: Path) -> pystac.Item:
    """A STAC item for the SAFE granule, from what its MTD_MSIL2A.xml says (Planetary Computer keys)."""
    mtd = ET.parse(granule / "MTD_MSIL2A.xml").getroot()
    baseline = next(mtd.iter("PROCESSING_BASELINE")).text
    offsets = {int(e.get("band_id")): float(e.text) for e in mtd.iter("BOA_ADD_OFFSET")}
    quantification = float(next(mtd.iter("BOA_QUANTIFICATION_VALUE")).text)
    # The rule this item will get must be the one ESA's file states.
    assert set(offsets.values()) == {SENTINEL2_L2A.offset_dn} and quantification * SENTINEL2_L2A.dn_scale == 1.0
    w, n, px, size = 499980, 5900040, 60, 1830
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(
        [w, w + px * size, w + px * size, w], [n - px * size, n - px * size, n, n]
    )
    ring = [[lon[i], lat[i]] for i in (0, 1, 2, 3, 0)]
    item = pystac.Item(
        "S2A_MSIL2A_20221005T115411_R023_T29UNU_20221005T164454",
        {"type": "Polygon", "coordinates": [ring]},
        [min(lon), min(lat), max(lon), max(lat)],
        datetime(2022, 10, 5, 11, 54, 11, tzinfo=UTC),
        {
            "s2:processing_baseline": baseline,
            "eo:cloud_cover": 59.8,
            "platform": "Sentinel-2A",
            "s2:mgrs_tile": "29UNU",
        },
    )
    for band in ("B02", "B03", "B04", "B8A", "B11", "SCL"):
        item.add_asset(
            band,
            pystac.Asset(
                str(granule / f"T29UNU_20221005T115411_{band}_60m.jp2"), media_type="image/jp2", roles=["data"]
            ),
        )
    return item


def test_real_safe_granule_T29UNU_baseline_04_00(shared_dir, tmp_path):
    """Baseline 04.00: reflectance = (DN - 1000) / 10000; vegetation B8A 0.4082, water B04 0.0119 (README)."""
    granule = shared_dir / "data/s2-real/T29UNU_20221005_N0400"
    item = _safe_item(granule)
    assert radiometry_record(item, ("B04", "B8A")) == {
        "item": item.id,
        "rule": "processing_baseline>=04.00",
        "scale": 0.0001,
        "offset": -0.1,
    }
    src = Source.from_config({"kind": "local", "url": str(_catalog_of(item, tmp_path / "cat"))})
    grid = Grid("EPSG:32629", Affine(60, 0, 499980, 0, -60, 5900040), 1830, 1830)
    bands = ("B02", "B04", "B8A")
    used = write_composite(
        tmp_path / "composite.tif",
        src,
        ImageryRequest(bands, ("2022-10-01", "2022-10-31"), 80.0, cloud_buffer_m=0),
        grid,
    )  # the detection path, block by block
    assert [u.id for u in used] == [item.id]
    with rasterio.open(tmp_path / "composite.tif") as ds:
        written = ds.read()
        assert json.loads(ds.tags()["radiometry"])[0]["rule"] == "processing_baseline>=04.00"
    with rasterio.open(granule / "T29UNU_20221005T115411_SCL_60m.jp2") as ds:
        scl = ds.read(1)
    with rasterio.open(granule / "T29UNU_20221005T115411_B04_60m.jp2") as ds:
        dn04 = ds.read(1)
    b04, b8a = written[1], written[2]
    assert float(np.median(b8a[scl == 4])) == pytest.approx(0.4082, abs=1e-6)
    assert float(np.median(b04[scl == 6])) == pytest.approx(0.0119, abs=1e-6)
    assert np.isnan(b04[dn04 == 0]).all() and (dn04 == 0).mean() == pytest.approx(0.404, abs=0.001)
    negative = np.isfinite(b04) & (dn04 < 1000)
    assert negative.sum() > 100  # dark pixels below the offset stay, as negative reflectance
    np.testing.assert_allclose(b04[negative], (dn04[negative].astype(float) - 1000) / 1e4, atol=1e-6)
