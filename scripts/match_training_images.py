"""Rule match_training_images: stretch every training image's P2/P98 onto the positives' statistics."""

import json

import pandas as pd

from garimpo.smk import setup_logging, write_csv
from garimpo.training.images import match_training_images


def main(smk):
    log = setup_logging(smk)
    index = pd.read_csv(smk.input.index, keep_default_na=False, na_values=[""])
    stats = json.loads(open(smk.input.stats).read())
    cfg = smk.params.matching
    matched = match_training_images(index, stats, smk.output.images, cfg["p_low"], cfg["p_high"], cfg["per_chip"])
    log.info("%d training images matched into %s", len(matched), smk.output.images)
    write_csv(smk.output.index, matched)


if "snakemake" not in globals():  # standalone: python scripts/match_training_images.py cls=positive
    from garimpo.smk import standalone

    snakemake = standalone("match_training_images")
main(snakemake)
