"""Rule match_tiles: stretch every tile's P2/P98 onto the positives' statistics."""

import json

import pandas as pd

from garimpo.smk import setup_logging, write_csv
from garimpo.training.images import match_tiles


def main(smk):
    log = setup_logging(smk)
    index = pd.read_csv(smk.input.index, keep_default_na=False, na_values=[""])
    stats = json.loads(open(smk.input.stats).read())
    cfg = smk.params.matching
    matched = match_tiles(index, stats, smk.output.tiles, cfg["p_low"], cfg["p_high"], cfg["per_tile"])
    log.info("%d tiles matched into %s", len(matched), smk.output.tiles)
    write_csv(smk.output.index, matched)


main(snakemake)  # noqa: F821
