import json

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from garimpo.detect import chip_windows, detection_features, extract_chip, region_grid, region_mask, zones_from_mask
from garimpo.evaluate import evaluate_detections
from garimpo.geo import feature, feature_collection, write_geojson
from garimpo.raster import Grid

from conftest import EPSG, ORIGIN

GRID = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 100, 80)


def test_zones_from_mask_are_connected_components_in_lonlat():
    mask = np.zeros((80, 100), bool)
    mask[10:20, 10:20] = True  # 100 px = 1 ha
    mask[20, 20] = True  # touches diagonally: same zone (8-connectivity)
    mask[50:55, 60:90] = True
    zones = zones_from_mask(mask, GRID.crs, GRID.transform)
    assert [z["n_pixels"] for z in zones] == [101, 150]
    assert zones[0]["geometry_proj"].area == pytest.approx(101 * 100)
    lon, lat = zones[0]["geometry"].centroid.coords[0]
    assert -56.2 < lon < -56.0 and -6.2 < lat < -6.1  # UTM 21S: 100 km east of the -57 meridian


def test_chip_windows_small_zone_centred_and_large_zone_covered():
    small = box(ORIGIN[0] + 400, ORIGIN[1] - 300, ORIGIN[0] + 500, ORIGIN[1] - 200)
    (row, col), = chip_windows(small, GRID, 16)
    assert (row, col) == (17, 37)  # centre (45, 25) px minus half a chip
    large = box(ORIGIN[0] + 100, ORIGIN[1] - 500, ORIGIN[0] + 700, ORIGIN[1] - 400)  # 60 x 10 px
    wins = chip_windows(large, GRID, 16)
    assert len(wins) == 4  # ceil(60/16) chips across, 1 down
    cols = sorted(c for _, c in wins)
    assert cols[0] <= 10 and cols[-1] + 16 >= 70


def test_extract_chip_pads_outside_with_nan():
    img = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    chip = extract_chip(img, -2, 8, 4)
    assert chip.shape == (2, 4, 4)
    assert np.isnan(chip[:, :2]).all() and np.isnan(chip[:, :, 2:]).all()
    assert chip[0, 2, 0] == img[0, 0, 8]


def test_region_grid_and_mask():
    region = box(-56.30, -6.20, -56.28, -6.18)
    g = region_grid(region)
    assert g.crs == "EPSG:32721" and 200 <= g.width <= 240 and 200 <= g.height <= 240
    m = region_mask(region, g)
    assert 0.9 < m.mean() <= 1.0


def test_detection_features_and_evaluation(tmp_path):
    mine_a, mine_b = box(-56.30, -6.20, -56.29, -6.19), box(-56.20, -6.20, -56.19, -6.19)
    zones = [{"zone_id": 1, "geometry": box(-56.295, -6.195, -56.285, -6.185)},  # overlaps mine a
             {"zone_id": 2, "geometry": box(-56.10, -6.10, -56.09, -6.09)},  # nothing there
             {"zone_id": 3, "geometry": box(-56.25, -6.25, -56.24, -6.24)}]  # in the control area
    scored, mining = detection_features(zones, [0.9, 0.2, 0.8], 0.5, {"scene_ids": ["S"], "dates": ["2023-07-15"]},
                                        "m1", "h")
    assert [f["properties"]["label"] for f in scored] == ["mining", "not_mining", "mining"]
    assert scored[0]["properties"]["area_ha"] == pytest.approx(1.1 * 1.1 * 100, rel=0.02)
    det = write_geojson(tmp_path / "d.geojson", feature_collection(mining), {"dates": ["2023-07-15"]})
    truth = write_geojson(tmp_path / "t.geojson", feature_collection(
        [feature(mine_a, {"first_seen": 2021}), feature(mine_b, {"first_seen": 2021}),
         feature(box(-56.15, -6.2, -56.14, -6.19), {"first_seen": 2024})]))  # not yet visible
    doc = json.loads(det.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    res = evaluate_detections(det, truth, box(-57, -7, -56, -6), control=box(-56.26, -6.26, -56.23, -6.23))
    assert res["n_truth"] == 2 and res["n_truth_found"] == 1 and res["recall"] == 0.5
    assert res["n_detections"] == 2 and res["precision"] == 0.5 and res["n_in_control"] == 1
