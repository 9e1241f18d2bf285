"""Vector helpers: GeoJSON in/out (RFC 7946, lon/lat), geodesic distances and equal-area areas."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from .errors import InputDataError

EARTH_RADIUS_M = 6_371_008.8
GEOD = Geod(ellps="WGS84")


def read_polygons(path: str | Path, field: str | None = None, value: str | None = None) -> list:
    """Polygons of a GeoJSON file, optionally only features whose ``field`` equals ``value``."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"polygon file {path} not found; check the path in the config")
    data = json.loads(path.read_text())
    geoms = []
    for i, feat in enumerate(data.get("features", []), start=1):
        props = feat.get("properties") or {}
        if field and value is not None and str(props.get(field)) != str(value):
            continue
        if not feat.get("geometry"):
            continue
        geom = shape(feat["geometry"])
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        if geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            raise InputDataError(f"{path}: feature {i} is a {geom.geom_type}, expected a polygon")
        geoms.append(geom)
    if field and value is not None and not geoms:
        raise InputDataError(f"{path}: no feature with {field} == {value!r}")
    return geoms


def read_region(path: str | Path, field: str | None = None, value: str | None = None):
    """One (multi)polygon: the union of the selected features."""
    geoms = read_polygons(path, field, value)
    if not geoms:
        raise InputDataError(f"{path}: no polygon")
    return unary_union(geoms)


def reproject(geom, src_crs, dst_crs):
    """A shapely geometry moved from ``src_crs`` to ``dst_crs`` (lon/lat order for EPSG:4326)."""
    tf = Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def geodesic_area_ha(geom) -> float:
    """Area of a lon/lat polygon on the WGS 84 ellipsoid, in hectares."""
    area, _ = GEOD.geometry_area_perimeter(geom)
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
    """Write RFC 7946 GeoJSON (lon/lat, no ``crs`` member) atomically, coordinates rounded to ~1 cm."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(collection)
    if metadata:
        doc["metadata"] = dict(metadata)  # foreign member; RFC 7946 section 6.1 allows it
    fd, tmp = tempfile.mkstemp(suffix=".geojson", dir=path.parent, prefix=f".{path.stem}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(_round_coords(doc), fh)
    os.replace(tmp, path)
    return path


def _round_coords(obj, ndigits: int = 7):
    if isinstance(obj, dict):
        return {k: (_round_nested(v, ndigits) if k in ("coordinates", "bbox") else _round_coords(v, ndigits))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_coords(v, ndigits) for v in obj]
    return obj


def _round_nested(value, ndigits):
    if isinstance(value, (list, tuple)):
        return [_round_nested(v, ndigits) for v in value]
    return round(float(value), ndigits)
