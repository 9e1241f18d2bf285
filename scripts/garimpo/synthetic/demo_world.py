"""Offline demo world: a synthetic Sentinel-2 L2A-like scene set over a Tapajós garimpo area.

The machine that runs the demo cannot reach an imagery service, so this module builds a small
world (forest, rivers with sandbars, garimpo mine chains, farms, a town, roads, clouds), renders
two dated scenes per yearly period (``SCENES``, 2021-2024) as single-band COGs with Planetary Computer
asset keys, and publishes them as a self-contained static STAC catalog. The workflow reads it through
the same STAC code path as real imagery. Ground truth (mines per period, new mining per period,
protected areas, regions, hard negatives) is written as RFC 7946 GeoJSON / CSV.

Mining changes over time in the demo (east) half only: some mines exist from the first period, some
appear later, some grow along their stream; both cloudy 2023 scenes hide the same few old mines
completely, so the 2023 composite never sees them. Training-area (west) mines are the same in every scene.

Geometry is built in UTM metres (EPSG:32721) on a 10 m grid; 20 m bands are 2x2 block means of
a 10 m field, as the real sensor integrates over a larger footprint. Everything is derived from
named sub-generators of ``seed`` so the output is deterministic.
"""

from __future__ import annotations

import csv
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.io import MemoryFile
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.geometry.polygon import orient
from shapely.ops import unary_union
from shapely.prepared import prep

from garimpo.atomic import atomic_path
from garimpo.geo.geojson import feature, feature_collection, geodesic_area_ha, write_geojson
from garimpo.geo.raster import Grid
from garimpo.imagery.sensor import SENTINEL2_L2A

log = logging.getLogger(__name__)

EPSG = 32721
CRS = f"EPSG:{EPSG}"
ORIGIN_LONLAT = (-56.45, -6.05)  # upper-left corner, Tapajós garimpo region (Pará)
RES = 10.0
FULL_SIZE_M = (24000.0, 12000.0)  # (x, y) extent at scale 1
SNAP_M = 60.0  # origin and extent on the 60 m grid so 10/20/60 m pixels nest
COLLECTION_ID = "sentinel-2-l2a"
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")  # order of every spectrum vector below
# Band facts come from the sensor profile the imagery code reads real scenes with (garimpo.imagery.sensor).
BAND_RES = {**{b: int(SENTINEL2_L2A.bands[b].resolution_m) for b in BANDS}, SENTINEL2_L2A.mask_band: 20}
_FWHM_TITLE = {  # FWHM (um, ESA's spectral response functions) and Planetary-Computer-like asset title
    "B02": (0.098, "Band 2 - Blue - 10m"),
    "B03": (0.045, "Band 3 - Green - 10m"),
    "B04": (0.038, "Band 4 - Red - 10m"),
    "B08": (0.145, "Band 8 - NIR - 10m"),
    "B11": (0.143, "Band 11 - SWIR (1.6) - 20m"),
    "B12": (0.242, "Band 12 - SWIR (2.2) - 20m"),
}
BAND_INFO = {  # common name, centre wavelength (um), FWHM (um), PC-like title
    b: (SENTINEL2_L2A.bands[b].common_names[0], SENTINEL2_L2A.bands[b].wavelength_um, *_FWHM_TITLE[b]) for b in BANDS
}
BASELINE_OFFSET_DN = int(-SENTINEL2_L2A.offset_dn)  # processing baseline >= 04.00 (from 2022-01-25) adds +1000 DN
DN_PER_REFLECTANCE = round(1 / SENTINEL2_L2A.dn_scale)  # 10000 (BOA_QUANTIFICATION_VALUE)
SCL_VALID = (0, 3, 4, 5, 6, 8, 9)  # codes written here (0 = nodata, unused: the world has no gaps)

# Surface reflectance, band order BANDS. Typical Amazon L2A values.
SPECTRA = {
    "forest": (0.020, 0.045, 0.025, 0.300, 0.140, 0.060),
    "water": (0.030, 0.036, 0.024, 0.020, 0.010, 0.008),  # clear, dark (Tapajós "clear water")
    "sandbar": (0.120, 0.150, 0.180, 0.230, 0.300, 0.240),  # whiter than mine sediment, same ballpark
    "pond": (0.060, 0.090, 0.110, 0.070, 0.040, 0.030),  # turbid ochre mine pond
    "sediment": (0.100, 0.130, 0.170, 0.220, 0.300, 0.240),  # bare tailings
    "fringe": (0.045, 0.075, 0.075, 0.240, 0.220, 0.120),  # fresh clearing, felled trees, shrubs
    "pasture": (0.035, 0.065, 0.050, 0.250, 0.220, 0.120),
    "bare": (0.080, 0.100, 0.120, 0.180, 0.280, 0.220),  # ploughed field
    "farm_pond": (0.040, 0.060, 0.045, 0.035, 0.015, 0.010),  # clear-ish, greenish water
    "road": (0.080, 0.110, 0.140, 0.200, 0.270, 0.220),  # unpaved laterite
    "roof": (0.090, 0.110, 0.135, 0.200, 0.250, 0.220),  # ceramic / fibre-cement
    "metal_roof": (0.200, 0.220, 0.230, 0.270, 0.280, 0.260),
    "yard": (0.030, 0.060, 0.045, 0.280, 0.180, 0.090),
    "cloud": (0.400, 0.390, 0.380, 0.420, 0.300, 0.200),
}
SPEC = {k: np.asarray(v, np.float32) for k, v in SPECTRA.items()}

# Internal land-cover codes (10 m) and the SCL class each one maps to.
LC = {
    "forest": 1,
    "water": 2,
    "sandbar": 3,
    "pond": 4,
    "sediment": 5,
    "fringe": 6,
    "pasture": 7,
    "bare": 8,
    "farm_pond": 9,
    "road": 10,
    "town": 11,
}
LC_TO_SCL = {1: 4, 2: 6, 3: 5, 4: 6, 5: 5, 6: 4, 7: 4, 8: 5, 9: 6, 10: 5, 11: 5}


@dataclass(frozen=True)
class Scene:
    """One acquisition: date, platform, processing baseline, target cloud fraction, look."""

    datetime: str
    platform: str
    baseline: str
    cloud_target: float  # percent
    generated: str  # processing time in the product id
    sun_azimuth: float
    sun_elevation: float

    @property
    def year(self) -> int:
        """Acquisition year."""
        return int(self.datetime[:4])

    @property
    def cloudy(self) -> bool:
        """A cloudy acquisition (target >= 20 %): nothing is kept clear in it on purpose."""
        return self.cloud_target >= 20.0

    @property
    def has_offset(self) -> bool:
        """Whether DNs carry the +1000 offset (processing baseline >= 04.00, ``BASELINE_OFFSET_DN``)."""
        return float(self.baseline) >= 4.0

    def item_id(self, tile: str) -> str:
        """The product id a Sentinel-2 L2A item of this acquisition over MGRS ``tile`` would have."""
        d = datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))
        unit = "S2A" if self.platform.endswith("2A") else "S2B"
        return f"{unit}_MSIL2A_{d:%Y%m%dT%H%M%S}_R067_T{tile}_{self.generated}"


# Two dry-season scenes per yearly period (a yearly composite is the median of its period's scenes, as
# with real imagery). Dates follow relative orbit 67's 10-day repeat per unit, S2A and S2B 5 days apart
# (15 days within 2021), alternating A/B; 2021 predates baseline 04.00 (no DN offset), 2023 is the cloudy
# year (both scenes hide the same old mines). Scenes of a period share the surface; look, noise, clouds differ.
SCENES = (
    Scene("2021-07-26T14:00:51.024000Z", "Sentinel-2A", "03.01", 4.0, "20210726T185407", 50.0, 53.0),
    Scene("2021-08-10T14:00:49.024000Z", "Sentinel-2B", "03.01", 5.0, "20210811T021533", 52.0, 55.0),
    Scene("2022-07-31T14:00:51.024000Z", "Sentinel-2A", "04.00", 6.0, "20220731T195214", 47.0, 53.0),
    Scene("2022-08-05T14:00:49.024000Z", "Sentinel-2B", "04.00", 5.0, "20220805T171532", 49.0, 54.0),
    Scene("2023-07-16T14:00:51.024000Z", "Sentinel-2A", "05.09", 52.0, "20230716T204102", 47.0, 52.0),
    Scene("2023-07-21T14:00:49.024000Z", "Sentinel-2B", "05.09", 55.0, "20230721T183516", 49.0, 53.0),
    Scene("2024-08-09T14:00:51.024000Z", "Sentinel-2A", "05.10", 8.0, "20240809T190832", 56.0, 57.0),
    Scene("2024-08-14T14:00:49.024000Z", "Sentinel-2B", "05.10", 6.0, "20240814T172118", 58.0, 58.0),
)
PERIODS = tuple(dict.fromkeys(str(sc.year) for sc in SCENES))  # yearly periods, in order
SCENES_BY_PERIOD = {p: tuple(sc for sc in SCENES if str(sc.year) == p) for p in PERIODS}
CHANGE_YEARS = (2022, 2024)  # demo-area mines appear or grow only in these (clear) years
CLOUDY_YEAR = next(sc.year for sc in SCENES if sc.cloudy)  # hides a few old demo mines completely


# --------------------------------------------------------------------------- grid & helpers


# The world's grid is a ``garimpo.geo.raster.Grid`` (north-up, square pixels); these read it in the world's terms.


def size_m(grid: Grid) -> tuple[float, float]:
    """(east-west, north-south) extent of ``grid`` in metres."""
    return (grid.width * grid.resolution, grid.height * grid.resolution)


def frac_xy(grid: Grid, fx: float, fy: float) -> np.ndarray:
    """UTM point [x, y] (m) at a fraction of the extent (``fx`` east from the left, ``fy`` south from the top;
    values outside [0, 1] lie outside the grid)."""
    left, _, _, top = grid.bounds
    return np.array([left + fx * grid.width * grid.resolution, top - fy * grid.height * grid.resolution])


def frac_box(grid: Grid, fx0: float, fy0: float, fx1: float, fy1: float) -> Polygon:
    """The box between two points given as fractions of the extent (see :func:`frac_xy`)."""
    a, b = frac_xy(grid, fx0, fy0), frac_xy(grid, fx1, fy1)
    return box(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))


def rowcol(grid: Grid, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 (row, col) of the pixels holding points ``pts`` [..., 2] (x, y in m); may fall outside the grid."""
    pts = np.asarray(pts)
    left, _, _, top = grid.bounds
    col = np.floor((pts[..., 0] - left) / grid.resolution).astype(np.int64)
    row = np.floor((top - pts[..., 1]) / grid.resolution).astype(np.int64)
    return row, col


def pixel_window(grid: Grid, geom_bounds, pad_m: float = 0.0) -> tuple[slice, slice]:
    """(rows, cols) slices of the pixels covering ``geom_bounds`` (minx, miny, maxx, maxy; m) padded by
    ``pad_m`` metres, clipped to the grid (empty slices when outside it)."""
    minx, miny, maxx, maxy = geom_bounds
    left, _, _, top = grid.bounds
    res = grid.resolution
    c0 = max(0, int(math.floor((minx - pad_m - left) / res)))
    c1 = min(grid.width, int(math.ceil((maxx + pad_m - left) / res)))
    r0 = max(0, int(math.floor((top - maxy - pad_m) / res)))
    r1 = min(grid.height, int(math.ceil((top - miny + pad_m) / res)))
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def centres(grid: Grid, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """(easting, northing) float64 [rows, cols] of the pixel centres of window ``win`` (m)."""
    left, _, _, top = grid.bounds
    rows = np.arange(win[0].start, win[0].stop)
    cols = np.arange(win[1].start, win[1].stop)
    e = left + (cols + 0.5) * grid.resolution
    n = top - (rows + 0.5) * grid.resolution
    return np.meshgrid(e, n)


def transform_at(grid: Grid, res: float) -> Affine:
    """The grid's transform at another pixel size ``res`` (m), same upper-left corner (20 m and 60 m bands)."""
    left, _, _, top = grid.bounds
    return Affine(res, 0, left, 0, -res, top)


def rasterize(grid: Grid, geoms, win: tuple[slice, slice] | None = None) -> np.ndarray:
    """Boolean mask [rows, cols] of pixel centres inside ``geoms`` (one geometry or a list; whole grid or a
    window)."""
    if win is None:
        shape, tr = (grid.height, grid.width), grid.transform
    else:
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        tr = grid.transform @ Affine.translation(win[1].start, win[0].start)
    geoms = [g for g in (geoms if isinstance(geoms, (list, tuple)) else [geoms]) if not g.is_empty]
    if not geoms or 0 in shape:
        return np.zeros(shape, bool)
    return rasterio.features.rasterize([(g, 1) for g in geoms], out_shape=shape, transform=tr, dtype="uint8").astype(
        bool
    )


def make_grid(scale: float = 1.0) -> Grid:
    """World grid: upper-left near ORIGIN_LONLAT snapped to 60 m, 24 x 12 km times ``scale``."""
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*ORIGIN_LONLAT)
    x0 = round(x / SNAP_M) * SNAP_M
    y0 = round(y / SNAP_M) * SNAP_M
    step = int(SNAP_M / RES)  # multiple of 6 px keeps the 20 m and 60 m grids whole
    w = max(step * 20, int(round(FULL_SIZE_M[0] * scale / RES / step)) * step)
    h = max(step * 10, int(round(FULL_SIZE_M[1] * scale / RES / step)) * step)
    return Grid(CRS, Affine(RES, 0, x0, 0, -RES, y0), w, h)


def sub_rng(seed: int, name: str) -> np.random.Generator:
    """Independent generator per component, so changing one part keeps the others stable."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std correlated noise with blobs ~``scale_px`` wide.

    Large scales are filtered on a coarse grid and upsampled bilinearly, which is far cheaper than
    a wide Gaussian at full resolution and looks the same.
    """
    f = max(1, int(scale_px // 3))
    coarse = (shape[0] // f + 3, shape[1] // f + 3)
    n = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), scale_px / f, mode="wrap")
    if f > 1:
        n = ndimage.zoom(n, f, order=1)
    n = n[: shape[0], : shape[1]]
    n -= n.mean()
    n /= n.std() + 1e-12
    return n.astype(np.float32)


def fractal_noise(shape, scales_px, weights, rng) -> np.ndarray:
    """Weighted sum of ``smooth_noise`` at several scales (px), rescaled to ~unit std: float32 ``shape``."""
    out = np.zeros(shape, np.float32)
    for s, w in zip(scales_px, weights):
        out += w * smooth_noise(shape, s, rng)
    return out / (np.sqrt(np.sum(np.square(weights))) + 1e-12)


def resample_line(path: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline at equal arc-length ``step``; returns (points, arc length)."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    s = np.r_[0.0, np.cumsum(seg)]
    ss = np.r_[np.arange(0.0, s[-1], step), s[-1]]
    return np.column_stack([np.interp(ss, s, path[:, 0]), np.interp(ss, s, path[:, 1])]), ss


def meander_path(
    p0, p1, rng: np.random.Generator, amplitude: float, wavelength: float, step: float = 5.0
) -> np.ndarray:
    """A channel-like polyline from p0 to p1 (UTM m) that wanders sideways; ends exactly on p0, p1.

    Lateral offset = a few random sinusoids; their max slope stays ~1 so the line never loops.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = float(np.hypot(*d))
    u = d / length
    nrm = np.array([-u[1], u[0]])
    s = np.linspace(0.0, length, max(int(length / step), 2) + 1)
    off = np.zeros_like(s)
    for k in range(3):
        lam = wavelength * rng.uniform(0.75, 1.25) / (1.0 + 0.9 * k)
        amp = amplitude * rng.uniform(0.7, 1.0) / (1.0 + 1.6 * k)
        off += amp * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))
    ramp = np.clip(np.minimum(s, length - s) / (0.35 * wavelength), 0, 1)
    off *= ramp * ramp * (3 - 2 * ramp)  # smoothstep: the ends sit exactly on p0 and p1
    pts = p0 + s[:, None] * u + off[:, None] * nrm
    return resample_line(pts, step)[0]


def blob_polygon(center, rx: float, ry: float, rng: np.random.Generator, rough: float = 0.15, n: int = 72) -> Polygon:
    """An irregular closed outline (administrative boundary-like) around ``center``."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(a)
    for k in (2, 3, 5, 7):
        r += rough / k**0.6 * np.sin(k * a + rng.uniform(0, 2 * np.pi))
    pts = np.column_stack([center[0] + rx * r * np.cos(a), center[1] + ry * r * np.sin(a)])
    return Polygon(pts).buffer(0)


def curvature(path: np.ndarray, smooth_pts: float) -> np.ndarray:
    """Signed curvature of a polyline after smoothing (positive = bending towards the left normal)."""
    x = ndimage.gaussian_filter1d(path[:, 0], smooth_pts, mode="nearest")
    y = ndimage.gaussian_filter1d(path[:, 1], smooth_pts, mode="nearest")
    dx, dy = np.gradient(x), np.gradient(y)
    ddx, ddy = np.gradient(dx), np.gradient(dy)
    return (dx * ddy - dy * ddx) / np.maximum((dx * dx + dy * dy) ** 1.5, 1e-12)


def normals(path: np.ndarray) -> np.ndarray:
    """Unit left-hand normals (n, 2) of a polyline (n, 2), from its central-difference tangents."""
    t = np.gradient(path, axis=0)
    t /= np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-12)[:, None]
    return np.column_stack([-t[:, 1], t[:, 0]])


def paint(refl: np.ndarray, lc: np.ndarray | None, rows, cols, alpha, spectrum, code: int | None, tex=None) -> None:
    """Alpha-blend ``spectrum`` (6,) or (6, n) into ``refl`` at the given pixels; set land cover where
    the new cover dominates the pixel."""
    alpha = np.broadcast_to(np.asarray(alpha, np.float32), np.shape(rows))
    spec = np.asarray(spectrum, np.float32)
    if spec.ndim == 1:
        spec = spec[:, None]
    if tex is not None:
        spec = spec * tex
    refl[:, rows, cols] = refl[:, rows, cols] * (1 - alpha) + alpha * spec
    if lc is not None and code is not None:
        dom = alpha >= 0.5
        lc[rows[dom], cols[dom]] = code


def line_alpha(grid: Grid, lines: list[tuple[np.ndarray, np.ndarray]]):
    """Rasterize polylines with a per-vertex half-width (m) as fractional cover (anti-aliased).

    Returns (alpha, line_id, vertex_index); ids are -1 away from every line. One distance transform
    for all lines: each pixel takes the width of its nearest centreline pixel.
    """
    seed = np.full((grid.height, grid.width), -1, np.int64)
    ids: list[np.ndarray] = []
    idxs: list[np.ndarray] = []
    hws: list[np.ndarray] = []
    base = 0
    for k, (pts, hw) in enumerate(lines):
        dense, _ = resample_line(pts, grid.resolution * 0.4)
        # vertex index of each dense point (nearest original vertex along the line)
        j = np.clip(np.round(np.linspace(0, len(pts) - 1, len(dense))).astype(np.int64), 0, len(pts) - 1)
        r, c = rowcol(grid, dense)
        ok = (r >= 0) & (r < grid.height) & (c >= 0) & (c < grid.width)
        seed[r[ok], c[ok]] = base + j[ok]
        ids.append(np.full(len(pts), k))
        idxs.append(np.arange(len(pts)))
        hws.append(np.asarray(hw, float))
        base += len(pts)
    if base == 0:
        z = np.zeros((grid.height, grid.width), np.float32)
        return z, np.full((grid.height, grid.width), -1, np.int32), np.full((grid.height, grid.width), -1, np.int32)
    all_ids, all_idxs, all_hws = np.concatenate(ids), np.concatenate(idxs), np.concatenate(hws)
    dist, (ri, ci) = ndimage.distance_transform_edt(seed < 0, return_indices=True)
    g = seed[ri, ci]
    del ri, ci
    alpha = np.clip((all_hws[g] - dist * grid.resolution) / grid.resolution + 0.5, 0, 1).astype(np.float32)
    near = alpha > 0
    line_id = np.where(near, all_ids[g], -1).astype(np.int32)
    vert = np.where(near, all_idxs[g], -1).astype(np.int32)
    return alpha, line_id, vert


# --------------------------------------------------------------------------- world layers


@dataclass
class Line:
    """A river, stream or road: centreline and half width per vertex (UTM m)."""

    name: str
    path: np.ndarray  # (n, 2) UTM metres, 5 m steps, flowing/ordered from start to end
    hw: np.ndarray  # half width per vertex (m)
    kind: str  # river | stream | road

    @property
    def arc(self) -> np.ndarray:
        """Arc length (m) at each vertex, from 0."""
        return np.r_[0.0, np.cumsum(np.hypot(*np.diff(self.path, axis=0).T))]

    @property
    def geom(self) -> LineString:
        """The centreline as a shapely LineString (UTM m)."""
        return LineString(self.path)


def make_rivers(grid: Grid, rng: np.random.Generator) -> list[Line]:
    """Two large meandering rivers: A crosses the whole world west->east, B joins it from the north."""
    wm, hm = size_m(grid)
    a_path = meander_path(
        frac_xy(grid, -0.02, 0.56), frac_xy(grid, 1.02, 0.74), rng, amplitude=0.05 * hm, wavelength=0.19 * wm
    )
    a_hw = 75.0 * (1 + 0.12 * smooth_noise((1, len(a_path)), 60, rng)[0])
    # B enters from the north edge in the training half and ends on A's centreline
    a_tree = cKDTree(a_path)
    target = frac_xy(grid, 0.19, 0.6)
    j = a_tree.query(target)[1]
    b_path = meander_path(frac_xy(grid, 0.125, -0.02), a_path[j], rng, amplitude=0.035 * hm, wavelength=0.12 * wm)
    b_hw = np.linspace(32.0, 42.0, len(b_path))
    return [Line("river_A", a_path, a_hw, "river"), Line("river_B", b_path, b_hw, "river")]


def make_streams(
    grid: Grid, rivers: list[Line], keep_out, rng: np.random.Generator, min_len: float = 900.0, spacing: float = 500.0
) -> list[Line]:
    """Tributaries (igarapés) from random sources to the nearest point of a big river.

    Streams keep ``spacing`` from each other (except near the mouth), stay away from the other
    river and from ``keep_out`` (control area, town). Long streams are laid first.
    """
    wm, hm = size_m(grid)
    riv_pts = np.concatenate([r.path for r in rivers])
    riv_hw = np.concatenate([r.hw for r in rivers])
    tree = cKDTree(riv_pts)
    n_cand = int(300 * wm * hm / 1e8) + 100
    cand = np.column_stack(
        [
            grid.transform.c + rng.uniform(0.01, 0.99, n_cand) * wm,
            grid.transform.f - rng.uniform(0.01, 0.99, n_cand) * hm,
        ]
    )
    d, j = tree.query(cand)
    order = np.argsort(-(d * rng.uniform(0.7, 1.0, n_cand)))  # long first, with some shuffle
    keep_out = prep(keep_out) if keep_out is not None else None
    streams: list[Line] = []
    stream_tree = None
    stream_pts = np.empty((0, 2))
    for k in order:
        if d[k] < min_len or d[k] > 0.6 * hm:
            continue
        src, mouth = cand[k], riv_pts[j[k]]
        if keep_out is not None and keep_out.intersects(Point(src).buffer(300)):
            continue
        path = meander_path(src, mouth, rng, amplitude=rng.uniform(90, 170), wavelength=rng.uniform(800, 1300))
        arc = np.r_[0.0, np.cumsum(np.hypot(*np.diff(path, axis=0).T))]
        upstream = path[arc < arc[-1] - 500.0]  # the last 500 m may converge on the river/others
        if keep_out is not None and keep_out.intersects(LineString(path)):
            continue
        dd, jj = tree.query(upstream)
        if np.any(dd < riv_hw[jj] + 150.0):
            continue  # crosses the other river or runs along its own one
        if stream_tree is not None and np.any(stream_tree.query(upstream)[0] < spacing):
            continue
        hw = np.linspace(rng.uniform(2.5, 4.0), rng.uniform(6.0, 9.0), len(path))
        streams.append(Line(f"stream_{len(streams) + 1:02d}", path, hw, "stream"))
        stream_pts = np.concatenate([stream_pts, path])
        stream_tree = cKDTree(stream_pts)
    return streams


def make_town(grid: Grid, river: Line, rng: np.random.Generator, cell: float = 100.0):
    """A ~1 km2 grid town on the north side of river A, straddling the train/demo boundary.

    Returns (outline polygon, list of block polygons). Cells are street + block: the street is one
    10 m pixel on each cell's west and north side.
    """
    nx, ny = 11, 10
    cx = grid.transform.c + 0.5 * size_m(grid)[0]
    left = round((cx - nx * cell / 2) / RES) * RES
    near = np.abs(river.path[:, 0] - cx) < nx * cell / 2 + 300
    south = float(np.max(river.path[near, 1] + river.hw[near])) + 250.0
    south = math.ceil(south / RES) * RES
    cells = np.ones((ny, nx), bool)
    for cy, cxx in ((0, 0), (0, nx - 1), (ny - 1, 0), (ny - 1, nx - 1)):  # ragged corners
        k = rng.integers(1, 4)
        for _ in range(k):
            i = int(np.clip(cy + (rng.integers(0, 3) if cy == 0 else -rng.integers(0, 3)), 0, ny - 1))
            j = int(np.clip(cxx + (rng.integers(0, 3) if cxx == 0 else -rng.integers(0, 3)), 0, nx - 1))
            cells[i, j] = False
    boxes, blocks = [], []
    for i in range(ny):
        for j in range(nx):
            if not cells[i, j]:
                continue
            x0, y1 = left + j * cell, south + (ny - i) * cell
            boxes.append(box(x0, y1 - cell, x0 + cell, y1))
            blocks.append(box(x0 + RES, y1 - cell, x0 + cell, y1 - RES))
    outline = unary_union(boxes)
    if outline.geom_type != "Polygon":
        outline = max(outline.geoms, key=lambda g: g.area)
    return Polygon(outline.exterior), blocks


def make_roads(grid: Grid, town: Polygon, rng: np.random.Generator) -> list[Line]:
    """Unpaved roads: one from the north edge to the town (train half), one from the town to the
    east edge south of the control area (demo half), one spur westwards for farms."""
    tminx, tminy, tmaxx, tmaxy = town.bounds
    nw = np.array([tminx + 5, tmaxy - 5])
    e = np.array([tmaxx - 5, (tminy + tmaxy) / 2])
    w = np.array([tminx + 5, (tminy + tmaxy) / 2 - 105])

    def road(points, name):
        parts = [meander_path(a, b, rng, amplitude=40.0, wavelength=1500.0) for a, b in zip(points[:-1], points[1:])]
        path = np.concatenate([parts[0]] + [p[1:] for p in parts[1:]])
        return Line(name, path, np.full(len(path), 5.0), "road")

    r1 = road([frac_xy(grid, 0.27, -0.01), frac_xy(grid, 0.33, 0.28), nw], "road_1")
    r2 = road([e, frac_xy(grid, 0.72, 0.49), frac_xy(grid, 1.01, 0.52)], "road_2")
    r3 = road([w, frac_xy(grid, 0.36, 0.42), frac_xy(grid, 0.21, 0.36)], "road_3")
    return [r1, r2, r3]


@dataclass
class Field:
    """A farm field or pond (a look-alike of mining): polygon (UTM m), kind and per-band reflectance gain."""

    geom: Polygon
    kind: str  # pasture | bare | farm_pond
    gain: np.ndarray  # per-band multiplier: each field has its own condition


def _rect(p, t, nrm, along0, along1, off0, off1) -> Polygon:
    return Polygon(
        [
            p + t * along0 + nrm * off0,
            p + t * along1 + nrm * off0,
            p + t * along1 + nrm * off1,
            p + t * along0 + nrm * off1,
        ]
    )


def make_farms(grid: Grid, roads: list[Line], forbidden, rng: np.random.Generator) -> list[Field]:
    """Rectangular fields in rows along the roads (pasture, some ploughed), a few with ponds, and
    small fish-pond clusters. ``forbidden`` = rivers, streams, town, protected areas, control."""
    inner = box(*grid.bounds).buffer(-150)
    forbidden = prep(forbidden)
    fields: list[Field] = []
    taken: list[Polygon] = []
    n_ponds = 0

    def ok(g):
        return inner.contains(g) and not forbidden.intersects(g) and not any(g.distance(t) < 15 for t in taken)

    for rd in roads:
        arc = rd.arc
        nrm = normals(rd.path)
        s = rng.uniform(150, 300)
        while s < arc[-1] - 150:
            i = int(np.searchsorted(arc, s))
            p, n = rd.path[i], nrm[i]
            t = np.array([n[1], -n[0]])
            along = rng.uniform(200, 450)
            for side in (1, -1):
                off0 = rng.uniform(20, 40)
                for _row in range(int(rng.integers(1, 3))):  # one or two rows deep
                    depth = rng.uniform(200, 450)
                    g = _rect(p, t, n * side, -along / 2, along / 2, off0, off0 + depth)
                    if not ok(g):
                        break
                    kind = "bare" if rng.random() < 0.25 else "pasture"
                    fields.append(Field(g, kind, rng.normal(1.0, 0.06, 6).astype(np.float32)))
                    taken.append(g)
                    if kind == "pasture" and n_ponds < 8 and rng.random() < 0.3:
                        # a farm/fish pond: one rectangle or a row of 2-4 with dikes in between
                        k = int(rng.integers(1, 5))
                        pw, pd = rng.uniform(40, 90), rng.uniform(40, 110)
                        a0 = -along / 2 + rng.uniform(30, max(31, along - k * (pw + 15) - 30))
                        d0 = off0 + rng.uniform(30, max(31, depth - pd - 30))
                        for m in range(k):
                            a = a0 + m * (pw + 15)
                            if a + pw > along / 2 - 20:
                                break
                            pg = _rect(p, t, n * side, a, a + pw, d0, d0 + pd)
                            fields.append(Field(pg, "farm_pond", rng.normal(1.0, 0.05, 6).astype(np.float32)))
                        n_ponds += 1
                    off0 += depth + rng.uniform(15, 30)
            s += along + rng.uniform(20, 200)
    # ponds are look-alikes the demo needs on both sides of the train/demo boundary
    xmid = grid.transform.c + size_m(grid)[0] / 2
    for west in (True, False):
        half = [f for f in fields if (f.geom.centroid.x < xmid) == west]
        pastures = [f for f in half if f.kind == "pasture"]
        if pastures and not any(f.kind == "farm_pond" for f in half):
            big = max(pastures, key=lambda f: f.geom.area)
            shrink = 75.0 / math.sqrt(big.geom.area)  # a ~75 m square pond in the middle of the field
            pond = shapely.affinity.scale(big.geom, shrink, shrink, origin="centroid")
            fields.append(Field(pond, "farm_pond", rng.normal(1.0, 0.05, 6).astype(np.float32)))
    return fields


def find_sandbars(
    grid: Grid, river: Line, rng: np.random.Generator, avoid, per_half: int = 2, extra: int = 1
) -> list[dict]:
    """Point bars on the inner side of the sharpest bends of ``river``; at least one per half of the
    world when a bend exists there. Returns dicts with apex index, side and size."""
    kap = curvature(river.path, smooth_pts=20)
    arc = river.arc
    xmid = grid.transform.c + size_m(grid)[0] / 2
    inner = box(*grid.bounds).buffer(-400)
    avoid = prep(avoid) if avoid is not None else None
    peaks = [
        i
        for i in range(1, len(kap) - 1)
        if abs(kap[i]) >= abs(kap[i - 1]) and abs(kap[i]) >= abs(kap[i + 1]) and abs(kap[i]) > 1 / 3000
    ]
    peaks = [
        i
        for i in peaks
        if inner.contains(Point(river.path[i]))
        and (avoid is None or not avoid.intersects(Point(river.path[i]).buffer(500)))
    ]
    peaks.sort(key=lambda i: -abs(kap[i]))
    chosen: list[int] = []

    def spaced(i):
        return all(abs(arc[i] - arc[c]) > 1200 for c in chosen)

    for half in (0, 1):
        n = 0
        for i in peaks:
            if n >= per_half:
                break
            if (river.path[i, 0] < xmid) == (half == 0) and abs(river.path[i, 0] - xmid) > 500 and spaced(i):
                chosen.append(i)
                n += 1
    for i in peaks:
        if len(chosen) >= 2 * per_half + extra:
            break
        if spaced(i):
            chosen.append(i)
    return [
        dict(
            apex=i,
            side=float(np.sign(kap[i])),
            half_len=rng.uniform(220, 420),
            reach=rng.uniform(0.35, 0.6),
            bank=rng.uniform(25, 45),
        )
        for i in chosen
    ]


def sandbar_mask(grid: Grid, river: Line, bar: dict) -> tuple[tuple[slice, slice], np.ndarray]:
    """Lens-shaped bar on the inner bank: reaches ``reach`` of the channel width into the water at
    the apex plus a strip of bright sandy bank, thinning to nothing ``half_len`` up/downstream."""
    i = bar["apex"]
    arc = river.arc
    sel = np.abs(arc - arc[i]) <= bar["half_len"] + 50
    pts = river.path[sel]
    win = pixel_window(grid, LineString(pts).bounds, pad_m=float(river.hw.max()) + 100)
    e, n = centres(grid, win)
    tree = cKDTree(pts)
    d, j = tree.query(np.column_stack([e.ravel(), n.ravel()]))
    nrm = normals(river.path)[sel][j]
    rel = np.column_stack([e.ravel(), n.ravel()]) - pts[j]
    lateral = (rel * nrm).sum(1) * bar["side"]  # positive towards the inner side of the bend
    ds = arc[sel][j] - arc[i]
    hw = river.hw[sel][j]
    shape_f = np.clip(1 - (ds / bar["half_len"]) ** 2, 0, 1)
    into_water = bar["reach"] * 2 * hw * shape_f
    mask = (lateral >= hw - into_water) & (lateral <= hw + bar["bank"] * shape_f) & (shape_f > 0.05)
    return win, mask.reshape(e.shape)


@dataclass
class Extension:
    """Ground a mine adds in ``year`` by continuing its chain along the stream. Masks (window ``win``) hold
    only the new ground; ``footprint`` is the whole mine after the growth, ``piece`` the new ground
    (``footprint`` minus the footprint before), both UTM."""

    year: int
    direction: str  # up | down (stream)
    win: tuple[slice, slice]
    ponds: np.ndarray
    sediment: np.ndarray
    fringe: np.ndarray
    turbidity: np.ndarray
    plume: tuple | None  # replaces the mine's plume from ``year`` on (a downstream growth moves it)
    footprint: Polygon
    piece: Polygon


@dataclass
class Mine:
    """A planted garimpo mine: its pixels (in window ``win`` of the grid), plume and footprint polygon as
    first seen, and the extensions it grows later."""

    mine_id: str
    area: str  # train | demo
    first_seen: int
    stream: int
    centre: np.ndarray  # UTM
    win: tuple[slice, slice]
    ponds: np.ndarray  # bool, window
    sediment: np.ndarray  # bool, window (excludes ponds)
    fringe: np.ndarray  # bool, window (excludes the two above)
    turbidity: np.ndarray  # float, window: per-pond colour factor
    plume: tuple  # (rows, cols, water fraction) of the stream pixels downstream
    footprint: Polygon  # UTM: ponds + sediment when first seen
    span: tuple[float, float] = (0.0, 0.0)  # mined stretch of the stream (arc length, m), grows with it
    reach_end: float = 0.0  # arc length (m) where the plume ends
    extensions: list[Extension] = field(default_factory=list)

    def exists(self, year: int) -> bool:
        """Whether the mine is there in ``year``'s scene."""
        return self.first_seen <= year

    def footprint_at(self, year: int) -> Polygon:
        """Footprint (UTM) in ``year``: the first one plus every extension grown by then (never shrinks)."""
        fp = self.footprint
        for e in self.extensions:
            if e.year <= year:
                fp = e.footprint
        return fp

    @property
    def latest_footprint(self) -> Polygon:
        """Footprint (UTM) after every extension."""
        return self.extensions[-1].footprint if self.extensions else self.footprint

    def plume_at(self, year: int) -> tuple:
        """Plume pixels in ``year`` (a downstream extension moves the plume down)."""
        pl = self.plume
        for e in self.extensions:
            if e.year <= year and e.plume is not None:
                pl = e.plume
        return pl


def build_mine(
    grid: Grid, stream: Line, s_centre: float, rng: np.random.Generator, seg_len: float | None = None
) -> dict:
    """One garimpo: a chain of 3-10 turbid ponds along a stream segment (``seg_len`` m, random 110-560 m
    when None) centred at arc length ``s_centre``, bare sediment around them, a deforested fringe.
    Rasterised on a local window."""
    arc = stream.arc
    if seg_len is None:
        seg_len = rng.uniform(110, 560)
    sel = np.abs(arc - s_centre) <= seg_len / 2
    seg = stream.path[sel]
    nrm = normals(stream.path)[sel]
    n_ponds = int(np.clip(round(seg_len / rng.uniform(55, 75)), 3, 10))
    d_sed = rng.uniform(15, 45)
    d_fringe = rng.uniform(20, 50)
    win = pixel_window(grid, LineString(seg).bounds, pad_m=d_sed + d_fringe + 90)
    e, n = centres(grid, win)
    shape = e.shape
    ponds = np.zeros(shape, bool)
    turb = np.ones(shape, np.float32)
    pos = (np.arange(n_ponds) + 0.5) / n_ponds * (len(seg) - 1)
    for p in pos:
        q = int(np.clip(round(p + rng.uniform(-0.25, 0.25) * len(seg) / n_ponds), 0, len(seg) - 1))
        a, b = rng.uniform(18, 45), rng.uniform(14, 32)
        c = seg[q] + nrm[q] * rng.uniform(-0.6, 0.6) * b
        t = np.array([nrm[q, 1], -nrm[q, 0]])
        ang = math.atan2(t[1], t[0]) + rng.uniform(-0.5, 0.5)
        dx, dy = e - c[0], n - c[1]
        u = dx * math.cos(ang) + dy * math.sin(ang)
        v = -dx * math.sin(ang) + dy * math.cos(ang)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1
        ponds |= m
        turb[m] = rng.uniform(0.85, 1.2)  # ponds differ in suspended load
    core = ponds.copy()
    r, cc = rowcol(grid, resample_line(seg, RES * 0.4)[0])
    r, cc = r - win[0].start, cc - win[1].start
    ok = (r >= 0) & (r < shape[0]) & (cc >= 0) & (cc < shape[1])
    core[r[ok], cc[ok]] = True
    dist = ndimage.distance_transform_edt(~core) * RES
    wobble = smooth_noise(shape, 2.5, rng)
    sediment = (dist <= d_sed * (1 + 0.35 * np.clip(wobble, -1.6, 1.6))) & ~ponds
    # keep only the part connected to the chain (the wobble can leave specks)
    lab, _ = ndimage.label(sediment | ponds, structure=np.ones((3, 3)))
    keep = np.unique(lab[core & (lab > 0)])
    sediment &= np.isin(lab, keep)
    # the truth polygon is this mask's outline: fill enclosed forest and bridge diagonal-only
    # contacts so the outline is one valid ring, and paint those pixels as sediment too
    fp = _solid(sediment | ponds)
    sediment = fp & ~ponds
    fringe_d = ndimage.distance_transform_edt(~fp) * RES
    fringe = (fringe_d <= d_fringe * (1 + 0.4 * smooth_noise(shape, 3.0, rng))) & ~fp
    return dict(
        win=win,
        ponds=ponds,
        sediment=sediment,
        fringe=fringe,
        turbidity=turb,
        seg_len=seg_len,
        s_end=s_centre + seg_len / 2,
    )


def stream_plume(
    grid: Grid, stream: Line, line_idx: int, s_start: float, length: float, lines: tuple
) -> tuple[tuple, float]:
    """Stream pixels ``length`` m downstream of arc length ``s_start`` (turbid water from the mine).

    ``lines`` = (line_id, vertex, cover) from :func:`line_alpha` (cover: water fraction per pixel);
    ``line_idx`` is the stream's index there. Returns ((rows, cols, water fraction), arc where it ends).
    """
    line_id, vert, cover = lines
    arc = stream.arc
    v0 = int(np.searchsorted(arc, s_start))
    v1 = int(np.searchsorted(arc, s_start + length))
    pwin = pixel_window(grid, LineString(stream.path[v0 : v1 + 1]).bounds, pad_m=20)
    sub = (line_id[pwin] == line_idx) & (vert[pwin] >= v0) & (vert[pwin] <= v1)
    pr, pc = np.nonzero(sub)
    pr, pc = pr + pwin[0].start, pc + pwin[1].start
    return (pr, pc, cover[pr, pc]), float(arc[min(v1, len(arc) - 1)])


def _embed(a: np.ndarray, win: tuple[slice, slice], into: tuple[slice, slice], fill=False) -> np.ndarray:
    """Window array ``a`` (at ``win``) placed in the larger window ``into``, ``fill`` elsewhere."""
    out = np.full((into[0].stop - into[0].start, into[1].stop - into[1].start), fill, a.dtype)
    r0, c0 = win[0].start - into[0].start, win[1].start - into[1].start
    out[r0 : r0 + a.shape[0], c0 : c0 + a.shape[1]] = a
    return out


def grow_mine(
    grid: Grid,
    mine: Mine,
    stream: Line,
    year: int,
    direction: str,
    length: float,
    ctx: dict,
    rng: np.random.Generator,
) -> Extension | None:
    """Try to continue ``mine``'s chain of ponds and sediment ``length`` m up- or downstream (``direction``
    "up" | "down") from ``year`` on. The new ground must join the old footprint (one 4-connected patch),
    keep 100 m from other land uses, 300 m from other mines (and clear of their stretch and plume along
    the stream), the control area and the train/demo boundary: ``ctx`` holds ``dist_occ`` (px),
    ``lines`` (see :func:`stream_plume`), ``line_idx``, ``others`` (the other mines), ``inner``,
    ``ctrl`` and ``boundary``. Returns None where it does not fit.
    """
    arc = stream.arc
    s0, s1 = mine.span
    overlap = 40.0  # the new segment starts inside the old one so the chains join
    plume_len = rng.uniform(200, 600) if direction == "down" else 0.0
    if direction == "up":
        a, b = s0 - length, s0 + overlap
        if a < 150.0:
            return None
        lo, hi = a, b
    else:
        a, b = s1 - overlap, s1 + length
        if b + plume_len + 300.0 > arc[-1]:
            return None  # the plume must end before the mouth
        lo, hi = a, b + plume_len
    for o in ctx["others"]:
        if o.stream == mine.stream and lo - 200.0 < o.reach_end and o.span[0] < hi + 200.0:
            return None
    e = build_mine(grid, stream, (a + b) / 2, rng, seg_len=b - a)
    pw, ew = mine.win, e["win"]
    win = (
        slice(min(pw[0].start, ew[0].start), max(pw[0].stop, ew[0].stop)),
        slice(min(pw[1].start, ew[1].start), max(pw[1].stop, ew[1].stop)),
    )
    old = _embed(mine.ponds | mine.sediment, pw, win)
    for x in mine.extensions:
        old |= _embed(x.ponds | x.sediment, x.win, win)
    solid = _solid(old | _embed(e["ponds"] | e["sediment"], ew, win))
    new = solid & ~old
    if ndimage.label(solid)[1] != 1 or new.sum() * RES * RES < 1.2e4:
        return None  # a separate patch, or too little new ground for a 160 m detector
    ponds = _embed(e["ponds"], ew, win) & new
    sediment = new & ~ponds
    fringe = _embed(e["fringe"], ew, win) & ~solid
    if np.any(ctx["dist_occ"][win][ponds | sediment | fringe] < 100.0 / RES):
        return None
    fp = footprint_polygon(grid, win, solid)
    if not ctx["inner"].contains(fp) or fp.intersects(ctx["ctrl"]) or fp.intersects(ctx["boundary"]):
        return None
    before = mine.latest_footprint
    piece = fp.difference(before)
    if any(piece.distance(o.latest_footprint) < 300.0 for o in ctx["others"]):
        return None
    plume = None
    if direction == "down":
        plume, reach_end = stream_plume(grid, stream, ctx["line_idx"], b, plume_len, ctx["lines"])
        mine.reach_end = reach_end
    mine.span = (min(s0, a), max(s1, b))
    return Extension(
        year, direction, win, ponds, sediment, fringe, _embed(e["turbidity"], ew, win, 1.0), plume, fp, piece
    )


def _solid(mask: np.ndarray) -> np.ndarray:
    """Fill holes and bridge pixels that touch only at a corner (a pinched, invalid outline)."""
    m = ndimage.binary_fill_holes(mask)
    for _ in range(10):
        a, b, c, d = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]
        d1, d2 = a & d & ~b & ~c, b & c & ~a & ~d
        if not (d1.any() or d2.any()):
            break
        m[:-1, 1:] |= d1
        m[:-1, :-1] |= d2
        m = ndimage.binary_fill_holes(m)
    return m


def footprint_polygon(grid: Grid, win, mask: np.ndarray) -> Polygon:
    """Pixel-exact outline of a window mask (holes filled: a footprint includes what it encloses)."""
    tr = grid.transform @ Affine.translation(win[1].start, win[0].start)
    polys = [
        shapely.geometry.shape(g)
        for g, v in rasterio.features.shapes(mask.astype(np.uint8), mask=mask, transform=tr, connectivity=8)
        if v == 1
    ]
    u = unary_union(polys)
    if u.geom_type != "Polygon":
        u = u.buffer(RES * 0.6, join_style="mitre").buffer(-RES * 0.6, join_style="mitre")
    if u.geom_type != "Polygon":
        u = max(u.geoms, key=lambda g: g.area)
    return Polygon(u.exterior)


def place_mines(
    grid: Grid,
    streams: list[Line],
    dist_occ: np.ndarray,
    control: Polygon,
    ti: Polygon,
    n_train: int,
    n_demo: int,
    rng: np.random.Generator,
    min_sep: float = 800.0,
    max_in_ti: int = 2,
    accept: float = 1.0,
) -> list[dict]:
    """Pick mine sites on streams: >= ``min_sep`` apart, >= 100 m from every other land use,
    clear of the control area, one half each (none straddles the boundary), at most ``max_in_ti``
    inside the indigenous territory (placed first so there is at least one when possible).

    Greedy packing in random order with restarts; if no attempt reaches the counts, the best one
    is kept when it has at least ``accept`` of each (small test worlds are crowded).

    Raises:
        RuntimeError: not even that many fit (another seed is needed).
    """
    xmid = grid.transform.c + size_m(grid)[0] / 2
    ctrl = control.buffer(700)
    ti_p = prep(ti)
    ti_near = prep(ti.buffer(350))
    inner = box(*grid.bounds).buffer(-350)
    boundary = LineString([(xmid, grid.bounds[1]), (xmid, grid.transform.f)])
    cand = []
    for k, st in enumerate(streams):
        arc = st.arc
        for s in np.arange(450.0, arc[-1] - 900.0, 50.0):  # not at the source, plume ends before the mouth
            cand.append((k, s, st.path[int(np.searchsorted(arc, s))]))
    inside = np.array([ti_p.contains(Point(c)) for _, _, c in cand], bool)

    def attempt(order) -> tuple[list[dict], dict]:
        chosen: list[dict] = []
        quota = {"train": n_train, "demo": n_demo}
        n_ti = 0
        for i in [i for i in order if inside[i]] + [i for i in order if not inside[i]]:
            k, s, c = cand[i]
            pt = Point(c)
            area = "train" if c[0] < xmid - 450 else "demo" if c[0] > xmid + 450 else None
            if area is None or quota[area] == 0 or not inner.contains(pt) or ctrl.contains(pt):
                continue
            if inside[i] and (area != "train" or n_ti >= max_in_ti):
                continue
            if not inside[i] and ti_near.contains(pt):
                continue
            if any(np.hypot(*(c - m["centre"])) < min_sep for m in chosen):
                continue
            r, cc = rowcol(grid, c)
            if dist_occ[r, cc] < 100.0 / RES:  # cheap necessary condition before building the mine
                continue
            m = build_mine(grid, streams[k], s, rng)
            disturbed = m["ponds"] | m["sediment"] | m["fringe"]
            if np.any(dist_occ[m["win"]][disturbed] < 100.0 / RES):
                continue
            fp = footprint_polygon(grid, m["win"], m["ponds"] | m["sediment"])
            if fp.intersects(ctrl) or not inner.contains(fp) or fp.intersects(boundary):
                continue
            m.update(
                stream=k,
                s=s,
                centre=np.array([fp.centroid.x, fp.centroid.y]),
                area=area,
                footprint=fp,
                in_ti=bool(inside[i]),
            )
            if any(np.hypot(*(m["centre"] - o["centre"])) < min_sep for o in chosen):
                continue
            chosen.append(m)
            quota[area] -= 1
            n_ti += inside[i]
            if not any(quota.values()):
                break
        return chosen, quota

    # greedy packing in random order; a few restarts make a dense layout reliable
    best: tuple[list[dict], dict] | None = None
    for _ in range(25):
        chosen, quota = attempt(rng.permutation(len(cand)))
        if not any(quota.values()):
            return chosen
        if best is None or sum(quota.values()) < sum(best[1].values()):
            best = (chosen, quota)
    assert best is not None  # the first attempt either returned or set it
    chosen, quota = best
    if n_train - quota["train"] >= accept * n_train and n_demo - quota["demo"] >= accept * n_demo:
        log.warning(
            "demo world: room for %d training and %d demo mines only (wanted %d, %d)",
            n_train - quota["train"],
            n_demo - quota["demo"],
            n_train,
            n_demo,
        )
        return chosen
    raise RuntimeError(
        f"demo world: room for only {n_train - quota['train']} training and "
        f"{n_demo - quota['demo']} demo mines (wanted {n_train}, {n_demo}); try another seed"
    )


def plan_history(
    grid: Grid,
    mines: list[Mine],
    streams: list[Line],
    n_rivers: int,
    ctx: dict,
    scale: float,
    rng: np.random.Generator,
    grow_rng: np.random.Generator,
) -> dict[int, list[str]]:
    """Mining over time, demo-area mines only (training mines stay as built, in every scene).

    At scale 1 (10 demo mines): 2 appear in 2022 and 2 in 2024 (``first_seen``), the rest exist from
    2021; 2 mines grow in 2022 and 3 in 2024 (:func:`grow_mine`, 300-600 m along their stream, at most
    once per mine, only after they appeared), and ``CLOUDY_YEAR``'s scenes hide 2 mines that exist
    by then, preferring ones that do not grow later. Counts scale with the area (``scale`` squared; at
    least one of each). Sets ``first_seen`` and ``extensions`` in place; returns {CLOUDY_YEAR: hidden mine ids}.
    Logs a warning when fewer growths fit than wanted.
    """
    s2 = scale * scale
    demo = [m for m in mines if m.area == "demo"]
    n_new = {CHANGE_YEARS[0]: max(1, round(2 * s2)), CHANGE_YEARS[1]: max(1, round(2 * s2))}
    n_grow = {CHANGE_YEARS[0]: max(1, round(1.5 * s2)), CHANGE_YEARS[1]: max(1, round(3 * s2))}
    order = [demo[i] for i in rng.permutation(len(demo))]
    k = 0
    for year in CHANGE_YEARS:
        for m in order[k : k + min(n_new[year], max(0, len(demo) - 1 - k))]:  # keep >= 1 old mine
            m.first_seen = year
        k += n_new[year]
    for year in CHANGE_YEARS:
        cands = [m for m in demo if m.first_seen < year and not m.extensions]
        got = 0
        for i in rng.permutation(len(cands)):
            if got == n_grow[year]:
                break
            m = cands[int(i)]
            c = {**ctx, "others": [o for o in mines if o is not m], "line_idx": n_rivers + m.stream}
            dirs = ("up", "down") if rng.random() < 0.6 else ("down", "up")  # garimpos mostly advance upstream
            ext = None
            for d in dirs:
                for length in (rng.uniform(350, 600), 300.0):
                    ext = grow_mine(grid, m, streams[m.stream], year, d, length, c, grow_rng)
                    if ext is not None:
                        break
                if ext is not None:
                    break
            if ext is not None:
                m.extensions.append(ext)
                got += 1
        if got < n_grow[year]:
            log.warning("demo world: room for %d mine growths in %d only (wanted %d)", got, year, n_grow[year])
    cands = [m for m in demo if m.first_seen < CLOUDY_YEAR]
    later = {m.mine_id: any(e.year > CLOUDY_YEAR for e in m.extensions) for m in cands}
    ranked = sorted(zip(rng.random(len(cands)), cands), key=lambda t: (later[t[1].mine_id], t[0]))
    return {CLOUDY_YEAR: sorted(m.mine_id for _, m in ranked[: max(1, round(2 * s2))])}


def grow_training_mines(
    grid: Grid, mines: list[Mine], streams: list[Line], n_rivers: int, ctx: dict, rng: np.random.Generator
) -> int:
    """Give about half of the training mines an extension from the first year on (:func:`grow_mine`), so the
    classifier also learns long mines, larger than a chip, as the demo area's grown mines are (and as real
    garimpos along a stream are). Trained on short mines only, the demo model scored chips of the grown demo
    mines 0.2-0.7. Returns how many grew."""
    got = 0
    train = [m for m in mines if m.area == "train"]
    for i in rng.permutation(len(train))[: len(train) // 2]:
        m = train[int(i)]
        c = {**ctx, "others": [o for o in mines if o is not m], "line_idx": n_rivers + m.stream}
        for d in ("up", "down"):
            ext = grow_mine(grid, m, streams[m.stream], SCENES[0].year, d, rng.uniform(300, 600), c, rng)
            if ext is not None:
                m.extensions.append(ext)
                got += 1
                break
    return got


def cloud_layers(
    shape: tuple[int, int],
    fraction: float,
    keep_clear: np.ndarray | None,
    shift_px: tuple[int, int],
    rng: np.random.Generator,
    force: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity and shadow strength (0-1) for one scene.

    Soft blobs with fractal texture; the threshold is the quantile that makes ``fraction`` of the
    pixels opaque >= 0.3 (what SCL flags as cloud), with a hazy rim below that. ``keep_clear``
    pixels get neither cloud nor shadow. ``force`` pixels and everything within 330 m of them get
    opacity 0.8 (SCL 9), fading out over a ragged 0-350 m rim. Shadows are the opacity shifted by
    ``shift_px`` (rows, cols).
    """
    h, w = shape
    f = 4
    ch, cw = h // f + 1, w // f + 1
    field = np.zeros((ch, cw), np.float32)
    n_blobs = int(8 + 70 * fraction)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    for _ in range(n_blobs):  # max, not sum: separate cells rather than one merged mass
        cy, cx = rng.uniform(0, ch), rng.uniform(0, cw)
        sig = rng.uniform(5, 22) * (1 + 1.5 * fraction)
        sx, sy = sig * rng.uniform(0.7, 1.4), sig * rng.uniform(0.7, 1.4)
        np.maximum(
            field, rng.uniform(0.6, 1.0) * np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2)), out=field
        )
    field = ndimage.zoom(field, f, order=1)[:h, :w]
    field *= np.clip(1 + 0.4 * fractal_noise(shape, (4, 12, 40), (0.25, 0.5, 0.6), rng), 0.05, None)
    if keep_clear is not None and keep_clear.any():
        dr, dc = shift_px
        kc = keep_clear | _shift(keep_clear, -dr, -dc)  # no cloud whose shadow would fall on it
        taper = np.clip(ndimage.distance_transform_edt(~kc) / 30.0, 0, 1).astype(np.float32)
        field *= taper
    t = float(np.quantile(field, 1 - fraction))
    span = max(float(field.max()) - t, 1e-6) * 0.35
    op = np.where(
        field >= t, 0.3 + 0.7 * np.clip((field - t) / span, 0, 1), 0.3 * np.clip(field / max(t, 1e-6), 0, 1) ** 8
    ).astype(np.float32)  # thin rim of haze
    if force is not None and force.any():
        # a thick cell over the hidden ground: every 20 m SCL pixel within ~300 m of it reads cloud
        d = ndimage.distance_transform_edt(~force).astype(np.float32) * RES
        edge = 330.0 + 200.0 * np.clip(0.5 + 0.5 * smooth_noise(shape, 20.0, rng), 0, 1)
        np.maximum(op, 0.8 * np.clip(1 - (d - edge) / 150.0, 0, 1), out=op)
    shadow = _shift(op, *shift_px)
    return op, shadow


def _shift(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """Shift an array by whole pixels (rows down, cols right), filling with zeros."""
    out = np.zeros_like(a)
    h, w = a.shape
    rs, rd = (slice(0, h - dr), slice(dr, h)) if dr >= 0 else (slice(-dr, h), slice(0, h + dr))
    cs, cd = (slice(0, w - dc), slice(dc, w)) if dc >= 0 else (slice(-dc, w), slice(0, w + dc))
    out[rd, cd] = a[rs, cs]
    return out


def block_mean(a: np.ndarray, f: int = 2) -> np.ndarray:
    """Mean over f x f blocks of the last two axes (10 m -> 20 m), as the sensor's 20 m pixels average.

    Not ``garimpo.detection.candidates.block_mean_nan``: that one sums in another order (float32, faster), which
    changes the last bit of about a quarter of the values, so the demo world's bytes (and the demo figures the
    README publishes) would change with it.
    """
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))


def scl_from_layers(lc: np.ndarray, opacity: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """20 m SCL: majority of the 10 m land-cover classes (ties -> water, then not-vegetated), then
    cloud (8 medium, 9 high probability) and cloud shadow (3) from the 20 m mean opacity."""
    scl10 = np.zeros(lc.shape, np.uint8)
    for code, s in LC_TO_SCL.items():
        scl10[lc == code] = s
    counts = np.stack([block_mean((scl10 == s).astype(np.float32), 2) for s in (4, 5, 6)])
    pick = np.array([4, 5, 6], np.uint8)[np.argmax(counts + np.array([0, 0.01, 0.02])[:, None, None], axis=0)]
    op, sh = block_mean(opacity, 2), block_mean(shadow, 2)
    pick[(sh >= 0.3) & (op < 0.3)] = 3
    pick[op >= 0.3] = 8
    pick[op >= 0.6] = 9
    return pick


def cloud_cover_percent(scl: np.ndarray) -> float:
    """eo:cloud_cover as Sen2Cor reports it: SCL 8, 9, 10 over valid (non-zero) pixels, 0.1 % steps."""
    valid = scl != 0
    return round(100.0 * float(np.isin(scl[valid], (8, 9, 10)).mean()), 1) if valid.any() else 0.0


def to_dn(refl: np.ndarray, offset: int) -> np.ndarray:
    """Reflectance -> uint16 DN: round(refl * DN_PER_REFLECTANCE) + offset; 0 stays reserved for nodata."""
    return np.clip(np.round(refl * float(DN_PER_REFLECTANCE)) + offset, 1, 65535).astype(np.uint16)


def write_cog(
    path: Path, array: np.ndarray, transform: Affine, nodata: int, name: str, categorical: bool = False
) -> Path:
    """Single-band cloud-optimised GeoTIFF: 256 px tiles, deflate, internal overviews (mode for the
    class map, average for reflectance)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype.name,
        crs=CRS,
        transform=transform,
        nodata=nodata,
    )
    # atomic: a killed job never leaves a half-written COG under the final name
    with MemoryFile() as mem, atomic_path(path, suffix=".tif") as tmp:
        with mem.open(**prof) as dst:
            dst.write(array, 1)
            dst.set_band_description(1, name)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                compress="deflate",
                predictor=2,
                blocksize=256,
                overview_resampling="mode" if categorical else "average",
            )
    return path


def mgrs_tile(lon: float, lat: float) -> str:
    """MGRS 100 km square (= Sentinel-2 tile name) of a point, e.g. '21MWP'."""
    zone = int((lon + 180) // 6) + 1
    bands = "CDEFGHJKLMNPQRSTUVWX"
    band = bands[min(int((lat + 80) // 8), len(bands) - 1)]
    e, n = Transformer.from_crs("EPSG:4326", (32600 if lat >= 0 else 32700) + zone, always_xy=True).transform(lon, lat)
    cols = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zone - 1) % 3]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    col = cols[int(e // 100000) - 1]
    row = rows[(int(n // 100000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{col}{row}"


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """Everything built before rendering: layout (grid, lines, fields, mines, areas) and static rasters."""

    seed: int
    scale: float
    grid: Grid
    rivers: list[Line]
    streams: list[Line]
    roads: list[Line]
    town: Polygon
    town_blocks: list[Polygon]
    fields: list[Field]
    sandbars: list[tuple[tuple[slice, slice], np.ndarray]]
    mines: list[Mine]
    control: Polygon
    protected: list[dict]
    base: np.ndarray  # (6, H, W) static surface reflectance without mines
    lc: np.ndarray  # (H, W) static land cover
    forest_tex: np.ndarray  # (H, W) canopy texture, reused per scene
    elevation: np.ndarray  # (H, W) m, for per-scene hillshade
    hard_negatives: list[dict] = field(default_factory=list)
    hidden: dict[int, list[str]] = field(default_factory=dict)  # year -> mine ids all its scenes hide under cloud

    def new_ground(self) -> list[tuple[int, Mine, str, Polygon]]:
        """(year, mine, kind, UTM polygon) of the ground that became mining in each period after the first:
        kind "new_site" (a mine's whole first footprint) or "expansion" (an extension's new ground)."""
        out: list[tuple[int, Mine, str, Polygon]] = []
        for m in self.mines:
            if m.first_seen > SCENES[0].year:
                out.append((m.first_seen, m, "new_site", m.footprint))
            # an extension of the first year is part of the mine from the start (training mines), not new ground
            out += [(e.year, m, "expansion", e.piece) for e in m.extensions if e.year > SCENES[0].year]
        return sorted(out, key=lambda t: (t[0], t[1].mine_id, t[2]))


def forest_layer(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Closed-canopy forest: crown-scale texture (crowns and gaps darken all bands together) plus
    stand-scale variation that mostly moves NIR. Returns (reflectance (6,H,W), texture)."""
    crowns = fractal_noise(shape, (0.8, 2.0, 5.0), (0.6, 0.5, 0.3), rng)
    stands = smooth_noise(shape, 60.0, rng)
    refl = np.empty((6,) + shape, np.float32)
    for b in range(6):
        k_stand = (0.02, 0.02, 0.02, 0.06, 0.04, 0.04)[b]
        refl[b] = SPEC["forest"][b] * (1 + 0.12 * crowns + k_stand * stands)
    return refl, crowns


def terrain(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Low hills (tens of metres of relief) for hillshading the canopy."""
    return (35.0 * smooth_noise(shape, 90.0, rng) + 12.0 * smooth_noise(shape, 25.0, rng)).astype(np.float32)


def hillshade(elev: np.ndarray, azimuth: float, elevation: float) -> np.ndarray:
    """Illumination factor relative to flat ground (1.0 on the flat)."""
    gy, gx = np.gradient(elev, RES)  # rows go south: gy = -dz/dnorth
    az, el = math.radians(azimuth), math.radians(elevation)
    sx, sy, sz = math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)
    nx, ny, nz = -gx, gy, np.ones_like(gx)
    cos_i = (nx * sx + ny * sy + nz * sz) / np.sqrt(nx * nx + ny * ny + 1)
    return (cos_i / sz).astype(np.float32)


def build_world(seed: int = 7, scale: float = 1.0) -> World:
    """Lay out every static element and render the mine-free surface reflectance."""
    t0 = time.time()
    grid = make_grid(scale)
    h, w = (grid.height, grid.width)
    rivers = make_rivers(grid, sub_rng(seed, "rivers"))
    town, blocks = make_town(grid, rivers[0], sub_rng(seed, "town"))
    control = frac_box(grid, 0.775, 0.07, 0.94, 0.40)
    streams = make_streams(grid, rivers, unary_union([control.buffer(800), town.buffer(400)]), sub_rng(seed, "streams"))
    roads = make_roads(grid, town, sub_rng(seed, "roads"))
    log.info("layout: %d rivers, %d streams, %d roads (%.1fs)", len(rivers), len(streams), len(roads), time.time() - t0)

    # sandbars first: the indigenous territory is drawn around a training-half bar
    sb_rng = sub_rng(seed, "sandbars")
    bars = [(rivers[0], b) for b in find_sandbars(grid, rivers[0], sb_rng, town.buffer(300))]
    bars += [(rivers[1], b) for b in find_sandbars(grid, rivers[1], sb_rng, None, per_half=1, extra=0)[:2]]
    xmid = grid.transform.c + size_m(grid)[0] / 2
    west_bars = [r.path[b["apex"]] for r, b in bars if r.path[b["apex"], 0] < xmid - 1500]
    wm, hm = size_m(grid)
    pa_rng = sub_rng(seed, "protected")
    ti_c = west_bars[0] + np.array([0.0, -0.16 * hm]) if west_bars else frac_xy(grid, 0.2, 0.72)
    ti_c[0] = np.clip(ti_c[0], grid.transform.c + 0.15 * wm, xmid - 0.17 * wm)
    ti = blob_polygon(ti_c, 0.14 * wm, 0.24 * hm, pa_rng).intersection(box(*grid.bounds))
    ti = ti.difference(town.buffer(600)).intersection(
        box(grid.transform.c, grid.bounds[1], xmid - 300, grid.transform.f)
    )
    ti = max(ti.geoms, key=lambda g: g.area) if ti.geom_type != "Polygon" else ti
    flona = blob_polygon(frac_xy(grid, 0.57, 0.2), 0.1 * wm, 0.15 * hm, pa_rng).intersection(box(*grid.bounds))
    flona = flona.difference(town.buffer(600))
    flona = max(flona.geoms, key=lambda g: g.area) if flona.geom_type != "Polygon" else flona
    protected = [
        dict(name="Terra Indígena Demo", kind="indigenous_territory", geom=ti),
        dict(name="Floresta Nacional Demo", kind="conservation_unit", geom=flona),
    ]

    forbidden = unary_union(
        [r.geom.buffer(float(r.hw.max()) + 150) for r in rivers]
        + [s.geom.buffer(70) for s in streams]
        + [town.buffer(150), control.buffer(700), ti.buffer(100), flona.buffer(100)]
    )
    fields = make_farms(grid, roads, forbidden, sub_rng(seed, "farms"))
    log.info("farms: %d fields (%.1fs)", len(fields), time.time() - t0)

    # ---- static surface
    rng = sub_rng(seed, "surface")
    base, tex = forest_layer((h, w), rng)
    lc = np.full((h, w), LC["forest"], np.uint8)
    for f in fields:
        m = rasterize(grid, f.geom)
        r, c = np.nonzero(m)
        if f.kind == "farm_pond":
            paint(base, lc, r, c, 1.0, SPEC["farm_pond"] * f.gain, LC["farm_pond"])
        else:
            t = 1 + 0.05 * tex[r, c]  # grass tussocks / furrows: weaker texture than canopy
            paint(base, lc, r, c, 1.0, SPEC[f.kind] * f.gain, LC[f.kind], tex=t)
    # roads: one 10 m pixel wide
    road_px = np.zeros((h, w), bool)
    for rd in roads:
        r, c = rowcol(grid, resample_line(rd.path, RES * 0.4)[0])
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        road_px[r[ok], c[ok]] = True
    r, c = np.nonzero(road_px)
    paint(base, lc, r, c, 0.85, SPEC["road"], LC["road"])
    # town: streets everywhere in the outline, blocks a per-pixel mix of roofs, yards, bare lots
    t_rng = sub_rng(seed, "town-pixels")
    tm = rasterize(grid, town)
    r, c = np.nonzero(tm)
    paint(base, lc, r, c, 1.0, SPEC["road"] * 1.08, LC["town"])
    # each block has its own density; houses cluster (thresholded noise), not salt and pepper
    mats = np.stack([SPEC["roof"], SPEC["metal_roof"], SPEC["yard"], SPEC["bare"]])
    lots = smooth_noise((h, w), 1.2, t_rng)
    for b in blocks:
        win = pixel_window(grid, b.bounds)
        m = rasterize(grid, b, win)
        built = t_rng.uniform(0.35, 0.85)
        v = lots[win]
        thr = np.quantile(v[m], 1 - built) if m.any() else 0
        pick = np.where(
            v >= thr, np.where(t_rng.random(v.shape) < 0.1, 1, 0), np.where(t_rng.random(v.shape) < 0.7, 2, 3)
        )
        r, c = np.nonzero(m)
        spec = mats[pick[r, c]].T * t_rng.normal(1.0, 0.05, len(r)).astype(np.float32)
        paint(base, lc, r + win[0].start, c + win[1].start, 1.0, spec, LC["town"])
    # rivers and streams (streams are half hidden by overhanging canopy)
    alpha, line_id, vert = line_alpha(grid, [(w.path, w.hw) for w in rivers + streams])
    vis = np.where(line_id >= len(rivers), 0.65, 1.0).astype(np.float32)
    r, c = np.nonzero(alpha > 0)
    paint(base, lc, r, c, alpha[r, c] * vis[r, c], SPEC["water"], LC["water"], tex=(1 + 0.04 * tex[r, c]))
    river_px = (alpha > 0) & (line_id >= 0) & (line_id < len(rivers))
    # sandbars
    sand = []
    for river, bar in bars:
        win, m = sandbar_mask(grid, river, bar)
        r, c = np.nonzero(m)
        r, c = r + win[0].start, c + win[1].start
        paint(base, lc, r, c, 1.0, SPEC["sandbar"], LC["sandbar"], tex=1 + 0.05 * tex[r, c])
        sand.append((win, m))
    log.info("static surface (%.1fs)", time.time() - t0)

    # ---- mines: >= 100 m from every other land use
    occupied = (lc != LC["forest"]) & ~((lc == LC["water"]) & ~river_px) | river_px | road_px
    dist_occ = ndimage.distance_transform_edt(~occupied).astype(np.float32)
    n_train = max(4, round(40 * scale**2))
    n_demo = max(3, round(10 * scale**2))
    m_rng = sub_rng(seed, "mines")
    picked = place_mines(
        grid, streams, dist_occ, control, ti, n_train, n_demo, m_rng, accept=1.0 if scale >= 1 else 0.75
    )
    del occupied
    mines: list[Mine] = []
    lines = (line_id, vert, alpha * vis)
    for area in ("train", "demo"):
        ms = sorted([m for m in picked if m["area"] == area], key=lambda m: (-m["centre"][1], m["centre"][0]))
        for i, md in enumerate(ms):
            st = streams[md["stream"]]
            plume, reach_end = stream_plume(
                grid, st, len(rivers) + md["stream"], md["s_end"], m_rng.uniform(200, 600), lines
            )
            mines.append(
                Mine(
                    f"{'T' if area == 'train' else 'D'}{i + 1:02d}",
                    area,
                    SCENES[0].year,
                    md["stream"],
                    md["centre"],
                    md["win"],
                    md["ponds"],
                    md["sediment"],
                    md["fringe"],
                    md["turbidity"],
                    plume,
                    md["footprint"],
                    span=(md["s"] - md["seg_len"] / 2, md["s_end"]),
                    reach_end=reach_end,
                )
            )
    ctx = dict(
        dist_occ=dist_occ,
        lines=lines,
        inner=box(*grid.bounds).buffer(-350),
        ctrl=control.buffer(700),
        boundary=LineString([(xmid, grid.bounds[1]), (xmid, grid.transform.f)]),
    )
    hidden = plan_history(
        grid, mines, streams, len(rivers), ctx, scale, sub_rng(seed, "history"), sub_rng(seed, "growth")
    )
    n_long = grow_training_mines(grid, mines, streams, len(rivers), ctx, sub_rng(seed, "training-growth"))
    log.info("training mines grown from the start: %d", n_long)
    del dist_occ, ctx
    log.info("mines: %d (%.1fs)", len(mines), time.time() - t0)

    world = World(
        seed,
        scale,
        grid,
        rivers,
        streams,
        roads,
        town,
        blocks,
        fields,
        sand,
        mines,
        control,
        protected,
        base,
        lc,
        tex,
        terrain((h, w), sub_rng(seed, "terrain")),
        hidden=hidden,
    )
    world.hard_negatives = pick_hard_negatives(world, road_px, sub_rng(seed, "negatives"))
    return world


def pick_hard_negatives(world: World, road_px: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """~40 look-alike points in the training half: fields, ponds, town, sandbars, roads."""
    g = world.grid
    xmid = g.transform.c + size_m(g)[0] / 2
    west = box(g.transform.c + 300, g.bounds[1] + 300, xmid - 200, g.transform.f - 300)
    # >= 500 m from every mine: a 640 m training image centred on the point holds no mine pixel
    near_mine = unary_union([m.latest_footprint.buffer(500) for m in world.mines])
    out: list[dict] = []

    def add(kind, pt, limit):
        if (
            sum(o["kind"] == kind for o in out) < limit
            and west.contains(Point(pt))
            and not near_mine.contains(Point(pt))
            and all(np.hypot(pt[0] - o["x"], pt[1] - o["y"]) > 250 for o in out)
        ):  # distinct sites
            out.append(dict(kind=kind, x=float(pt[0]), y=float(pt[1])))

    ponds = prep(unary_union([f.geom.buffer(20) for f in world.fields if f.kind == "farm_pond"] or [Point()]))
    for f in sorted(world.fields, key=lambda f: (f.geom.centroid.x, f.geom.centroid.y)):
        kind = {"pasture": "pasture", "bare": "bare_field", "farm_pond": "farm_pond"}[f.kind]
        p = f.geom.representative_point()
        if kind != "farm_pond" and ponds.contains(p):  # a pasture label must not sit on its pond
            continue
        add(kind, (p.x, p.y), {"pasture": 8, "bare_field": 10, "farm_pond": 6}[kind])
    for win, m in world.sandbars:
        d = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(np.argmax(d), d.shape)
        e, n = centres(g, win)
        add("sandbar", (e[r, c], n[r, c]), 6)
    tminx, tminy, tmaxx, tmaxy = world.town.bounds
    for fy in (0.2, 0.5, 0.8):  # near the town's west edge, on a block
        y = tminy + fy * (tmaxy - tminy)
        line = LineString([(tminx, y), (xmid, y)]).intersection(world.town)
        if not line.is_empty:
            # the built-up pixel (roof, street, bare lot) nearest to a point 55 m inside the edge
            r0, c0 = (int(v) for v in rowcol(g, np.array([line.bounds[0] + 55, y])))
            win = (slice(max(0, r0 - 5), r0 + 6), slice(max(0, c0 - 5), c0 + 6))
            b = world.base[:, win[0], win[1]]
            built = (b[3] - b[2]) / (b[3] + b[2]) < 0.4
            if built.any():
                rr, cc = np.nonzero(built)
                k = np.argmin((rr + win[0].start - r0) ** 2 + (cc + win[1].start - c0) ** 2)
                e, n = centres(g, win)
                add("town", (e[rr[k], cc[k]], n[rr[k], cc[k]]), 3)
    rr, cc = np.nonzero(road_px & (world.lc == LC["road"]))
    e = g.transform.c + (cc + 0.5) * RES
    n = g.transform.f - (rr + 0.5) * RES
    # road pixels away from fields and the town, so the point is on road with forest either side
    busy = prep(unary_union([world.town.buffer(300)] + [f.geom.buffer(60) for f in world.fields]))
    keep = [i for i in rng.permutation(len(rr))[:400] if e[i] < xmid - 500 and not busy.contains(Point(e[i], n[i]))]
    for i in keep:
        add("road", (e[i], n[i]), 5)
    return out


def render_scene(world: World, scene: Scene, index: int, avoid: np.ndarray | None = None) -> dict:
    """Surface of ``scene``'s year (mines and extensions that exist by then), illumination, clouds and noise.

    The surface (mines, their texture, pasture phenology) depends on the year only, so the scenes of a
    period show the same ground; illumination, calibration, haze, clouds and noise are the scene's own.
    Clouds: a clear scene keeps the control area clear, and the ground that becomes mining in its year or
    at the next change after it (so the change has a clear look on both sides), and ``avoid`` (10 m
    pixels another scene of its period has under cloud or shadow, so the period's composite has a clear
    look everywhere); a cloudy scene keeps nothing clear and hides ``world.hidden[year]`` completely.
    Returns reflectance arrays at native resolution (10/20 m, per ``BAND_RES``), the 20 m SCL, the 10 m
    land cover ``lc`` and ``clouded`` (10 m pixels with any cloud or shadow).
    """
    g = world.grid
    h, w = (g.height, g.width)
    rng = sub_rng(world.seed, f"scene-{index}")
    surface_rng = sub_rng(world.seed, f"surface-{scene.year}")
    refl = world.base.copy()
    lc = world.lc.copy()
    forest = lc == LC["forest"]
    shade = np.clip(1 + 0.6 * (hillshade(world.elevation, scene.sun_azimuth, scene.sun_elevation) - 1), 0.85, 1.15)
    refl *= np.where(forest, shade, 1.0)[None]
    # pasture phenology: drier later in the dry season
    past = lc == LC["pasture"]
    dry = {2021: 1.0, 2022: 1.02, 2023: 0.97, 2024: 1.04}.get(scene.year, 1.0)
    refl[:, past] *= np.array([dry, dry, dry**2, 1 / dry, dry, dry], np.float32)[:, None]
    for m in world.mines:
        if not m.exists(scene.year):
            continue
        parts = [m] + [e for e in m.extensions if e.year <= scene.year]
        # all fringes first: an extension's new ground overpaints the old fringe, never the reverse
        for name in ("fringe", "sediment", "ponds"):
            for part in parts:
                r, c = np.nonzero(getattr(part, name))
                tex = 1 + 0.06 * surface_rng.standard_normal(len(r)).astype(np.float32)
                if name == "ponds":
                    tex *= part.turbidity[r, c]
                key = "pond" if name == "ponds" else name
                paint(refl, lc, r + part.win[0].start, c + part.win[1].start, 1.0, SPEC[key], LC[key], tex=tex)
        pr, pc, pa = m.plume_at(scene.year)
        outside = ~np.isin(lc[pr, pc], (LC["pond"], LC["sediment"], LC["fringe"]))  # not on the mine itself
        pr, pc, pa = pr[outside], pc[outside], pa[outside]
        # the stream pixel mixes water with canopy: swap its water part for turbid water
        refl[:, pr, pc] += pa * (0.8 * SPEC["pond"] + 0.2 * SPEC["water"] - SPEC["water"])[:, None]
    # atmosphere/calibration: per-band gain, a little haze (more in blue), smooth aerosol field
    gain = rng.normal(1.0, 0.02, 6).astype(np.float32)
    haze = (0.004 if scene.cloud_target < 20 else 0.008) * np.array([1.0, 0.7, 0.5, 0.2, 0.05, 0.02], np.float32)
    aer = smooth_noise((h, w), 150.0, rng) * 0.003
    refl = refl * gain[:, None, None] + haze[:, None, None]
    refl += aer[None] * np.array([1.0, 0.7, 0.5, 0.2, 0.05, 0.02], np.float32)[:, None, None]
    # clouds: new ground is clear where it appears and, in clear scenes, at the last clear look before it
    keep = np.zeros((h, w), bool)
    if not scene.cloudy:
        keep |= rasterize(g, world.control.buffer(300))
        if avoid is not None:
            keep |= avoid
    clear_before = {
        y: max((sc.year for sc in SCENES if sc.year < y and not sc.cloudy), default=None) for y in CHANGE_YEARS
    }
    new = [
        piece.buffer(250)
        for y, _, _, piece in world.new_ground()
        if y == scene.year or (not scene.cloudy and clear_before.get(y) == scene.year)
    ]
    if new:
        keep |= rasterize(g, new)
    hide = [m.footprint_at(scene.year) for m in world.mines if m.mine_id in world.hidden.get(scene.year, ())]
    force = rasterize(g, hide) if hide else None
    az = math.radians(scene.sun_azimuth)
    dist_px = rng.uniform(45, 80)  # cloud height / tan(sun elevation), in pixels
    shift = (int(round(dist_px * math.cos(az))), int(round(-dist_px * math.sin(az))))  # away from the sun
    op, sh = cloud_layers((h, w), scene.cloud_target / 100.0, keep, shift, rng, force=force)
    refl *= (1 - 0.6 * np.clip(sh * (1 - op), 0, 1))[None]
    cloud_tex = 1 + 0.08 * smooth_noise((h, w), 6.0, rng)
    refl = refl * (1 - op)[None] + (op * cloud_tex)[None] * SPEC["cloud"][:, None, None]
    del cloud_tex, aer
    out = {}
    noise = (0.0025, 0.0025, 0.0025, 0.006, 0.004, 0.004)
    for b, name in enumerate(BANDS):
        band = refl[b] if BAND_RES[name] == 10 else block_mean(refl[b], 2)
        out[name] = band + noise[b] * rng.standard_normal(band.shape).astype(np.float32)
    out["SCL"] = scl_from_layers(lc, op, sh)
    out["lc"] = lc
    out["clouded"] = (op > 0.02) | (sh > 0.02)
    return out


# --------------------------------------------------------------------------- STAC and truth


def _lonlat_geom(geom, tr: Transformer):
    g = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return orient(g, 1.0) if g.geom_type == "Polygon" else g


def _write_fc(path: Path, features: list[tuple[object, dict]]) -> Path:
    """An RFC 7946 truth file through the workflow's one GeoJSON writer (rounding, ring winding, atomic)."""
    return write_geojson(path, feature_collection(feature(geom, props) for geom, props in features))


def footprint_lonlat(grid: Grid) -> Polygon:
    """World footprint in lon/lat (edges densified: UTM straight lines are not lon/lat straight)."""
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return _lonlat_geom(shapely.segmentize(box(*grid.bounds), 500.0), to_ll)


def write_stac(world: World, scenes_dir_items: list[dict], cat_dir: Path) -> pystac.Catalog:
    """Self-contained static catalog: catalog.json -> sentinel-2-l2a collection -> items, each item
    JSON next to its COGs in ``<item_id>/``."""
    g = world.grid
    foot = footprint_lonlat(g)
    bbox = list(foot.bounds)
    cat = pystac.Catalog(
        id="garimpo-demo-world",
        description=(
            "Synthetic Sentinel-2 L2A-like scenes for the garimpo offline demo (NOT real imagery). "
            f"seed={world.seed}, scale={world.scale}"
        ),
        title="garimpo demo world",
    )
    dts = [datetime.fromisoformat(d["scene"].datetime.replace("Z", "+00:00")) for d in scenes_dir_items]
    coll = pystac.Collection(
        id=COLLECTION_ID,
        title="Sentinel-2 Level-2A (synthetic demo)",
        description="Synthetic stand-in for Planetary Computer's sentinel-2-l2a: same asset keys, "
        "properties and processing-baseline DN offset.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(dts), max(dts)]])),
        license="CC0-1.0",
    )
    cat.add_child(coll)
    for d, dt in zip(scenes_dir_items, dts):
        sc: Scene = d["scene"]
        item = pystac.Item(
            id=d["id"],
            geometry=mapping(foot),
            bbox=bbox,
            datetime=dt,
            properties={
                "platform": sc.platform,
                "constellation": "Sentinel 2",
                "instruments": ["msi"],
                "s2:processing_baseline": sc.baseline,
                "s2:mgrs_tile": d["tile"],
                "s2:product_type": "S2MSI2A",
                "s2:generation_time": d["generated_iso"],
            },
        )
        EOExtension.ext(item, add_if_missing=True).cloud_cover = d["cloud_cover"]
        ProjectionExtension.ext(item, add_if_missing=True).code = CRS
        item.properties["proj:epsg"] = EPSG  # older readers look for it (proj v1)
        RasterExtension.add_to(item)
        for key in BANDS + ("SCL",):
            res = BAND_RES[key]
            shp = [g.height * int(RES) // res, g.width * int(RES) // res]
            tr = transform_at(g, res)
            title = BAND_INFO[key][3] if key in BAND_INFO else "Scene classfication map (SCL)"
            asset = pystac.Asset(
                href=str(d["paths"][key].resolve()),
                media_type=pystac.MediaType.COG,
                roles=["data"],
                title=title,
                extra_fields={"gsd": float(res)},
            )
            item.add_asset(key, asset)
            pe = ProjectionExtension.ext(asset)
            pe.shape = shp
            pe.transform = [tr.a, tr.b, tr.c, tr.d, tr.e, tr.f]
            pe.bbox = list(g.bounds)
            if key in BAND_INFO:
                cn, cw, fw, _ = BAND_INFO[key]
                EOExtension.ext(asset).bands = [
                    Band.create(name=key, common_name=cn, center_wavelength=cw, full_width_half_max=fw)
                ]
                rb = RasterBand.create(
                    nodata=0,
                    data_type=DataType.UINT16,
                    spatial_resolution=float(res),
                    scale=0.0001,
                    offset=-0.1 if sc.has_offset else 0.0,
                )
            else:
                rb = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=float(res))
            RasterExtension.ext(asset).bands = [rb]
        coll.add_item(item)
    coll.extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(dts), max(dts)]]))

    root = str(cat_dir.resolve())
    strategy = pystac.layout.CustomLayoutStrategy(item_func=lambda item, parent_dir: f"{root}/{item.id}/{item.id}.json")
    cat.normalize_hrefs(root, strategy=strategy)
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return cat


def write_truth(world: World, truth_dir: Path) -> dict:
    """Ground truth in EPSG:4326 (RFC 7946) plus the CSV inputs a user would bring.

    Mining truth (areas in geodesic hectares, periods as strings of ``PERIODS``):
    ``mines.geojson`` one feature per mine, footprint of the latest period, with ``grown`` (years it grew);
    ``mining_by_period.geojson`` one feature per (mine, period it exists in), footprint then;
    ``new_mining.geojson`` the ground that became mining in each period after the first: a new mine's
    footprint (kind "new_site") or an extension's new ground (kind "expansion").
    Returns {name: path}.
    """
    truth_dir.mkdir(parents=True, exist_ok=True)
    g = world.grid
    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    paths = {}

    def ll_ha(geom):
        ll = _lonlat_geom(geom, tr)
        return ll, round(geodesic_area_ha(ll), 2)

    feats = []
    for m in world.mines:
        ll, ha = ll_ha(m.latest_footprint)
        props = {"mine_id": m.mine_id, "area": m.area, "first_seen": m.first_seen, "area_ha": ha}
        # years it grew in; an extension of the first year is part of the mine from the start
        feats.append((ll, {**props, "grown": [e.year for e in m.extensions if e.year > SCENES[0].year]}))
    paths["mines"] = _write_fc(truth_dir / "mines.geojson", feats)
    feats = []
    for period in PERIODS:
        for m in world.mines:
            if m.exists(int(period)):
                ll, ha = ll_ha(m.footprint_at(int(period)))
                props = {"mine_id": m.mine_id, "area": m.area, "period": period, "first_seen": m.first_seen}
                feats.append((ll, {**props, "area_ha": ha}))
    paths["mining_by_period"] = _write_fc(truth_dir / "mining_by_period.geojson", feats)
    feats = []
    for year, m, kind, piece in world.new_ground():
        ll, ha = ll_ha(piece)
        feats.append((ll, {"mine_id": m.mine_id, "area": m.area, "period": str(year), "kind": kind, "area_ha": ha}))
    paths["new_mining"] = _write_fc(truth_dir / "new_mining.geojson", feats)

    known = []
    pick = sub_rng(world.seed, "known-points")
    for m in world.mines:
        if m.area == "train":
            # A user's "known mine" point lies somewhere on the mine, not at its centroid: a point drawn
            # uniformly inside the footprint, so training images are not all centred on their mine (the
            # scan's chips never are).
            fp = m.footprint_at(SCENES[-1].year)
            minx, miny, maxx, maxy = fp.bounds
            p = fp.representative_point()
            for _ in range(200):
                q = Point(pick.uniform(minx, maxx), pick.uniform(miny, maxy))
                if fp.contains(q):
                    p = q
                    break
            lon, lat = tr.transform(p.x, p.y)
            known.append((m.mine_id, round(lon, 6), round(lat, 6)))
    paths["known_mines_csv"] = truth_dir / "known_mines.csv"
    with open(paths["known_mines_csv"], "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["name", "longitude", "latitude"])
        wr.writerows(known)
    paths["known_mines"] = _write_fc(
        truth_dir / "known_mines.geojson", [(Point(lon, lat), {"name": n}) for n, lon, lat in known]
    )

    paths["protected_areas"] = _write_fc(
        truth_dir / "protected_areas.geojson",
        [
            (_lonlat_geom(shapely.segmentize(p["geom"], 200.0), tr), {"name": p["name"], "kind": p["kind"]})
            for p in world.protected
        ],
    )
    paths["urban"] = _write_fc(
        truth_dir / "urban.geojson", [(_lonlat_geom(world.town, tr), {"name": "Vila Demo", "kind": "town"})]
    )
    left, bottom, right, top = g.bounds
    xmid = left + (right - left) / 2
    regions = [
        ("demo", box(xmid, bottom, right, top)),
        ("train_area", box(left, bottom, xmid, top)),
        ("control", world.control),
    ]
    paths["regions"] = _write_fc(
        truth_dir / "regions.geojson",
        [(_lonlat_geom(shapely.segmentize(geom, 250.0), tr), {"name": name}) for name, geom in regions],
    )

    paths["hard_negatives"] = truth_dir / "hard_negatives.csv"
    with open(paths["hard_negatives"], "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["name", "longitude", "latitude", "kind"])
        counts: dict[str, int] = {}
        for hn in world.hard_negatives:
            counts[hn["kind"]] = counts.get(hn["kind"], 0) + 1
            lon, lat = tr.transform(hn["x"], hn["y"])
            wr.writerow([f"{hn['kind']}_{counts[hn['kind']]:02d}", round(lon, 6), round(lat, 6), hn["kind"]])
    return {k: str(v) for k, v in paths.items()}


def mines_under_cloud(world: World, year: int, scl: np.ndarray) -> dict[str, list[str]]:
    """Mines (existing in ``year``) whose footprint's 20 m SCL pixels all read cloud (8, 9, 10):
    "hidden"; some but not all: "partly"."""
    out: dict[str, list[str]] = {"hidden": [], "partly": []}
    for m in world.mines:
        if not m.exists(year):
            continue
        fp = m.footprint_at(year)
        win = pixel_window(world.grid, fp.bounds)
        r, c = np.nonzero(rasterize(world.grid, fp, win))
        cloud = np.isin(scl[(r + win[0].start) // 2, (c + win[1].start) // 2], (8, 9, 10))
        if cloud.all():
            out["hidden"].append(m.mine_id)
        elif cloud.any():
            out["partly"].append(m.mine_id)
    return out


def _period_summary(world: World) -> dict[str, dict]:
    """Per period: mines present, new sites, expansions and new hectares (UTM area), per area."""
    out = {}
    new = world.new_ground()
    for period in PERIODS:
        y = int(period)
        out[period] = {
            "mines": {a: sum(m.area == a and m.exists(y) for m in world.mines) for a in ("train", "demo")},
            "new_sites": {
                a: sum(t[0] == y and t[1].area == a and t[2] == "new_site" for t in new) for a in ("train", "demo")
            },
            "expansions": {
                a: sum(t[0] == y and t[1].area == a and t[2] == "expansion" for t in new) for a in ("train", "demo")
            },
            "new_ha": round(sum(t[3].area for t in new if t[0] == y) / 1e4, 1),
        }
    return out


def generate_demo_world(out_dir: str | Path, seed: int = 7, scale: float = 1.0) -> dict:
    """Build the demo world and write ``out_dir/catalog`` (STAC + COGs) and ``out_dir/truth``.

    ``scale`` shrinks the extent (1.0 = 24 x 12 km at 10 m; tests use 0.5) and the mine counts with
    the area; object sizes (mines, fields, town) stay real. Returns a summary dict: ``items`` (per item id:
    period, date, platform, baseline, eo:cloud_cover), ``items_by_period`` (item ids per period), truth
    paths, mine counts, ``by_period`` (mines present, new sites and expansions per area, new hectares),
    ``hidden_by_clouds`` (mines the cloudy period's scenes hide on purpose) and ``mines_under_cloud`` (per
    period, per item id, mines whose footprint SCL reads all / partly cloud).
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    cat_dir = out_dir / "catalog"
    world = build_world(seed, scale)
    g = world.grid
    lon0, lat0 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(
        g.transform.c + size_m(g)[0] / 2, g.transform.f - size_m(g)[1] / 2
    )
    tile = mgrs_tile(lon0, lat0)
    items: list[dict[str, Any]] = []
    under_cloud: dict[str, dict] = {p: {} for p in PERIODS}
    clouded: dict[str, np.ndarray] = {}  # period -> 10 m pixels its clear scenes so far have under cloud/shadow
    for i, sc in enumerate(SCENES):
        period = str(sc.year)
        arrays = render_scene(world, sc, i, avoid=None if sc.cloudy else clouded.get(period))
        if not sc.cloudy:
            clouded[period] = arrays["clouded"] | clouded.get(period, False)
        item_id = sc.item_id(tile)
        paths = {}
        for key in BANDS:
            dn = to_dn(arrays[key], BASELINE_OFFSET_DN if sc.has_offset else 0)
            paths[key] = write_cog(cat_dir / item_id / f"{key}.tif", dn, transform_at(g, BAND_RES[key]), 0, key)
        paths["SCL"] = write_cog(
            cat_dir / item_id / "SCL.tif", arrays["SCL"], transform_at(g, 20), 0, "SCL", categorical=True
        )
        gen = datetime.strptime(sc.generated, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        items.append(
            dict(
                scene=sc,
                id=item_id,
                tile=tile,
                paths=paths,
                cloud_cover=cloud_cover_percent(arrays["SCL"]),
                generated_iso=gen.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
        )
        log.info("scene %s: cloud cover %.1f %% (%.1fs)", item_id, items[-1]["cloud_cover"], time.time() - t0)
        under_cloud[period][item_id] = mines_under_cloud(world, sc.year, arrays["SCL"])
        del arrays
    write_stac(world, items, cat_dir)
    truth = write_truth(world, out_dir / "truth")
    summary = {
        "out_dir": str(out_dir),
        "catalog": str(cat_dir / "catalog.json"),
        "collection": COLLECTION_ID,
        "items": {
            d["id"]: {
                "period": str(d["scene"].year),
                "datetime": d["scene"].datetime,
                "platform": d["scene"].platform,
                "processing_baseline": d["scene"].baseline,
                "eo:cloud_cover": d["cloud_cover"],
            }
            for d in items
        },
        "items_by_period": {p: [d["id"] for d in items if str(d["scene"].year) == p] for p in PERIODS},
        "truth": truth,
        "crs": CRS,
        "bounds": list(g.bounds),
        "shape_10m": [g.height, g.width],
        "mgrs_tile": tile,
        "n_mines": {
            "train": sum(m.area == "train" for m in world.mines),
            "demo": sum(m.area == "demo" for m in world.mines),
        },
        "periods": list(PERIODS),
        "by_period": _period_summary(world),
        "hidden_by_clouds": {str(y): ids for y, ids in world.hidden.items()},
        "mines_under_cloud": under_cloud,
        "n_streams": len(world.streams),
        "n_fields": sum(f.kind != "farm_pond" for f in world.fields),
        "n_farm_ponds": sum(f.kind == "farm_pond" for f in world.fields),
        "n_sandbars": len(world.sandbars),
        "n_hard_negatives": len(world.hard_negatives),
        "seed": seed,
        "scale": scale,
        "seconds": round(time.time() - t0, 1),
    }
    log.info("demo world written to %s in %.1fs", out_dir, summary["seconds"])
    return summary
