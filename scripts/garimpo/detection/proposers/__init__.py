"""Stage 1 of detection: propose candidate zones for the classifier to judge.

A proposer is tuned for recall: anything it misses is lost for good, while its false positives (sandbars,
fish ponds, pasture, roads...) are the classifier's job. Its cost is the area it passes on, which
``proposer_recall`` measures.

Proposers are registered by name (``registry``: ``register``, ``get``, ``names``), one module each:

- ``spectral``: weight-free index thresholds (bare soil, turbid water, vegetation loss);
- ``segformer``: a semantic-segmentation model's "suspicious" classes (e.g. LoveDA barren/water);
- ``union``: both OR'd.

``propose`` runs one by name; the scan (``garimpo.detection.candidates``) runs it block by block. ``METHODS``
are the built-in ones, the schema's enum of ``proposer.method``.
"""

# Each module registers its proposer; in the order of the schema's enum of proposer.method.
# isort: off
from garimpo.detection.proposers import spectral  # noqa: F401
from garimpo.detection.proposers import segformer  # noqa: F401
from garimpo.detection.proposers import union  # noqa: F401

# isort: on
from garimpo.detection.proposers.masks import (
    DEFAULT_SMOOTHING,
    label_zones,
    proposer_recall,
    remove_small_zones,
    smooth_mask,
    valid_mask,
)
from garimpo.detection.proposers.proposal import config_sections, propose, scale_params
from garimpo.detection.proposers.registry import MaskPredictor, Proposer, get, names, register, unregister
from garimpo.detection.proposers.spectral import DEFAULT_SPECTRAL, SPECTRAL_BANDS, spectral_candidates

# The built-in proposers, registered above; proposers registered later are in ``names()``.
METHODS: tuple[str, ...] = names()

__all__ = [
    "DEFAULT_SMOOTHING",
    "DEFAULT_SPECTRAL",
    "METHODS",
    "SPECTRAL_BANDS",
    "MaskPredictor",
    "Proposer",
    "config_sections",
    "get",
    "label_zones",
    "names",
    "propose",
    "proposer_recall",
    "register",
    "remove_small_zones",
    "scale_params",
    "smooth_mask",
    "spectral_candidates",
    "unregister",
    "valid_mask",
]
