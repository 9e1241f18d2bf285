"""Rule positive_points: known mine coordinates -> clean point table + rejected rows."""

from garimpo.smk import setup_logging, write_csv
from garimpo.training.points import check_unique_ids, load_point_sources


def main(smk):
    log = setup_logging(smk)
    points, rejected = load_point_sources(smk.params.inputs, tuple(smk.params.bounds), "positives.points")
    before = len(points)
    points = points.drop_duplicates(subset=["lon", "lat"]).reset_index(drop=True)
    log.info("%d usable points (%d duplicates dropped), %d rejected", len(points), before - len(points), len(rejected))
    check_unique_ids(points, "positives.points")
    write_csv(smk.output.points, points)
    write_csv(smk.output.rejected, rejected)


if "snakemake" not in globals():  # standalone: python scripts/positive_points.py
    from garimpo.smk import mock_snakemake, script_args

    snakemake = mock_snakemake("positive_points", **script_args())
main(snakemake)
