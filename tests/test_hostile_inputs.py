"""Hostile inputs (issue 17): images of an unexpected kind, caches that cannot be trusted, unreadable files.

Kind 4: an image is read for what its header says it is (GDAL's data type, band count and colour
interpretation), converted when there is an honest way (alpha -> nodata, a declared scale -> reflectance)
and otherwise refused, naming the file, the config key and what to do. Kind 5: a cache entry that cannot
be used is deleted and rebuilt with a warning naming it, never trusted and never a dead end. Kind 6: a
file that cannot be read is named with its key, not left to "Read failed. See previous exception".
Real bytes where they exist: Amazon Mining Watch chips and Sentinel-2 L2A DN from ../shared.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from conftest import EPSG, ORIGIN
from PIL import Image
from rasterio.windows import Window

from garimpo.errors import InputDataError
from garimpo.geo.raster import Grid, read_image, read_raster, write_raster
from garimpo.imagery.cache import SearchCache
from garimpo.imagery.stac import ImageryRequest, Source
from garimpo.training.images import fetch_training_images, import_local_images

KEY = "positives.local_dirs"
AMW = {"encoding": "amw_l1c_rgb", "pixel_size_m": 10}
SCALE = np.float32(0.3 / 255)  # amw_l1c_rgb: reflectance = value / 255 * 0.3
L2A = "data/s2-real/29RKH_20200219_L2A"  # Earth Search COGs, uint16 DN, baseline 02.14 (no offset)

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture
def amw_png(shared_dir):
    """A real Amazon Mining Watch chip (8-bit RGB PNG, 48 x 48 px)."""
    return sorted((shared_dir / "data/amw-chips/positive").glob("*.png"))[0]


@pytest.fixture
def amw_rgb(amw_png):
    with Image.open(amw_png) as img:
        assert img.mode == "RGB"
        return np.asarray(img).copy()


def _import(folder, tmp_path, bands=(), **spec):
    return import_local_images([{"path": str(folder), **(spec or AMW)}], tmp_path / "images", key=KEY, bands=bands)


def _refused(folder, tmp_path, *words, bands=(), **spec):
    """import_local_images refuses the folder with a message naming the file, the key and ``words``."""
    with pytest.raises(InputDataError) as exc:
        _import(folder, tmp_path, bands, **spec)
    msg = str(exc.value)
    for word in (KEY, *words):
        assert word in msg, msg
    return msg


def _real_dn(shared_dir, bands=("B04", "B03", "B02")):
    """A 48 x 48 px window of real L2A DN (uint16) of each band, with its CRS and transform."""
    arrays = []
    for band in bands:
        with rasterio.open(shared_dir / L2A / f"{band}.tif") as src:
            win = Window(400, 400, 48, 48)
            arrays.append(src.read(1, window=win))
            crs, transform = src.crs, src.window_transform(win)
    return np.stack(arrays), crs, transform


def _geotiff(path, array, crs=EPSG, transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), names=None, **profile):  # noqa: B008 (Affine is immutable)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype.name,
        crs=crs,
        transform=transform,
        **profile,
    ) as dst:
        dst.write(array)
        for i, name in enumerate(names or [], start=1):
            dst.set_band_description(i, name)
    return path


# ---------------------------------------------------------------- kind 4: 8-bit images of every mode


@pytest.mark.shared
def test_rgb_png_is_decoded_by_its_encoding(amw_png, amw_rgb, tmp_path):
    folder = tmp_path / "chips"
    folder.mkdir()
    shutil.copy(amw_png, folder / "a.png")
    r = read_raster(_import(folder, tmp_path).path[0])
    assert r.band_names == ("B04", "B03", "B02")
    np.testing.assert_allclose(r.array, amw_rgb.transpose(2, 0, 1) * SCALE, rtol=1e-6)


@pytest.mark.shared
def test_rgba_alpha_becomes_nodata_with_a_note(amw_rgb, tmp_path, caplog):
    """Transparent pixels become NaN (nodata, as cloud in a composite); partly transparent ones keep their colour."""
    rgba = np.dstack([amw_rgb, np.full(amw_rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0
    rgba[10:20, :, 3] = 128
    folder = tmp_path / "chips"
    folder.mkdir()
    Image.fromarray(rgba, "RGBA").save(folder / "a.png")
    with caplog.at_level(logging.INFO, logger="garimpo"):
        r = read_raster(_import(folder, tmp_path).path[0])
    assert r.band_names == ("B04", "B03", "B02") and r.array.shape == (3, 48, 48)
    assert np.isnan(r.array[:, :10]).all() and not np.isnan(r.array[:, 10:]).any()
    np.testing.assert_allclose(r.array[:, 10:], amw_rgb[10:].transpose(2, 0, 1) * SCALE, rtol=1e-6)
    note = " ".join(rec.getMessage() for rec in caplog.records)
    assert str(folder / "a.png") in note and "480 of 2304 pixels" in note and "NaN" in note


def test_a_png_transparent_colour_is_nodata_too(tmp_path):
    rgb = np.full((8, 8, 3), 90, np.uint8)
    rgb[0, :3] = 0
    folder = tmp_path / "chips"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "a.png", transparency=(0, 0, 0))  # a tRNS colour key, no alpha channel
    r = read_image(folder / "a.png", "amw_l1c_rgb", KEY)
    assert np.isnan(r.array[:, 0, :3]).all() and np.isnan(r.array).sum() == 9


def test_an_image_with_no_visible_pixel_is_refused(tmp_path):
    folder = tmp_path / "chips"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(folder / "blank.png")
    _refused(folder, tmp_path, "blank.png", "no visible pixel", "remove it")


@pytest.mark.shared
@pytest.mark.parametrize(
    "mode, fmt, words",
    [
        ("L", "png", ["greyscale", "1 band)", "make colour up", "true-colour"]),
        ("LA", "png", ["greyscale", "1 band and alpha"]),
        ("1", "png", ["greyscale"]),
        ("P", "png", ["palette", "colour table", "true-colour"]),
        ("L", "jpeg", ["greyscale"]),
        ("CMYK", "jpeg", ["CMYK JPEG", "print"]),
    ],
)
def test_images_that_are_not_true_colour_are_refused(amw_png, tmp_path, mode, fmt, words):
    """A grey or palette image is not three bands of reflectance: refused, never converted to made-up colour."""
    folder = tmp_path / "chips"
    folder.mkdir()
    name = f"c.{'jpg' if fmt == 'jpeg' else fmt}"
    with Image.open(amw_png) as img:
        img.convert(mode).save(folder / name)
    _refused(folder, tmp_path, str(folder / name), *words)


@pytest.mark.shared
def test_rgb_jpeg_is_read_as_true_colour(amw_png, amw_rgb, tmp_path):
    folder = tmp_path / "chips"
    folder.mkdir()
    with Image.open(amw_png) as img:
        img.save(folder / "c.jpg", quality=95)
    r = read_raster(_import(folder, tmp_path).path[0])
    assert r.band_names == ("B04", "B03", "B02")
    # Lossy, but the same rendering: within a few 8-bit steps of the PNG on average.
    assert np.abs(r.array - amw_rgb.transpose(2, 0, 1) * SCALE).mean() < 3 * SCALE


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["grey", "rgb"])
@pytest.mark.parametrize("encoding", [True, False])
def test_16_bit_pngs_are_refused(amw_rgb, tmp_path, layout, encoding):
    """value / 255 would be wrong (a 16-bit grey PNG became an all-white chip). Pillow opens a 16-bit RGB PNG as
    plain "RGB", dropping the low byte; GDAL's data type tells."""
    folder = tmp_path / "chips"
    folder.mkdir()
    wide = amw_rgb.transpose(2, 0, 1).astype(np.uint16) * 257
    if layout == "grey":
        Image.fromarray(wide[0]).save(folder / "c.png")
    else:
        with rasterio.open(folder / "c.png", "w", driver="PNG", width=48, height=48, count=3, dtype="uint16") as dst:
            dst.write(wide)
    spec = AMW if encoding else {"pixel_size_m": 10}
    msg = _refused(
        folder, tmp_path, str(folder / "c.png"), "16-bit values (uint16)", "GeoTIFF of float32 reflectance", **spec
    )
    assert ("decodes 8-bit values" in msg) == encoding


def test_8_bit_geotiffs_must_fit_the_encoding(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (1, 16, 16), dtype=np.uint8)
    rgb = rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)
    cases = {
        "grey": (_geotiff(tmp_path / "grey" / "a.tif", grey), ["greyscale"]),
        "two": (_geotiff(tmp_path / "two" / "a.tif", np.concatenate([grey, grey])), ["2 8-bit colour bands"]),
        "named": (
            _geotiff(tmp_path / "named" / "a.tif", rgb, names=["B08", "B11", "B12"]),
            ["names its 8-bit bands B08, B11, B12", "B04, B03, B02"],
        ),
    }
    for folder, (path, words) in cases.items():
        _refused(path.parent, tmp_path / f"out-{folder}", str(path), *words)
    # Unnamed bands are the encoding's, in its order; an alpha band is a mask.
    _geotiff(
        tmp_path / "ok" / "a.tif",
        np.concatenate([rgb, np.where(np.arange(16) < 4, 0, 255).astype(np.uint8)[None, :, None].repeat(16, 2)]),
        photometric="RGB",
        alpha="YES",
    )
    r = read_raster(_import(tmp_path / "ok", tmp_path).path[0])
    assert r.band_names == ("B04", "B03", "B02") and np.isnan(r.array[:, :4]).all()
    np.testing.assert_allclose(r.array[:, 4:], rgb[:, 4:] * SCALE, rtol=1e-6)


# ---------------------------------------------------------------- kind 4: GeoTIFFs of reflectance


@pytest.mark.shared
def test_integer_geotiffs_need_a_declared_scale(shared_dir, tmp_path):
    """Real L2A DN (uint16): digital numbers, refused without a scale; read through the scale the file declares."""
    dn, crs, transform = _real_dn(shared_dir)
    raw = _geotiff(tmp_path / "raw" / "a.tif", dn, crs, transform, names=["B04", "B03", "B02"])
    with pytest.raises(InputDataError) as exc:
        import_local_images([raw.parent], tmp_path / "t1", key=KEY)
    for word in (
        str(raw),
        KEY,
        "uint16 values with no scale",
        "digital numbers",
        "(DN - 1000) / 10000",
        "with the project's environment: python -c",
    ):
        assert word in str(exc.value)
    assert "gdal_edit" not in str(exc.value)  # GDAL's command-line tools are not in the project's environment
    # The advice runs as given (with this environment's python) and makes the file readable.
    command = re.search(r"environment: (python -c '.*?') \(offset", str(exc.value)).group(1)
    subprocess.run([sys.executable, *shlex.split(command)[1:]], check=True)
    r = read_raster(import_local_images([raw.parent], tmp_path / "t0", key=KEY).path[0])
    np.testing.assert_allclose(r.array, dn.astype(np.float32) * np.float32(1e-4) - np.float32(0.1), rtol=1e-5)
    scaled = _geotiff(tmp_path / "scaled" / "a.tif", dn, crs, transform, names=["B04", "B03", "B02"], nodata=0)
    with rasterio.open(scaled, "r+") as dst:
        dst.scales, dst.offsets = (1e-4,) * 3, (0.0,) * 3
    r = read_raster(import_local_images([scaled.parent], tmp_path / "t2", key=KEY).path[0])
    expect = np.where(dn == 0, np.nan, dn.astype(np.float32) * np.float32(1e-4))
    np.testing.assert_allclose(r.array, expect, rtol=1e-6)
    assert r.band_names == ("B04", "B03", "B02") and 0 < np.nanmax(r.array) < 1


def test_geotiff_bands_need_names_and_nodata_becomes_nan(tmp_path):
    arr = np.full((3, 16, 16), 0.1, np.float32)
    arr[:, 0, 0] = -9999
    unnamed = _geotiff(tmp_path / "unnamed" / "a.tif", arr)
    with pytest.raises(
        InputDataError,
        match=r"a\.tif \(from positives\.local_dirs\) has bands without names.*"
        r"rio edit-info --bidx 1 --description B04",
    ):
        import_local_images([unnamed.parent], tmp_path / "t1", key=KEY)
    named = _geotiff(tmp_path / "named" / "a.tif", arr, names=["B04", "B03", "B02"], nodata=-9999)
    r = read_raster(import_local_images([named.parent], tmp_path / "t2", key=KEY).path[0])
    assert np.isnan(r.array[:, 0, 0]).all() and np.nanmin(r.array) == pytest.approx(0.1)


def test_images_without_the_classifier_bands_are_refused(tmp_path):
    path = _geotiff(tmp_path / "nir" / "a.tif", np.full((2, 16, 16), 0.2, np.float32), names=["B08", "B11"])
    with pytest.raises(InputDataError) as exc:
        import_local_images([path.parent], tmp_path / "t", key=KEY, bands=["B04", "B03", "B02"])
    for word in (str(path), KEY, "['B04', 'B03', 'B02']", "classifier.bands"):
        assert word in str(exc.value)


# ---------------------------------------------------------------- kind 6: files that cannot be read


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.shared
@pytest.mark.parametrize(
    "name, make, why",
    [
        ("empty.png", lambda png, tmp: b"", "the file is empty (0 bytes)"),
        ("empty.tif", lambda png, tmp: b"", "the file is empty (0 bytes)"),
        ("cut.png", lambda png, tmp: _cut(png.read_bytes()), "truncated"),
        ("cut.jpg", lambda png, tmp: _cut(_jpeg_bytes(png, tmp)), "truncated"),
        ("cut.tif", lambda png, tmp: _cut(_cog_bytes(tmp)), "TIFFReadEncodedTile() failed"),
        ("text.tif", lambda png, tmp: b"not an image\n", "not recognized as being in a supported file format"),
    ],
)
def test_unreadable_files_name_the_file_the_key_and_what_to_do(amw_png, tmp_path, name, make, why):
    folder = tmp_path / "chips"
    folder.mkdir()
    (folder / name).write_bytes(make(amw_png, tmp_path))
    spec = {"pixel_size_m": 10} if name.endswith(".tif") else AMW  # GeoTIFFs of reflectance take no encoding
    msg = _refused(folder, tmp_path, str(folder / name), why, "remove it from its folder or replace it", **spec)
    assert "See previous exception" not in msg


def _jpeg_bytes(png, tmp):
    with Image.open(png) as img:
        img.save(tmp / "full.jpg", quality=95)
    return (tmp / "full.jpg").read_bytes()


def _cog_bytes(tmp):
    """A COG of float reflectance: its header comes first, so a cut file opens and fails at the first pixel read."""
    arr = np.random.default_rng(0).uniform(0, 0.3, (3, 300, 300)).astype(np.float32)
    write_raster(
        tmp / "full.tif", arr, EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), ["B04", "B03", "B02"], cog=True
    )
    return (tmp / "full.tif").read_bytes()


@pytest.mark.shared
def test_chip_sets_name_their_key_for_unreadable_and_refused_chips(amw_png, tmp_path):
    from garimpo.classifier.evaluation import chip_set_contract, read_chip
    from garimpo.contract import image_folder

    key = "evaluation.chip_sets.heldout"
    folder = image_folder({"path": str(tmp_path), **AMW}, key)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputDataError, match=rf"empty\.png \(from {key}\) cannot be read.*empty \(0 bytes\)"):
        chip_set_contract([tmp_path / "empty.png"], folder)
    with Image.open(amw_png) as img:
        img.convert("L").save(tmp_path / "grey.png")
    with pytest.raises(InputDataError, match=rf"grey\.png \(from {key}\) is a greyscale image"):
        chip_set_contract([tmp_path / "grey.png"], folder)  # refused before any chip is scored
    # Every bad chip of the folder in one error, not one per run; a good chip is not named.
    with Image.open(amw_png) as img:
        img.convert("RGB").save(tmp_path / "good.png")
        img.convert("P").save(tmp_path / "palette.png")
    bad = [tmp_path / n for n in ("empty.png", "grey.png", "palette.png")]
    with pytest.raises(InputDataError, match=r"3 chip\(s\) of .* cannot be scored") as err:
        chip_set_contract([tmp_path / "good.png", *bad], folder, ["B04", "B03", "B02"])
    assert all(p.name in str(err.value) for p in bad) and "good.png" not in str(err.value)
    # A chip without a band the model reads is named too.
    with pytest.raises(InputDataError, match=r"good\.png .*without \['B08'\] that the model reads"):
        chip_set_contract([tmp_path / "good.png"], folder, ["B04", "B08"])
    (tmp_path / "cut.png").write_bytes(_cut(amw_png.read_bytes()))
    stats = {"bands": {b: {"p2": 0.0, "p98": 0.3} for b in ("B04", "B03", "B02")}}
    with pytest.raises(InputDataError, match=rf"cut\.png \(from {key}\) cannot be read.*truncated"):
        read_chip(tmp_path / "cut.png", ["B04"], stats, encoding="amw_l1c_rgb", key=key)


# ---------------------------------------------------------------- kind 5: the training image cache


def _image_cache_corruptions():
    def rewrite(path, names, size):
        write_raster(
            path,
            np.zeros((len(names), size, size), np.float32),
            EPSG,
            Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
            names,
        )

    def pixels_cut(path):
        """The same image as a COG (header first), cut short in its pixels: it opens, and fails when read."""
        r = read_raster(path)
        write_raster(path, r.array, r.crs, r.transform, r.band_names, tags=r.tags, cog=True)
        path.write_bytes(path.read_bytes()[:-100])
        with rasterio.open(path) as src, pytest.raises(rasterio.errors.RasterioIOError):
            src.read()

    return {
        "truncated": lambda p: p.write_bytes(_cut(p.read_bytes())),
        "pixels cut short": pixels_cut,
        "empty": lambda p: p.write_bytes(b""),
        "not a GeoTIFF": lambda p: p.write_text('{"not": "an image"}'),
        "other bands": lambda p: rewrite(p, ["B08"], 20),
        "other size": lambda p: rewrite(p, ["B04"], 7),
    }


@pytest.mark.parametrize("corruption", list(_image_cache_corruptions()))
def test_an_unusable_cached_training_image_is_deleted_and_fetched_again(tiny_catalog, tmp_path, caplog, corruption):
    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    req = ImageryRequest(("B04",), ("2021-01-01", "2025-12-31"), 20)
    g = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 64, 64)
    lon, lat = (g.bbox_lonlat()[0] + g.bbox_lonlat()[2]) / 2, (g.bbox_lonlat()[1] + g.bbox_lonlat()[3]) / 2
    pts = pd.DataFrame({"point_id": ["p1"], "lon": [lon], "lat": [lat], "source": ["t"], "name": [""]})
    first = read_raster(fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache").path[0])
    (cached,) = (tmp_path / "cache").glob("*.tif")
    (tmp_path / "out" / "p1.tif").unlink()  # the output is a hard link of the cache entry: break it first
    _image_cache_corruptions()[corruption](cached)
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        idx = fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"cached training image {cached} cannot be used" in warning
    assert "deleted, fetching the image again" in warning
    assert idx.status.tolist() == ["ok"]
    again = read_raster(idx.path[0])
    assert again.band_names == first.band_names and again.tags["scene_ids"] == first.tags["scene_ids"]
    np.testing.assert_array_equal(again.array, first.array)
    np.testing.assert_array_equal(read_raster(cached).array, first.array)  # the cache holds a good image again


# ---------------------------------------------------------------- kind 5: the STAC search cache


def _feature():
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2_X",
        "geometry": None,
        "bbox": [0, 0, 1, 1],
        "properties": {"datetime": "2023-01-01T00:00:00Z", "eo:cloud_cover": 1.0},
        "links": [],
        "assets": {"B04": {"href": "B04.tif"}},
    }


STAC_CACHE_FAULTS = {
    "a list": "[]",
    "null": "null",
    "no features": '{"type": "FeatureCollection"}',  # pystac reads this as zero items: "no scene" in silence
    "features not a list": '{"type": "FeatureCollection", "features": {}}',
    "a feature that is a string": '{"type": "FeatureCollection", "features": ["x"]}',
    "an empty feature": '{"type": "FeatureCollection", "features": [{}]}',
    "a feature without id": json.dumps(
        {"type": "FeatureCollection", "features": [{k: v for k, v in _feature().items() if k != "id"}]}
    ),
    "assets a list": json.dumps({"type": "FeatureCollection", "features": [{**_feature(), "assets": []}]}),
    "a bbox of text": json.dumps({"type": "FeatureCollection", "features": [{**_feature(), "bbox": "x"}]}),
    "no datetime": json.dumps({"type": "FeatureCollection", "features": [{**_feature(), "properties": {}}]}),
    "a bad datetime": json.dumps(
        {"type": "FeatureCollection", "features": [{**_feature(), "properties": {"datetime": "soon"}}]}
    ),
    "cut short": '{"type": "FeatureCollection", "features": [{"type": "Fea',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "empty": "",
}


@pytest.mark.parametrize("fault", list(STAC_CACHE_FAULTS))
def test_an_unusable_stac_search_cache_entry_is_a_miss_and_deleted(tmp_path, caplog, fault):
    cache = SearchCache(tmp_path)
    content = STAC_CACHE_FAULTS[fault]
    p = cache.path("k")
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        assert cache.get("k") is None
    assert not p.exists()
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert f"STAC search cache file {p} cannot be used" in warning and "deleted, searching again" in warning


def test_a_good_entry_is_still_a_hit(tmp_path):
    cache = SearchCache(tmp_path)
    cache.path("k").write_text(json.dumps({"type": "FeatureCollection", "features": [_feature()]}))
    assert [i.id for i in cache.get("k")] == ["S2_X"]
    cache.path("e").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert cache.get("e") == []  # a search that found nothing is a valid answer


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore:Could not parse bucket")  # pystac migrating Earth Search's storage fields
def test_real_recorded_searches_as_cache_entries(shared_dir, tmp_path, caplog):
    """A real Earth Search answer reads as a cache entry; the same bytes cut short are a miss, not a crash."""
    page = (shared_dir / "data/stac-real/earth-search_search_page1.json").read_bytes()
    cache = SearchCache(tmp_path)
    cache.path("k").write_bytes(page)
    assert len(cache.get("k")) == len(json.loads(page)["features"]) > 0
    cache.path("k").write_bytes(_cut(page))
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        assert cache.get("k") is None
    assert not cache.path("k").exists() and "JSONDecodeError" in caplog.text


def test_search_runs_again_after_a_bad_cache_entry(tmp_path, caplog):
    """Through the search the rules call: a FeatureCollection without features is not taken for "no scene"."""
    from datetime import datetime

    from conftest import make_item
    from stac_server import StacServer

    from garimpo.imagery.retry import RetryPolicy
    from garimpo.imagery.stac import search_items

    dn = {"B04": np.full((16, 16), 1250, np.uint16)}
    items = [
        make_item(
            tmp_path / "assets",
            f"S2_{i}",
            datetime(2023, 3 + i, 1, tzinfo=UTC),
            "05.09",
            2.0 + i,
            dn,
            np.full((8, 8), 4, np.uint8),
        )
        for i in range(2)
    ]
    g = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 16, 16)
    with StacServer(items, page_size=5) as srv:
        src = Source(
            "planetary_computer",
            srv.url,
            retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=5.0),
            cache_dir=str(tmp_path / "cache"),
        )
        first = search_items(src, g.bbox_lonlat(), ("2023-01-01", "2023-12-31"), 20)
        (entry,) = (tmp_path / "cache").iterdir()
        entry.write_text('{"type": "FeatureCollection"}')
        n = srv.count
        with caplog.at_level(logging.WARNING, logger="garimpo"):
            second = search_items(src, g.bbox_lonlat(), ("2023-01-01", "2023-12-31"), 20)
        assert srv.count > n  # searched again
    assert [i.id for i in second] == [i.id for i in first] == ["S2_0", "S2_1"]
    assert str(entry) in caplog.text and len(json.loads(entry.read_text())["features"]) == 2  # rewritten


@pytest.mark.shared
def test_every_unusable_image_of_a_folder_is_named_at_once(amw_png, tmp_path):
    """A folder of thousands of chips with a few bad ones: one run names them all, not one per run."""
    folder = tmp_path / "chips"
    folder.mkdir()
    shutil.copy(amw_png, folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(_cut(amw_png.read_bytes()))
    with Image.open(amw_png) as img:
        img.convert("L").save(folder / "grey.png")
    msg = _refused(
        folder, tmp_path, "3 images of positives.local_dirs cannot be used", "empty.png", "cut.png", "grey.png"
    )
    assert "good.png" not in msg


# ---------------------------------------------------------------- review: one training image per local file


def _tif(path, value):
    return _geotiff(path, np.full((3, 16, 16), value, np.float32), names=["B04", "B03", "B02"])


def test_files_of_one_name_in_subfolders_make_one_image_each(tmp_path):
    """chips/a/x.tif and chips/b/x.tif were both training image local-chips-x (one file, two index rows)."""
    folder = tmp_path / "dups"
    _tif(folder / "x.tif", 0.1)
    _tif(folder / "a" / "x.tif", 0.2)
    _tif(folder / "b" / "x.tif", 0.3)
    idx = import_local_images([folder], tmp_path / "images", key=KEY)
    # Files at the top of the folder keep the ids they always had.
    assert sorted(idx.image_id) == ["local-dups-a__x", "local-dups-b__x", "local-dups-x"]
    assert idx.path.nunique() == 3
    values = {rec.image_id: float(read_raster(rec.path).array.mean()) for rec in idx.itertuples()}
    assert values == pytest.approx({"local-dups-x": 0.1, "local-dups-a__x": 0.2, "local-dups-b__x": 0.3})


def test_files_that_would_make_one_image_are_refused_naming_both(tmp_path):
    one, other = _tif(tmp_path / "dups" / "a__x.tif", 0.1), _tif(tmp_path / "dups" / "a" / "x.tif", 0.2)
    msg = _refused(tmp_path / "dups", tmp_path / "o1", str(one), str(other), "local-dups-a__x", "rename one")
    assert "would both become training image" in msg
    # Two folders of one name in the same key: their files would overwrite each other too.
    first, second = _tif(tmp_path / "d1" / "chips" / "x.tif", 0.1), _tif(tmp_path / "d2" / "chips" / "x.tif", 0.2)
    with pytest.raises(InputDataError) as exc:
        import_local_images([first.parent, second.parent], tmp_path / "o2", key=KEY)
    assert str(first) in str(exc.value) and str(second) in str(exc.value) and "local-chips-x" in str(exc.value)


# ---------------------------------------------------------------- review: sizes and the contract from the header


def _png_header_only(path, width, height, rows=4):
    """An RGB PNG declaring ``width`` x ``height`` whose pixel data stops after ``rows`` rows: its header reads,
    and any decoder fails on it, so a refusal that names its size was made before decoding."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = zlib.compress(b"".join(b"\0" + bytes(3 * width) for _ in range(rows)))[:-6]  # the stream cut short
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_a_huge_image_is_refused_from_its_header(tmp_path):
    """A 40 KB GeoTIFF declaring 60000 x 60000 x 3 float32 (40 GiB) failed with a bare MemoryError; an
    11000 x 11000 PNG was decoded in full before anything refused it."""
    tif = tmp_path / "big" / "huge.tif"
    tif.parent.mkdir()
    with rasterio.open(
        tif,
        "w",
        driver="GTiff",
        width=60000,
        height=60000,
        count=3,
        dtype="float32",
        crs=EPSG,
        transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        compress="deflate",
        sparse_ok=True,
        BIGTIFF="YES",
    ) as dst:
        for i, name in enumerate(["B04", "B03", "B02"], start=1):
            dst.set_band_description(i, name)
    assert tif.stat().st_size < 500_000
    words = ("60000 x 60000 px of 3 bands", "40.2 GiB", "1 GiB", "chips")
    _refused(tif.parent, tmp_path / "o1", str(tif), *words, pixel_size_m=10)
    png = _png_header_only(tmp_path / "pngs" / "huge.png", 11000, 11000)
    msg = _refused(png.parent, tmp_path / "o2", str(png), "11000 x 11000 px", "1.4 GiB", "leave it out")
    assert "truncated" not in msg  # never decoded (its pixel data is cut short: see the test below)
    # Chip sets (evaluation) check the same header before scoring anything.
    from garimpo.classifier.evaluation import chip_set_contract
    from garimpo.contract import image_folder

    with pytest.raises(InputDataError, match=r"huge\.png \(from evaluation\.chip_sets\.x\) is 11000 x 11000 px"):
        chip_set_contract([png], image_folder({"path": str(png.parent), **AMW}, "evaluation.chip_sets.x"))


def test_the_contract_is_checked_from_the_header_before_the_pixels(tmp_path):
    """A chip that is not square, or of no known pixel size, is refused as such, not after decoding it (these
    PNGs cannot be decoded: a refusal for being cut short would mean their pixels were read first)."""
    wide = _png_header_only(tmp_path / "wide" / "w.png", 64, 48)
    with pytest.raises(InputDataError, match="truncated"):
        read_image(wide, "amw_l1c_rgb", KEY)  # what reading its pixels says
    _refused(wide.parent, tmp_path / "o1", str(wide), "48 x 64 px", "crop the images")
    square = _png_header_only(tmp_path / "nopx" / "s.png", 48, 48)
    msg = _refused(square.parent, tmp_path / "o2", str(square), "no georeferencing in metres", encoding="amw_l1c_rgb")
    assert "encoding: amw_l1c_rgb, pixel_size_m: 10" in msg


# ---------------------------------------------------------------- review: advice that fits the image


def test_a_reflectance_geotiff_in_degrees_is_told_to_declare_metres_or_reproject(tmp_path):
    """The advice was to add `encoding: amw_l1c_rgb`, which a float GeoTIFF is then refused for."""
    deg = Affine(0.0001, 0, -55.0, 0, -0.0001, -6.0)
    path = _geotiff(
        tmp_path / "deg" / "a.tif", np.full((3, 16, 16), 0.1, np.float32), "EPSG:4326", deg, ["B04", "B03", "B02"]
    )
    with pytest.raises(InputDataError) as exc:
        import_local_images([path.parent], tmp_path / "o1", key=KEY)
    msg = str(exc.value)
    for word in (str(path), KEY, "georeferenced in degrees (EPSG:4326)", "about 11.1 m", "pixel_size_m: 10"):
        assert word in msg, msg
    assert "encoding" not in msg
    command = re.search(r"\(e\.g\. (rio warp .*?), then crop it to a square and name its bands", msg).group(1).split()
    assert command[2:] == [str(path), "OUT.tif", "--dst-crs", "EPSG:32721", "--res", "10"]
    rio = shutil.which("rio", path=str(Path(sys.executable).parent)) or pytest.skip("rio not beside this python")
    subprocess.run([rio, *command[1:2], str(path), str(tmp_path / "OUT.tif"), *command[4:]], check=True)
    with rasterio.open(tmp_path / "OUT.tif") as src:
        assert src.crs.to_epsg() == 32721 and src.res == (10.0, 10.0)
    # Declaring the pixel size with the folder, as advised, is enough.
    idx = import_local_images([{"path": str(path.parent), "pixel_size_m": 11}], tmp_path / "o2", key=KEY)
    assert idx.pixel_size_m.tolist() == ["11"] and idx.footprint_m.tolist() == ["176"]


def test_non_finite_values_become_nodata_with_a_count(tmp_path, caplog):
    arr = np.full((3, 16, 16), 0.1, np.float32)
    arr[0, 0, 0], arr[1, 0, 1], arr[2, 1, 0] = np.inf, -np.inf, np.nan
    arr[:, 2, 2] = np.inf
    path = _geotiff(tmp_path / "inf" / "a.tif", arr, names=["B04", "B03", "B02"])
    with caplog.at_level(logging.INFO, logger="garimpo"):
        r = read_raster(import_local_images([path.parent], tmp_path / "o1", key=KEY).path[0])
    assert np.isfinite(r.array).sum() == 3 * 256 - 6 and np.nanmax(r.array) == pytest.approx(0.1)
    assert np.isnan(r.array[0, 0, 0]) and np.isnan(r.array[:, 2, 2]).all()
    (note,) = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert str(path) in note and "4 of 256 pixels hold +inf, -inf or NaN" in note and "read as NaN" in note
    # With the nodata mask hiding the rest, nothing is left.
    arr = np.full((3, 4, 4), -9999, np.float32)
    arr[:, 0, 0] = np.inf
    bad = _geotiff(tmp_path / "none" / "a.tif", arr, names=["B04", "B03", "B02"], nodata=-9999)
    _refused(bad.parent, tmp_path / "o2", str(bad), "no visible pixel", "+inf, -inf or NaN", pixel_size_m=10)


# ---------------------------------------------------------------- review: caches that are well-formed but wrong


def _api_scenes(root, n=2):
    from datetime import datetime

    from conftest import make_item

    dn = {"B04": np.full((16, 16), 1250, np.uint16)}
    return [
        make_item(
            root, f"S2_{i}", datetime(2023, 3 + i, 1, tzinfo=UTC), "05.09", 2.0 + i, dn, np.full((8, 8), 4, np.uint8)
        )
        for i in range(n)
    ]


def _api_source(url, tmp_path):
    from garimpo.imagery.retry import RetryPolicy

    retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=5.0)
    return Source("planetary_computer", url, retry=retry, cache_dir=str(tmp_path / "cache"), signer=lambda h: h)


def _edit_entry(entry, edit):
    data = json.loads(entry.read_text())
    for feature in data["features"]:
        edit(feature)
    entry.write_text(json.dumps(data))


GRID16 = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 16, 16)
REQ = ImageryRequest(("B04",), ("2023-01-01", "2023-12-31"), 20)

WRONG_ENTRIES = {
    "a baseline that is a number": lambda f: f["properties"].update({"s2:processing_baseline": 5}),
    "no assets": lambda f: f.update(assets={}),
}


@pytest.mark.parametrize("wrong", list(WRONG_ENTRIES))
def test_a_cached_search_whose_every_item_is_unusable_is_searched_again(tmp_path, caplog, wrong):
    """Was: "cache hit", every item skipped, an all-NaN composite written, and the entry kept for every rerun."""
    from stac_server import StacServer

    from garimpo.imagery.composite import write_composite

    with StacServer(_api_scenes(tmp_path / "assets"), page_size=5, asset_root=tmp_path / "assets") as srv:
        src = _api_source(srv.url, tmp_path)
        write_composite(tmp_path / "first.tif", src, REQ, GRID16, allow_empty=True)
        (entry,) = (tmp_path / "cache").iterdir()
        _edit_entry(entry, WRONG_ENTRIES[wrong])
        n = srv.count_path("/search")
        with caplog.at_level(logging.WARNING, logger="garimpo"):
            used = write_composite(tmp_path / "composite.tif", src, REQ, GRID16, allow_empty=True)
        assert srv.count_path("/search") > n  # searched again
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"STAC search cache file {entry} cannot be used (none of its 2 items can be read for ['B04']" in warning
    assert "deleted, searching again" in warning and "writing an empty" not in warning
    assert [it.id for it in used] == ["S2_0", "S2_1"]
    np.testing.assert_allclose(read_raster(tmp_path / "composite.tif").array, 0.025, rtol=1e-5)
    assert json.loads(entry.read_text())["features"][0]["properties"]["s2:processing_baseline"] == "05.09"


def test_cached_items_whose_assets_are_gone_are_searched_again(tmp_path, caplog):
    """A catalog reprocessed since the search: the cached hrefs no longer resolve (ImageryAccessError)."""
    from stac_server import StacServer

    from garimpo.errors import ImageryAccessError
    from garimpo.geo.raster import point_grid
    from garimpo.imagery.stac import search_items

    root = tmp_path / "assets"
    pts = pd.DataFrame(
        {
            "point_id": ["p1"],
            "lon": [(GRID16.bbox_lonlat()[0] + GRID16.bbox_lonlat()[2]) / 2],
            "lat": [(GRID16.bbox_lonlat()[1] + GRID16.bbox_lonlat()[3]) / 2],
            "source": ["t"],
            "name": [""],
        }
    )
    with StacServer(_api_scenes(root), page_size=5, asset_root=root) as srv:
        src = _api_source(srv.url, tmp_path)
        first = fetch_training_images(pts, src, REQ, 160, tmp_path / "o1", tmp_path / "tiles1")
        (entry,) = (tmp_path / "cache").iterdir()
        gone = f"{srv.url}/assets/moved/B04.tif"
        _edit_entry(entry, lambda f: f["assets"]["B04"].update(href=gone))
        n = srv.count_path("/search")
        with caplog.at_level(logging.WARNING, logger="garimpo"):
            again = fetch_training_images(pts, src, REQ, 160, tmp_path / "o2", tmp_path / "tiles2")
        assert srv.count_path("/search") == n + 1
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"STAC search cache file {entry} cannot be used (reading its items failed" in warning
    assert gone in warning and "HTTP response code: 404" in warning and "deleted, searching again" in warning
    np.testing.assert_array_equal(read_raster(again.path[0]).array, read_raster(first.path[0]).array)
    # A fresh answer that fails the same way is the error it always was (searched once more, not forever).
    with StacServer(_api_scenes(tmp_path / "assets2"), page_size=5, asset_root=tmp_path / "assets2") as srv:
        src = _api_source(srv.url, tmp_path)
        search_items(src, point_grid(pts.lon[0], pts.lat[0], 160).bbox_lonlat(), REQ.period, REQ.max_cloud)  # cached
        shutil.rmtree(tmp_path / "assets2")  # never read yet (GDAL keeps what it read of a URL in memory)
        with pytest.raises(ImageryAccessError, match="HTTP response code: 404"):
            fetch_training_images(pts, src, REQ, 160, tmp_path / "o4", tmp_path / "tiles4")
        assert srv.count_path("/search") == 2


def test_a_folder_where_a_cache_file_goes_is_refused_naming_it(tiny_catalog, tmp_path):
    """Was: "deleted, fetching the image again", then IsADirectoryError."""
    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    req = ImageryRequest(("B04",), ("2021-01-01", "2025-12-31"), 20)
    lon, lat = (
        (GRID16.bbox_lonlat()[0] + GRID16.bbox_lonlat()[2]) / 2,
        (GRID16.bbox_lonlat()[1] + GRID16.bbox_lonlat()[3]) / 2,
    )
    pts = pd.DataFrame({"point_id": ["p1"], "lon": [lon], "lat": [lat], "source": ["t"], "name": [""]})
    fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("*.tif")
    cached.unlink()
    (cached / "keep").mkdir(parents=True)
    with pytest.raises(
        IsADirectoryError, match=rf"training image cache path {cached}: a folder sits where a cache file goes; remove"
    ):
        fetch_training_images(pts, src, req, 200, tmp_path / "out2", tmp_path / "cache")
    assert (cached / "keep").is_dir()  # never deleted: it may hold anything
    search = SearchCache(tmp_path / "search")
    search.path("k").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=r"STAC search cache path .*search-k\.json: a folder sits where"):
        search.get("k")
