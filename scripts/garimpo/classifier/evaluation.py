"""Score a trained classifier on any labelled folder of chips.

A chip set is a folder with either a ``manifest.csv`` (columns ``path``, ``label``,
optional ``source``; paths relative to the folder) or ``positive/`` and ``negative/``
subfolders.  Chips are read and matched onto the positives' statistics exactly as
training images are (``import_local_images`` then ``match_training_images``; 8-bit chips decoded by
their folder's encoding), scored in bounded batches, and summarised with threshold
metrics, PR-AUC and ROC-AUC. ``chip_set_contract`` tells what ground and values a chip
set holds, so a model can be refused chips of another kind before any is scored.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
from PIL import Image
from torch import nn

from garimpo.classifier.bootstrap import Bootstrap, bootstrap_intervals
from garimpo.classifier.data import preprocess
from garimpo.classifier.metrics import (
    _as_arrays,
    average_precision,
    binary_metrics,
    decision_threshold,
    roc_auc,
    threshold_sweep,
)
from garimpo.classifier.model import view_probs
from garimpo.contract import (
    ENCODINGS,
    ImageContract,
    ImageFolder,
    common_contract,
    image_contract,
    per_chip_matching,
)
from garimpo.errors import InputDataError
from garimpo.geo.raster import (
    GEOTIFF_SUFFIXES,
    IMAGE_SUFFIXES,
    RGB_BANDS,
    band_indexes,
    band_names,
    image_bands,
    read_header,
    read_image,
)
from garimpo.pixels.matching import reference_bounds, stretch_to_reference
from garimpo.training.split import matches_any

log = logging.getLogger(__name__)

_LABELS = {"positive": 1, "negative": 0, "1": 1, "0": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0}


# Source name of chips from a folder without a manifest.
UNKNOWN_SOURCE = "unknown"

# ---------------------------------------------------------------- chip sets


def load_chip_set(folder: str | os.PathLike) -> pd.DataFrame:
    """Chips of a labelled folder as ``DataFrame[path, label (0/1), source]``.

    Uses ``folder/manifest.csv`` when present, else the images under
    ``folder/positive`` and ``folder/negative`` (source ``"unknown"``).

    Raises:
        InputDataError: the folder is missing or holds no image, or its manifest is unreadable, lacks the
            path/label columns, has labels other than positive/negative (1/0) or names missing files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"chip set folder {folder} not found; fix evaluation.chip_sets")
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        df = _from_manifest(folder, manifest)
    else:
        sub = {name: folder / name for name in ("positive", "negative")}
        if not any(p.is_dir() for p in sub.values()):
            raise InputDataError(
                f"chip set folder {folder} has neither a manifest.csv (columns path,label,source) "
                "nor positive/ and negative/ subfolders"
            )
        rows = []
        for name, label in (("positive", 1), ("negative", 0)):
            if not sub[name].is_dir():
                log.warning("chip set %s has no %s/ subfolder", folder, name)
                continue
            files = sorted(p for p in sub[name].rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            rows += [{"path": str(p), "label": label, "source": UNKNOWN_SOURCE} for p in files]
        df = pd.DataFrame(rows, columns=["path", "label", "source"])
    if df.empty:
        raise InputDataError(f"chip set folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} chip")
    return df.reset_index(drop=True)


def select_sources(chips: pd.DataFrame, patterns: Sequence[str], name: str) -> pd.DataFrame:
    """The chips whose source list matches one of ``patterns`` (``evaluation.sources.NAME``); all when empty.

    Lets part of a folder be scored on its own, e.g. some of the held-out lists.

    Raises:
        InputDataError: a pattern is not a valid regular expression, or no chip matches the patterns;
            the message names ``evaluation.sources.NAME``.
    """
    if not patterns:
        return chips
    key = f"evaluation.sources.{name}"
    if (chips["source"] == UNKNOWN_SOURCE).all():
        raise InputDataError(
            f"{key} selects by source list, but chip set {name!r} names no sources: "
            "give it a manifest.csv with a source column, or drop the selection"
        )
    try:
        keep = matches_any(chips["source"], patterns, key)
    except ValueError as err:
        raise InputDataError(str(err)) from err
    if not keep.any():
        raise InputDataError(
            f"{key} {list(patterns)} matches none of chip set {name!r}'s source lists "
            f"{sorted(set(chips['source']))[:10]}"
        )
    return chips[keep].reset_index(drop=True)


def _from_manifest(folder: Path, manifest: Path) -> pd.DataFrame:
    raw = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "label") if c not in raw.columns]
    if missing:
        raise InputDataError(f"{manifest} lacks columns {missing}; it has {list(raw.columns)}")
    labels = raw["label"].str.strip().str.lower().map(_LABELS)
    bad = sorted(set(raw.loc[labels.isna(), "label"]))
    if bad:
        raise InputDataError(f"{manifest} has labels {bad[:5]}; use positive/negative or 1/0")
    paths = [str(p if Path(p).is_absolute() else folder / p) for p in raw["path"].str.strip()]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise InputDataError(
            f"{manifest} lists {len(absent)} chip(s) that do not exist (paths are relative to "
            f"{folder}), e.g. {absent[:3]}"
        )
    source = raw["source"].replace("", UNKNOWN_SOURCE) if "source" in raw.columns else UNKNOWN_SOURCE
    return pd.DataFrame({"path": paths, "label": labels.astype(int), "source": source})


def chip_set_contract(
    paths: Sequence[str | os.PathLike], folder: ImageFolder, bands: Sequence[str] = ()
) -> ImageContract:
    """The footprint, pixel size and units every chip of a chip set shares (headers only, no pixels).

    ``folder``: the chip set's config entry (``garimpo.contract.image_folder``): 8-bit chips need its
    ``encoding``, chips without a georeferencing in metres (or a pixel_size_m tag) its ``pixel_size_m``.
    ``bands``: the bands the model reads (its checkpoint's), which every chip must carry.

    Raises:
        InputDataError: naming the folder and the key when 8-bit chips have no encoding or chips disagree;
            naming every chip (the first 10, and how many in all) that cannot be read, is of a kind that is
            refused (``image_bands``) or lacks one of ``bands``, in one error.
    """
    headers, problems = [], []
    for p in paths:
        try:
            headers.append((p, read_header(p, folder.key)))
        except InputDataError as err:
            problems.append(str(err))
    rendered = [p for p, h in headers if h.eight_bit]
    if rendered and not folder.encoding:
        others = len(headers) - len(rendered)
        mixed = f", besides {others} chips that are not 8-bit: a folder holds one kind of chip" if others else ""
        raise InputDataError(
            f"chip set folder {folder.path} holds {len(rendered)} 8-bit chips (e.g. {rendered[0]}){mixed}. 8-bit "
            f"chips are a rendering, not reflectance: declare their encoding in {folder.key}, e.g. {folder.spec} "
            f"(known encodings: {sorted(ENCODINGS)})" + (", or move them out of the folder" if others else "")
        )
    for p, h in headers:  # grey, palette, 16-bit, missing bands... refused before any chip is scored
        try:
            _, names = image_bands(p, h, folder.encoding, folder.key)
        except InputDataError as err:
            problems.append(str(err))
            continue
        missing = [b for b in bands if b not in names]
        if missing:
            problems.append(f"chip {p} ({folder.key}) has bands {list(names)}, without {missing} that the model reads")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InputDataError(
            f"{len(problems)} chip(s) of {folder.path} cannot be scored{more}:\n  " + "\n  ".join(problems[:10])
        )
    # Decoded chips take their units from the encoding (image_contract), as imported training images do.
    return common_contract(
        ((p, image_contract(p, h.shape, h.crs, h.transform, h.tags, folder)) for p, h in headers),
        f"the chips of {folder.path} ({folder.key})",
    )


def read_chip(
    path: str | os.PathLike,
    bands: Sequence[str],
    stats: Mapping | str | os.PathLike,
    p_low: float = 2.0,
    p_high: float = 98.0,
    per_chip: bool = True,
    encoding: str | None = None,
    key: str | None = None,
) -> np.ndarray:
    """One chip as float32 [C, H, W] in ``bands`` order, matched to the positive statistics.

    8-bit chips (PNG/JPEG: bands B04, B03, B02) are decoded to reflectance by ``encoding``
    (a name in ``garimpo.contract.ENCODINGS``; refused without one); GeoTIFF bands are
    picked by their descriptions.  Each band's own P_low/P_high is then stretched
    onto the positives' P2/P98 with ``stretch_to_reference``, as in ``match_training_images``
    (unless ``per_chip`` is false: then the chip is returned as read, as training saw it).
    ``key``: the config key of the chip's folder, named in errors (``garimpo.geo.raster.read_image``).

    Raises:
        InputDataError: the chip cannot be read or is a refused kind (``read_image``), lacks one of ``bands``,
            or the statistics lack one.
    """
    stats = _load_stats(stats)
    path = Path(path)
    chip = read_image(path, encoding, key)  # unreadable files and refused kinds: InputDataError naming them
    arr, names = chip.array, [n.strip() for n in chip.band_names]
    missing = [b for b in bands if b not in names]
    if missing:
        raise InputDataError(
            f"chip {path} lacks the model's bands {missing}; it has {names} (PNG/JPEG chips only carry B04, B03, B02)"
        )
    arr = np.ascontiguousarray(arr[[names.index(b) for b in bands]])
    if not per_chip:
        return arr.astype(np.float32, copy=False)
    low, high = reference_bounds(stats, list(bands), "the positive statistics given for the model")
    return stretch_to_reference(arr, low, high, p_low, p_high)


def _load_stats(stats: Mapping | str | os.PathLike) -> Mapping:
    if isinstance(stats, Mapping):
        return stats
    with open(stats) as fh:
        return json.load(fh)


# ---------------------------------------------------------------- scoring


@torch.inference_mode()
def score_chips(
    model: nn.Module,
    meta: dict,
    paths: Sequence[str | os.PathLike],
    stats: Mapping | str | os.PathLike,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    tta: bool = False,
    p_low: float = 2.0,
    p_high: float = 98.0,
    encoding: str | None = None,
    key: str | None = None,
) -> np.ndarray:
    """P(mining) per chip path; reads ``batch_size`` chips at a time (memory stays bounded).

    Each chip is preprocessed on its own (chips may differ in size), exactly as
    ``predict_proba`` would; ``tta`` averages the 8 rotations/flips; ``encoding`` decodes
    8-bit chips and ``key`` names their folder's config key in errors (see ``read_chip``).
    """
    stats = _load_stats(stats)
    bands = list(meta["bands"])
    args = (meta["low"], meta["high"], int(meta["input_size"]), meta["mean"], meta["std"])
    # The checkpoint says how its training images were matched; older ones were matched per image.
    matching = meta.get("matching") or {}
    p_low, p_high = float(matching.get("p_low", p_low)), float(matching.get("p_high", p_high))
    per_chip = per_chip_matching(meta)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            x = torch.cat(
                [
                    preprocess(read_chip(p, bands, stats, p_low, p_high, per_chip, encoding, key)[None], *args)
                    for p in chunk
                ]
            )
            x = x.to(device)
            out.append(view_probs(model, x, tta).mean(0).cpu())
            if (start // batch_size) % 20 == 0:
                log.info("scored %d / %d chips", start + len(chunk), len(paths))
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(float) if out else np.zeros(0)


# ---------------------------------------------------------------- metrics


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def metrics_from_scores(
    y_true,
    y_prob,
    threshold: float,
    sources: Sequence[str] | None = None,
    bootstrap: Mapping | None = None,
) -> dict:
    """The evaluation report for scores already computed (see ``evaluate_chip_set``).

    ``bootstrap`` (the fields of ``Bootstrap``) adds ``ci``: confidence intervals of
    the figures over resampled chips.
    """
    y_true, y_prob = _as_arrays(y_true, y_prob)
    m = binary_metrics(y_true, y_prob, threshold)
    report = {
        "n": m["n"],
        "n_positive": int(y_true.sum()),
        "n_negative": int(y_true.size - y_true.sum()),
        "threshold": float(threshold),
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "specificity": m["specificity"],
        "accuracy": m["accuracy"],
        "pr_auc": _finite_or_none(average_precision(y_true, y_prob)),
        "roc_auc": _finite_or_none(roc_auc(y_true, y_prob)),
        "confusion": {k: m[k] for k in ("tp", "fp", "tn", "fn")},
    }
    if bootstrap is not None:
        report["ci"] = bootstrap_intervals(y_true, y_prob, threshold, sources, how=Bootstrap(**bootstrap))
    if sources is not None:
        names = np.asarray([str(s) for s in sources])
        if set(names) != {UNKNOWN_SOURCE}:
            per = {}
            for src in sorted(set(names)):
                sel = names == src
                sm = binary_metrics(y_true[sel], y_prob[sel], threshold)
                per[src] = {
                    "n": int(sel.sum()),
                    "n_positive": int(y_true[sel].sum()),
                    **{k: sm[k] for k in ("precision", "recall", "specificity", "f1")},
                }
            report["per_source"] = per
    return report


def evaluate_chip_set(
    model: nn.Module,
    meta: dict,
    chips_df: pd.DataFrame,
    stats: Mapping | str | os.PathLike,
    threshold: float | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    tta: bool = False,
    p_low: float = 2.0,
    p_high: float = 98.0,
    bootstrap: Mapping | None = None,
    encoding: str | None = None,
    key: str | None = None,
) -> dict:
    """Score ``chips_df`` (from ``load_chip_set``) and report metrics at ``threshold``.

    ``threshold`` None uses the checkpoint's, chosen on validation scores made the same way
    (single view, or the 8-view average with ``tta``).  Keys: n, n_positive,
    n_negative, threshold, precision, recall, f1, specificity, accuracy, pr_auc (average
    precision), roc_auc, confusion {tp, fp, tn, fn}, per_source when sources are known, and ci
    with ``bootstrap`` (see ``metrics_from_scores``).
    The scores themselves are added to ``chips_df`` as column ``score`` (in place). ``encoding``
    decodes 8-bit chips, ``key`` names their folder's config key in errors (see ``read_chip``).
    """
    thr = decision_threshold(meta, tta) if threshold is None else float(threshold)
    scores = score_chips(
        model, meta, list(chips_df["path"]), stats, batch_size, device, tta, p_low, p_high, encoding, key
    )
    chips_df["score"] = scores
    sources = chips_df["source"] if "source" in chips_df.columns else None
    return metrics_from_scores(chips_df["label"].to_numpy(), scores, thr, sources, bootstrap)


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curve(y_true, y_prob, threshold: float, path: str | os.PathLike) -> Path:
    """Precision-recall curve with the operating point at ``threshold`` marked."""
    plt = _pyplot()
    y_true, y_prob = _as_arrays(y_true, y_prob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        if y_true.sum() > 0:
            sweep = threshold_sweep(y_true, y_prob)
            r = np.concatenate([[0.0], sweep["recall"][::-1]])
            p = np.concatenate([[1.0], sweep["precision"][::-1]])
            ax.step(r, p, where="pre", color="tab:blue", label=f"AP = {average_precision(y_true, y_prob):.3f}")
            m = binary_metrics(y_true, y_prob, threshold)
            ax.plot(
                [m["recall"]],
                [m["precision"]],
                "o",
                color="tab:red",
                label=f"threshold {threshold:.3f}: P={m['precision']:.2f} R={m['recall']:.2f}",
            )
            ax.axhline(y_true.mean(), color="grey", ls=":", lw=1, label="chance")
            ax.legend(loc="lower left")
        else:
            ax.text(0.5, 0.5, "no positive chips", ha="center", va="center")
        ax.set(
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            xlabel="recall",
            ylabel="precision",
            title=f"Precision-recall ({y_true.sum()} pos / {(y_true == 0).sum()} neg)",
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def _display_rgb(path: str) -> np.ndarray:
    """An [H, W, 3] (or [H, W]) view of a chip for the gallery, stretched 2-98 %."""
    if Path(path).suffix.lower() in GEOTIFF_SUFFIXES:
        with rasterio.open(path) as src:
            names = band_names(src)
            idx = band_indexes(src, RGB_BANDS) if all(b in names for b in RGB_BANDS) else [1]
            arr = src.read(idx).astype(np.float32)
        lo, hi = np.nanpercentile(arr, [2, 98]) if np.isfinite(arr).any() else (0.0, 1.0)
        arr = np.clip((np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
        return arr.transpose(1, 2, 0) if arr.shape[0] == 3 else arr[0]
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def plot_gallery(df: pd.DataFrame, path: str | os.PathLike, n: int = 16, threshold: float | None = None) -> Path:
    """The n/2 worst false positives (highest-scored negatives) and n/2 worst false negatives.

    ``df`` needs columns path, label, score (source optional).  Without ``threshold``
    the worst negatives/positives are shown whether or not they cross a threshold.
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = max(1, n // 2)
    neg = df[df["label"] == 0]
    pos = df[df["label"] == 1]
    if threshold is not None:
        neg, pos = neg[neg["score"] >= threshold], pos[pos["score"] < threshold]
    groups = [
        ("Worst false positives (negatives, highest score)", neg.sort_values("score", ascending=False).head(k)),
        ("Worst false negatives (positives, lowest score)", pos.sort_values("score", ascending=True).head(k)),
    ]
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    fig = plt.figure(figsize=(2.6 * cols, 2 * (2.8 * rows + 0.4)))
    try:
        for subfig, (title, sel) in zip(fig.subfigures(2, 1), groups):
            subfig.suptitle(title, fontsize=11)
            axes = np.atleast_1d(subfig.subplots(rows, cols)).ravel()
            for ax in axes:
                ax.axis("off")
            if sel.empty:
                axes[0].text(0.0, 0.5, "none", fontsize=10, va="center")
            for ax, rec in zip(axes, sel.to_dict("records")):
                try:
                    ax.imshow(_display_rgb(rec["path"]), cmap="gray")
                except Exception as err:  # a gallery must not fail on one odd chip
                    ax.text(0.0, 0.5, f"unreadable: {err}"[:60], fontsize=6)
                src = str(rec.get("source", UNKNOWN_SOURCE))
                ax.set_title(f"p={rec['score']:.3f}\n{src[:28]}", fontsize=7)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
