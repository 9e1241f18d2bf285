"""Running a proposer by name: its raw candidates, the common smoothing, cut to valid pixels; and the
parameters of a decimated run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from garimpo.detection.proposers.masks import scale_smoothing, smooth_mask, smoothing_params, valid_mask
from garimpo.detection.proposers.registry import MaskPredictor, get, names


def propose(
    bands: Mapping[str, np.ndarray],
    method: str,
    params: Mapping[str, Any] | None = None,
    model: MaskPredictor | None = None,
) -> np.ndarray:
    """Candidate mask, bool (H, W), of one region by the registered proposer ``method``, smoothed.

    ``bands``: at least the proposer's bands (``get(method).bands``), float32 (H, W) reflectance each.
    ``params`` is the ``proposer`` config section: optional sub-mappings per proposer (``spectral``,
    ``segformer``; defaults from the schema) and ``smoothing`` (``DEFAULT_SMOOTHING``, at the pixel size of
    ``bands``: see ``scale_params``). ``model``: what a proposer with ``needs_model`` runs (a SegFormer).
    Pixels where a band of the proposer is not finite are never candidates.

    Raises:
        ValueError: ``method`` is not registered, it needs a model and none is given, or a parameter is unknown.
        KeyError: a band the proposer reads is missing.
    """
    proposer = get(method)
    if proposer.needs_model and model is None:
        raise ValueError(
            f"proposer {method!r} needs a model: load the SegFormer with "
            "garimpo.detection.segformer.SegformerProposer.from_pretrained(proposer.segformer.local_dir) "
            "and pass it (model=, or the scan's proposer_model=)"
        )
    params = params or {}
    valid = valid_mask(bands, proposer.bands)
    mask = np.asarray(proposer.candidates(bands, params, model), dtype=bool)
    mask = smooth_mask(mask, **smoothing_params(params.get("smoothing")))
    # Closing/dilation can spread into nodata; nothing there can be judged, so cut it out.
    return mask & valid


def scale_params(params: Mapping[str, Any] | None, factor: int) -> dict[str, Any]:
    """The ``proposer`` config for pixels ``factor`` times coarser (radii/areas in px scaled down): the
    smoothing (``scale_smoothing``) and each registered proposer's section by its own ``rescale`` (over the
    schema's defaults). ``factor`` 1 returns the config as it is."""
    params = dict(params or {})
    if factor == 1:
        return params
    out = {**params, "smoothing": scale_smoothing(params.get("smoothing"), factor)}
    for name in names():
        proposer = get(name)
        if proposer.section and proposer.rescale is not None:
            out[proposer.section] = proposer.rescale(proposer.params(params), factor)
    return out


def config_sections() -> tuple[str, ...]:
    """Keys of the ``proposer`` config a proposer reads: ``smoothing`` and every registered proposer's section."""
    return ("smoothing", *dict.fromkeys(s for n in names() if (s := get(n).section)))
