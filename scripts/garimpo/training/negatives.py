"""Negative-class sampling: random points in protected forest, away from mines and towns."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import box
from shapely.ops import unary_union

from garimpo.errors import EmptyRegionError
from garimpo.geo.geojson import chord_for_distance, unit_vectors

log = logging.getLogger(__name__)

# Random negatives' ids are RANDOM_PREFIX-NNNNN: no hard-negatives file may take this source label.
RANDOM_PREFIX = "neg"


def sampling_area(protected: Sequence, bounds: Sequence[float], urban: Sequence = ()):
    """Protected polygons clipped to the study bounds, minus the urban mask (shapely geometries, lon/lat).

    Raises:
        EmptyRegionError: nothing is left once clipped and the urban mask removed.
    """
    area = unary_union(list(protected)).intersection(box(*bounds)) if protected else box(*bounds)
    if urban:
        area = area.difference(unary_union(list(urban)))
    if area.is_empty:
        raise EmptyRegionError(
            f"no protected area left inside the study bounds {list(bounds)} after removing the urban mask; "
            "check negatives.protected_areas and study_bounds"
        )
    return area


def sample_negative_points(
    n: int,
    area,
    mines_lon: np.ndarray,
    mines_lat: np.ndarray,
    min_distance_m: float,
    seed: int = 0,
    max_draws: int = 2_000_000,
) -> pd.DataFrame:
    """``n`` points uniform by area inside ``area`` (lon/lat), at least ``min_distance_m`` from every mine.

    Uniform by area on the sphere: longitude uniform, sin(latitude) uniform, inside the area's bbox.
    Returns ``DataFrame[lon, lat]`` of ``n`` rows.

    Raises:
        EmptyRegionError: ``max_draws`` draws did not give ``n`` points (the area is too small or too close
            to the mines for ``min_distance_m``).
    """
    rng = np.random.default_rng(seed)
    w, s, e, nth = area.bounds
    tree = cKDTree(unit_vectors(np.asarray(mines_lon), np.asarray(mines_lat))) if len(mines_lon) else None
    chord = chord_for_distance(min_distance_m)
    shapely.prepare(area)
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []
    drawn = 0
    while sum(map(len, lons)) < n and drawn < max_draws:
        batch = max(1024, 4 * n)
        lon = rng.uniform(w, e, batch)
        lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(s)), np.sin(np.radians(nth)), batch)))
        drawn += batch
        ok = shapely.contains_xy(area, lon, lat)
        if tree is not None and ok.any():
            dist, _ = tree.query(unit_vectors(lon[ok], lat[ok]), k=1)
            far = np.zeros_like(ok)
            far[np.flatnonzero(ok)] = dist >= chord
            ok = far
        lons.append(lon[ok])
        lats.append(lat[ok])
    lon, lat = np.concatenate(lons)[:n], np.concatenate(lats)[:n]
    if len(lon) < n:
        raise EmptyRegionError(
            f"found only {len(lon)} of {n} negative points after {drawn} draws: the protected area is too small "
            f"or too close to known mines (min distance {min_distance_m} m); lower negatives.min_distance_m"
        )
    return pd.DataFrame(
        {
            "point_id": [f"{RANDOM_PREFIX}-{i:05d}" for i in range(n)],
            "lon": lon,
            "lat": lat,
            "source": "random_protected",
            "name": "",
        }
    )
