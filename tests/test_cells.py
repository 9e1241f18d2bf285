import itertools
import math
import re
import time

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from garimpo.geo.cells import (
    CELL_ID_PATTERN,
    cell_id,
    cell_polygons,
    cell_processing_grid,
    parse_cell_id,
    read_cell_list,
    region_cells,
    write_cell_list,
)
from garimpo.geo.geojson import geodesic_area_ha, reproject
from garimpo.geo.vector import read_region

# WGS 84 and EASE-Grid 2.0 (true scale at 30°): x = a * k0 * lon, k0 = cos 30° / sqrt(1 - e² sin² 30°).
A = 6378137.0
E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)
K0 = math.cos(math.radians(30)) / math.sqrt(1 - E2 * 0.25)
TAPAJOS = box(-57.3, -7.2, -54.6, -5.1)  # a 3° x 2° box over the Tapajós mining district


def test_cell_ids_round_trip_with_signs_and_are_file_name_safe():
    assert cell_id(12, 3) == "E0012N0003"
    assert cell_id(-1, -1) == "W0001S0001"  # first cell south-west of the origin
    assert cell_id(0, 0) == "E0000N0000"
    assert cell_id(-12345, 7) == "W12345N0007"
    for col, row in itertools.product([-40000, -57, -1, 0, 1, 9999], [-80, -1, 0, 3]):
        tid = cell_id(col, row)
        assert parse_cell_id(tid) == (col, row)
        assert re.fullmatch(CELL_ID_PATTERN, tid) and re.fullmatch(r"[A-Z0-9]+", tid)
    for bad in ["W0000N0001", "E0001S0000", "E12N0001", "e0001n0001", "E0001N0001.tif"]:
        with pytest.raises(ValueError):
            parse_cell_id(bad)


def test_cell_of_a_point_matches_the_ease_grid_formula():
    # x(10°E) = a * k0 * 0.17453 rad = 964,862.8 m -> column 9 at 100 km; y(0.5°) ≈ 63.8 km -> row 0.
    assert A * K0 * math.radians(10) == pytest.approx(964_862.8, abs=0.1)
    assert region_cells(box(9.99, 0.49, 10.01, 0.51)) == ["E0009N0000"]
    assert region_cells(box(-10.01, -0.51, -9.99, -0.49)) == ["W0010S0001"]
    # At 50 km the same point is in column 19 (964.9 / 50).
    assert region_cells(box(9.99, 0.49, 10.01, 0.51), 50_000) == ["E0019N0001"]


def test_cells_cover_the_region_without_gaps_or_overlaps():
    ids = region_cells(TAPAJOS)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Lon width 2.7° -> 2.7 * pi/180 * a * k0 = 260.5 km: 3 or 4 columns; height ~ 240 km: 3 or 4 rows.
    assert 9 <= len(ids) <= 16
    cells = [cell_polygons(t)[1] for t in ids]
    assert all(c.intersects(TAPAJOS) for c in cells)
    assert TAPAJOS.difference(shapely.union_all(cells)).area == pytest.approx(0, abs=1e-12)
    for a, b in itertools.combinations(cells, 2):
        assert a.intersection(b).area == pytest.approx(0, abs=1e-12)
    # Any region asking for the same place gets the same ids (fixed origin), in any polygon order.
    bigger = shapely.union_all([TAPAJOS, box(-60, -10, -59, -9)])
    assert set(ids) <= set(region_cells(bigger))
    assert region_cells(shapely.MultiPolygon([box(-60, -10, -59, -9), TAPAJOS])) == region_cells(bigger)


def test_cell_is_equal_area_and_shares_edge_vertices_with_its_neighbour():
    cell, cell_ll = cell_polygons("W0054S0006")
    assert cell.bounds == (-5_400_000.0, -600_000.0, -5_300_000.0, -500_000.0)
    assert cell.area == 1e10
    # Equal-area grid: the geodesic area of the lon/lat cell is size² = 1,000,000 ha.
    assert geodesic_area_ha(cell_ll) == pytest.approx(1_000_000, rel=1e-6)
    # Lon edges are x / (a k0): 100 km = 1.0364°.
    assert cell_ll.bounds[2] - cell_ll.bounds[0] == pytest.approx(math.degrees(1e5 / (A * K0)), rel=1e-9)
    _, east = cell_polygons("W0053S0006")
    shared_lon = cell_ll.bounds[2]
    mine = {c for c in cell_ll.exterior.coords if c[0] == shared_lon}
    theirs = {c for c in east.exterior.coords if c[0] == shared_lon}
    assert len(mine) == 101 and mine == theirs  # a vertex per km, bit-identical on both sides


def test_processing_grid_covers_cell_plus_margin_snapped_to_pixels():
    tid = "W0054S0006"
    grid = cell_processing_grid(tid, resolution=10.0, margin_m=1920.0)
    _, cell_ll = cell_polygons(tid)
    lon, lat = cell_ll.centroid.coords[0]
    # Centre x = -5.35e6 m -> lon = -5.35e6 / (a k0) rad = -55.448°: UTM zone 21 south.
    assert lon == pytest.approx(-55.448, abs=1e-3) and lat < 0
    assert grid.crs == "EPSG:32721"
    left, bottom, right, top = grid.bounds
    assert all(v % 10 == 0 for v in (left, bottom, right, top))
    cell_utm = reproject(cell_ll, "EPSG:4326", grid.crs)
    with_margin = cell_utm.buffer(1920.0)  # everything within 1920 m of the cell
    assert box(left, bottom, right, top).contains(with_margin)
    cl, cb, cr, ct = cell_utm.bounds
    assert left >= cl - 1920 - 10 and right <= cr + 1920 + 10 and bottom >= cb - 1920 - 10 and top <= ct + 1920 + 10
    # Near the equator a 100 km EASE cell is ~115 km east-west and ~87 km north-south on the ground.
    assert 115_000 < right - left < 122_000 and 88_000 < top - bottom < 95_000


def test_cell_list_round_trip(tmp_path):
    ids = region_cells(TAPAJOS)
    path = write_cell_list(tmp_path / "cells" / "tapajos.json", "tapajos", 100_000, ids[::-1])
    doc = read_cell_list(path)
    assert doc["cells"] == ids and doc["size_m"] == 100_000 and doc["region"] == "tapajos"
    assert doc["crs"] == "EPSG:6933" and doc["n_cells"] == len(ids)


@pytest.mark.shared
def test_amazon_basin_cells_fast_and_cover_it(shared_dir):
    region = read_region(shared_dir / "data/amw/boundaries/amazon_basin.geojson")
    start = time.perf_counter()
    ids = region_cells(region, 100_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"tiling the Amazon basin took {elapsed:.1f} s"
    # ~7 million km² of basin in 10,000 km² cells, plus the cells along the boundary.
    area_km2 = geodesic_area_ha(region) / 100
    assert area_km2 / 1e4 < len(ids) < 1.3 * area_km2 / 1e4 + 200
    cells = shapely.union_all([cell_polygons(t)[1] for t in ids])
    assert region.difference(cells).area == pytest.approx(0, abs=1e-9)
    assert ids == region_cells(region, 100_000)
    cols = np.array([parse_cell_id(t)[0] for t in ids])
    assert cols.min() >= -80 and cols.max() <= -40  # 79.4°W to 44.5°W is columns -77 to -43
