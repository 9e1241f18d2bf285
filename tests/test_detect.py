import json

import numpy as np
import pytest
from affine import Affine
from conftest import EPSG, ORIGIN
from shapely.geometry import box

from garimpo.detection.chips import extract_chip
from garimpo.geo.geojson import feature, feature_collection, write_geojson
from garimpo.outputs.evaluation import evaluate_detections


def test_extract_chip_pads_outside_with_nan():
    img = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    chip = extract_chip(img, -2, 8, 4)
    assert chip.shape == (2, 4, 4)
    assert np.isnan(chip[:, :2]).all() and np.isnan(chip[:, :, 2:]).all()
    assert chip[0, 2, 0] == img[0, 0, 8]


def test_evaluation_against_truth(tmp_path):
    mine_a, mine_b = box(-56.30, -6.20, -56.29, -6.19), box(-56.20, -6.20, -56.19, -6.19)
    mining = [
        feature(box(-56.295, -6.195, -56.285, -6.185), {"score": 0.9}),  # overlaps mine a
        feature(box(-56.25, -6.25, -56.24, -6.24), {"score": 0.8}),
    ]  # in the control area
    det = write_geojson(tmp_path / "d.geojson", feature_collection(mining), {"dates": ["2023-07-15"]})
    truth = write_geojson(
        tmp_path / "t.geojson",
        feature_collection(
            [
                feature(mine_a, {"first_seen": 2021}),
                feature(mine_b, {"first_seen": 2021}),
                feature(box(-56.15, -6.2, -56.14, -6.19), {"first_seen": 2024}),
            ]
        ),
    )  # not yet visible
    doc = json.loads(det.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    res = evaluate_detections(det, truth, box(-57, -7, -56, -6), control=box(-56.26, -6.26, -56.23, -6.23))
    assert res["n_truth"] == 2 and res["n_truth_found"] == 1 and res["recall"] == 0.5
    assert res["n_detections"] == 2 and res["precision"] == 0.5 and res["n_in_control"] == 1


def _scan_result(rows, cols, scores, transform, chip=48):
    from garimpo.detection.chip_scores import ChipScores

    return ChipScores(
        np.array(rows),
        np.array(cols),
        np.array(scores, np.float32),
        chip,
        chip // 2,
        1000,
        1000,
        EPSG,
        transform,
        mode="two_stage",
        candidate_pixels=1234,
    )


def test_chip_features_are_chip_squares_in_lonlat_and_round_trip(tmp_path):
    from garimpo.detection.chip_scores import chip_features, load_chip_scores, save_chip_scores
    from garimpo.geo.geojson import reproject

    t = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    result = _scan_result([0, 24, 100], [0, 0, 200], [0.9, 0.2, 0.6], t)
    feats = chip_features(result, 0.5, {"model_id": "m"})
    assert [f["properties"]["score"] for f in feats] == [pytest.approx(0.9), pytest.approx(0.6)]
    square = reproject(feats[1]["geometry"], "EPSG:4326", EPSG)
    x0, y1 = ORIGIN[0] + 2000, ORIGIN[1] - 1000  # col 200, row 100 at 10 m
    assert square.bounds == pytest.approx((x0, y1 - 480, x0 + 480, y1), abs=0.01)
    path = save_chip_scores(tmp_path / "t.npz", result, {"cell": "E0001N0001", "model_id": "m"})
    back = load_chip_scores(path)
    assert back.transform == t and back.chip_px == 48 and back.crs == EPSG
    np.testing.assert_array_equal(back.scores, result.scores)
    assert back.provenance["cell"] == "E0001N0001" and back.summary()["chips_classified"] == 3
    assert back.summary() == result.summary() and back.candidate_pixels == 1234 and back.stride == 24
    assert len(chip_features(back, 0.5, {})) == 2


def test_composite_grid_is_cut_to_the_region():
    from garimpo.geo.cells import cell_processing_grid, region_cells
    from garimpo.imagery.composite import composite_grid

    region = box(-56.30, -6.15, -56.25, -6.10)  # about 5.5 km square
    (cell,) = region_cells(region, 100_000)
    grid = composite_grid(cell, region, 100_000, 1920)
    full = cell_processing_grid(cell, 100_000, 10.0, 1920)
    assert grid.crs == full.crs and grid.resolution == 10
    # the region (~5.5 km) plus 1.92 km each side, not the 100 km cell
    assert 9_000 < grid.width * 10 < 9_600 and 9_000 < grid.height * 10 < 9_600
    assert grid.transform.c % 10 == 0 and grid.transform.f % 10 == 0
    with pytest.raises(ValueError, match="does not intersect"):
        composite_grid(cell, box(10, 10, 10.1, 10.1), 100_000, 1920)
