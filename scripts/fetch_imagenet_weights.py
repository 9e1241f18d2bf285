"""Snakemake rule script: download ImageNet ResNet weights (needs internet, run once)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import logging  # noqa: E402

from garimpo.classifier.weights import fetch_resnet_imagenet  # noqa: E402
from garimpo.redact import install_redaction  # noqa: E402


def main(smk) -> None:
    log_file = smk.log[0] if len(smk.log) else None
    logging.basicConfig(filename=log_file, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_redaction()  # no token or signed URL in the log
    log = logging.getLogger("garimpo.fetch_imagenet_weights")
    arch = smk.params.arch
    try:
        path = fetch_resnet_imagenet(arch, smk.output[0])
    except Exception:
        log.exception("could not download ImageNet weights for %s (is there internet access?)", arch)
        raise
    log.info("saved ImageNet weights for %s to %s", arch, path)


main(snakemake)  # noqa: F821 (injected by Snakemake)
