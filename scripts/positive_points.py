"""Rule positive_points: known mine coordinates -> clean point table + rejected rows."""

import pandas as pd

from garimpo.smk import setup_logging, write_csv
from garimpo.training.points import check_unique_ids, drop_duplicate_places, load_point_sources


def main(smk):
    log = setup_logging(smk)
    points, rejected = load_point_sources(smk.params.inputs, tuple(smk.params.bounds), "positives.points")
    points, repeated = drop_duplicate_places(points)
    log.info(
        "%d usable points (%d at the place of another dropped), %d rejected", len(points), len(repeated), len(rejected)
    )
    rejected = pd.concat([rejected, repeated], ignore_index=True) if len(repeated) else rejected
    check_unique_ids(points, "positives.points")
    write_csv(smk.output.points, points)
    write_csv(smk.output.rejected, rejected)


if "snakemake" not in globals():  # standalone: python scripts/positive_points.py
    from garimpo.smk import standalone

    snakemake = standalone("positive_points")
main(snakemake)
