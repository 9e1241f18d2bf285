"""Tests for garimpo.classifier: model, checkpoints, metrics, data, a tiny training run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from garimpo.classifier.averaging import WeightAverage
from garimpo.classifier.data import (
    ChipDataset,
    normalisation_stats,
    rgb_first,
    scale_to_unit,
)
from garimpo.classifier.infer import predict_paths, predict_proba
from garimpo.classifier.metrics import binary_metrics, choose_threshold, decision_threshold
from garimpo.classifier.model import (
    adapt_first_conv,
    build_classifier,
    load_classifier,
    save_checkpoint,
)
from garimpo.classifier.sampling import epoch_sampler, source_balanced_weights
from garimpo.classifier.train import train_classifier
from garimpo.classifier.weights import load_imagenet_state_dict
from garimpo.errors import ModelLoadError
from garimpo.geo.raster import read_bands_by_name

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
SIZE = 32


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_build_classifier_outputs_one_logit(arch):
    model = build_classifier(arch, in_channels=4, dropout=0.3).eval()
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.3
    assert model.fc[1].in_features == 512 and model.fc[1].out_features == 1
    with torch.no_grad():
        assert model(torch.randn(2, 4, 32, 32)).shape == (2, 1)


def test_adapt_first_conv_six_bands_keeps_rgb_and_constant_response():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, kernel_size=7, stride=2, padding=3, bias=False)
    new = adapt_first_conv(conv, 6)
    scale = 3 / 6
    assert new.in_channels == 6 and new.out_channels == 8
    assert torch.allclose(new.weight[:, :3], conv.weight * scale)
    mean_kernel = conv.weight.mean(dim=1)
    for c in range(3, 6):
        assert torch.allclose(new.weight[:, c], mean_kernel * scale)
    # A constant image (away from the padded border) gives the same response.
    with torch.no_grad():
        old_out = conv(torch.full((1, 3, 32, 32), 0.7))
        new_out = new(torch.full((1, 6, 32, 32), 0.7))
    assert torch.allclose(old_out[..., 4:-4, 4:-4], new_out[..., 4:-4, 4:-4], atol=1e-5)


@pytest.mark.parametrize("n", [1, 2])
def test_adapt_first_conv_few_bands_average(n):
    conv = nn.Conv2d(3, 4, kernel_size=3, bias=False)
    new = adapt_first_conv(conv, n)
    for c in range(n):
        assert torch.allclose(new.weight[:, c], conv.weight.mean(dim=1) * 3 / n)
    assert torch.allclose(new.weight.sum(dim=1), conv.weight.sum(dim=1), atol=1e-6)


def _meta(bands=("B04", "B03", "B02")) -> dict:
    n = len(bands)
    return {
        "arch": "resnet18",
        "bands": list(bands),
        "input_size": 32,
        "in_channels": n,
        "dropout": 0.5,
        "low": [0.0] * n,
        "high": [0.4] * n,
        "mean": [0.5] * n,
        "std": [0.25] * n,
        "threshold": np.float32(0.37),
        "train_config": {"lr": 1e-4},
    }


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_classifier("resnet18", in_channels=3).eval()
    # Non-trivial BatchNorm buffers must survive the trip too.
    model.bn1.running_mean.fill_(0.3)
    written = save_checkpoint(tmp_path / "m.pth", model, _meta())
    loaded, meta = load_classifier(tmp_path / "m.pth")
    assert not loaded.training
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert meta["threshold"] == pytest.approx(0.37)
    assert meta["bands"] == ["B04", "B03", "B02"]
    assert meta["train_config"] == {"lr": 1e-4}
    assert len(meta["model_id"]) == 12 and meta["model_id"] == written["model_id"]
    assert {"created", "torch_version"} <= set(meta)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file


def test_load_classifier_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_classifier(tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_classifier(bad)
    torch.save({"foo": 1}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="not a garimpo classifier"):
        load_classifier(tmp_path / "other.pth")


def test_imagenet_state_dict_loading(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    state = load_imagenet_state_dict(tmp_path / "r18.pth")
    model = build_classifier("resnet18", in_channels=4, imagenet_state_dict=state)
    assert torch.allclose(model.conv1.weight[:, :3], ref.conv1.weight * 3 / 4)
    assert torch.equal(model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    with pytest.raises(ModelLoadError, match="do not fit"):
        build_classifier("resnet34", imagenet_state_dict=state)
    with pytest.raises(ModelLoadError, match="fetch_imagenet_weights"):
        load_imagenet_state_dict(tmp_path / "missing.pth")


# ---------------------------------------------------------------- metrics

Y = [0, 0, 1, 0, 1, 1]
P = [0.1, 0.3, 0.35, 0.6, 0.7, 0.9]


def test_binary_metrics_by_hand():
    m = binary_metrics(Y, P, 0.5)  # predicted: 0 0 0 1 1 1
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    for key in ("precision", "recall", "f1", "specificity"):
        assert m[key] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    none = binary_metrics([0, 0], [0.1, 0.2], 0.5)  # nothing predicted, no positives
    assert none["precision"] == none["recall"] == none["f1"] == 0.0
    assert none["specificity"] == 1.0


def test_choose_threshold_by_hand():
    # F1 per threshold 0.1..0.9: .667 .75 .857 .667 .8 .5 -> best at 0.35,
    # placed midway to the next lower score 0.3.
    assert choose_threshold(Y, P, "max_f1") == pytest.approx(0.325)
    # Precision 1.0 first reached at 0.7 -> midway to 0.6.
    assert choose_threshold(Y, P, "target_precision", target_precision=0.95) == pytest.approx(0.65)
    # Precision .75 at 0.35 is the smallest threshold with >= 0.7.
    assert choose_threshold(Y, P, "target_precision", target_precision=0.7) == pytest.approx(0.325)
    assert choose_threshold(Y, P, "fixed", value=0.42) == 0.42


def test_choose_threshold_unreachable_precision_falls_back(caplog):
    y, p = [1, 0, 1, 0], [0.9, 0.9, 0.2, 0.1]  # the top score is shared by both classes
    with caplog.at_level("WARNING"):
        thr = choose_threshold(y, p, "target_precision", target_precision=0.99)
    assert "falling back" in caplog.text
    assert thr == choose_threshold(y, p, "max_f1")


# ---------------------------------------------------------------- data


def _write_image(path, arr: np.ndarray, bands=BANDS) -> None:
    profile = {
        "driver": "GTiff",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": "float32",
        "crs": "EPSG:32721",
        "transform": Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 9300000.0),
        "nodata": float("nan"),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr.astype(np.float32))
        dst.descriptions = tuple(bands)
        # the contract fetch_training_images tags a training image with (garimpo.contract)
        dst.update_tags(footprint_m=str(10 * arr.shape[2]), pixel_size_m="10", units="surface_reflectance")


def _chip(rng: np.random.Generator, positive: bool) -> np.ndarray:
    """Dark vegetation-like noise; positives get a bright bare-soil/water blob."""
    arr = rng.normal(0.08, 0.02, size=(len(BANDS), SIZE, SIZE))
    if positive:
        cy, cx = rng.integers(10, SIZE - 10, size=2)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        arr[:, (yy - cy) ** 2 + (xx - cx) ** 2 < 81] += 0.25
    return arr.astype(np.float32)


def test_read_training_image_and_scaling(tmp_path):
    arr = np.stack([np.full((4, 5), i, np.float32) for i in range(len(BANDS))])
    arr[0, 0, 0] = np.nan
    _write_image(tmp_path / "t.tif", arr)
    out = read_bands_by_name(tmp_path / "t.tif", ["B04", "B02"])
    assert out.dtype == np.float32 and out.shape == (2, 4, 5)
    assert np.all(out[0] == 2) and np.isnan(out[1, 0, 0])
    with pytest.raises(ValueError, match="B8A.*B02"):
        read_bands_by_name(tmp_path / "t.tif", ["B8A"])
    scaled = scale_to_unit(out, low=[1.0, -1.0], high=[3.0, 1.0])
    assert np.allclose(scaled[0], 0.5)
    assert scaled[1, 0, 0] == 0.0  # NaN -> band low -> 0
    assert np.allclose(scaled[1].ravel()[1:], 0.5)
    assert scale_to_unit(np.array([[[5.0, -5.0]]]), [0], [1]).tolist() == [[[1.0, 0.0]]]


def test_normalisation_and_band_order():
    assert rgb_first(["B02", "B03", "B04", "B08"]) == ["B04", "B03", "B02", "B08"]
    mean, std = normalisation_stats(4, "imagenet")
    assert mean[:3] == [0.485, 0.456, 0.406] and mean[3] == pytest.approx(np.mean(mean[:3]))
    assert normalisation_stats(2, "none") == ([0.5, 0.5], [0.25, 0.25])


def test_dataset_resizes_and_normalises(tmp_path):
    _write_image(tmp_path / "t.tif", np.full((len(BANDS), 20, 20), 0.2, np.float32))
    ds = ChipDataset([tmp_path / "t.tif"], [1], ["B04", "B08"], [0.0, 0.0], [0.4, 0.4], 48, [0.5, 0.5], [0.25, 0.25])
    x, y = ds[0]
    assert x.shape == (2, 48, 48) and y.item() == 1.0
    assert torch.allclose(x, torch.zeros_like(x), atol=1e-5)  # 0.2 -> 0.5 -> 0


# ---------------------------------------------------------------- training


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """28 training images in tmp_path, referenced by paths relative to the working dir."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    plan = [("train", 6), ("val", 4), ("test", 2)]
    for split, n in plan:
        for label in (1, 0):
            for i in range(n):
                arr = _chip(rng, bool(label))
                path = f"images/{split}_{label}_{i}.tif"
                _write_image(path, arr)
                rows.append((path, label, split, f"g{i}", "synthetic", False))
                if split == "train" and label == 1 and i < 2:  # augmented copies: train only
                    _write_image(f"images/aug_{i}.tif", arr[:, ::-1, :].copy())
                    rows.append((f"images/aug_{i}.tif", 1, "train", f"g{i}", "synthetic", True))
    split = pd.DataFrame(rows, columns=["path", "label", "split", "group", "source", "augmented"])
    split.to_csv("split.csv", index=False)
    stats = {
        "bands": {b: {"p2": 0.03, "p98": 0.38, "mean": 0.15, "std": 0.1, "n_samples": 100} for b in BANDS},
        "n_images": 8,
        "sample_size": 100,
    }
    (tmp_path / "positive.json").write_text(json.dumps(stats))
    return tmp_path, split


CFG = {
    "arch": "resnet18",
    "weights": "none",
    "bands": ["B04", "B03", "B02", "B08"],
    "input_size": 32,
    "batch_size": 4,
    "lr": 1e-3,
    "max_epochs": 3,
    "early_stopping_patience": 5,
    "seed": 0,
}


@pytest.mark.slow
def test_tiny_training_end_to_end(tiny_dataset):
    root, split = tiny_dataset
    res = train_classifier("split.csv", "positive.json", "model", CFG, threads=2)
    out = root / "model"
    for name in ("best_model.pth", "final_model.pth", "training_history.json", "config.json", "training_curves.png"):
        assert (out / name).stat().st_size > 0, name
    history = json.loads((out / "training_history.json").read_text())
    assert 1 <= len(history) <= 3
    assert all(math.isfinite(h["val_loss"]) for h in history)
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "val_f1", "lr", "seconds"}
    conf = json.loads((out / "config.json").read_text())
    assert conf["data"]["n_train"] == 14 and conf["data"]["n_train_augmented"] == 2
    assert conf["data"]["n_val"] == 8 and conf["pos_weight"] == pytest.approx(6 / 8)
    assert 0.0 <= conf["threshold"] <= 1.0 and "f1" in conf["val_metrics"]

    model, meta = load_classifier(out / "best_model.pth")
    _, final_meta = load_classifier(out / "final_model.pth")
    assert meta["threshold"] == pytest.approx(res["threshold"]) and "threshold" in final_meta
    assert "threshold_tta" in final_meta and conf["threshold_tta"] == pytest.approx(meta["threshold_tta"])
    assert meta["bands"] == CFG["bands"] and meta["epoch"] == res["best_epoch"]
    # What ground and values the model learnt travel with it (garimpo.contract): 32 px images at 10 m.
    from garimpo.contract import RESIZE

    assert (meta["footprint_m"], meta["pixel_size_m"], meta["chip_px"]) == (320.0, 10.0, 32)
    assert meta["units"] == "surface_reflectance" and meta["encoding"] is None and meta["resize"] == RESIZE
    assert conf["contract"]["footprint_m"] == 320.0
    held_out = split[split["split"] != "train"]
    chips = np.stack([read_bands_by_name(p, meta["bands"]) for p in held_out["path"]])
    prob = predict_proba(model, meta, chips, batch_size=5)
    assert prob.shape == (len(held_out),) and np.all((prob >= 0) & (prob <= 1))
    labels = held_out["label"].to_numpy()
    assert prob[labels == 1].mean() > prob[labels == 0].mean()
    assert np.allclose(predict_paths(model, meta, held_out["path"].tolist()), prob, atol=1e-5)

    # Both thresholds are the max-F1 ones of the validation scores made the same way: single view,
    # and the mean over the 8 rotations/flips (what detection and evaluation use with tta).
    val = split[split["split"] == "val"]
    val_chips = np.stack([read_bands_by_name(p, meta["bands"]) for p in val["path"]])
    for key, tta in (("threshold", False), ("threshold_tta", True)):
        probs = predict_proba(model, meta, val_chips, tta=tta)
        assert meta[key] == pytest.approx(choose_threshold(val["label"], probs, "max_f1"), abs=1e-4), key
        assert meta[f"val_metrics{key[9:]}"] == binary_metrics(val["label"], probs, meta[key])


def test_training_from_imagenet_file_reorders_bands(tiny_dataset):
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), "r18.pth")
    cfg = {
        **CFG,
        "weights": "imagenet",
        "bands": ["B02", "B03", "B04", "B08"],
        "max_epochs": 1,
        "threshold": {"method": "target_precision", "target_precision": 0.9},
    }
    train_classifier("split.csv", "positive.json", "model", cfg, imagenet_weights_path="r18.pth")
    _, meta = load_classifier("model/best_model.pth")
    assert meta["bands"] == ["B04", "B03", "B02", "B08"]  # RGB first for ImageNet kernels
    assert meta["mean"][:3] == [0.485, 0.456, 0.406]
    assert meta["threshold_method"] == "target_precision"


def test_bf16_mixed_precision_training_keeps_fp32_weights(tiny_dataset):
    cfg = {**CFG, "max_epochs": 1, "precision": "bf16"}
    res = train_classifier("split.csv", "positive.json", "model", cfg)
    assert math.isfinite(res["history"][0]["train_loss"]) and math.isfinite(res["best_val_loss"])
    model, meta = load_classifier("model/best_model.pth")
    assert meta["train_config"]["precision"] == "bf16"
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_training_precision_sets_the_dtype_of_training_steps(tiny_dataset, monkeypatch, precision, dtype):
    import garimpo.classifier.train as train_mod

    seen = set()

    def build_and_watch(*args, **kwargs):
        model = build_classifier(*args, **kwargs)
        # The head's output dtype in training mode is what autocast decides for the step.
        model.fc.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype) if mod.training else None)
        return model

    monkeypatch.setattr(train_mod, "build_classifier", build_and_watch)
    train_classifier("split.csv", "positive.json", "model", {**CFG, "max_epochs": 1, "precision": precision})
    assert seen == {dtype}


def test_weight_average_by_hand():
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    avg = WeightAverage(net, decay=0.75)
    before = {k: v.clone() for k, v in avg.model.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(4.0)
    net.train()(torch.tensor([[1.0, 2.0], [3.0, 5.0]]))  # moves BatchNorm's running stats and counter
    avg.update(net)
    now, cur = avg.model.state_dict(), net.state_dict()
    for key in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(now[key], 0.75 * before[key] + 0.25 * cur[key]), key
    assert now["1.num_batches_tracked"] == cur["1.num_batches_tracked"] == 1  # counted, not averaged
    assert not any(p.requires_grad for p in avg.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


@pytest.mark.slow
def test_training_with_weight_average(tiny_dataset):
    cfg = {**CFG, "max_epochs": 2}
    plain = train_classifier("split.csv", "positive.json", "plain", cfg, threads=1)
    # The optimiser's path does not depend on the average: its val loss is the plain run's.
    ema = train_classifier("split.csv", "positive.json", "ema", {**cfg, "ema_decay": 0.9}, threads=1)
    assert [h["val_loss_raw"] for h in ema["history"]] == pytest.approx(
        [h["val_loss"] for h in plain["history"]], rel=1e-5
    )
    assert [h["val_loss"] for h in ema["history"]] != pytest.approx([h["val_loss_raw"] for h in ema["history"]])
    # The average is what is validated and saved: with decay 0 it is the optimiser's weights.
    same = train_classifier("split.csv", "positive.json", "ema0", {**cfg, "ema_decay": 0.0}, threads=1)
    assert same["model_id"] == plain["model_id"]
    assert same["final_model"]["model_id"] == plain["final_model"]["model_id"]
    _, meta = load_classifier("ema/best_model.pth")
    assert meta["train_config"]["ema_decay"] == 0.9 and meta["model_id"] == ema["model_id"]
    assert meta["val_loss"] == pytest.approx(ema["history"][meta["epoch"] - 1]["val_loss"])


def test_source_balanced_weights_by_hand():
    # Mining: list a (3 images) and b (1); not mining: list c (4).
    sources = pd.Series(["a", "a", "b", "c", "a", "c", "c", "c"])
    labels = pd.Series([1, 1, 1, 0, 1, 0, 0, 0])
    assert source_balanced_weights(sources, labels, 0.0) == pytest.approx(np.full(8, 1 / 8))
    # alpha 1: a and b share the mining half equally, c keeps the other half.
    w = source_balanced_weights(sources, labels, 1.0)
    assert w == pytest.approx([1 / 12, 1 / 12, 1 / 4, 1 / 8, 1 / 12, 1 / 8, 1 / 8, 1 / 8])
    # alpha 0.5: a's images weigh 1/sqrt(3) against b's 1, rescaled to the mining half.
    w = source_balanced_weights(sources, labels, 0.5)
    a, b = 3**-0.5, 1.0
    assert w[[0, 2]] == pytest.approx(np.array([a, b]) / (3 * a + b) / 2)
    assert w[labels == 0].sum() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="source_balance"):
        source_balanced_weights(sources, labels, 1.5)


def test_epoch_sampler_draws():
    df = pd.DataFrame({"source": ["a"] * 9 + ["b"], "label": [0] * 10})
    gen = torch.Generator().manual_seed(0)
    uniform = list(epoch_sampler(df, 10, 0.0, gen))
    assert sorted(uniform) == list(range(10))  # without replacement: every image once
    drawn = np.bincount(list(epoch_sampler(df, 20000, 1.0, gen)), minlength=10)
    assert drawn[9] / 20000 == pytest.approx(0.5, abs=0.02)  # list b's one image: half the draws
    with pytest.raises(ValueError, match="source"):
        epoch_sampler(df.drop(columns="source"), 10, 0.5, gen)


@pytest.mark.slow
def test_training_with_source_balance(tiny_dataset):
    cfg = {**CFG, "max_epochs": 1}
    plain = train_classifier("split.csv", "positive.json", "plain", cfg)
    res = train_classifier("split.csv", "positive.json", "bal", {**cfg, "source_balance": 0.5})
    assert math.isfinite(res["best_val_loss"])
    assert res["model_id"] != plain["model_id"]  # the weighted draws, with replacement, reach training
    _, meta = load_classifier("bal/best_model.pth")
    assert meta["train_config"]["source_balance"] == 0.5


def test_training_input_errors(tiny_dataset):
    with pytest.raises(ValueError, match="precision"):
        train_classifier("split.csv", "positive.json", "m", {**CFG, "precision": "fp16"})
    with pytest.raises(ValueError, match="ema_decay"):
        train_classifier("split.csv", "positive.json", "m", {**CFG, "ema_decay": 1.5})

    with pytest.raises(ModelLoadError, match="fetch_imagenet_weights"):
        train_classifier(
            "split.csv", "positive.json", "m", {**CFG, "weights": "imagenet"}, imagenet_weights_path="nowhere.pth"
        )
    split = pd.read_csv("split.csv")
    split[split["split"] != "val"].to_csv("noval.csv", index=False)
    with pytest.raises(ValueError, match="no 'val' rows"):
        train_classifier("noval.csv", "positive.json", "m", CFG)
    split[(split["split"] != "train") | (split["label"] == 1)].to_csv("onecls.csv", index=False)
    with pytest.raises(ValueError, match="only class"):
        train_classifier("onecls.csv", "positive.json", "m", CFG)


def test_tta_scores_do_not_depend_on_orientation():
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3, 0.5).eval()
    meta = _meta()
    chips = np.random.default_rng(0).uniform(0, 0.3, (3, 3, 32, 32)).astype(np.float32)
    rotated = np.ascontiguousarray(np.rot90(chips, 1, axes=(2, 3)))
    plain_a, plain_b = predict_proba(model, meta, chips), predict_proba(model, meta, rotated)
    tta_a, tta_b = predict_proba(model, meta, chips, tta=True), predict_proba(model, meta, rotated, tta=True)
    np.testing.assert_allclose(tta_a, tta_b, atol=1e-5)
    assert tta_a.shape == (3,) and np.all((tta_a > 0) & (tta_a < 1))
    assert not np.allclose(plain_a, plain_b, atol=1e-5)  # without TTA the orientation matters


def test_decision_threshold_matches_how_scores_are_made(caplog):
    meta = {"model_id": "m", "threshold": 0.8, "threshold_tta": 0.6}
    assert decision_threshold(meta, tta=False) == 0.8
    assert decision_threshold(meta, tta=True) == 0.6
    old = {"model_id": "m", "threshold": 0.8}  # a checkpoint from before threshold_tta
    assert decision_threshold(old, tta=False) == 0.8 and not caplog.records
    assert decision_threshold(old, tta=True) == 0.8
    assert "no threshold chosen on 8-view scores" in caplog.text
