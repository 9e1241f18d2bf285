"""Change over the periods, on the ground: each period's detections and what each scan saw, cell by cell,
become the region's latest detections with their status, the new mining of every period and the cumulative
footprint.

Per cell, everything is laid on the unit grid of its chip lattice (``garimpo.detection.coverage``): the
detections of every period are rasterised there (a unit belongs to a detection when its centre is inside it;
detections are unions of chip squares, themselves whole units), the clear-pixel counts say where each period
observed the ground, and ``garimpo.change.state`` decides new / persisting / unknown unit by unit. Units are
turned back into polygons per cell, clipped to the cell (cells partition the plane: nothing counted twice),
joined across cell edges and cut to the detection they belong to, so outlines keep the detections' own edges
(the region's boundary included). One cell is held in memory at a time.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio.features
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from garimpo.change.state import (
    NEW,
    PERSISTING,
    UNKNOWN,
    clear_chips,
    covering,
    first_last,
    observed_for,
    observed_units,
    positive_chips,
    unit_states,
)
from garimpo.detection.chip_scores import Coverage
from garimpo.detection.polygons import TOUCH_DEG
from garimpo.geo.cells import GRID_CRS, cell_polygons
from garimpo.geo.geojson import geodesic_area_ha, reproject

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    """The change products of a region. Features are ``{"geometry": shapely lon/lat, "properties": {...}}``.

    ``latest``: the last period's detections with ``status`` (new / persisting / unknown), ``first_detected``,
    ``last_detected`` (period names) and ``new_area_ha``; ``changes``: period -> its new mining (kinds
    ``new_site``, ``expansion``, and ``unknown`` when asked for); ``footprint``: every ground ever detected,
    one feature per (first_detected, last_detected); ``summary``: period -> observed_fraction (share of the
    region's units observed), new_ha, expansion_ha, unknown_ha, n_new_sites, n_expansions.
    """

    latest: list[dict]
    changes: dict[str, list[dict]]
    footprint: list[dict]
    summary: dict[str, dict] = field(default_factory=dict)


def _unit_centres(cov: Coverage) -> tuple[np.ndarray, np.ndarray]:
    uh, uw = cov.clear_px.shape
    cols, rows = np.meshgrid(np.arange(uw) + 0.5, np.arange(uh) + 0.5)
    x, y = cov.unit_transform @ (cols, rows)
    return np.asarray(x), np.asarray(y)


def _owned(cov: Coverage, cell_box) -> np.ndarray:
    """Units whose centre lies in the cell (its EPSG:6933 box): each unit of the region counted once."""
    x, y = _unit_centres(cov)
    gx, gy = Transformer.from_crs(cov.crs, GRID_CRS, always_xy=True).transform(x, y)
    x0, y0, x1, y1 = cell_box.bounds
    return (gx >= x0) & (gx < x1) & (gy >= y0) & (gy < y1)


def _burn(geoms: Sequence, values: Sequence[int], cov: Coverage, crs_from: str = "EPSG:4326") -> np.ndarray:
    """int32 [UH, UW]: ``values[i]`` on the units whose centre is in ``geoms[i]`` (lon/lat), 0 elsewhere."""
    shape_ = cov.clear_px.shape
    if not len(geoms):
        return np.zeros(shape_, np.int32)
    pairs = [(reproject(g, crs_from, cov.crs), int(v)) for g, v in zip(geoms, values) if not g.is_empty]
    if not pairs:
        return np.zeros(shape_, np.int32)
    return rasterio.features.rasterize(pairs, out_shape=shape_, transform=cov.unit_transform, dtype="int32")


def _pieces(values: np.ndarray, cov: Coverage, cell_ll) -> dict[int, list]:
    """Polygons (lon/lat, clipped to the cell) of each non-zero value of ``values`` [UH, UW]."""
    out: dict[int, list] = defaultdict(list)
    if not values.any():
        return out
    to_ll = Transformer.from_crs(cov.crs, "EPSG:4326", always_xy=True)
    for geom, v in rasterio.features.shapes(
        values.astype(np.int32), mask=values > 0, transform=cov.unit_transform, connectivity=4
    ):
        poly = shapely.transform(shape(geom), lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
        clipped = poly.intersection(cell_ll)
        if not clipped.is_empty and clipped.area > 0:
            out[int(v)].append(clipped)
    return out


def _join(pieces: Sequence, within=None):
    """One polygonal geometry from pieces that touch across cell edges, cut to ``within`` when given."""
    geom = shapely.union_all(list(pieces), grid_size=TOUCH_DEG)
    if within is not None:
        geom = shapely.intersection(geom, within, grid_size=TOUCH_DEG)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        polys = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(polys) if polys else shapely.Polygon()
    return geom


def _same_grid(cell: str, periods: Sequence[str], covs: Sequence[Coverage]) -> None:
    ref = covs[0]
    for name, cov in zip(periods[1:], covs[1:]):
        if (cov.clear_px.shape, cov.unit_px, cov.chip_px, cov.stride, cov.transform, cov.crs) != (
            ref.clear_px.shape,
            ref.unit_px,
            ref.chip_px,
            ref.stride,
            ref.transform,
            ref.crs,
        ):
            raise ValueError(
                f"cell {cell}: the scans of periods {periods[0]} and {name} lie on different grids or lattices "
                f"({ref.clear_px.shape} units of {ref.unit_px} px vs {cov.clear_px.shape} of {cov.unit_px} px); "
                "one of them is stale: rerun with --forcerun detect_cell so every period is scanned alike"
            )


def track_region(
    periods: Sequence[str],
    detections: Mapping[str, Sequence[Mapping]],
    coverage: Callable[[str, str], Coverage],
    cells: Sequence[str],
    size_m: float,
    region_lonlat,
    min_clear: float,
    include_unknown: bool = False,
    thresholds: Mapping[str, tuple[float, float]] | None = None,
) -> Tracked:
    """The change products of a region from its per-period detections and what each cell's scan saw.

    ``periods``: names in time order; ``detections``: period -> the merge's features (shapely lon/lat
    geometries with properties, among them ``id`` and ``score``); ``coverage(cell, period)``: that scan's
    :class:`~garimpo.detection.chip_scores.Coverage`; ``cells``: the region's cell ids, of side ``size_m``
    (metres, the grid of ``garimpo.geo.cells``); ``region_lonlat``: the region (shapely, lon/lat);
    ``min_clear``: config ``change.min_clear_fraction``; ``include_unknown``: also return ground detected
    without an earlier clear look, as change features of kind ``unknown``; ``thresholds``: period -> the
    (threshold, isolated threshold) its detections were made with: ground under a chip scoring at least the
    first is mining in that period's history, and new ground must lie under a chip at the second
    (``garimpo.change.state``); without them only the reported detections count, all of them confident.

    Decisions per unit are ``garimpo.change.state.unit_states``; ``first_detected``/``last_detected`` are the
    first and last periods with mining on a detection's ground. A detection's ``status`` is ``persisting``
    when any of its ground was detected at its latest earlier clear look, else ``new`` when any of it was
    seen clear without mining then, else ``unknown``. Its new ground is a change feature of kind
    ``expansion`` when the detection also has persisting ground, else ``new_site``.

    Raises:
        ValueError: the scans of one cell differ in grid between periods (one is stale), or a chip-score file
            has no clear-pixel counts (``read_coverage``).
    """
    names = list(periods)
    n = len(names)
    feats = {p: list(detections[p]) for p in names}
    trees = {p: shapely.STRtree([f["geometry"] for f in feats[p]]) for p in names}
    # Per period and detection (1-based label): unit counts by status, and what the new units were compared with.
    counts = {p: np.zeros((len(feats[p]) + 1, 4), np.int64) for p in names}
    compared_with: dict[str, dict[int, Counter]] = {p: defaultdict(Counter) for p in names}
    first_of = np.full(len(feats[names[-1]]) + 1, n, np.int64)
    pieces: dict[tuple[str, int], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    foot: dict[int, list] = defaultdict(list)
    observed = np.zeros(n, np.int64)
    total_units = 0
    for cell in sorted(cells):
        covs = [coverage(cell, p) for p in names]
        _same_grid(cell, names, covs)
        cov = covs[0]
        cell_box, cell_ll = cell_polygons(cell, size_m)
        own = _owned(cov, cell_box)
        part = region_lonlat.intersection(cell_ll)
        in_region = _burn([part], [1], cov) > 0 if not part.is_empty else np.zeros(own.shape, bool)
        counted = own & in_region
        total_units += int(counted.sum())
        labels = np.zeros((n, *own.shape), np.int32)
        seen = np.zeros((n, *own.shape), bool)  # observed, whatever the detections
        clear = np.zeros((n, *own.shape), bool)  # lattice chips clear enough, at their top-left unit
        positive = np.zeros((n, *own.shape), bool)  # chips at the threshold, at their top-left unit
        confident = np.zeros((n, *own.shape), bool)  # under a chip at the seed threshold
        k = cov.chip_px // cov.unit_px
        for i, (p, c) in enumerate(zip(names, covs)):
            near = trees[p].query(cell_ll)
            labels[i] = _burn([feats[p][j]["geometry"] for j in near], [j + 1 for j in near], cov)
            clear[i] = clear_chips(c.clear_px, c.unit_px, c.chip_px, c.stride, min_clear)
            seen[i] = observed_units(c.clear_px, c.unit_px, c.chip_px, c.stride, min_clear)
            if thresholds is not None:
                low, high = thresholds[p]
                positive[i] = positive_chips(c.rows, c.cols, c.scores, low, c.unit_px, own.shape)
                confident[i] = covering(positive_chips(c.rows, c.cols, c.scores, high, c.unit_px, own.shape), k) > 0
        mined = np.stack([covering(positive[i], k) > 0 for i in range(n)]) | (labels > 0)
        if thresholds is None:  # only the reported detections are known: all of them confident
            confident = labels > 0
        # observed[p, q]: whether q saw the unit the way p's detections see it (observed_for)
        pair = np.zeros((n, n, *own.shape), bool)
        for i in range(n):
            for q in range(i):
                pair[i, q] = observed_for(positive[i], clear[q], seen[q], k)
        status, compared = unit_states(labels > 0, pair, mined, confident)
        observed += (seen | mined)[:, counted].sum(axis=1)
        for i, p in enumerate(names):
            lab, st = labels[i][own], status[i][own]
            np.add.at(counts[p], (lab, st), 1)
            new = own & (status[i] == NEW)
            for label, earlier in zip(labels[i][new], compared[i][new]):
                compared_with[p][int(label)][int(earlier)] += 1
            kinds = [NEW, UNKNOWN] if include_unknown else [NEW]
            for kind in kinds:
                values = np.where(status[i] == kind, labels[i], 0)
                for label, geoms in _pieces(values, cov, cell_ll).items():
                    pieces[(p, kind)][label] += geoms
        first, last = first_last(mined)
        latest_lab = labels[-1][own]
        np.minimum.at(first_of, latest_lab, np.where(first[own] >= 0, first[own], n).astype(np.int64))
        code = np.where((labels > 0).any(axis=0), first.astype(np.int32) * n + last + 1, 0)
        for value, geoms in _pieces(code, cov, cell_ll).items():
            foot[value] += geoms

    changes: dict[str, list[dict]] = {}
    summary: dict[str, dict] = {}
    new_area_of: dict[int, float] = {}
    for i, p in enumerate(names):
        out = []
        for kind in (NEW, UNKNOWN):
            for label, geoms in sorted(pieces[(p, kind)].items()):
                det = feats[p][label - 1]
                geom = _join(geoms, det["geometry"])
                if geom.is_empty:
                    continue
                area = round(geodesic_area_ha(geom), 4)
                if kind == NEW:
                    grows = counts[p][label, PERSISTING] > 0
                    what = "expansion" if grows else "new_site"
                    if p == names[-1]:
                        new_area_of[label] = area
                else:
                    what = "unknown"
                earlier = compared_with[p].get(label)
                out.append(
                    {
                        "geometry": geom,
                        "properties": {
                            "period": p,
                            "kind": what,
                            "area_ha": area,
                            "detection": det["properties"].get("id"),
                            "score": det["properties"].get("score"),
                            "compared_with": names[earlier.most_common(1)[0][0]] if earlier else None,
                        },
                    }
                )
        out.sort(key=lambda f: (f["properties"]["kind"], -f["properties"]["area_ha"]))
        for k, f in enumerate(out, start=1):
            f["properties"] = {"id": f"chg-{p}-{k:05d}", **f["properties"]}
        changes[p] = out
        by_kind: dict[str, float] = defaultdict(float)
        for f in out:
            by_kind[f["properties"]["kind"]] += f["properties"]["area_ha"]
        summary[p] = {
            "observed_fraction": round(float(observed[i]) / total_units, 4) if total_units else 0.0,
            "detections": len(feats[p]),
            "n_new_sites": sum(f["properties"]["kind"] == "new_site" for f in out),
            "n_expansions": sum(f["properties"]["kind"] == "expansion" for f in out),
            "new_ha": round(by_kind["new_site"] + by_kind["expansion"], 4),
            "expansion_ha": round(by_kind["expansion"], 4),
            "unknown_ha": round(by_kind["unknown"], 4) if include_unknown else None,
        }

    latest_name = names[-1]
    latest = []
    for label, det in enumerate(feats[latest_name], start=1):
        c = counts[latest_name][label]
        status_name = "persisting" if c[PERSISTING] else "new" if c[NEW] else "unknown"
        first_i = int(first_of[label]) if first_of[label] < n else n - 1  # no unit of its own: a sliver
        latest.append(
            {
                "geometry": det["geometry"],
                "properties": {
                    **det["properties"],
                    "status": status_name,
                    "first_detected": names[first_i],
                    "last_detected": latest_name,
                    "new_area_ha": new_area_of.get(label, 0.0),
                },
            }
        )

    everything = shapely.union_all([f["geometry"] for p in names for f in feats[p]], grid_size=TOUCH_DEG)
    footprint = []
    for value in sorted(foot):
        first_i, last_i = divmod(value - 1, n)
        geom = _join(foot[value], everything)
        if geom.is_empty:
            continue
        footprint.append(
            {
                "geometry": geom,
                "properties": {
                    "first_detected": names[first_i],
                    "last_detected": names[last_i],
                    "area_ha": round(geodesic_area_ha(geom), 4),
                },
            }
        )
    log.info(
        "tracked %d periods over %d cells: %s",
        n,
        len(cells),
        "; ".join(f"{p}: {s['n_new_sites']} new sites, {s['n_expansions']} expansions" for p, s in summary.items()),
    )
    return Tracked(latest, changes, footprint, summary)
