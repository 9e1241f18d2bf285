"""Mining inside protected areas and indigenous territories: a table per area and a map.

Mined area is the geodesic area of (union of detections) ∩ area, so overlapping detections (two
years, two models) are not counted twice. Areas are matched to detections with an STRtree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape

from garimpo.detection.polygons import from_geojson
from garimpo.errors import InputDataError
from garimpo.geo.geojson import geodesic_area_ha
from garimpo.geo.vector import read_polygon_features

DETECTION_COLOUR = "#111111"  # stands out on the yellow-to-red shading
ATTRIBUTION = "Contains modified Copernicus Sentinel data; boundaries: Earth Genome, Amazon Mining Watch (CC BY 4.0)"


def _geom(item):
    """A shapely geometry from a shapely geometry, a feature with a shapely geometry, or a GeoJSON feature."""
    if isinstance(item, Mapping):
        g = item["geometry"]
        return g if isinstance(g, shapely.Geometry) else shape(g)
    return item


def _props(item) -> dict:
    return dict(item.get("properties") or {}) if isinstance(item, Mapping) else {}


def encroachment_table(
    detections: Sequence,
    areas: Sequence[Mapping],
    name_field: str,
    id_field: str | None = None,
    extra_fields: Sequence[str] = (),
    include_empty: bool = False,
) -> pd.DataFrame:
    """One row per area (protected area, indigenous territory) with mining in it, largest mined area first.

    ``detections``: lon/lat polygons (shapely geometries or features); ``areas``: features with
    ``properties``. Columns: ``name`` (from ``name_field``), ``id`` (from ``id_field``, if given), the
    ``extra_fields``, ``n_detections`` (detections overlapping the area with positive area),
    ``mined_area_ha`` (geodesic area of the union of detections ∩ area), ``area_ha`` (the area's own
    geodesic area), ``share_mined_pct``. ``include_empty`` also lists areas without detections (zeros).
    """
    dets = np.array([_geom(d) for d in detections], dtype=object)
    tree = shapely.STRtree(dets)
    rows = []
    for item in areas:
        geom, props = _geom(item), _props(item)
        hits = tree.query(geom, predicate="intersects") if len(dets) else np.zeros(0, int)
        parts = shapely.intersection(dets[hits], geom) if len(hits) else np.zeros(0, object)
        parts = parts[shapely.area(parts) > 0] if len(parts) else parts
        if len(parts) == 0 and not include_empty:
            continue
        # Union first: overlapping detections share their area once.
        mined = geodesic_area_ha(shapely.union_all(parts)) if len(parts) else 0.0
        total = geodesic_area_ha(geom)
        row = {"name": props.get(name_field)}
        if id_field:
            row["id"] = props.get(id_field)
        row.update({f: props.get(f) for f in extra_fields})
        row.update(
            n_detections=int(len(parts)),
            mined_area_ha=mined,
            area_ha=total,
            share_mined_pct=100.0 * mined / total if total > 0 else 0.0,
        )
        rows.append(row)
    columns = [
        "name",
        *(["id"] if id_field else []),
        *extra_fields,
        "n_detections",
        "mined_area_ha",
        "area_ha",
        "share_mined_pct",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(
        ["mined_area_ha", "name"], ascending=[False, True], kind="stable", na_position="last"
    ).reset_index(drop=True)


def area_stats(
    detections_path: str | Path,
    areas_path: str | Path,
    name_field: str,
    id_field: str | None = None,
    layer: str | None = None,
    include_empty: bool = False,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """:func:`encroachment_table` from files: ``(table, areas, detections)``, as the rule computes it.

    ``detections_path``: the workflow's own detections GeoJSON (lon/lat). ``areas_path``: any vector
    file garimpo.geo.vector reads (GeoJSON, Shapefile, GeoPackage ``layer``, FlatGeobuf), reprojected to
    lon/lat, invalid polygons repaired; ``encoding`` its text encoding when not its own. Raises InputDataError when
    ``name_field`` or ``id_field`` is not
    a field of the areas file (config encroachment.name_field / id_field).
    """
    detections = from_geojson(json.loads(Path(detections_path).read_text()))
    areas = read_polygon_features(areas_path, layer, key="encroachment.areas", encoding=encoding)
    fields = set().union(*(a["properties"] for a in areas)) if areas else set()
    for key, field in (("name_field", name_field), ("id_field", id_field)):
        if areas and field is not None and field not in fields:
            raise InputDataError(
                f"{areas_path}: no field {field!r} for config encroachment.{key}; the file has {sorted(fields)}"
            )
    table = encroachment_table(detections, areas, name_field, id_field, include_empty=include_empty)
    return table, areas, detections


def _path(geom):
    """A matplotlib Path of a (multi)polygon, holes included."""
    from matplotlib.path import Path as MplPath

    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    paths = [MplPath(np.asarray(ring.coords)[:, :2], closed=True) for p in polys for ring in [p.exterior, *p.interiors]]
    return MplPath.make_compound_path(*paths) if paths else None


def plot_encroachment_map(
    table: pd.DataFrame,
    areas: Sequence[Mapping],
    detections: Sequence,
    region,
    path: str | Path,
    attribution: str = ATTRIBUTION,
    key: str = "name",
    area_field: str | None = None,
    title: str = "Mining in protected areas",
    n_labels: int = 8,
) -> Path:
    """PNG map: areas shaded by mined hectares (log scale), detections in black, the region outline.

    ``table`` comes from :func:`encroachment_table`; its column ``key`` is matched to the areas'
    property ``area_field`` (defaults to the same name as ``key``; pass the id field when names repeat).
    Drawn in lon/lat with the aspect of the region's mean latitude.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import PathPatch

    area_field = area_field or key
    mined = {r[key]: r["mined_area_ha"] for _, r in table.iterrows() if r["mined_area_ha"] > 0}
    labels = {
        r[key]: r["name"] if isinstance(r.get("name"), str) and r["name"] else r[key] for _, r in table.iterrows()
    }
    vmax = max(mined.values(), default=1.0)
    # Floor the scale at 1 ha (or less if needed) so the least mined area is not drawn as if clean.
    norm = LogNorm(vmin=max(0.1, min([1.0, *mined.values()])), vmax=max(vmax, 1.0))
    cmap = plt.get_cmap("YlOrRd")

    fig, ax = plt.subplots(figsize=(10, 8), dpi=120)
    for item in areas:
        geom, props = _geom(item), _props(item)
        p = _path(geom)
        if p is None:
            continue
        value = mined.get(props.get(area_field))
        colour = cmap(norm(value)) if value else "#e6e6e6"
        ax.add_patch(PathPatch(p, facecolor=colour, edgecolor="#666666", linewidth=0.3))
    for d in detections:
        p = _path(_geom(d))
        if p is not None:
            ax.add_patch(PathPatch(p, facecolor=DETECTION_COLOUR, edgecolor=DETECTION_COLOUR, linewidth=0.4))
    if region is not None:
        ax.add_patch(PathPatch(_path(region), facecolor="none", edgecolor="#1f3b73", linewidth=1.0))
        minx, miny, maxx, maxy = region.bounds
    else:
        minx, miny, maxx, maxy = shapely.union_all([_geom(a) for a in areas]).bounds
    pad = 0.02 * max(maxx - minx, maxy - miny)
    ax.set_xlim(minx - pad, maxx + pad)
    ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect(1.0 / np.cos(np.radians((miny + maxy) / 2)))
    # Name the most affected areas at their representative point.
    centres = {_props(a).get(area_field): _geom(a).representative_point() for a in areas}
    for name in list(mined)[:n_labels]:
        if name in centres and name is not None:
            pt = centres[name]
            ax.annotate(
                str(labels.get(name, name)),
                (pt.x, pt.y),
                fontsize=7,
                ha="center",
                color="#111111",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.6, "linewidth": 0},
            )
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.7, label="mined area inside (ha, log scale)")
    handles = [
        Line2D([], [], color=DETECTION_COLOUR, marker="s", linestyle="none", label=f"detections ({len(detections)})"),
        Line2D([], [], color="#1f3b73", label="region"),
        Line2D(
            [],
            [],
            color="#e6e6e6",
            markeredgecolor="#666666",
            marker="s",
            linestyle="none",
            label="area without detections",
        ),
    ]
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_title(title)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    fig.text(0.99, 0.005, attribution, fontsize=7, color="#555555", ha="right", va="bottom")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path
