"""Rule propose_candidates: stage one, a candidate mask and candidate zones for a region."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from garimpo.detect import region_mask, zones_from_mask  # noqa: E402
from garimpo.geo import feature, feature_collection, geodesic_area_ha, read_region, write_geojson  # noqa: E402
from garimpo.proposers import propose  # noqa: E402
from garimpo.raster import Grid, read_raster, write_raster  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    import torch

    torch.set_num_threads(smk.threads)
    scene = read_raster(smk.input.scene)
    cfg = smk.params.proposer
    segformer = None
    if cfg["method"] in ("segformer", "union"):
        from garimpo.segformer import SegformerProposer

        segformer = SegformerProposer.from_pretrained(cfg["segformer"]["local_dir"])
    bands = {name: scene.array[i] for i, name in enumerate(scene.band_names)}
    mask = propose(bands, cfg["method"], cfg, segformer=segformer)
    reg = smk.params.region
    grid = Grid(scene.crs, scene.transform, scene.array.shape[2], scene.array.shape[1])
    mask &= region_mask(read_region(smk.input.region, reg.get("field"), reg.get("value")), grid)
    zones = zones_from_mask(mask, scene.crs, scene.transform)
    valid = np.isfinite(scene.array).all(axis=0)
    log.info("%d candidate zones, %.2f %% of the valid area passed on", len(zones), 100 * mask.sum() / max(valid.sum(), 1))
    write_raster(smk.output.mask, mask.astype(np.uint8)[None], scene.crs, scene.transform, ["candidate"], nodata=None)
    feats = [feature(z["geometry"], {"zone_id": z["zone_id"], "n_pixels": z["n_pixels"],
                                     "area_ha": round(geodesic_area_ha(z["geometry"]), 3)}) for z in zones]
    write_geojson(smk.output.zones, feature_collection(feats),
                  {"region": smk.wildcards.region, "proposer": cfg["method"], "scene_crs": scene.crs})


main(snakemake)  # noqa: F821
