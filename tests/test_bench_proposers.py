"""Proposer figures on a labelled granule (garimpo.synthetic.proposer_bench): streaming counts against a
whole-image reference, mine-level recall, union >= its parts, the stand-in SegFormer's training."""

import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import rasterize
from shapely.geometry import Point

from garimpo.detection.candidates import block_mean_nan, candidate_mask
from garimpo.detection.proposers import proposer_recall, valid_mask
from garimpo.detection.segformer import SegformerProposer
from garimpo.geo.raster import band_indexes, read_bands
from garimpo.synthetic import bench_world as bw
from garimpo.synthetic.proposer_bench import (
    MINE_LABEL,
    PROPOSER_BANDS,
    evaluate_proposers,
    segformer_b0_config,
    train_bench_segformer,
)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_prop")
    lay = bw.make_layout(640, 11, mined_fraction=0.02)
    path = bw.write_granule(d / "granule.tif", lay, block=640)
    mines = [m.footprint for m in lay.mines]
    return path, lay, mines


def _whole_image_reference(path, mines, decimate):
    with rasterio.open(path) as src:
        arr = read_bands(src, band_indexes(src, PROPOSER_BANDS), rasterio.windows.Window(0, 0, src.width, src.height))
        transform = src.transform
    cand = candidate_mask(arr, PROPOSER_BANDS, None, decimate)
    truth = rasterize([(m, 1) for m in mines], out_shape=arr.shape[1:], transform=transform, dtype="uint8") > 0
    valid = valid_mask({b: arr[i] for i, b in enumerate(PROPOSER_BANDS)})
    return proposer_recall(cand, truth, valid)


def test_one_block_equals_the_whole_image_reference(labelled):
    path, _, mines = labelled
    ref = _whole_image_reference(path, mines, 2)
    got = evaluate_proposers(path, mines, ["spectral"], decimate=2, block_px=4096)["spectral"]
    assert got["pixel_recall"] == pytest.approx(ref["recall"], abs=1e-4)
    assert got["area_fraction"] == pytest.approx(ref["area_fraction"], abs=1e-5)
    assert 0 < got["area_fraction"] < 0.2


def test_blocks_count_each_pixel_once(labelled):
    path, _, mines = labelled
    one = evaluate_proposers(path, mines, ["spectral"], decimate=2, block_px=4096)["spectral"]
    many = evaluate_proposers(path, mines, ["spectral"], decimate=2, block_px=240)["spectral"]
    # the halo gives the proposer its context; only zones cut by a block edge may differ slightly
    assert many["area_fraction"] == pytest.approx(one["area_fraction"], rel=0.03)
    assert many["pixel_recall"] == pytest.approx(one["pixel_recall"], abs=0.01)


def test_a_mine_without_candidates_lowers_mine_recall(labelled):
    path, lay, mines = labelled
    base = evaluate_proposers(path, mines, ["spectral"], decimate=1, block_px=4096)["spectral"]
    # a "mine" drawn on pixels the proposer does not flag (found by searching the mask)
    with rasterio.open(path) as src:
        arr = read_bands(src, band_indexes(src, PROPOSER_BANDS), rasterio.windows.Window(0, 0, 640, 640))
    cand = candidate_mask(arr, PROPOSER_BANDS, None, 1)
    free = np.argwhere(~cand[20:-20, 20:-20]) + 20
    r, c = free[len(free) // 2]
    x, y = lay.transform @ (c + 0.5, r + 0.5)
    ghost = Point(x, y).buffer(4)  # well inside one 10 m pixel
    assert not cand[r, c]
    got = evaluate_proposers(path, mines + [ghost], ["spectral"], decimate=1, block_px=4096)["spectral"]
    n = len(mines)
    assert got["mine_recall"] == pytest.approx(base["mine_recall"] * n / (n + 1), abs=1e-4)


class _Fixed:
    """A mask predictor that flags a fixed square (the same contract as SegformerProposer)."""

    def predict_mask(self, rgb, suspicious_classes, **kwargs):
        m = np.zeros(rgb.shape[1:], bool)
        m[10:60, 10:60] = True
        return m


def test_union_holds_both_methods(labelled):
    path, _, mines = labelled
    params = {"segformer": {"suspicious_classes": ["x"]}}
    got = evaluate_proposers(
        path, mines, ["spectral", "segformer", "union"], decimate=2, proposer=params, segformer=_Fixed(), block_px=4096
    )
    for key in ("pixel_recall", "area_fraction"):
        assert got["union"][key] >= max(got["spectral"][key], got["segformer"][key])
    # the fixed square is 50 x 50 coarse px = 100 x 100 px of 640 x 640 (+ the 2 px dilation)
    assert got["segformer"]["area_fraction"] == pytest.approx(100 * 100 / 640**2, rel=0.15)


@pytest.mark.slow
def test_stand_in_segformer_trains_saves_and_loads(tmp_path, labelled):
    torch.set_num_threads(1)
    path, _, mines = labelled
    with rasterio.open(path) as src:
        arr = read_bands(src, band_indexes(src, PROPOSER_BANDS), rasterio.windows.Window(0, 0, 640, 640))
        transform = src.transform
    truth = rasterize([(m, 1) for m in mines], out_shape=(640, 640), transform=transform, dtype="uint8") > 0
    small = {b: block_mean_nan(arr[i], 2) for i, b in enumerate(PROPOSER_BANDS)}
    info = train_bench_segformer(
        tmp_path / "seg",
        small,
        block_mean_nan(truth.astype(np.float32), 2) >= 0.5,
        seconds=2,
        threads=1,
        crop=64,
        batch=2,
    )
    assert info["steps"] >= 1
    seg = SegformerProposer.from_pretrained(str(tmp_path / "seg"), device="cpu")
    assert seg.id2label == {0: "background", 1: MINE_LABEL}
    assert sum(p.numel() for p in seg.model.parameters()) == pytest.approx(3.7e6, rel=0.05)  # MiT-b0 size
    got = evaluate_proposers(
        path,
        mines,
        ["segformer"],
        decimate=2,
        segformer=seg,
        proposer={"segformer": {"suspicious_classes": [MINE_LABEL]}},
        block_px=4096,
    )
    assert 0.0 <= got["segformer"]["area_fraction"] <= 1.0
    assert segformer_b0_config().num_labels == 2
