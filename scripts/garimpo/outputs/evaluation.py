"""Scoring detections against reference polygons (object level: a mine is found if a detection touches it)."""

from __future__ import annotations

import json
from pathlib import Path

import shapely
from shapely.geometry import shape


def _features(path: str | Path) -> tuple[list[dict], dict]:
    doc = json.loads(Path(path).read_text())
    return doc.get("features", []), doc.get("metadata", {})


def evaluate_detections(detections_path, truth_path, region, control=None) -> dict:
    """Object-level precision/recall of detections against truth mine polygons inside ``region``.

    Truth mines count only if they existed by the newest scene the detections used
    (``first_seen`` <= that year), since newer ones cannot be in the pixels.
    Precision = detections touching a truth mine / detections; recall = truth mines
    touched by a detection / truth mines. Detections inside ``control`` (an area with
    no mining) are counted separately.
    """
    dets, meta = _features(detections_path)
    truth, _ = _features(truth_path)
    years = [int(d[:4]) for d in meta.get("dates", [])]
    newest = max(years) if years else None
    det_geoms = [shape(f["geometry"]) for f in dets]
    mines = []
    for f in truth:
        g = shape(f["geometry"])
        first = f["properties"].get("first_seen")
        if g.intersects(region) and (newest is None or first is None or int(first) <= newest):
            mines.append(g)
    tree = shapely.STRtree(mines) if mines else None
    tp_dets = 0
    for g in det_geoms:
        if tree is not None and any(mines[i].intersects(g) for i in tree.query(g)):
            tp_dets += 1
    found = sum(1 for m in mines if any(m.intersects(g) for g in det_geoms))
    n_det, n_truth = len(det_geoms), len(mines)
    precision = tp_dets / n_det if n_det else 0.0
    recall = found / n_truth if n_truth else 0.0
    in_control = sum(1 for g in det_geoms if control is not None and g.intersects(control))
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "n_detections": n_det,
        "n_true_detections": tp_dets,
        "n_truth": n_truth,
        "n_truth_found": found,
        "n_in_control": in_control,
        "newest_scene_year": newest,
    }
