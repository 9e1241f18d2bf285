"""Rule split_and_augment: split first (held-out sources, spatial blocks), then augment training images only."""

import json
import os

import pandas as pd

from garimpo.contract import index_contract
from garimpo.smk import setup_logging, write_csv
from garimpo.training.augment import AugmentParams
from garimpo.training.images import split_and_augment, write_chip_manifest


def main(smk):
    log = setup_logging(smk)
    read = lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""])  # noqa: E731
    positives, negatives = read(smk.input.positive), read(smk.input.negative)
    # Both classes must show the same ground in the same values (the contract); checked before anything is written.
    index_contract(pd.concat([positives, negatives]).to_dict("records"), "the positive and negative training images")
    stats = json.loads(open(smk.input.stats).read())
    cfg = smk.params.split
    table = split_and_augment(
        positives,
        negatives,
        stats,
        smk.output.pos_aug,
        smk.output.neg_aug,
        cfg["val_fraction"],
        cfg["block_m"],
        AugmentParams.from_config(smk.params.augmentation),
        cfg["seed"],
        cfg.get("test_sources") or [],
        cfg.get("local_run_length"),
        smk.threads,
    )
    counts = table.groupby(["split", "label", "augmented"]).size()
    log.info("split (split, label, augmented -> training images):\n%s", counts.to_string())
    test = table[table["split"] == "test"]
    if len(test):
        log.info("held-out test sources (never trained or validated on): %s", sorted(test["source"].unique()))
    write_chip_manifest(table, "test", os.path.dirname(smk.output.heldout))
    write_csv(smk.output.split, table)


if "snakemake" not in globals():  # standalone: python scripts/split_and_augment.py
    from garimpo.smk import standalone

    snakemake = standalone("split_and_augment")
main(snakemake)
