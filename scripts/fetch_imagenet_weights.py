"""Snakemake rule script: download ImageNet ResNet weights (needs internet, run once)."""

import logging

from garimpo.classifier.weights import fetch_resnet_imagenet
from garimpo.imagery.redact import install_redaction


def main(smk) -> None:
    log_file = smk.log[0] if len(smk.log) else None
    logging.basicConfig(
        filename=log_file, level=logging.INFO, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_redaction()  # no token or signed URL in the log
    log = logging.getLogger("garimpo.fetch_imagenet_weights")
    arch = smk.params.arch
    try:
        path = fetch_resnet_imagenet(arch, smk.output[0])
    except Exception:
        log.exception("could not download ImageNet weights for %s (is there internet access?)", arch)
        raise
    log.info("saved ImageNet weights for %s to %s", arch, path)


if "snakemake" not in globals():  # standalone: python scripts/fetch_imagenet_weights.py arch=resnet34
    from garimpo.smk import standalone

    snakemake = standalone("fetch_imagenet_weights")
main(snakemake)
