"""Streaming two-stage scan (garimpo.detection.scan), the bench granule generator and the bench's JSON line."""

import inspect
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from garimpo.classifier.infer import predict_proba
from garimpo.detection.batching import Batch, prefetch, rebatch
from garimpo.detection.candidates import block_mean_nan
from garimpo.detection.chip_scores import ChipScores, chip_polygons
from garimpo.detection.chips import extract_chip, match_chips, prepare_chips
from garimpo.detection.lattice import Lattice, boxes_touching, chips_touching, count_in_box, iter_blocks
from garimpo.detection.proposers import propose
from garimpo.detection.scan import brute_force_scan, two_stage_scan
from garimpo.geo.raster import band_indexes, read_bands, read_raster, write_raster
from garimpo.synthetic import bench_world as bw

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
META = {
    "bands": BANDS,
    "input_size": 48,
    "low": [0.03, 0.05, 0.03, 0.2, 0.12, 0.05],
    "high": [0.12, 0.15, 0.18, 0.32, 0.3, 0.24],
    "mean": [0.5] * 6,
    "std": [0.25] * 6,
    "threshold": 0.5,
}
STATS = {"bands": {b: {"p2": lo, "p98": hi} for b, lo, hi in zip(BANDS, META["low"], META["high"])}}


class TinyNet(nn.Module):
    """A small deterministic stand-in for the ResNet (same input/output contract), fast on CPU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 1),
        )

    def forward(self, x):
        return self.net(x)


def _render(size, seed=3, mined=0.03):
    lay = bw.make_layout(size, seed, mined_fraction=mined)
    ren = bw.Renderer(lay)
    return lay, ren.render(0, 0, size, size)


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    """A 700 x 620 px float reflectance composite (as composite_cell writes) with mines and look-alikes."""
    d = tmp_path_factory.mktemp("scan")
    lay, refl = _render(720)
    refl = refl[:, :700, :620].copy()
    refl[:, :3, :40] = np.nan  # a little nodata
    path = write_raster(d / "composite.tif", refl, bw.CRS, lay.transform, BANDS)
    return path, lay


@pytest.fixture(scope="module")
def model():
    return TinyNet().eval()


def _key(rows, cols):
    return list(zip(np.asarray(rows).tolist(), np.asarray(cols).tolist()))


@pytest.mark.parametrize(
    "shape,block,halo", [((601, 977), 240, 64), ((1000, 1500), 500, 32), ((40, 30), 96, 64), ((73, 1000), 100, 0)]
)
def test_blocks_cover_every_lattice_chip_exactly_once(shape, block, halo):
    lat = Lattice(*shape, chip=48, stride=24)
    seen = []
    for b in iter_blocks(lat, block, halo):
        r0, c0, h, w = b.buf
        for i in range(b.i0, b.i1):
            for j in range(b.j0, b.j1):
                seen.append((i, j))
                # every owned chip, with the halo, lies inside the block's buffer
                assert r0 + halo <= i * 24 and i * 24 + 48 + halo <= r0 + h
                assert c0 + halo <= j * 24 and j * 24 + 48 + halo <= c0 + w
        win = b.read
        assert win.row_off >= 0 and win.col_off >= 0
        assert win.row_off + win.height <= shape[0] and win.col_off + win.width <= shape[1]
    assert len(seen) == len(set(seen)) == lat.size
    assert set(seen) == {(i, j) for i in range(lat.n_rows) for j in range(lat.n_cols)}
    # the chips cover every pixel and stick out by less than a stride
    rows, cols = lat.origins()
    assert rows.max() + 48 >= shape[0] > rows.max() + 48 - 24 or shape[0] <= 48
    assert cols.max() + 48 >= shape[1] > cols.max() + 48 - 24 or shape[1] <= 48


def test_match_chips_equals_prepare_chips(composite):
    path, _ = composite
    r = read_raster(path)
    windows = [(0, 0), (-10, 600), (24, 48), (300, 200), (680, 610), (500, 24)]  # edges: NaN outside
    ref = prepare_chips(r, windows, 48, STATS, BANDS)
    chips = np.stack([extract_chip(r.array, a, b, 48) for a, b in windows])
    exact = match_chips(chips, META["low"], META["high"])
    np.testing.assert_array_equal(exact, ref)
    fast = match_chips(chips, META["low"], META["high"], exact=False)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)


def test_streaming_scan_equals_scoring_the_whole_image(composite, model):
    path, _ = composite
    res = brute_force_scan(
        path, model, META, block_px=200, halo=40, channels_last=False, exact_match=True, batch_size=97
    )
    r = read_raster(path)
    lat = Lattice(700, 620, 48, 24)
    rows, cols = lat.origins()
    assert res.chips_classified == res.lattice_chips == lat.size
    chips = prepare_chips(r, list(zip(rows, cols)), 48, STATS, BANDS)
    want = dict(zip(_key(rows, cols), predict_proba(model, META, chips, batch_size=64, tta=False)))
    got = dict(zip(_key(res.rows, res.cols), res.scores))
    assert set(got) == set(want)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-5)
    # the fast path (float32 matching, channels_last) gives the same scores within rounding
    fast = brute_force_scan(path, model, META, block_px=2048)
    got_fast = dict(zip(_key(fast.rows, fast.cols), fast.scores))
    np.testing.assert_allclose([got_fast[k] for k in want], list(want.values()), atol=1e-4)


def test_two_stage_scores_the_candidate_subset_of_brute_force(composite, model):
    path, _ = composite
    brute = brute_force_scan(path, model, META, block_px=480)
    # At 10 m, every chip touching a candidate: the reference the whole-image proposer gives.
    two = two_stage_scan(path, model, META, block_px=192, select="any", decimate=1)
    assert 0 < two.chips_classified < brute.chips_classified
    assert two.classifier_calls == two.chips_classified
    b = dict(zip(_key(brute.rows, brute.cols), brute.scores))
    t = dict(zip(_key(two.rows, two.cols), two.scores))
    assert set(t) <= set(b)
    np.testing.assert_allclose([t[k] for k in t], [b[k] for k in t], atol=1e-5)
    # block-wise candidates (halo 64) select the same chips as the proposer on the whole image
    r = read_raster(path)
    mask = propose({n: r.array[i] for i, n in enumerate(r.band_names)}, "spectral")
    rows, cols = Lattice(700, 620, 48, 24).origins()
    keep = chips_touching(mask, rows, cols, 48)
    assert set(_key(rows[keep], cols[keep])) == set(t)
    assert two.candidate_pixels == int(mask.sum())


def test_two_stage_centre_selection_sees_every_candidate_pixel_once(composite, model):
    from garimpo.detection.lattice import centre_boxes

    path, _ = composite
    anyc = two_stage_scan(path, model, META, block_px=192, select="any", decimate=1)
    cen = two_stage_scan(path, model, META, block_px=192, select="centre", decimate=1)
    a, c = set(_key(anyc.rows, anyc.cols)), set(_key(cen.rows, cen.cols))
    assert c <= a and len(c) < len(a)
    r = read_raster(path)
    mask = propose({n: r.array[i] for i, n in enumerate(r.band_names)}, "spectral")
    lat = Lattice(700, 620, 48, 24)
    ii, jj = np.meshgrid(np.arange(lat.n_rows), np.arange(lat.n_cols), indexing="ij")
    r0, c0, r1, c1 = (np.clip(v, 0, 10**6) for v in centre_boxes(ii.ravel(), jj.ravel(), lat))
    cover = np.zeros((700, 620), int)
    for k in range(lat.size):
        cover[r0[k] : r1[k], c0[k] : c1[k]] += 1
    assert (cover == 1).all()  # centre squares tile the raster
    sel = {
        (int(ii.ravel()[k] * 24), int(jj.ravel()[k] * 24))
        for k in range(lat.size)
        if mask[r0[k] : r1[k], c0[k] : c1[k]].any()
    }
    assert sel == c


def test_a_proposer_registered_at_run_time_drives_the_scan(composite, model):
    """A new proposer is one ``register`` call: the scan finds it by name, reads its bands, selects its chips."""
    from garimpo.detection.proposers import Proposer, register, unregister

    def bright_red(bands, params, proposer_model):
        return np.asarray(bands["B04"]) > 0.1

    path, _ = composite
    r = read_raster(path)
    register(Proposer("toy_bright_red", ("B04",), bright_red))
    try:
        got = two_stage_scan(
            path, model, META, proposer={"method": "toy_bright_red"}, block_px=192, select="any", decimate=1
        )
        mask = propose({"B04": r.array[r.band_names.index("B04")]}, "toy_bright_red")
    finally:
        unregister("toy_bright_red")
    lat = Lattice(700, 620, 48, 24)
    rows, cols = lat.origins()
    keep = chips_touching(mask, rows, cols, 48)
    assert 0 < got.chips_classified < lat.size
    assert set(_key(got.rows, got.cols)) == set(_key(rows[keep], cols[keep]))
    assert got.candidate_pixels == int(mask.sum())
    spectral = two_stage_scan(path, model, META, block_px=192, select="any", decimate=1)
    assert set(_key(spectral.rows, spectral.cols)) != set(_key(got.rows, got.cols))
    with pytest.raises(ValueError, match="toy_bright_red"):  # gone with unregister
        two_stage_scan(path, model, META, proposer={"method": "toy_bright_red"})


def test_a_proposer_that_needs_a_model_is_refused_without_one_before_reading(tmp_path, model):
    with pytest.raises(ValueError, match="proposer_model"):
        two_stage_scan(tmp_path / "absent.tif", model, META, proposer={"method": "union"})


def test_two_stage_decimated_proposer_runs_and_keeps_most_chips(composite, model):
    path, _ = composite
    full = two_stage_scan(path, model, META)
    dec = two_stage_scan(path, model, META, decimate=2)
    a, b = set(_key(full.rows, full.cols)), set(_key(dec.rows, dec.cols))
    assert len(a & b) >= 0.8 * len(a)


# --------------------------------------------------------------------------- an earlier composite as reference

FOREST = dict(B02=0.02, B03=0.045, B04=0.025, B08=0.30, B11=0.14, B12=0.06)
# Pasture / scrub on cleared land: NDVI ~0.41, neither bare soil nor water; only the vegetation-loss test sees it.
SCRUB = dict(B02=0.03, B03=0.06, B04=0.05, B08=0.12, B11=0.15, B12=0.08)
PAIR_PX = 240
OLD = (slice(40, 64), slice(40, 64))  # cleared before the earlier period: in both composites
NEW = (slice(160, 184), slice(150, 174))  # cleared between the two periods: in the later one only
PAIR_TRANSFORM = rasterio.transform.from_origin(500000.0, 9000000.0, 10.0, 10.0)


def _scene(seed, clearings, cloud=None):
    rng = np.random.default_rng(seed)
    refl = np.stack([np.full((PAIR_PX, PAIR_PX), FOREST[b], np.float32) for b in BANDS])
    for box in clearings:
        for k, b in enumerate(BANDS):
            refl[k][box] = SCRUB[b]
    refl *= rng.normal(1.0, 0.03, refl.shape).astype(np.float32)  # sensor/atmosphere noise
    if cloud is not None:
        refl[(slice(None), *cloud)] = np.nan
    return refl


def _write(path, refl, transform=PAIR_TRANSFORM, crs=bw.CRS):
    return write_raster(path, refl, crs, transform, BANDS)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two periods' composites of one cell on one grid: forest, an old clearing in both, a new one in the later."""
    d = tmp_path_factory.mktemp("pair")
    earlier = _write(d / "2022.tif", _scene(1, [OLD]))
    later = _write(d / "2023.tif", _scene(2, [OLD, NEW]))
    return earlier, later


def _whole_mask(later, earlier=None, decimate=1, proposer=None):
    from garimpo.detection.candidates import REFERENCE_BANDS, candidate_mask

    r = read_raster(later)
    ref = None
    if earlier is not None:
        e = read_raster(earlier)
        ref = {b: e.array[e.band_names.index(b)] for b in REFERENCE_BANDS}
    return candidate_mask(r.array, r.band_names, proposer, decimate, None, ref)


def _touching(box, margin=4):
    """Lattice chips (48 px every 24 px over the pair) that overlap ``box`` grown by ``margin`` px."""
    rows, cols = Lattice(PAIR_PX, PAIR_PX, 48, 24).origins()
    r0, r1, c0, c1 = box[0].start - margin, box[0].stop + margin, box[1].start - margin, box[1].stop + margin
    hit = (rows < r1) & (rows + 48 > r0) & (cols < c1) & (cols + 48 > c0)
    return set(_key(rows[hit], cols[hit]))


def test_earlier_reference_flags_the_new_clearing_not_the_old_one(pair, model):
    earlier, later = pair
    plain = two_stage_scan(later, model, META, block_px=96, select="any", decimate=1)
    ref = two_stage_scan(later, model, META, block_px=96, select="any", decimate=1, reference=earlier)
    got, base = set(_key(ref.rows, ref.cols)), set(_key(plain.rows, plain.cols))
    old, new = _touching(OLD), _touching(NEW)
    assert old <= base and new <= base  # without a reference both clearings are low NDVI inside forest
    assert got and got <= new and not (got & old)  # with it, only the NDVI drop since the earlier composite
    # block by block (halo 64) the scan selects what the whole-image mask does
    mask = _whole_mask(later, earlier)
    assert mask[NEW].all() and not mask[OLD].any()
    rows, cols = Lattice(PAIR_PX, PAIR_PX, 48, 24).origins()
    keep = chips_touching(mask, rows, cols, 48)
    assert set(_key(rows[keep], cols[keep])) == got
    assert ref.candidate_pixels == int(mask.sum()) < plain.candidate_pixels


def test_without_a_reference_the_scan_is_unchanged(pair, model):
    _, later = pair
    plain = two_stage_scan(later, model, META, block_px=96, select="any", decimate=1)
    # the earlier_reference flag alone (the first period: no earlier composite) changes nothing
    flagged = two_stage_scan(
        later, model, META, proposer={"earlier_reference": True}, block_px=96, select="any", decimate=1
    )
    r = read_raster(later)
    mask = propose({n: r.array[i] for i, n in enumerate(r.band_names)}, "spectral")
    rows, cols = Lattice(PAIR_PX, PAIR_PX, 48, 24).origins()
    keep = chips_touching(mask, rows, cols, 48)
    for res in (plain, flagged):
        assert set(_key(res.rows, res.cols)) == set(_key(rows[keep], cols[keep]))
        assert res.candidate_pixels == int(mask.sum())
        np.testing.assert_array_equal(res.scores, plain.scores)


def test_a_cloud_in_the_earlier_composite_falls_back_to_the_reference_free_test(pair, model, tmp_path):
    _, later = pair
    cloud = (slice(140, 200), slice(100, 200))  # over the new clearing and the forest around it
    earlier = _write(tmp_path / "cloudy.tif", _scene(1, [OLD], cloud=cloud))
    res = two_stage_scan(later, model, META, block_px=96, select="any", decimate=1, reference=earlier)
    mask = _whole_mask(later, earlier)
    assert mask[NEW].all()  # not hidden by the cloud then
    in_cloud = np.zeros(mask.shape, bool)
    in_cloud[cloud] = True
    fringe = np.zeros(mask.shape, bool)
    fringe[NEW[0].start - 8 : NEW[0].stop + 8, NEW[1].start - 8 : NEW[1].stop + 8] = True
    assert not mask[in_cloud & ~fringe].any()  # nor flags every clouded forest pixel
    assert not mask[OLD].any()
    assert _touching(NEW) & set(_key(res.rows, res.cols))
    assert res.candidate_pixels == int(mask.sum())


def test_earlier_reference_decimated(pair, model):
    earlier, later = pair
    res = two_stage_scan(later, model, META, block_px=96, select="any", decimate=2, reference=earlier)
    got = set(_key(res.rows, res.cols))
    assert got and got <= _touching(NEW, margin=8) and not (got & _touching(OLD))
    mask = _whole_mask(later, earlier, decimate=2)
    assert mask[NEW].all() and not mask[OLD].any()


def test_a_reference_on_another_grid_is_refused(pair, model, tmp_path):
    earlier, later = pair
    refl = read_raster(earlier).array
    shifted = _write(tmp_path / "shifted.tif", refl, transform=PAIR_TRANSFORM @ rasterio.Affine.translation(1, 0))
    cropped = _write(tmp_path / "cropped.tif", refl[:, :200].copy())
    other_crs = _write(tmp_path / "utm22s.tif", refl, crs="EPSG:32722")
    for bad, what in ((shifted, "transform"), (cropped, "shape"), (other_crs, "CRS")):
        with pytest.raises(ValueError, match=what) as err:
            two_stage_scan(later, model, META, reference=bad)
        assert str(bad) in str(err.value) and str(later) in str(err.value)


def test_brute_force_and_segformer_do_not_read_the_reference(pair, model):
    earlier, later = pair

    class FixedSquare:  # a SegFormer stand-in: the same suspicious square in every block
        def predict_mask(self, rgb, suspicious_classes, **kwargs):
            m = np.zeros(rgb.shape[1:], bool)
            m[10:30, 10:30] = True
            return m

    kw = dict(proposer={"method": "segformer"}, proposer_model=FixedSquare(), block_px=96, decimate=1)
    seg = two_stage_scan(later, model, META, **kw)
    seg_ref = two_stage_scan(later, model, META, reference=earlier, **kw)
    assert set(_key(seg.rows, seg.cols)) == set(_key(seg_ref.rows, seg_ref.cols))
    assert seg.candidate_pixels == seg_ref.candidate_pixels
    assert "reference" not in inspect.signature(brute_force_scan).parameters


def test_integer_dn_raster_reads_as_reflectance(tmp_path):
    lay, refl = _render(256, seed=5)
    path = tmp_path / "dn.tif"
    lay.size = 256
    bw.write_granule(path, lay, block=256)  # one block: the same per-block noise as the render above
    with rasterio.open(path) as src:
        got = read_bands(src, band_indexes(src, BANDS), rasterio.windows.Window(0, 0, 256, 256))
        assert src.dtypes[0] == "uint16" and src.nodata == 0
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.clip(refl, 1e-4, None), atol=0.6e-4)


def test_bench_tile_blocks_join_without_seams():
    lay = bw.make_layout(512, 9, mined_fraction=0.02)
    ren = bw.Renderer(lay)
    whole = ren.render(0, 0, 256, 512)
    parts = np.concatenate([ren.render(0, 0, 256, 256), ren.render(0, 256, 256, 256)], axis=2)
    # identical up to the per-block sensor noise (independent per block by design)
    assert np.abs(whole - parts).max() < 8 * max(bw.NOISE) * 2
    assert abs(sum(m.area_ha for m in lay.mines) * 1e4 / (512 * 10.0) ** 2 - 0.02) < 0.015
    assert all(0.5 <= m.area_ha <= 130 for m in lay.mines)


def test_scan_memory_is_bounded_by_the_block_not_the_raster(tmp_path, model):
    size = 1920
    lay = bw.make_layout(size, 4)
    path = bw.write_granule(tmp_path / "big.tif", lay, block=960)
    raster_bytes = size * size * 6 * 4  # float32 reflectance of the whole raster: ~88 MB
    tracemalloc.start()
    # batches are the same size in every block (rebatch), so they are small here like the blocks
    res = two_stage_scan(path, model, META, block_px=240, halo=48, batch_size=64)
    res2 = brute_force_scan(path, model, META, block_px=240, halo=48, batch_size=64)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res2.chips_classified == Lattice(size, size, 48, 24).size
    assert res.blocks == res2.blocks > 1
    # a block (336 px with halo: 2.7 MB) + a few batches in flight (prefetch, rebatch): far below the raster
    assert peak < raster_bytes / 2, f"peak traced {peak / 1e6:.1f} MB vs raster {raster_bytes / 1e6:.1f} MB"


def test_chip_polygons_union_of_positive_chips_clipped_to_the_raster():
    from affine import Affine

    tr = Affine(10, 0, 1000, 0, -10, 5000)
    res = ChipScores(
        np.array([0, 0, 24, 192, 96]),
        np.array([0, 24, 24, 192, 96]),
        np.array([0.9, 0.8, 0.7, 0.95, 0.1], np.float32),
        48,
        24,
        230,
        230,
        "EPSG:32721",
        tr,
    )
    polys = chip_polygons(res, 0.5)
    assert len(polys) == 2
    big = max(polys, key=lambda p: p["n_chips"])
    assert big["n_chips"] == 3 and big["score"] == pytest.approx(0.9)
    # chips (0,0), (0,24), (24,24): an L of 48x72 + 24x48 px... union area in px
    assert big["geometry"].area == pytest.approx((48 * 72 + 24 * 48) * 100)
    small = min(polys, key=lambda p: p["n_chips"])
    assert small["geometry"].area == pytest.approx(38 * 38 * 100)  # clipped at the 230 px edge
    assert chip_polygons(res, 0.99) == []


@pytest.mark.slow  # the bench end to end: trains its model, runs both scans in subprocesses (~2 min)
def test_bench_prints_a_json_line_with_the_keys(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_detect.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--size",
            "480",
            "--bench-dir",
            str(tmp_path),
            "--train-seconds",
            "3",
            "--train-size",
            "640",
            "--threads",
            "1",
            "--no-extras",
            "--block-px",
            "240",
            "--segformer-train-seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for k in (
        "brute_km2_per_core_s",
        "two_stage_km2_per_core_s",
        "speedup",
        "brute_classifier_calls",
        "two_stage_classifier_calls",
        "relative_recall",
        "peak_rss_mb",
        "granule_px",
        "granule_km2",
        "threads",
        "brute_recall",
        "two_stage_recall",
        "brute_seconds",
        "two_stage_seconds",
    ):
        assert k in got, k
    assert got["brute_classifier_calls"] == Lattice(480, 480, 48, 24).size
    assert got["two_stage_classifier_calls"] <= got["brute_classifier_calls"]
    assert 0 < got["peak_rss_mb"] < 2048
    assert got["two_stage_chips_in_brute"]
    assert (tmp_path / "granule_480_seed7.tif").exists() and (tmp_path / "bench_resnet34_48px.pth").exists()
    # the proposers, the stand-in SegFormer included (trained for 2 s here)
    assert set(got["proposers"]) == {"spectral", "segformer", "union"}
    for m in got["proposers"].values():
        assert 0 <= m["area_fraction"] <= 1 and 0 <= m["mine_recall"] <= 1
    assert got["proposers"]["union"]["area_fraction"] >= got["proposers"]["spectral"]["area_fraction"]
    assert got["proposer_area_fraction"] == got["proposers"]["spectral"]["area_fraction"]
    assert got["proposers"]["segformer"]["training"]["steps"] >= 1


# --------------------------------------------------------------------------- coarse masks, batching, prefetch


def test_block_mean_matches_reshape_mean_with_nan_and_ragged_edges():
    rng = np.random.default_rng(0)
    a = rng.random((3, 101, 99)).astype(np.float32)
    a[1, 50, 40] = np.nan
    pad = np.full((3, 102, 100), np.nan, np.float32)
    pad[:, :101, :99] = a
    ref = pad.reshape(3, 51, 2, 50, 2).mean(axis=(-3, -1))
    got = block_mean_nan(a, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    assert np.isnan(got[1, 25, 20]) and np.isnan(got[0, 50, 0])  # NaN spreads to its cell; ragged edge is NaN
    assert block_mean_nan(a, 1) is a


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_boxes_and_counts_on_a_coarse_mask_equal_the_expanded_mask(f):
    rng = np.random.default_rng(f)
    H, W = 203, 171
    coarse = rng.random((-(-H // f), -(-W // f))) < 0.05
    full = np.repeat(np.repeat(coarse, f, 0), f, 1)[:H, :W]
    r0 = rng.integers(-30, H + 10, 500)
    c0 = rng.integers(-30, W + 10, 500)
    r1 = r0 + rng.integers(0, 40, 500)  # empty boxes (r1 == r0) included
    c1 = c0 + rng.integers(0, 40, 500)
    want = boxes_touching(full, r0, c0, r1, c1)
    got = boxes_touching(coarse, r0, c0, r1, c1, factor=f, full_shape=(H, W))
    np.testing.assert_array_equal(got, want)
    # brute-force reference for the full-resolution version
    ref = [full[max(a, 0) : max(b, 0), max(c, 0) : max(d, 0)].any() for a, c, b, d in zip(r0, c0, r1, c1)]
    np.testing.assert_array_equal(want, ref)
    for a, b, c, d in [(0, H, 0, W), (5, 77, 13, 170), (1, 2, 3, 4), (100, 100, 0, W)]:
        assert count_in_box(coarse, a, b, c, d, f) == int(full[a:b, c:d].sum())


def _batches(sizes, cand=1):
    start = 0
    for n in sizes:
        r = np.arange(start, start + n)
        start += n
        chips = np.broadcast_to(r[:, None, None, None].astype(np.float32), (n, 2, 3, 3)).copy()
        yield Batch(r, -r, chips if n else None, cand, 1)


def test_rebatch_keeps_every_chip_in_order_in_fixed_size_batches():
    sizes = [5, 0, 17, 3, 0, 0, 40, 1]
    out = list(rebatch(_batches(sizes), 8))
    assert [len(b.rows) for b in out] == [8] * 8 + [2]
    rows = np.concatenate([b.rows for b in out])
    np.testing.assert_array_equal(rows, np.arange(sum(sizes)))
    np.testing.assert_array_equal(np.concatenate([b.cols for b in out]), -rows)
    np.testing.assert_array_equal(np.concatenate([b.chips[:, 0, 0, 0] for b in out]), rows)
    assert sum(b.blocks for b in out) == len(sizes) and sum(b.n_candidates for b in out) == len(sizes)
    # blocks with nothing to classify still arrive (counts), even when no chip follows them
    tail = list(rebatch(_batches([0, 0]), 8))
    assert len(tail) == 1 and len(tail[0].rows) == 0 and tail[0].blocks == 2


def test_prefetch_yields_in_order_bounded_and_raises_in_the_consumer():
    produced = []

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    seen = []
    for v in prefetch((x * 10 for x in items()), ahead=1):
        import time

        time.sleep(0.02)  # a slow consumer: the producer must not run ahead by more than 2
        assert len(produced) <= len(seen) + 3
        seen.append(v)
    assert seen == [0, 10, 20, 30, 40, 50]

    def boom(x):
        if x == 2:
            raise RuntimeError("block 2 unreadable")
        return x

    got = []
    with pytest.raises(RuntimeError, match="block 2 unreadable"):
        for v in prefetch(boom(x) for x in range(5)):
            got.append(v)
    assert got == [0, 1]
