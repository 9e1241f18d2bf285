"""Rule composite_cell: one grid cell's cloud-free composite (written block by block) + its scenes' provenance."""

from garimpo.imagery.composite import composite_grid, write_composite
from garimpo.imagery.provenance import provenance
from garimpo.imagery.stac import ImageryRequest, Source
from garimpo.smk import rule_region, setup_logging, write_json


def main(smk):
    log = setup_logging(smk)
    det = smk.params.detection
    region = rule_region(smk)
    cell = smk.wildcards.cell
    grid = composite_grid(cell, region, det["cell_size_m"], det["margin_m"])
    log.info("cell %s of %s: %d x %d px in %s", cell, smk.wildcards.region, grid.width, grid.height, grid.crs)
    cfg = smk.params.imagery
    used = write_composite(
        smk.output.composite,
        Source.from_config(cfg["source"]),
        ImageryRequest.from_config(cfg),
        grid,
        block_px=int(det["block_px"]),
        allow_empty=True,
        threads=max(1, int(smk.threads)),
    )
    prov = provenance(used)
    log.info("composite of %d scenes: %s", len(used), prov["scene_ids"])
    write_json(
        smk.output.meta,
        {
            "region": smk.wildcards.region,
            "cell": cell,
            "crs": grid.crs,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            **prov,
            "source": {k: cfg["source"][k] for k in ("kind", "collection") if k in cfg["source"]},
        },
    )


if "snakemake" not in globals():  # standalone: python scripts/composite_cell.py region=NAME cell=E0001S0001
    from garimpo.smk import standalone

    snakemake = standalone("composite_cell")
main(snakemake)
