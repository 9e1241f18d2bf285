"""Which training images an epoch draws: uniformly, or evening out the source lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler


def source_balanced_weights(sources: pd.Series, labels: pd.Series, alpha: float) -> np.ndarray:
    """Draw weight of each image: ``n_source ** -alpha``, rescaled within each class so that the classes
    keep their share of the draws (the loss's ``pos_weight`` is computed on those shares).

    alpha 0 draws uniformly, 1 gives every source list of a class the same share, 0.5 is in between.
    Weights sum to 1."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"classifier.source_balance must be within [0, 1], got {alpha}")
    src = sources.astype(str).to_numpy()
    lab = labels.astype(int).to_numpy()
    counts = pd.Series(src).groupby([src, lab]).transform("size").to_numpy(dtype=float)
    raw = counts**-alpha
    out = np.empty_like(raw)
    for cls in np.unique(lab):
        mask = lab == cls
        out[mask] = raw[mask] / raw[mask].sum() * mask.sum()
    return out / out.sum()


def epoch_sampler(train_df: pd.DataFrame, n_draw: int, alpha: float, gen: torch.Generator) -> Sampler:
    """``n_draw`` images per epoch: without replacement when alpha is 0 (the method), else weighted by
    :func:`source_balanced_weights`, with replacement."""
    if alpha == 0:
        return RandomSampler(range(len(train_df)), num_samples=n_draw, generator=gen)
    if "source" not in train_df:
        raise ValueError("classifier.source_balance needs a 'source' column in the split table")
    weights = source_balanced_weights(train_df["source"], train_df["label"], alpha)
    # Ignored below: torch annotates weights as Sequence[float], but converts them with torch.as_tensor, so a
    # tensor (or any array-like) is taken as is.
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),  # type: ignore[arg-type]
        n_draw,
        replacement=True,
        generator=gen,
    )
