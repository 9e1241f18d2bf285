"""Rule overview_map: the region's tile scenes with its detections."""

from garimpo.outputs.plots import overview_map
from garimpo.smk import rule_region, setup_logging


def main(smk):
    setup_logging(smk)
    region = rule_region(smk)
    overview_map(
        smk.input.detections,
        smk.input.scenes,
        region,
        smk.output[0],
        title=f"garimpo detections: {smk.wildcards.region}",
        attribution=smk.params.attribution,
    )


main(snakemake)  # noqa: F821
