"""From per-cell detections to the region's mining polygons: clip, dissolve, dual threshold, area.

A feature here is ``{"geometry": <shapely geometry in lon/lat>, "properties": {...}}`` with at least
``score``, ``scene_ids``, ``dates``, ``model_id`` and ``config_hash`` (what ``detect`` writes);
:func:`from_geojson` and :func:`to_geojson` convert from and to GeoJSON dicts.

Each cell is scanned with a margin around it (``detection.margin_m``), so a mine crossing the cell edge is
seen whole by both neighbours. Merging keeps from each cell's scan only what lies in the cell itself (the
cells partition the plane: no double counting), then dissolves pieces that touch across cell edges.

The cell id travels in each piece's property ``cell`` and a detection's ``cells`` (the output's keys).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import shape

from garimpo.geo.cells import cell_polygons
from garimpo.geo.geojson import feature, feature_collection, geodesic_area_ha, reproject
from garimpo.geo.raster import utm_epsg

_Feature = TypeVar("_Feature", bound=Mapping)  # a GeoJSON-like feature: dict, or any Mapping

# Pieces clipped on either side of a shared cell edge touch up to floating-point noise: group within
# ~0.1 mm and snap unions to that grid so the pieces fuse into one polygon.
TOUCH_DEG = 1e-9
# Smallest length of a degree of latitude or of longitude at the equator, in metres (WGS 84).
MIN_M_PER_DEG = 110_574.0


def from_geojson(collection: Mapping | Sequence[Mapping]) -> list[dict]:
    """Features with shapely geometries from a GeoJSON FeatureCollection (or a list of GeoJSON features)."""
    feats = collection.get("features", []) if isinstance(collection, Mapping) else collection
    return [
        {"geometry": shape(f["geometry"]), "properties": dict(f.get("properties") or {})}
        for f in feats
        if f.get("geometry")
    ]


def to_geojson(features: Iterable[Mapping]) -> dict:
    """A GeoJSON FeatureCollection (for ``geo.write_geojson``)."""
    return feature_collection(feature(f["geometry"], f["properties"]) for f in features)


def area_ha(geom_lonlat) -> float:
    """Area of a lon/lat (multi)polygon on the WGS 84 ellipsoid, in hectares (geodesic, equal-area)."""
    return geodesic_area_ha(geom_lonlat)


def _polygonal(geom):
    """The polygonal part of an overlay result (drops the lines/points left where shapes only touch)."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom if geom.area > 0 else None
    polys = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    return shapely.union_all(polys) if polys else None


def clip_to_cell(features: Sequence[Mapping], cell_lonlat, cell: str | None = None) -> list[dict]:
    """The part of each feature (shapely lon/lat geometry) inside the cell polygon ``cell_lonlat``; features
    wholly outside are dropped.

    ``cell`` (its id) is recorded in the properties as ``cell``: :func:`dissolve` uses it to tell the same
    object seen by two neighbours from two objects.
    """
    if not features:
        return []
    shapely.prepare(cell_lonlat)
    geoms = np.array([f["geometry"] for f in features], dtype=object)
    inside = shapely.contains(cell_lonlat, geoms)  # the common case, no overlay needed
    out = []
    for f, g, whole in zip(features, geoms, inside):
        part = g if whole else _polygonal(shapely.intersection(g, cell_lonlat))
        if part is None:
            continue
        props = dict(f["properties"])
        if cell is not None:
            props["cell"] = cell
        out.append({"geometry": part, "properties": props})
    return out


def _pairs_within(geoms: np.ndarray, gap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of geometries closer than ``gap_m`` metres (touching when 0)."""
    tree = shapely.STRtree(geoms)
    if gap_m <= 0:
        left, right = tree.query(geoms, predicate="dwithin", distance=TOUCH_DEG)
        keep = left < right
        return left[keep], right[keep]
    # Candidates with a conservative distance in degrees (a degree of longitude shrinks with latitude) ...
    max_lat = min(float(np.max(np.abs(shapely.bounds(geoms)[:, [1, 3]]))), 89.0)
    deg = gap_m / (MIN_M_PER_DEG * math.cos(math.radians(max_lat)))
    left, right = tree.query(geoms, predicate="dwithin", distance=deg)
    keep = left < right
    left, right = left[keep], right[keep]
    if len(left) == 0:
        return left, right
    # ... then the exact distance in metres, in the UTM zone of the first geometry of each pair.
    cents = shapely.centroid(geoms[left])
    zones = np.array([utm_epsg(x, y) for x, y in zip(shapely.get_x(cents), shapely.get_y(cents))])
    close = np.zeros(len(left), bool)
    for zone in np.unique(zones):
        sel = zones == zone
        a = reproject(geoms[left[sel]], "EPSG:4326", f"EPSG:{zone}")
        b = reproject(geoms[right[sel]], "EPSG:4326", f"EPSG:{zone}")
        close[sel] = shapely.distance(a, b) <= gap_m
    return left[close], right[close]


def group_labels(geoms: Sequence | np.ndarray, gap_m: float = 0.0) -> np.ndarray:
    """Connected-component label of each geometry, linking those that touch, overlap or lie within ``gap_m``."""
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    if n == 0:
        return np.zeros(0, int)
    left, right = _pairs_within(geoms, gap_m)
    graph = coo_matrix((np.ones(len(left), np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _planar_weight(geoms: np.ndarray) -> np.ndarray:
    """Areas good enough for weighting (degrees² scaled by cos(lat)): avoids a geodesic area per part."""
    lat = shapely.get_y(shapely.centroid(geoms))
    return shapely.area(geoms) * np.cos(np.radians(lat))


def _common(values: list):
    """The value shared by all parts, or the sorted distinct values when they disagree."""
    distinct = sorted({v for v in values if v is not None}, key=str)
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    return distinct


def _aggregate(members: list[Mapping], weights: np.ndarray) -> dict:
    props = [m["properties"] for m in members]
    scores = np.array([float(p["score"]) for p in props])
    means = np.array([float(p.get("mean_score", p["score"])) for p in props])
    w = weights if weights.sum() > 0 else np.ones(len(props))
    # Parts per cell add up (a cell's parts are distinct objects); across cells take the largest count,
    # since neighbours see the same objects in their margins. Parts with no cell are one view.
    per_cell: dict = defaultdict(int)
    for p in props:
        per_cell[p.get("cell")] += int(p.get("n_parts", 1))
    cells = sorted({c for p in props for c in ([p["cell"]] if p.get("cell") else []) + list(p.get("cells", []))})
    dates = sorted(
        {str(d) for p in props for d in p.get("dates", []) or []}
        | {str(p[k]) for p in props for k in ("date_start", "date_end") if p.get(k)}
    )
    return {
        "score": round(float(scores.max()), 4),
        "mean_score": round(float(np.average(means, weights=w)), 4),
        "n_parts": max(per_cell.values()),
        "scene_ids": sorted({str(s) for p in props for s in p.get("scene_ids", []) or []}),
        "dates": dates,
        "date_start": dates[0] if dates else None,
        "date_end": dates[-1] if dates else None,
        "model_id": _common([p.get("model_id") for p in props]),
        "config_hash": _common([p.get("config_hash") for p in props]),
        "cells": cells,
    }


def dissolve(features: Sequence[Mapping], gap_m: float = 0.0) -> list[dict]:
    """One feature per group of features that touch or overlap (or lie within ``gap_m`` metres).

    The geometry is the union of the group's parts (with ``gap_m`` > 0 the gaps are not filled: the
    area stays what was detected). Properties: ``score`` (max), ``mean_score`` (area-weighted mean),
    ``n_parts`` (see below), ``scene_ids`` and ``dates`` (sorted unions), ``date_start``/``date_end``,
    ``model_id``/``config_hash`` (the common value, or the sorted distinct values), ``cells`` (cell ids).

    ``n_parts`` counts the positive parts (chips or zones) of the group: parts that carry ``n_parts``
    (already dissolved) count for that many; parts from the same cell (``cell``) add up, and the count across
    cells is the largest per cell, because a part near a cell edge reaches the merge as a piece from
    each neighbour that saw it. Grouping is an STRtree query plus connected components: linear in
    practice, fine for tens of thousands of parts. Output order: by group of the first part.
    """
    if not features:
        return []
    geoms = np.array([f["geometry"] for f in features], dtype=object)
    labels = group_labels(geoms, gap_m)
    weights = _planar_weight(geoms)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    out = []
    for idx in sorted(np.split(order, bounds), key=lambda ix: ix.min()):
        members = [features[i] for i in idx]
        if len(idx) == 1:
            geom = geoms[idx[0]]
        else:
            geom = shapely.union_all(geoms[idx], grid_size=TOUCH_DEG)
        out.append({"geometry": geom, "properties": _aggregate(members, weights[idx])})
    return out


def detection_thresholds(
    threshold: float | None, isolated: float | None, model_threshold: float | None = None
) -> tuple[float, float]:
    """(low, high) of the merge's dual threshold from config keys detection.threshold and
    detection.isolated_threshold.

    low is ``threshold``, or ``model_threshold`` (the checkpoint's, chosen on validation) when that is None;
    high is ``isolated``, or halfway between low and 1 when it is None (so never below low).
    Raises ValueError naming the keys when low is not in (0, 1], when a set ``isolated`` is above 1, or
    when it is below low (naming both keys, and the checkpoint when its threshold is the one in force).
    """
    if threshold is None and model_threshold is None:
        raise ValueError("detection.threshold is null and no checkpoint threshold was given")
    chosen = model_threshold if threshold is None else threshold
    assert chosen is not None  # both None refused above
    low = float(chosen)
    if not 0 < low <= 1:
        where = (
            "detection.threshold"
            if threshold is not None
            else "the checkpoint's threshold (detection.threshold is null)"
        )
        raise ValueError(f"{where} is {low}, not a score in (0, 1]; set detection.threshold to one")
    if isolated is None:
        return low, (1 + low) / 2
    high = float(isolated)
    if high > 1:
        raise ValueError(
            f"config detection.isolated_threshold {high} is above 1, so no lone chip could reach it; "
            "set it to a score in (0, 1], or to null (halfway between detection.threshold and 1)"
        )
    if high < low:
        if threshold is None:
            raise ValueError(
                f"config detection.isolated_threshold {high} is below the threshold in force, {low}: "
                "detection.threshold is null, so the checkpoint's threshold (chosen on validation) is used; "
                f"set detection.isolated_threshold to at least {low} or to null (halfway to 1), or set "
                "detection.threshold yourself"
            )
        raise ValueError(
            f"config detection.isolated_threshold {high} is below detection.threshold {low}; set "
            f"detection.isolated_threshold to at least {low}, or to null (halfway to 1)"
        )
    return low, high


def dual_threshold(features: Sequence[_Feature], low: float, high: float, require_seed: bool = False) -> list[_Feature]:
    """Hysteresis on dissolved groups of positive parts (parts that scored >= ``low``).

    An isolated detection (``n_parts`` == 1: one chip or zone with no positive neighbour) is kept only
    if its ``score`` >= ``high``; a group of two or more adjacent positive parts is kept if its
    ``score`` (the best part) >= ``low``. Adjacent positives corroborate each other, a lone one must be
    confident. With ``require_seed`` every detection needs a part >= ``high`` (its seed) whatever its
    size, and parts >= ``low`` only extend it: hysteresis thresholding as in Canny's edge detector
    (Canny 1986, IEEE TPAMI 8(6)), so a patch of weak chips with no confident one is not reported.
    The input must be dissolved from parts already filtered at ``low`` (``merge_cells`` does
    this); otherwise a weak neighbour below ``low`` would count as a part. Raises ValueError when
    ``low`` > ``high``.
    """
    if low > high:
        raise ValueError(f"low threshold {low} above high threshold {high}")
    kept: list[_Feature] = []
    for f in features:
        p = f["properties"]
        need = high if require_seed or int(p.get("n_parts", 1)) < 2 else low
        if float(p["score"]) >= need:
            kept.append(f)
    return kept


def cell_pieces(cell: str, features: Sequence[Mapping], size_m: float, low: float, gap_m: float = 0.0) -> list[dict]:
    """One cell's share of the merge: the parts its scan found scoring >= ``low``, dissolved (so ``n_parts``
    counts what the scan saw whole, margin included) and clipped to the cell (of side ``size_m`` metres,
    id recorded in each as ``cell``)."""
    positives = [f for f in features if float(f["properties"]["score"]) >= low]
    if not positives:
        return []
    _, cell_ll = cell_polygons(cell, size_m)
    return clip_to_cell(dissolve(positives, gap_m), cell_ll, cell)


def merge_pieces(
    pieces: Sequence[Mapping],
    low: float,
    high: float,
    gap_m: float = 0.0,
    id_prefix: str = "det",
    require_seed: bool = False,
) -> list[dict]:
    """The region's detections from every cell's :func:`cell_pieces`, in cell id order.

    Dissolves across cell edges, applies :func:`dual_threshold`, adds ``area_ha`` (geodesic) and numbers
    the features ``{id_prefix}-00001``... in the order (-score, -area_ha, lon, lat), which depends only
    on the detections themselves.
    """
    kept = dual_threshold(dissolve(pieces, gap_m), low, high, require_seed)
    for f in kept:
        f["properties"]["area_ha"] = round(area_ha(f["geometry"]), 4)

    def key(f):
        c = f["geometry"].centroid
        return (-f["properties"]["score"], -f["properties"]["area_ha"], round(c.x, 7), round(c.y, 7))

    out = []
    for k, f in enumerate(sorted(kept, key=key), start=1):
        out.append({"geometry": f["geometry"], "properties": {"id": f"{id_prefix}-{k:05d}", **f["properties"]}})
    return out


def merge_cells(
    per_cell_features: Mapping[str, Sequence[Mapping]],
    size_m: float,
    low: float,
    high: float,
    gap_m: float = 0.0,
    id_prefix: str = "det",
    require_seed: bool = False,
) -> list[dict]:
    """The region's detections from each cell's detections (each seen on its cell plus margin), all in
    memory: :func:`cell_pieces` per cell in id order, then :func:`merge_pieces`.
    (``garimpo.detection.merge.merge_region`` does the same from chip-score files, one cell at a time.)
    """
    pieces = []
    for cid in sorted(per_cell_features):
        pieces += cell_pieces(cid, per_cell_features[cid], size_m, low, gap_m)
    return merge_pieces(pieces, low, high, gap_m, id_prefix, require_seed)
