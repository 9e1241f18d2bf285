import json
import time

import numpy as np
import pyogrio.raw
import pytest
import shapely
from PIL import Image
from shapely.geometry import box

from garimpo.detection.polygons import from_geojson
from garimpo.errors import InputDataError
from garimpo.geo.geojson import feature, feature_collection, reproject, write_geojson
from garimpo.outputs.encroachment import area_stats, encroachment_table, plot_encroachment_map

# Squares built in metres on the central meridian of UTM 21S (-57°), where ground = grid / 0.9996.
CRS = "EPSG:32721"
X0, Y0 = 499_000.0, 9_300_000.0
SCALE = 1 / 0.9996**2  # ground hectares per grid hectare


def square(x0, y0, x1, y1):
    return reproject(box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1), CRS, "EPSG:4326")


def areas():
    return [
        {"geometry": square(0, 0, 2000, 2000), "properties": {"name": "Aldeia A", "code": "A1", "country": "BR"}},
        {"geometry": square(3000, 0, 5000, 2000), "properties": {"name": "Aldeia B", "code": "B1", "country": "BR"}},
        {"geometry": square(0, 3000, 2000, 5000), "properties": {"name": "Aldeia C", "code": "C1", "country": "BR"}},
    ]


def detections():
    return [
        square(100, 100, 300, 300),  # 4 ha in A
        square(200, 100, 400, 300),  # 4 ha in A, 2 of them shared with the first
        square(1900, 1000, 3100, 1100),  # 1 ha in A, 1 ha in B, the rest between them
        {"geometry": square(4000, 500, 4500, 1000), "properties": {"score": 0.9}},  # 25 ha in B (a feature)
    ]


def test_table_counts_overlaps_once_and_sorts_by_mined_area():
    table = encroachment_table(detections(), areas(), "name", "code", extra_fields=["country"])
    assert list(table.columns) == [
        "name",
        "id",
        "country",
        "n_detections",
        "mined_area_ha",
        "area_ha",
        "share_mined_pct",
    ]
    assert list(table["name"]) == ["Aldeia B", "Aldeia A"]  # C has no mining
    b, a = table.iloc[0], table.iloc[1]
    assert b["id"] == "B1" and b["country"] == "BR"
    assert b["n_detections"] == 2 and b["mined_area_ha"] == pytest.approx(26 * SCALE, rel=1e-4)
    # A: 4 + 4 - 2 (overlap) + 1 = 7 ha, not 9.
    assert a["n_detections"] == 3 and a["mined_area_ha"] == pytest.approx(7 * SCALE, rel=1e-4)
    assert a["area_ha"] == pytest.approx(400 * SCALE, rel=1e-4)
    assert a["share_mined_pct"] == pytest.approx(7 / 400 * 100, rel=1e-4)
    assert b["share_mined_pct"] == pytest.approx(26 / 400 * 100, rel=1e-4)


def test_table_can_list_areas_without_detections():
    table = encroachment_table(detections(), areas(), "name", include_empty=True)
    assert list(table["name"]) == ["Aldeia B", "Aldeia A", "Aldeia C"]
    c = table.iloc[2]
    assert c["n_detections"] == 0 and c["mined_area_ha"] == 0 and c["share_mined_pct"] == 0
    assert c["area_ha"] == pytest.approx(400 * SCALE, rel=1e-4)
    empty = encroachment_table([], areas(), "name")
    assert len(empty) == 0 and "mined_area_ha" in empty.columns


def test_map_is_written(tmp_path):
    table = encroachment_table(detections(), areas(), "name", include_empty=True)
    region = square(-500, -500, 5500, 5500)
    path = plot_encroachment_map(table, areas(), detections(), region, tmp_path / "map.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 400 and img.shape[1] > 400
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # shading, detections, text: not a blank canvas


CASES = "cases/real-world/vector"


def summary(table):
    return {
        r["name"]: (round(r["area_ha"], 1), round(r["mined_area_ha"], 1), round(r["share_mined_pct"], 1))
        for _, r in table.iterrows()
    }


@pytest.mark.shared
def test_self_intersecting_areas_beside_valid_ones(shared_dir):
    """A bow-tie territory is repaired (not a GEOS TopologyException) and its neighbour is unaffected."""
    base = shared_dir / CASES
    table, areas, _ = area_stats(
        base / "detections_for_areas.geojson", base / "areas_self_intersecting.geojson", "nome"
    )
    assert len(areas) == 2 and all(a["geometry"].is_valid for a in areas)
    assert summary(table) == {"TI Gravata (bow-tie)": (24_464.1, 489.3, 2.0), "TI Quadrada": (48_928.2, 489.2, 1.0)}
    assert list(table["n_detections"]) == [1, 1]


@pytest.mark.shared
def test_areas_in_sirgas2000_utm_with_a_crs_member(shared_dir):
    base = shared_dir / CASES
    table, _, _ = area_stats(base / "detections_for_areas.geojson", base / "area_sirgas2000_utm21s.geojson", "nome")
    assert summary(table) == {"TI Quadrada (UTM)": (48_928.2, 489.2, 1.0)}


@pytest.mark.shared
@pytest.mark.parametrize("name, layer", [("ti_exemplo.shp", None), ("ti_exemplo.gpkg", "ti")])
def test_territory_shapefile_and_geopackage_as_areas(shared_dir, name, layer):
    base = shared_dir / CASES
    table, _, _ = area_stats(base / "detections_for_areas.geojson", base / name, "terrai_nom", layer=layer)
    assert summary(table) == {"TI Exemplo": (48_928.2, 489.3, 1.0)}  # the bow-tie's detection, inside the square


def test_area_files_from_a_geopackage_layer_and_a_wrong_name_field(tmp_path):
    dets = write_geojson(
        tmp_path / "detections.geojson", feature_collection([feature(square(100, 100, 300, 300), {"score": 0.9})])
    )
    utm = box(X0, Y0, X0 + 2000, Y0 + 2000)  # Aldeia A in metres, the GeoPackage in EPSG:32721
    pyogrio.raw.write(
        tmp_path / "areas.gpkg",
        np.array([shapely.to_wkb(utm)], dtype=object),
        [np.array(["Aldeia A"], dtype=object)],
        fields=["nome"],
        geometry_type="Polygon",
        crs=CRS,
        layer="ti",
    )
    table, _, _ = area_stats(dets, tmp_path / "areas.gpkg", "nome", layer="ti")
    assert table["mined_area_ha"].iloc[0] == pytest.approx(4 * SCALE, rel=1e-4)
    assert table["area_ha"].iloc[0] == pytest.approx(400 * SCALE, rel=1e-4)
    with pytest.raises(InputDataError, match=r"no field 'name' for config encroachment.name_field.*\['nome'\]"):
        area_stats(dets, tmp_path / "areas.gpkg", "name")


@pytest.mark.shared
def test_real_territories_and_published_mining(shared_dir):
    base = shared_dir / "data/amw"
    territories = from_geojson(json.loads((base / "boundaries/indigenous_territories_impacts.geojson").read_text()))
    years = {
        y: [
            f["geometry"]
            for f in from_geojson(json.loads((base / f"outputs/mining_{y}00_simplified.geojson").read_text()))
        ]
        for y in ("2023", "2024")
    }
    assert len(territories) == 237
    start = time.perf_counter()
    t24 = encroachment_table(years["2024"], territories, "name_field", "id", include_empty=True)
    assert time.perf_counter() - start < 10
    assert len(t24) == 237
    assert (t24["mined_area_ha"] <= t24["area_ha"]).all()
    assert ((t24["n_detections"] > 0) == (t24["mined_area_ha"] > 0)).all()
    assert t24["mined_area_ha"].is_monotonic_decreasing
    # The territory Amazon Mining Watch reports as most affected (Pemon, Venezuela) tops ours too, and the
    # rankings agree broadly.
    published = {f["properties"]["id"]: f["properties"]["mining_affected_area_ha"] or 0.0 for f in territories}
    assert t24["id"].iloc[0] == max(published, key=published.get) == "VE50061_0"
    ours = t24.set_index("id")["mined_area_ha"]
    theirs = ours.index.map(published)
    assert np.corrcoef(ours.rank(), theirs.to_series().rank())[0, 1] > 0.6
    # Every outline given twice (e.g. two runs merged): each hectare still counts once.
    doubled = encroachment_table(years["2024"] * 2, territories, "name_field", "id", include_empty=True)
    assert np.allclose(doubled["mined_area_ha"], t24["mined_area_ha"], rtol=1e-9, atol=1e-9)
    assert (doubled["n_detections"] == 2 * t24["n_detections"]).all()
    # Yearly outlines are new mining, disjoint from the year before: together they add up.
    t23 = encroachment_table(years["2023"], territories, "name_field", "id", include_empty=True).set_index("id")
    both = encroachment_table(
        years["2023"] + years["2024"], territories, "name_field", "id", include_empty=True
    ).set_index("id")
    y23, y24, combined = t23["mined_area_ha"], ours.reindex(t23.index), both["mined_area_ha"].reindex(t23.index)
    assert (combined <= y23 + y24 + 1e-6).all() and (combined >= np.maximum(y23, y24) - 1e-6).all()
    assert combined.sum() == pytest.approx(y23.sum() + y24.sum(), rel=1e-3)
