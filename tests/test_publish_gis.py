"""GIS exports: flat properties, GeoPackage and KML round trips, the detections table and CSV."""

import csv
import json
import math
import time

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from shapely.geometry import box, mapping, shape

from garimpo.errors import InputDataError
from garimpo.geo.geojson import geodesic_area_ha
from garimpo.publish import gis
from garimpo.publish.gis import (
    centroid_lonlat,
    detections_table,
    flat_properties,
    read_gpkg_layers,
    write_detections_csv,
    write_gpkg,
    write_kml,
)

# Tapajós, about 6.5 degrees S: boxes of a few hundred metres, like real detections.
LON0, LAT0 = -56.90, -6.50
D = 0.004  # ~440 m


def feat(geometry, **props):
    return {"type": "Feature", "geometry": mapping(geometry), "properties": props}


def det(i, x, y, w=D, **extra):
    props = {
        "id": f"demo-{i:05d}",
        "score": 0.5 + i / 100,
        "mean_score": 0.4,
        "n_parts": 2,
        "scene_ids": [f"S2A_{i}_a", f"S2B_{i}_b"],
        "dates": ["2023-07-01", "2023-08-15"],
        "date_start": "2023-07-01",
        "date_end": "2023-08-15",
        "model_id": "segformer-b0@abc",
        "config_hash": "f00d",
        "cells": [f"c{i}", "c99"],
        "area_ha": 12.5 + i,
        "status": "new" if i % 2 else "persisting",
        "first_detected": "2022" if i % 2 == 0 else "2023",
        "last_detected": "2023",
        "new_area_ha": None,
        "qa": {"clear": 0.9, "sensor": "S2"},
        **extra,
    }
    return feat(box(LON0 + x, LAT0 + y, LON0 + x + w, LAT0 + y + w), **props)


@pytest.fixture
def layers():
    dets = [det(i, 0.01 * i, 0.0) for i in range(4)]
    per_period = [{**d, "properties": {k: v for k, v in d["properties"].items() if k != "status"}} for d in dets[:3]]
    change = [
        feat(box(LON0, LAT0, LON0 + D, LAT0 + D / 2), id="chg-1", period="2023", kind="new_site", area_ha=3.0),
        feat(box(LON0 + 0.01, LAT0, LON0 + 0.012, LAT0 + D), id="chg-2", period="2023", kind="expansion", area_ha=1),
    ]
    multi = shapely.MultiPolygon([box(LON0, LAT0, LON0 + D, LAT0 + D), box(LON0 + 0.05, LAT0, LON0 + 0.06, LAT0 + D)])
    footprint = [feat(multi, first_detected="2022", last_detected="2023", area_ha=99.5)]
    return {
        "detections_latest": dets,
        "detections_2023": per_period,
        "detections_2022": [],
        "change_2023": change,
        "footprint": footprint,
    }


# ------------------------------------------------------------------------------------------ flat properties


def test_flat_properties_joins_lists_and_keeps_scalars():
    flat = flat_properties(
        {
            "scene_ids": ["S2A_1", "S2B_2"],
            "cells": ("c1",),
            "empty": [],
            "model_id": ["m1", None, 3],
            "qa": {"clear": 0.9, "nested": [1, 2]},
            "none": None,
            "flag": True,
            "n": 3,
            "score": 0.25,
            "name": "Munduruku",
            "np": np.float32(0.5),
        }
    )
    assert flat["scene_ids"] == "S2A_1; S2B_2"
    assert flat["cells"] == "c1"
    assert flat["empty"] == ""
    assert flat["model_id"] == "m1; ; 3"
    assert json.loads(flat["qa"]) == {"clear": 0.9, "nested": [1, 2]}
    assert flat["none"] is None
    assert flat["flag"] is True and flat["n"] == 3 and flat["score"] == 0.25 and flat["name"] == "Munduruku"
    assert type(flat["np"]) is float and flat["np"] == 0.5


# ---------------------------------------------------------------------------------------------- GeoPackage


def test_gpkg_round_trip(tmp_path, layers):
    path = write_gpkg(tmp_path / "demo.gpkg", layers, fields={"detections_2022": ["id", "score"]})
    assert [name for name, _ in pyogrio.list_layers(path)] == list(layers)
    back = read_gpkg_layers(path)
    assert list(back) == list(layers)
    for name, feats in layers.items():
        got = back[name]
        assert len(got) == len(feats), name
        assert [f["properties"].get("id") for f in got] == [f["properties"].get("id") for f in feats]
        for mine, theirs in zip(feats, got):
            a, b = shape(mine["geometry"]).area, shape(theirs["geometry"]).area
            assert b == pytest.approx(a, rel=1e-9)
            assert shape(theirs["geometry"]).geom_type == "MultiPolygon"
            assert theirs["properties"] == flat_properties(mine["properties"])
        info = pyogrio.read_info(path, layer=name)
        assert info["geometry_type"] == "MultiPolygon" and info["crs"] == "EPSG:4326"
    # List properties come back as joined text.
    first = back["detections_latest"][0]["properties"]
    assert first["scene_ids"] == "S2A_0_a; S2B_0_b" and first["cells"] == "c0; c99"
    # The empty period has its layer, with the fields asked for.
    info = pyogrio.read_info(path, layer="detections_2022")
    assert info["features"] == 0 and list(info["fields"]) == ["id", "score"]


def test_gpkg_field_types(tmp_path):
    sq = box(0, 0, 1, 1)
    feats = [
        feat(sq, id="a", n=1, x=1, mixed=1, flag=True, maybe=None, big=2**40),
        feat(sq, id="b", n=None, x=2.5, mixed="two", flag=False, maybe=None, big=3),
    ]
    path = write_gpkg(tmp_path / "t.gpkg", {"t": feats, "no_fields": []})
    info = pyogrio.read_info(path, layer="t")
    types = dict(zip(info["fields"], info["dtypes"]))
    assert types == {
        "id": "object",
        "n": "int64",
        "x": "float64",
        "mixed": "object",
        "flag": "bool",
        "maybe": "object",
        "big": "int64",
    }
    props = [f["properties"] for f in read_gpkg_layers(path)["t"]]
    assert props[0] == {"id": "a", "n": 1, "x": 1.0, "mixed": "1", "flag": True, "maybe": None, "big": 2**40}
    assert props[1] == {"id": "b", "n": None, "x": 2.5, "mixed": "two", "flag": False, "maybe": None, "big": 3}
    empty = pyogrio.read_info(path, layer="no_fields")
    assert empty["features"] == 0 and len(empty["fields"]) == 0 and empty["geometry_type"] == "MultiPolygon"


def test_gpkg_replaces_atomically_and_leaves_no_temporary_file(tmp_path, layers):
    path = tmp_path / "out" / "demo.gpkg"
    write_gpkg(path, layers)
    write_gpkg(path, {"only": layers["change_2023"]})  # over an existing file: a new file, not an update
    assert [name for name, _ in pyogrio.list_layers(path)] == ["only"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.gpkg"]
    bad = {"ok": layers["change_2023"], "bad": [feat(shapely.Point(0, 0), id="p-1")]}
    with pytest.raises(InputDataError):
        write_gpkg(path, bad, source="results/change/demo/2023.geojson")
    assert [name for name, _ in pyogrio.list_layers(path)] == ["only"]  # untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.gpkg"]


@pytest.mark.parametrize(
    "geometry, expect",
    [
        (None, "has no geometry"),
        (mapping(shapely.Point(1, 2)), "is a Point"),
        (mapping(shapely.LineString([(0, 0), (1, 1)])), "is a LineString"),
        ({"type": "Polygon", "coordinates": "nonsense"}, "unreadable geometry"),
    ],
)
def test_bad_geometry_names_file_layer_and_feature(tmp_path, geometry, expect):
    bad = {"type": "Feature", "geometry": geometry, "properties": {"id": "demo-00042"}}
    good = feat(box(0, 0, 1, 1), id="demo-00001")
    src = "results/detections/demo.geojson"
    for call in (
        lambda: write_gpkg(tmp_path / "x.gpkg", {"detections_latest": [good, bad]}, source=src),
        lambda: write_kml(tmp_path / "x.kml", {"detections_latest": [good, bad]}, source=src),
    ):
        with pytest.raises(InputDataError) as err:
            call()
        msg = str(err.value)
        assert src in msg and "detections_latest" in msg and "demo-00042" in msg and expect in msg
    with pytest.raises(InputDataError, match=r"demo-00042.*" + expect):
        detections_table([good, bad], source=src)
    assert not list(tmp_path.iterdir())


def test_no_layers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no layers"):
        write_gpkg(tmp_path / "x.gpkg", {})


# ---------------------------------------------------------------------------------------------------- KML


def _kml_layers(path):
    out = {}
    for name, _ in pyogrio.list_layers(path):
        meta, _, wkb, data = pyogrio.raw.read(str(path), layer=name)
        out[str(name)] = (dict(zip(meta["fields"], data)), shapely.from_wkb(wkb) if wkb is not None else [])
    return out


def _check_kml(path, layers):
    back = _kml_layers(path)
    assert list(back) == list(layers)
    for name, feats in layers.items():
        data, geoms = back[name]
        assert len(geoms) == len(feats), name
        for mine, theirs in zip(feats, geoms):
            assert shapely.force_2d(theirs).area == pytest.approx(shape(mine["geometry"]).area, rel=1e-6)
    data, _ = back["detections_latest"]
    assert list(data["Name"]) == [f["properties"]["id"] for f in layers["detections_latest"]]
    assert list(data["scene_ids"])[0] == "S2A_0_a; S2B_0_b"
    assert list(data["score"]) == pytest.approx([f["properties"]["score"] for f in layers["detections_latest"]])
    # The footprint has no id: its placemark is named after the layer.
    assert list(back["footprint"][0]["Name"]) == ["footprint 1"]
    return path.read_text(encoding="utf-8")


def test_kml_one_folder_per_layer(tmp_path, layers):
    text = _check_kml(write_kml(tmp_path / "demo.kml", layers), layers)
    assert text.count("<Folder") == len(layers)
    assert "<name>demo-00003</name>" in text and "<ExtendedData>" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.kml"]


def test_kml_falls_back_to_the_kml_driver(tmp_path, layers, monkeypatch):
    def broken(tmp, prepared):
        raise pyogrio.errors.DataSourceError("LIBKML not available")

    monkeypatch.setattr(gis, "_write_libkml", broken)
    text = _check_kml(write_kml(tmp_path / "demo.kml", layers), layers)
    assert text.count("<Folder>") == len(layers) and text.count("<Document") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.kml"]


def test_kml_leaves_gdal_config_as_it_was(tmp_path, layers):
    write_kml(tmp_path / "demo.kml", layers)
    assert pyogrio.get_gdal_config_option("LIBKML_NAME_FIELD") is None
    assert pyogrio.get_gdal_config_option("LIBKML_ID_FIELD") is None


# --------------------------------------------------------------------------------------------- the table


def test_centroid_of_a_square():
    # A small square: the equal-area centroid is the middle to well under a millimetre (1e-8 degree).
    lon, lat = centroid_lonlat(box(LON0, LAT0, LON0 + D, LAT0 + D))
    assert lon == pytest.approx(LON0 + D / 2, abs=1e-12)
    assert lat == pytest.approx(LAT0 + D / 2, abs=1e-8)
    # A one-degree square from the equator: in (lon, sin lat) it is a rectangle, so its centroid's sin(lat)
    # is the mean of sin(0) and sin(1 degree), a little south of the middle (more area near the equator).
    lon, lat = centroid_lonlat(box(10.0, 0.0, 11.0, 1.0))
    assert lon == pytest.approx(10.5, abs=1e-12)
    assert lat == pytest.approx(math.degrees(math.asin(math.sin(math.radians(1.0)) / 2)), abs=1e-12)
    assert 0.49997 < lat < 0.49999  # about 2 m south of 0.5 degree
    assert all(math.isnan(v) for v in centroid_lonlat(shapely.Polygon()))


def test_table_columns_and_protected_area_join():
    areas = [
        feat(box(LON0 - 1, LAT0 - 1, LON0 + 0.002, LAT0 + 1), name="Terra Indígena Munduruku", code="BR1"),
        feat(box(LON0 + 0.002, LAT0 - 1, LON0 + 1, LAT0 + 1), name="Sai Cinza", code="BR2"),
        feat(box(LON0 - 1, LAT0 + 0.5, LON0 + 1, LAT0 + 1), name="Far", code="BR3"),
        # Only shares an edge with the outside detection: no area in common, no match.
        feat(box(LON0 - 2, LAT0 - 1, LON0 - 1, LAT0 + 1), name="Edge", code="BR4"),
    ]
    dets = [
        det(0, 0.0, 0.0),  # straddles the line between the first two areas
        det(1, 0.01, 0.0),  # inside Sai Cinza only
        feat(box(LON0 - 1.5, LAT0 - 3, LON0 - 1, LAT0 - 2.5), id="out-1", score=0.9),  # outside every area
    ]
    table = detections_table(dets, areas, name_field="name", id_field="code")
    assert list(table.columns[:10]) == list(gis.TABLE_COLUMNS)
    assert list(table.columns[10:]) == [
        "mean_score",
        "n_parts",
        "scene_ids",
        "dates",
        "date_start",
        "date_end",
        "model_id",
        "config_hash",
        "cells",
        "new_area_ha",
        "qa",
    ]
    assert list(table["id"]) == ["demo-00000", "demo-00001", "out-1"]
    assert list(table["protected_area"]) == ["Terra Indígena Munduruku; Sai Cinza", "Sai Cinza", ""]
    assert list(table["protected_area_id"]) == ["BR1; BR2", "BR2", ""]
    assert table.loc[0, "scene_ids"] == "S2A_0_a; S2B_0_b"
    assert table.loc[0, "lon"] == round(LON0 + D / 2, 6) and table.loc[0, "lat"] == round(LAT0 + D / 2, 6)
    assert table.loc[0, "area_ha"] == 12.5  # the product's own
    out_area = geodesic_area_ha(box(LON0 - 1.5, LAT0 - 3, LON0 - 1, LAT0 - 2.5))
    assert table.loc[2, "area_ha"] == pytest.approx(out_area, rel=1e-12)  # computed where the product has none
    assert table.loc[2, "status"] is None and table.loc[2, "first_detected"] is None
    # Without ids, the id column is empty; without areas, both are.
    assert list(detections_table(dets, areas, name_field="name")["protected_area_id"]) == ["", "", ""]
    bare = detections_table({"type": "FeatureCollection", "features": dets})
    assert list(bare["protected_area"]) == ["", "", ""]


def test_table_of_a_period_product_and_of_nothing(tmp_path):
    period = [feat(box(0, 0, 0.01, 0.01), id="demo-1", score=0.8, area_ha=5.0, scene_ids=["a"])]
    table = detections_table(period)
    assert table.loc[0, ["status", "first_detected", "last_detected"]].isna().all()
    empty = detections_table([])
    assert list(empty.columns) == list(gis.TABLE_COLUMNS) and len(empty) == 0
    path = write_detections_csv(tmp_path / "t.csv", empty)
    assert path.read_text(encoding="utf-8") == ",".join(gis.TABLE_COLUMNS) + "\n"


def test_csv_is_utf8_with_header(tmp_path):
    areas = [feat(box(-1, -1, 1, 1), name='Área Indígena São João; "Norte", 1', id="x")]
    table = detections_table([feat(box(0, 0, 0.01, 0.01), id="demo-1", score=0.8, cells=["c1", "c2"])], areas)
    path = write_detections_csv(tmp_path / "sub" / "demo.csv", table)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*gis.TABLE_COLUMNS, "cells"]
    assert rows[0]["protected_area"] == 'Área Indígena São João; "Norte", 1'
    assert rows[0]["cells"] == "c1; c2" and rows[0]["status"] == "" and rows[0]["protected_area_id"] == ""
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.csv"]


# ------------------------------------------------------------------------------- real Amazon Mining Watch


MINING = "data/amw/outputs/mining_202400_simplified.geojson"
TERRITORIES = "data/amw/boundaries/indigenous_territories_impacts.geojson"
MUNDURUKU_BBOX = (-58.474071, -8.670122, -56.666675, -6.130516)  # of TI Munduruku (BR29801_0)


def _read(path, bbox=None):
    meta, _, wkb, data = pyogrio.raw.read(str(path), bbox=bbox)
    geoms = shapely.from_wkb(wkb)
    columns = dict(zip(meta["fields"], data))
    return [
        {"type": "Feature", "geometry": g, "properties": {k: gis._python(v[i], "") for k, v in columns.items()}}
        for i, g in enumerate(geoms)
    ]


@pytest.mark.shared
def test_real_mining_in_munduruku_territories(shared_dir, tmp_path):
    start = time.monotonic()
    mines = _read(shared_dir / MINING, bbox=MUNDURUKU_BBOX)
    for i, m in enumerate(mines):
        m["properties"]["id"] = f"amw-{i:05d}"
    areas = _read(shared_dir / TERRITORIES, bbox=MUNDURUKU_BBOX)
    assert len(mines) > 100 and len(areas) >= 3

    table = detections_table(mines, areas, name_field="name_field", id_field="id")
    write_detections_csv(tmp_path / "munduruku.csv", table)
    write_gpkg(tmp_path / "munduruku.gpkg", {"mining_2024": mines, "territories": areas})
    write_kml(tmp_path / "munduruku.kml", {"mining_2024": mines, "territories": areas})

    # The CSV: one row per polygon, areas geodesic, names of the territories mined.
    with open(tmp_path / "munduruku.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(mines)
    assert [r["id"] for r in rows] == [m["properties"]["id"] for m in mines]
    for row, mine in list(zip(rows, mines))[:: max(1, len(mines) // 25)]:
        assert float(row["area_ha"]) == pytest.approx(geodesic_area_ha(mine["geometry"]), rel=1e-9)
        lon, lat = float(row["lon"]), float(row["lat"])
        minx, miny, maxx, maxy = mine["geometry"].bounds
        assert minx - 1e-6 <= lon <= maxx + 1e-6 and miny - 1e-6 <= lat <= maxy + 1e-6
    total = sum(float(r["area_ha"]) for r in rows)
    assert total == pytest.approx(sum(geodesic_area_ha(m["geometry"]) for m in mines), rel=1e-9)
    # The pinned file's 190 polygons touching the territory's bounding box cover 6,246.69 ha. (AMW's own
    # "Mined area (ha)" is not the polygon's area: it sums to 670 ha here.)
    assert len(mines) == 190 and total == pytest.approx(6246.69, abs=0.01)
    named = {n for r in rows for n in r["protected_area"].split("; ") if n}
    assert {"Munduruku", "Sai-Cinza"} <= named
    ids = {i for r in rows for i in r["protected_area_id"].split("; ") if i}
    assert "BR29801_0" in ids
    # Every row against a brute-force overlay (no tree): the territories sharing area with the polygon.
    expected = [
        "; ".join(
            a["properties"]["name_field"] for a in areas if shapely.intersection(m["geometry"], a["geometry"]).area > 0
        )
        for m in mines
    ]
    assert [r["protected_area"] for r in rows] == expected
    assert sum("Munduruku" in e.split("; ") for e in expected) == 12
    assert all(r["protected_area_id"].count(";") == r["protected_area"].count(";") for r in rows)

    # The GeoPackage: the same polygons and areas.
    back = read_gpkg_layers(tmp_path / "munduruku.gpkg")
    assert [len(back["mining_2024"]), len(back["territories"])] == [len(mines), len(areas)]
    got = sum(geodesic_area_ha(shape(f["geometry"])) for f in back["mining_2024"])
    assert got == pytest.approx(total, rel=1e-9)
    names = {f["properties"]["name_field"] for f in back["territories"]}
    assert {"Munduruku", "Sai-Cinza"} <= names
    # "locations" is JSON text in the source (GDAL's JSON subtype): it stays text.
    loc = next(f["properties"]["locations"] for f in back["territories"] if f["properties"]["id"] == "BR29801_0")
    assert isinstance(json.loads(loc), list)

    # The KML: one folder per layer, placemarks named by id.
    kml = _kml_layers(tmp_path / "munduruku.kml")
    assert list(kml) == ["mining_2024", "territories"]
    assert len(kml["mining_2024"][1]) == len(mines) and len(kml["territories"][1]) == len(areas)
    assert list(kml["mining_2024"][0]["Name"][:3]) == ["amw-00000", "amw-00001", "amw-00002"]
    assert time.monotonic() - start < 10


def test_field_names_the_geopackage_would_refuse_get_a_suffix(tmp_path):
    props = {"fid": "x", "geom": "g", "name": "a", "Name": "b", "NAME_2": "c"}
    path = write_gpkg(tmp_path / "t.gpkg", {"t": [feat(box(0, 0, 1, 1), **props)]})
    got = read_gpkg_layers(path)["t"][0]["properties"]
    assert got == {"fid_2": "x", "geom_2": "g", "name": "a", "Name_2": "b", "NAME_2_2": "c"}
    kml = _kml_layers(write_kml(tmp_path / "t.kml", {"t": [feat(box(0, 0, 1, 1), **props)]}))
    assert list(kml["t"][0]["fid_2"]) == ["x"]


def test_products_as_the_workflow_writes_them(tmp_path, layers):
    from garimpo.geo.geojson import feature_collection, write_geojson

    src = write_geojson(
        tmp_path / "demo.geojson",
        feature_collection(layers["detections_latest"]),
        metadata={"model_id": "m", "periods": ["2022", "2023"]},
    )
    collection = json.loads(src.read_text())
    back = read_gpkg_layers(write_gpkg(tmp_path / "demo.gpkg", {"detections_latest": collection}, source=str(src)))
    assert [f["properties"]["id"] for f in back["detections_latest"]] == [f"demo-{i:05d}" for i in range(4)]
    table = detections_table(collection, source=str(src))
    assert list(table["status"]) == ["persisting", "new", "persisting", "new"]
    assert list(table["cells"]) == [f"c{i}; c99" for i in range(4)]
