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

from garimpo.geo.geojson import geodesic_area_ha


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


ALERT_KINDS = ("new_site", "expansion")  # change-feature kinds that are alerts; "unknown" is not


def evaluate_alerts(
    change_path: str | Path,
    new_truth_path: str | Path,
    period: str,
    region: BaseGeometry,
    control: BaseGeometry | None = None,
    earlier_mining_path: str | Path | None = None,
) -> dict:
    """Object-level precision/recall of one period's new-mining alerts against the ground that became mining then.

    ``change_path``: GeoJSON FeatureCollection of one period's change features (lon/lat Polygon/MultiPolygon;
    properties ``period``, ``kind`` in {"new_site", "expansion", "unknown"}, ``area_ha``); only new_site and
    expansion features are alerts, unknown ones (no earlier clear look) are counted apart. ``new_truth_path``:
    GeoJSON of new ground (the demo world's ``new_mining.geojson``: properties ``period``, ``kind``); the truth is
    its features of ``period`` intersecting ``region``. ``region`` and ``control``: lon/lat geometries.

    Matching is :func:`match_objects`: an alert is true if it touches new ground of the period; a truth piece is
    found if an alert touches it. Returns a dict: n_alerts, n_true_alerts, n_false_alerts, n_truth,
    n_truth_found, n_unknown, precision and recall in [0, 1] rounded to 4 places (None where undefined: no
    alerts / no truth), ``alerts_by_kind`` and ``truth_by_kind`` ({kind: {"n", "n_true" / "n_found"}}),
    n_alerts_in_control (alerts touching ``control``; 0 without it), and geodesic areas in hectares (2 places):
    alert_area_ha (sum over alerts), truth_area_ha (sum over truth pieces) and overlap_area_ha (alerts' union
    inside the truth's union). With ``earlier_mining_path`` (the demo world's ``mining_by_period.geojson``:
    mine footprints with a ``period`` property, periods named by year) it also counts
    ``n_new_sites_on_earlier_mining``: new_site alerts touching a mine that already existed in an earlier period
    (a persisting mine reported as new).

    Raises:
        FileNotFoundError: a path does not exist.
        json.JSONDecodeError: a file is not JSON.
        ValueError: a change feature has another ``period`` or a ``kind`` outside the three above.
    """
    period = str(period)
    changes, _ = _features(change_path)
    truth_feats, _ = _features(new_truth_path)
    alerts: list[tuple[str, BaseGeometry]] = []
    n_unknown = 0
    for i, f in enumerate(changes):
        props = f.get("properties") or {}
        kind = props.get("kind")
        if str(props.get("period", period)) != period:
            raise ValueError(f"{change_path}: feature {i} is of period {props.get('period')!r}, not {period!r}")
        if kind == "unknown":
            n_unknown += 1
        elif kind in ALERT_KINDS:
            alerts.append((kind, shape(f["geometry"])))
        else:
            raise ValueError(f"{change_path}: feature {i} has kind {kind!r}; expected new_site, expansion or unknown")
    truth: list[tuple[str, BaseGeometry]] = []
    for f in truth_feats:
        props = f.get("properties") or {}
        g = shape(f["geometry"])
        if str(props.get("period")) == period and g.intersects(region):
            truth.append((str(props.get("kind")), g))
    match = match_objects([g for _, g in alerts], [g for _, g in truth])
    n_alerts, n_truth = len(alerts), len(truth)
    n_true, n_found = int(match.true_detection.sum()), int(match.found.sum())
    alert_union = shapely.union_all([g for _, g in alerts]) if alerts else None
    truth_union = shapely.union_all([g for _, g in truth]) if truth else None
    overlap = alert_union.intersection(truth_union) if alert_union is not None and truth_union is not None else None
    earlier = {}
    if earlier_mining_path:
        earlier["n_new_sites_on_earlier_mining"] = _on_earlier(alerts, earlier_mining_path, period)
    return {
        "period": period,
        "n_alerts": n_alerts,
        "n_true_alerts": n_true,
        "n_false_alerts": n_alerts - n_true,
        "n_truth": n_truth,
        "n_truth_found": n_found,
        "n_unknown": n_unknown,
        "precision": round(n_true / n_alerts, 4) if n_alerts else None,
        "recall": round(n_found / n_truth, 4) if n_truth else None,
        "alerts_by_kind": {
            k: {
                "n": sum(kind == k for kind, _ in alerts),
                "n_true": int(sum(t for (kind, _), t in zip(alerts, match.true_detection) if kind == k)),
            }
            for k in ALERT_KINDS
        },
        "truth_by_kind": {
            k: {
                "n": sum(kind == k for kind, _ in truth),
                "n_found": int(sum(t for (kind, _), t in zip(truth, match.found) if kind == k)),
            }
            for k in ALERT_KINDS
        },
        "n_alerts_in_control": sum(1 for _, g in alerts if control is not None and g.intersects(control)),
        "alert_area_ha": round(sum(geodesic_area_ha(g) for _, g in alerts), 2),
        "truth_area_ha": round(sum(geodesic_area_ha(g) for _, g in truth), 2),
        "overlap_area_ha": round(geodesic_area_ha(overlap), 2) if overlap is not None and not overlap.is_empty else 0.0,
        **earlier,
    }


def _on_earlier(alerts: Sequence[tuple[str, BaseGeometry]], path: str | Path, period: str) -> int:
    """New-site alerts touching ground that was mining in a period before ``period`` (periods named by year)."""
    feats, _ = _features(path)
    before = [shape(f["geometry"]) for f in feats if str(f["properties"].get("period"))[:4] < period[:4]]
    if not before:
        return 0
    found = match_objects([g for kind, g in alerts if kind == "new_site"], before)
    return int(found.true_detection.sum())
