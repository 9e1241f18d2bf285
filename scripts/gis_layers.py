"""Rule gis_layers: a region's products as one GeoPackage (a layer per product and period), one KML (the same
layers as folders) and a CSV of the latest detections (centroid, area, score, periods, protected area)."""

import json
from pathlib import Path

from garimpo.detection.polygons import from_geojson
from garimpo.outputs.products import read_areas, read_period_files
from garimpo.publish.gis import detections_table, write_detections_csv, write_gpkg, write_kml
from garimpo.publish.layers import LATEST, areas_in, evidence_property, protected_area_property, region_layers
from garimpo.smk import rule_region, setup_logging


def main(smk):
    log = setup_logging(smk)
    periods = list(smk.params.periods)
    cfg = smk.params.encroachment
    areas = read_areas(smk.input.areas, cfg) if smk.input.areas else []
    index = json.loads(Path(smk.input.evidence).read_text())
    latest = evidence_property(from_geojson(json.loads(Path(smk.input.latest).read_text())), index)
    region = rule_region(smk)
    latest = protected_area_property(latest, areas_in(areas, region), cfg.get("name_field"), cfg.get("id_field"))
    layers = region_layers(
        latest,
        read_period_files(smk.input.detections, periods, "detection"),
        read_period_files(smk.input.changes, periods, "change"),
        from_geojson(json.loads(Path(smk.input.footprint).read_text())),
        areas,
        region,
        smk.wildcards.region,
    )
    write_gpkg(smk.output.gpkg, layers, source=smk.input.latest)
    write_kml(smk.output.kml, layers, source=smk.input.latest)
    table = detections_table(
        layers[LATEST], layers["protected_areas"], cfg.get("name_field"), cfg.get("id_field"), smk.input.latest
    )
    write_detections_csv(smk.output.csv, table)
    log.info(
        "%s: %d layers (%s); %d detections in the table, %d inside a protected area",
        smk.wildcards.region,
        len(layers),
        ", ".join(f"{k} {len(v)}" for k, v in layers.items()),
        len(table),
        int((table["protected_area"] != "").sum()) if len(table) else 0,
    )


if "snakemake" not in globals():  # standalone: python scripts/gis_layers.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("gis_layers")
main(snakemake)
