"""Rule download_input: fetch one pinned public input (config downloads.files.NAME) and check its sha256."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from garimpo.download import download  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    log.info("downloading %s (pinned sha256 %s)", smk.params.url, smk.params.sha256)
    download(smk.params.url, smk.output[0], smk.params.sha256)


main(snakemake)  # noqa: F821
