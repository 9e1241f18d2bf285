"""Evidence thumbnails: period choice, window reading, drawing, and the per-detection PNGs and index."""

import json
import logging
from datetime import datetime

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box, mapping

from garimpo.errors import InputDataError
from garimpo.geo.geojson import reproject
from garimpo.imagery.radiometry import decide
from garimpo.publish.evidence import (
    GAP_PX,
    LABEL_PX,
    MISSING_RGB,
    OUTLINE_RGB,
    STRETCH,
    View,
    choose_periods,
    read_window,
    thumbnail,
    write_evidence,
)

EPSG = "EPSG:32721"  # Tapajós, UTM 21S
X0, Y0 = 600000.0, 9320000.0  # upper-left corner of the synthetic composites
RES = 10.0
N = 300  # px: 3 km squares
FOREST = {"B02": 0.03, "B03": 0.07, "B04": 0.04}
MINE = {"B02": 0.20, "B03": 0.22, "B04": 0.25}  # bright bare sediment
MINE_PX = (140, 170, 140, 170)  # rows, then cols: 300 m x 300 m in the middle


def write_composite(path, values, nan_rows=None, marker=None, origin=(X0, Y0), bands=("B02", "B03", "B04")):
    """A float32 composite as the workflow writes them: band descriptions, NaN nodata, UTM, 10 m."""
    arr = np.empty((len(bands), N, N), np.float32)
    for i, b in enumerate(bands):
        arr[i] = values[b] if isinstance(values, dict) else values[i]
    if nan_rows is not None:
        arr[:, nan_rows] = np.nan
    if marker is not None:
        r, c = marker
        arr[:, r, c] = 0.9
    profile = dict(
        driver="GTiff",
        width=N,
        height=N,
        count=len(bands),
        dtype="float32",
        crs=EPSG,
        transform=Affine(RES, 0, origin[0], 0, -RES, origin[1]),
        nodata=float("nan"),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        for i, b in enumerate(bands, start=1):
            dst.set_band_description(i, b)
    return path


def with_mine(values_out, values_in):
    arrays = {b: np.full((N, N), values_out[b], np.float32) for b in values_out}
    r0, r1, c0, c1 = MINE_PX
    for b in arrays:
        arrays[b][r0:r1, c0:c1] = values_in[b]
    return [arrays[b] for b in ("B02", "B03", "B04")]


def utm_box_lonlat(r0, r1, c0, c1, origin=(X0, Y0)):
    """The lon/lat polygon of composite pixels rows r0..r1, cols c0..c1 (edges)."""
    ox, oy = origin
    return reproject(box(ox + c0 * RES, oy - r1 * RES, ox + c1 * RES, oy - r0 * RES), EPSG, "EPSG:4326")


MINE_LONLAT = utm_box_lonlat(*MINE_PX)


@pytest.fixture
def composites(tmp_path):
    before = write_composite(tmp_path / "2021.tif", FOREST)
    after = write_composite(tmp_path / "2023.tif", with_mine(FOREST, MINE))
    return before, after


# --- choose_periods --------------------------------------------------------------------------------


def test_choose_periods_takes_the_earliest_clear_enough_earlier_period():
    periods = ["2020", "2021", "2022", "2023"]
    assert choose_periods("2023", periods, {"2020": 0.2, "2021": 0.9, "2022": 1.0}) == ("2021", "2023")
    assert choose_periods("2023", periods, {"2020": 0.5, "2021": 0.9}) == ("2020", "2023")  # >= min_clear
    # Periods at or after first_detected never count, however clear.
    assert choose_periods("2021", periods, {"2020": 0.1, "2022": 1.0, "2023": 1.0}) == ("2020", "2021")
    assert choose_periods("2023", periods, {"2020": 0.4}, min_clear=0.3) == ("2020", "2023")


def test_choose_periods_falls_back_to_any_clear_pixel_then_to_none():
    periods = ["2020", "2021", "2022", "2023"]
    # Every earlier period cloudier than min_clear: the earliest with any clear pixel.
    assert choose_periods("2023", periods, {"2020": 0.0, "2021": 0.1, "2022": 0.3}) == ("2021", "2023")
    # All cloud, or missing (a missing composite counts as not clear): no before.
    assert choose_periods("2023", periods, {"2020": 0.0, "2021": 0.0}) == (None, "2023")
    assert choose_periods("2023", periods, {}) == (None, "2023")
    # Present from the first period: nothing earlier.
    assert choose_periods("2020", periods, {"2020": 1.0}) == (None, "2020")


def test_choose_periods_rejects_unknown_period_and_bad_fraction():
    with pytest.raises(ValueError, match="'2019'"):
        choose_periods("2019", ["2020", "2021"], {})
    with pytest.raises(ValueError, match="min_clear"):
        choose_periods("2021", ["2020", "2021"], {"2020": 1.0}, min_clear=1.5)


# --- read_window -----------------------------------------------------------------------------------


def test_read_window_reads_the_ground_under_the_detection(tmp_path):
    marker = (100, 220)  # row, col of a bright pixel; its centre is the point below
    path = write_composite(tmp_path / "c.tif", FOREST, marker=marker)
    mx, my = X0 + (marker[1] + 0.5) * RES, Y0 - (marker[0] + 0.5) * RES
    geom = reproject(box(mx - 50, my - 50, mx + 50, my + 50), EPSG, "EPSG:4326")
    view = read_window([path], geom)
    assert view.array.shape == (3, 256, 256) and view.array.dtype == np.float32
    assert view.crs == EPSG and view.band_names == ("B04", "B03", "B02")
    # Side max(1500, 100 + 2 * 300) = 1500 m, snapped to 150 source pixels.
    assert view.transform.a * 256 == pytest.approx(1500.0) and view.transform.e * 256 == pytest.approx(-1500.0)
    # Centred on the detection (within half a source pixel).
    cx, cy = view.transform @ (128, 128)
    assert abs(cx - mx) <= RES / 2 + 1e-6 and abs(cy - my) <= RES / 2 + 1e-6
    # The marker's panel pixels map back to the marker's ground.
    rows, cols = np.nonzero(view.array[0] > 0.5)
    assert 1 <= len(rows) <= 9  # one 10 m pixel over 5.86 m panel pixels
    xs, ys = view.transform @ (cols + 0.5, rows + 0.5)
    assert np.all(np.abs(xs - mx) <= RES) and np.all(np.abs(ys - my) <= RES)
    # Red, green, blue in that order: the forest's B04, B03, B02.
    assert np.median(view.array, axis=(1, 2)) == pytest.approx([0.04, 0.07, 0.03], abs=1e-6)
    assert view.clear_fraction == 1.0


def test_read_window_grows_with_the_detection_and_is_nan_beyond_the_composite(tmp_path):
    path = write_composite(tmp_path / "c.tif", FOREST)
    big = utm_box_lonlat(100, 200, 100, 300)  # 2 km wide, reaching the composite's right edge
    view = read_window([path], big, size_px=128)
    assert view.transform.a * 128 == pytest.approx(2000 + 2 * 300, abs=RES)
    left, top = view.transform @ (0, 0)
    right, _ = view.transform @ (128, 128)
    assert left < X0 + 100 * RES and right > X0 + N * RES  # the pad runs off the composite
    outside_cols = int(np.ceil((X0 + N * RES - left) / view.transform.a))
    assert np.isnan(view.array[:, :, outside_cols + 1 :]).all()
    assert np.isfinite(view.array[:, :, : outside_cols - 1]).all()
    assert 0.5 < view.clear_fraction < 1.0


def test_read_window_prefers_the_composite_holding_the_centroid_then_the_clearest(tmp_path):
    here = write_composite(tmp_path / "here.tif", FOREST)
    # A neighbour 3 km east: the window around a detection near the shared edge reaches into it.
    east = write_composite(tmp_path / "east.tif", MINE, origin=(X0 + N * RES, Y0))
    geom = utm_box_lonlat(140, 160, 280, 295)  # inside `here`, 50 m from `east`
    assert read_window([east, here], geom).source == str(here)
    assert read_window([here, east], geom).source == str(here)
    # Both hold the centroid (cells overlap by their margins): the one clearer in the window wins.
    cloudy = write_composite(tmp_path / "cloudy.tif", FOREST, nan_rows=slice(0, 200))
    assert read_window([cloudy, here], geom).source == str(here)
    # Neither holds it (a detection just east of both): the clearer window.
    outside = utm_box_lonlat(140, 160, 303, 310)
    assert read_window([cloudy, here], outside).source == str(here)
    assert read_window([east, here], outside).source == str(east)  # `east` holds this one
    with pytest.raises(ValueError):
        read_window([], geom)


def test_read_window_names_a_missing_band(tmp_path):
    path = write_composite(tmp_path / "c.tif", {"B02": 0.1, "B03": 0.1}, bands=("B02", "B03"))
    with pytest.raises(InputDataError, match="B04"):
        read_window([path], MINE_LONLAT)


# --- thumbnail -------------------------------------------------------------------------------------


def panel(image, k, size=256):
    x0 = k * (size + GAP_PX)
    return image[LABEL_PX:, x0 : x0 + size]


def test_thumbnail_shows_the_mine_bright_after_and_forest_before(composites):
    before_path, after_path = composites
    before, after = read_window([before_path], MINE_LONLAT), read_window([after_path], MINE_LONLAT)
    image = thumbnail(before, after, MINE_LONLAT, ("2021 — before", "2023 — first detected"))
    assert image.dtype == np.uint8 and image.shape == (LABEL_PX + 256, 2 * 256 + GAP_PX, 3)
    # The mine's interior in panel pixels, kept clear of the 2 px outline.
    inv = ~after.transform
    c0, r0 = inv @ (X0 + (MINE_PX[2] + 3) * RES, Y0 - (MINE_PX[0] + 3) * RES)
    c1, r1 = inv @ (X0 + (MINE_PX[3] - 3) * RES, Y0 - (MINE_PX[1] - 3) * RES)
    inside = (slice(int(r0), int(r1)), slice(int(c0), int(c1)))
    b = panel(image, 0)[inside].reshape(-1, 3).astype(float).mean(0)
    a = panel(image, 1)[inside].reshape(-1, 3).astype(float).mean(0)
    assert a.mean() > 200 and b.mean() < 110  # bright sediment after, dark forest before
    assert b[1] > b[0] and b[1] > b[2]  # forest: green the strongest
    # Same stretch in both: forest outside the outline looks identical in the two panels.
    np.testing.assert_array_equal(panel(image, 0)[5:20, 5:20], panel(image, 1)[5:20, 5:20])
    expected = np.round((np.clip((0.07 - STRETCH[0]) / (STRETCH[1] - STRETCH[0]), 0, 1) ** 0.7) * 255)
    assert panel(image, 0)[10, 10, 1] == expected
    # The outline, in its colour, on both panels, around (not inside) the mine.
    for k in (0, 1):
        hits = np.all(panel(image, k) == OUTLINE_RGB, axis=-1)
        assert hits.sum() > 4 * 40
        assert not hits[inside].any()
        rows, cols = np.nonzero(hits)
        assert rows.min() >= int(r0) - 12 and rows.max() <= int(r1) + 12
    # Label strips carry light text on the dark strip.
    assert (image[:LABEL_PX, :256] > 200).all(-1).sum() > 30
    assert (image[:LABEL_PX, 256 + GAP_PX :] > 200).all(-1).sum() > 30


def test_thumbnail_without_a_before_view_is_grey_with_a_note(composites):
    _, after_path = composites
    after = read_window([after_path], MINE_LONLAT)
    image = thumbnail(None, after, MINE_LONLAT, ("before", "2021 — first detected"))
    left = panel(image, 0)
    grey = np.all(left == MISSING_RGB, axis=-1)
    assert grey.mean() > 0.9 and not grey.all()  # grey, with the note written on it
    assert not np.all(left == OUTLINE_RGB, axis=-1).any()  # nothing to outline on
    assert np.all(panel(image, 1) == OUTLINE_RGB, axis=-1).any()


def test_thumbnail_draws_no_data_grey_and_refuses_mismatched_views(composites):
    before_path, _ = composites
    view = read_window([before_path], MINE_LONLAT)
    cloudy = View(np.full_like(view.array, np.nan), view.crs, view.transform, view.band_names, view.source)
    image = thumbnail(cloudy, view, MINE_LONLAT, ("a", "b"))
    assert np.all(panel(image, 0) == MISSING_RGB, axis=-1).mean() > 0.9
    small = read_window([before_path], MINE_LONLAT, size_px=64)
    with pytest.raises(ValueError, match="one size"):
        thumbnail(small, view, MINE_LONLAT, ("a", "b"))


# --- write_evidence --------------------------------------------------------------------------------


def detections_file(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def detection(ident, geom, cells, first):
    props = {"id": ident, "score": 0.9, "area_ha": 9.0, "status": "new", "first_detected": first}
    if cells is not None:
        props["cells"] = cells
    return {"type": "Feature", "geometry": mapping(geom) if geom is not None else None, "properties": props}


def test_write_evidence_writes_one_png_per_detection_and_the_index(tmp_path, composites, caplog):
    before_path, after_path = composites
    cloudy = write_composite(tmp_path / "2022.tif", FOREST, nan_rows=slice(0, N))
    periods = ["2020", "2021", "2022", "2023"]
    comps = {"2021": {"c1": before_path}, "2022": {"c1": cloudy}, "2023": {"c1": after_path}}  # 2020 missing
    dets = detections_file(
        tmp_path / "demo.geojson",
        [detection("demo-00001", MINE_LONLAT, ["c1"], "2023"), detection("demo-00002", MINE_LONLAT, ["c1"], "2021")],
    )
    out = tmp_path / "publish" / "evidence"
    with caplog.at_level(logging.WARNING, logger="garimpo.publish.evidence"):
        index = write_evidence(dets, comps, periods, out)
    assert index == {
        "demo-00001": {"path": "evidence/demo-00001.png", "before": "2021", "after": "2023"},
        "demo-00002": {"path": "evidence/demo-00002.png", "before": None, "after": "2021"},
    }
    assert "c1" in caplog.text and "2020" in caplog.text  # the missing composite, named once
    assert caplog.text.count("no composite") == 1
    from PIL import Image

    with Image.open(out / "demo-00001.png") as im:
        assert im.mode == "RGB" and im.size == (2 * 256 + GAP_PX, LABEL_PX + 256)
        first = np.asarray(im)
    assert panel(first, 1).mean() > panel(first, 0).mean()  # the mine brightens the after panel
    with Image.open(out / "demo-00002.png") as im:
        assert np.all(panel(np.asarray(im), 0) == MISSING_RGB, axis=-1).mean() > 0.9
    # Deterministic: the same inputs give the same bytes; no temporary files left.
    again = write_evidence(dets, comps, periods, tmp_path / "again", relative_to=tmp_path)
    assert again["demo-00001"]["path"] == "again/demo-00001.png"
    for name in ("demo-00001.png", "demo-00002.png"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["demo-00001.png", "demo-00002.png"]


def test_write_evidence_falls_back_to_a_cloudy_before(tmp_path, composites):
    _, after_path = composites
    half = write_composite(tmp_path / "2021.tif", FOREST, nan_rows=slice(0, 150))  # mine window ~10 % clear
    dets = detections_file(tmp_path / "d.geojson", [detection("d1", MINE_LONLAT, ["c1"], "2023")])
    comps = {"2021": {"c1": half}, "2023": {"c1": after_path}}
    index = write_evidence(dets, comps, ["2021", "2023"], tmp_path / "ev")
    assert index["d1"]["before"] == "2021"
    # Missing everywhere before: no before, and a missing "after" composite is a grey panel, not a crash.
    index = write_evidence(dets, {"2023": {}}, ["2021", "2023"], tmp_path / "ev2")
    assert index["d1"] == {"path": "ev2/d1.png", "before": None, "after": "2023"}


@pytest.mark.parametrize(
    "feature, words",
    [
        (detection("demo-7", MINE_LONLAT, None, "2023"), ["demo-7", "cells"]),
        (detection("demo-7", MINE_LONLAT, [], "2023"), ["demo-7", "cells"]),
        (detection("demo-7", None, ["c1"], "2023"), ["demo-7", "geometry"]),
        (detection("demo-7", MINE_LONLAT, ["c1"], "1999"), ["demo-7", "1999"]),
        (detection("../escape", MINE_LONLAT, ["c1"], "2023"), ["escape", "id"]),
    ],
)
def test_write_evidence_names_the_bad_detection_and_the_file(tmp_path, composites, feature, words):
    dets = detections_file(tmp_path / "bad.geojson", [feature])
    with pytest.raises(InputDataError) as err:
        write_evidence(dets, {"2023": {"c1": composites[1]}}, ["2021", "2023"], tmp_path / "ev")
    for word in [*words, "bad.geojson"]:
        assert word in str(err.value)
    assert not (tmp_path / "escape.png").exists()


def test_write_evidence_refuses_duplicate_ids(tmp_path, composites):
    dets = detections_file(
        tmp_path / "dup.geojson",
        [detection("d1", MINE_LONLAT, ["c1"], "2023"), detection("d1", MINE_LONLAT, ["c1"], "2023")],
    )
    with pytest.raises(InputDataError, match="'d1'"):
        write_evidence(dets, {"2023": {"c1": composites[1]}}, ["2023"], tmp_path / "ev")


# --- real Sentinel-2 bytes -------------------------------------------------------------------------


def test_thumbnail_of_real_sentinel2_reflectance(shared_dir, tmp_path):
    """Earth Search COGs of 29RKH (decimated to 100 m; baseline 02.14, reflectance = DN / 10000)."""
    from rasterio.windows import Window

    root = shared_dir / "data/s2-real/29RKH_20200219_L2A"
    item = json.loads((root / "S2A_29RKH_20200219_0_L2A.json").read_text())
    when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    window = Window(500, 500, 80, 80)  # 8 km of desert at 100 m
    reflectance = []
    for band, key in (("B02", "blue"), ("B03", "green"), ("B04", "red")):
        radiometry = decide(item["id"], item["properties"], when, item["assets"][key])
        assert radiometry.offset == 0.0 and radiometry.scale == pytest.approx(1e-4)
        with rasterio.open(root / f"{band}.tif") as src:
            dn = src.read(1, window=window)
            transform, crs = src.window_transform(window), src.crs
        assert (dn > 0).all()  # inside the swath: no nodata here
        reflectance.append(radiometry.reflectance(dn, 0))
    stack = np.stack(reflectance)
    path = tmp_path / "29RKH.tif"
    profile = dict(driver="GTiff", width=80, height=80, count=3, dtype="float32", crs=crs, transform=transform)
    with rasterio.open(path, "w", nodata=float("nan"), **profile) as dst:
        dst.write(stack)
        for i, band in enumerate(("B02", "B03", "B04"), start=1):
            dst.set_band_description(i, band)
    # A 1 km square in the middle of the composite.
    ox, oy = transform.c, transform.f
    geom = reproject(box(ox + 3500, oy - 4500, ox + 4500, oy - 3500), "EPSG:32629", "EPSG:4326")
    view = read_window([path], geom, min_size_m=3000)
    assert view.clear_fraction == 1.0
    # The window covers 30 x 30 composite pixels; the view's band means are theirs.
    col, row = ~transform @ (view.transform.c, view.transform.f)
    n = int(round(view.transform.a * 256 / 100.0))
    assert n == 30 and col == pytest.approx(round(col)) and row == pytest.approx(round(row))
    r0, c0 = int(round(row)), int(round(col))
    direct = stack[::-1, r0 : r0 + n, c0 : c0 + n]  # B04, B03, B02
    np.testing.assert_allclose(view.array.mean(axis=(1, 2)), direct.mean(axis=(1, 2)), rtol=0.01)
    assert 0.05 < float(direct.mean()) < 0.5  # plausible desert reflectance
    image = thumbnail(view, view, geom, ("2020 — before", "2020 — first detected"))
    after = panel(image, 1).reshape(-1, 3)
    assert after.std() > 1.0 and 0 < after.mean() < 255  # not blank
    keep = ~np.all(after == OUTLINE_RGB, axis=-1)
    stretched = np.clip((direct - STRETCH[0]) / (STRETCH[1] - STRETCH[0]), 0, 1) ** 0.7 * 255
    np.testing.assert_allclose(after[keep].mean(0), stretched.mean(axis=(1, 2)), atol=3.0)


def test_read_window_applies_the_gdal_scale_of_integer_composites(tmp_path):
    path = tmp_path / "dn.tif"
    dn = np.full((3, N, N), 1400, np.uint16)  # DN: reflectance 0.14 after scale 1e-4, offset 0
    dn[:, :100] = 0  # nodata
    profile = dict(driver="GTiff", width=N, height=N, count=3, dtype="uint16", crs=EPSG, nodata=0)
    with rasterio.open(path, "w", transform=Affine(RES, 0, X0, 0, -RES, Y0), **profile) as dst:
        dst.write(dn)
        dst.scales, dst.offsets = (1e-4,) * 3, (0.0,) * 3
        for i, band in enumerate(("B02", "B03", "B04"), start=1):
            dst.set_band_description(i, band)
    view = read_window([path], utm_box_lonlat(80, 120, 140, 160))
    assert np.nanmedian(view.array) == pytest.approx(0.14)
    assert 0.3 < view.clear_fraction < 0.7  # the nodata rows are NaN, not reflectance 0
