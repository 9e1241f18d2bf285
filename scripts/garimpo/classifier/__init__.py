"""Chip classifier: a ResNet that says whether a Sentinel-2 chip shows mining.

Submodules: ``model`` (architecture, checkpoints), ``data`` (chips into network
input, the training-image dataset), ``train`` (training loop), ``infer`` (probabilities for chips),
``metrics`` (pure numpy), ``weights`` (ImageNet weights download/load).

Names are re-exported lazily so that ``garimpo.classifier.metrics`` can be
used without paying for the torch import.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "build_classifier": "model",
    "adapt_first_conv": "model",
    "save_checkpoint": "model",
    "load_classifier": "model",
    "scale_to_unit": "data",
    "ChipDataset": "data",
    "train_classifier": "train",
    "predict_proba": "infer",
    "predict_paths": "infer",
    "binary_metrics": "metrics",
    "choose_threshold": "metrics",
    "fetch_resnet_imagenet": "weights",
    "load_imagenet_state_dict": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
