"""The proposer on one block of a scan: candidate pixels of a (bands, rows, cols) window, optionally on
``decimate`` x ``decimate`` block means (2 = 20 m, 4 = 40 m at 10 m pixels).

The proposer is looked up by name in the registry (``garimpo.detection.proposers.get``); only the bands it
declares are decimated, and its parameters are rescaled for the coarser pixels
(``garimpo.detection.proposers.scale_params``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from garimpo.detection.proposers import MaskPredictor, config_sections, get, propose, scale_params
from garimpo.schema import default


def block_mean_nan(arr: np.ndarray, f: int) -> np.ndarray:
    """float32 mean over ``f`` x ``f`` blocks of the last two axes of ``arr`` (..., H, W) -> (..., ceil(H / f),
    ceil(W / f)); a partial edge block is padded with NaN, and a NaN spreads to its block. ``arr`` itself
    when ``f`` is 1."""
    if f == 1:
        return arr
    *lead, h, w = arr.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    if (H, W) != (h, w):
        pad = np.full((*lead, H, W), np.nan, arr.dtype)
        pad[..., :h, :w] = arr
        arr = pad
    # Sum of the f*f strided sub-grids: ~8x faster than reshape(...).mean(axis=(-3, -1)), which
    # reduces over two non-contiguous axes; NaN propagates the same way.
    out = np.array(arr[..., 0::f, 0::f], dtype=np.float32)  # a copy: arr is left as it is
    for di in range(f):
        for dj in range(f):
            if di or dj:
                out += arr[..., di::f, dj::f]
    out *= np.float32(1.0 / (f * f))
    return out


def proposer_method(proposer: Mapping | None) -> str:
    """The method of a ``proposer`` config section: its ``method``, or the schema's default."""
    return str((proposer or {}).get("method") or default("proposer.method"))


def coarse_candidate_mask(
    arr: np.ndarray,
    band_names: Sequence[str],
    proposer: Mapping | None = None,
    decimate: int = 1,
    model: MaskPredictor | None = None,
) -> np.ndarray:
    """Bool proposer mask of a float32 (bands, rows, cols) reflectance window whose bands are called
    ``band_names``, computed on ``decimate`` x ``decimate`` means, at that coarse resolution
    (ceil(rows / decimate), ceil(cols / decimate)).

    ``proposer``: the config ``proposer`` section (``method``, default the schema's, and its parameters);
    ``model``: what a proposer that needs one runs (e.g. a loaded ``SegformerProposer``).

    Raises:
        ValueError: the method is not registered, or it needs a model and none is given.
        KeyError: ``band_names`` lack a band the proposer reads.
    """
    proposer = dict(proposer or {})
    method = proposer_method(proposer)
    wanted = get(method).bands
    params = {k: v for k, v in proposer.items() if k in config_sections()}
    # only the bands the proposer reads are decimated (the model may carry more, e.g. B12)
    bands = {n: block_mean_nan(arr[i], decimate) for i, n in enumerate(band_names) if n in wanted}
    return propose(bands, method, scale_params(params, decimate), model=model)


def candidate_mask(
    arr: np.ndarray,
    band_names: Sequence[str],
    proposer: Mapping | None = None,
    decimate: int = 1,
    model: MaskPredictor | None = None,
) -> np.ndarray:
    """``coarse_candidate_mask`` expanded back to the window's full resolution: bool (rows, cols).

    Raises:
        ValueError, KeyError: as ``coarse_candidate_mask``.
    """
    mask = coarse_candidate_mask(arr, band_names, proposer, decimate, model)
    if decimate > 1:
        mask = np.repeat(np.repeat(mask, decimate, axis=0), decimate, axis=1)[: arr.shape[1], : arr.shape[2]]
    return mask
