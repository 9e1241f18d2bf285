"""Confidence intervals for evaluation figures by a stratified block bootstrap (numpy only).

A test set of a few hundred chips gives figures that move by several points with which chips happen to
be in it; a user comparing two models, or a model against a target, needs that spread.  Chips of one
source list that are close in the list's order are often close on the ground (lists are exported in
place order), so they are not independent: resampling single chips would understate the spread.  The
chips are therefore cut into blocks of ``block`` consecutive chips within each (source, label), and
whole blocks are drawn with replacement, as many of each class as the set has.  The threshold stays
the one chosen on validation: the intervals cover which chips were sampled, not retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from garimpo.classifier.metrics import _as_arrays, average_precision, binary_metrics, roc_auc

CI_METRICS = ("precision", "recall", "f1", "specificity", "pr_auc", "roc_auc")


@dataclass(frozen=True)
class Bootstrap:
    """How to resample (config ``evaluation.bootstrap``)."""

    resamples: int = 1000  # draws; 0 leaves the intervals out
    level: float = 0.95  # of the percentile intervals
    block: int = 1  # consecutive chips of one source and label drawn together
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.level < 1:
            raise ValueError(f"bootstrap level must be between 0 and 1, got {self.level}")


def chip_blocks(labels: np.ndarray, sources: Sequence[str] | None, block: int) -> list[list[np.ndarray]]:
    """Index blocks per class: ``[negative_blocks, positive_blocks]``.

    Each block holds up to ``block`` consecutive indices (in the given order) of one source and label.
    """
    if block < 1:
        raise ValueError(f"bootstrap block must be >= 1, got {block}")
    names = np.asarray(["" for _ in labels] if sources is None else [str(s) for s in sources])
    out: list[list[np.ndarray]] = [[], []]
    for label in (0, 1):
        for src in dict.fromkeys(names[labels == label]):  # first-seen order: reproducible
            idx = np.flatnonzero((labels == label) & (names == src))
            out[label].extend(idx[i : i + block] for i in range(0, idx.size, block))
    return out


def _figures(y: np.ndarray, p: np.ndarray, threshold: float) -> list[float]:
    m = binary_metrics(y, p, threshold)
    return [m["precision"], m["recall"], m["f1"], m["specificity"], average_precision(y, p), roc_auc(y, p)]


def _resampled(y_true: np.ndarray, sources, figures, how: Bootstrap) -> dict:
    """``figures(chip_indices)`` over block-bootstrap draws: the settings and percentile intervals.

    Each draw takes as many blocks of each class as the set has, with replacement.  Intervals are None
    when there is no draw, when a class is absent, or when a figure is undefined in some draw.
    """
    report: dict = asdict(how)
    blocks = chip_blocks(y_true, sources, how.block)
    if how.resamples < 1 or not blocks[0] or not blocks[1]:
        return {**report, **{k: None for k in CI_METRICS}}
    rng = np.random.default_rng(how.seed)
    draws = np.array(
        [
            figures(np.concatenate([cls[j] for cls in blocks for j in rng.integers(0, len(cls), len(cls))]))
            for _ in range(how.resamples)
        ]
    )
    tail = (1.0 - how.level) / 2.0 * 100.0
    for k, name in enumerate(CI_METRICS):
        col = draws[:, k]
        report[name] = (
            [float(np.percentile(col, tail)), float(np.percentile(col, 100.0 - tail))]
            if np.isfinite(col).all()
            else None
        )
    return report


def bootstrap_intervals(
    y_true,
    y_prob,
    threshold: float,
    sources: Sequence[str] | None = None,
    *,
    how: Bootstrap = Bootstrap(),
) -> dict:
    """Percentile intervals of ``CI_METRICS`` over block-bootstrap draws of the chips.

    Returns ``{"resamples", "level", "block", "seed", METRIC: [low, high] or None}``; a metric is None
    when it is undefined in some draws (a class absent) or there are no draws.
    """
    y_true, y_prob = _as_arrays(y_true, y_prob)
    return _resampled(y_true, sources, lambda i: _figures(y_true[i], y_prob[i], threshold), how)


def paired_differences(
    y_true,
    prob_a,
    prob_b,
    threshold_a: float,
    threshold_b: float,
    sources: Sequence[str] | None = None,
    *,
    how: Bootstrap = Bootstrap(),
) -> dict:
    """Model B minus model A on the same chips: the difference of each figure and its interval.

    Both models are scored on the same draws, so what the chips have in common (an easy or hard list)
    cancels out, and the interval of the difference is much narrower than the two intervals side by
    side.  Returns ``{"resamples", "level", "block", "seed", "difference": {METRIC: b - a},
    METRIC: [low, high] or None}``.
    """
    y_true, prob_a = _as_arrays(y_true, prob_a)
    _, prob_b = _as_arrays(y_true, prob_b)

    def diff(idx):
        y = y_true[idx]
        return np.subtract(_figures(y, prob_b[idx], threshold_b), _figures(y, prob_a[idx], threshold_a))

    point = diff(np.arange(y_true.size))
    report = _resampled(y_true, sources, diff, how)
    return {**report, "difference": {name: float(v) for name, v in zip(CI_METRICS, point)}}
