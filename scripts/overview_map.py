"""Rule overview_map: the composites of the region's cells with its detections."""

from garimpo.outputs.plots import overview_map
from garimpo.smk import rule_region, setup_logging


def main(smk):
    setup_logging(smk)
    region = rule_region(smk)
    overview_map(
        smk.input.detections,
        smk.input.composites,
        region,
        smk.output[0],
        title=f"garimpo detections: {smk.wildcards.region}",
        attribution=smk.params.attribution,
    )


if "snakemake" not in globals():  # standalone: python scripts/overview_map.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("overview_map")
main(snakemake)
