"""Rule merge_detections: every tile's chip scores -> the region's detections (chips over the threshold,
clipped to their cells, dissolved across tile edges, dual threshold, geodesic areas) as RFC 7946 GeoJSON."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from garimpo.classifier.metrics import decision_threshold  # noqa: E402
from garimpo.detect import chip_features, load_chip_scores  # noqa: E402
from garimpo.geo import write_geojson  # noqa: E402
from garimpo.postprocess import detection_thresholds, merge_tiles, to_geojson  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402
from garimpo.tiling import read_tile_list  # noqa: E402
from garimpo.vector import read_region  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    det = smk.params.detection
    tiles = read_tile_list(smk.input.tiles)
    with open(smk.input.model) as fh:
        model = json.load(fh)  # the training summary: model id and the threshold chosen on validation
    scans = [load_chip_scores(p) for p in smk.input.chips]
    stale = sorted(s.provenance["tile"] for s in scans if s.provenance["model_id"] != model["model_id"])
    if stale:
        raise ValueError(f"tiles {stale[:5]} of {smk.wildcards.region} were scanned with another model than "
                         f"{model['model_id']}: rescan them (snakemake -R detect_tile)")
    # The model's own threshold is the one chosen on validation scores made as the scan made them.
    chosen = decision_threshold(model, bool(det["tta"])) if det["threshold"] is None else None
    low, high = detection_thresholds(det["threshold"], det["isolated_threshold"], chosen)
    per_tile = {s.provenance["tile"]: chip_features(s, low, {k: s.provenance[k] for k in
                                                             ("scene_ids", "dates", "model_id", "config_hash")})
                for s in scans}
    reg = smk.params.region
    region = read_region(smk.input.region, reg.get("field"), reg.get("value"), reg.get("layer"),
                         f"regions.{smk.wildcards.region}", reg.get("encoding"))
    merged = merge_tiles(per_tile, tiles["size_m"], low, high, float(det["gap_m"]),
                         require_seed=bool(det["require_seed"]))
    inside = []
    for f in merged:  # scenes reach past the region by the margin: keep the region's part
        geom = f["geometry"].intersection(region)
        if not geom.is_empty and geom.area > 0:
            inside.append({"geometry": geom, "properties": {**f["properties"], "label": "mining",
                                                            "threshold": low, "isolated_threshold": high}})
    chips = sum(len(v) for v in per_tile.values())
    classified = sum(len(s.scores) for s in scans)
    log.info("%s: %d tiles, %d chips classified, %d >= %.3f -> %d detections (isolated chips need %.3f)",
             smk.wildcards.region, len(scans), classified, chips, low, len(inside), high)
    scene_ids = sorted({i for s in scans for i in s.provenance["scene_ids"]})
    dates = sorted({d for s in scans for d in s.provenance["dates"]})
    metadata = {"region": smk.wildcards.region, "tiles": len(scans), "tile_size_m": tiles["size_m"],
                "scene_ids": scene_ids, "dates": dates,
                "threshold": low, "isolated_threshold": high, "require_seed": bool(det["require_seed"]),
                "chips_classified": classified,
                "model_id": model["model_id"], "generator": "garimpo detection",
                "attribution": smk.params.attribution}
    write_geojson(smk.output[0], to_geojson(inside), metadata)


main(snakemake)  # noqa: F821
