"""The SegFormer proposer: a semantic-segmentation model's "suspicious" classes (e.g. LoveDA barren, water).

The model itself (loading, sliding-window inference) is ``garimpo.detection.segformer.SegformerProposer``:
torch and transformers are imported only when a mask is predicted, so the spectral path never needs them.
The caller loads the model (config ``proposer.segformer.local_dir``) and passes it to the scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from garimpo.detection.proposers.registry import MaskPredictor, Proposer, register

# The true-colour bands the model sees, as red, green, blue (``garimpo.detection.segformer.rgb_from_bands``).
SEGFORMER_BANDS = ("B02", "B03", "B04")


def segformer_candidates(
    bands: Mapping[str, np.ndarray], params: Mapping[str, Any] | None, model: MaskPredictor | None
) -> np.ndarray:
    """Bool (H, W): pixels ``model`` puts in one of ``params["suspicious_classes"]``, before smoothing.

    ``bands``: B02-B04 float32 (H, W) reflectance; ``params``: config ``proposer.segformer`` (over the
    schema's defaults: ``suspicious_classes``, ``window``) plus, outside the config, ``overlap``,
    ``batch_size`` (passed to ``predict_mask``) and ``rgb_low``/``rgb_high`` (the reflectance stretched to
    [0, 1], default ``rgb_from_bands``'s 0-0.3).

    Raises:
        ValueError: ``model`` is None.
    """
    # Imported lazily: torch/transformers are heavy and the spectral path must not need them.
    from garimpo.detection.segformer import rgb_from_bands

    if model is None:
        raise ValueError(
            "proposer 'segformer' needs the SegFormer model: load it with "
            "garimpo.detection.segformer.SegformerProposer.from_pretrained(proposer.segformer.local_dir) "
            "and pass it to the scan (proposer_model=) or to propose (model=)"
        )
    p = SEGFORMER.params({"segformer": params or {}})
    rgb = rgb_from_bands(bands, **{k[4:]: float(p[k]) for k in ("rgb_low", "rgb_high") if k in p})
    kwargs = {k: int(p[k]) for k in ("window", "overlap", "batch_size") if k in p}
    return np.asarray(model.predict_mask(rgb, list(p["suspicious_classes"]), **kwargs), dtype=bool)


def _candidates(bands: Mapping[str, np.ndarray], config: Mapping[str, Any], model: MaskPredictor | None) -> np.ndarray:
    return segformer_candidates(bands, config.get("segformer"), model)


SEGFORMER = register(
    Proposer(
        "segformer",
        SEGFORMER_BANDS,
        _candidates,
        section="segformer",
        needs_model=True,
        description="a SegFormer's suspicious classes",
    )
)
