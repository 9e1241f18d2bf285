"""Rule match_tiles: stretch every tile's P2/P98 onto the positives' statistics."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import pandas as pd  # noqa: E402

from garimpo.smk import setup_logging, write_csv  # noqa: E402
from garimpo.tiles import match_tiles  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    index = pd.read_csv(smk.input.index, keep_default_na=False, na_values=[""])
    stats = json.loads(open(smk.input.stats).read())
    cfg = smk.params.matching
    matched = match_tiles(index, stats, smk.output.tiles, cfg["p_low"], cfg["p_high"], cfg["per_tile"])
    log.info("%d tiles matched into %s", len(matched), smk.output.tiles)
    write_csv(smk.output.index, matched)


main(snakemake)  # noqa: F821
