"""Rule download_input: fetch one pinned public input (config downloads.files.NAME) and check its sha256."""

import os

from garimpo.errors import DownloadError
from garimpo.imagery.download import MIB, download, path_under
from garimpo.smk import setup_logging

FOLDER = "resources/downloads"  # the rule's output folder


def main(smk):
    log = setup_logging(smk)
    name = smk.wildcards.name
    key = f"downloads.files.{name}"
    # The schema refuses such names when the config is read; this guards the write itself.
    dest = path_under(FOLDER, name, key)
    if os.path.normpath(smk.output[0]) != os.path.normpath(dest):
        raise DownloadError(f"rule download_input writes {smk.output[0]}, not {dest}: keep its output in {FOLDER}/")
    # The rule's url param is redacted (Snakemake prints and stores params): the signed URL is the config's.
    url = smk.config["downloads"]["files"][name]["url"]
    log.info("downloading %s (pinned sha256 %s)", smk.params.url, smk.params.sha256)
    download(
        url,
        dest,
        smk.params.sha256,
        max_bytes=round(smk.params.max_size_mb * MIB),
        deadline_s=smk.params.deadline_s,
        size=smk.params.size,
        key=key,
    )


if "snakemake" not in globals():  # standalone: python scripts/download_input.py name=FILE
    from garimpo.smk import standalone

    snakemake = standalone("download_input")
main(snakemake)
