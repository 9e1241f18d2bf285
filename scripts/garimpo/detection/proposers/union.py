"""The union proposer: the spectral and the SegFormer candidates OR'd (recall of both, the area of both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from garimpo.detection.proposers.registry import MaskPredictor, Proposer, register
from garimpo.detection.proposers.segformer import SEGFORMER
from garimpo.detection.proposers.spectral import SPECTRAL

PARTS = (SPECTRAL, SEGFORMER)


def _candidates(bands: Mapping[str, np.ndarray], config: Mapping[str, Any], model: MaskPredictor | None) -> np.ndarray:
    mask = PARTS[0].candidates(bands, config, model)
    for part in PARTS[1:]:
        mask |= part.candidates(bands, config, model)
    return mask


UNION = register(
    Proposer(
        "union",
        tuple(dict.fromkeys(b for p in PARTS for b in p.bands)),
        _candidates,
        needs_model=any(p.needs_model for p in PARTS),
        description="spectral | segformer",
        # the spectral part's; the SegFormer part has no use for an earlier image
        reference_section=next((p.reference_section for p in PARTS if p.reference_section), None),
    )
)
