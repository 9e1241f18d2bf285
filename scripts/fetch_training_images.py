"""Rule fetch_training_images: one training image (a composite) per point through STAC, plus local image folders
copied in."""

import pandas as pd

from garimpo.contract import index_contract
from garimpo.errors import InputDataError
from garimpo.imagery.stac import ImageryRequest, Source
from garimpo.smk import setup_logging, write_csv
from garimpo.training.images import fetch_training_images, import_local_images


def main(smk):
    log = setup_logging(smk)
    points = pd.read_csv(smk.input.points, keep_default_na=False, na_values=[""])
    cfg = smk.params.imagery
    index = fetch_training_images(
        points,
        Source.from_config(cfg["source"]),
        ImageryRequest.from_config(cfg),
        smk.params.chip_size_m,
        smk.output.images,
        smk.params.cache_dir,
    )
    if smk.params.local_dirs:
        # Plain paths or {path, encoding, pixel_size_m, units}: 8-bit chips are decoded to reflectance here.
        local = import_local_images(
            smk.params.local_dirs, smk.output.images, key=f"{smk.wildcards.cls}s.local_dirs", bands=smk.params.bands
        )
        log.info("%d local images copied in from %s", len(local), smk.params.local_dirs)
        index = pd.concat([index, local], ignore_index=True)
    if not (index["status"] == "ok").any():
        raise InputDataError(
            f"no {smk.wildcards.cls} training image: give {smk.wildcards.cls}s.local_dirs or points to fetch around"
        )
    # Images of two kinds (footprint, pixel size, units) stop here, before statistics mix them and before a
    # model trained earlier is replaced by a training run that would refuse them anyway.
    kind = index_contract(index.to_dict("records"), f"the {smk.wildcards.cls} training images")
    log.info("%s training images: %s", smk.wildcards.cls, kind.describe())
    write_csv(smk.output.index, index)


if "snakemake" not in globals():  # standalone: python scripts/fetch_training_images.py cls=positive
    from garimpo.smk import standalone

    snakemake = standalone("fetch_training_images")
main(snakemake)
