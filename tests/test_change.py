"""Mining over time: periods, the unit-by-unit state logic (new / persisting / unknown across clouds) and the
change products of ``garimpo.change.track`` on hand-made scans and detections."""

from datetime import date

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import box

from garimpo.change.periods import earlier, parse_periods
from garimpo.change.state import (
    NEW,
    NONE,
    PERSISTING,
    UNKNOWN,
    clear_chips,
    first_last,
    mined_units,
    observed_for,
    observed_units,
    unit_states,
)
from garimpo.change.track import track_region
from garimpo.detection.chip_scores import Coverage
from garimpo.errors import InputDataError
from garimpo.geo.cells import cell_polygons, cell_processing_grid, region_cells
from garimpo.geo.geojson import geodesic_area_ha, reproject

# ----------------------------------------------------------------------------------------------- periods


def test_period_names_imply_their_dates():
    years = parse_periods(
        ["2023", 2024, "2025Q1", "2025Q2", "2025-07", {"name": "dry", "start": "2025-08-01", "end": "2025-10-31"}]
    )
    assert [p.name for p in years] == ["2023", "2024", "2025Q1", "2025Q2", "2025-07", "dry"]
    assert years[0].dates == ("2023-01-01", "2023-12-31")
    assert years[2].start == date(2025, 1, 1) and years[2].end == date(2025, 3, 31)
    assert years[3].end == date(2025, 6, 30)
    assert years[4].end == date(2025, 7, 31)
    assert parse_periods(["2024Q1"])[0].end == date(2024, 3, 31)
    assert parse_periods(["2024-02"])[0].end == date(2024, 2, 29)  # leap year
    assert [p.name for p in earlier(years, "2025Q1")] == ["2024", "2023"]


@pytest.mark.parametrize(
    "spec, words",
    [
        (["2024", "2023"], "periods[1]: 2023 (2023-01-01..2023-12-31) comes before 2024"),
        (["2024", {"name": "mid", "start": "2024-06-01", "end": "2025-01-31"}], "overlaps 2024"),
        (["2024", "2024"], "used twice"),
        (["2024", "2025Q5"], "periods[1]: '2025Q5' does not name its dates"),
        (["2024-13"], "does not name its dates"),
        ([{"name": "a b", "start": "2024-01-01", "end": "2024-02-01"}], "file paths"),
        ([{"name": "x", "start": "2024-02-30", "end": "2024-03-01"}], "periods[0].start: '2024-02-30' is not a date"),
        ([{"name": "x", "start": "2024-03-01", "end": "2024-02-01"}], "after it ends"),
        ([{"name": "x", "start": "2024-03-01"}], "needs name, start and end"),
        (["2014"], "before Sentinel-2A's launch"),
        ([], "no period"),
    ],
)
def test_bad_periods_are_named(spec, words):
    with pytest.raises(InputDataError, match="config periods") as err:
        parse_periods(spec)
    assert words in str(err.value)


def test_config_order_error_reports_periods():
    from garimpo.config import config_order_error

    assert config_order_error({"periods": ["2024", "2023"]}).startswith("config periods[1]")
    assert config_order_error({"periods": ["2023", "2024"]}) is None


# ----------------------------------------------------------------------------------------------- state


def _states(det_rows, obs_rows):
    """One unit over periods: det/obs as strings of 0/1 per period."""
    det = np.array([[c == "1"] for c in det_rows])
    obs = np.array([[c == "1"] for c in obs_rows])
    status, compared = unit_states(det, obs)
    return status[:, 0].tolist(), compared[:, 0].tolist()


def test_first_detection_is_unknown_then_persisting():
    assert _states("11", "11") == ([UNKNOWN, PERSISTING], [-1, 0])


def test_detection_after_a_clear_look_without_mining_is_new():
    assert _states("01", "11") == ([NONE, NEW], [-1, 0])


def test_a_cloudy_period_is_skipped_when_looking_back():
    # mined in 0, under cloud in 1 (neither detected nor observed), detected in 2: persisting, compared with 0
    assert _states("101", "101") == ([UNKNOWN, NONE, PERSISTING], [-1, -1, 0])
    # clear forest in 0, cloud in 1, mine in 2: new since the last clear look, period 0
    assert _states("001", "101") == ([NONE, NONE, NEW], [-1, -1, 0])


def test_never_seen_clearly_before_is_unknown_not_new():
    assert _states("001", "001") == ([NONE, NONE, UNKNOWN], [-1, -1, -1])
    assert _states("0001", "0101") == ([NONE, NONE, NONE, NEW], [-1, -1, -1, 1])


def test_a_mine_seen_gone_then_back_is_new_again():
    # detected in 0, clearly seen without mining in 1 (revegetated or a missed look), back in 2
    assert _states("101", "111") == ([UNKNOWN, NONE, NEW], [-1, -1, 1])


def test_detected_counts_as_observed():
    # detected in 1 without a clear-enough chip of its own: still the look the next period compares with
    assert _states("0110", "1000") == ([NONE, NEW, PERSISTING, NONE], [-1, 0, 1, -1])


def test_unit_states_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        unit_states(np.zeros((2, 3), bool), np.zeros((2, 4), bool))


def test_first_last():
    det = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 0]], bool)  # [P=3, units=3]
    first, last = first_last(det)
    assert first.tolist() == [1, 0, -1] and last.tolist() == [1, 2, -1]


def test_observed_units_need_a_chip_clear_in_every_unit():
    unit, chip, stride = 4, 8, 4  # chips of 2 x 2 units at every unit
    clear = np.full((4, 4), 16, np.uint16)  # every unit fully clear
    clear[0, 0] = 4  # one unit a quarter clear: the chip at (0, 0) is 13/16 clear but hides that unit
    seen = observed_units(clear, unit, chip, stride, 0.8)
    # (0, 0) lies only in the chip at (0, 0): not seen; its neighbours lie in other, clear chips
    assert not seen[0, 0] and seen.sum() == 15
    clear[0, 0] = 13  # 13/16 = 0.81 of the unit clear: enough
    assert observed_units(clear, unit, chip, stride, 0.8).all()
    clear[:, 2:] = 0  # the right half under cloud
    seen = observed_units(clear, unit, chip, stride, 0.8)
    assert seen[:, :2].all() and not seen[:, 2:].any()
    # chips of the bottom row reach past the composite: their outside part is not clear
    assert not observed_units(np.full((3, 3), 16, np.uint16), unit, chip, 8, 0.8)[2].any()


def test_a_clear_chip_beside_a_hidden_mine_does_not_see_it():
    """The 2024 detection's chips cover the mine; in 2023 the mine's unit was under cloud while a chip beside it
    was clear. Seen by any clear chip the unit would be "observed without mining" and new in 2024; seen as the
    2024 chips see it, it was not observed in 2023, so 2022 (mined) decides: persisting."""
    unit, chip, k = 4, 8, 2
    positive = np.zeros((4, 4), bool)
    positive[1, 1] = True  # the 2024 chip at units (1..2, 1..2)
    clear = np.full((4, 4), 16, np.uint16)
    clear[2, 2] = 0  # the mine's unit under cloud in 2023
    chips_2023 = clear_chips(clear, unit, chip, 4, 0.8)
    fallback = observed_units(clear, unit, chip, 4, 0.8)
    assert fallback[1, 1]  # a clear chip (corner 0, 0) covers unit (1, 1)
    seen = observed_for(positive, chips_2023, fallback, k)
    assert not seen[1:3, 1:3].any() and seen[0, 0] == fallback[0, 0]
    detected = np.zeros((3, 4, 4), bool)
    detected[0, 1:3, 1:3] = detected[2, 1:3, 1:3] = True  # mined in 2022 and 2024, hidden in 2023
    pair = np.zeros((3, 3, 4, 4), bool)
    pair[2, 1], pair[2, 0], pair[1, 0] = seen, True, True
    status, compared = unit_states(detected, pair)
    assert (status[2, 1:3, 1:3] == PERSISTING).all() and (compared[2, 1:3, 1:3] == 0).all()
    naive, _ = unit_states(detected, np.stack([np.ones((4, 4), bool), fallback, np.ones((4, 4), bool)]))
    assert naive[2, 1, 1] == NEW  # what reading 2023 with any clear chip would have said


def test_observed_units_refuses_a_lattice_off_the_units():
    with pytest.raises(ValueError, match="multiples"):
        observed_units(np.zeros((2, 2), np.uint16), 4, 10, 4, 0.5)


# ----------------------------------------------------------------------------------------------- tracking

UNIT, CHIP, STRIDE, SIZE_M = 16, 64, 16, 10_000.0


@pytest.fixture(scope="module")
def cell_grid():
    region = box(-56.36, -6.06, -56.30, -6.00)
    cell = region_cells(region, SIZE_M)[0]
    grid = cell_processing_grid(cell, SIZE_M, 10.0, 640.0)
    return cell, grid, region.intersection(cell_polygons(cell, SIZE_M)[1])


def _coverage(grid, clear_units=None, cloud=None):
    uh, uw = -(-grid.height // UNIT), -(-grid.width // UNIT)
    clear = np.full((uh, uw), UNIT * UNIT, np.uint16) if clear_units is None else clear_units
    if cloud is not None:
        clear = clear.copy()
        clear[cloud] = 0
    return Coverage(clear, UNIT, CHIP, STRIDE, grid.height, grid.width, grid.transform, grid.crs, {})


def _square(grid, row, col, rows=4, cols=4):
    """A detection made of whole units: rows x cols units from unit (row, col), in lon/lat."""
    t = grid.transform @ Affine.scale(UNIT)
    x0, y0 = t @ (col, row)
    x1, y1 = t @ (col + cols, row + rows)
    return reproject(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), grid.crs, "EPSG:4326")


def _det(geom, ident, score=0.9):
    return {"geometry": geom, "properties": {"id": ident, "score": score}}


def _track(cell_grid, detections, coverages, include_unknown=False):
    cell, grid, region = cell_grid
    names = list(detections)
    return track_region(
        names,
        detections,
        lambda c, p: coverages[p],
        [cell],
        SIZE_M,
        region,
        0.8,
        include_unknown,
    )


def test_track_new_persisting_and_the_cloudy_year(cell_grid):
    _, grid, region = cell_grid
    old = _square(grid, 20, 20)  # mined from the first period on
    grown = _square(grid, 20, 20, 4, 8)  # the same mine, twice as long by 2024
    fresh = _square(grid, 40, 30)  # a new mine in 2024
    hidden = _square(grid, 30, 50)  # mined since 2021, under cloud in 2023
    clouds = np.zeros((-(-grid.height // UNIT), -(-grid.width // UNIT)), bool)
    clouds[26:38, 46:58] = True  # over `hidden` and around it in 2023
    detections = {
        "2021": [_det(old, "a"), _det(hidden, "h")],
        "2022": [_det(old, "a"), _det(hidden, "h")],
        "2023": [_det(old, "a")],
        "2024": [_det(grown, "a"), _det(fresh, "f"), _det(hidden, "h")],
    }
    coverages = {p: _coverage(grid) for p in detections}
    coverages["2023"] = _coverage(grid, cloud=clouds)
    tracked = _track(cell_grid, detections, coverages)
    status = {f["properties"]["id"]: f["properties"] for f in tracked.latest}
    assert status["a"]["status"] == "persisting" and status["a"]["first_detected"] == "2021"
    assert status["h"]["status"] == "persisting" and status["h"]["first_detected"] == "2021"
    assert status["f"]["status"] == "new" and status["f"]["first_detected"] == "2024"
    assert all(s["last_detected"] == "2024" for s in status.values())
    assert tracked.changes["2022"] == [] and tracked.changes["2023"] == []
    kinds = {f["properties"]["detection"]: f for f in tracked.changes["2024"]}
    assert set(kinds) == {"a", "f"}  # the cloud-hidden mine is not new
    assert kinds["f"]["properties"]["kind"] == "new_site"
    assert kinds["a"]["properties"]["kind"] == "expansion"
    assert kinds["a"]["properties"]["compared_with"] == "2023"
    # the expansion is the grown part only: 4 x 4 units of 160 m, hand-computed on the ellipsoid
    expected = geodesic_area_ha(_square(grid, 20, 24))
    assert kinds["a"]["properties"]["area_ha"] == pytest.approx(expected, rel=1e-4)
    assert kinds["a"]["properties"]["area_ha"] == pytest.approx(40.96, rel=0.005)  # 640 m x 640 m (UTM scale aside)
    assert kinds["f"]["properties"]["area_ha"] == pytest.approx(geodesic_area_ha(fresh), rel=1e-4)
    assert status["a"]["new_area_ha"] == kinds["a"]["properties"]["area_ha"]
    assert tracked.summary["2024"]["n_new_sites"] == 1 and tracked.summary["2024"]["n_expansions"] == 1
    assert tracked.summary["2023"]["observed_fraction"] < tracked.summary["2022"]["observed_fraction"]
    # the footprint splits the ground by when it was first and last detected
    foot = {(f["properties"]["first_detected"], f["properties"]["last_detected"]): f for f in tracked.footprint}
    assert set(foot) == {("2021", "2024"), ("2024", "2024")}
    total = sum(f["properties"]["area_ha"] for f in tracked.footprint)
    assert total == pytest.approx(geodesic_area_ha(shapely.union_all([grown, fresh, hidden])), rel=1e-4)


def test_track_first_period_and_unseen_history_are_unknown(cell_grid):
    _, grid, _ = cell_grid
    mine = _square(grid, 20, 20)
    all_cloud = np.ones((-(-grid.height // UNIT), -(-grid.width // UNIT)), bool)
    detections = {"2021": [], "2022": [_det(mine, "m")]}
    coverages = {"2021": _coverage(grid, cloud=all_cloud), "2022": _coverage(grid)}
    tracked = _track(cell_grid, detections, coverages)
    assert tracked.latest[0]["properties"]["status"] == "unknown"
    assert tracked.changes["2022"] == []
    assert tracked.summary["2021"]["observed_fraction"] == 0.0
    shown = _track(cell_grid, detections, coverages, include_unknown=True)
    assert [f["properties"]["kind"] for f in shown.changes["2022"]] == ["unknown"]
    assert shown.summary["2022"]["new_ha"] == 0.0


def test_track_a_partly_clouded_earlier_look(cell_grid):
    """Half the new mine's ground was seen clear the year before, half was under cloud: only the seen half
    is new mining; the detection is new (it has no persisting ground)."""
    _, grid, _ = cell_grid
    mine = _square(grid, 20, 20, 4, 8)
    clouds = np.zeros((-(-grid.height // UNIT), -(-grid.width // UNIT)), bool)
    clouds[:, 24:] = True  # units from column 24 on are under cloud
    tracked = _track(
        cell_grid,
        {"2021": [], "2022": [_det(mine, "m")]},
        {"2021": _coverage(grid, cloud=clouds), "2022": _coverage(grid)},
    )
    (change,) = tracked.changes["2022"]
    assert change["properties"]["kind"] == "new_site"
    assert tracked.latest[0]["properties"]["status"] == "new"
    # seen: columns 20..23 lie in fully clear chips (corners 17..20); a chip reaching column 24 is at most
    # 3/4 clear (< 0.8), so 24.. were not seen
    assert change["properties"]["area_ha"] == pytest.approx(geodesic_area_ha(_square(grid, 20, 20)), rel=1e-4)


def test_track_refuses_scans_on_different_grids(cell_grid):
    _, grid, _ = cell_grid
    other = _coverage(grid)
    moved = Coverage(
        other.clear_px,
        UNIT,
        CHIP,
        STRIDE,
        grid.height,
        grid.width,
        grid.transform @ Affine.translation(1, 0),
        grid.crs,
        {},
    )
    with pytest.raises(ValueError, match="stale"):
        _track(cell_grid, {"2021": [], "2022": []}, {"2021": other, "2022": moved})


def test_weak_earlier_mining_makes_ground_persisting_not_new():
    # period 0: a chip at the threshold but no reported detection (no seed); period 1: a detection
    det = np.array([[False], [True]])
    obs = np.array([[True], [True]])
    mined = np.array([[True], [True]])
    status, compared = unit_states(det, obs, mined)
    assert status[:, 0].tolist() == [NONE, PERSISTING] and compared[:, 0].tolist() == [-1, 0]
    status, _ = unit_states(det, obs)  # read with the reported detections only, it would have been new
    assert status[:, 0].tolist() == [NONE, NEW]


def test_mined_units_are_the_chips_at_the_threshold():
    unit, chip = 4, 8  # chips of 2 x 2 units
    rows, cols = np.array([0, 4, 8]), np.array([0, 8, 8])
    mined = mined_units(rows, cols, np.array([0.9, 0.5, 0.7]), 0.7, unit, chip, (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True  # the chip at (0, 0), score 0.9
    expected[2:4, 2:4] = True  # the chip at (8, 8), score 0.7 (at the threshold counts)
    assert (mined == expected).all()


def _scored(cov, rows, cols, scores):
    """``cov`` with the chips of a scan: top-left pixels and scores."""
    from dataclasses import replace

    return replace(cov, rows=np.asarray(rows), cols=np.asarray(cols), scores=np.asarray(scores, np.float32))


@pytest.mark.parametrize("threshold, status", [(0.5, "persisting"), (0.7, "new")])
def test_track_reads_history_with_the_scan_threshold(cell_grid, threshold, status):
    """A mine whose 2021 chips (0.6, 0.55) reached the threshold without being reported (no seed) is persisting
    in 2022 and first seen in 2021; at a threshold above them, the 2021 look had no mining: new."""
    cell, grid, region = cell_grid
    chips = ([20 * UNIT, 20 * UNIT], [20 * UNIT, 22 * UNIT])
    coverages = {
        "2021": _scored(_coverage(grid), *chips, [0.6, 0.55]),
        "2022": _scored(_coverage(grid), *chips, [0.9, 0.9]),
    }
    tracked = track_region(
        ["2021", "2022"],
        {"2021": [], "2022": [_det(_square(grid, 20, 20), "m")]},
        lambda c, p: coverages[p],
        [cell],
        SIZE_M,
        region,
        0.8,
        thresholds={"2021": (threshold, threshold), "2022": (threshold, threshold)},
    )
    props = tracked.latest[0]["properties"]
    assert props["status"] == status
    assert props["first_detected"] == ("2021" if status == "persisting" else "2022")
    assert [f["properties"]["kind"] for f in tracked.changes["2022"]] == (
        [] if status == "persisting" else ["new_site"]
    )


def test_new_ground_needs_a_confident_chip_now():
    # absent before, detected now only by chips below the seed threshold (a wobbling edge): unknown, not new
    det = np.array([[False, False], [True, True]])
    obs = np.ones((2, 2), bool)
    confident = np.array([[False, False], [True, False]])
    status, compared = unit_states(det, obs, None, confident)
    assert status[1].tolist() == [NEW, UNKNOWN] and compared[1].tolist() == [0, 0]


@pytest.mark.parametrize(
    "spec, words",
    [
        ([{"name": "footprint", "start": "2024-01-01", "end": "2024-12-31"}], "taken"),
        ([{"name": "2023", "start": "2024-01-01", "end": "2024-06-30"}], "means 2023-01-01..2023-12-31"),
        (["0000"], "does not name its dates"),
    ],
)
def test_reserved_misleading_and_impossible_names(spec, words):
    with pytest.raises(InputDataError, match=words):
        parse_periods(spec)


def test_unquoted_yaml_dates_are_read_as_text(tmp_path):
    import yaml

    from garimpo.config import coerce_config

    config = yaml.safe_load("periods:\n  - {name: dry, start: 2024-06-01, end: 2024-10-31}\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text("type: object\n")
    coerce_config(config, schema)
    assert config["periods"] == [{"name": "dry", "start": "2024-06-01", "end": "2024-10-31"}]
    assert parse_periods(config["periods"])[0].end == date(2024, 10, 31)
