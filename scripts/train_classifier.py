"""Snakemake rule script: train the chip classifier (thin wrapper)."""

import logging
from pathlib import Path

from garimpo.classifier.train import train_classifier
from garimpo.imagery.redact import install_redaction


def _logger(smk) -> logging.Logger:
    log_file = smk.log[0] if len(smk.log) else None
    logging.basicConfig(
        filename=log_file, level=logging.INFO, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_redaction()  # no token or signed URL in the log
    return logging.getLogger("garimpo.train_classifier")


def _weights_path(smk) -> str | None:
    """The rule's ``weights`` input is a list (empty when classifier.weights is none)."""
    weights = smk.input.get("weights")
    if weights is None or isinstance(weights, str):
        return weights or None
    weights = list(weights)
    return str(weights[0]) if weights else None


def main(smk) -> None:
    log = _logger(smk)
    try:
        train_classifier(
            split_csv=smk.input.split,
            stats_json=smk.input.stats,
            out_dir=Path(smk.output.best).parent,
            cfg=dict(smk.params.classifier),
            matching=dict(smk.params.matching),
            imagenet_weights_path=_weights_path(smk),
            threads=smk.threads,
            log=log,
        )
    except Exception:
        log.exception("classifier training failed")
        raise


if "snakemake" not in globals():  # standalone: python scripts/train_classifier.py
    from garimpo.smk import standalone

    snakemake = standalone("train_classifier")
main(snakemake)
