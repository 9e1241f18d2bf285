"""evaluate_alerts: one period's new-mining alerts scored against the new ground of that period."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import box, mapping

from garimpo.geo.geojson import geodesic_area_ha
from garimpo.outputs.evaluation import evaluate_alerts

REGION = box(-56.3, -6.3, -56.0, -6.0)
CONTROL = box(-56.05, -6.05, -56.0, -6.0)


def _sq(lon, lat, d=0.004):
    return box(lon, lat, round(lon + d, 6), round(lat + d, 6))  # exact edges: "touching" tests share them


def _write(path, feats):
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": mapping(g), "properties": p} for g, p in feats],
            }
        )
    )
    return path


@pytest.fixture
def truth(tmp_path):
    return _write(
        tmp_path / "new_mining.geojson",
        [
            (_sq(-56.2, -6.2), {"mine_id": "D01", "period": "2022", "kind": "new_site"}),  # found
            (_sq(-56.1, -6.1), {"mine_id": "D02", "period": "2022", "kind": "expansion"}),  # missed
            (_sq(-56.25, -6.25), {"mine_id": "D03", "period": "2024", "kind": "new_site"}),  # another period
            (_sq(-56.6, -6.2), {"mine_id": "T01", "period": "2022", "kind": "new_site"}),  # outside the region
        ],
    )


def test_true_false_and_missed(tmp_path, truth):
    true_alert = _sq(-56.198, -6.198)  # overlaps D01
    false_alert = _sq(-56.15, -6.15)
    in_control = _sq(-56.03, -6.03)
    changes = _write(
        tmp_path / "2022.geojson",
        [
            (true_alert, {"period": "2022", "kind": "new_site", "area_ha": 1.0}),
            (false_alert, {"period": "2022", "kind": "expansion", "area_ha": 1.0}),
            (in_control, {"period": "2022", "kind": "new_site", "area_ha": 1.0}),
            (_sq(-56.1, -6.1), {"period": "2022", "kind": "unknown", "area_ha": 1.0}),  # on D02, not an alert
        ],
    )
    r = evaluate_alerts(changes, truth, "2022", REGION, CONTROL)
    assert (r["n_alerts"], r["n_true_alerts"], r["n_false_alerts"]) == (3, 1, 2)
    assert (r["n_truth"], r["n_truth_found"], r["n_unknown"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(1 / 3, abs=1e-4) and r["recall"] == 0.5
    assert r["alerts_by_kind"] == {"new_site": {"n": 2, "n_true": 1}, "expansion": {"n": 1, "n_true": 0}}
    assert r["truth_by_kind"] == {"new_site": {"n": 1, "n_found": 1}, "expansion": {"n": 1, "n_found": 0}}
    assert r["n_alerts_in_control"] == 1
    assert r["alert_area_ha"] == pytest.approx(
        sum(geodesic_area_ha(g) for g in (true_alert, false_alert, in_control)), abs=0.01
    )
    assert r["truth_area_ha"] == pytest.approx(2 * geodesic_area_ha(_sq(-56.2, -6.2)), abs=0.01)
    assert r["overlap_area_ha"] == pytest.approx(geodesic_area_ha(true_alert.intersection(_sq(-56.2, -6.2))), abs=0.01)
    json.dumps(r)  # JSON-ready


def test_touching_counts_and_multipolygons(tmp_path, truth):
    edge = box(-56.196, -6.2, -56.19, -6.196)  # shares D01's east edge
    multi = _sq(-56.25, -6.0).union(_sq(-56.099, -6.099, 0.001))  # one part far away, one inside D02
    changes = _write(
        tmp_path / "2022.geojson",
        [(edge, {"period": "2022", "kind": "new_site"}), (multi, {"period": "2022", "kind": "expansion"})],
    )
    r = evaluate_alerts(changes, truth, "2022", REGION)
    assert (r["n_true_alerts"], r["n_truth_found"], r["precision"], r["recall"]) == (2, 2, 1.0, 1.0)
    assert r["n_alerts_in_control"] == 0


def test_period_without_truth_or_alerts(tmp_path, truth):
    empty = _write(tmp_path / "2023.geojson", [])
    r = evaluate_alerts(empty, truth, "2023", REGION, CONTROL)
    assert r["n_alerts"] == r["n_truth"] == 0
    assert r["precision"] is None and r["recall"] is None
    assert r["alert_area_ha"] == r["truth_area_ha"] == r["overlap_area_ha"] == 0.0
    assert json.loads(json.dumps(r))["precision"] is None  # JSON null
    # alerts but no truth: precision 0, recall undefined; truth but no alerts: the reverse
    only_alert = _write(tmp_path / "a.geojson", [(_sq(-56.15, -6.15), {"period": "2023", "kind": "new_site"})])
    r = evaluate_alerts(only_alert, truth, "2023", REGION)
    assert (r["precision"], r["recall"], r["n_false_alerts"]) == (0.0, None, 1)
    r = evaluate_alerts(empty, truth, "2024", REGION)
    assert (r["precision"], r["recall"], r["n_truth"]) == (None, 0.0, 1)


def test_rejects_foreign_features(tmp_path, truth):
    wrong_period = _write(tmp_path / "p.geojson", [(_sq(-56.2, -6.2), {"period": "2021", "kind": "new_site"})])
    with pytest.raises(ValueError, match="period '2021'"):
        evaluate_alerts(wrong_period, truth, "2022", REGION)
    wrong_kind = _write(tmp_path / "k.geojson", [(_sq(-56.2, -6.2), {"period": "2022", "kind": "persisting"})])
    with pytest.raises(ValueError, match="persisting"):
        evaluate_alerts(wrong_kind, truth, "2022", REGION)
    with pytest.raises(FileNotFoundError):
        evaluate_alerts(tmp_path / "missing.geojson", truth, "2022", REGION)


def test_new_sites_on_earlier_mining_are_counted(tmp_path, truth):
    earlier = _write(
        tmp_path / "mining_by_period.geojson",
        [
            (_sq(-56.15, -6.15), {"mine_id": "D05", "period": "2021"}),  # a mine since 2021
            (_sq(-56.2, -6.2), {"mine_id": "D01", "period": "2022"}),  # new in 2022: not earlier
        ],
    )
    changes = _write(
        tmp_path / "2022.geojson",
        [
            (_sq(-56.149, -6.149), {"period": "2022", "kind": "new_site", "area_ha": 1.0}),  # on D05: wrong
            (_sq(-56.151, -6.151), {"period": "2022", "kind": "expansion", "area_ha": 1.0}),  # growth of D05: fine
            (_sq(-56.198, -6.198), {"period": "2022", "kind": "new_site", "area_ha": 1.0}),  # D01, new: fine
        ],
    )
    r = evaluate_alerts(changes, truth, "2022", REGION, CONTROL, earlier)
    assert r["n_new_sites_on_earlier_mining"] == 1
    assert "n_new_sites_on_earlier_mining" not in evaluate_alerts(changes, truth, "2022", REGION, CONTROL)
