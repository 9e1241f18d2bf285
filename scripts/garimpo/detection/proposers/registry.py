"""The proposer registry: what a proposer declares, and looking one up by the name config ``proposer.method`` gives.

A proposer is tuned for recall: anything it misses is lost for good, while its false positives are the
classifier's job. Each one is a ``Proposer`` registered under its name by its own module
(``garimpo.detection.proposers.spectral``, ``.segformer``, ``.union``); the scan and ``propose`` find it here,
so a new proposer is a new module that calls ``register``, and no scan code changes. For the workflow to offer
it, config/schema.yaml also lists its name in ``proposer.method``'s enum and its parameters under ``proposer.NAME``
(their defaults live there); ``tests/test_proposers.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from garimpo.schema import default


class MaskPredictor(Protocol):
    """A model a proposer may need (``Proposer.needs_model``): ``garimpo.detection.segformer.SegformerProposer``
    fits. ``rgb``: float32 (3, H, W) true colour in [0, 1], NaN for nodata; returns bool (H, W)."""

    def predict_mask(
        self,
        rgb: np.ndarray,
        suspicious_classes: list[str],
        *,
        window: int = ...,
        overlap: int = ...,
        batch_size: int = ...,
    ) -> np.ndarray: ...


# bands (name -> float32 (H, W) reflectance), the config's ``proposer`` section, the model (or None)
Candidates = Callable[[Mapping[str, np.ndarray], Mapping[str, Any], "MaskPredictor | None"], np.ndarray]
# one parameter section (defaults filled in), the decimation factor -> that section for coarser pixels
Rescale = Callable[[dict[str, Any], int], dict[str, Any]]


@dataclass(frozen=True)
class Proposer:
    """One proposer method.

    ``name``: its value of config ``proposer.method``. ``bands``: the Sentinel-2 bands it reads; a pixel is a
    candidate only where all of them are finite, and only they are read and decimated for it.
    ``candidates(bands, params, model)``: the raw bool (H, W) mask, before the common smoothing
    (``garimpo.detection.proposers.masks.smooth_mask``), from ``bands`` (each float32 (H, W) reflectance) and
    ``params``, the whole ``proposer`` config section (a proposer reads its own ``section``).
    ``section``: the ``proposer.<section>`` config object holding its parameters, or None; their defaults
    come from the schema (``defaults``), never from code. ``rescale``: that section for pixels ``factor``
    times coarser (radii and areas given in pixels shrink), when the proposer runs decimated; None keeps it.
    ``needs_model``: a ``MaskPredictor`` must be passed to run it.
    ``reference_section``: the parameter section into which the scan puts ``reference_ndvi``, float32 (H, W),
    the NDVI of an earlier composite over the same pixels (config ``proposer.earlier_reference``), or None
    when the proposer has no use for one (the scan then does not read it).
    """

    name: str
    bands: tuple[str, ...]
    candidates: Candidates
    section: str | None = None
    rescale: Rescale | None = None
    needs_model: bool = False
    description: str = field(default="", compare=False)
    reference_section: str | None = None

    def defaults(self) -> dict[str, Any]:
        """The schema's defaults of its parameter section (``{}`` without one).

        Raises:
            KeyError: the schema has no ``proposer.<section>``.
        """
        return default(f"proposer.{self.section}") if self.section else {}

    def params(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Its parameter section of the ``proposer`` config ``config``, over the schema's defaults."""
        if not self.section:
            return {}
        return {**self.defaults(), **dict((config or {}).get(self.section) or {})}


_REGISTRY: dict[str, Proposer] = {}


def register(proposer: Proposer, replace: bool = False) -> Proposer:
    """Make ``proposer`` available under ``proposer.name`` to ``get``, ``propose`` and the scans; returns it.

    A method the workflow can run must also be in the schema's enum of ``proposer.method``
    (``config/schema.yaml``), or the config is refused before the scan.

    Raises:
        ValueError: the name is taken and ``replace`` is False, or a band is not a string.
    """
    if proposer.name in _REGISTRY and not replace:
        raise ValueError(f"a proposer named {proposer.name!r} is already registered; pass replace=True to replace it")
    if not proposer.bands or not all(isinstance(b, str) for b in proposer.bands):
        raise ValueError(f"proposer {proposer.name!r}: bands must be band names, got {proposer.bands!r}")
    _REGISTRY[proposer.name] = proposer
    return proposer


def unregister(name: str) -> None:
    """Remove the proposer ``name`` (a test's or plugin's); no error when there is none."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Proposer:
    """The proposer registered as ``name``.

    Raises:
        ValueError: no proposer has that name; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown proposer method {name!r}; choose one of {names()}") from None


def names() -> tuple[str, ...]:
    """Names of the registered proposers, in registration order."""
    return tuple(_REGISTRY)
