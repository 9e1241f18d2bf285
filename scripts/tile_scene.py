"""Rule tile_scene: one tile's cloud-free composite (written block by block) + scene provenance."""

from garimpo.imagery.composite import tile_scene_grid, write_composite
from garimpo.imagery.stac import ImageryRequest, Source, provenance
from garimpo.smk import rule_region, setup_logging, write_json


def main(smk):
    log = setup_logging(smk)
    det = smk.params.detection
    region = rule_region(smk)
    grid = tile_scene_grid(smk.wildcards.tile, region, det["tile_size_m"], det["margin_m"])
    log.info(
        "tile %s of %s: %d x %d px in %s", smk.wildcards.tile, smk.wildcards.region, grid.width, grid.height, grid.crs
    )
    cfg = smk.params.imagery
    used = write_composite(
        smk.output.scene,
        Source.from_config(cfg["source"]),
        ImageryRequest.from_config(cfg),
        grid,
        block_px=int(det["block_px"]),
        allow_empty=True,
    )
    prov = provenance(used)
    log.info("composite of %d scenes: %s", len(used), prov["scene_ids"])
    write_json(
        smk.output.meta,
        {
            "region": smk.wildcards.region,
            "tile": smk.wildcards.tile,
            "crs": grid.crs,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            **prov,
            "source": {k: cfg["source"][k] for k in ("kind", "collection") if k in cfg["source"]},
        },
    )


main(snakemake)  # noqa: F821
