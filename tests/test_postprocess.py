import json
import math
import time

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from garimpo.detection.polygons import (
    area_ha,
    clip_to_cell,
    detection_thresholds,
    dissolve,
    dual_threshold,
    from_geojson,
    merge_cells,
    to_geojson,
)
from garimpo.geo.cells import cell_polygons, region_cells
from garimpo.geo.geojson import reproject

SIZE = 100_000.0
WEST, EAST = "W0054S0006", "W0053S0006"  # side by side (south-west Pará)
NORTH_WEST, NORTH_EAST = "W0054S0005", "W0053S0005"
LOW, HIGH = 0.5, 0.8


def feat(geom, score, scene="S2A_T21MXN_20240715", date="2024-07-15", model="segformer-b0", cfg="abc123"):
    return {
        "geometry": geom,
        "properties": {"score": score, "scene_ids": [scene], "dates": [date], "model_id": model, "config_hash": cfg},
    }


def corner():
    """Lon/lat of the corner shared by the four test cells (cells are lon/lat rectangles)."""
    return cell_polygons(WEST, SIZE)[1].bounds[2], cell_polygons(WEST, SIZE)[1].bounds[3]


def test_clip_keeps_only_the_part_inside_the_cell():
    _, west = cell_polygons(WEST, SIZE)
    lon, lat = corner()
    mine = box(lon - 0.01, lat - 0.05, lon + 0.03, lat - 0.04)  # 1/4 in the west cell, 3/4 east
    inside = box(lon - 0.5, lat - 0.5, lon - 0.4, lat - 0.4)
    outside = box(lon + 0.4, lat - 0.5, lon + 0.5, lat - 0.4)
    out = clip_to_cell([feat(mine, 0.9), feat(inside, 0.7), feat(outside, 0.95)], west, WEST)
    assert [f["properties"]["score"] for f in out] == [0.9, 0.7]
    assert out[0]["geometry"].bounds == pytest.approx((lon - 0.01, lat - 0.05, lon, lat - 0.04))
    assert out[0]["geometry"].area == pytest.approx(mine.area / 4, rel=1e-9)
    assert out[1]["geometry"].equals(inside) and out[1]["properties"]["cell"] == WEST


def test_mine_straddling_a_cell_edge_becomes_one_polygon_with_its_own_area():
    lon, lat = corner()
    mine = box(lon - 0.004, lat - 0.30, lon + 0.006, lat - 0.293)  # ~1.1 km x 0.8 km across the W/E edge
    # Each cell's scan saw it whole (margin), on its own pixel grid: the east copy has extra vertices.
    per_cell = {
        WEST: [feat(mine, 0.9, scene="S2A_west")],
        EAST: [feat(shapely.segmentize(mine, 0.0007), 0.85, scene="S2B_east", date="2024-08-01")],
    }
    out = merge_cells(per_cell, SIZE, LOW, HIGH)
    assert len(out) == 1
    f = out[0]
    assert f["geometry"].geom_type == "Polygon" and not f["geometry"].interiors
    assert f["properties"]["area_ha"] == pytest.approx(area_ha(mine), rel=1e-6)
    assert f["geometry"].symmetric_difference(mine).area < 1e-6 * mine.area  # snapped to a 1e-9° grid
    p = f["properties"]
    assert p["id"] == "det-00001" and p["score"] == 0.9 and p["n_parts"] == 1
    assert p["cells"] == sorted([WEST, EAST])
    assert p["scene_ids"] == ["S2A_west", "S2B_east"]
    assert (p["date_start"], p["date_end"]) == ("2024-07-15", "2024-08-01")
    assert p["model_id"] == "segformer-b0" and p["config_hash"] == "abc123"


def test_each_cell_contributes_only_its_own_view_of_a_straddling_mine():
    lon, lat = corner()
    west_view = box(lon - 0.004, lat - 0.300, lon + 0.006, lat - 0.293)
    east_view = box(lon - 0.003, lat - 0.301, lon + 0.006, lat - 0.293)  # resampled differently: 0.001° taller
    out = merge_cells({WEST: [feat(west_view, 0.9)], EAST: [feat(east_view, 0.9)]}, SIZE, LOW, HIGH)
    expected = shapely.union_all(
        [box(lon - 0.004, lat - 0.300, lon, lat - 0.293), box(lon, lat - 0.301, lon + 0.006, lat - 0.293)]
    )
    assert len(out) == 1 and out[0]["geometry"].geom_type == "Polygon"
    assert out[0]["properties"]["area_ha"] == pytest.approx(area_ha(expected), rel=1e-6)
    # Not the union of both views (that would add the east view's strip west of the edge).
    assert area_ha(shapely.union_all([west_view, east_view])) > 1.005 * area_ha(expected)


def test_mine_on_a_four_cell_corner_becomes_one_polygon():
    lon, lat = corner()
    mine = box(lon - 0.005, lat - 0.003, lon + 0.004, lat + 0.006)
    per_cell = {c: [feat(mine, 0.92)] for c in (WEST, EAST, NORTH_WEST, NORTH_EAST)}
    out = merge_cells(per_cell, SIZE, LOW, HIGH)
    assert len(out) == 1 and out[0]["geometry"].geom_type == "Polygon"
    assert out[0]["properties"]["area_ha"] == pytest.approx(area_ha(mine), rel=1e-6)
    assert out[0]["properties"]["cells"] == sorted([WEST, EAST, NORTH_WEST, NORTH_EAST])
    assert out[0]["properties"]["n_parts"] == 1
    # Without clipping the four copies would count four times: the merge must not.
    assert out[0]["properties"]["area_ha"] < 1.01 * area_ha(mine)


def test_dual_threshold_isolated_needs_high_adjacent_parts_need_low():
    lon, lat = corner()
    lone_weak = box(lon - 0.6, lat - 0.6, lon - 0.596, lat - 0.596)
    lone_strong = box(lon - 0.5, lat - 0.6, lon - 0.496, lat - 0.596)
    pair = [box(lon - 0.4, lat - 0.6, lon - 0.396, lat - 0.596), box(lon - 0.396, lat - 0.6, lon - 0.392, lat - 0.596)]
    below_low = box(lon - 0.3, lat - 0.6, lon - 0.296, lat - 0.596)
    straddling_weak = box(lon - 0.002, lat - 0.6, lon + 0.002, lat - 0.596)  # one chip seen by both cells
    per_cell = {
        WEST: [
            feat(lone_weak, 0.7),
            feat(lone_strong, 0.85),
            feat(pair[0], 0.6),
            feat(pair[1], 0.55),
            feat(below_low, 0.45),
            feat(straddling_weak, 0.7),
        ],
        EAST: [feat(straddling_weak, 0.75)],
    }
    out = merge_cells(per_cell, SIZE, LOW, HIGH)
    by_score = {f["properties"]["score"]: f for f in out}
    assert sorted(by_score) == [0.6, 0.85]  # weak lone chip, chip below low and weak straddler dropped
    assert by_score[0.6]["properties"]["n_parts"] == 2
    assert by_score[0.6]["properties"]["mean_score"] == pytest.approx(0.575, abs=1e-4)  # equal areas
    assert by_score[0.6]["geometry"].symmetric_difference(shapely.union_all(pair)).area < 1e-6 * 2 * pair[0].area
    assert [f["properties"]["id"] for f in out] == ["det-00001", "det-00002"]
    assert out[0]["properties"]["score"] == 0.85  # ids in order of decreasing score
    # The same rule applied directly to dissolved groups.
    groups = [
        {"geometry": lone_weak, "properties": {"score": 0.79, "n_parts": 1}},
        {"geometry": lone_strong, "properties": {"score": 0.8, "n_parts": 1}},
        {"geometry": pair[0], "properties": {"score": 0.51, "n_parts": 2}},
        {"geometry": pair[1], "properties": {"score": 0.49, "n_parts": 3}},
    ]
    assert [f["properties"]["score"] for f in dual_threshold(groups, LOW, HIGH)] == [0.8, 0.51]
    # Hysteresis: a group of weak chips with no seed >= HIGH goes too, whatever its size.
    assert [f["properties"]["score"] for f in dual_threshold(groups, LOW, HIGH, require_seed=True)] == [0.8]
    seeded = merge_cells(per_cell, SIZE, LOW, HIGH, require_seed=True)
    assert sorted(f["properties"]["score"] for f in seeded) == [0.85]
    with pytest.raises(ValueError):
        dual_threshold(groups, 0.9, 0.5)


def test_dissolve_aggregates_properties():
    a, b, c = box(0, 0, 0.01, 0.01), box(0.01, 0, 0.03, 0.01), box(1, 1, 1.01, 1.01)
    feats = [
        feat(a, 0.6, scene="s1", date="2024-06-01"),
        feat(b, 0.9, scene="s2", date="2024-09-30", model="other"),
        feat(c, 0.7, scene="s3"),
    ]
    out = dissolve(feats)
    assert len(out) == 2
    p = out[0]["properties"]
    assert out[0]["geometry"].area == pytest.approx(0.0003)
    assert p["score"] == 0.9 and p["n_parts"] == 2 and p["mean_score"] == pytest.approx((0.6 + 2 * 0.9) / 3, abs=1e-4)
    assert p["scene_ids"] == ["s1", "s2"] and (p["date_start"], p["date_end"]) == ("2024-06-01", "2024-09-30")
    assert p["model_id"] == ["other", "segformer-b0"] and p["config_hash"] == "abc123"
    assert out[1]["properties"]["n_parts"] == 1 and out[1]["properties"]["score"] == 0.7
    assert dissolve([]) == []


def test_dissolve_with_a_gap_links_nearby_parts_without_filling_the_gap():
    # Two 100 m squares 30 m apart, built in UTM 21S (metres) near the Tapajós.
    crs = "EPSG:32721"
    a = reproject(box(600_000, 9_300_000, 600_100, 9_300_100), crs, "EPSG:4326")
    b = reproject(box(600_130, 9_300_000, 600_230, 9_300_100), crs, "EPSG:4326")
    feats = [feat(a, 0.6), feat(b, 0.7)]
    assert len(dissolve(feats, gap_m=0)) == 2
    assert len(dissolve(feats, gap_m=20)) == 2
    (joined,) = dissolve(feats, gap_m=40)
    assert joined["properties"]["n_parts"] == 2
    assert area_ha(joined["geometry"]) == pytest.approx(area_ha(a) + area_ha(b), rel=1e-6)


def test_dissolve_thousands_of_chips_quickly():
    # 60 x 60 lattice of 0.004° chips: every other row of 2x2 clusters, the rest isolated chips.
    step = 0.004
    geoms, expected_groups = [], 0
    for i in range(0, 120, 3):  # cluster rows: 2x2 touching chips, then a gap column
        for j in range(0, 120, 3):
            if (i // 3) % 2 == 0:
                geoms += [
                    box(j * step + dj * step, -i * step - di * step, (j + dj + 1) * step, (-i - di + 1) * step)
                    for di in (0, 1)
                    for dj in (0, 1)
                ]
            else:
                geoms.append(box(j * step, -i * step, (j + 1) * step, (-i + 1) * step))
            expected_groups += 1
    feats = [feat(g, 0.6) for g in geoms]
    start = time.perf_counter()
    out = dissolve(feats)
    elapsed = time.perf_counter() - start
    assert len(feats) == 20 * 40 * 4 + 20 * 40 and len(out) == expected_groups == 1600
    counts = np.bincount([f["properties"]["n_parts"] for f in out])
    assert counts[1] == 800 and counts[4] == 800
    assert elapsed < 10.0, f"dissolving {len(feats)} chips took {elapsed:.1f} s"


def test_area_against_the_ellipsoidal_quadrangle_and_a_utm_square():
    # Authalic formula for a lat/lon quadrangle on WGS 84: A = b² Δλ / 2 [q(φ2) - q(φ1)].
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    e, b = math.sqrt(e2), a * (1 - f)

    def q(phi):
        s = math.sin(phi)
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    reference_ha = b * b / 2 * math.radians(1) * (q(math.radians(1)) - q(0)) / 1e4
    assert reference_ha == pytest.approx(1_230_846.4, abs=0.1)
    # Densified so that the top edge follows the parallel, not the geodesic between the corners.
    assert area_ha(shapely.segmentize(box(0, 0, 1, 1), 0.01)) == pytest.approx(reference_ha, rel=1e-6)
    assert area_ha(box(0, 0, 1, 1)) == pytest.approx(reference_ha, rel=1e-3)
    # A 1 km square on the central meridian of UTM 21S: grid lengths are 0.9996 x ground lengths.
    square = reproject(box(500_000, 9_300_000, 501_000, 9_301_000), "EPSG:32721", "EPSG:4326")
    assert area_ha(square) == pytest.approx(100 / 0.9996**2, rel=1e-5)


def test_geojson_round_trip_keeps_properties():
    feats = [feat(box(0, 0, 1, 1), 0.7)]
    back = from_geojson(to_geojson(feats))
    assert back[0]["geometry"].equals(feats[0]["geometry"]) and back[0]["properties"] == feats[0]["properties"]


def test_merge_with_no_detections_is_empty():
    assert merge_cells({WEST: [], EAST: [feat(box(-55.5, -4.5, -55.49, -4.49), 0.3)]}, SIZE, LOW, HIGH) == []


@pytest.mark.shared
def test_published_outlines_fanned_out_to_cells_merge_back_without_double_counting(shared_dir):
    """Amazon Mining Watch's 2024 outlines, handed to every 100 km cell they touch (with its ~2 km margin)."""
    path = shared_dir / "data/amw/outputs/mining_202400_simplified.geojson"
    outlines = from_geojson(json.loads(path.read_text()))
    for f in outlines:
        f["properties"].update(score=0.9, scene_ids=["amw"], dates=["2024"], model_id="amw", config_hash="-")
    geoms = np.array([f["geometry"] for f in outlines], dtype=object)
    ids = region_cells(box(*shapely.total_bounds(geoms)), SIZE)
    cells = np.array([box(*cell_polygons(cid, SIZE)[1].buffer(0.02, join_style="mitre").bounds) for cid in ids])
    cell_idx, geom_idx = shapely.STRtree(geoms).query(cells, predicate="intersects")
    per_cell: dict = {}
    for c, g in zip(cell_idx, geom_idx):
        per_cell.setdefault(ids[c], []).append(outlines[g])
    n_seen = sum(len(v) for v in per_cell.values())
    assert n_seen > len(outlines) + 500  # many outlines are seen by two or more cells
    start = time.perf_counter()
    merged = merge_cells(per_cell, SIZE, LOW, HIGH)
    assert time.perf_counter() - start < 30
    assert len(merged) == len(dissolve(outlines))
    total = sum(f["properties"]["area_ha"] for f in merged)
    assert total == pytest.approx(area_ha(shapely.union_all(geoms)), rel=1e-6)


def test_detection_thresholds_derive_a_safe_pair_and_name_both_keys_of_a_bad_one():
    """merge_detections' (low, high): the derived isolated threshold is never below the threshold, and a
    user-set pair out of order names detection.threshold and detection.isolated_threshold."""
    assert detection_thresholds(None, None, 0.6) == (0.6, 0.8)  # the checkpoint's threshold, halfway to 1
    assert detection_thresholds(0.99, None, 0.6) == (0.99, 0.995)  # set near 1: still in order
    assert detection_thresholds(1.0, None) == (1.0, 1.0)
    assert detection_thresholds(0.5, 0.9, 0.6) == (0.5, 0.9)
    with pytest.raises(ValueError, match=r"detection.isolated_threshold 0.6 is below detection.threshold 0.9"):
        detection_thresholds(0.9, 0.6, 0.5)
    # threshold null: the checkpoint's threshold is in force, and the message says so.
    with pytest.raises(
        ValueError,
        match=r"isolated_threshold 0.6 is below the threshold in force, 0.7: "
        r"detection.threshold is null",
    ):
        detection_thresholds(None, 0.6, 0.7)
    with pytest.raises(ValueError, match=r"detection.isolated_threshold 1.2 is above 1"):
        detection_thresholds(0.5, 1.2)
    for bad in (-1, 0, 1.5):
        with pytest.raises(ValueError, match=r"^detection.threshold is .*not a score in \(0, 1\]"):
            detection_thresholds(bad, None, 0.5)
