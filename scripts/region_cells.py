"""Checkpoint region_cells: the cells of the fixed grid a region is cut into (they become the {cell} wildcard)."""

from garimpo.geo.cells import region_cells, write_cell_list
from garimpo.smk import rule_region, setup_logging


def main(smk):
    log = setup_logging(smk)
    region = rule_region(smk)
    size_m = float(smk.params.cell_size_m)
    cells = region_cells(region, size_m)
    log.info("region %s: %d cells of %.0f km (EASE-Grid 2.0)", smk.wildcards.region, len(cells), size_m / 1000)
    write_cell_list(smk.output[0], smk.wildcards.region, size_m, cells)


if "snakemake" not in globals():  # standalone: python scripts/region_cells.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("region_cells")
main(snakemake)
