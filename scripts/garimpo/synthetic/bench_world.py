"""A large synthetic Sentinel-2-like granule for benchmarking detection (e.g. a full one of 10980 px).

The demo world (``garimpo.synthetic.demo_world``) renders whole-grid arrays, fine for 24 x 12 km but not for a
110 x 110 km granule. Here the layout is vector (rivers, streams, roads, fields, sandbars, clearings,
mines as shapely geometry) and the raster is rendered block by block: textures are functions of
the global pixel position (hashed white noise filtered with a halo, coarse noise grids interpolated),
so blocks join without seams and memory stays bounded whatever the size.

Spectra, meander paths and painting come from ``garimpo.synthetic.demo_world``. Mines are garimpo-like: a
chain of turbid ponds along a stream with bare sediment around them and a cleared fringe, 1-100 ha
(log-uniform), placed until ``mined_fraction`` of the area is covered. Hard negatives: big rivers
with sandbars, pastures, ploughed fields, fish ponds, forest clearings, unpaved roads.

Output: uint16 reflectance x 10000 (the composite_cell rule's reflectance with the +1000 DN offset already
removed), nodata 0, GDAL scale 1e-4 per band (so the scan's reader, ``garimpo.geo.raster.read_bands``, gets
reflectance), band descriptions B02 B03 B04 B08 B11 B12; tiled (512 px), ZSTD-compressed GeoTIFF (the codec the
composite_cell rule writes).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from scipy import ndimage
from shapely import STRtree
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.ops import unary_union

from garimpo.atomic import atomic_path
from garimpo.synthetic.demo_world import BANDS, DN_PER_REFLECTANCE, SPEC, meander_path, sub_rng

CRS = "EPSG:32721"
RES = 10.0
DN_SCALE = float(DN_PER_REFLECTANCE)  # DN per unit reflectance, as Sentinel-2 L2A
NOISE = (0.0025, 0.0025, 0.0025, 0.006, 0.004, 0.004)  # per-band sensor noise (reflectance)


@dataclass
class Mine:
    ponds: list  # Polygons
    sediment: Polygon  # includes the ponds' surroundings, not the ponds
    fringe: Polygon
    footprint: Polygon  # ponds + sediment: the truth outline
    turbidity: list

    @property
    def area_ha(self) -> float:
        return self.footprint.area / 1e4


@dataclass
class Layout:
    seed: int
    size: int  # px (square)
    x0: float
    y0: float
    rivers: list = field(default_factory=list)  # (LineString, half width m, Polygon)
    streams: list = field(default_factory=list)  # (LineString, half width m)
    roads: list = field(default_factory=list)  # LineString
    fields: list = field(default_factory=list)  # (Polygon, kind, gain (6,))
    sandbars: list = field(default_factory=list)  # Polygon
    mines: list = field(default_factory=list)  # Mine

    @property
    def transform(self) -> Affine:
        return Affine(RES, 0, self.x0, 0, -RES, self.y0)

    @property
    def extent(self) -> Polygon:
        return box(self.x0, self.y0 - self.size * RES, self.x0 + self.size * RES, self.y0)

    def xy(self, fx: float, fy: float) -> np.ndarray:
        return np.array([self.x0 + fx * self.size * RES, self.y0 - fy * self.size * RES])


# --------------------------------------------------------------------------- layout


def _rand_point(lay: Layout, rng, margin=0.0) -> np.ndarray:
    return lay.xy(rng.uniform(margin, 1 - margin), rng.uniform(margin, 1 - margin))


def _mine_along(path: np.ndarray, arc: np.ndarray, s0: float, length: float, width: float, rng) -> Mine | None:
    """A pond chain on a stream: segment [s0, s0 + length] of ``path``, sediment ~``width`` wide."""
    from shapely.affinity import rotate, scale

    seg = path[(arc >= s0) & (arc <= s0 + length)]
    if len(seg) < 2:
        return None
    line = LineString(seg)
    step = max(width / 3, 15.0)
    n = max(int(line.length / step), 1)
    pts = [line.interpolate(t * line.length / n) for t in range(n + 1)]
    wob = np.clip(1 + 0.75 * ndimage.gaussian_filter1d(rng.standard_normal(len(pts)), 2.0, mode="nearest"), 0.55, 1.6)
    sed = unary_union([p.buffer(width / 2 * w, 12) for p, w in zip(pts, wob)])
    spacing = rng.uniform(45, 80)
    n_ponds = max(int(line.length / spacing), 1)
    ponds, turb = [], []
    for k in range(n_ponds):
        c = line.interpolate((k + 0.5) * line.length / n_ponds)
        a = min(spacing * rng.uniform(0.35, 0.55), width * 0.6)
        b = min(rng.uniform(0.25, 0.45) * width, a * 1.5)
        ang = rng.uniform(0, 180)
        ponds.append(rotate(scale(c.buffer(1.0, 16), max(a, 8.0), max(b, 8.0)), ang))
        turb.append(float(rng.uniform(0.85, 1.2)))
        if width > 150:  # big mines hold more ponds across their width
            for side in (-1, 1):
                if rng.random() < 0.6:
                    d = side * rng.uniform(0.2, 0.35) * width
                    off = Point(c.x + d * math.cos(math.radians(ang + 90)), c.y + d * math.sin(math.radians(ang + 90)))
                    ponds.append(rotate(scale(off.buffer(1.0, 16), a, b), rng.uniform(0, 180)))
                    turb.append(float(rng.uniform(0.85, 1.2)))
    footprint = sed if sed.geom_type == "Polygon" else max(sed.geoms, key=lambda g: g.area)
    footprint = Polygon(footprint.exterior)
    keep = [(p.intersection(footprint), t) for p, t in zip(ponds, turb)]
    keep = [(p, t) for p, t in keep if not p.is_empty and p.area > 50]
    fringe = footprint.buffer(rng.uniform(20, 50), 8).difference(footprint)
    return Mine([p for p, _ in keep], footprint, fringe, footprint, [t for _, t in keep])


def make_layout(
    size: int, seed: int, x0: float = 600000.0, y0: float = 9320000.0, mined_fraction: float = 0.01
) -> Layout:
    """Vector layout of a ``size`` x ``size`` px granule at 10 m."""
    lay = Layout(seed, size, x0, y0)
    size_m = size * RES
    ext = lay.extent
    # big rivers west -> east, one per ~35 km of height
    rng = sub_rng(seed, "bench-rivers")
    n_riv = max(1, round(size_m / 35000))
    for k in range(n_riv):
        fy = (k + 0.5) / n_riv + rng.uniform(-0.1, 0.1) / n_riv
        p = meander_path(
            lay.xy(-0.02, fy),
            lay.xy(1.02, fy + rng.uniform(-0.1, 0.1)),
            rng,
            amplitude=min(0.04 * size_m, 3000.0),
            wavelength=min(0.2 * size_m, 12000.0),
            step=20.0,
        )
        hw = float(rng.uniform(50, 140))
        line = LineString(p)
        lay.rivers.append((line, hw, line.buffer(hw)))
    river_union = unary_union([r[2] for r in lay.rivers])
    river_pts = np.concatenate([np.asarray(r[0].coords) for r in lay.rivers])
    # sandbars: lenses on one bank every ~4 km
    for line, hw, _ in lay.rivers:
        for s in np.arange(rng.uniform(500, 3000), line.length, rng.uniform(2500, 5000)):
            c = line.interpolate(s)
            c2 = line.interpolate(min(s + 10, line.length))
            ang = math.degrees(math.atan2(c2.y - c.y, c2.x - c.x))
            side = rng.choice([-1, 1])
            nx, ny = -math.sin(math.radians(ang)), math.cos(math.radians(ang))
            ctr = Point(c.x + side * nx * hw * 0.8, c.y + side * ny * hw * 0.8)
            from shapely.affinity import rotate, scale

            lens = rotate(scale(ctr.buffer(1.0, 24), rng.uniform(150, 400), hw * rng.uniform(0.35, 0.6)), ang)
            lay.sandbars.append(lens.intersection(line.buffer(hw + 40)))
    # streams: from random sources towards the nearest big-river point (or a random direction)
    rng = sub_rng(seed, "bench-streams")
    from scipy.spatial import cKDTree

    tree = cKDTree(river_pts)
    n_streams = int(round(size_m * size_m / 1e6 / 20))
    for _ in range(max(n_streams, 8)):
        src = _rand_point(lay, rng, 0.01)
        d, j = tree.query(src)
        length = rng.uniform(3000, 12000)
        if d < length * 1.3:
            dst = river_pts[j]
        else:
            angle = rng.uniform(0, 2 * math.pi)
            dst = src + length * np.array([math.cos(angle), math.sin(angle)])
        if np.hypot(*(dst - src)) < 800:
            continue
        p = meander_path(src, dst, rng, amplitude=rng.uniform(90, 170), wavelength=rng.uniform(800, 1300), step=10.0)
        lay.streams.append((LineString(p), float(rng.uniform(3.0, 8.0)), p))
    # mines on streams until the mined area is reached, >= 400 m apart, off the big rivers
    import shapely

    shapely.prepare(river_union)
    rng = sub_rng(seed, "bench-mines")
    target = mined_fraction * size_m * size_m
    got, tries = 0.0, 0
    centres: list[tuple[float, float, float]] = []  # x, y, radius
    grid_idx: dict[tuple[int, int], list[int]] = {}
    cell = 8000.0
    inner = ext.buffer(-300)
    shapely.prepare(inner)
    arcs = [np.r_[0.0, np.cumsum(np.hypot(*np.diff(s_[2], axis=0).T))] for s_ in lay.streams]
    max_tries = 200 + int(target / 1e4 * 20)
    while got < target and tries < max_tries and lay.streams:
        tries += 1
        k = int(rng.integers(len(lay.streams)))
        path, arc = lay.streams[k][2], arcs[k]
        area = float(np.exp(rng.uniform(np.log(1.0), np.log(100.0)))) * 1e4
        length = float(np.clip(math.sqrt(area) * rng.uniform(1.3, 3.0), 80.0, 3500.0))
        width = max(area / length, 40.0)
        if arc[-1] < length + 200:
            continue
        s0 = rng.uniform(100, arc[-1] - length - 100)
        cx, cy = path[int(np.searchsorted(arc, s0 + length / 2))]
        rad = length / 2 + width * 0.8 + 60
        gx, gy = int(cx // cell), int(cy // cell)
        near = [i for dx in (-1, 0, 1) for dy in (-1, 0, 1) for i in grid_idx.get((gx + dx, gy + dy), [])]
        if any(math.hypot(cx - centres[i][0], cy - centres[i][1]) < rad + centres[i][2] + 400 for i in near):
            continue
        m = _mine_along(path, arc, s0, length, width, rng)
        if m is None or not inner.contains(m.footprint) or river_union.intersects(m.footprint.buffer(100)):
            continue
        grid_idx.setdefault((gx, gy), []).append(len(centres))
        centres.append((cx, cy, rad))
        lay.mines.append(m)
        got += m.footprint.area
    mines_keepout = STRtree([m.footprint.buffer(300) for m in lay.mines]) if lay.mines else None
    inner_fields = ext.buffer(-100)
    shapely.prepare(inner_fields)

    def free(g) -> bool:
        if not inner_fields.contains(g) or river_union.intersects(g):
            return False
        return mines_keepout is None or len(mines_keepout.query(g, predicate="intersects")) == 0

    # roads and fields along them; forest clearings
    rng = sub_rng(seed, "bench-farms")
    n_roads = max(1, round(size_m / 15000))
    for _ in range(n_roads):
        if rng.random() < 0.5:
            a, b = lay.xy(rng.uniform(0, 1), -0.01), lay.xy(rng.uniform(0, 1), 1.01)
        else:
            a, b = lay.xy(-0.01, rng.uniform(0, 1)), lay.xy(1.01, rng.uniform(0, 1))
        p = meander_path(a, b, rng, amplitude=300.0, wavelength=6000.0, step=10.0)
        lay.roads.append(LineString(p))
        # fields: rectangles on both sides, every few hundred metres, over part of the road's length
        arc = np.r_[0.0, np.cumsum(np.hypot(*np.diff(p, axis=0).T))]
        s = rng.uniform(100, 400)
        while s < arc[-1] - 300:
            i = int(np.searchsorted(arc, s))
            t = p[min(i + 1, len(p) - 1)] - p[max(i - 1, 0)]
            t = t / max(np.hypot(*t), 1e-9)
            n = np.array([-t[1], t[0]])
            along = rng.uniform(200, 450)
            if rng.random() < 0.55:  # farmed stretch
                for side in (1, -1):
                    off = rng.uniform(20, 40)
                    depth = rng.uniform(200, 450)
                    q = p[i]
                    g = Polygon(
                        [
                            q - t * along / 2 + side * n * off,
                            q + t * along / 2 + side * n * off,
                            q + t * along / 2 + side * n * (off + depth),
                            q - t * along / 2 + side * n * (off + depth),
                        ]
                    )
                    if not free(g):
                        continue
                    kind = "bare" if rng.random() < 0.25 else "pasture"
                    lay.fields.append((g, kind, rng.normal(1.0, 0.06, 6).astype(np.float32)))
                    if kind == "pasture" and rng.random() < 0.15:  # fish ponds in a row
                        pw, pd = rng.uniform(40, 90), rng.uniform(40, 100)
                        for m_ in range(int(rng.integers(1, 4))):
                            a0 = -along / 2 + 30 + m_ * (pw + 15)
                            if a0 + pw > along / 2 - 20:
                                break
                            d0 = off + 30
                            pg = Polygon(
                                [
                                    q + t * a0 + side * n * d0,
                                    q + t * (a0 + pw) + side * n * d0,
                                    q + t * (a0 + pw) + side * n * (d0 + pd),
                                    q + t * a0 + side * n * (d0 + pd),
                                ]
                            )
                            lay.fields.append((pg, "farm_pond", rng.normal(1.0, 0.05, 6).astype(np.float32)))
            s += along + rng.uniform(20, 300)
    n_clear = int(round(size_m * size_m / 1e6 / 40))
    for _ in range(n_clear):
        c = _rand_point(lay, rng, 0.02)
        from shapely.affinity import rotate, scale

        g = rotate(scale(Point(c).buffer(1.0, 12), rng.uniform(80, 300), rng.uniform(60, 250)), rng.uniform(0, 180))
        if free(g):
            lay.fields.append(
                (g, "bare" if rng.random() < 0.3 else "pasture", rng.normal(1.0, 0.06, 6).astype(np.float32))
            )
    return lay


# --------------------------------------------------------------------------- seamless textures


def _hash_uniform(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) noise that is a pure function of the global pixel (row, col) and ``key``."""
    with np.errstate(over="ignore"):
        x = (
            (rows.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15))
            ^ (cols.astype(np.uint64)[None, :] * np.uint64(0xC2B2AE3D27D4EB4F))
            ^ np.uint64(key * 0x165667B19E3779F9 % 2**64)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 2**24)


_TEX_NORM: dict[tuple[float, ...], float] = {}


def crown_texture(r0: int, c0: int, h: int, w: int, key: int, sigmas=(0.8, 2.0, 5.0), weights=(0.6, 0.5, 0.3)):
    """Unit-std canopy texture of a window, seamless across windows (filtered with a halo)."""
    halo = int(math.ceil(4 * max(sigmas)))
    rows = np.arange(r0 - halo, r0 + h + halo, dtype=np.int64) + 2**20
    cols = np.arange(c0 - halo, c0 + w + halo, dtype=np.int64) + 2**20
    white = (_hash_uniform(rows, cols, key) - np.float32(0.5)) * np.float32(math.sqrt(12.0))
    out = np.zeros(white.shape, np.float32)
    for s, wt in zip(sigmas, weights):
        out += wt * ndimage.gaussian_filter(white, s, mode="nearest", truncate=3.5)
    k = tuple(sigmas) + tuple(weights)
    if k not in _TEX_NORM:  # the std of filtered unit white noise: measured once on a big sample
        ref = np.zeros((512, 512), np.float32)
        wr = (_hash_uniform(np.arange(512), np.arange(512), 12345) - 0.5) * math.sqrt(12.0)
        for s, wt in zip(sigmas, weights):
            ref += wt * ndimage.gaussian_filter(wr, s, mode="wrap", truncate=3.5)
        _TEX_NORM[k] = float(ref.std())
    return out[halo : halo + h, halo : halo + w] / np.float32(_TEX_NORM[k])


class CoarseField:
    """Smooth unit-std noise on a coarse global grid, bilinearly interpolated for any window."""

    def __init__(self, size: int, scale_px: float, rng: np.random.Generator):
        self.f = max(1, int(scale_px // 3))
        n = size // self.f + 4
        g = ndimage.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), scale_px / self.f, mode="wrap")
        self.grid = (g - g.mean()) / (g.std() + 1e-12)

    def window(self, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        rr = (np.arange(r0, r0 + h, dtype=np.float32) + 0.5) / self.f
        cc = (np.arange(c0, c0 + w, dtype=np.float32) + 0.5) / self.f
        i = np.clip(np.floor(rr).astype(np.int64), 0, self.grid.shape[0] - 2)
        j = np.clip(np.floor(cc).astype(np.int64), 0, self.grid.shape[1] - 2)
        fr = (rr - i)[:, None]
        fc = (cc - j)[None, :]
        g = self.grid
        top = g[i][:, j] * (1 - fc) + g[i][:, j + 1] * fc
        bot = g[i + 1][:, j] * (1 - fc) + g[i + 1][:, j + 1] * fc
        return (top * (1 - fr) + bot * fr).astype(np.float32)


# --------------------------------------------------------------------------- rendering


class Renderer:
    """Renders windows of a layout as (6, h, w) float32 surface reflectance (bands BANDS)."""

    def __init__(self, lay: Layout):
        self.lay = lay
        rng = sub_rng(lay.seed, "bench-surface")
        self.stands = CoarseField(lay.size, 60.0, rng)
        self.light = CoarseField(lay.size, 150.0, rng)
        self.gain = rng.normal(1.0, 0.02, 6).astype(np.float32)
        self.haze = 0.004 * np.array([1.0, 0.7, 0.5, 0.2, 0.05, 0.02], np.float32)

        def tree(geoms):
            return (STRtree(geoms), geoms) if geoms else None

        self.t_fields = tree([f[0] for f in lay.fields])
        self.t_rivers = tree([r[2] for r in lay.rivers])
        self.t_streams = tree([s[0] for s in lay.streams])
        self.t_roads = tree(list(lay.roads))
        self.t_sand = tree(list(lay.sandbars))
        self.t_mines = tree([m.fringe.union(m.footprint) for m in lay.mines])

    @staticmethod
    def _query(t, win_box):
        if t is None:
            return []
        return [int(i) for i in t[0].query(win_box)]

    def render(self, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        lay = self.lay
        tr = lay.transform @ Affine.translation(c0, r0)
        x0, y0 = tr.c, tr.f
        win_box = box(x0 - 20, y0 - h * RES - 20, x0 + w * RES + 20, y0 + 20)
        rng = np.random.default_rng([lay.seed, r0, c0, 99])
        key = lay.seed * 7919 + 1
        tex = crown_texture(r0, c0, h, w, key)
        stands = self.stands.window(r0, c0, h, w)
        light = np.clip(1 + 0.05 * self.light.window(r0, c0, h, w), 0.85, 1.15)
        refl = np.empty((6, h, w), np.float32)
        for b in range(6):
            k_stand = (0.02, 0.02, 0.02, 0.06, 0.04, 0.04)[b]
            refl[b] = SPEC["forest"][b] * (1 + 0.12 * tex + k_stand * stands) * light

        def rast(geoms, all_touched=False):
            geoms = [g for g in geoms if not g.is_empty]
            if not geoms:
                return np.zeros((h, w), bool)
            return rasterio.features.rasterize(
                [(g, 1) for g in geoms], out_shape=(h, w), transform=tr, all_touched=all_touched, dtype="uint8"
            ).astype(bool)

        def paint(mask, spec, alpha=1.0, t=None):
            if not mask.any():
                return
            r, c = np.nonzero(mask)
            s = np.asarray(spec, np.float32)[:, None]
            if t is not None:
                s = s * t[None]
            a = np.float32(alpha)
            refl[:, r, c] = refl[:, r, c] * (1 - a) + a * s

        for i in self._query(self.t_fields, win_box):
            g, kind, gain = lay.fields[i]
            m = rast([g])
            if kind == "farm_pond":
                paint(m, SPEC["farm_pond"] * gain)
            else:
                paint(m, SPEC[kind] * gain, t=1 + 0.05 * tex[m])
        for i in self._query(self.t_roads, win_box):
            paint(rast([lay.roads[i]]), SPEC["road"], 0.85)
        for i in self._query(self.t_streams, win_box):
            line, hw, _ = lay.streams[i]
            paint(rast([line]), SPEC["water"], 0.65 * min(1.0, 2 * hw / RES + 0.3))
        for i in self._query(self.t_rivers, win_box):
            m = rast([lay.rivers[i][2]])
            paint(m, SPEC["water"], t=1 + 0.04 * tex[m])
        for i in self._query(self.t_sand, win_box):
            m = rast([lay.sandbars[i]])
            paint(m, SPEC["sandbar"], t=1 + 0.05 * tex[m])
        for i in self._query(self.t_mines, win_box):
            mine = lay.mines[i]
            for geoms, name in (([mine.fringe], "fringe"), ([mine.sediment], "sediment")):
                m = rast(geoms)
                paint(m, SPEC[name], t=1 + 0.06 * rng.standard_normal(int(m.sum())).astype(np.float32))
            for p, turb in zip(mine.ponds, mine.turbidity):
                m = rast([p])
                paint(m, SPEC["pond"], t=turb * (1 + 0.06 * rng.standard_normal(int(m.sum())).astype(np.float32)))
        refl = refl * self.gain[:, None, None] + self.haze[:, None, None]
        for b in range(6):
            band = refl[b]
            if b >= 4:  # 20 m bands: 2x2 means (windows start on even pixels)
                hh, ww = h // 2 * 2, w // 2 * 2
                m = band[:hh, :ww].reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))
                band[:hh, :ww] = np.repeat(np.repeat(m, 2, axis=0), 2, axis=1)
            band += NOISE[b] * rng.standard_normal(band.shape, dtype=np.float32)
        return refl


def to_dn(refl: np.ndarray) -> np.ndarray:
    return np.clip(np.round(refl * DN_SCALE), 1, 65535).astype(np.uint16)


def write_granule(path: str | Path, lay: Layout, block: int = 1024, threads: int | None = None) -> Path:
    """Render ``lay`` block by block into a tiled, ZSTD-compressed uint16 GeoTIFF (atomic); ZSTD as the
    workflow's composite_cell writes its composites."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(
        driver="GTiff",
        height=lay.size,
        width=lay.size,
        count=6,
        dtype="uint16",
        crs=CRS,
        transform=lay.transform,
        nodata=0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="zstd",
        zstd_level=1,
        predictor=2,
        interleave="pixel",
        bigtiff="if_safer",
        num_threads=str(threads or os.cpu_count() or 1),
    )
    ren = Renderer(lay)
    # A killed render leaves a temporary file that the next write in the folder removes (garimpo.atomic).
    with atomic_path(path, suffix=".tif") as tmp, rasterio.open(tmp, "w", **prof) as dst:
        for i, b in enumerate(BANDS, start=1):
            dst.set_band_description(i, b)
        dst.scales = [1.0 / DN_SCALE] * 6
        dst.offsets = [0.0] * 6
        dst.update_tags(
            generator="garimpo.synthetic.bench_world",
            seed=str(lay.seed),
            dn_offset_removed="1000",
            note="synthetic, NOT real imagery; DN = reflectance x 10000",
        )
        for r0 in range(0, lay.size, block):
            for c0 in range(0, lay.size, block):
                h, w = min(block, lay.size - r0), min(block, lay.size - c0)
                dst.write(to_dn(ren.render(r0, c0, h, w)), window=rasterio.windows.Window(c0, r0, w, h))
    return path


def truth_features(lay: Layout) -> dict:
    """Mines (footprints) and hard negatives as a GeoJSON FeatureCollection in the granule CRS."""
    feats = [
        {
            "type": "Feature",
            "properties": {"kind": "mine", "id": i, "area_ha": round(m.area_ha, 3)},
            "geometry": mapping(m.footprint),
        }
        for i, m in enumerate(lay.mines)
    ]
    for g, kind, _ in lay.fields:
        feats.append({"type": "Feature", "properties": {"kind": kind}, "geometry": mapping(g)})
    for g in lay.sandbars:
        if not g.is_empty:
            feats.append({"type": "Feature", "properties": {"kind": "sandbar"}, "geometry": mapping(g)})
    return {"type": "FeatureCollection", "crs_name": CRS, "features": feats}


def generate(
    path: str | Path,
    size: int,
    seed: int,
    x0: float = 600000.0,
    y0: float = 9320000.0,
    mined_fraction: float = 0.01,
    threads: int | None = None,
) -> dict:
    """Write the granule and ``<path>.truth.geojson``; returns a summary."""
    t0 = time.time()
    lay = make_layout(size, seed, x0, y0, mined_fraction)
    t1 = time.time()
    write_granule(path, lay, threads=threads)
    truth = Path(str(path) + ".truth.geojson")
    truth.write_text(json.dumps(truth_features(lay)))
    areas = np.array([m.area_ha for m in lay.mines])
    return {
        "path": str(path),
        "size_px": size,
        "seed": seed,
        "n_mines": len(lay.mines),
        "mined_fraction": float(areas.sum() * 1e4 / (size * RES) ** 2) if len(areas) else 0.0,
        "mine_ha_min_median_max": [round(float(v), 2) for v in np.percentile(areas, [0, 50, 100])]
        if len(areas)
        else [],
        "n_fields": len(lay.fields),
        "n_sandbars": len(lay.sandbars),
        "n_streams": len(lay.streams),
        "n_roads": len(lay.roads),
        "layout_s": round(t1 - t0, 1),
        "render_s": round(time.time() - t1, 1),
    }
