"""Compositing on two grids: 10 m bands on the target grid, the 20 m bands and the SCL mask at 20 m, read
without a warp where the target grid is the file's own, concurrently; on real Sentinel-2 bytes
(/work/shared/data/s2-real) and on small files whose every pixel is known."""

import dataclasses
import json
import warnings
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from garimpo.geo.raster import Grid, coarse_grid
from garimpo.imagery import read as R
from garimpo.imagery.composite import band_layout, fetch_composite, halo_px, write_composite
from garimpo.imagery.sensor import SENTINEL2_L2A
from garimpo.imagery.stac import ImageryRequest, Source

RKH = "data/s2-real/29RKH_20200219_L2A"
# Sentinel-2 with its SCL's native 20 m declared: the two-grid path (not yet the default profile's, see sensor.py)
S2_20M = dataclasses.replace(SENTINEL2_L2A, mask_resolution_m=20.0)
UTM21S = "EPSG:32721"


def _warped(href, grid, resampling, monkeypatch):
    """read_asset with the aligned-window shortcut switched off: GDAL's warper, as before."""
    with monkeypatch.context() as m:
        m.setattr(R, "aligned_window", lambda *a, **k: None)
        return R.read_asset(href, grid, resampling)


@pytest.mark.parametrize("band", ["B04", "B11", "SCL"])
def test_windowed_read_equals_the_warp_on_real_bytes(shared_dir, band, monkeypatch):
    """On the file's own grid (inside, across its edge, outside it) the windowed read gives GDAL's warp's
    array, nodata fill included; off the grid by half a pixel, the warp is kept."""
    href = str(shared_dir / RKH / f"{band}.tif")
    with rasterio.open(href) as src:
        res, (x0, y0) = src.res[0], (src.transform.c, src.transform.f)
    resampling = Resampling.nearest if band == "SCL" else Resampling.bilinear
    for dc, dr in ((37, 50), (-37, -50), (500, 520), (5000, 10)):
        grid = Grid("EPSG:32629", Affine(res, 0, x0 + dc * res, 0, -res, y0 - dr * res), 64, 48)
        assert R.aligned_window(rasterio.open(href).crs, rasterio.open(href).transform, grid) is not None
        fast, nodata = R.read_asset(href, grid, resampling)
        slow, _ = _warped(href, grid, resampling, monkeypatch)
        assert fast.dtype == slow.dtype and nodata == 0
        np.testing.assert_array_equal(fast, slow)
    with rasterio.open(href) as src:
        half = Grid("EPSG:32629", Affine(res, 0, x0 + res / 2, 0, -res, y0), 8, 8)
        other_crs = Grid("EPSG:32630", Affine(res, 0, x0, 0, -res, y0), 8, 8)
        assert R.aligned_window(src.crs, src.transform, half) is None
        assert R.aligned_window(src.crs, src.transform, other_crs) is None


def test_coarse_grid_is_aligned_and_nearest_is_exact():
    fine = Grid(UTM21S, Affine(10, 0, 600010, 0, -10, 9320030), 7, 5)  # edges off multiples of 20 m
    cg = coarse_grid(fine, 2)
    assert cg is not None and cg.grid.resolution == 20
    assert cg.grid.transform.c % 20 == 0 and cg.grid.transform.f % 20 == 0
    left, bottom, right, top = cg.grid.bounds
    assert left == 600000 - 20 and top == 9320040 + 20  # covering, then one coarse pixel more
    assert right >= 600010 + 70 + 20 and bottom <= 9320030 - 50 - 20
    # each fine pixel takes the coarse pixel that holds its centre
    values = np.arange(cg.grid.height * cg.grid.width).reshape(cg.grid.height, cg.grid.width)
    up = cg.to_fine(values)
    for r in range(fine.height):
        for c in range(fine.width):
            x, y = fine.transform @ (c + 0.5, r + 0.5)
            col, row = ~cg.grid.transform @ (x, y)
            assert up[r, c] == values[int(row), int(col)]
    assert coarse_grid(Grid(UTM21S, Affine(10, 0, 600003, 0, -10, 9320000), 4, 4), 2) is None


def test_band_layout_splits_by_native_pixel():
    g10 = Grid(UTM21S, Affine(10, 0, 600000, 0, -10, 9320000), 8, 8)
    fine, coarse, cg = band_layout(("B02", "B11", "B04", "B12", "B8A"), g10, S2_20M)
    assert fine == ["B02", "B04"] and coarse == ["B11", "B12", "B8A"] and cg.factor == 2
    g20 = Grid(UTM21S, Affine(20, 0, 600000, 0, -20, 9320000), 8, 8)
    assert band_layout(("B02", "B11"), g20, S2_20M) == (["B02", "B11"], [], None)
    assert band_layout(("B02", "B11"), g10, SENTINEL2_L2A) == (["B02", "B11"], [], None)  # the default, for now
    req = ImageryRequest(("B02", "B11"), ("2023-01-01", "2023-12-31"), 50.0, cloud_buffer_m=100)
    assert halo_px(req, g10, S2_20M) == (5 + 2) * 2 and halo_px(req, g20, S2_20M) == 5
    assert halo_px(req, g10, SENTINEL2_L2A) == 10


# ---- small files whose every pixel is known -----------------------------------------------------------

ORIGIN = (600000.0, 9320000.0)  # a corner on multiples of 60 m, as Sentinel-2 granules have


def _write(path, array, res, nodata=0):
    h, w = array.shape
    profile = dict(driver="GTiff", height=h, width=w, count=1, dtype=array.dtype, crs=UTM21S, nodata=nodata)
    profile.update(transform=Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]), tiled=True, blockxsize=16)
    profile.update(blockysize=16, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return str(path)


def _scene(tmp_path, name, day, rng, cloud_box):
    """A 96 x 96 px scene at 10 m (B04, B08) with B11 and SCL at 20 m (48 x 48), baseline 05.10 (+1000 DN),
    cloud (SCL 9) in ``cloud_box`` (rows, cols of the 20 m grid)."""
    folder = tmp_path / name
    folder.mkdir()
    dn10 = {b: (1000 + rng.integers(200, 4000, (96, 96))).astype(np.uint16) for b in ("B04", "B08")}
    dn20 = (1000 + rng.integers(500, 3000, (48, 48))).astype(np.uint16)
    scl = np.full((48, 48), 4, dtype=np.uint8)
    scl[cloud_box] = 9
    hrefs = {b: _write(folder / f"{b}.tif", a, 10) for b, a in dn10.items()}
    hrefs["B11"] = _write(folder / "B11.tif", dn20, 20)
    hrefs["SCL"] = _write(folder / "SCL.tif", scl, 20)
    item = pystac.Item(
        name,
        {"type": "Polygon", "coordinates": [[[-57, -6], [-56.9, -6], [-56.9, -6.1], [-57, -6.1], [-57, -6]]]},
        [-57, -6.1, -56.9, -6],
        datetime(2023, 7, day, tzinfo=UTC),
        {"eo:cloud_cover": 10.0, "s2:processing_baseline": "05.10", "proj:epsg": 32721},
    )
    for key, href in hrefs.items():
        item.add_asset(key, pystac.Asset(href, media_type=pystac.MediaType.GEOTIFF))
    return item, {**{b: (a - 1000) / 1e4 for b, a in dn10.items()}, "B11": (dn20 - 1000) / 1e4}, scl


@pytest.fixture()
def scenes(tmp_path):
    rng = np.random.default_rng(3)
    boxes = [(slice(5, 20), slice(5, 25)), (slice(25, 40), slice(10, 30)), (slice(0, 0), slice(0, 0))]
    return [_scene(tmp_path, f"S{i}", 10 + i, rng, box) for i, box in enumerate(boxes)]


BANDS3 = ("B04", "B11", "B08")


def test_two_grid_composite_matches_a_hand_computed_one(scenes, tmp_path):
    """Fine bands: the median of the scenes clear in the 20 m pixel holding each 10 m pixel (cloud grown by
    the buffer at 20 m); B11: the 20 m median, resampled bilinearly (weights 3/4, 1/4 at the 10 m centres)."""
    items = [s[0] for s in scenes]
    src = Source("local", str(tmp_path / "unused.json"), sensor=S2_20M)
    req = ImageryRequest(BANDS3, ("2023-01-01", "2023-12-31"), 50.0, cloud_buffer_m=40)  # 2 px at 20 m
    grid = Grid(UTM21S, Affine(10, 0, ORIGIN[0] + 200, 0, -10, ORIGIN[1] - 200), 48, 40)
    image, used = fetch_composite(src, req, grid, items, threads=2)
    assert [u.id for u in used] == ["S0", "S1", "S2"]
    cg = coarse_grid(grid, 2)
    clear20 = [S2_20M.clear_mask(scl, 2) for _, _, scl in scenes]
    r0, c0 = 20, 20  # the grid's corner in the 10 m files
    for r in range(0, 40, 3):
        for c in range(0, 48, 5):
            ok = [clear20[k][(r0 + r) // 2, (c0 + c) // 2] for k in range(3)]
            for b in ("B04", "B08"):
                vals = [scenes[k][1][b][r0 + r, c0 + c] for k in range(3) if ok[k]]
                assert image[BANDS3.index(b), r, c] == pytest.approx(np.median(vals), abs=1e-6)
    # B11 at 20 m: the median over the clear scenes, then bilinear onto the 10 m centres
    stack = np.stack([np.where(clear20[k], scenes[k][1]["B11"], np.nan) for k in range(3)])
    med20 = np.nanmedian(stack, axis=0)
    for r in range(2, 38, 7):
        for c in range(2, 46, 9):
            y, x = (r0 + r + 0.5) / 2 - 0.5, (c0 + c + 0.5) / 2 - 0.5  # in 20 m pixel-centre coordinates
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            fy, fx = y - y0, x - x0
            want = (
                med20[y0, x0] * (1 - fy) * (1 - fx)
                + med20[y0, x0 + 1] * (1 - fy) * fx
                + med20[y0 + 1, x0] * fy * (1 - fx)
                + med20[y0 + 1, x0 + 1] * fy * fx
            )
            assert image[1, r, c] == pytest.approx(want, abs=1e-5)
    assert cg.grid.resolution == 20
    finite = np.isfinite(image)
    assert (finite.all(axis=0) | ~finite.any(axis=0)).all()  # a pixel is NaN in every band or in none


@pytest.mark.parametrize("threads", [1, 2])
def test_block_wise_equals_whole_grid_with_two_grids(scenes, tmp_path, threads):
    """Blocks of 16 px (with halos for the 20 m mask's buffer and the resampling) give the whole-grid
    composite exactly, on a grid whose edges are not on multiples of 20 m."""
    items = [s[0] for s in scenes]
    src = Source("local", str(tmp_path / "unused.json"), sensor=S2_20M)
    req = ImageryRequest(BANDS3, ("2023-01-01", "2023-12-31"), 50.0, cloud_buffer_m=60)
    grid = Grid(UTM21S, Affine(10, 0, ORIGIN[0] + 130, 0, -10, ORIGIN[1] - 70), 61, 53)
    whole, _ = fetch_composite(src, req, grid, items, threads=threads)
    used = write_composite(tmp_path / "c.tif", src, req, grid, block_px=16, items=items, threads=threads)
    assert [u.id for u in used] == ["S0", "S1", "S2"]
    with rasterio.open(tmp_path / "c.tif") as f:
        written = f.read()
        assert json.loads(f.tags()["radiometry"])[0]["offset"] == -0.1  # baseline 05.10: the +1000 DN removed
    np.testing.assert_array_equal(np.isnan(written), np.isnan(whole))
    np.testing.assert_allclose(written, whole, rtol=0, atol=1e-7)


def test_real_bytes_two_grids(shared_dir, tmp_path):
    """The real Earth Search COGs of 29RKH (stored 10x decimated: 10 m bands at 100 m, 20 m bands and SCL at
    200 m) through a profile whose pixels are 10x Sentinel-2's: the 100 m bands on the grid, B11 and SCL at
    200 m. The fixture's corner (199980, 2800020) is not on multiples of 200 m, so here both grids are warped
    (the shortcut is for grids of the file's own). The real file's known medians come back, blocks equal the
    whole grid."""
    root = shared_dir / RKH
    doc = json.loads((root / "S2A_29RKH_20200219_0_L2A.json").read_text())
    for asset in doc["assets"].values():
        local = root / asset["href"].rsplit("/", 1)[-1]
        if local.is_file() and asset["href"].startswith("https://"):
            asset["href"] = str(local)
    doc["links"] = []  # its self link is the bucket's: the local hrefs must not be resolved against it
    item = pystac.Item.from_dict(doc)
    tenfold = {b: dataclasses.replace(s, resolution_m=s.resolution_m * 10) for b, s in SENTINEL2_L2A.bands.items()}
    profile = dataclasses.replace(SENTINEL2_L2A, bands=tenfold, mask_resolution_m=200.0)
    src = Source("local", str(tmp_path / "unused.json"), sensor=profile)
    req = ImageryRequest(("B04", "B11"), ("2020-01-01", "2020-12-31"), 50.0, cloud_buffer_m=0)
    grid = Grid("EPSG:32629", Affine(100, 0, 200000, 0, -100, 2800000), 1097, 1097)  # the whole file, or nearly
    assert band_layout(req.bands, grid, profile)[1] == ["B11"]
    image, used = fetch_composite(src, req, grid, [item], threads=2)
    assert [u.id for u in used] == [item.id]
    # README of s2-real: valid-pixel medians B04 3414, B11 4819 DN (no offset at baseline 02.14)
    assert float(np.nanmedian(image[0])) == pytest.approx(0.3414, abs=0.003)
    assert float(np.nanmedian(image[1])) == pytest.approx(0.4819, abs=0.003)
    write_composite(tmp_path / "c.tif", src, req, grid, block_px=128, items=[item], threads=2)
    with rasterio.open(tmp_path / "c.tif") as f:
        np.testing.assert_allclose(f.read(), image, rtol=0, atol=1e-7)


def test_default_composite_is_the_warped_nanmedian_bit_for_bit(scenes, tmp_path, monkeypatch):
    """With the default profile (mask and bands on the 10 m grid) the faster path changes no value: windowed reads
    instead of the warp, threads, the sorting-network median and the reflectance give what the warp and
    np.nanmedian give."""
    items = [s[0] for s in scenes]
    src = Source("local", str(tmp_path / "unused.json"))
    req = ImageryRequest(BANDS3, ("2023-01-01", "2023-12-31"), 50.0, cloud_buffer_m=40)
    grid = Grid(UTM21S, Affine(10, 0, ORIGIN[0] + 130, 0, -10, ORIGIN[1] - 70), 61, 53)
    fast, _ = fetch_composite(src, req, grid, items, threads=2)
    monkeypatch.setattr(R, "aligned_window", lambda *a, **k: None)
    stack, clear = zip(*(R.read_item(it, src, BANDS3, grid, req.cloud_buffer_m) for it in items), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        want = np.nanmedian(np.where(np.stack(clear)[:, None], np.stack(stack), np.nan), axis=0).astype(np.float32)
    np.testing.assert_array_equal(fast, want)
