"""Rule fetch_segformer: download a SegFormer (config + weights) from the Hugging Face Hub.

Needs internet; run it once on a connected machine and copy the output directory
to offline nodes, where ``proposer.segformer.local_dir`` can point at it.
"""

import logging

from garimpo.detection.segformer import fetch_segformer
from garimpo.imagery.redact import install_redaction


def main(smk) -> None:
    logging.basicConfig(
        filename=smk.log[0],
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction()  # no token or signed URL in the log
    try:
        fetch_segformer(smk.params.model_id, smk.output[0], smk.params.suspicious_classes)
    except Exception:
        logging.exception("fetch_segformer failed")
        raise


if "snakemake" not in globals():  # standalone: python scripts/fetch_segformer.py
    from garimpo.smk import standalone

    snakemake = standalone("fetch_segformer")
main(snakemake)
