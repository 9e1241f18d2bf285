"""Rule negative_points: random points in protected forest, away from mines and towns, plus hard negatives."""

import math

import pandas as pd

from garimpo.geo.vector import read_polygons
from garimpo.smk import setup_logging, write_csv
from garimpo.training.negatives import RANDOM_PREFIX, sample_negative_points, sampling_area
from garimpo.training.points import check_unique_ids, load_point_sources


def main(smk):
    log = setup_logging(smk)
    mines = pd.read_csv(smk.input.mines)
    bounds = tuple(smk.params.bounds)
    n = math.ceil(smk.params.ratio * len(mines))
    if n and smk.input.protected:
        urban = (
            read_polygons(
                smk.input.urban,
                layer=smk.params.urban_layer,
                key="negatives.urban_mask",
                encoding=smk.params.urban_encoding,
            )
            if smk.input.urban
            else []
        )
        protected = read_polygons(
            smk.input.protected,
            layer=smk.params.protected_layer,
            key="negatives.protected_areas",
            encoding=smk.params.protected_encoding,
        )
        area = sampling_area(protected, bounds, urban)
        points = sample_negative_points(
            n, area, mines["lon"].to_numpy(), mines["lat"].to_numpy(), smk.params.min_distance_m, smk.params.seed
        )
        log.info(
            "%d random negatives in protected areas (>= %s m from %d mines)",
            len(points),
            smk.params.min_distance_m,
            len(mines),
        )
    else:
        points = pd.DataFrame(columns=["point_id", "lon", "lat", "source", "name"])
        log.info(
            "no random negatives (ratio %s, %d mine points, protected areas: %s)",
            smk.params.ratio,
            len(mines),
            smk.input.protected or "none",
        )
    rejected = pd.DataFrame(columns=["file", "row", "lon", "lat", "reason"])
    if smk.params.hard_points:
        random_ids = f"the random negatives (ids {RANDOM_PREFIX}-00000, {RANDOM_PREFIX}-00001...)"
        hard, rejected = load_point_sources(
            smk.params.hard_points, bounds, "negatives.hard_negative_points", {RANDOM_PREFIX: random_ids}
        )
        log.info("%d hard negatives added from %s", len(hard), [s["path"] for s in smk.params.hard_points])
        points = pd.concat([points, hard], ignore_index=True)
    check_unique_ids(points, "negative points (random and negatives.hard_negative_points)")
    write_csv(smk.output.points, points)
    write_csv(smk.output.rejected, rejected)


if "snakemake" not in globals():  # standalone: python scripts/negative_points.py
    from garimpo.smk import standalone

    snakemake = standalone("negative_points")
main(snakemake)
