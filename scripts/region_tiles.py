"""Checkpoint region_tiles: the fixed-grid tiles a region is cut into (they become the {tile} wildcard)."""

from garimpo.geo.cells import region_tiles, write_tile_list
from garimpo.smk import rule_region, setup_logging


def main(smk):
    log = setup_logging(smk)
    region = rule_region(smk)
    size_m = float(smk.params.tile_size_m)
    tiles = region_tiles(region, size_m)
    log.info("region %s: %d tiles of %.0f km (EASE-Grid 2.0 cells)", smk.wildcards.region, len(tiles), size_m / 1000)
    write_tile_list(smk.output[0], smk.wildcards.region, size_m, tiles)


main(snakemake)  # noqa: F821
