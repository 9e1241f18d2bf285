"""Tests for garimpo.classifier.evaluation: chip sets, metrics, end-to-end scoring, plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio  # noqa: F401  (filterwarnings names rasterio.errors)
import torch
from affine import Affine
from PIL import Image

from garimpo.classifier.data import normalisation_stats
from garimpo.classifier.evaluation import (
    average_precision,
    evaluate_chip_set,
    load_chip_set,
    metrics_from_scores,
    plot_gallery,
    plot_pr_curve,
    read_chip,
    roc_auc,
    select_sources,
)
from garimpo.classifier.infer import predict_proba
from garimpo.classifier.model import build_classifier, load_classifier, save_checkpoint
from garimpo.errors import InputDataError
from garimpo.geo.raster import write_raster
from garimpo.pixels.matching import stretch_to_reference

RGB = ["B04", "B03", "B02"]
AMW = "amw_l1c_rgb"  # the test PNGs stand for 8-bit chips of that encoding
STATS = {
    "bands": {
        "B04": {"p2": 0.02, "p98": 0.20},
        "B03": {"p2": 0.03, "p98": 0.15},
        "B02": {"p2": 0.01, "p98": 0.12},
        "B08": {"p2": 0.1, "p98": 0.4},
    }
}


def _png(path, value, seed, size=32):
    rng = np.random.default_rng(seed)
    arr = np.clip(value + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _chip_folder(root, n_per_class=6, manifest=True):
    rows = []
    for label, value in (("positive", 170), ("negative", 70)):
        for i in range(n_per_class):
            rel = f"{label}/chip_{i:02d}.png"
            _png(root / rel, value, seed=hash((label, i)) % 1000, size=32 if i % 2 else 40)
            rows.append({"path": rel, "label": label, "source": f"src{i % 2}", "extra": "x"})
    if manifest:
        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


# ---------------------------------------------------------------- metrics


def test_aucs_hand_computed():
    y, p = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, p) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    assert average_precision(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_aucs_with_ties():
    y, p = [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]
    assert roc_auc(y, p) == pytest.approx(3.5 / 4)  # the tied pair counts 1/2
    # thresholds 0.9 (P=1, R=.5) then 0.5 (P=2/3, R=1): the tie is one step, not two.
    assert average_precision(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert roc_auc([0, 1, 0, 1], [0.3] * 4) == pytest.approx(0.5)
    assert average_precision([0, 1, 0, 1], [0.3] * 4) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0 and roc_auc([1, 0], [0.1, 0.9]) == 0.0


def test_aucs_undefined_without_a_class():
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3])) and np.isnan(average_precision([0, 0], [0.2, 0.3]))
    rep = metrics_from_scores([0, 0], [0.2, 0.7], 0.5)
    assert rep["roc_auc"] is None and rep["pr_auc"] is None
    json.dumps(rep, allow_nan=False)


def test_metrics_from_scores_counts_and_per_source():
    y = [1, 1, 1, 0, 0, 0]
    p = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3]
    src = ["a", "a", "b", "a", "b", "b"]
    rep = metrics_from_scores(y, p, 0.5, src)
    assert rep["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert rep["precision"] == pytest.approx(2 / 3) and rep["recall"] == pytest.approx(2 / 3)
    assert rep["specificity"] == pytest.approx(2 / 3) and rep["f1"] == pytest.approx(2 / 3)
    assert rep["n_positive"] == 3 and rep["n_negative"] == 3 and rep["threshold"] == 0.5
    assert rep["roc_auc"] == pytest.approx(6 / 9)  # 0.9 > 3 neg, 0.6 > 2, 0.2 > 1
    assert rep["per_source"]["a"] == {
        "n": 3,
        "n_positive": 2,
        "precision": 2 / 3,
        "recall": 1.0,
        "specificity": 0.0,
        "f1": pytest.approx(0.8),
    }
    assert rep["per_source"]["b"]["recall"] == 0.0 and rep["per_source"]["b"]["specificity"] == 1.0
    assert "per_source" not in metrics_from_scores(y, p, 0.5, ["unknown"] * 6)


# ---------------------------------------------------------------- chip sets


def test_load_chip_set_with_manifest(tmp_path):
    _chip_folder(tmp_path)
    df = load_chip_set(tmp_path)
    assert list(df.columns) == ["path", "label", "source"] and len(df) == 12
    assert df["label"].tolist() == [1] * 6 + [0] * 6
    assert set(df["source"]) == {"src0", "src1"}
    assert all((tmp_path / "positive").as_posix() in p or (tmp_path / "negative").as_posix() in p for p in df["path"])


def test_load_chip_set_numeric_labels_and_bad_rows(tmp_path):
    _png(tmp_path / "a.png", 100, 0)
    _png(tmp_path / "b.png", 100, 1)
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [1, 0]}).to_csv(tmp_path / "manifest.csv", index=False)
    df = load_chip_set(tmp_path)
    assert df["label"].tolist() == [1, 0] and set(df["source"]) == {"unknown"}
    pd.DataFrame({"path": ["a.png"], "label": ["maybe"]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(InputDataError, match="maybe"):
        load_chip_set(tmp_path)
    pd.DataFrame({"path": ["gone.png"], "label": [1]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(InputDataError, match="do not exist"):
        load_chip_set(tmp_path)


def test_load_chip_set_from_subfolders(tmp_path):
    _chip_folder(tmp_path, n_per_class=3, manifest=False)
    df = load_chip_set(tmp_path)
    assert len(df) == 6 and df["label"].sum() == 3 and set(df["source"]) == {"unknown"}


def test_load_chip_set_error_names_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="empty.*neither a manifest"):
        load_chip_set(tmp_path / "empty")
    with pytest.raises(InputDataError, match="not found"):
        load_chip_set(tmp_path / "nope")


def test_select_sources():
    chips = pd.DataFrame(
        {
            "path": list("abcde"),
            "label": [1, 0, 1, 0, 0],
            "source": ["bolivar_2020_pos", "amazonas_2020_neg", "MinesPos2018-2020", "v3_2023", "x"],
        }
    )
    assert select_sources(chips, [], "all") is chips
    part = select_sources(chips, ["^(?!bolivar).*2020"], "transfer")  # the 2020 lists outside Bolivar
    assert part["path"].tolist() == ["b", "c"] and part.index.tolist() == [0, 1]
    assert select_sources(chips, ["V3", "^x$"], "two")["path"].tolist() == ["d", "e"]  # any pattern, any case
    with pytest.raises(InputDataError, match=r"evaluation.sources.none .*matches none.*bolivar_2020_pos"):
        select_sources(chips, ["peru"], "none")
    with pytest.raises(InputDataError, match=r"evaluation.sources.bad: '\(' is not a valid regular expression"):
        select_sources(chips, ["("], "bad")
    unnamed = chips.assign(source="unknown")
    with pytest.raises(InputDataError, match="names no sources: give it a manifest.csv"):
        select_sources(unnamed, ["2020"], "plain")


# ---------------------------------------------------------------- reading


def test_read_chip_png_matches_training_path(tmp_path):
    arr = _png(tmp_path / "c.png", 120, 3)
    chip = read_chip(tmp_path / "c.png", ["B02", "B04"], STATS, encoding="amw_l1c_rgb")
    assert chip.shape == (2, 32, 32) and chip.dtype == np.float32
    raw = arr.transpose(2, 0, 1).astype(np.float32) * np.float32(0.3 / 255)  # B04, B03, B02 in TOA reflectance
    expect = stretch_to_reference(raw[[2, 0]], np.array([0.01, 0.02]), np.array([0.12, 0.20]))
    np.testing.assert_allclose(chip, expect, rtol=1e-6)
    # P2/P98 of each band now sit on the positives' P2/P98
    np.testing.assert_allclose(np.percentile(chip[1], [2, 98]), [0.02, 0.20], atol=1e-5)
    with pytest.raises(InputDataError, match="B08"):
        read_chip(tmp_path / "c.png", ["B04", "B08"], STATS, encoding="amw_l1c_rgb")
    with pytest.raises(InputDataError, match="8-bit rendering"):  # no encoding: not taken for reflectance
        read_chip(tmp_path / "c.png", ["B04"], STATS)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_read_chip_geotiff_by_band_name(tmp_path):
    arr = np.random.default_rng(0).uniform(0, 0.3, (3, 16, 16)).astype(np.float32)
    write_raster(tmp_path / "t.tif", arr, None, Affine.identity(), ["B08", "B04", "B03"])
    chip = read_chip(tmp_path / "t.tif", ["B04", "B08"], STATS)
    expect = stretch_to_reference(arr[[1, 0]], np.array([0.02, 0.1]), np.array([0.2, 0.4]))
    np.testing.assert_allclose(chip, expect, rtol=1e-6)
    with pytest.raises(InputDataError, match="B02"):
        read_chip(tmp_path / "t.tif", ["B02"], STATS)


# ---------------------------------------------------------------- end to end


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    net = build_classifier("resnet18", in_channels=3, dropout=0.0)
    mean, std = normalisation_stats(3, "none")
    low = [STATS["bands"][b]["p2"] for b in RGB]
    high = [STATS["bands"][b]["p98"] for b in RGB]
    meta = {
        "arch": "resnet18",
        "bands": RGB,
        "input_size": 32,
        "in_channels": 3,
        "dropout": 0.0,
        "low": low,
        "high": high,
        "mean": mean,
        "std": std,
        "threshold": 0.5,
    }
    save_checkpoint(tmp_path / "m.pth", net, meta)
    return load_classifier(tmp_path / "m.pth")


def test_evaluate_chip_set_end_to_end(tmp_path, tiny_model):
    model, meta = tiny_model
    chips = load_chip_set(_chip_folder(tmp_path / "chips"))
    (tmp_path / "stats.json").write_text(json.dumps(STATS))
    rep = evaluate_chip_set(model, meta, chips, tmp_path / "stats.json", batch_size=5, encoding=AMW)
    for key in (
        "precision",
        "recall",
        "f1",
        "specificity",
        "pr_auc",
        "roc_auc",
        "threshold",
        "n_positive",
        "n_negative",
        "confusion",
        "per_source",
    ):
        assert key in rep, key
    assert rep["threshold"] == 0.5 and rep["n_positive"] == 6 and rep["n_negative"] == 6
    assert sum(rep["confusion"].values()) == 12
    assert set(rep["per_source"]) == {"src0", "src1"} and rep["per_source"]["src0"]["n"] == 6
    assert 0.0 <= rep["roc_auc"] <= 1.0 and 0.0 <= rep["pr_auc"] <= 1.0
    json.dumps(rep, allow_nan=False)

    # Same scores as inference on the stacked, matched chips (the 32 px ones stack).
    scores = chips["score"].to_numpy()
    same = [i for i, p in enumerate(chips["path"]) if Image.open(p).size == (32, 32)]
    stack = np.stack([read_chip(chips["path"][i], RGB, STATS, encoding=AMW) for i in same])
    np.testing.assert_allclose(scores[same], predict_proba(model, meta, stack), rtol=1e-4, atol=1e-6)

    # A threshold given overrides the checkpoint's; confusion follows the scores.
    rep2 = metrics_from_scores(chips["label"], scores, 0.0)
    assert rep2["confusion"]["tp"] == 6 and rep2["confusion"]["fp"] == 6
    rep3 = evaluate_chip_set(model, meta, chips, STATS, threshold=float(np.median(scores)), tta=True, encoding=AMW)
    assert rep3["threshold"] == pytest.approx(float(np.median(scores)))
    # Without a threshold, 8-view scores are judged by the threshold chosen on 8-view validation scores.
    rep4 = evaluate_chip_set(model, {**meta, "threshold_tta": 0.25}, chips, STATS, tta=True, encoding=AMW)
    assert rep4["threshold"] == 0.25
    assert evaluate_chip_set(model, {**meta, "threshold_tta": 0.25}, chips, STATS, encoding=AMW)["threshold"] == 0.5

    pr = plot_pr_curve(chips["label"], scores, rep["threshold"], tmp_path / "out" / "pr.png")
    gal = plot_gallery(chips, tmp_path / "out" / "gallery.png", n=16)
    gal2 = plot_gallery(chips, tmp_path / "out" / "gallery_thr.png", n=4, threshold=1.1)  # no FP at all
    for path in (pr, gal, gal2):
        assert path.stat().st_size > 1000
        assert Image.open(path).format == "PNG"
