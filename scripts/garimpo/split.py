"""Train/validation/test split by spatial group, done before augmentation so copies never leak."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd


def spatial_groups(lon: np.ndarray, lat: np.ndarray, block_m: float, source=None) -> np.ndarray:
    """Group id of the square block (about ``block_m`` on a side) each point falls in.

    Images without coordinates (local folders) are grouped by their source list when one
    is given, since chips of one list share places and scenes; else each is its own group.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    deg = block_m / 111_320.0
    # Longitude blocks widen with latitude so blocks stay about square on the ground.
    lat_idx = np.floor(lat / deg)
    lat_c = np.radians((lat_idx + 0.5) * deg)
    lon_idx = np.floor(lon / (deg / np.maximum(np.cos(lat_c), 0.01)))
    groups = np.array([f"b{int(a)}_{int(b)}" if np.isfinite(a) and np.isfinite(b) else "" for a, b in zip(lat_idx, lon_idx)],
                      dtype=object)
    lonely = groups == ""
    if source is not None:
        groups[lonely] = [f"src:{s}" for s in np.asarray(source, dtype=object)[lonely]]
    else:
        groups[lonely] = [f"p{i}" for i in np.flatnonzero(lonely)]
    return groups


def held_out(source: Sequence[str], patterns: Sequence[str]) -> np.ndarray:
    """True where a row's source list matches one of the regular expressions (searched, case-insensitive).

    These rows form the test set: they are never trained on, validated on nor augmented.
    """
    source = pd.Series(np.asarray(source, dtype=object)).fillna("").astype(str)
    out = np.zeros(len(source), dtype=bool)
    for pattern in patterns:
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"split.test_sources: {pattern!r} is not a valid regular expression ({err})") from err
        out |= source.map(lambda s: bool(regex.search(s))).to_numpy(dtype=bool)
    return out


def assign_split(index: pd.DataFrame, val_fraction: float, block_m: float, seed: int = 0,
                 test_sources: Sequence[str] = ()) -> tuple[pd.Series, pd.Series]:
    """``train``/``val``/``test`` per row, whole spatial groups at a time, stratified by label.

    Rows whose source matches ``test_sources`` are ``test``.  Of the rest, for each label,
    groups are shuffled and taken into validation until the label's validation share
    reaches ``val_fraction`` (at least one group when a label has two or more).
    """
    rng = np.random.default_rng(seed)
    source = index["source"].to_numpy() if "source" in index else None
    groups = pd.Series(spatial_groups(index["lon"].to_numpy(), index["lat"].to_numpy(), block_m, source),
                       index=index.index)
    split = pd.Series("train", index=index.index)
    if test_sources:
        if source is None:
            raise ValueError("split.test_sources needs a source column in the tile index")
        test = pd.Series(held_out(source, test_sources), index=index.index)
        # A group seen in test must not be trained on: place-groups straddling sources go to test whole.
        test |= groups.isin(set(groups[test]))
        split[test] = "test"
        if test.all():
            raise ValueError(f"split.test_sources {list(test_sources)} match every tile: nothing left to train on")
    for label in sorted(index["label"].unique()):
        rows = (index["label"] == label) & (split != "test")
        g = groups[rows]
        sizes = g.value_counts()
        order = rng.permutation(sizes.index.to_numpy())
        target = val_fraction * rows.sum()
        taken = 0
        for grp in order:
            if taken >= target or len(sizes) < 2:
                break
            if taken + sizes[grp] > 2 * target and taken > 0:
                continue
            split[rows & (groups == grp)] = "val"
            taken += sizes[grp]
    return split, groups
