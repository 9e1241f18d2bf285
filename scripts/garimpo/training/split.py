"""Train/validation/test split by spatial group, done before augmentation so copies never leak."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd


def spatial_groups(
    lon: np.ndarray, lat: np.ndarray, block_m: float, source=None, order=None, run_length: int | None = None
) -> np.ndarray:
    """Group id of the square block (about ``block_m`` on a side) each point falls in.

    Images without coordinates (local folders) are grouped by their source list when one
    is given, since chips of one list share places and scenes; else each is its own group.
    With ``run_length``, a list is instead cut into runs of that many chips in ``order``
    (e.g. file name): exported lists are in place order, so neighbours share a run.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    deg = block_m / 111_320.0
    # Longitude blocks widen with latitude so blocks stay about square on the ground.
    lat_idx = np.floor(lat / deg)
    lat_c = np.radians((lat_idx + 0.5) * deg)
    lon_idx = np.floor(lon / (deg / np.maximum(np.cos(lat_c), 0.01)))
    groups = np.array(
        [f"b{int(a)}_{int(b)}" if np.isfinite(a) and np.isfinite(b) else "" for a, b in zip(lat_idx, lon_idx)],
        dtype=object,
    )
    lonely = groups == ""
    if source is not None:
        source = np.asarray(source, dtype=object)
        groups[lonely] = [f"src:{s}" for s in source[lonely]]
        if run_length:
            keys = np.arange(len(groups)) if order is None else np.asarray(order, dtype=object)
            for name in pd.unique(source[lonely]):
                rows = np.flatnonzero(lonely & (source == name))
                rows = rows[np.argsort(keys[rows], kind="stable")]
                groups[rows] = [f"src:{name}:run{k // int(run_length)}" for k in range(len(rows))]
    else:
        groups[lonely] = [f"p{i}" for i in np.flatnonzero(lonely)]
    return groups


def held_out(source: Sequence[str], patterns: Sequence[str]) -> np.ndarray:
    """True where a row's source list matches one of ``split.test_sources``.

    These rows form the test set: they are never trained on, validated on nor augmented.
    """
    return matches_any(source, patterns, "split.test_sources")


def matches_any(source: Sequence[str], patterns: Sequence[str], key: str) -> np.ndarray:
    """True where a source name matches one of the regular expressions (searched, case-insensitive);
    ``key`` names the config entry in the error for an invalid expression."""
    names = pd.Series(np.asarray(source, dtype=object)).fillna("").astype(str)
    out = np.zeros(len(names), dtype=bool)
    for pattern in patterns:
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"{key}: {pattern!r} is not a valid regular expression ({err})") from err
        out |= names.map(lambda s, rx=regex: bool(rx.search(s))).to_numpy(dtype=bool)
    return out


def assign_split(
    index: pd.DataFrame,
    val_fraction: float,
    block_m: float,
    seed: int = 0,
    test_sources: Sequence[str] = (),
    run_length: int | None = None,
) -> tuple[pd.Series, pd.Series]:
    """``train``/``val``/``test`` per row, whole spatial groups at a time, stratified by label.

    Rows whose source matches ``test_sources`` are ``test``.  Of the rest, for each label,
    groups are shuffled and taken into validation until the label's validation share
    reaches ``val_fraction``, skipping groups that would take it past twice that (at least
    one group, the smallest, when a label has two or more).  With
    ``run_length`` (chips without coordinates cut into runs of their list, see
    :func:`spatial_groups`) the share is taken from every source list of each label, so
    that no kind of look-alike is left out of training or out of validation.
    """
    rng = np.random.default_rng(seed)
    source = index["source"].to_numpy() if "source" in index else None
    if run_length and source is None:
        raise ValueError("split.local_run_length needs a source column in the training image index")
    order = index["path"].to_numpy() if "path" in index else None
    groups = pd.Series(
        spatial_groups(index["lon"].to_numpy(), index["lat"].to_numpy(), block_m, source, order, run_length),
        index=index.index,
    )
    split = pd.Series("train", index=index.index)
    if test_sources:
        if source is None:
            raise ValueError("split.test_sources needs a source column in the training image index")
        test = pd.Series(held_out(source, test_sources), index=index.index)
        # A group seen in test must not be trained on: place-groups straddling sources go to test whole.
        test |= groups.isin(set(groups[test]))
        split[test] = "test"
        if test.all():
            raise ValueError(
                f"split.test_sources {list(test_sources)} match every training image: nothing left to train on"
            )
    strata = ["label", "source"] if run_length else ["label"]
    kept = index[split != "test"]
    for _, stratum in kept.groupby(strata, sort=True, dropna=False):
        label = stratum["label"].iloc[0]
        # A chosen group goes to validation whole for its label, even rows of another source.
        same_label = (index["label"] == label) & (split != "test")
        sizes = groups[stratum.index].value_counts()
        if len(sizes) < 2:
            continue  # one group cannot be both trained on and validated on
        target = val_fraction * len(stratum)
        taken = 0
        for grp in rng.permutation(sizes.index.to_numpy()):
            if taken >= target:
                break
            if taken + sizes[grp] > 2 * target:
                continue  # would overshoot: a smaller group may fit
            split[same_label & (groups == grp)] = "val"
            taken += sizes[grp]
        if taken == 0:  # every group is large: the smallest one
            split[same_label & (groups == sizes.idxmin())] = "val"
    return split, groups
