"""Two-stage detection: region scene -> candidate zones (proposer) -> classifier verdict per zone."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import rasterio.features
from shapely.geometry import box, shape
from scipy import ndimage
from shapely.ops import unary_union

from .geo import feature, feature_collection, geodesic_area_ha, reproject, write_geojson
from .matching import reference_bounds, stretch_to_reference
from .raster import Grid, Raster, bounds_grid, utm_epsg

log = logging.getLogger(__name__)


def region_grid(region_lonlat, resolution: float = 10.0) -> Grid:
    """A grid over the region in the UTM zone of its centroid."""
    c = region_lonlat.centroid
    crs = f"EPSG:{utm_epsg(c.x, c.y)}"
    return bounds_grid(crs, reproject(region_lonlat, "EPSG:4326", crs).bounds, resolution)


def region_mask(region_lonlat, grid: Grid) -> np.ndarray:
    """Pixels of ``grid`` inside the region polygon."""
    geom = reproject(region_lonlat, "EPSG:4326", grid.crs)
    return rasterio.features.geometry_mask([geom], (grid.height, grid.width), grid.transform, invert=True)


def zones_from_mask(mask: np.ndarray, crs: str, transform, min_pixels: int = 1) -> list[dict]:
    """Candidate zones (connected 8-neighbour components) as lon/lat polygons with pixel counts."""
    labels, n = _label(mask)
    if n == 0:
        return []
    counts = np.bincount(labels.ravel())
    zones = {}
    for geom, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=8, transform=transform):
        value = int(value)
        if counts[value] < min_pixels:
            continue
        poly = shape(geom)
        zones.setdefault(value, []).append(poly)
    out = []
    for value, polys in sorted(zones.items()):
        proj = unary_union(polys)
        out.append({"zone_id": int(value), "n_pixels": int(counts[value]), "geometry_proj": proj,
                    "geometry": reproject(proj, crs, "EPSG:4326")})
    return out


def _label(mask: np.ndarray):
    return ndimage.label(mask, structure=np.ones((3, 3), dtype=int))


def chip_windows(zone_proj, grid: Grid, chip_px: int) -> list[tuple[int, int]]:
    """Top-left (row, col) of chips of ``chip_px`` that cover a zone; one centred chip for small zones.

    Large zones get a regular lattice of chips over their bounding box, keeping only
    chips whose square touches the zone.
    """
    res = grid.resolution
    left, top = grid.transform.c, grid.transform.f
    minx, miny, maxx, maxy = zone_proj.bounds
    size = chip_px * res
    if maxx - minx <= size and maxy - miny <= size:
        cx, cy = zone_proj.centroid.x, zone_proj.centroid.y
        return [(int(round((top - cy) / res - chip_px / 2)), int(round((cx - left) / res - chip_px / 2)))]
    out = []
    nx = int(np.ceil((maxx - minx) / size))
    ny = int(np.ceil((maxy - miny) / size))
    x0 = (minx + maxx) / 2 - nx * size / 2
    y0 = (miny + maxy) / 2 + ny * size / 2
    for i in range(ny):
        for j in range(nx):
            cell = box(x0 + j * size, y0 - (i + 1) * size, x0 + (j + 1) * size, y0 - i * size)
            if cell.intersects(zone_proj):
                out.append((int(round((top - (y0 - i * size)) / res)), int(round((x0 + j * size - left) / res))))
    return out


def extract_chip(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """A (bands, size, size) window of ``image``; parts outside the image are NaN."""
    bands, h, w = image.shape
    chip = np.full((bands, size, size), np.nan, dtype=np.float32)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size, h), min(col + size, w)
    if r1 > r0 and c1 > c0:
        chip[:, r0 - row : r1 - row, c0 - col : c1 - col] = image[:, r0:r1, c0:c1]
    return chip


def prepare_chips(scene: Raster, windows: Sequence[tuple[int, int]], chip_px: int, stats: Mapping,
                  bands: Sequence[str]) -> np.ndarray:
    """Chips matched to the positive statistics exactly as the training tiles were, in ``bands`` order."""
    low, high = reference_bounds(stats, scene.band_names)
    idx = [scene.band_names.index(b) for b in bands]
    chips = []
    for row, col in windows:
        chip = extract_chip(scene.array, row, col, chip_px)
        matched = stretch_to_reference(chip, low, high)
        chips.append(matched[idx])
    return np.stack(chips) if chips else np.zeros((0, len(bands), chip_px, chip_px), np.float32)


def config_hash(params: Mapping) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def detection_features(zones: Sequence[dict], scores: Sequence[float], threshold: float, provenance: Mapping,
                       model_id: str, cfg_hash: str) -> tuple[list[dict], list[dict]]:
    """(all scored candidate features, mining features) with area, bbox and provenance."""
    scored, mining = [], []
    for zone, score in zip(zones, scores):
        geom = zone["geometry"]
        label = "mining" if score >= threshold else "not_mining"
        props = {
            "zone_id": zone["zone_id"],
            "score": round(float(score), 4),
            "label": label,
            "threshold": round(float(threshold), 4),
            "area_ha": round(geodesic_area_ha(geom), 3),
            "bbox": [round(v, 6) for v in geom.bounds],
            "scene_ids": list(provenance.get("scene_ids", [])),
            "dates": list(provenance.get("dates", [])),
            "model_id": model_id,
            "config_hash": cfg_hash,
        }
        f = feature(geom, props)
        scored.append(f)
        if label == "mining":
            mining.append(f)
    return scored, mining


def write_features(path: str | Path, features: list[dict], metadata: Mapping) -> None:
    write_geojson(path, feature_collection(features), metadata)
