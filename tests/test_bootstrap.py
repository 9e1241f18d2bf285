"""Bootstrap confidence intervals of the evaluation figures."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from garimpo.classifier.bootstrap import CI_METRICS, Bootstrap, bootstrap_intervals, chip_blocks, paired_differences
from garimpo.classifier.compare import compare_runs
from garimpo.classifier.evaluation import metrics_from_scores
from garimpo.classifier.metrics import binary_metrics, roc_auc
from garimpo.errors import InputDataError


def _half_found(n_pos=400, n_neg=400):
    """Half the positives and a tenth of the negatives score above 0.5."""
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    p = np.r_[np.tile([0.9, 0.1], n_pos // 2), np.r_[np.full(n_neg // 10, 0.8), np.full(n_neg - n_neg // 10, 0.2)]]
    return y, p


def test_chip_blocks_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 1])
    neg, pos = chip_blocks(labels, ["a", "a", "b", "a", "a", "a"], block=2)
    assert [b.tolist() for b in pos] == [[0, 1], [5], [2]]
    assert [b.tolist() for b in neg] == [[3, 4]]
    neg, pos = chip_blocks(labels, None, block=1)
    assert [b.tolist() for b in pos] == [[0], [1], [2], [5]]
    with pytest.raises(ValueError, match="block"):
        chip_blocks(labels, None, block=0)


def test_independent_chips_match_the_binomial_interval():
    # Recall 0.5 over 400 positives: standard error sqrt(0.25 / 400) = 0.025, 95 % interval +-0.049.
    # Specificity 0.9 over 400 negatives: sqrt(0.09 / 400) = 0.015, +-0.029.
    y, p = _half_found()
    ci = bootstrap_intervals(y, p, 0.5, how=Bootstrap(resamples=2000, seed=1))
    assert ci["recall"] == pytest.approx([0.451, 0.549], abs=0.008)
    assert ci["specificity"] == pytest.approx([0.871, 0.929], abs=0.006)
    assert ci["level"] == 0.95 and ci["resamples"] == 2000 and ci["block"] == 1
    # Narrower at a lower level.
    ci80 = bootstrap_intervals(y, p, 0.5, how=Bootstrap(resamples=2000, level=0.8, seed=1))
    assert ci80["recall"][1] - ci80["recall"][0] < ci["recall"][1] - ci["recall"][0]


def test_correlated_runs_widen_the_block_interval():
    # 20 places of 20 chips each, every chip of a place scored alike: only 20 independent outcomes.
    y, _ = _half_found()
    p = y.astype(float) * 0.0
    p[:400] = np.repeat(np.tile([0.9, 0.1], 10), 20)
    p[400:] = np.repeat(np.r_[np.full(2, 0.8), np.full(18, 0.2)], 20)
    sources = ["list"] * 800
    iid = bootstrap_intervals(y, p, 0.5, sources, how=Bootstrap(resamples=500, block=1))
    blocked = bootstrap_intervals(y, p, 0.5, sources, how=Bootstrap(resamples=500, block=20))
    width = {name: ci["recall"][1] - ci["recall"][0] for name, ci in (("iid", iid), ("blocked", blocked))}
    # sqrt(0.25 / 20) = 0.11 against sqrt(0.25 / 400) = 0.025: about 4.5 times wider.
    assert width["blocked"] > 3 * width["iid"]
    assert blocked["recall"] == pytest.approx([0.5 - 1.96 * 0.112, 0.5 + 1.96 * 0.112], abs=0.05)


def test_perfect_ranking_and_reproducible_draws():
    y = [1] * 10 + [0] * 10
    p = np.linspace(1, 0, 20)
    ci = bootstrap_intervals(y, p, 0.5, how=Bootstrap(resamples=200))
    for name in CI_METRICS:
        assert ci[name] == [1.0, 1.0], name
    y, p = _half_found(40, 40)
    assert bootstrap_intervals(y, p, 0.5, how=Bootstrap(seed=3)) == bootstrap_intervals(
        y, p, 0.5, how=Bootstrap(seed=3)
    )
    assert bootstrap_intervals(y, p, 0.5, how=Bootstrap(seed=3)) != bootstrap_intervals(
        y, p, 0.5, how=Bootstrap(seed=4)
    )


def test_no_intervals_without_draws_or_a_class():
    assert all(bootstrap_intervals([1, 0], [0.9, 0.1], 0.5, how=Bootstrap(resamples=0))[k] is None for k in CI_METRICS)
    assert all(bootstrap_intervals([1, 1], [0.9, 0.1], 0.5)[k] is None for k in CI_METRICS)
    with pytest.raises(ValueError, match="level"):
        Bootstrap(level=95)


def test_metrics_report_carries_the_intervals():
    y, p = _half_found(40, 40)
    assert "ci" not in metrics_from_scores(y, p, 0.5)
    rep = metrics_from_scores(y, p, 0.5, ["a"] * 80, bootstrap={"resamples": 300, "block": 4, "seed": 0})
    assert rep["ci"]["block"] == 4 and rep["ci"]["resamples"] == 300
    lo, hi = rep["ci"]["f1"]
    assert lo < rep["f1"] < hi
    json.dumps(rep, allow_nan=False)


# ---------------------------------------------------------------- comparing two runs


def _scored(folder, names, labels, scores, threshold, model_id, prefix):
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "path": [f"{prefix}/{n}" for n in names],
            "label": labels,
            "source": "list",
            "score": scores,
            "predicted": (np.asarray(scores) >= threshold).astype(int),
        }
    ).to_csv(folder / "scores.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"threshold": threshold, "model_id": model_id}))
    return folder


def test_paired_differences_cancel_what_the_chips_share():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)
    p_a = np.clip(0.3 * y + rng.normal(0.35, 0.2, 200), 0, 1)  # ROC-AUC about 0.85
    same = paired_differences(y, p_a, p_a, 0.5, 0.5, how=Bootstrap(resamples=200))
    assert all(same[k] == [0.0, 0.0] and same["difference"][k] == 0.0 for k in CI_METRICS)
    # B: A's scores slightly perturbed. Unpaired, each interval is wide; paired, the difference's is narrow.
    p_b = np.clip(p_a + rng.normal(0, 0.02, 200), 0, 1)
    diff = paired_differences(y, p_a, p_b, 0.5, 0.5, how=Bootstrap(resamples=500))
    alone = bootstrap_intervals(y, p_a, 0.5, how=Bootstrap(resamples=500))
    assert diff["roc_auc"][1] - diff["roc_auc"][0] < 0.3 * (alone["roc_auc"][1] - alone["roc_auc"][0])
    m_a, m_b = binary_metrics(y, p_a, 0.5), binary_metrics(y, p_b, 0.6)
    assert paired_differences(y, p_a, p_b, 0.5, 0.6, how=Bootstrap(resamples=10))["difference"][
        "recall"
    ] == pytest.approx(m_b["recall"] - m_a["recall"])


def test_compare_runs_matches_chips_by_name(tmp_path):
    names = [f"chip_{i:02d}.png" for i in range(8)]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    a = _scored(tmp_path / "a", names, labels, [0.9, 0.8, 0.4, 0.3, 0.6, 0.2, 0.1, 0.1], 0.5, "aaa", "/clone_a")
    # Run B lists the same chips in another order, under another folder.
    order = [7, 2, 5, 0, 3, 6, 1, 4]
    b_scores = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.1]  # recall 4/4 at 0.5, one false positive less
    b = _scored(
        tmp_path / "b",
        [names[i] for i in order],
        [labels[i] for i in order],
        [b_scores[i] for i in order],
        0.5,
        "bbb",
        "results/heldout",
    )
    rep = compare_runs(a, b, Bootstrap(resamples=50))
    assert rep["a"]["model_id"] == "aaa" and rep["b"]["model_id"] == "bbb" and rep["n"] == 8
    assert rep["difference"]["recall"] == pytest.approx(1.0 - 0.5)
    assert rep["difference"]["specificity"] == pytest.approx(1.0 - 0.75)
    assert rep["difference"]["roc_auc"] == pytest.approx(
        1.0 - roc_auc(labels, [0.9, 0.8, 0.4, 0.3, 0.6, 0.2, 0.1, 0.1])
    )


def test_compare_runs_says_what_does_not_match(tmp_path):
    names = ["x.png", "y.png"]
    a = _scored(tmp_path / "a", names, [1, 0], [0.9, 0.1], 0.5, "a", "p")
    with pytest.raises(InputDataError, match="scores.csv.*not found"):
        compare_runs(a, tmp_path / "none")
    other = _scored(tmp_path / "b", ["x.png", "z.png"], [1, 0], [0.9, 0.1], 0.5, "b", "p")
    with pytest.raises(InputDataError, match="different chips.*z.png"):
        compare_runs(a, other)
    relabelled = _scored(tmp_path / "c", names, [0, 0], [0.9, 0.1], 0.5, "c", "p")
    with pytest.raises(InputDataError, match="x.png is labelled 1"):
        compare_runs(a, relabelled)
    twice = _scored(tmp_path / "d", ["x.png", "x.png"], [1, 0], [0.9, 0.1], 0.5, "d", "p")
    with pytest.raises(InputDataError, match="more than once"):
        compare_runs(a, twice)


def test_compare_models_command_prints_the_report(tmp_path, capsys):
    import runpy
    import sys

    names = [f"c{i}.png" for i in range(6)]
    a = _scored(tmp_path / "a", names, [1, 1, 1, 0, 0, 0], [0.9, 0.6, 0.2, 0.7, 0.1, 0.3], 0.5, "a", "x")
    b = _scored(tmp_path / "b", names, [1, 1, 1, 0, 0, 0], [0.9, 0.6, 0.8, 0.2, 0.1, 0.3], 0.5, "b", "y")
    argv = sys.argv
    sys.argv = ["compare_models.py", str(a), str(b), "--resamples", "20", "--block", "2"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(
                str(Path(__file__).resolve().parents[1] / "scripts" / "compare_models.py"), run_name="__main__"
            )
    finally:
        sys.argv = argv
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["block"] == 2 and report["resamples"] == 20
    assert report["difference"]["recall"] == pytest.approx(1 / 3) and report["difference"][
        "specificity"
    ] == pytest.approx(1 / 3)
