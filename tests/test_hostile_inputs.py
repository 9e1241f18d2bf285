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
import shutil
from datetime import UTC

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
from garimpo.training.images import fetch_point_tiles, import_local_images

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
    return import_local_images([{"path": str(folder), **(spec or AMW)}], tmp_path / "tiles", key=KEY, bands=bands)


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
        "gdal_edit.py -scale",
    ):
        assert word in str(exc.value)
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
    (tmp_path / "cut.png").write_bytes(_cut(amw_png.read_bytes()))
    stats = {"bands": {b: {"p2": 0.0, "p98": 0.3} for b in ("B04", "B03", "B02")}}
    with pytest.raises(InputDataError, match=rf"cut\.png \(from {key}\) cannot be read.*truncated"):
        read_chip(tmp_path / "cut.png", ["B04"], stats, encoding="amw_l1c_rgb", key=key)


# ---------------------------------------------------------------- kind 5: the tile cache


def _tile_cache_corruptions():
    def rewrite(path, names, size):
        write_raster(
            path,
            np.zeros((len(names), size, size), np.float32),
            EPSG,
            Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
            names,
        )

    def pixels_cut(path):
        """The same tile as a COG (header first), cut short in its pixels: it opens, and fails when read."""
        r = read_raster(path)
        write_raster(path, r.array, r.crs, r.transform, r.band_names, tags=r.tags, cog=True)
        path.write_bytes(path.read_bytes()[:-100])
        with rasterio.open(path) as src, pytest.raises(rasterio.errors.RasterioIOError):
            src.read()

    return {
        "truncated": lambda p: p.write_bytes(_cut(p.read_bytes())),
        "pixels cut short": pixels_cut,
        "empty": lambda p: p.write_bytes(b""),
        "not a GeoTIFF": lambda p: p.write_text('{"not": "a tile"}'),
        "other bands": lambda p: rewrite(p, ["B08"], 20),
        "other size": lambda p: rewrite(p, ["B04"], 7),
    }


@pytest.mark.parametrize("corruption", list(_tile_cache_corruptions()))
def test_an_unusable_cached_tile_is_deleted_and_fetched_again(tiny_catalog, tmp_path, caplog, corruption):
    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    req = ImageryRequest(("B04",), ("2021-01-01", "2025-12-31"), 20)
    g = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 64, 64)
    lon, lat = (g.bbox_lonlat()[0] + g.bbox_lonlat()[2]) / 2, (g.bbox_lonlat()[1] + g.bbox_lonlat()[3]) / 2
    pts = pd.DataFrame({"point_id": ["p1"], "lon": [lon], "lat": [lat], "source": ["t"], "name": [""]})
    first = read_raster(fetch_point_tiles(pts, src, req, 200, tmp_path / "out", tmp_path / "cache").path[0])
    (cached,) = (tmp_path / "cache").glob("*.tif")
    (tmp_path / "out" / "p1.tif").unlink()  # the output is a hard link of the cache entry: break it first
    _tile_cache_corruptions()[corruption](cached)
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        idx = fetch_point_tiles(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"tile cache file {cached} cannot be used" in warning and "deleted, fetching the tile again" in warning
    assert idx.status.tolist() == ["ok"]
    again = read_raster(idx.path[0])
    assert again.band_names == first.band_names and again.tags["scene_ids"] == first.tags["scene_ids"]
    np.testing.assert_array_equal(again.array, first.array)
    np.testing.assert_array_equal(read_raster(cached).array, first.array)  # the cache holds a good tile again


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

    from garimpo.imagery.stac import RetryPolicy, search_items

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
