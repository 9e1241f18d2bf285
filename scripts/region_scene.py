"""Rule region_scene: the region's cloud-free composite on one UTM grid (GeoTIFF) + scene provenance."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from garimpo.detect import region_grid  # noqa: E402
from garimpo.geo import read_region  # noqa: E402
from garimpo.raster import write_raster  # noqa: E402
from garimpo.smk import setup_logging, write_json  # noqa: E402
from garimpo.stac import ImageryRequest, Source, fetch_composite, provenance  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    reg = smk.params.region
    region = read_region(smk.input.region, reg.get("field"), reg.get("value"))
    grid = region_grid(region)
    log.info("region %s: %d x %d px grid in %s", smk.wildcards.region, grid.width, grid.height, grid.crs)
    cfg = smk.params.imagery
    image, used = fetch_composite(Source.from_config(cfg["source"]), ImageryRequest.from_config(cfg), grid)
    prov = provenance(used)
    log.info("composite of %d scenes: %s", len(used), prov["scene_ids"])
    write_raster(smk.output.scene, image, grid.crs, grid.transform, cfg["bands"], cog=True,
                 tags={"scene_ids": ";".join(prov["scene_ids"]), "dates": ";".join(prov["dates"])})
    write_json(smk.output.meta, {"region": smk.wildcards.region, "crs": grid.crs, "transform": list(grid.transform)[:6],
                                 "width": grid.width, "height": grid.height, **prov,
                                 "source": {k: cfg["source"][k] for k in ("kind", "collection") if k in cfg["source"]}})


main(snakemake)  # noqa: F821
