"""The proposer on one block of a scan: candidate pixels of a (bands, rows, cols) window, optionally on
``decimate`` x ``decimate`` block means (2 = 20 m, 4 = 40 m at 10 m pixels).

The proposer is looked up by name in the registry (``garimpo.detection.proposers.get``); only the bands it
declares are decimated, and its parameters are rescaled for the coarser pixels
(``garimpo.detection.proposers.scale_params``).

With an earlier composite of the same pixels (``reference``: its ``REFERENCE_BANDS`` over the same window), its
NDVI is computed from the same f x f means as the block's, so the two NDVIs describe the same ground, and handed
to the proposer's ``reference_section`` (the spectral part's vegetation loss: an NDVI drop since then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from garimpo.detection.proposers import MaskPredictor, config_sections, get, propose, scale_params
from garimpo.pixels.indices import ndvi
from garimpo.schema import default

# What an earlier composite gives the proposer: red and NIR, for its NDVI.
REFERENCE_BANDS = ("B04", "B08")


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


def reference_ndvi(reference: Mapping[str, np.ndarray], decimate: int = 1) -> np.ndarray:
    """float32 NDVI (ceil(rows / decimate), ceil(cols / decimate)) of an earlier composite's ``REFERENCE_BANDS``
    (each float32 (rows, cols) reflectance, NaN = no clear pixel), from their ``decimate`` x ``decimate`` means,
    as the proposer's NDVI of the block is: NaN where a band is NaN.

    Raises:
        KeyError: ``reference`` lacks B04 or B08.
    """
    missing = [b for b in REFERENCE_BANDS if b not in reference]
    if missing:
        raise KeyError(f"reference bands {missing} missing; got {sorted(reference)}")
    return ndvi({b: block_mean_nan(np.asarray(reference[b], dtype=np.float32), decimate) for b in REFERENCE_BANDS})


def coarse_candidate_mask(
    arr: np.ndarray,
    band_names: Sequence[str],
    proposer: Mapping | None = None,
    decimate: int = 1,
    model: MaskPredictor | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Bool proposer mask of a float32 (bands, rows, cols) reflectance window whose bands are called
    ``band_names``, computed on ``decimate`` x ``decimate`` means, at that coarse resolution
    (ceil(rows / decimate), ceil(cols / decimate)).

    ``proposer``: the config ``proposer`` section (``method``, default the schema's, and its parameters);
    ``model``: what a proposer that needs one runs (e.g. a loaded ``SegformerProposer``). ``reference``: an
    earlier composite's ``REFERENCE_BANDS`` over the same window, each float32 (rows, cols) reflectance, or
    None; its NDVI (``reference_ndvi``) becomes ``reference_ndvi`` of the proposer's ``reference_section``
    (ignored by a proposer without one, e.g. segformer).

    Raises:
        ValueError: the method is not registered, it needs a model and none is given, or a reference band's
            shape is not the window's.
        KeyError: ``band_names`` lack a band the proposer reads, or ``reference`` lacks B04 or B08.
    """
    proposer = dict(proposer or {})
    method = proposer_method(proposer)
    proposer_def = get(method)
    params = {k: v for k, v in proposer.items() if k in config_sections()}
    # only the bands the proposer reads are decimated (the model may carry more, e.g. B12)
    bands = {n: block_mean_nan(arr[i], decimate) for i, n in enumerate(band_names) if n in proposer_def.bands}
    params = scale_params(params, decimate)
    section = proposer_def.reference_section
    if reference is not None and section:
        shapes = {b: np.shape(reference[b]) for b in REFERENCE_BANDS if b in reference}
        if any(s != arr.shape[1:] for s in shapes.values()):
            raise ValueError(f"reference band shapes {shapes} != the window's {arr.shape[1:]}")
        # a new dict: the caller's config (e.g. snakemake params) is left as it is
        params[section] = {**(params.get(section) or {}), "reference_ndvi": reference_ndvi(reference, decimate)}
    return propose(bands, method, params, model=model)


def candidate_mask(
    arr: np.ndarray,
    band_names: Sequence[str],
    proposer: Mapping | None = None,
    decimate: int = 1,
    model: MaskPredictor | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``coarse_candidate_mask`` expanded back to the window's full resolution: bool (rows, cols).

    Raises:
        ValueError, KeyError: as ``coarse_candidate_mask``.
    """
    mask = coarse_candidate_mask(arr, band_names, proposer, decimate, model, reference)
    if decimate > 1:
        mask = np.repeat(np.repeat(mask, decimate, axis=0), decimate, axis=1)[: arr.shape[1], : arr.shape[2]]
    return mask
