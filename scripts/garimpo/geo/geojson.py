"""Vector helpers: GeoJSON out (RFC 7946, lon/lat), geodesic distances and areas. Reading is garimpo.geo.vector."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import mapping, shape

from garimpo.atomic import atomic_path

EARTH_RADIUS_M = 6_371_008.8
GEOD = Geod(ellps="WGS84")


def reproject(geom, src_crs, dst_crs):
    """A shapely geometry moved from ``src_crs`` to ``dst_crs`` (lon/lat order for EPSG:4326)."""
    tf = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def geodesic_area_ha(geom) -> float:
    """Area of a lon/lat (multi)polygon on the WGS 84 ellipsoid, in hectares (>= 0).

    pyproj sums signed ring areas (counter-clockwise positive), so rings are oriented first: parts
    wound differently (a repaired bow-tie, a hand-made MultiPolygon) would otherwise cancel out.
    """
    area, _ = GEOD.geometry_area_perimeter(shapely.orient_polygons(geom))
    return abs(area) / 10_000.0


def unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def chord_for_distance(distance_m: float) -> float:
    """Chord length on the unit sphere for a great-circle distance (for KD-tree queries)."""
    return 2.0 * np.sin(min(distance_m / EARTH_RADIUS_M, np.pi) / 2.0)


def feature_collection(features: Iterable[Mapping]) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def feature(geom, properties: Mapping) -> dict:
    return {"type": "Feature", "geometry": mapping(geom), "properties": dict(properties)}


def write_geojson(path: str | Path, collection: Mapping, metadata: Mapping | None = None) -> Path:
    """Write RFC 7946 GeoJSON (lon/lat, no ``crs`` member) atomically, coordinates rounded to ~1 cm.

    Polygon rings are wound as RFC 7946 section 3.1.6 asks: exteriors counter-clockwise, holes clockwise.
    ``collection`` is a FeatureCollection, a Feature or a geometry (GeoJSON mappings).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = _oriented(dict(collection))
    if metadata:
        doc["metadata"] = dict(metadata)  # foreign member; RFC 7946 section 6.1 allows it
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(_round_coords(doc), fh)
    return path


def _oriented(obj: Mapping) -> dict:
    """A GeoJSON object with its polygon rings wound counter-clockwise outside, clockwise inside."""
    kind = obj.get("type")
    if kind == "FeatureCollection":
        return {**obj, "features": [_oriented(f) for f in obj.get("features", [])]}
    if kind == "Feature":
        return {**obj, "geometry": _oriented(obj["geometry"]) if obj.get("geometry") else None}
    if kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return mapping(shapely.orient_polygons(shape(obj), exterior_cw=False))
    return dict(obj)


def _round_coords(obj, ndigits: int = 7):
    if isinstance(obj, dict):
        return {
            k: (_round_nested(v, ndigits) if k in ("coordinates", "bbox") else _round_coords(v, ndigits))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_round_coords(v, ndigits) for v in obj]
    return obj


def _round_nested(value, ndigits):
    if isinstance(value, (list, tuple)):
        return [_round_nested(v, ndigits) for v in value]
    return round(float(value), ndigits)
