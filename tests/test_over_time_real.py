"""garimpo.outputs.over_time.area_over_time on real bytes: Amazon Mining Watch's 2023 and 2024 mining polygons.

Data (../shared, see its README; Earth Genome, Amazon Mining Watch, CC BY 4.0): data/amw/outputs/
mining_202300_simplified.geojson (5,573 features) and mining_202400_simplified.geojson (5,232), the 237
indigenous territories with mining impacts, and the Amazon basin outline. Expected values are computed here
independently: shapely unions and intersections in a different order than the module's (union first, clip
after), and geodesic areas ring by ring with pyproj.Geod on the WGS 84 ellipsoid.

What the data turned out to be (observed when this test was written):
- AMW's polygons are grid-cell blocks (boxes of about 250 x 300 m, alone or merged), not mine outlines; their
  property ``Mined area (ha)`` is the mined area *inside* a block, not the block's area (1,231 features of 2023
  and 509 of 2024 have 0.0). So the blocks' area is several times the property's sum (see the region test).
- The 2023 and 2024 blocks hardly overlap: 2 pairs touch, overlapping on about 0.3 m² in all; the 2024
  polygons minus the 2023 union fall into 5,241 pieces, 1 of them touching a 2023 polygon ("expansion").
- No polygon is invalid (shapely) in either year, nor among the territories or the basin; but 369 of the 407
  MultiPolygons of 2023 have parts touching at a point (valid, self-touching), and there are holes (2 in
  2023, 157 in 2024). No two polygons of one year intersect.
- Runtime: area_over_time clips each block to the basin outline (31,848 vertices) one by one; the region call
  alone takes about 35-45 s on a developer machine, hence ``slow``.
"""

import json

import numpy as np
import pytest
import shapely
from conftest import SHARED
from pyproj import Geod
from shapely.geometry import shape

from garimpo.outputs.over_time import area_over_time

pytestmark = pytest.mark.slow

GEOD = Geod(ellps="WGS84")
AMW = SHARED / "data" / "amw"
YEARS = {"2023": "mining_202300_simplified.geojson", "2024": "mining_202400_simplified.geojson"}
PROPERTY = "Mined area (ha)"
TOP = 5
REL = 1e-3  # 0.1 %
ROUNDING = 0.011  # the table rounds to 2 decimals


def geodesic_ha(geom) -> float:
    """Geodesic area in hectares, ring by ring: |exterior| - sum |holes| per polygon part."""
    total = 0.0
    for part in shapely.get_parts(geom):
        if part.geom_type != "Polygon" or part.is_empty:
            continue  # lines or points left by an intersection have no area
        rings = [part.exterior, *part.interiors]
        areas = [abs(GEOD.polygon_area_perimeter(*np.asarray(r.coords).T)[0]) for r in rings]
        total += areas[0] - sum(areas[1:])
    return total / 10_000


def close(actual, expected):
    """Equal to 0.1 % (or the table's rounding, for small areas)."""
    return actual == pytest.approx(expected, rel=REL, abs=ROUNDING)


def _features(path):
    if not path.is_file():
        pytest.skip(f"real data file not found: {path} (shared data only on the project's CI and dev machines)")
    return json.loads(path.read_text())["features"]


@pytest.fixture(scope="module")
def amw():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (only present in the project's CI and dev machines)")
    raw = {year: _features(AMW / "outputs" / name) for year, name in YEARS.items()}
    geoms = {year: np.array([shape(f["geometry"]) for f in feats], dtype=object) for year, feats in raw.items()}
    territories = [
        {"geometry": shape(f["geometry"]), "properties": f["properties"]}
        for f in _features(AMW / "boundaries" / "indigenous_territories_impacts.geojson")
    ]
    (basin,) = [shape(f["geometry"]) for f in _features(AMW / "boundaries" / "amazon_basin.geojson")]
    union = {year: shapely.union_all(g) for year, g in geoms.items()}
    # Change features of 2024: the 2024 polygons minus the 2023 union, one feature per connected piece;
    # "expansion" where the piece touches a 2023 polygon, else "new_site".
    tree23 = shapely.STRtree(geoms["2023"])
    pieces = [p for p in shapely.get_parts(shapely.difference(union["2024"], union["2023"])) if p.area > 0]
    kinds = ["expansion" if len(tree23.query(p, predicate="intersects")) else "new_site" for p in pieces]
    changes = [{"type": "Feature", "geometry": p, "properties": {"kind": k}} for p, k in zip(pieces, kinds)]
    return {
        "raw": raw,
        "geoms": geoms,
        "union": union,
        "territories": territories,
        "basin": basin,
        "changes": changes,
        "new_union": shapely.union_all(pieces),
    }


def test_top_territories_match_an_independent_geodesic_computation(amw):
    # Detections as the GeoJSON features of the files, untouched; every territory (region=None: no clip).
    table = area_over_time(
        {year: amw["raw"][year] for year in YEARS},
        {"2024": amw["changes"]},
        amw["territories"],
        "name_field",
        "id",
    )
    assert list(table["period"].iloc[:2]) == ["2023", "2024"]
    areas = table.iloc[2:]  # the first two rows are the region's
    assert areas.groupby("id").size().eq(2).all()
    ranked = list(dict.fromkeys(areas["id"]))
    top = ranked[:TOP]
    by_id = {t["properties"]["id"]: t["geometry"] for t in amw["territories"]}
    cumulative_all = shapely.union(amw["union"]["2023"], amw["union"]["2024"])
    new_sites = [c["geometry"] for c in amw["changes"] if c["properties"]["kind"] == "new_site"]

    observed = {}
    for ident in top:
        where = by_id[ident]
        rows = areas[areas["id"] == ident].set_index("period")
        expected = {year: geodesic_ha(shapely.intersection(amw["union"][year], where)) for year in YEARS}
        observed[ident] = (rows["name"].iloc[0], expected["2023"], expected["2024"])
        for year in YEARS:
            assert close(rows.loc[year, "mined_ha"], expected[year]), (ident, year)
        assert close(rows.loc["2024", "cumulative_ha"], geodesic_ha(shapely.intersection(cumulative_all, where)))
        assert close(rows.loc["2024", "new_ha"], geodesic_ha(shapely.intersection(amw["new_union"], where)))
        assert rows.loc["2024", "new_sites"] == sum(shapely.intersection(p, where).area > 0 for p in new_sites)
        assert rows.loc["2023", "cumulative_ha"] == rows.loc["2023", "mined_ha"]
        assert rows.loc["2023", "new_ha"] == 0  # no change features for the first period
        assert rows.loc["2024", "cumulative_ha"] >= rows.loc["2024", "mined_ha"]
        assert rows.loc["2024", "cumulative_ha"] >= rows.loc["2023", "cumulative_ha"]
        assert rows.loc["2024", "new_ha"] <= rows.loc["2024", "mined_ha"] + ROUNDING
    # Observed (name, mined ha 2023, mined ha 2024), most cumulative first:
    # Territorio tradicional Pemon (VE50061_0) 8,345.10 / 8,425.61; Yanomami (BR50901_0) 3,713.92 / 2,547.45;
    # Kayapó (BR23001_0) 3,347.08 / 2,601.14; Leco de Larecaja (BO60012_0) 114.98 / 4,737.54;
    # Sararé (BR42101_0) 0.00 / 4,545.05.
    assert top[:3] == ["VE50061_0", "BR50901_0", "BR23001_0"], observed

    # The ranking: no territory left out of the top can hold more than the fifth. The sum of the geodesic
    # areas of the polygons a territory touches bounds its cumulative area from above (the polygons of a
    # year are disjoint, so the bound is tight where a territory holds them whole); compute the exact
    # value only where the bound does not settle it.
    fifth = areas[areas["id"] == top[-1]].set_index("period").loc["2024", "cumulative_ha"]
    polys = np.concatenate([amw["geoms"][year] for year in YEARS])
    poly_ha = np.array([geodesic_ha(g) for g in polys])
    tree = shapely.STRtree(polys)
    for ident, where in by_id.items():
        if ident in top:
            continue
        idx = tree.query(where, predicate="intersects")
        if poly_ha[idx].sum() > fifth:
            assert geodesic_ha(shapely.intersection(cumulative_all, where)) <= fifth + ROUNDING, ident


def test_region_row_over_the_amazon_basin_against_amw_mined_area_property(amw):
    dets = {year: amw["raw"][year] for year in YEARS}
    basin = area_over_time(dets, {}, [], "name", region=amw["basin"], region_name="Amazon basin")
    everywhere = area_over_time(dets, {}, [], "name")  # region=None: every polygon
    assert list(basin["name"]) == ["Amazon basin"] * 2
    basin, everywhere = basin.set_index("period"), everywhere.set_index("period")
    for year in YEARS:
        all_ha = geodesic_ha(amw["union"][year])
        assert close(everywhere.loc[year, "mined_ha"], all_ha)
        # The polygons of a year are disjoint: their union's area is the sum of their areas.
        assert close(all_ha, sum(geodesic_ha(g) for g in amw["geoms"][year]))
        assert close(basin.loc[year, "mined_ha"], geodesic_ha(shapely.intersection(amw["union"][year], amw["basin"])))
        assert basin.loc[year, "mined_ha"] <= everywhere.loc[year, "mined_ha"]
    # Observed: 2023 172,533.14 ha of polygons, 172,518.85 in the basin; 2024 332,502.48, 316,665.70 in the
    # basin (the rest mostly in Venezuela's and the Guianas' Orinoco / Atlantic drainages).
    assert basin.loc["2023", "mined_ha"] >= 0.99 * everywhere.loc["2023", "mined_ha"]
    assert basin.loc["2024", "mined_ha"] >= 0.90 * everywhere.loc["2024", "mined_ha"]
    assert basin.loc["2024", "cumulative_ha"] == pytest.approx(
        basin.loc["2023", "mined_ha"] + basin.loc["2024", "mined_ha"], abs=2 * ROUNDING
    )  # the two years' polygons overlap on well under a square metre

    # AMW's own `Mined area (ha)` is the mined area inside each grid block, not the block's area, so it
    # cannot match the polygons' area within a few percent. Observed sums: 2023 25,806.41 ha (15.0 % of the
    # 172,533 ha of its polygons), 2024 78,930.74 ha (23.7 % of 332,502 ha); per feature, polygon area /
    # property ranges from 0.73 to about 3,500 (median 10.6 in 2023, 8.3 in 2024). The bound asserted: the
    # property's total is a positive part of the blocks' area, between 5 % and 50 % of it.
    for year in YEARS:
        stated = sum(float(f["properties"][PROPERTY] or 0.0) for f in amw["raw"][year])
        assert 0.05 * everywhere.loc[year, "mined_ha"] < stated < 0.5 * everywhere.loc[year, "mined_ha"], year


def test_self_touching_multipolygons_and_validity(amw):
    # Observed: 0 invalid polygons (shapely.is_valid) in 2023, 2024, the territories and the basin. Should a
    # later copy of the data hold some, they must be repaired (not raise) and keep a positive area.
    invalid = [f for year in YEARS for f, g in zip(amw["raw"][year], amw["geoms"][year]) if not g.is_valid]
    if invalid:
        repaired = area_over_time({"any": invalid}, {}, [], "name")
        assert repaired["mined_ha"].iloc[0] > 0

    # 2023 MultiPolygons whose parts touch at a point (369 of 407 observed): passed alone they count whole.
    touching = [
        f
        for f, g in zip(amw["raw"]["2023"], amw["geoms"]["2023"])
        if g.geom_type == "MultiPolygon"
        and any(a.touches(b) for i, a in enumerate(g.geoms) for b in list(g.geoms)[i + 1 :])
    ]
    assert touching, "the 2023 file was expected to hold MultiPolygons with parts touching at a point"
    table = area_over_time({"2023": touching}, {}, [], "name").set_index("period")
    expected = sum(geodesic_ha(shape(f["geometry"])) for f in touching)
    assert close(table.loc["2023", "mined_ha"], expected)
    assert np.isfinite(table[["mined_ha", "cumulative_ha"]].to_numpy()).all()
