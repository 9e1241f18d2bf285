"""Binary classification metrics and decision-threshold choice (numpy only)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

log = logging.getLogger(__name__)

THRESHOLD_METHODS = ("max_f1", "fixed", "target_precision")


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _as_arrays(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_prob has {y_prob.size}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    return y_true, y_prob


def binary_metrics(y_true, y_prob, threshold: float = 0.5) -> dict:
    """Confusion counts and rates for ``y_prob >= threshold``; undefined ratios are 0.0."""
    y_true, y_prob = _as_arrays(y_true, y_prob)
    pred = y_prob >= threshold
    pos = y_true == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))
    fn = int(np.sum(~pred & pos))
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "n": int(y_true.size),
        "precision": precision,
        "recall": recall,
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "accuracy": _safe_div(tp + tn, y_true.size),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def threshold_sweep(y_true, y_prob) -> dict[str, np.ndarray]:
    """Precision/recall/F1 for every distinct probability used as threshold (ascending)."""
    y_true, y_prob = _as_arrays(y_true, y_prob)
    cand = np.unique(y_prob)
    pos = np.sort(y_prob[y_true == 1])
    neg = np.sort(y_prob[y_true == 0])
    # Count of scores >= t in each class, via binary search (O(n log n)).
    tp = pos.size - np.searchsorted(pos, cand, side="left")
    fp = neg.size - np.searchsorted(neg, cand, side="left")
    fn = pos.size - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(pos.size > 0, tp / max(pos.size, 1), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return {"threshold": cand, "precision": precision, "recall": recall, "f1": f1}


def average_precision(y_true, y_prob) -> float:
    """Area under the PR curve as sum_k (R_k - R_{k-1}) P_k over distinct thresholds (ties grouped).

    NaN when there is no positive.
    """
    y_true, y_prob = _as_arrays(y_true, y_prob)
    if y_true.sum() == 0:
        return float("nan")
    sweep = threshold_sweep(y_true, y_prob)
    recall = sweep["recall"][::-1]  # descending thresholds: recall grows
    precision = sweep["precision"][::-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def roc_auc(y_true, y_prob) -> float:
    """ROC-AUC as the Mann-Whitney statistic with mid-ranks (a tie counts 1/2).

    NaN when either class is absent.
    """
    y_true, y_prob = _as_arrays(y_true, y_prob)
    n_pos = int(y_true.sum())
    n_neg = int(y_true.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(y_prob, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank where each distinct value starts
    midrank = first + (counts + 1) / 2.0  # 1-based average rank of the tied group
    rank_sum = float(midrank[inverse][y_true == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _between(cand: np.ndarray, i: int) -> float:
    """Midway to the next lower score: same decisions on this data, more margin on new data."""
    return float(cand[i]) if i == 0 else float((cand[i - 1] + cand[i]) / 2.0)


def choose_threshold(
    y_true,
    y_prob,
    method: str = "max_f1",
    value: float = 0.5,
    target_precision: float = 0.95,
) -> float:
    """Decision threshold on validation scores.

    ``max_f1``: the threshold with the best F1 (highest one among ties, i.e. the
    fewest alerts); ``fixed``: ``value``; ``target_precision``: the smallest
    threshold whose precision reaches the target (most recall), falling back to
    max F1 with a warning when no threshold reaches it.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold method {method!r} unknown; use one of {THRESHOLD_METHODS}")
    if method == "fixed":
        return float(value)
    y_true, y_prob = _as_arrays(y_true, y_prob)
    if y_true.size == 0 or y_true.sum() == 0:
        log.warning("no positive validation samples: cannot tune the threshold, using %.3f", value)
        return float(value)
    sweep = threshold_sweep(y_true, y_prob)
    cand = sweep["threshold"]
    if method == "target_precision":
        ok = np.flatnonzero(sweep["precision"] >= target_precision)
        if ok.size:
            return _between(cand, int(ok[0]))
        log.warning(
            "no threshold reaches precision %.3f on validation (best %.3f); falling back to max F1",
            target_precision,
            float(sweep["precision"].max()),
        )
    f1 = sweep["f1"]
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return _between(cand, best)


def decision_threshold(meta: Mapping, tta: bool) -> float:
    """The threshold chosen on validation for scores made like these: 8-view averages
    (``threshold_tta``) or single views (``threshold``).

    Averaged scores are less extreme, so the single-view threshold does not fit them.  Checkpoints
    from before ``threshold_tta`` existed fall back to ``threshold``.
    """
    if tta and meta.get("threshold_tta") is not None:
        return float(meta["threshold_tta"])
    if tta:
        log.warning(
            "model %s has no threshold chosen on 8-view scores (trained before garimpo had it); "
            "using its single-view threshold %.3f",
            meta.get("model_id"),
            float(meta["threshold"]),
        )
    return float(meta["threshold"])
