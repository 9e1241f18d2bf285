"""The end-to-end bench (scripts/bench_e2e.py, garimpo.synthetic.e2e_bench) at a tiny size: its items are real
Sentinel-2 L2A items to the product's reader, its composite is the product's, its JSON line adds up."""

import json
import math

import bench_e2e
import numpy as np
import pytest
import rasterio
import torch
from test_scan import META  # the scan tests' checkpoint meta: 48 px chips, their low/high

from garimpo.classifier.model import build_classifier, save_checkpoint
from garimpo.imagery.composite import fetch_composite
from garimpo.imagery.read import read_item
from garimpo.imagery.stac import ImageryRequest, Source, search_items
from garimpo.synthetic import bench_world as bw
from garimpo.synthetic import e2e_bench as eb
from garimpo.synthetic.demo_world import BAND_RES, BANDS

SIZE, ITEMS, BLOCK = 640, 6, 256  # 9 composite blocks: the halo between them matters


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A granule, its items and their composite, made in this process as the bench's children make them."""
    d = tmp_path_factory.mktemp("e2e")
    granule = d / f"granule_{SIZE}_seed7.tif"  # the names the bench caches them under
    catalog = d / f"items_{SIZE}_seed7_{ITEMS}" / "catalog.json"
    bw.generate(granule, SIZE, 7)
    gen = eb.write_catalog(granule, catalog.parent, ITEMS, 7, threads=1)
    grid = eb.granule_grid(granule)
    run = eb.run_composite(catalog, grid, d / "composite.tif", BLOCK, ITEMS, threads=2)
    cfg = eb.imagery_config(catalog, ITEMS)
    return {
        "dir": d,
        "granule": granule,
        "grid": grid,
        "catalog": catalog,
        "gen": gen,
        "run": run,
        "source": Source.from_config(cfg["source"]),
        "request": ImageryRequest.from_config(cfg),
        "composite": d / "composite.tif",
    }


@pytest.fixture(scope="module")
def bench_json(bench):
    """The bench's JSON line on those items (cached: reused), its three runs in subprocesses."""
    d = bench["dir"]
    torch.manual_seed(0)
    model = build_classifier("resnet18", 6, dropout=0.0)  # untrained: the bench measures speed, not skill
    meta = {**META, "arch": "resnet18", "bands": list(BANDS), "in_channels": 6, "dropout": 0.0}
    save_checkpoint(d / "model.pth", model, meta)
    argv = ["--size", str(SIZE), "--items", str(ITEMS), "--bench-dir", str(d), "--threads", "2"]
    argv += ["--block-px", str(BLOCK), "--model", str(d / "model.pth")]
    return bench_e2e.main(argv), argv


def test_item_specs_are_dates_of_one_year_with_their_own_clouds():
    specs = eb.item_specs(6, 7)
    dates = [s.scene.datetime[:10] for s in specs]
    assert len(set(dates)) == 6 and all(d.startswith(f"{eb.YEAR}-") for d in dates)
    assert all(eb.COVER_RANGE[0] <= s.cover <= eb.COVER_RANGE[1] for s in specs)
    assert [s.index for s in specs if s.swath] == list(eb.OUT_OF_SWATH)
    assert all(float(s.scene.baseline) >= 4.0 and s.scene.has_offset for s in specs)
    with pytest.raises(ValueError):
        eb.item_specs(0, 7)


def test_overviews_halve_as_the_real_cogs_do():
    # the real 100 m copies in shared/data/s2-real: 1098 px -> [2, 4], 549 px -> [2]; a full 10 m band: 5 levels
    assert [eb.overview_count(n) for n in (1098, 549, 10980, 5490, 300)] == [2, 1, 5, 4, 1]


def test_cogs_are_stored_as_the_services_store_them(bench):
    with rasterio.open(bench["granule"]) as g:
        left, top = g.transform.c, g.transform.f
    items = sorted(p for p in bench["catalog"].parent.iterdir() if p.is_dir() and p.name.startswith("S2"))
    assert len(items) == ITEMS
    for item in items:
        for key in eb.ASSETS:
            with rasterio.open(item / f"{key}.tif") as src:
                res = BAND_RES[key]
                assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                assert src.res == (res, res) and (src.transform.c, src.transform.f) == (left, top)
                assert src.shape == (SIZE * 10 // res, SIZE * 10 // res)
                assert src.block_shapes == [(512, 512)] and src.compression.name == "deflate"
                assert src.overviews(1) and src.nodata == 0
                assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                assert src.descriptions == (key,)


def test_items_read_back_through_the_product_reader(bench):
    grid, req = bench["grid"], bench["request"]
    items = search_items(bench["source"], grid.bbox_lonlat(), req.period, req.max_cloud)
    assert len(items) == ITEMS
    with rasterio.open(bench["granule"]) as g:
        truth = g.read().astype(np.float32) / 10000
    gen = bench["gen"]["items"]
    assert json.loads((bench["catalog"].parent / "bench_items.json").read_text())["items"] == gen
    specs = {s.scene.datetime: s for s in eb.item_specs(ITEMS, 7)}
    for item in items:
        spec = specs[item.properties["datetime"]]
        if spec.swath is None:  # the SCL's cloud + cirrus is about the cover the clouds were drawn with
            assert item.properties["eo:cloud_cover"] == pytest.approx(100 * spec.cover, abs=8)
        assert item.properties["s2:processing_baseline"] == eb.BASELINE
        assert item.properties["eo:cloud_cover"] == gen[item.id]["eo:cloud_cover"]
        refl, clear = read_item(item, bench["source"], req.bands, grid, req.cloud_buffer_m)
        assert refl.shape == (6, SIZE, SIZE) and clear.shape == (SIZE, SIZE)
        assert 0.3 < clear.mean() < 0.97  # clouds, their buffer, out of swath
        # the +1000 DN offset is gone (it would shift every band by 0.1): what is left is gain and noise
        for b in range(6):
            d = refl[b][clear] - truth[b][clear]
            assert abs(float(np.median(d))) < 0.01, (item.id, BANDS[b])
        # out of swath: nodata, never clear
        invalid = np.isnan(refl[0])
        assert (invalid.mean() > 0.05) == (gen[item.id]["nodata_fraction"] > 0)
        assert not clear[invalid].any()
        # cloud pixels are bright where the SCL says high-probability cloud
        with rasterio.open(bench["catalog"].parent / item.id / "SCL.tif") as s:
            scl = np.repeat(np.repeat(s.read(1), 2, 0), 2, 1)
        if (scl == 9).any():
            assert np.nanmedian(refl[0][scl == 9]) > 0.3


def test_the_composite_is_the_whole_grid_composite(bench):
    whole, used = fetch_composite(bench["source"], bench["request"], bench["grid"])
    with rasterio.open(bench["composite"]) as src:
        got = src.read()
        assert src.descriptions == tuple(bench["request"].bands)
    assert got.shape == whole.shape == (6, SIZE, SIZE)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6, equal_nan=True)
    assert np.isfinite(got).mean() > 0.95
    assert sorted(bench["run"]["items_used"]) == sorted(it.id for it in used)


KEYS = (
    "grid_km2",
    "composite_km2_per_core_s",
    "detect_km2_per_core_s",
    "end_to_end_km2_per_core_s",
    "decode_floor_km2_per_core_s",
    "ratio_to_floor",
    "composite_wall_s",
    "detect_wall_s",
    "end_to_end_wall_s",
    "floor_decode_s",
    "floor_wall_s",
    "composite_peak_rss_mb",
    "detect_peak_rss_mb",
    "floor_peak_rss_mb",
    "peak_rss_mb",
    "bytes_read",
    "bytes_decoded",
    "items",
    "items_used",
    "size_px",
    "threads",
    "block_px",
    "cpu_load_1min_at_end",
)


@pytest.mark.slow  # seven subprocesses, a scan among them (~10 s)
def test_the_json_line_adds_up(bench, bench_json):
    out, _ = bench_json
    for k in KEYS:
        assert k in out, k
        assert isinstance(out[k], int | float) and math.isfinite(out[k]) and out[k] > 0, (k, out[k])
    assert out["grid_px"] == [SIZE, SIZE] and out["grid_km2"] == pytest.approx(SIZE**2 * 100 / 1e6)
    assert (out["items"], out["items_used"], out["threads"], out["block_px"]) == (ITEMS, ITEMS, 2, BLOCK)
    e2e = out["composite_wall_s"] + out["detect_wall_s"]
    # figures and times have four significant digits
    assert out["end_to_end_wall_s"] == pytest.approx(e2e, rel=2e-3)
    assert out["ratio_to_floor"] == pytest.approx(e2e / out["floor_decode_s"], rel=3e-3)
    km2 = out["grid_km2"]
    assert out["end_to_end_km2_per_core_s"] == pytest.approx(km2 / (e2e * 2), rel=3e-3)
    assert out["decode_floor_km2_per_core_s"] == pytest.approx(km2 / (out["floor_decode_s"] * 2), rel=2e-3)
    assert out["peak_rss_mb"] == max(out[f"{m}_peak_rss_mb"] for m in ("composite", "detect", "floor"))
    # 4 bands at 10 m, 2 at 20 m and the SCL (uint8, 20 m) of each item, decoded whole
    assert out["floor_assets"] == 7 * ITEMS
    assert out["bytes_decoded"] == ITEMS * SIZE**2 * (4 * 2 + 2 * 2 / 4 + 1 / 4)
    assert out["catalog_generation"] == bench["gen"]  # the items were reused, not written again


@pytest.mark.slow
def test_modes_left_out_reuse_their_last_run(bench, bench_json):
    d = bench["dir"]
    catalog_mtime = bench["catalog"].stat().st_mtime
    before = {m: json.loads((d / f"run_{SIZE}_seed7_{ITEMS}_{m}.json").read_text()) for m in bench_e2e.MODES}
    again = bench_e2e.main(bench_json[1] + ["--modes", "floor"])
    assert set(again["reused_runs"]) == {"composite", "detect"}
    assert again["composite_wall_s"] == pytest.approx(before["composite"]["wall_s"], rel=1e-3)
    assert again["detect_wall_s"] == pytest.approx(before["detect"]["wall_s"], rel=1e-3)
    assert bench["catalog"].stat().st_mtime == catalog_mtime  # items reused, not written again
    assert again["ratio_to_floor"] == pytest.approx(again["end_to_end_wall_s"] / again["floor_decode_s"], rel=3e-3)
    floor = json.loads((d / f"run_{SIZE}_seed7_{ITEMS}_floor.json").read_text())
    assert floor["wall_s"] != before["floor"]["wall_s"]  # measured again
