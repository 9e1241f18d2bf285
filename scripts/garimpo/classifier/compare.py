"""Compare two models scored on the same chip set (two results/eval/NAME folders).

Each folder holds the evaluation rule's ``metrics.json`` (threshold, model_id) and ``scores.csv`` (one
row per chip).  Chips are matched by file name, so runs in different clones or folders compare.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from garimpo.classifier.bootstrap import Bootstrap, paired_differences
from garimpo.errors import InputDataError


def load_scored(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """``scores.csv`` keyed by chip file name, and ``metrics.json``, of one evaluation folder.

    Raises:
        InputDataError: a file is missing (not a folder the ``evaluate_chip_set`` rule wrote), or a chip
            file name appears twice, so chips cannot be matched across runs.
    """
    folder = Path(folder)
    paths = {name: folder / name for name in ("scores.csv", "metrics.json")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputDataError(
            f"{', '.join(missing)} not found: give a results/eval/NAME folder that the "
            "evaluate_chip_set rule has written"
        )
    scores = pd.read_csv(paths["scores.csv"])
    scores["chip"] = scores["path"].map(lambda p: Path(str(p)).name)
    dup = scores["chip"][scores["chip"].duplicated()]
    if not dup.empty:
        raise InputDataError(
            f"{paths['scores.csv']}: chip file name {dup.iloc[0]!r} appears more than once, "
            "so chips cannot be matched by name across runs"
        )
    return scores.set_index("chip"), json.loads(paths["metrics.json"].read_text())


def compare_runs(folder_a, folder_b, how: Bootstrap | None = None) -> dict:
    """Figures of run B minus run A on the chips both scored, with paired bootstrap intervals.

    Chips keep run A's order (blocks of consecutive chips follow it).

    Raises:
        InputDataError: a folder is unusable (see ``load_scored``), the two runs scored different chips,
            or a chip has different labels in them.
    """
    (sa, ma), (sb, mb) = load_scored(folder_a), load_scored(folder_b)
    if set(sa.index) != set(sb.index):
        only_a, only_b = sorted(set(sa.index) - set(sb.index)), sorted(set(sb.index) - set(sa.index))
        raise InputDataError(
            f"{folder_a} and {folder_b} scored different chips ({len(only_a)} only in the first, "
            f"e.g. {only_a[:1]}; {len(only_b)} only in the second, e.g. {only_b[:1]}); "
            "score the same chip set with both models"
        )
    sb = sb.loc[sa.index]
    if (sa["label"] != sb["label"]).any():
        chip = sa.index[(sa["label"] != sb["label"]).to_numpy()][0]
        raise InputDataError(
            f"chip {chip} is labelled {sa.at[chip, 'label']} in {folder_a} but {sb.at[chip, 'label']} in {folder_b}"
        )
    sources = sa["source"] if "source" in sa.columns else None
    report = paired_differences(
        sa["label"], sa["score"], sb["score"], ma["threshold"], mb["threshold"], sources, how=how or Bootstrap()
    )
    return {
        "a": {"folder": str(folder_a), "model_id": ma.get("model_id"), "threshold": ma["threshold"]},
        "b": {"folder": str(folder_b), "model_id": mb.get("model_id"), "threshold": mb["threshold"]},
        "n": int(len(sa)),
        **report,
    }
