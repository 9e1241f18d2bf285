from datetime import UTC, datetime

import numpy as np
import pytest
from affine import Affine
from conftest import EPSG, ORIGIN

from garimpo.errors import NoImageryError
from garimpo.geo.raster import Grid, point_grid, read_raster, utm_epsg, write_raster
from garimpo.imagery.assets import plan_item
from garimpo.imagery.composite import composite, fetch_composite
from garimpo.imagery.stac import ImageryRequest, Source, search_items


def test_utm_epsg_for_amazon_points():
    assert utm_epsg(-56.3, -6.2) == 32721  # Tapajós
    assert utm_epsg(-61.0, 2.0) == 32620  # Roraima, north of the equator
    assert utm_epsg(-60.0, 2.0) == 32621  # a zone edge belongs to the zone east of it
    assert utm_epsg(-72.5, -9.0) == 32718  # Acre


def test_point_grid_is_centred_and_snapped():
    g = point_grid(-56.3, -6.2, 5000, 10)
    assert (g.width, g.height) == (500, 500)
    assert g.crs == "EPSG:32721"
    assert g.transform.c % 10 == 0 and g.transform.f % 10 == 0
    w, s, e, n = g.bbox_lonlat()
    assert w < -56.3 < e and s < -6.2 < n
    assert 0.04 < e - w < 0.05  # 5 km is about 0.045 degrees here


def test_write_read_roundtrip_keeps_georeferencing(tmp_path):
    arr = np.arange(2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
    arr[0, 0, 0] = np.nan
    t = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    p = write_raster(tmp_path / "t.tif", arr, EPSG, t, ["B04", "B08"], tags={"scene_ids": "a;b"})
    r = read_raster(p)
    assert r.crs == EPSG and r.transform == t and r.band_names == ("B04", "B08")
    assert np.isnan(r.array[0, 0, 0]) and r.array[1, 5, 5] == arr[1, 5, 5]
    assert r.tags["scene_ids"] == "a;b"
    np.testing.assert_array_equal(r.band("B08"), arr[1])
    with pytest.raises(KeyError, match="B02"):
        r.band("B02")
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_static_search_filters_cloud_and_period(tiny_catalog):
    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    items = search_items(src, [-180, -90, 180, 90], ["2021-01-01", "2025-12-31"], 20)
    assert [i.id for i in items] == ["S2A_OLD", "S2B_NEW"]  # sorted by cloud cover
    assert [i.id for i in search_items(src, [-180, -90, 180, 90], ["2021-01-01", "2025-12-31"], 6)] == ["S2A_OLD"]
    assert [i.id for i in search_items(src, [-180, -90, 180, 90], ["2023-01-01", "2025-12-31"], 20)] == ["S2B_NEW"]
    acre = point_grid(-72.5, -9.0, 1000).bbox_lonlat()  # far from the items
    assert search_items(src, acre, ["2021-01-01", "2025-12-31"], 20) == []


def test_baseline_offset_removed_and_cloud_masked(tiny_catalog):
    path, refl = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    items = search_items(src, [-180, -90, 180, 90], ["2021-01-01", "2025-12-31"], 20)
    # Offsets from each item's processing baseline (03.01: none; 05.09: ESA's -1000 DN).
    assert [
        (plan_item(i, ["B04"]).radiometry["B04"].offset, plan_item(i, ["B04"]).radiometry["B04"].rule) for i in items
    ] == [(0.0, "processing_baseline<04.00"), (-0.1, "processing_baseline>=04.00")]
    grid = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 64, 64)
    # No cloud buffer: the masks below are the SCL's own, pixel for pixel.
    req = ImageryRequest(("B04", "B08"), ("2021-01-01", "2025-12-31"), 20, "median", cloud_buffer_m=0)
    image, used = fetch_composite(src, req, grid)
    assert image.shape == (2, 64, 64)
    # Both dates agree after harmonisation: the median sits on the true reflectance.
    np.testing.assert_allclose(np.nanmedian(image[0]), refl["B04"], atol=0.002)
    np.testing.assert_allclose(np.nanmedian(image[1]), refl["B08"], atol=0.002)
    # The cloud (0.5 reflectance) of the 2023 scene never reaches the composite.
    assert image[0, :16, :16].max() < 0.05
    # Only the new scene: cloudy pixels stay NaN.
    new_only = ImageryRequest(("B04",), ("2023-01-01", "2025-12-31"), 20, "least_cloudy", cloud_buffer_m=0)
    img2, used2 = fetch_composite(src, new_only, grid)
    assert [u.id for u in used2] == ["S2B_NEW"]
    assert np.isnan(img2[0, :16, :16]).all() and np.isfinite(img2[0, 20:, 20:]).all()


def test_no_scene_gives_clear_error(tiny_catalog):
    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    grid = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 8, 8)
    req = ImageryRequest(("B04",), ("2019-01-01", "2019-12-31"), 20)
    with pytest.raises(NoImageryError, match="widen imagery.period"):
        fetch_composite(src, req, grid)


def test_composite_median_and_least_cloudy():
    stack = np.array([[[[1.0, 5.0]]], [[[3.0, 7.0]]], [[[100.0, 6.0]]]], dtype=np.float32)  # (3 scenes, 1 band, 1, 2)
    clear = np.array([[[True, True]], [[True, False]], [[False, True]]])
    np.testing.assert_allclose(composite(stack, clear, "median")[0, 0], [2.0, 5.5])
    np.testing.assert_allclose(composite(stack, clear, "least_cloudy")[0, 0], [1.0, 5.0])
    with pytest.raises(ValueError):
        composite(stack, clear, "mean")


def test_earth_search_asset_keys_found_and_no_collection_name_rule():
    """Assets are found by the band they hold whatever the source kind; the offset no longer follows the
    collection name (the old ``harmonized`` key is refused with advice)."""
    import pystac

    from garimpo.errors import InputDataError
    from garimpo.imagery.assets import find_asset

    item = pystac.Item("x", None, None, datetime(2023, 7, 1, tzinfo=UTC), {})
    for key in ("blue", "red", "nir", "nir08", "scl"):
        item.add_asset(key, pystac.Asset(f"{key}.tif", media_type=pystac.MediaType.COG))
    assert [find_asset(item, b) for b in ("B02", "B04", "B08", "B8A", "SCL", "B11")] == [
        "blue",
        "red",
        "nir",
        "nir08",
        "scl",
        None,
    ]
    es = Source.from_config(
        {"kind": "earth_search", "url": "https://example.invalid", "collection": "sentinel-2-c1-l2a"}
    )
    assert not hasattr(es, "harmonized")
    with pytest.raises(InputDataError, match="harmonized is gone"):
        Source.from_config({"kind": "earth_search", "url": "https://example.invalid", "harmonized": True})


def test_clear_mask_buffers_clouds_not_nodata():
    from garimpo.imagery.sensor import SENTINEL2_L2A

    scl = np.full((9, 9), 4, np.uint8)
    scl[4, 4] = 9  # one cloudy pixel
    scl[0, 0] = 0  # no data
    m0 = SENTINEL2_L2A.clear_mask(scl, 0)
    assert m0.sum() == 79 and not m0[4, 4] and not m0[0, 0]
    m1 = SENTINEL2_L2A.clear_mask(scl, 1)
    assert m1.sum() == 81 - 5 - 1  # the cross of radius 1 around the cloud, plus the nodata pixel
    assert m1[0, 1] and not m1[3, 4] and m1[3, 3]


def test_training_image_cache_resumes_and_is_not_stale(tiny_catalog, tmp_path):
    """A second fetch reuses the cached training image; a rewritten catalog is fetched afresh."""
    import os
    import time

    import pandas as pd

    from garimpo.training.images import fetch_training_images

    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    req = ImageryRequest(("B04",), ("2021-01-01", "2025-12-31"), 20)
    g = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 64, 64)
    lon = (g.bbox_lonlat()[0] + g.bbox_lonlat()[2]) / 2
    lat = (g.bbox_lonlat()[1] + g.bbox_lonlat()[3]) / 2
    pts = pd.DataFrame({"point_id": ["p1"], "lon": [lon], "lat": [lat], "source": ["t"], "name": [""]})
    idx = fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    assert idx.status.tolist() == ["ok"] and idx.scene_ids[0] == "S2A_OLD;S2B_NEW"
    cached = list((tmp_path / "cache").glob("*.tif"))
    assert len(cached) == 1
    fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*.tif")) == cached  # reused, nothing refetched
    time.sleep(0.01)
    for item_json in path.parent.rglob("S2B_NEW.json"):
        os.utime(item_json)  # the scene was reprocessed
    fetch_training_images(pts, src, req, 200, tmp_path / "out", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.tif"))) == 2


def test_window_across_utm_zones_is_seamless(tmp_path):
    """Two granules in zones 21S and 22S, pixel values a smooth function of longitude: an image across the
    zone edge (-54 degrees) read through the warped path shows no seam, gap or jump."""
    from datetime import datetime

    import pystac
    from conftest import make_item
    from pyproj import Transformer

    def ramp(epsg, x0, y0, n=300):
        xs = x0 + (np.arange(n) + 0.5) * 10
        ys = y0 - (np.arange(n) + 0.5) * 10
        lon, _ = Transformer.from_crs(epsg, "EPSG:4326", always_xy=True).transform(*np.meshgrid(xs, ys))
        return (30000 + (lon + 54.0) * 1_000_000).astype(np.uint16)  # about 9 DN per metre eastward

    to21 = Transformer.from_crs("EPSG:4326", "EPSG:32721", always_xy=True)
    to22 = Transformer.from_crs("EPSG:4326", "EPSG:32722", always_xy=True)
    x21, y21 = to21.transform(-54.0, -6.0)
    x22, y22 = to22.transform(-54.0, -6.0)
    when = datetime(2023, 7, 15, tzinfo=UTC)
    catalog = pystac.Catalog("zones", "two UTM zones")
    scl = np.full((150, 150), 4, np.uint8)
    # Like real MGRS granules they overlap: the zone 21 one runs 500 m past the zone edge.
    o21 = (round(x21 / 10) * 10 - 2500.0, round(y21 / 10) * 10 + 1500.0)
    o22 = (round(x22 / 10) * 10, round(y22 / 10) * 10 + 1500.0)
    for item_id, epsg, origin in (("T21", "EPSG:32721", o21), ("T22", "EPSG:32722", o22)):
        dn = ramp(epsg, *origin)
        catalog.add_item(
            make_item(tmp_path / "a", item_id, when, "05.09", 1.0, {"B04": dn}, scl, origin=origin, epsg=epsg)
        )
    catalog.normalize_hrefs(str(tmp_path / "cat"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    src = Source.from_config({"kind": "local", "url": str(tmp_path / "cat" / "catalog.json")})
    grid = point_grid(-54.0, -6.0, 1000)  # centred on the zone edge, in zone 22 (the edge belongs to the east)
    image, used = fetch_composite(src, ImageryRequest(("B04",), ("2023-01-01", "2023-12-31"), 20), grid)
    assert {u.id for u in used} == {"T21", "T22"}
    band = image[0]
    assert np.isfinite(band).all()  # no gap between the granules
    step = np.diff(band, axis=1)
    # Every 10 m column step is the same ~0.009 reflectance (90 DN): no seam where the zones meet.
    assert 0.008 < np.median(step) < 0.010
    worst = np.unravel_index(np.argmax(np.abs(step - np.median(step))), step.shape)
    assert np.allclose(step, np.median(step), atol=0.0012), (worst, step[worst])


def test_blockwise_composite_equals_whole_grid_composite(tiny_catalog, tmp_path):
    """Written block by block (bounded memory), the composite is the same as composited at once."""
    import rasterio

    from garimpo.imagery.composite import write_composite

    path, _ = tiny_catalog
    src = Source.from_config({"kind": "local", "url": str(path)})
    # 70 x 66 px: larger than the data (64 x 64, the rest is NaN) and not a multiple of the block.
    grid = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 70, 66)
    # The default cloud buffer (100 m = 10 px) reaches across the 24 px blocks' edges.
    req = ImageryRequest(("B04", "B08"), ("2021-01-01", "2025-12-31"), 20, "median")
    assert req.cloud_buffer_m == 100
    whole, used = fetch_composite(src, req, grid)
    out = tmp_path / "composite.tif"
    blocks_used = write_composite(out, src, req, grid, block_px=24)
    with rasterio.open(out) as ds:
        assert [d for d in ds.descriptions] == ["B04", "B08"]
        np.testing.assert_allclose(ds.read(), whole, equal_nan=True, atol=1e-6)
        assert ds.tags()["scene_ids"] == ";".join(i.id for i in used)
        assert ds.compression.name.lower() == "zstd"  # the detect stage decodes every pixel: the faster codec
    assert [i.id for i in blocks_used] == [i.id for i in used]
    # No scene in the period: an error, or an all-NaN composite when a region-wide run must go on.
    empty = ImageryRequest(("B04",), ("2019-01-01", "2019-12-31"), 20)
    with pytest.raises(NoImageryError):
        write_composite(tmp_path / "none.tif", src, empty, grid)
    assert not (tmp_path / "none.tif").exists()
    assert write_composite(tmp_path / "none.tif", src, empty, grid, allow_empty=True) == []
    with rasterio.open(tmp_path / "none.tif") as ds:
        assert np.isnan(ds.read()).all()


def test_median_composite_equals_numpy_nanmedian_with_never_clear_pixels():
    """The fast per-pixel median is numpy's nanmedian, odd and even counts, and NaN where never clear."""
    rng = np.random.default_rng(3)
    for scenes in (1, 2, 3, 6):
        stack = rng.random((scenes, 2, 40, 40)).astype(np.float32)
        clear = rng.random((scenes, 40, 40)) < 0.6
        clear[:, :5] = False  # never clear
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # numpy warns on all-NaN pixels
            want = np.nanmedian(np.where(clear[:, None], stack, np.nan), axis=0)
        got = composite(stack, clear, "median")
        assert got.dtype == np.float32 and np.isnan(got[:, :5]).all()
        np.testing.assert_allclose(got, want, equal_nan=True, atol=1e-7)
