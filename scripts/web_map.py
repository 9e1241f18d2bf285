"""Rule web_map: one self-contained HTML page per region that opens from the file system with no network:
detections by period, new mining, the footprint, protected areas, a true-colour image of the latest composites,
and a popup per detection with its before/after evidence."""

import json
from pathlib import Path

from garimpo.detection.polygons import from_geojson
from garimpo.outputs.products import read_areas, read_period_files
from garimpo.publish.layers import areas_in, protected_area_property
from garimpo.publish.webmap import basemap_png, write_webmap
from garimpo.smk import rule_region, setup_logging


def main(smk):
    setup_logging(smk)
    region_name = smk.wildcards.region
    periods = list(smk.params.periods)
    latest_period = periods[-1]
    cfg = smk.params.webmap
    region = rule_region(smk)
    areas = areas_in(read_areas(smk.input.areas, smk.params.encroachment), region) if smk.input.areas else []
    enc = smk.params.encroachment
    latest = protected_area_property(
        from_geojson(json.loads(Path(smk.input.latest).read_text())), areas, enc["name_field"], enc.get("id_field")
    )
    detections = read_period_files(smk.input.detections, periods, "detection")
    changes = read_period_files(smk.input.changes, periods, "change")
    footprint = from_geojson(json.loads(Path(smk.input.footprint).read_text()))

    # Thumbnails exist for the latest detections; the latest period's change features point at those detections.
    bundle = Path(smk.input.evidence).parent
    index = json.loads(Path(smk.input.evidence).read_text())
    evidence = {det_id: bundle / entry["path"] for det_id, entry in index.items()}
    for f in changes[latest_period]:
        det = str(f["properties"].get("detection"))
        if det in evidence:
            evidence[str(f["properties"]["id"])] = evidence[det]

    layers = [{"name": "Region", "kind": "region", "features": [{"geometry": region, "properties": {}}]}]
    if areas:
        layers.append({"name": "Protected areas", "kind": "areas", "features": areas, "visible": True})
    layers.append({"name": "Footprint (all periods)", "kind": "footprint", "features": footprint, "visible": False})
    for period in periods[:-1]:
        layers.append(
            {"name": f"Detections {period}", "kind": "detections", "features": detections[period], "visible": False}
        )
    layers.append(
        {"name": f"Detections {latest_period} (latest)", "kind": "detections", "features": latest, "visible": True}
    )
    for period in periods[1:]:
        layers.append(
            {
                "name": f"New mining {period}",
                "kind": "change",
                "features": changes[period],
                "period": period,
                "visible": period == latest_period,
            }
        )
    basemap = None
    if int(cfg["basemap_max_px"]) > 0 and smk.input.composites:
        basemap = basemap_png(list(smk.input.composites), region.bounds, int(cfg["basemap_max_px"]))
    write_webmap(
        smk.output[0],
        f"Mining detections: {region_name}, {periods[0]}–{latest_period}",
        layers,
        evidence,
        basemap,
        smk.params.attribution,
        simplify_m=float(cfg["simplify_m"]),
    )


if "snakemake" not in globals():  # standalone: python scripts/web_map.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("web_map")
main(snakemake)
