"""Glue for the rule scripts: logging to the rule's log file, atomic JSON/CSV writes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from garimpo.atomic import atomic_path, sweep_for
from garimpo.imagery.redact import install_redaction


def setup_logging(snakemake=None, level: int = logging.INFO) -> logging.Logger:
    """Send log records (and uncaught exceptions) to ``snakemake.log[0]`` and stderr, signed URLs redacted
    (:mod:`garimpo.imagery.redact`); then remove what
    killed writers left beside the rule's outputs (:func:`garimpo.atomic.sweep_temps`, a warning each)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake is not None and len(snakemake.log):
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    install_redaction(handlers)  # on the handlers: they see every logger's records, tracebacks included
    logging.captureWarnings(True)  # Python warnings go through the same (redacting) handlers
    log = logging.getLogger("garimpo")

    def _excepthook(exc_type, exc, tb):
        log.error("%s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = _excepthook
    if snakemake is not None:
        # A killed earlier attempt may have left temporary files (gigabytes for a scene) beside the outputs.
        sweep_for(getattr(snakemake, "output", ()))
    return log


def write_json(path: str | Path, doc) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, default=str)
    return path


def write_csv(path: str | Path, frame) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def rule_region(snakemake):
    """The polygon (lon/lat) of the rule's ``{region}``: ``snakemake.input.region`` read with the entry
    ``regions.NAME`` of the config (``snakemake.params.region``: field/value selection, layer, encoding).
    Raises InputDataError naming the file and ``regions.NAME`` (see :func:`garimpo.geo.vector.read_region`)."""
    from garimpo.geo.vector import read_region  # here: rules of the ml environment (no pyogrio) import smk too

    reg = snakemake.params.region
    return read_region(
        snakemake.input.region,
        reg.get("field"),
        reg.get("value"),
        reg.get("layer"),
        f"regions.{snakemake.wildcards.region}",
        reg.get("encoding"),
    )
