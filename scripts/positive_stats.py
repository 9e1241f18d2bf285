"""Rule positive_stats: per-band P2/P98, mean and std of the positive training images by reservoir sampling."""

import pandas as pd

from garimpo.pixels.stats import band_statistics
from garimpo.smk import setup_logging, write_json
from garimpo.training.images import iter_training_images
from garimpo.training.split import held_out


def main(smk):
    log = setup_logging(smk)
    index = pd.read_csv(smk.input.index, keep_default_na=False)
    test = held_out(index["source"], smk.params.test_sources or [])
    if test.any():  # held-out test images must not shape the statistics every image is matched to
        log.info("leaving %d held-out test images out of the statistics", int(test.sum()))
        index = index[~test]
    cfg = smk.params.statistics
    stats = band_statistics(iter_training_images(index), cfg["sample_size"], cfg["seed"])
    for band, s in stats["bands"].items():
        log.info(
            "%s: P2=%.4f P98=%.4f mean=%.4f std=%.4f (n=%d)",
            band,
            s["p2"],
            s["p98"],
            s["mean"],
            s["std"],
            s["n_samples"],
        )
    write_json(smk.output[0], stats)


if "snakemake" not in globals():  # standalone: python scripts/positive_stats.py
    from garimpo.smk import standalone

    snakemake = standalone("positive_stats")
main(snakemake)
