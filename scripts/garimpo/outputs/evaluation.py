"""Scoring detections against reference polygons at object level: a mine is found if a detection touches it.

``match_objects`` is the one rule (both sides as shapely geometries in one CRS); ``evaluate_detections`` applies
it to the workflow's GeoJSON outputs (the evaluate_demo rule), and the detection bench
(``garimpo.synthetic.detect_bench``) to chip polygons of a synthetic granule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class ObjectMatch:
    """Which truth objects a set of detections found, and which detections are true.

    ``found``: bool [n_truth], a truth object touched (intersected) by at least one detection;
    ``true_detection``: bool [n_detections], a detection touching at least one truth object.
    """

    found: np.ndarray
    true_detection: np.ndarray

    @property
    def precision(self) -> float:
        """True detections / detections, in [0, 1]; 0.0 without detections."""
        n = len(self.true_detection)
        return float(self.true_detection.sum()) / n if n else 0.0

    @property
    def recall(self) -> float:
        """Truth objects found / truth objects, in [0, 1]; 0.0 without truth objects."""
        n = len(self.found)
        return float(self.found.sum()) / n if n else 0.0


def match_objects(detections: Sequence[BaseGeometry], truth: Sequence[BaseGeometry]) -> ObjectMatch:
    """Object-level matching: a detection and a truth object match when they intersect (touching counts).

    Both sequences are shapely geometries in one CRS (lon/lat or projected; only intersection is tested, so
    units do not matter). One detection may find several truth objects and one truth object may be found by
    several detections. Returns an :class:`ObjectMatch` (empty arrays for empty inputs).
    """
    found = np.zeros(len(truth), bool)
    true_detection = np.zeros(len(detections), bool)
    if len(truth) and len(detections):
        # query(..., predicate="intersects") returns [2, k] index pairs (input geometry, tree geometry)
        pairs = shapely.STRtree(list(truth)).query(list(detections), predicate="intersects")
        true_detection[pairs[0]] = True
        found[pairs[1]] = True
    return ObjectMatch(found, true_detection)


def _features(path: str | Path) -> tuple[list[dict], dict]:
    doc = json.loads(Path(path).read_text())
    return doc.get("features", []), doc.get("metadata", {})


def evaluate_detections(
    detections_path: str | Path,
    truth_path: str | Path,
    region: BaseGeometry,
    control: BaseGeometry | None = None,
) -> dict:
    """Object-level precision/recall of detections against truth mine polygons inside ``region``.

    ``detections_path``: GeoJSON FeatureCollection the merge wrote (lon/lat; ``metadata.dates`` as ISO dates);
    ``truth_path``: GeoJSON of truth mines (lon/lat; optional property ``first_seen``, a year); ``region`` and
    ``control``: lon/lat geometries. Truth mines count only if they existed by the newest scene the
    detections used (``first_seen`` <= that year), since newer ones cannot be in the pixels.
    Matching is :func:`match_objects`: precision = detections touching a truth mine / detections; recall =
    truth mines touched by a detection / truth mines (both 0.0 when undefined). Detections touching
    ``control`` (an area with no mining) are counted separately.

    Returns a dict of precision, recall, f1 (rounded to 4 places), counts and ``newest_scene_year``.

    Raises:
        FileNotFoundError: a path does not exist.
        json.JSONDecodeError: a file is not JSON.
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
    match = match_objects(det_geoms, mines)
    precision, recall = match.precision, match.recall
    in_control = sum(1 for g in det_geoms if control is not None and g.intersects(control))
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "n_detections": len(det_geoms),
        "n_true_detections": int(match.true_detection.sum()),
        "n_truth": len(mines),
        "n_truth_found": int(match.found.sum()),
        "n_in_control": in_control,
        "newest_scene_year": newest,
    }
