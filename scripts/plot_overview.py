"""Rule overview_map: the region's tile scenes with its detections."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from garimpo.plots import overview_map  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402
from garimpo.vector import read_region  # noqa: E402


def main(smk):
    setup_logging(smk)
    reg = smk.params.region
    region = read_region(smk.input.region, reg.get("field"), reg.get("value"), reg.get("layer"),
                         f"regions.{smk.wildcards.region}", reg.get("encoding"))
    overview_map(smk.input.detections, smk.input.scenes, region, smk.output[0],
                 title=f"garimpo detections: {smk.wildcards.region}", attribution=smk.params.attribution)


main(snakemake)  # noqa: F821
