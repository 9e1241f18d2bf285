"""Training loop: early stopping on validation loss, threshold tuned on validation."""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from garimpo.atomic import atomic_path
from garimpo.classifier.averaging import WeightAverage
from garimpo.classifier.data import ChipDataset, band_limits, normalisation_stats, rgb_first
from garimpo.classifier.metrics import binary_metrics, choose_threshold
from garimpo.classifier.model import PRECISIONS, autocast, build_classifier, save_checkpoint, view_probs
from garimpo.classifier.sampling import epoch_sampler
from garimpo.classifier.weights import load_imagenet_state_dict
from garimpo.contract import ImageContract, checkpoint_record, common_contract, read_training_image_contract
from garimpo.errors import InputDataError, ModelLoadError
from garimpo.schema import default

# The schema's classifier section: the defaults of the workflow, for callers outside it too.
DEFAULT_CONFIG: dict[str, Any] = default("classifier")


def resolve_config(cfg: dict | None) -> dict:
    """Config classifier's defaults (``garimpo.schema``) overlaid with ``cfg`` (one level deep for the nested dicts).

    Raises:
        ValueError: weights other than none/imagenet, no bands, an unknown precision, or ema_decay outside
            [0, 1) (the config schema refuses these first; this guards direct callers).
    """
    out = copy.deepcopy(DEFAULT_CONFIG)
    for key, val in (cfg or {}).items():
        if isinstance(out.get(key), dict) and isinstance(val, dict):
            out[key].update(val)
        else:
            out[key] = val
    if out["weights"] not in ("none", "imagenet"):
        raise ValueError(f"classifier.weights must be 'none' or 'imagenet', got {out['weights']!r}")
    if not out["bands"]:
        raise ValueError("classifier.bands is empty")
    if out["precision"] not in PRECISIONS:
        raise ValueError(f"classifier.precision must be one of {PRECISIONS}, got {out['precision']!r}")
    if out["ema_decay"] is not None and not 0.0 <= float(out["ema_decay"]) < 1.0:
        raise ValueError(f"classifier.ema_decay must be in [0, 1) or null, got {out['ema_decay']!r}")
    return out


def _as_bool(col: pd.Series) -> pd.Series:
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


def load_split(split_csv: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows (augmented copies included) and val rows of the split table; checks they can train a model.

    ``split_csv``: columns path (a training image), label (1 mining, 0 not), split (train/val/...), optional
    augmented (true/false).

    Raises:
        InputDataError: a column is missing, there is no val row, or train rows hold one class only.
        FileNotFoundError: training images the table lists are missing.
    """
    df = pd.read_csv(split_csv)
    missing = {"path", "label", "split"} - set(df.columns)
    if missing:
        raise InputDataError(f"{split_csv} lacks columns {sorted(missing)}; rerun the split_and_augment rule")
    df["label"] = df["label"].astype(int)
    df["augmented"] = _as_bool(df["augmented"]) if "augmented" in df else False
    train, val = df[df["split"] == "train"], df[df["split"] == "val"]
    if len(val) == 0:
        raise InputDataError(f"{split_csv} has no 'val' rows: early stopping and the threshold need them")
    if train["label"].nunique() < 2:
        raise InputDataError(
            f"{split_csv}: train rows hold only class(es) {sorted(train['label'].unique())}; "
            "both mining (1) and non-mining (0) training images are needed"
        )
    absent = [p for p in pd.concat([train, val])["path"] if not Path(p).is_file()]
    if absent:
        raise FileNotFoundError(
            f"{len(absent)} training images listed in {split_csv} are missing, e.g. {absent[:3]}; rerun the "
            "rules that write them (snakemake rebuilds missing outputs)"
        )
    return train.reset_index(drop=True), val.reset_index(drop=True)


def training_contract(train: pd.DataFrame, val: pd.DataFrame, split_csv: str | os.PathLike) -> ImageContract:
    """The footprint, pixel size and units every original train/val training image records (garimpo.contract).

    Augmented copies are rotations of their originals: only the originals are read. Raises
    InputDataError when images disagree (naming examples of each kind) or record no contract.
    """
    both = pd.concat([train, val])
    paths = both.loc[~both["augmented"], "path"]
    return common_contract(((p, read_training_image_contract(p)) for p in paths), f"the training images of {split_csv}")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's generators (CUDA included) and make cuDNN deterministic; returns a
    torch generator seeded with ``seed`` for the data loader."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def _write_json(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2)


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # channels_last runs convolutions about a quarter faster on this kind of CPU (measured).
    return x.to(device).contiguous(memory_format=torch.channels_last)


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    precision: str = "fp32",
    average: WeightAverage | None = None,
) -> float:
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        x, y = _to_device(x, device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(x).squeeze(1)
        loss = criterion(logits.float(), y)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        total += loss.item() * len(y)
        n += len(y)
    return total / max(n, 1)


@torch.inference_mode()
def _evaluate(
    model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, precision: str = "fp32"
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, probabilities and labels over a loader."""
    model.eval()
    total, probs, labels = 0.0, [], []
    for x, y in loader:
        x, y = _to_device(x, device), y.to(device)
        with autocast(device, precision):
            logits = model(x).squeeze(1).float()
        total += criterion(logits, y).item() * len(y)
        probs.append(torch.sigmoid(logits).cpu())
        labels.append(y.cpu())
    y_all = torch.cat(labels).numpy().astype(int)
    return total / max(len(y_all), 1), torch.cat(probs).numpy(), y_all


@torch.inference_mode()
def _view_scores(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fp32 probabilities of the chips as they are and averaged over their 8 rotations and flips
    (as detection and evaluation make them with tta), and the labels."""
    model.eval()
    single, mean, labels = [], [], []
    for x, y in loader:
        views = view_probs(model, _to_device(x, device), tta=True).cpu()
        single.append(views[0])  # the first view is the chip itself
        mean.append(views.mean(0))
        labels.append(y)
    return torch.cat(single).numpy(), torch.cat(mean).numpy(), torch.cat(labels).numpy().astype(int)


def _plot_curves(history: list[dict], best_epoch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [h["train_loss"] for h in history], label="train")
    ax1.plot(ep, [h["val_loss"] for h in history], label="validation")
    if "val_loss_raw" in history[-1]:
        ax1.plot(ep, [h["val_loss_raw"] for h in history], label="validation, raw weights", alpha=0.5)
    ax1.set(xlabel="epoch", ylabel="loss (weighted BCE)", title="Loss")
    ax2.plot(ep, [h["val_f1"] for h in history], color="tab:green")
    ax2.set(xlabel="epoch", ylabel="F1 at 0.5", title="Validation F1", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best (epoch {best_epoch})")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _build_model(cfg: dict, n_bands: int, imagenet_weights_path: str | os.PathLike | None) -> nn.Module:
    state = None
    if cfg["weights"] == "imagenet":
        if not imagenet_weights_path:
            raise ModelLoadError(
                "classifier.weights is 'imagenet' but no weights file was given; run the "
                "fetch_imagenet_weights rule on a machine with internet or set classifier.weights: none"
            )
        state = load_imagenet_state_dict(imagenet_weights_path)
    return build_classifier(cfg["arch"], n_bands, float(cfg["dropout"]), imagenet_state_dict=state)


def tune_thresholds(model: nn.Module, loader: DataLoader, device: torch.device, tcfg: Mapping) -> dict:
    """Thresholds chosen on this model's own validation scores, and metrics there: for single-view
    scores (``threshold``, ``val_metrics``) and for 8-view averages (``threshold_tta``, ``val_metrics_tta``).

    ``loader`` yields (network input [N, C, S, S], label [N] in {0, 1}) batches; ``tcfg`` is config
    classifier.threshold (method, value, target_precision; see ``garimpo.classifier.metrics.choose_threshold``).
    Thresholds are scores in [0, 1]; the metrics are ``binary_metrics`` dicts. The model is left in eval mode.

    Raises:
        ValueError: an unknown threshold method, or labels other than 0 and 1.
    """
    single, mean, labels = _view_scores(model, loader, device)
    out: dict[str, Any] = {}
    for suffix, probs in (("", single), ("_tta", mean)):
        thr = choose_threshold(labels, probs, tcfg["method"], float(tcfg["value"]), float(tcfg["target_precision"]))
        out[f"threshold{suffix}"], out[f"val_metrics{suffix}"] = thr, binary_metrics(labels, probs, thr)
    return out


def train_classifier(
    split_csv: str | os.PathLike,
    stats_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: dict,
    imagenet_weights_path: str | os.PathLike | None = None,
    threads: int = 1,
    matching: dict | None = None,
    log: logging.Logger | None = None,
) -> dict:
    """Train, keep the lowest-val-loss model, tune the thresholds (``tune_thresholds``); returns a summary dict.

    ``split_csv``: see ``load_split``; ``stats_json``: the positives' statistics (results/stats/positive.json,
    per-band P2/P98 reflectance); ``out_dir``: where the checkpoints, curves and summary go; ``cfg``: config
    classifier (``resolve_config``); ``imagenet_weights_path``: the ResNet's ImageNet weights when
    cfg weights is imagenet; ``matching``: config matching, recorded in the checkpoint.

    Raises:
        InputDataError: a bad split table, training images that disagree on their contract, or statistics
            lacking a band.
        FileNotFoundError: training images are missing.
        ModelLoadError: ImageNet weights are asked for but not given, or do not fit the architecture.
        RuntimeError: the validation loss was never finite (training diverged).
    """
    log = log or logging.getLogger(__name__)
    cfg = resolve_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(threads)))
    gen = seed_everything(int(cfg["seed"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # ImageNet kernels expect R, G, B first; meta["bands"] records the order used.
    bands = rgb_first(cfg["bands"]) if cfg["weights"] == "imagenet" else list(cfg["bands"])
    model = _build_model(cfg, len(bands), imagenet_weights_path).to(device)
    model = model.to(memory_format=torch.channels_last)
    train_df, val_df = load_split(split_csv)
    contract = training_contract(train_df, val_df, split_csv)
    low, high = band_limits(stats_json, bands)
    mean, std = normalisation_stats(len(bands), cfg["weights"])
    size, bs = int(cfg["input_size"]), int(cfg["batch_size"])

    def dataset(df: pd.DataFrame) -> ChipDataset:
        return ChipDataset(df["path"].tolist(), df["label"].tolist(), bands, low, high, size, mean, std)

    n_pos = int(train_df["label"].sum())
    n_neg = len(train_df) - n_pos
    pin = device.type == "cuda"
    # A last batch of one breaks BatchNorm in train mode; drop it only in that case.
    n_draw = int(cfg["epoch_samples"] or len(train_df))
    sampler = epoch_sampler(train_df, n_draw, float(cfg["source_balance"]), gen)
    train_loader = DataLoader(
        dataset(train_df), batch_size=bs, sampler=sampler, drop_last=n_draw % bs == 1, pin_memory=pin
    )
    # Each pass over a loader draws a seed from its generator, by default the global one that also
    # draws the dropout masks: validation has its own, so how often it runs does not change training.
    val_loader = DataLoader(
        dataset(val_df),
        batch_size=bs,
        shuffle=False,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(int(cfg["seed"])),
    )

    pos_weight = n_neg / n_pos  # rare positives weigh as much as the many negatives
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight], device=device))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    # With ema_decay the averaged weights are the model: validated, kept, tuned and saved.
    average = WeightAverage(model, float(cfg["ema_decay"])) if cfg["ema_decay"] is not None else None
    scored = average.model if average is not None else model
    sched_cfg = cfg["lr_scheduler"]
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=float(sched_cfg["factor"]), patience=int(sched_cfg["patience"])
    )

    data_counts = {
        "n_train": len(train_df),
        "n_train_pos": n_pos,
        "n_train_neg": n_neg,
        "n_train_augmented": int(train_df["augmented"].sum()),
        "n_val": len(val_df),
        "n_val_pos": int(val_df["label"].sum()),
        "n_val_neg": int((val_df["label"] == 0).sum()),
    }
    log.info(
        "training %s (%s weights) on %s: bands %s, %s resized to %d px, %s, pos_weight %.3f",
        cfg["arch"],
        cfg["weights"],
        device,
        bands,
        contract.describe(),
        size,
        data_counts,
        pos_weight,
    )

    history: list[dict] = []
    best_loss, best_epoch, best_state, stale = float("inf"), 0, None, 0
    max_epochs, patience = int(cfg["max_epochs"]), int(cfg["early_stopping_patience"])
    budget_s = 60.0 * float(cfg["time_budget_min"]) if cfg["time_budget_min"] else float("inf")
    started = time.perf_counter()
    stop_reason = "max_epochs"
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        if history and (t0 - started) + history[-1]["seconds"] > budget_s:
            log.info(
                "time budget: another epoch would end past %.0f min; stopping after %d epochs",
                budget_s / 60,
                len(history),
            )
            stop_reason = "time_budget"
            break
        train_loss = _train_epoch(model, train_loader, criterion, optimizer, device, cfg["precision"], average)
        val_loss, probs, labels = _evaluate(scored, val_loader, criterion, device, cfg["precision"])
        at_half = binary_metrics(labels, probs, 0.5)
        lr = optimizer.param_groups[0]["lr"]
        # The learning rate follows the optimiser's own weights, so their path is the same with or
        # without an average (val_loss_raw compares the two on one run).
        raw_loss, raw_note = val_loss, ""
        if average is not None:
            raw_loss = _evaluate(model, val_loader, criterion, device, cfg["precision"])[0]
            raw_note = f" (raw weights {raw_loss:.4f})"
        scheduler.step(raw_loss)
        improved = bool(np.isfinite(val_loss) and val_loss < best_loss)
        if improved:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
        else:
            stale += 1
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": at_half["accuracy"],
                "val_f1": at_half["f1"],
                "lr": lr,
                "seconds": round(time.perf_counter() - t0, 3),
                **({"val_loss_raw": raw_loss} if average is not None else {}),
            }
        )
        _write_json(history, out / "training_history.json")  # progress visible during long runs
        log.info(
            "epoch %d/%d train_loss=%.4f val_loss=%.4f%s val_acc=%.3f val_f1=%.3f lr=%.2e %.1fs%s",
            epoch,
            max_epochs,
            train_loss,
            val_loss,
            raw_note,
            at_half["accuracy"],
            at_half["f1"],
            lr,
            history[-1]["seconds"],
            " *best" if improved else "",
        )
        if stale >= patience:
            log.info("early stopping: val loss has not improved for %d epochs", patience)
            stop_reason = "early_stopping"
            break
    if best_state is None:
        raise RuntimeError("validation loss was never finite: training diverged (lower classifier.lr?)")

    tcfg = cfg["threshold"]
    final_tuned = tune_thresholds(scored, val_loader, device, tcfg)
    final_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
    scored.load_state_dict(best_state)
    # Scoring the validation chips 8 times takes minutes: not twice for the same weights.
    tuned = final_tuned if best_epoch == len(history) else tune_thresholds(scored, val_loader, device, tcfg)
    for suffix, what in (("", "single view"), ("_tta", "8-view average")):
        m = tuned[f"val_metrics{suffix}"]
        log.info(
            "best epoch %d (val loss %.4f), %s: threshold %.4f (%s): precision %.3f recall %.3f f1 %.3f",
            best_epoch,
            best_loss,
            what,
            tuned[f"threshold{suffix}"],
            tcfg["method"],
            m["precision"],
            m["recall"],
            m["f1"],
        )

    base_meta = {
        "arch": cfg["arch"],
        "weights": cfg["weights"],
        "bands": bands,
        "input_size": size,
        "in_channels": len(bands),
        "dropout": float(cfg["dropout"]),
        "low": low,
        "high": high,
        "mean": mean,
        "std": std,
        "threshold_method": tcfg["method"],
        "train_config": cfg,
        # How the training images were matched: detection and evaluation must prepare chips alike.
        "matching": {"per_chip": True, "p_low": 2.0, "p_high": 98.0, **(matching or {})},
        # What ground and values the model learnt: detection and evaluation refuse anything else.
        **checkpoint_record(contract),
    }
    best_meta = save_checkpoint(
        out / "best_model.pth", scored, {**base_meta, **tuned, "epoch": best_epoch, "val_loss": best_loss}
    )
    scored.load_state_dict(final_state)
    final_meta = save_checkpoint(
        out / "final_model.pth",
        scored,
        {**base_meta, **final_tuned, "epoch": len(history), "val_loss": history[-1]["val_loss"]},
    )

    _plot_curves(history, best_epoch, out / "training_curves.png")
    summary = {
        "classifier": cfg,
        "bands_model_order": bands,
        "data": data_counts,
        "pos_weight": pos_weight,
        "device": str(device),
        "threads": int(threads),
        "epochs_run": len(history),
        "stopped_early": len(history) < max_epochs,
        "stop_reason": stop_reason,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        **tuned,
        "threshold_method": tcfg["method"],
        "model_id": best_meta["model_id"],
        "final_model": {**final_tuned, "model_id": final_meta["model_id"]},
        "split_csv": str(split_csv),
        "stats_json": str(stats_json),
        "low": low,
        "high": high,
        "mean": mean,
        "std": std,
        "contract": checkpoint_record(contract),
    }
    _write_json(summary, out / "config.json")
    return {
        **summary,
        "out_dir": str(out),
        "history": history,
        "best_model": str(out / "best_model.pth"),
        "final_model_path": str(out / "final_model.pth"),
    }
