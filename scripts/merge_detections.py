"""Rule merge_detections: every cell's chip scores of one period -> the region's detections of that period
(chips over the threshold, clipped to their cells, dissolved across cell edges, dual threshold, geodesic
areas) as RFC 7946 GeoJSON.
Cells are read one at a time (``garimpo.detection.merge``), so memory does not grow with the region."""

import json

from garimpo.classifier.metrics import decision_threshold
from garimpo.detection.merge import merge_region
from garimpo.detection.polygons import detection_thresholds, to_geojson
from garimpo.geo.cells import read_cell_list
from garimpo.geo.geojson import write_geojson
from garimpo.smk import rule_region, setup_logging


def main(smk):
    setup_logging(smk)
    det = smk.params.detection
    cells = read_cell_list(smk.input.cells)
    with open(smk.input.model) as fh:
        model = json.load(fh)  # the training summary: model id and the threshold chosen on validation
    # The model's own threshold is the one chosen on validation scores made as the scan made them.
    chosen = decision_threshold(model, bool(det["tta"])) if det["threshold"] is None else None
    low, high = detection_thresholds(det["threshold"], det["isolated_threshold"], chosen)
    region = rule_region(smk)
    detections, metadata = merge_region(
        smk.input.chip_scores,
        region,
        smk.wildcards.region,
        cells["size_m"],
        model["model_id"],
        low,
        high,
        float(det["gap_m"]),
        require_seed=bool(det["require_seed"]),
        # The latest period's detections are the region's result: seeing nothing there is an error. An
        # earlier period seen nowhere (a cloudy year) is "not seen" for the change products, not a stop.
        require_coverage=bool(smk.params.latest),
    )
    period = smk.params.period
    write_geojson(
        smk.output[0],
        to_geojson(detections),
        {
            **metadata,
            "period": period["name"],
            "period_start": period["start"],
            "period_end": period["end"],
            "generator": "garimpo detection",
            "attribution": smk.params.attribution,
        },
    )


if "snakemake" not in globals():  # standalone: python scripts/merge_detections.py region=NAME period=P
    from garimpo.smk import standalone

    snakemake = standalone("merge_detections")
main(snakemake)
