"""Shared fixtures: tiny georeferenced rasters and a local STAC catalog built on the fly."""

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from browser import browser  # noqa: E402, F401  (the headless Chromium fixture, for the web map's tests)

SHARED = Path(__file__).resolve().parents[2] / "shared"
# A real place: Tapajós, UTM zone 21S.
EPSG = "EPSG:32721"
ORIGIN = (600000.0, 9320000.0)


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (only present in the project's CI and dev machines)")
    return SHARED


# `make test-fast` leaves out tests marked `workflow` (they start Snakemake) or `slow` (they train a
# network or build a full-size world). A test that starts Snakemake is found by its source, so a new one
# cannot slip into the fast run unmarked.
_STARTS_SNAKEMAKE = ('"-m", "snakemake"', "snakemake(", '"snakemake",')
_SLOW_MODULES = {"test_workflow", "test_slurm_profile", "test_lint"}


def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        func = getattr(item, "function", None)
        source = inspect.getsource(func) if func is not None else ""
        if item.module.__name__.rsplit(".", 1)[-1] in _SLOW_MODULES or any(s in source for s in _STARTS_SNAKEMAKE):
            item.add_marker(pytest.mark.workflow)


def write_band_cog(path, array, transform, nodata=0, crs=EPSG):
    import rasterio
    from rasterio.shutil import copy as rio_copy

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)
    rio_copy(tmp, path, driver="COG")
    tmp.unlink()


def make_item(root, item_id, when, baseline, cloud, bands_dn, scl, res=10.0, origin=ORIGIN, epsg=EPSG):
    """A pystac Item with one COG per band (dict band -> uint16 DN array at 10 m) and SCL at 20 m."""
    import pystac
    from pyproj import Transformer

    h, w = next(iter(bands_dn.values())).shape
    t10 = Affine(res, 0, origin[0], 0, -res, origin[1])
    t20 = Affine(2 * res, 0, origin[0], 0, -2 * res, origin[1])
    to_ll = Transformer.from_crs(epsg, "EPSG:4326", always_xy=True)
    xs = [origin[0], origin[0] + w * res]
    ys = [origin[1] - h * res, origin[1]]
    lon, lat = to_ll.transform([xs[0], xs[1], xs[1], xs[0]], [ys[0], ys[0], ys[1], ys[1]])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    geom = {"type": "Polygon", "coordinates": [[[lon[i], lat[i]] for i in range(4)] + [[lon[0], lat[0]]]]}
    item = pystac.Item(
        item_id,
        geom,
        bbox,
        when,
        {"eo:cloud_cover": cloud, "s2:processing_baseline": baseline},
        collection="sentinel-2-l2a",
    )
    for band, arr in bands_dn.items():
        p = Path(root) / item_id / f"{band}.tif"
        write_band_cog(p, arr, t10, crs=epsg)
        item.add_asset(band, pystac.Asset(str(p), media_type=pystac.MediaType.COG, roles=["data"]))
    p = Path(root) / item_id / "SCL.tif"
    write_band_cog(p, scl, t20, crs=epsg)
    item.add_asset("SCL", pystac.Asset(str(p), media_type=pystac.MediaType.COG, roles=["data"]))
    return item


@pytest.fixture
def tiny_catalog(tmp_path):
    """Two scenes over a 64x64 px (640 m) area: one pre-2022 (no offset), one post (offset +1000), with a cloud."""
    import pystac

    rng = np.random.default_rng(0)
    refl = {"B02": 0.02, "B03": 0.045, "B04": 0.025, "B08": 0.30, "B11": 0.14, "B12": 0.06}
    catalog = pystac.Catalog("tiny", "tiny test catalog")
    collection = pystac.Collection(
        "sentinel-2-l2a",
        "test",
        pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])),
    )
    catalog.add_child(collection)
    scenes = [
        ("S2A_OLD", datetime(2021, 8, 10, tzinfo=UTC), "03.01", 0.0, 5.0),
        ("S2B_NEW", datetime(2023, 7, 15, tzinfo=UTC), "05.09", 1000.0, 9.0),
    ]
    for item_id, when, baseline, offset, cloud in scenes:
        dn = {
            b: (np.full((64, 64), v) * 10000 + offset + rng.normal(0, 5, (64, 64))).astype(np.uint16)
            for b, v in refl.items()
        }
        scl = np.full((32, 32), 4, dtype=np.uint8)
        if item_id == "S2B_NEW":
            scl[:8, :8] = 9  # cloud in the top-left 16x16 px at 10 m
            for b in dn:
                dn[b][:16, :16] = 5000 + int(offset)
        collection.add_item(make_item(tmp_path / "assets", item_id, when, baseline, cloud, dn, scl))
    catalog.normalize_hrefs(str(tmp_path / "catalog"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return tmp_path / "catalog" / "catalog.json", refl


@pytest.fixture
def restore_logging():
    """setup_logging replaces the root handlers and sys.excepthook: put them back after the test."""
    root = logging.getLogger()
    handlers, level, hook = root.handlers[:], root.level, sys.excepthook
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], sys.excepthook = handlers, hook
    root.setLevel(level)
