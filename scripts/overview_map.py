"""Rule overview_map: the region's tile scenes with its detections."""

from garimpo.geo.vector import read_region
from garimpo.outputs.plots import overview_map
from garimpo.smk import setup_logging


def main(smk):
    setup_logging(smk)
    reg = smk.params.region
    region = read_region(
        smk.input.region,
        reg.get("field"),
        reg.get("value"),
        reg.get("layer"),
        f"regions.{smk.wildcards.region}",
        reg.get("encoding"),
    )
    overview_map(
        smk.input.detections,
        smk.input.scenes,
        region,
        smk.output[0],
        title=f"garimpo detections: {smk.wildcards.region}",
        attribution=smk.params.attribution,
    )


main(snakemake)  # noqa: F821
