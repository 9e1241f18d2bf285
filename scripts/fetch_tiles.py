"""Rule fetch_tiles: one composite tile per point through STAC, plus local image folders copied in."""

import pandas as pd

from garimpo.contract import index_contract
from garimpo.errors import InputDataError
from garimpo.imagery.stac import ImageryRequest, Source
from garimpo.smk import setup_logging, write_csv
from garimpo.training.images import fetch_point_tiles, import_local_images


def main(smk):
    log = setup_logging(smk)
    points = pd.read_csv(smk.input.points, keep_default_na=False, na_values=[""])
    cfg = smk.params.imagery
    index = fetch_point_tiles(
        points,
        Source.from_config(cfg["source"]),
        ImageryRequest.from_config(cfg),
        smk.params.tile_size_m,
        smk.output.tiles,
        smk.params.cache_dir,
    )
    if smk.params.local_dirs:
        # Plain paths or {path, encoding, pixel_size_m, units}: 8-bit chips are decoded to reflectance here.
        local = import_local_images(
            smk.params.local_dirs, smk.output.tiles, key=f"{smk.wildcards.cls}s.local_dirs", bands=smk.params.bands
        )
        log.info("%d local images copied in from %s", len(local), smk.params.local_dirs)
        index = pd.concat([index, local], ignore_index=True)
    if not (index["status"] == "ok").any():
        raise InputDataError(
            f"no {smk.wildcards.cls} tile: give {smk.wildcards.cls}s.local_dirs or points to fetch around"
        )
    # Images of two kinds (footprint, pixel size, units) stop here, before statistics mix them and before a
    # model trained earlier is replaced by a training run that would refuse them anyway.
    kind = index_contract(index.to_dict("records"), f"the {smk.wildcards.cls} tiles")
    log.info("%s tiles: %s", smk.wildcards.cls, kind.describe())
    write_csv(smk.output.index, index)


main(snakemake)  # noqa: F821
