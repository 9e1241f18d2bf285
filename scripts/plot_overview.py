"""Rule overview_map: the region's imagery with candidate zones and their verdicts."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from garimpo.geo import read_region  # noqa: E402
from garimpo.plots import overview_map  # noqa: E402
from garimpo.raster import read_raster  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402


def main(smk):
    setup_logging(smk)
    reg = smk.params.region
    overview_map(read_raster(smk.input.scene), smk.input.scored, read_region(smk.input.region, reg.get("field"),
                 reg.get("value")), smk.output[0], title=f"garimpo detections: {smk.wildcards.region}",
                 attribution=smk.params.attribution)


main(snakemake)  # noqa: F821
