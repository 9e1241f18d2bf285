"""Rule classify_candidates: stage two, the classifier's verdict on each candidate zone -> detections GeoJSON."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from garimpo.detect import chip_windows, config_hash, detection_features, prepare_chips, write_features  # noqa: E402
from garimpo.geo import reproject  # noqa: E402
from garimpo.raster import Grid, read_raster  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    import torch

    from garimpo.classifier.infer import predict_proba
    from garimpo.classifier.model import load_classifier

    torch.set_num_threads(smk.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, meta = load_classifier(smk.input.model, device)
    cfg = smk.params.detection
    threshold = cfg["threshold"] if cfg["threshold"] is not None else meta["threshold"]
    scene = read_raster(smk.input.scene)
    grid = Grid(scene.crs, scene.transform, scene.array.shape[2], scene.array.shape[1])
    stats = json.loads(open(smk.input.stats).read())
    scene_meta = json.loads(open(smk.input.meta).read())
    chip_px = int(round(smk.params.tile_size_m / grid.resolution))
    zones = []
    for feat in json.loads(open(smk.input.zones).read())["features"]:
        geom = shape(feat["geometry"])
        zones.append({"zone_id": feat["properties"]["zone_id"], "geometry": geom,
                      "geometry_proj": reproject(geom, "EPSG:4326", grid.crs)})
    scores = []
    for zone in zones:
        windows = chip_windows(zone["geometry_proj"], grid, chip_px)[: cfg["max_chips_per_zone"]]
        chips = prepare_chips(scene, windows, chip_px, stats, meta["bands"])
        probs = predict_proba(model, meta, chips, cfg["batch_size"], device, tta=cfg["tta"])
        scores.append(float(probs.max()) if len(probs) else 0.0)  # a zone is mining if any of its chips is
    scored, mining = detection_features(zones, scores, threshold, scene_meta, meta["model_id"],
                                        config_hash({**cfg, "tile_size_m": smk.params.tile_size_m}))
    log.info("%d of %d candidate zones classified mining (threshold %.3f, model %s)", len(mining), len(zones),
             threshold, meta["model_id"])
    metadata = {"region": smk.wildcards.region, "model_id": meta["model_id"], "threshold": threshold,
                "scene_ids": scene_meta["scene_ids"], "dates": scene_meta["dates"], "n_candidates": len(zones),
                "generator": "garimpo two-stage detection",
                "attribution": "Contains modified Copernicus Sentinel data"}
    write_features(smk.output.detections, mining, metadata)
    write_features(smk.output.scored, scored, metadata)
    if len(scores):
        log.info("score quantiles (0, 50, 90, 100 %%): %s", np.round(np.quantile(scores, [0, 0.5, 0.9, 1]), 3).tolist())


main(snakemake)  # noqa: F821
