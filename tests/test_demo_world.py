"""The offline demo world: a synthetic Sentinel-2 L2A STAC catalog plus ground truth.

One half-size world is generated per module (a few seconds); every test reads it back through
pystac/rasterio the way the workflow does. Two scenes per yearly period (2021-2024, 2023 the cloudy one:
both its scenes hide the same old mines); demo-area mining appears and grows in 2022 and 2024.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.features
import shapely
from pyproj import Geod, Transformer
from pystac.extensions.projection import ProjectionExtension
from shapely.geometry import Point, shape
from shapely.ops import unary_union

from garimpo.synthetic.demo_world import (
    BAND_RES,
    CLOUDY_YEAR,
    CRS,
    LC,
    PERIODS,
    SCENES,
    SCL_VALID,
    build_world,
    cloud_cover_percent,
    generate_demo_world,
    mgrs_tile,
    rowcol,
    size_m,
    to_dn,
)

SCALE = 0.5
SEED = 7
ASSETS = ("B02", "B03", "B04", "B08", "B11", "B12", "SCL")
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}
OFFSET_DATE = datetime(2022, 1, 25, tzinfo=UTC)
TO_UTM = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_world")
    summary = generate_demo_world(out, seed=SEED, scale=SCALE)
    return out, summary


@pytest.fixture(scope="module")
def items(world_dir):
    cat = pystac.Catalog.from_file(str(world_dir[0] / "catalog" / "catalog.json"))
    return sorted(cat.get_items(recursive=True), key=lambda it: it.datetime)


def _fc(world_dir, name):
    return json.loads((world_dir[0] / "truth" / name).read_text())


def _utm(geom):
    return shapely.transform(geom, lambda xy: np.column_stack(TO_UTM.transform(xy[:, 0], xy[:, 1])))


def _regions(world_dir):
    return {f["properties"]["name"]: _utm(shape(f["geometry"])) for f in _fc(world_dir, "regions.geojson")["features"]}


def _read(item, key):
    with rasterio.open(item.assets[key].get_absolute_href()) as src:
        return src.read(1), src.transform


def _reflectance_10m(item):
    """Harmonised reflectance of every band on the 10 m grid (20 m bands repeated 2x2), SCL likewise."""
    rb = item.assets["B02"].extra_fields["raster:bands"][0]
    out = {}
    for key in ASSETS:
        a, _ = _read(item, key)
        if BAND_RES[key] == 20:
            a = np.repeat(np.repeat(a, 2, 0), 2, 1)
        out[key] = a if key == "SCL" else a.astype(np.float32) * rb["scale"] + rb["offset"]
    return out


def _mask(geoms, item):
    with rasterio.open(item.assets["B02"].get_absolute_href()) as src:
        return rasterio.features.rasterize(
            [(g, 1) for g in geoms], out_shape=src.shape, transform=src.transform
        ).astype(bool)


# --------------------------------------------------------------------------- STAC


def test_catalog_is_self_contained_and_pc_shaped(world_dir, items, tmp_path):
    out, summary = world_dir
    cat = pystac.Catalog.from_file(str(out / "catalog" / "catalog.json"))
    colls = list(cat.get_children())
    assert [c.id for c in colls] == ["sentinel-2-l2a"]
    assert len(items) == 8
    assert [it.datetime.date().isoformat() for it in items] == [
        "2021-07-26",
        "2021-08-10",
        "2022-07-31",
        "2022-08-05",
        "2023-07-16",
        "2023-07-21",
        "2024-08-09",
        "2024-08-14",
    ]
    assert [it.properties["platform"][-1] for it in items] == ["A", "B"] * 4
    assert all(6 <= it.datetime.month <= 9 for it in items)  # dry season
    # relative orbit 67: each unit repeats every 10 days, S2A and S2B 5 days apart
    first = items[0].datetime
    for it in items:
        days = (it.datetime.date() - first.date()).days
        assert days % 5 == 0 and (days % 10 == 0) == (it.properties["platform"] == items[0].properties["platform"])
    assert summary["items_by_period"] == {p: [it.id for it in items if str(it.datetime.year) == p] for p in PERIODS}
    assert all(len(ids) == 2 for ids in summary["items_by_period"].values())
    assert len({it.id for it in items}) == 8 and set(summary["items"]) == {it.id for it in items}
    for it in items:
        assert it.collection_id == "sentinel-2-l2a"
        assert re.fullmatch(r"S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T21MWP_\d{8}T\d{6}", it.id), it.id
        p = it.properties
        assert p["proj:code"] == "EPSG:32721" and ProjectionExtension.ext(it).epsg == 32721
        raw = json.loads(Path(it.get_self_href()).read_text())["properties"]
        assert raw["proj:epsg"] == 32721  # kept in the file for proj-v1 readers (pystac migrates it away)
        assert p["s2:mgrs_tile"] == "21MWP" and p["platform"].startswith("Sentinel-2")
        assert isinstance(p["eo:cloud_cover"], float)
        assert set(it.assets) == set(ASSETS)
        lon0, lat0, lon1, lat1 = it.bbox
        assert -56.46 < lon0 < lon1 < -56.0 and -6.3 < lat0 < lat1 < -6.04
        assert shape(it.geometry).exterior.is_ccw  # RFC 7946 winding
        for key, asset in it.assets.items():
            assert Path(asset.get_absolute_href()).is_file()
            assert asset.media_type == pystac.MediaType.COG and asset.roles == ["data"]
            assert asset.extra_fields["gsd"] == BAND_RES[key]
    # hrefs are relative on disk: a copied catalog still resolves every asset
    raw = json.loads((out / "catalog" / items[0].id / f"{items[0].id}.json").read_text())
    assert all(not a["href"].startswith("/") for a in raw["assets"].values())
    moved = tmp_path / "moved"
    shutil.copytree(out / "catalog", moved)
    for it in pystac.Catalog.from_file(str(moved / "catalog.json")).get_items(recursive=True):
        for asset in it.assets.values():
            href = Path(asset.get_absolute_href())
            assert href.is_file() and moved in href.parents


def test_assets_are_cogs_with_stac_metadata(items):
    for it in items:
        for key, asset in it.assets.items():
            with rasterio.open(asset.get_absolute_href()) as src:
                assert src.crs.to_epsg() == 32721
                assert src.res == (BAND_RES[key], BAND_RES[key])
                assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
                assert src.overviews(1), f"{it.id}/{key} has no internal overviews"
                assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                assert src.compression.name.lower() == "deflate"
                assert src.nodata == 0 and src.count == 1
                assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                assert list(asset.extra_fields["proj:shape"]) == [src.height, src.width]
                assert list(asset.extra_fields["proj:transform"]) == list(src.transform)[:6]
            rb = asset.extra_fields["raster:bands"][0]
            assert rb["nodata"] == 0 and rb["spatial_resolution"] == BAND_RES[key]
            if key == "SCL":
                assert rb["data_type"] == "uint8" and "eo:bands" not in asset.extra_fields
            else:
                assert rb["data_type"] == "uint16" and rb["scale"] == 0.0001
                (band,) = asset.extra_fields["eo:bands"]
                assert band["name"] == key and band["common_name"] == COMMON[key]
        # 10 m and 20 m grids share the origin and nest exactly
        t10 = it.assets["B02"].extra_fields["proj:transform"]
        t20 = it.assets["B11"].extra_fields["proj:transform"]
        assert t10[2] == t20[2] and t10[5] == t20[5] and t10[2] % 60 == 0 and t10[5] % 60 == 0
        s10, s20 = it.assets["B02"].extra_fields["proj:shape"], it.assets["B11"].extra_fields["proj:shape"]
        assert s10 == [2 * s20[0], 2 * s20[1]]


def test_processing_baseline_offset(world_dir, items):
    control = _regions(world_dir)["control"]
    medians = []
    for it in items:
        after = it.datetime >= OFFSET_DATE
        baseline = float(it.properties["s2:processing_baseline"])
        assert (baseline >= 4.0) == after
        for key in ASSETS[:-1]:
            assert it.assets[key].extra_fields["raster:bands"][0]["offset"] == (-0.1 if after else 0.0)
        if it.properties["eo:cloud_cover"] > 20:
            continue
        m = _mask([control], it)
        b02, _ = _read(it, "B02")
        b08, _ = _read(it, "B08")
        dn02, dn08 = np.median(b02[m]), np.median(b08[m])
        # forest B02 ~ 0.02: ~200 DN before the baseline change, ~1200 DN after
        assert (dn02 > 1000) == after and (dn02 < 600) != after
        off = 1000 if after else 0
        medians.append(((dn02 - off) / 1e4, (dn08 - off) / 1e4))
    assert len(medians) == 6  # 2021 x2 (baseline 03.01, no offset), 2022 x2 and 2024 x2 (offset)
    assert [float(it.properties["s2:processing_baseline"]) >= 4 for it in items] == [False] * 2 + [True] * 6
    assert [it.properties["s2:processing_baseline"] for it in items[:2]] == ["03.01", "03.01"]
    for a, b in zip(items[::2], items[1::2]):  # the scenes of a period share the baseline
        assert a.datetime.year == b.datetime.year
        assert a.properties["s2:processing_baseline"] == b.properties["s2:processing_baseline"]
    for b02, b08 in medians:  # once the offset is removed the scenes agree
        assert 0.01 < b02 < 0.03 and 0.25 < b08 < 0.35
    assert all(abs(m[1] - medians[0][1]) < 0.03 for m in medians[1:])


def test_scl_codes_and_cloud_cover(world_dir, items):
    control = _regions(world_dir)["control"]
    for it in items:
        scl, _ = _read(it, "SCL")
        assert set(np.unique(scl)) <= set(SCL_VALID)
        assert {4, 5, 6} <= set(np.unique(scl))
        assert it.properties["eo:cloud_cover"] == cloud_cover_percent(scl)
        cc = 100 * np.isin(scl, (8, 9, 10)).mean()
        assert abs(it.properties["eo:cloud_cover"] - cc) <= 0.05
    clear = [it for it in items if it.properties["eo:cloud_cover"] < 20]
    assert [it.datetime.year for it in clear] == [2021, 2021, 2022, 2022, 2024, 2024]
    cover = [it.properties["eo:cloud_cover"] for it in items]
    for c, sc in zip(cover, SCENES):
        assert (45 < c < 70) if sc.cloudy else (2 < c < 12), (sc.datetime, c)
    cloudy = [it for it in items if it.properties["eo:cloud_cover"] > 20]
    assert all(np.isin(_read(it, "SCL")[0], (3,)).any() for it in cloudy)  # clouds cast shadows
    for it in clear:  # the control area is pure forest, and clear, in the clear scenes
        r = _reflectance_10m(it)
        m = _mask([control], it)
        assert np.all(r["SCL"][m] == 4)
        ndvi = (r["B08"] - r["B04"]) / (r["B08"] + r["B04"])
        assert np.mean(ndvi[m] > 0.7) > 0.99


def _mining_like(r):
    """Bright bare ground or turbid (red > blue, NIR-dark) water, from the 10 m bands: the 20 m
    SWIR of a pixel next to a pond is diluted by the water and is no help there."""
    b02, b04, b08 = r["B02"], r["B04"], r["B08"]
    ndvi = (b08 - b04) / (b08 + b04)
    bare = (b04 > 0.10) & (ndvi < 0.25)
    turbid_water = (ndvi < 0.05) & (b04 > 0.07) & (b04 > b02)
    return bare | turbid_water, ndvi


def _by_period(world_dir):
    """{period: {mine_id: UTM footprint}} from mining_by_period.geojson."""
    out: dict[str, dict] = {p: {} for p in PERIODS}
    for f in _fc(world_dir, "mining_by_period.geojson")["features"]:
        out[f["properties"]["period"]][f["properties"]["mine_id"]] = _utm(shape(f["geometry"]))
    return out


def test_mine_polygons_cover_sediment_and_turbid_water(world_dir, items):
    latest = {
        f["properties"]["mine_id"]: _utm(shape(f["geometry"])) for f in _fc(world_dir, "mines.geojson")["features"]
    }
    by_period = _by_period(world_dir)
    checked = {"present": 0, "absent": 0}
    for it in items:
        r = _reflectance_10m(it)
        like, ndvi = _mining_like(r)
        clear = ~np.isin(r["SCL"], (3, 8, 9, 10))
        now = by_period[str(it.datetime.year)]
        for mine_id, final in latest.items():
            # a mine's footprint of the period is mining; the rest of its final footprint still forest
            for geom, mining in ((now.get(mine_id), True), (final.difference(now.get(mine_id, Point())), False)):
                if geom is None or geom.area < 1000:
                    continue
                m = _mask([geom], it)
                ok = m & clear
                if ok.sum() < 0.6 * m.sum() or m.sum() < 10:
                    continue  # mostly under cloud in this scene
                if mining:
                    frac = like[ok].mean()
                    assert frac > 0.85, f"{mine_id} in {it.id}: only {frac:.2f} mining-like"
                else:  # not mined yet
                    assert np.mean(ndvi[ok] > 0.5) > 0.85, f"{mine_id} visible in {it.id} before it is mined"
                checked["present" if mining else "absent"] += 1
    assert checked["present"] >= 10 and checked["absent"] >= 2
    # and the rest of the world does not look like a mine except the known look-alikes
    r = _reflectance_10m(items[0])
    like, _ = _mining_like(r)
    assert like[~np.isin(r["SCL"], (3, 8, 9, 10))].mean() < 0.03


def test_new_ground_is_clear_when_it_appears_and_before(world_dir, items):
    """New ground is visible (clear, mining-like) in both scenes of its period and forest in both scenes of
    the last clear period before it."""
    by_year: dict[int, list] = {}
    for it in items:
        by_year.setdefault(it.datetime.year, []).append(it)
    new = _fc(world_dir, "new_mining.geojson")["features"]
    assert {f["properties"]["kind"] for f in new} == {"new_site", "expansion"}
    for f in new:
        year = int(f["properties"]["period"])
        before = max(y for y, its in by_year.items() if y < year and its[0].properties["eo:cloud_cover"] < 20)
        m = _mask([_utm(shape(f["geometry"]))], items[0])
        for y, mining in ((year, True), (before, False)):
            assert len(by_year[y]) == 2
            for it in by_year[y]:
                r = _reflectance_10m(it)
                like, ndvi = _mining_like(r)
                assert np.all(~np.isin(r["SCL"][m], (3, 8, 9, 10))), f"{f['properties']} hidden by cloud in {it.id}"
                if mining:
                    assert like[m].mean() > 0.85
                else:
                    assert np.mean(ndvi[m] > 0.5) > 0.85


def test_cloudy_scenes_hide_old_mines(world_dir, items):
    """Both 2023 scenes hide the chosen old mines (so the 2023 composite never sees them); their other
    clouds are independent."""
    _, summary = world_dir
    cloudy = [it for it in items if it.properties["eo:cloud_cover"] > 20]
    assert [it.datetime.year for it in cloudy] == [CLOUDY_YEAR] * 2 and CLOUDY_YEAR == 2023
    assert summary["items_by_period"]["2023"] == [it.id for it in cloudy]
    hidden = summary["hidden_by_clouds"]["2023"]
    assert hidden and all(h.startswith("D") for h in hidden)  # demo-area mines
    before = _by_period(world_dir)["2022"]
    under = summary["mines_under_cloud"]["2023"]
    assert set(under) == {it.id for it in cloudy}
    clouds = []
    for it in cloudy:
        scl = _reflectance_10m(it)["SCL"]
        for mine_id in hidden:
            assert mine_id in before  # it existed before the cloudy period
            m = _mask([before[mine_id].buffer(280)], it)  # the mine and ~300 m around it
            assert np.all(np.isin(scl[m], (8, 9))), f"{mine_id} shows through the clouds of {it.id}"
        assert set(hidden) <= set(under[it.id]["hidden"])
        clouds.append(np.isin(scl, (8, 9, 10)))
    assert any(under[it.id]["partly"] for it in cloudy)  # and clouds cover other mines in part
    # apart from the hidden mines the two layouts differ: about independent (~30 % both cloudy, not ~55 %)
    both = (clouds[0] & clouds[1]).mean()
    assert both < 0.8 * min(clouds[0].mean(), clouds[1].mean())
    assert (clouds[0] ^ clouds[1]).mean() > 0.2


def test_clear_periods_composite_sees_all_ground(world_dir, items):
    """The two scenes of a clear period have different cloud layouts that never overlap: each cloud or
    shadow in one is clear in the other, so the period's composite has a clear look everywhere."""
    _, summary = world_dir
    for period in ("2021", "2022", "2024"):
        pair = [it for it in items if str(it.datetime.year) == period]
        assert len(pair) == 2
        bad = [np.isin(_read(it, "SCL")[0], (3, 8, 9, 10)) for it in pair]
        assert bad[0].any() and bad[1].any() and not (bad[0] & bad[1]).any(), period
        hid = [set(summary["mines_under_cloud"][period][it.id]["hidden"]) for it in pair]
        assert not hid[0] & hid[1]  # a mine hidden in one scene shows in the other


def test_scenes_of_a_period_share_the_surface(world_dir, items):
    """Same ground (mines of the year) in both scenes of a period; noise and look differ per scene."""
    by_period = _by_period(world_dir)
    for period in PERIODS:
        a, b = (it for it in items if str(it.datetime.year) == period)
        ra, rb = _reflectance_10m(a), _reflectance_10m(b)
        clear = ~np.isin(ra["SCL"], (3, 8, 9, 10)) & ~np.isin(rb["SCL"], (3, 8, 9, 10))
        assert not np.array_equal(ra["B04"], rb["B04"])  # own noise, illumination, calibration
        mines = _mask(list(by_period[period].values()), a) & clear
        assert mines.sum() > 100  # (2023: the clear ground of both cloudy scenes only)
        like_a, _ = _mining_like(ra)
        like_b, _ = _mining_like(rb)
        assert like_a[mines].mean() > 0.85 and like_b[mines].mean() > 0.85
        # the same mine pixels in both: red differs by noise and calibration only
        diff = np.abs(ra["B04"][mines] - rb["B04"][mines])
        assert np.median(diff) < 0.02


# --------------------------------------------------------------------------- truth


def test_truth_geojson_is_rfc7946(world_dir):
    for name in ("mines", "mining_by_period", "new_mining", "known_mines", "protected_areas", "urban", "regions"):
        fc = _fc(world_dir, f"{name}.geojson")
        assert fc["type"] == "FeatureCollection" and "crs" not in fc and fc["features"]
        for f in fc["features"]:
            g = shape(f["geometry"])
            assert g.is_valid and not g.is_empty
            lon0, lat0, lon1, lat1 = g.bounds
            assert -56.5 < lon0 <= lon1 < -56.0 and -6.3 < lat0 <= lat1 < -6.0
            if g.geom_type == "Polygon":
                assert g.exterior.is_ccw


def test_mines_truth(world_dir):
    out, summary = world_dir
    feats = _fc(world_dir, "mines.geojson")["features"]
    regions = _regions(world_dir)
    props = [f["properties"] for f in feats]
    assert len({p["mine_id"] for p in props}) == len(props)
    assert {p["area"] for p in props} == {"train", "demo"}
    assert summary["n_mines"] == {
        "train": sum(p["area"] == "train" for p in props),
        "demo": sum(p["area"] == "demo" for p in props),
    }
    # training mines are there from the first period on and never change; demo mining appears over time
    assert {p["first_seen"] for p in props if p["area"] == "train"} == {2021}
    assert all(p["grown"] == [] for p in props if p["area"] == "train")
    assert {p["first_seen"] for p in props if p["area"] == "demo"} == {2021, 2022, 2024}
    geod = Geod(ellps="WGS84")
    utm = [_utm(shape(f["geometry"])) for f in feats]
    for p, f, g in zip(props, feats, utm):
        assert regions["train_area" if p["area"] == "train" else "demo"].contains(g)
        assert not g.intersects(regions["control"])
        area = abs(geod.geometry_area_perimeter(shape(f["geometry"]))[0]) / 1e4
        assert p["area_ha"] == pytest.approx(area, abs=0.01) and 0.3 < area < 40
        minx, miny, maxx, maxy = g.bounds
        # footprints ~150-700 m long, up to ~1.3 km once grown
        assert 120 <= max(maxx - minx, maxy - miny) <= (1300 if p["grown"] else 800)
        assert all(p["first_seen"] < y <= 2024 and y != 2023 for y in p["grown"])
    first = _by_period(world_dir)
    cents = np.array(
        [
            [first[str(p["first_seen"])][p["mine_id"]].centroid.x, first[str(p["first_seen"])][p["mine_id"]].centroid.y]
            for p in props
        ]
    )
    d = np.hypot(*(cents[:, None] - cents[None]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(cents), 1)].min() >= 800  # as first seen

    # known mines = the training mines, one point on each
    with open(out / "truth" / "known_mines.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["name", "longitude", "latitude"]
    want = {p["mine_id"] for p in props if p["area"] == "train"}
    assert {r["name"] for r in rows} == want
    by_id = {p["mine_id"]: shape(f["geometry"]) for p, f in zip(props, feats)}
    for r in rows:
        assert by_id[r["name"]].contains(Point(float(r["longitude"]), float(r["latitude"])))
    pts = _fc(world_dir, "known_mines.geojson")["features"]
    assert sorted((f["properties"]["name"], *f["geometry"]["coordinates"]) for f in pts) == sorted(
        (r["name"], float(r["longitude"]), float(r["latitude"])) for r in rows
    )


def test_mining_over_time_is_consistent(world_dir):
    """Footprints never shrink; new ground lies outside the previous footprint and adds up to the next one;
    nothing is new in the first period or in the cloudy 2023."""
    _, summary = world_dir
    mines = {f["properties"]["mine_id"]: f["properties"] for f in _fc(world_dir, "mines.geojson")["features"]}
    latest = {
        f["properties"]["mine_id"]: _utm(shape(f["geometry"])) for f in _fc(world_dir, "mines.geojson")["features"]
    }
    by_period = _by_period(world_dir)
    assert list(by_period) == ["2021", "2022", "2023", "2024"] == summary["periods"]
    for f in _fc(world_dir, "mining_by_period.geojson")["features"]:
        p = f["properties"]
        assert set(p) == {"mine_id", "area", "period", "first_seen", "area_ha"}
        assert p["first_seen"] == mines[p["mine_id"]]["first_seen"] <= int(p["period"])
    for mine_id, props in mines.items():
        seen = [period for period in PERIODS if mine_id in by_period[period]]
        assert seen == [period for period in PERIODS if int(period) >= props["first_seen"]]
        fps = [by_period[period][mine_id] for period in seen]
        for a, b in zip(fps, fps[1:]):
            assert a.difference(b).area < 1.0  # never shrinks
        assert fps[-1].symmetric_difference(latest[mine_id]).area < 1.0
    assert all(by_period["2023"][k].symmetric_difference(g).area < 1.0 for k, g in by_period["2022"].items())

    new = _fc(world_dir, "new_mining.geojson")["features"]
    assert {f["properties"]["period"] for f in new} <= {"2022", "2024"}  # nothing in 2021 or 2023
    geod = Geod(ellps="WGS84")
    for f in new:
        p = f["properties"]
        assert set(p) == {"mine_id", "area", "period", "kind", "area_ha"}
        g, period = _utm(shape(f["geometry"])), p["period"]
        prev = by_period[PERIODS[PERIODS.index(period) - 1]].get(p["mine_id"])
        assert g.difference(by_period[period][p["mine_id"]]).area < 1.0  # part of the mine then
        if p["kind"] == "new_site":
            assert prev is None and mines[p["mine_id"]]["first_seen"] == int(period)
            assert g.symmetric_difference(by_period[period][p["mine_id"]]).area < 1.0
        else:
            assert p["kind"] == "expansion" and int(period) in mines[p["mine_id"]]["grown"]
            assert g.intersection(prev).area < 1.0  # outside the previous footprint
            assert prev.union(g).symmetric_difference(by_period[period][p["mine_id"]]).area < 1.0
            assert g.area > 1.0e4  # >= 1 ha: a 160 m detector can see it
        area = abs(geod.geometry_area_perimeter(shapely.orient_polygons(shape(f["geometry"])))[0]) / 1e4
        assert p["area_ha"] == pytest.approx(area, abs=0.01)
    # every growth and every later mine has its new ground; the summary counts it
    want = {(k, str(p["first_seen"]), "new_site") for k, p in mines.items() if p["first_seen"] > 2021}
    want |= {(k, str(y), "expansion") for k, p in mines.items() for y in p["grown"]}
    assert {(f["properties"]["mine_id"], f["properties"]["period"], f["properties"]["kind"]) for f in new} == want
    for period, s in summary["by_period"].items():
        for kind, key in (("new_site", "new_sites"), ("expansion", "expansions")):
            assert sum(s[key].values()) == sum(
                f["properties"]["period"] == period and f["properties"]["kind"] == kind for f in new
            )
    # the half-size world still shows each kind of change in the demo half
    assert any(f["properties"]["area"] == "demo" and f["properties"]["kind"] == "new_site" for f in new)
    assert any(f["properties"]["area"] == "demo" and f["properties"]["kind"] == "expansion" for f in new)
    assert all(f["properties"]["area"] == "demo" for f in new)


def test_context_layers(world_dir):
    out, _ = world_dir
    regions = _regions(world_dir)
    demo, train, control = regions["demo"], regions["train_area"], regions["control"]
    assert demo.area == pytest.approx(train.area, rel=1e-3) and demo.intersection(train).area < 1.0
    assert control.within(demo)
    mines = {
        f["properties"]["mine_id"]: _utm(shape(f["geometry"])) for f in _fc(world_dir, "mines.geojson")["features"]
    }

    pas = _fc(world_dir, "protected_areas.geojson")["features"]
    assert 2 <= len(pas) <= 3
    assert {p["properties"]["kind"] for p in pas} == {"indigenous_territory", "conservation_unit"}
    pa_geoms = [_utm(shape(p["geometry"])) for p in pas]
    assert any(g.intersection(demo).area > 1e5 for g in pa_geoms)
    assert sum(g.intersection(train).area for g in pa_geoms) > sum(g.intersection(demo).area for g in pa_geoms)
    ti = next(g for g, p in zip(pa_geoms, pas) if p["properties"]["kind"] == "indigenous_territory")
    assert 1 <= sum(ti.contains(m.centroid) for k, m in mines.items() if k.startswith("T")) <= 2

    (town,) = [_utm(shape(f["geometry"])) for f in _fc(world_dir, "urban.geojson")["features"]]
    assert 0.6e6 < town.area < 1.3e6
    assert town.intersects(demo) and town.intersects(train)
    assert not any(g.intersects(town) for g in pa_geoms)


def test_hard_negatives_are_lookalikes_in_training_area(world_dir, items):
    out, _ = world_dir
    with open(out / "truth" / "hard_negatives.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["name", "longitude", "latitude", "kind"]
    assert len(rows) >= 12
    kinds = {r["kind"] for r in rows}
    assert {"pasture", "farm_pond", "town", "sandbar", "road"} <= kinds
    train = _regions(world_dir)["train_area"]
    mines = unary_union([_utm(shape(f["geometry"])) for f in _fc(world_dir, "mines.geojson")["features"]])
    r = _reflectance_10m(items[0])
    ndvi = (r["B08"] - r["B04"]) / (r["B08"] + r["B04"])
    with rasterio.open(items[0].assets["B02"].get_absolute_href()) as src:
        for row in rows:
            x, y = TO_UTM.transform(float(row["longitude"]), float(row["latitude"]))
            assert train.contains(Point(x, y)) and mines.distance(Point(x, y)) > 490  # no mine in its 640 m image
            i, j = src.index(x, y)
            if r["SCL"][i, j] in (3, 8, 9, 10):
                continue
            assert ndvi[i, j] < 0.75, f"{row['name']} is on forest"


@pytest.mark.slow
def test_layout_at_full_scale():
    """The full-size world (no rendering): counts and placement rules of the specification."""
    w = build_world(SEED, 1.0)
    xmid = w.grid.transform.c + size_m(w.grid)[0] / 2
    train = [m for m in w.mines if m.area == "train"]
    demo = [m for m in w.mines if m.area == "demo"]
    assert (len(train), len(demo)) == (40, 10)
    # training mines never change; some are long from the start (an extension of the first year)
    assert all(m.first_seen == 2021 and all(e.year == 2021 for e in m.extensions) for m in train)
    assert sum(bool(m.extensions) for m in train) >= 4
    assert sum(m.first_seen == 2022 for m in demo) >= 2 and sum(m.first_seen == 2024 for m in demo) >= 2
    grown = [e.year for m in demo for e in m.extensions]
    assert grown.count(2022) >= 1 and grown.count(2024) >= 2 and set(grown) <= {2022, 2024}
    hidden = [m for m in demo if m.mine_id in w.hidden[2023]]
    assert len(hidden) >= 2 and all(m.first_seen < 2023 for m in hidden)
    for m in demo:  # growths join the footprint: one polygon, 300-600 m more stream
        for e in m.extensions:
            assert e.footprint.geom_type == "Polygon" and e.piece.area > 1.5e4
            assert m.footprint_at(e.year - 1).difference(e.footprint).area < 1.0
    assert all(m.centre[0] < xmid for m in train) and all(m.centre[0] > xmid for m in demo)
    # pure forest control area
    r0, c0 = (int(v) for v in rowcol(w.grid, np.array([w.control.bounds[0], w.control.bounds[3]])))
    r1, c1 = (int(v) for v in rowcol(w.grid, np.array([w.control.bounds[2], w.control.bounds[1]])))
    assert np.all(w.lc[r0:r1, c0:c1] == LC["forest"])
    assert not any(m.footprint.intersects(w.control) for m in w.mines)
    # look-alikes on both sides of the train/demo boundary
    for kind in ("pasture", "bare", "farm_pond"):
        xs = [f.geom.centroid.x for f in w.fields if f.kind == kind]
        assert min(xs) < xmid < max(xs), kind
    bar_x = [(win[1].start + win[1].stop) / 2 * 10 + w.grid.transform.c for win, _ in w.sandbars]
    assert min(bar_x) < xmid < max(bar_x)
    tminx, _, tmaxx, _ = w.town.bounds
    assert tminx < xmid < tmaxx
    assert 30 <= len(w.hard_negatives) <= 45


@pytest.mark.slow
def test_deterministic_and_cli(world_dir, tmp_path):
    """Same seed -> same world (run through the rule script's standalone entry point)."""
    out, _ = world_dir
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_demo_world.py"),
            str(tmp_path),
            "--seed",
            str(SEED),
            "--scale",
            str(SCALE),
        ],
        check=True,
        capture_output=True,
    )
    for name in (
        "mines.geojson",
        "mining_by_period.geojson",
        "new_mining.geojson",
        "known_mines.csv",
        "hard_negatives.csv",
        "protected_areas.geojson",
    ):
        assert (tmp_path / "truth" / name).read_text() == (out / "truth" / name).read_text()
    item_dirs = sorted(p.name for p in (out / "catalog").iterdir() if p.is_dir() and p.name.startswith("S2"))
    assert item_dirs == sorted(
        p.name for p in (tmp_path / "catalog").iterdir() if p.is_dir() and p.name.startswith("S2")
    )
    for d in item_dirs:
        for key in ("B04", "B11", "SCL"):
            with (
                rasterio.open(out / "catalog" / d / f"{key}.tif") as a,
                rasterio.open(tmp_path / "catalog" / d / f"{key}.tif") as b,
            ):
                assert np.array_equal(a.read(1), b.read(1))


def test_small_helpers():
    assert mgrs_tile(-56.45, -6.05) == "21MWP"
    assert mgrs_tile(-77.0353, 38.8895) == "18SUJ"  # Washington Monument, a published MGRS reference
    dn = to_dn(np.array([0.02, 0.0, -0.05, 7.0], np.float32), 1000)
    assert dn.tolist() == [1200, 1000, 500, 65535]
    assert to_dn(np.array([0.02, -0.01], np.float32), 0).tolist() == [200, 1]  # 0 stays nodata
    scl = np.array([[4, 8], [9, 0]], np.uint8)
    assert cloud_cover_percent(scl) == pytest.approx(66.7)
