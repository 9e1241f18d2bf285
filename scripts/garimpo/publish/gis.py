"""GIS exports of the workflow's GeoJSON products: one GeoPackage, one KML and a CSV table per region.

The GeoJSON products (RFC 7946, lon/lat) keep list and nested properties (``scene_ids``, ``cells``,
``dates``); Shapefile, GeoPackage and KML fields hold one scalar each, so the exports carry the flat form
of :func:`flat_properties` (lists as ``"; "``-joined text, dicts as JSON text). Files are written by
GDAL/OGR through pyogrio's raw API (https://pyogrio.readthedocs.io) with WKB geometries from shapely,
always in EPSG:4326, and atomically (:func:`garimpo.atomic.atomic_path`): a reader never sees half a
file. GDAL drivers: GPKG (https://gdal.org/en/stable/drivers/vector/gpkg.html), LIBKML
(https://gdal.org/en/stable/drivers/vector/libkml.html), KML (the fallback where LIBKML fails).

Every feature exported must have a Polygon or MultiPolygon geometry; anything else raises
:class:`~garimpo.errors.InputDataError` naming the source, the layer and the feature.
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from shapely.errors import GeometryTypeError
from shapely.geometry import mapping, shape

from garimpo.atomic import atomic_path, scratch_dir
from garimpo.errors import InputDataError
from garimpo.geo.geojson import geodesic_area_ha

log = logging.getLogger(__name__)

CRS = "EPSG:4326"
LIST_SEPARATOR = "; "
# detections_table's leading columns, in this order; the flat properties follow.
TABLE_COLUMNS = (
    "id",
    "lon",
    "lat",
    "area_ha",
    "score",
    "status",
    "first_detected",
    "last_detected",
    "protected_area",
    "protected_area_id",
)
CENTROID_DECIMALS = 6  # 1e-6 degree is at most 0.11 m
KML_DRIVERS = ("LIBKML", "KML")  # tried in order
KML_NS = "http://www.opengis.net/kml/2.2"
RESERVED_FIELDS = ("fid", "geom")  # a GeoPackage's own columns (GDAL's defaults)
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)

Feature = Mapping  # GeoJSON-like: {"geometry": GeoJSON mapping or shapely geometry, "properties": {...}}


def flat_properties(props: Mapping) -> dict:
    """The export form of a feature's properties: one scalar per key, so Shapefile, GeoPackage and QGIS keep them.

    Lists and tuples become their items joined by ``"; "`` under the same key (``scene_ids: ["a", "b"]``
    -> ``"a; b"``; an item that is None is an empty string, a nested list or dict its JSON text); dicts
    become JSON text (UTF-8, keys in their order); None stays None; bool, int, float and str are kept as
    they are; numpy scalars become the Python scalar; anything else its ``str()``. The GeoJSON products
    keep the lists: this is only for formats whose fields are scalars.
    """
    return {str(key): _flat(value) for key, value in props.items()}


def _flat(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(_item_text(v) for v in value)
    if isinstance(value, Mapping):
        return _json(value)
    return str(value)


def _item_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, Mapping)):
        return _json(value)
    return str(_flat(value))


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------------------------- features


def _features(items) -> list:
    """The features of a sequence of features or of a FeatureCollection mapping."""
    if isinstance(items, Mapping):
        return list(items.get("features") or [])
    return list(items)


def _props(feature) -> dict:
    return dict(feature.get("properties") or {})


def _label(feature, index: int) -> str:
    """How a feature is named in messages: its id, else its position (from 1)."""
    props = feature.get("properties") or {}
    fid = props.get("id", feature.get("id"))
    return f"feature {fid!r}" if fid is not None else f"feature #{index + 1} (no id)"


def _where(source: str | None, layer: str | None) -> str:
    return ", ".join(p for p in (source, f"layer {layer!r}" if layer else None) if p) or "input"


def _polygonal(feature, index: int, source: str | None, layer: str | None) -> shapely.MultiPolygon:
    """The feature's geometry as a shapely MultiPolygon (a Polygon promoted to one part).

    Raises InputDataError for a missing, unreadable or non-polygonal geometry.
    """
    where, what = _where(source, layer), _label(feature, index)
    if not isinstance(feature, Mapping):
        raise InputDataError(f"{where}: {what} is a {type(feature).__name__}, not a GeoJSON-like feature")
    geom = feature.get("geometry")
    if geom is None:
        raise InputDataError(
            f"{where}: {what} has no geometry; every published feature must be a polygon: "
            "remove it or re-run the rule that wrote the product"
        )
    if not isinstance(geom, shapely.Geometry):
        try:
            geom = shape(geom)
        except (GeometryTypeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise InputDataError(f"{where}: {what} has an unreadable geometry ({err})") from err
    if geom.geom_type == "Polygon":
        return shapely.MultiPolygon([geom]) if not geom.is_empty else shapely.MultiPolygon()
    if geom.geom_type == "MultiPolygon":
        return geom
    raise InputDataError(
        f"{where}: {what} is a {geom.geom_type}, not a Polygon or MultiPolygon; only polygons are published"
    )


# ------------------------------------------------------------------------------------------ layer arrays


@dataclass(frozen=True)
class _Layer:
    """One layer ready for pyogrio.raw.write: WKB geometries and one (array, null mask) per field."""

    name: str
    wkb: np.ndarray
    fields: list[str]
    columns: list[np.ndarray]
    masks: list[np.ndarray | None]


def _column(values: list) -> tuple[np.ndarray, np.ndarray | None]:
    """A field's values as a typed array and its null mask (None when nothing is null).

    All bool -> bool; all int (within int64) -> int64; all int or float -> float64 (nulls as NaN, which
    pyogrio writes as null); all else, mixed types included -> str (object array, None for null).
    """
    mask = np.array([v is None for v in values], dtype=bool)
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds == {bool}:
        return np.array([bool(v) for v in values], dtype=bool), mask if mask.any() else None
    if kinds == {int} and all(_INT64[0] <= v <= _INT64[1] for v in present):
        return np.array([0 if v is None else v for v in values], dtype=np.int64), mask if mask.any() else None
    if kinds and kinds <= {int, float}:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64), None
    return np.array([None if v is None else v if isinstance(v, str) else str(v) for v in values], dtype=object), None


def _layer(
    name: str, features, fields: Sequence[str] = (), source: str | None = None, name_ids: bool = False
) -> _Layer:
    """Check and flatten one layer's features. ``fields`` come first (and exist even in an empty layer).

    ``name_ids``: give features without an ``id`` one (``"{layer} {n}"``), for KML placemark names.
    """
    feats = _features(features)
    geoms = [_polygonal(f, i, source, name) for i, f in enumerate(feats)]
    props = [flat_properties(_props(f)) for f in feats]
    if name_ids:
        for i, (feat, p) in enumerate(zip(feats, props)):
            if p.get("id") is None:
                p["id"] = feat.get("id") if feat.get("id") is not None else f"{name} {i + 1}"
    keys = list(dict.fromkeys([*fields, *(k for p in props for k in p)]))
    arrays = [_column([p.get(k) for p in props]) for k in keys]
    wkb = np.array(shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else [], dtype=object)
    return _Layer(name, wkb, _field_names(keys), [a for a, _ in arrays], [m for _, m in arrays])


def _field_names(keys: list[str]) -> list[str]:
    """Property names as field names: SQLite's column names ignore case, and a GeoPackage's ``fid`` and
    ``geom`` are its own, so a name equal to one of those or to an earlier one (ignoring case) gets
    ``_2``, ``_3``... (``fid`` -> ``fid_2``; ``Name`` after ``name`` -> ``Name_2``)."""
    taken = set(RESERVED_FIELDS)
    out = []
    for key in keys:
        name, n = key, 1
        while name.lower() in taken:
            n += 1
            name = f"{key}_{n}"
        taken.add(name.lower())
        out.append(name)
    return out


def _write_layer(path: str | os.PathLike, layer: _Layer, driver: str, **options) -> None:
    pyogrio.raw.write(
        str(path),
        layer.wkb,
        layer.columns,
        layer.fields,
        field_mask=layer.masks if any(m is not None for m in layer.masks) else None,
        layer=layer.name,
        driver=driver,
        geometry_type="MultiPolygon",
        crs=CRS,
        promote_to_multi=True,
        **options,
    )


def _prepared(layers: Mapping[str, Sequence], fields, source, name_ids: bool = False) -> list[_Layer]:
    if not layers:
        raise ValueError("no layers to write: pass at least one (an empty list of features is a layer)")
    fields = fields or {}
    return [_layer(str(name), feats, fields.get(name, ()), source, name_ids=name_ids) for name, feats in layers.items()]


# --------------------------------------------------------------------------------------------- GeoPackage


def write_gpkg(
    path: str | Path,
    layers: Mapping[str, Sequence[Feature]],
    fields: Mapping[str, Sequence[str]] | None = None,
    source: str | None = None,
) -> Path:
    """Write one GeoPackage holding one layer per product and period, in EPSG:4326; returns ``path``.

    ``layers`` maps a layer name (``"detections_latest"``, ``"detections_2023"``, ``"change_2023"``,
    ``"footprint"``, ``"protected_areas"``) to its features: GeoJSON-like dicts whose geometry is a GeoJSON
    mapping or a shapely geometry (a FeatureCollection mapping is taken for its features). Every layer is
    MultiPolygon (polygons promoted to one part) and its fields are the union of its features'
    :func:`flat_properties` keys in first-seen order, typed from the values: int64, float64 (ints and
    floats mixed), bool, else text (mixed types included); missing values are null. A key equal to
    ``fid`` or ``geom`` (the GeoPackage's own columns) or to an earlier key but for case gets a suffix:
    ``fid_2``, ``Name_2``. ``fields`` maps a
    layer name to field names it gets first, even when it has no features (as text then), so an empty
    period still has its layer and columns; a layer with no features and no ``fields`` has only its
    geometry column. Written to a temporary file beside ``path`` and moved over it once complete.

    Raises InputDataError (naming ``source``, the layer and the feature id) for a feature without a
    polygonal geometry, ValueError when ``layers`` is empty, and pyogrio's errors (DataSourceError,
    FieldError) when GDAL refuses to write.
    """
    path = Path(path)
    prepared = _prepared(layers, fields, source)
    with atomic_path(path) as tmp:
        os.unlink(tmp)  # GDAL creates a GeoPackage (SQLite) only where no file exists
        for layer in prepared:
            _write_layer(tmp, layer, "GPKG")
    return path


def read_gpkg_layers(path: str | Path) -> dict[str, list[dict]]:
    """Every layer of a GeoPackage (or any file GDAL reads) as ``{layer name: [GeoJSON-like feature]}``.

    Geometries come back as GeoJSON mappings (None where a feature has none), in the file's order and
    CRS; properties as Python scalars, null as None (also a float NaN, which GeoPackage stores as null),
    integer and boolean fields as int and bool. For tests and the release bundle's check.
    """
    out: dict[str, list[dict]] = {}
    for name, _ in pyogrio.list_layers(str(path)):
        meta, _, wkb, data = pyogrio.raw.read(str(path), layer=name)
        geoms = shapely.from_wkb(wkb) if wkb is not None else [None] * (len(data[0]) if data else 0)
        columns = [[_python(v, dtype) for v in values] for values, dtype in zip(data, meta["dtypes"])]
        out[str(name)] = [
            {
                "type": "Feature",
                "geometry": mapping(g) if g is not None else None,
                "properties": {str(f): col[i] for f, col in zip(meta["fields"], columns)},
            }
            for i, g in enumerate(geoms)
        ]
    return out


def _python(value, dtype: str):
    """A value pyogrio read as a Python scalar: NaN -> None (a null of a float, int or bool field)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if str(dtype).startswith(("int", "uint")):
        return int(value)
    if dtype == "bool":
        return bool(value)
    return value


# ---------------------------------------------------------------------------------------------------- KML


def write_kml(
    path: str | Path,
    layers: Mapping[str, Sequence[Feature]],
    fields: Mapping[str, Sequence[str]] | None = None,
    source: str | None = None,
) -> Path:
    """Write the layers of :func:`write_gpkg` as one KML file, one folder per layer; returns ``path``.

    Each placemark is named by its feature's ``id`` (``"{layer} {n}"`` where a feature has none, the
    footprint's for one) and carries the other :func:`flat_properties` as ExtendedData (a field's type:
    int where ints fit in 32 bits, else as :func:`write_gpkg`). Coordinates are lon/lat (KML is always
    EPSG:4326). Written with GDAL's LIBKML driver, which adds each layer to the file as a ``<Folder>``;
    where LIBKML fails, each layer is written with the KML driver and the folders are merged into one
    document. Atomic, like :func:`write_gpkg`.

    Raises InputDataError for a feature without a polygonal geometry (naming ``source``, the layer and
    the feature), ValueError when ``layers`` is empty, and pyogrio's errors when neither driver can write.
    """
    path = Path(path)
    prepared = [_kml_types(layer) for layer in _prepared(layers, fields, source, name_ids=True)]
    errors = []
    for driver in KML_DRIVERS:
        try:
            with atomic_path(path) as tmp:
                os.unlink(tmp)
                (_write_libkml if driver == "LIBKML" else _write_ogr_kml)(tmp, prepared)
            return path
        except (DataSourceError, DataLayerError, RuntimeError, ValueError) as err:
            log.warning("%s: the %s driver could not write it (%s)", path, driver, err)
            errors.append(f"{driver}: {err}")
    raise DataSourceError(f"{path}: no KML driver could write it ({'; '.join(errors)})")


def _kml_types(layer: _Layer) -> _Layer:
    """KML has 32-bit int fields only: int64 columns that fit become int32 (else they would be text)."""
    columns = [
        c.astype(np.int32)
        if c.dtype == np.int64 and (c.size == 0 or _INT32[0] <= c.min() <= c.max() <= _INT32[1])
        else c
        for c in layer.columns
    ]
    return _Layer(layer.name, layer.wkb, layer.fields, columns, layer.masks)


def _write_libkml(tmp: str, layers: list[_Layer]) -> None:
    """All layers into one file with LIBKML, each a <Folder>; placemark <name> from the ``id`` field."""
    options = {"LIBKML_NAME_FIELD": "id", "LIBKML_ID_FIELD": "__garimpo_no_kml_id__"}
    before = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        for layer in layers:
            _write_layer(tmp, layer, "LIBKML", layer_options={"FOLDER": "YES"})
    finally:
        pyogrio.set_gdal_config_options(before)


def _write_ogr_kml(tmp: str, layers: list[_Layer]) -> None:
    """Each layer with the KML driver (one layer a file), then their <Document> children merged into one."""
    ET.register_namespace("", KML_NS)
    root = None
    with scratch_dir(tmp) as folder:
        for i, layer in enumerate(layers):
            part = folder / f"{i}.kml"
            _write_layer(part, layer, "KML", dataset_options={"NameField": "id"})
            tree = ET.parse(part).getroot()
            if root is None:
                root = tree
            else:
                _document(root).extend(list(_document(tree)))
    if root is None:
        raise ValueError("no layers to write")
    ET.ElementTree(root).write(tmp, encoding="UTF-8", xml_declaration=True)


def _document(root: ET.Element) -> ET.Element:
    doc = root.find(f"{{{KML_NS}}}Document")
    if doc is None:
        raise ValueError("the KML driver wrote no <Document>")
    return doc


# ------------------------------------------------------------------------------------------ table and CSV


def centroid_lonlat(geom) -> tuple[float, float]:
    """The area-weighted centroid of a lon/lat (multi)polygon, ``(lon, lat)`` in degrees (NaN when empty).

    Computed in Lambert's cylindrical equal-area coordinates (x = lon, y = sin lat), where every square
    metre of the polygon weighs the same, and mapped back (lat = asin y). The plain centroid of the
    lon/lat coordinates over-weights the poleward part, whose degrees are smaller; here the two differ by
    tan(lat) * h^2 / 12 for a polygon h radians tall (0.2 m for one 11 km tall at 6 degrees S), but the
    equal-area one stays right for a whole footprint of scattered parts. It needs no projection per
    feature (a centroid commutes with the axis-wise scaling). Like any centroid it may fall outside a
    C-shaped or multi-part polygon: it is a point to zoom to, not a point inside.
    """
    if geom.is_empty:
        return math.nan, math.nan
    cea = shapely.transform(geom, lambda xy: np.column_stack([xy[:, 0], np.sin(np.radians(xy[:, 1]))]))
    c = cea.centroid
    return float(c.x), math.degrees(math.asin(max(-1.0, min(1.0, c.y))))


def detections_table(
    detections,
    areas: Sequence[Feature] | None = None,
    name_field: str | None = None,
    id_field: str | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """One row per detection, for a spreadsheet: where it is, how big, how sure, and which areas it touches.

    ``detections``: the features of a detections product (a FeatureCollection mapping or a sequence of
    GeoJSON-like features, lon/lat polygons). Columns, in this order: ``id``; ``lon``, ``lat``
    (:func:`centroid_lonlat`, degrees rounded to 6 decimals, about 0.1 m); ``area_ha`` (the feature's own
    ``area_ha``, else the geodesic area of its polygon, :func:`garimpo.geo.geojson.geodesic_area_ha`);
    ``score`` (0..1); ``status``, ``first_detected``, ``last_detected`` (empty, None, in per-period
    products, which have none); ``protected_area`` and ``protected_area_id``: the names
    (``properties[name_field]``, default ``"name"``) and ids (``properties[id_field]``; empty without
    ``id_field``) of the ``areas`` (lon/lat polygon features; protected areas, indigenous territories)
    the detection overlaps with positive area (as garimpo.outputs.encroachment counts it), ``"; "``-joined
    in the areas' order, one entry per area (a missing name or id is an empty entry), ``""`` for none;
    then every other property in :func:`flat_properties` form, in first-seen order (a property named
    like a computed column is left out). Areas are matched with an STRtree; invalid area polygons are
    repaired (GEOS MakeValid).

    Raises InputDataError naming ``source`` and the feature for a detection or area without a polygonal
    geometry.
    """
    feats = _features(detections)
    geoms = [_polygonal(f, i, source, None) for i, f in enumerate(feats)]
    names, ids = _area_matches(geoms, areas, name_field or "name", id_field, source)
    rows = []
    for feat, geom, area_names, area_ids in zip(feats, geoms, names, ids):
        props = flat_properties(_props(feat))
        lon, lat = centroid_lonlat(geom)
        area = props.get("area_ha")
        row = {
            "id": props.get("id", feat.get("id")),
            "lon": round(lon, CENTROID_DECIMALS),
            "lat": round(lat, CENTROID_DECIMALS),
            "area_ha": area
            if isinstance(area, (int, float)) and not isinstance(area, bool)
            else geodesic_area_ha(geom),
            "score": props.get("score"),
            "status": props.get("status"),
            "first_detected": props.get("first_detected"),
            "last_detected": props.get("last_detected"),
            "protected_area": LIST_SEPARATOR.join(area_names),
            "protected_area_id": LIST_SEPARATOR.join(area_ids),
        }
        row.update({k: v for k, v in props.items() if k not in TABLE_COLUMNS})
        rows.append(row)
    extra = dict.fromkeys(k for r in rows for k in r if k not in TABLE_COLUMNS)
    return pd.DataFrame(rows, columns=[*TABLE_COLUMNS, *extra])


def _area_matches(
    geoms: list, areas: Sequence[Feature] | None, name_field: str, id_field: str | None, source: str | None
) -> tuple[list[list[str]], list[list[str]]]:
    """For each detection geometry, the names and ids of the areas it overlaps with positive area."""
    names: list[list[str]] = [[] for _ in geoms]
    ids: list[list[str]] = [[] for _ in geoms]
    area_feats = _features(areas or [])
    if not area_feats or not geoms:
        return names, ids
    where = f"{source} (areas)" if source else "areas"
    area_geoms = np.array([shapely.make_valid(_polygonal(a, i, where, None)) for i, a in enumerate(area_feats)])
    labels = []
    for a in area_feats:
        props = _props(a)
        labels.append(
            tuple(
                "" if v is None else str(_flat(v))
                for v in (props.get(name_field), props.get(id_field) if id_field else None)
            )
        )
    tree = shapely.STRtree(area_geoms)
    det, hit = tree.query(np.array(geoms, dtype=object), predicate="intersects")
    if len(det):
        overlap = shapely.area(shapely.intersection(np.array(geoms, dtype=object)[det], area_geoms[hit])) > 0
        det, hit = det[overlap], hit[overlap]
    for d, a in sorted(zip(det.tolist(), hit.tolist())):
        names[d].append(labels[a][0])
        if id_field:
            ids[d].append(labels[a][1])
    return names, ids


def write_detections_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """Write :func:`detections_table` as CSV (UTF-8, comma-separated, a header row, no index, ``\\n`` line
    ends; empty cells for missing values), atomically; returns ``path``. Raises OSError when it cannot."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    return path
