"""Rule encroachment_stats: mined area and detections per protected area / indigenous territory (CSV + map)."""

from garimpo.geo.vector import source, source_encoding
from garimpo.outputs.encroachment import area_stats, plot_encroachment_map
from garimpo.smk import rule_region, setup_logging, write_csv


def main(smk):
    log = setup_logging(smk)
    cfg = smk.params.encroachment
    _, layer = source(cfg["areas"])
    table, areas, detections = area_stats(
        smk.input.detections,
        smk.input.areas,
        cfg["name_field"],
        cfg["id_field"],
        layer,
        encoding=source_encoding(cfg["areas"]),
    )
    region = rule_region(smk)
    log.info(
        "%d of %d areas hold detections; %.1f ha mined in all",
        len(table),
        len(areas),
        table["mined_area_ha"].sum() if len(table) else 0.0,
    )
    write_csv(smk.output.csv, table)
    key = "id" if cfg["id_field"] else "name"
    plot_encroachment_map(
        table,
        areas,
        detections,
        region,
        smk.output.png,
        attribution=smk.params.attribution,
        key=key,
        area_field=cfg["id_field"] or cfg["name_field"],
        title=f"Mining detections in protected areas: {smk.wildcards.region}",
    )


if "snakemake" not in globals():  # standalone: python scripts/encroachment_stats.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("encroachment_stats")
main(snakemake)
