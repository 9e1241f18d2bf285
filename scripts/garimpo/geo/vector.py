"""The one reader of user vector files: GeoJSON, Shapefile (or a .zip of one), GeoPackage, FlatGeobuf.

Files are read by GDAL/OGR through pyogrio (https://pyogrio.readthedocs.io; drivers:
https://gdal.org/en/stable/drivers/vector/) and reprojected from the CRS they declare to EPSG:4326
lon/lat (pyproj, ``always_xy``): a Shapefile's .prj, a GeoPackage's srs_id, a GeoJSON's legacy ``crs``
member (GDAL honours it). A GeoJSON without one is lon/lat by RFC 7946 section 4; any other file
without a CRS is read as lon/lat only when every coordinate lies in lon/lat range (with a warning), and
refused otherwise, asking for its .prj. Text fields are
decoded as the file says (a Shapefile's .cpg or DBF language byte; UTF-8, with or without a BOM,
elsewhere), with a cp1252 / ISO-8859-1 fallback for non-UTF-8 GeoJSON. A .dbf without .cpg, which GDAL
reads as ISO-8859-1, is re-read, with a warning, as UTF-8 when its bytes are UTF-8, or as cp1252 when the
text comes out holding C1 control characters. A Shapefile read without its .dbf (no attribute fields) is warned
about. Invalid
polygons (a ring crossing itself) are repaired with GEOS MakeValid, keeping their polygonal parts.

Every failure is an :class:`InputDataError` naming the file, the layer (and the config key when the
caller gives it) and what to do.
"""

from __future__ import annotations

import codecs
import difflib
import logging
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.ops import unary_union

from garimpo.errors import InputDataError

log = logging.getLogger(__name__)

LONLAT = "EPSG:4326"
# Suffixes read here; anything else given as a point file is a table (garimpo.geo.tables).
VECTOR_SUFFIXES = (".geojson", ".json", ".shp", ".zip", ".gpkg", ".fgb")
# Tried in order when a file's text is not valid UTF-8 and no encoding is set (GDAL's spellings).
FALLBACK_ENCODINGS = ("CP1252", "ISO-8859-1")
POLYGONAL = ("Polygon", "MultiPolygon")
SHAPEFILE = "ESRI Shapefile"  # GDAL's driver name
# U+0080-U+009F are C1 control codes, which no real name holds; they are what ISO-8859-1 (GDAL's guess
# for a .dbf without .cpg) makes of the bytes 0x80-0x9F that Windows-1252 prints as – ’ “ ” € ….
# Mapping each back to its cp1252 character is value.encode("latin-1").decode("cp1252") without the
# errors: the five bytes cp1252 leaves undefined (0x81 0x8D 0x8F 0x90 0x9D) stay as they are.
C1_CONTROLS = re.compile("[\x80-\x9f]")
C1_AS_CP1252 = {b: bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(0x80, 0xA0)}


@dataclass(frozen=True)
class VectorData:
    """The features of one layer, in EPSG:4326 lon/lat.

    ``geometries[i]`` is a shapely geometry, or None where feature ``i`` has none; ``properties[i]``
    maps the file's field names (as written, accents kept) to Python values. ``crs`` is the CRS the
    file declared (what it was reprojected from). Features keep the file's order, numbered from 1 in
    messages.
    """

    path: Path
    layer: str
    driver: str
    crs: str
    geometries: tuple
    properties: tuple[dict, ...]

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def fields(self) -> list[str]:
        return list(self.properties[0]) if self.properties else []

    def field_error(self, field: str, setting: str, key: str | None = None) -> InputDataError:
        """The error for a field named by config ``setting`` (e.g. ``name_column``) that the layer lacks."""
        if self.fields:
            has = f"the file has {self.fields}. Fix `{setting}` in the config."
        elif self.driver == SHAPEFILE:
            has = "the file has no fields at all: its .dbf is missing; put it beside the .shp (or in the .zip)."
        else:
            has = "the file has no fields at all."
        return InputDataError(f"{_where(self.path, self.layer, key)}: {setting} {field!r} not found; {has}")


def source(spec) -> tuple[str | None, str | None]:
    """``(path, layer)`` of a config value that is a path, ``{path, layer, encoding}`` or null.

    Two values, as callers unpack them; :func:`source_encoding` gives the third.
    """
    if spec is None:
        return None, None
    if isinstance(spec, Mapping):
        return spec["path"], spec.get("layer")
    return str(spec), None


def source_encoding(spec) -> str | None:
    """The ``encoding`` of a config value ``{path, layer, encoding}``; None for a plain path or null."""
    return spec.get("encoding") if isinstance(spec, Mapping) else None


def _where(path, layer=None, key=None) -> str:
    where = str(path) + (f" (layer {layer!r})" if layer is not None else "")
    return where + (f" [config {key}]" if key else "")


def _gdal_encoding(name: str, path, key) -> str:
    """GDAL's spelling of a Python codec name (GDAL knows 'ISO-8859-1' and 'CP1252', not 'latin-1')."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise InputDataError(
            f"{_where(path, key=key)}: unknown encoding {name!r}; use e.g. utf-8, cp1252 or latin-1"
        ) from None
    if canonical.startswith("iso8859-"):
        return "ISO-8859-" + canonical.split("-", 1)[1]
    return canonical.upper()


def _downloaded(path: Path) -> bool:
    """Whether ``path`` is one of the workflow's pinned downloads (resources/downloads/NAME)."""
    parts = Path(path).parts
    return any(a == "resources" and b == "downloads" for a, b in zip(parts, parts[1:]))


def _redownload(path: Path) -> str:
    return (
        f"It is a downloaded input: delete {path} and run the workflow again, which downloads it afresh and "
        "checks its sha256 (rule download_input); if the new copy fails the same way, point the config key "
        "at a good copy of your own."
    )


def _advice(path: Path) -> str:
    """What to do about a damaged file: fetch a downloaded input again, else replace or re-export it."""
    path = Path(path)
    if _downloaded(path):
        return _redownload(path)
    if path.suffix.lower() == ".shp":
        return (
            "A Shapefile needs its .shp, .shx and .dbf side by side (and its .prj for the CRS): check none "
            "is missing or cut short, or re-export the layer from your GIS."
        )
    return (
        "Check that it is a complete GeoJSON, Shapefile (or a .zip holding one), GeoPackage or FlatGeobuf "
        "file; replace it, or re-export it from your GIS if it was cut short."
    )


def empty_advice(path: str | Path) -> str:
    """What to do about a readable file that holds nothing usable (no features, no geometries)."""
    path = Path(path)
    if _downloaded(path):
        return _redownload(path)
    return "Point the config key at the file you meant, or re-export the layer with its features from your GIS."


_HTML = re.compile(rb"^\s*(?:<!doctype\s+html|<html|<head|<body|<\?xml[^>]*>\s*<(?:!doctype\s+)?html)", re.I)
_ARCHIVED_LAYERS = (".shp", ".geojson", ".json", ".gpkg", ".fgb", ".gml", ".kml")


def _diagnosis(path: Path) -> str:
    """What is wrong with a file GDAL cannot open, as far as its bytes tell: '' when they tell nothing."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(2048)
    except OSError as exc:
        return f"it cannot be opened ({exc.strerror or exc})"
    if size == 0:
        return "the file is empty (0 bytes: a download or copy that was interrupted)"
    if _HTML.match(head.lstrip(codecs.BOM_UTF8)):
        return "the file is an HTML page, not vector data (a web server's error or login page saved under this name)"
    suffix = path.suffix.lower()
    if suffix == ".zip":
        import zipfile

        if not zipfile.is_zipfile(path):
            return "it is not a readable .zip archive (cut short, or not a zip at all)"
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
        if not any(n.lower().endswith(_ARCHIVED_LAYERS) for n in names):
            shown = names[:8] + (["..."] if len(names) > 8 else [])
            return (
                f"the .zip holds no vector layer (it holds {shown}); it needs a .shp with its .shx and .dbf, "
                "or a GeoJSON, GeoPackage or FlatGeobuf"
            )
        lower = {n.lower() for n in names}
        for shp in (n for n in names if n.lower().endswith(".shp")):
            missing = [shp[:-4] + ext for ext in (".shx", ".dbf") if (shp[:-4] + ext).lower() not in lower]
            if missing:
                return f"the .zip holds {shp} without {' and '.join(missing)}"
    if suffix == ".shp":
        missing = [
            path.with_suffix(ext).name
            for ext in (".shx", ".dbf")
            if not (path.with_suffix(ext).exists() or path.with_suffix(ext.upper()).exists())
        ]
        if missing:
            return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing beside it"
    if suffix in (".geojson", ".json") and size <= 512 * 2**20:  # read whole to find where the JSON breaks
        import json

        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            near_end = len(text.rstrip()) - exc.pos <= 32
            cut = ", at the very end of the file: it was probably cut short" if near_end else ""
            return f"it is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}{cut})"
        except ValueError as exc:  # valid syntax the parser still refuses (e.g. a number of > 4300 digits)
            return f"it is not valid JSON: {exc}"
    return ""


# GDAL's hints (name a driver; set SHAPE_RESTORE_SHX), which a user of this workflow cannot act on.
_DRIVER_HINT = re.compile(
    r";? *(?:It might help to specify the correct driver explicitly.*?'CSV:path'\.|"
    r"Set SHAPE_RESTORE_SHX config option to YES to restore or create it\.)",
    re.S,
)


def _unreadable(path: Path, exc: BaseException, layer=None, key=None) -> InputDataError:
    """The error for a file GDAL (or what reads its result) cannot make sense of: what its bytes show
    (empty, an HTML page, JSON cut short, a .zip without a layer, a Shapefile part missing), else what
    GDAL said, then what to do."""
    why = _diagnosis(path)
    if not why and (type(exc).__module__.startswith("pyogrio") or isinstance(exc, (OSError, RuntimeError))):
        why = "GDAL says: " + _DRIVER_HINT.sub("", str(exc)).strip()
    elif not why:
        why = f"{type(exc).__name__}: {exc}"
    return InputDataError(f"{_where(path, layer, key)}: cannot be read as a vector file: {why}. {_advice(path)}")


class _GdalNotes(warnings.catch_warnings):
    """Collects the warnings GDAL raises through pyogrio, then logs each distinct one once at INFO."""

    def __init__(self, path):
        super().__init__(record=True)
        self.path = path

    def __enter__(self):
        self.caught = super().__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for message in dict.fromkeys(str(w.message) for w in self.caught):
            log.info("%s: GDAL: %s", self.path, message)  # e.g. a GeoPackage written by another tool


def _layer_names(path: Path, key) -> list[str]:
    if not path.exists():
        raise InputDataError(f"{_where(path, key=key)}: file not found; check the path in the config")
    import pyogrio

    try:
        listed = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises DataSourceError, GDAL's RuntimeErrors, OSError
        raise _unreadable(path, exc, key=key) from exc
    return [str(name) for name, kind in listed if kind is not None]


def layers(path: str | Path, key: str | None = None) -> list[str]:
    """Names of the layers in ``path`` that hold geometries (a GeoPackage may hold several)."""
    with _GdalNotes(path):
        return _layer_names(Path(path), key)


def _choose_layer(path: Path, layer, key) -> str:
    names = _layer_names(path, key)
    if layer is not None:
        if str(layer) not in names:
            raise InputDataError(
                f"{_where(path, layer, key)}: no such layer; the file has {names}. "
                "Set `layer` to one of them in the config."
            )
        return str(layer)
    if len(names) == 1:
        return names[0]
    if not names:
        why = _diagnosis(path)
        raise InputDataError(
            f"{_where(path, key=key)}: no layer with geometries{': ' + why if why else ''}. {_advice(path)}"
        )
    raise InputDataError(
        f"{_where(path, key=key)}: {len(names)} layers {names}; choose one with `layer` in "
        f"config {key or 'for this file'}, e.g. {{path: {path}, layer: {names[0]}}}."
    )


def _read_raw(path: Path, layer: str, encoding: str | None, key):
    import pyogrio.raw

    tries = [encoding] if encoding else [None, *FALLBACK_ENCODINGS]
    for i, enc in enumerate(tries):
        try:
            info = pyogrio.read_info(path, layer=layer, encoding=enc)
            meta, _, wkb, fields = pyogrio.raw.read(
                path, layer=layer, encoding=enc, force_2d=True, datetime_as_string=True
            )
        except UnicodeDecodeError as exc:
            if i + 1 < len(tries):
                continue
            raise InputDataError(
                f"{_where(path, layer, key)}: text is not valid {enc or 'UTF-8'} ({exc.reason} at byte "
                f"{exc.start}). Re-save it as UTF-8, or set `encoding` for this input in the config."
            ) from exc
        except Exception as exc:  # DataSourceError, DataLayerError, FieldError, GeometryError, OSError...
            raise _unreadable(path, exc, layer, key) from exc
        if enc and not encoding:
            log.warning(
                "%s: text is not UTF-8; read as %s. Re-save it as UTF-8, or set `encoding` in the "
                "config if names look wrong.",
                _where(path, layer, key),
                enc,
            )
        return info["driver"], meta, wkb, fields
    raise AssertionError("unreachable")


def _source_crs(path: Path, layer: str, driver: str, declared, geoms, key) -> str:
    """The CRS to reproject from: the declared one, else lon/lat where that is safe to assume."""
    if declared:
        return declared
    if driver in ("GeoJSON", "GeoJSONSeq"):
        return LONLAT  # RFC 7946 section 4: GeoJSON without a crs member is WGS 84 lon/lat (CRS84)
    bounds = shapely.total_bounds(geoms) if len(geoms) else np.full(4, np.nan)
    if np.all(np.isfinite(bounds)) and -180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90:
        # Coordinates that can only be degrees: read them as lon/lat, but say so.
        log.warning(
            "%s: no CRS declared (no .prj?); coordinates lie within lon/lat range, read as %s. "
            "Add the .prj to be sure.",
            _where(path, layer, key),
            LONLAT,
        )
        return LONLAT
    raise InputDataError(
        f"{_where(path, layer, key)}: no coordinate reference system declared and the coordinates are not "
        f"lon/lat degrees (bounds {[round(float(b), 3) for b in bounds]}). Add the .prj file beside the "
        ".shp (or re-export the layer with its CRS, e.g. SIRGAS 2000 EPSG:4674 or UTM EPSG:31981)."
    )


def _to_lonlat(geoms: np.ndarray, crs: str, path, layer, key) -> np.ndarray:
    try:
        src = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputDataError(
            f"{_where(path, layer, key)}: its CRS cannot be understood ({exc}); re-export the layer with an EPSG code."
        ) from exc
    if src == CRS.from_epsg(4326):
        return geoms
    tf = Transformer.from_crs(src, LONLAT, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))


def _plain(value):
    """A JSON-friendly Python value (numpy scalars become int/float/str; masked/NaN stay NaN)."""
    return value.item() if isinstance(value, np.generic) else value


def _cp1252(value):
    return value.translate(C1_AS_CP1252) if isinstance(value, str) else value


def _as_utf8(value):
    """``value`` read as ISO-8859-1, decoded again as the UTF-8 its bytes are; ValueError when they are not."""
    return value.encode("latin-1").decode("utf-8") if isinstance(value, str) else value


def _undo_latin1(names: list[str], columns: list[list], driver: str, where: str) -> tuple[list[str], list[list]]:
    """Field names and values that GDAL decoded as ISO-8859-1 (its guess without a .cpg) read as they were
    written, warning once: UTF-8 when every text's bytes are valid UTF-8 with some beyond ASCII (which
    Windows-1252 text almost never is: "IndÃ­gena" is "Indígena"), else cp1252 when text holds C1
    controls (U+0080-U+009F, see ``C1_AS_CP1252``). Text that is neither is left as read.

    GDAL gives no sign of the wrong guess, so the text itself is the evidence; all of the layer's text is
    mapped, since the whole file had the one encoding.
    """
    texts = [t for col in (names, *columns) for t in col if isinstance(t, str)]
    if not any(not t.isascii() for t in texts):
        return names, columns
    try:
        fixed = [_as_utf8(n) for n in names], [[_as_utf8(v) for v in col] for col in columns]
        found, cpg = "UTF-8", "UTF-8"
    except (UnicodeEncodeError, UnicodeDecodeError):  # not latin-1-decoded bytes, or not UTF-8 bytes
        if not any(C1_CONTROLS.search(t) for t in texts):
            return names, columns
        fixed = [_cp1252(n) for n in names], [[_cp1252(v) for v in col] for col in columns]
        found, cpg = "Windows-1252", "CP1252"
    fix = (
        f"put a .cpg file holding {cpg} beside the .shp (or in its .zip)"
        if driver == SHAPEFILE
        else "re-save it as UTF-8"
    )
    log.warning(
        "%s: text read as ISO-8859-1 (no encoding declared) is %s; read as %s instead. To be sure of "
        "the names, %s, or set `encoding` for this input in the config.",
        where,
        found,
        found,
        fix,
    )
    return fixed


def _check_dbf(path: Path, driver: str, names: list[str], where: str) -> None:
    """Warn about a Shapefile read without its .dbf: GDAL then reads the shapes with no fields, silently."""
    if driver != SHAPEFILE or names:
        return
    dbf = path.with_suffix(".dbf")
    if path.suffix.lower() == ".shp" and not (dbf.exists() or path.with_suffix(".DBF").exists()):
        log.warning(
            "%s: %s is missing, so the features have no attributes (names, ids); copy the .dbf beside the .shp.",
            where,
            dbf.name,
        )
    else:
        log.warning(
            "%s: a Shapefile with no attribute fields: its .dbf is missing or empty; re-export the "
            "layer with its attributes.",
            where,
        )


def read_vector(
    path: str | Path, layer: str | None = None, encoding: str | None = None, key: str | None = None
) -> VectorData:
    """Every feature of one layer of ``path``, reprojected to EPSG:4326 lon/lat.

    ``layer``: a layer name; needed only when the file holds several (a GeoPackage), otherwise its only
    layer is read. ``encoding``: force a text encoding (Python or GDAL name) instead of the file's own;
    without it, text holding C1 controls is re-read as cp1252 (warned). ``key``: the config key the
    file came from, named in errors. Geometries are returned as read (not repaired); coordinates a CRS
    cannot map come back as inf/NaN. A Shapefile without its .dbf is read with no fields (warned).
    Raises :class:`InputDataError` for a missing, unreadable or truncated file, an unknown or ambiguous
    layer, an unknown encoding, undecodable text, or a projected file without a CRS.
    """
    path = Path(path)
    try:
        return _read_vector(path, layer, encoding, key)
    except InputDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever GDAL, GEOS or PROJ make of a damaged file
        raise _unreadable(path, exc, layer, key) from exc


def _read_vector(path: Path, layer, encoding, key) -> VectorData:
    with _GdalNotes(path):
        layer = _choose_layer(path, layer, key)
        enc = _gdal_encoding(encoding, path, key) if encoding else None
        driver, meta, wkb, fields = _read_raw(path, layer, enc, key)
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.full(len(fields[0]) if fields else 0, None)
    crs = _source_crs(path, layer, driver, meta.get("crs"), geoms[~shapely.is_missing(geoms)], key)
    geoms = _to_lonlat(geoms, crs, path, layer, key)
    names = [str(n) for n in meta["fields"]]
    columns = [[_plain(v) for v in col.tolist()] for col in fields]
    _check_dbf(path, driver, names, _where(path, layer, key))
    if not encoding:  # an encoding the user set is taken at its word
        names, columns = _undo_latin1(names, columns, driver, _where(path, layer, key))
    props = tuple(dict(zip(names, row)) for row in zip(*columns)) if columns else tuple({} for _ in geoms)
    return VectorData(path, layer, driver, crs, tuple(None if shapely.is_missing(g) else g for g in geoms), props)


def _polygonal_parts(geom):
    """The polygons of a geometry (a GeometryCollection's lines and points dropped), or None."""
    if geom.geom_type in POLYGONAL:
        return geom
    polys = [p for p in shapely.get_parts(geom) if p.geom_type in POLYGONAL]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon([q for p in polys for q in shapely.get_parts(p)])


def read_polygon_features(
    path: str | Path,
    layer: str | None = None,
    field: str | None = None,
    value: str | None = None,
    key: str | None = None,
    encoding: str | None = None,
) -> list[dict]:
    """Polygon features of ``path`` in lon/lat: ``[{"geometry": shapely (Multi)Polygon, "properties": dict}]``.

    Only features whose property ``field`` equals ``value`` (compared as text) when both are given;
    features without a geometry are skipped. Invalid polygons are repaired with
    ``shapely.make_valid(method="structure")`` (GEOS MakeValid: a bow-tie becomes its two triangles) and
    counted in the log. ``encoding`` as in :func:`read_vector`. Raises :class:`InputDataError` (naming
    file, layer, feature and key) for what :func:`read_vector` refuses, a feature that is not a polygon,
    coordinates outside lon/lat after reprojection (a CRS the file does not declare), an unknown
    ``field`` (saying when the file has no fields: a Shapefile without its .dbf), and when no polygon
    is left: an empty layer, features all without geometry, or no feature matching ``value`` (listing
    values the field has).
    """
    data = read_vector(path, layer, encoding, key)
    where = _where(data.path, data.layer, key)
    select = bool(field) and value is not None
    if select and data.properties and field not in data.fields:
        assert field is not None  # select implies a field
        raise data.field_error(field, "field", key)
    out, repaired, chosen, without = [], 0, 0, 0
    for i, (geom, props) in enumerate(zip(data.geometries, data.properties), start=1):
        if select and str(props.get(field)) != str(value):
            continue
        chosen += 1
        if geom is None or geom.is_empty:
            without += 1
            continue
        lon0, lat0, lon1, lat1 = geom.bounds
        if not all(map(math.isfinite, geom.bounds)) or lon0 < -180 or lon1 > 180 or lat0 < -90 or lat1 > 90:
            raise InputDataError(
                f"{where}: feature {i} lies outside lon/lat range (bounds {[round(b, 3) for b in geom.bounds]} "
                f"after reading it as {data.crs}). If its coordinates are metres, the file must declare its "
                "CRS: a .prj beside a Shapefile, or an RFC 7946 GeoJSON re-exported in lon/lat (EPSG:4326)."
            )
        if not geom.is_valid:
            geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
            repaired += 1
        poly = _polygonal_parts(geom)
        if poly is None:
            if geom.geom_type in POLYGONAL or geom.geom_type == "GeometryCollection":
                continue  # a polygon that collapsed to nothing when repaired: no area to lose
            raise InputDataError(
                f"{where}: feature {i} is a {geom.geom_type}, expected a polygon; give a polygon layer here."
            )
        out.append({"geometry": poly, "properties": props})
    if repaired:
        log.warning(
            "%s: repaired %d invalid polygon(s) of %d (self-intersections; GEOS MakeValid). Fix them at "
            "the source to be sure of their outline.",
            where,
            repaired,
            len(data),
        )
    if not out:
        raise _no_polygon(data, where, field if select else None, value, chosen, without)
    return out


def _no_polygon(data: VectorData, where: str, field, value, chosen: int, without: int) -> InputDataError:
    """The error for a layer (or selection) that yields no polygon: says which of the reasons it is."""
    if not len(data):
        return InputDataError(
            f"{where}: the layer holds no features (an empty FeatureCollection?); at least one "
            f"polygon is needed. {empty_advice(data.path)}"
        )
    if field is not None and not chosen:
        seen = list(dict.fromkeys(str(p.get(field)) for p in data.properties))
        close = (
            difflib.get_close_matches(str(value), seen, n=1, cutoff=0.6)
            or [v for v in seen if v.casefold().strip() == str(value).casefold().strip()][:1]
        )
        hint = f" Did you mean {close[0]!r}?" if close else ""
        shown = seen[:10]
        more = f" and {len(seen) - 10} more" if len(seen) > 10 else ""
        return InputDataError(
            f"{where}: no feature with {field} == {value!r} among {len(data)}; {field} has {shown}{more}.{hint} "
            "Fix `value` (or `field`) in the config; values are compared as text, exactly (case, accents and "
            "spaces count)."
        )
    selected = f" with {field} == {value!r}" if field is not None else ""
    if without == chosen:
        return InputDataError(
            f"{where}: none of the {chosen} feature(s){selected} has a geometry (all null); a "
            f"polygon is needed. {empty_advice(data.path)}"
        )
    return InputDataError(
        f"{where}: the polygons{selected} collapse to nothing when repaired (no area); fix their outlines in your GIS."
    )


def read_polygons(
    path: str | Path,
    field: str | None = None,
    value: str | None = None,
    layer: str | None = None,
    key: str | None = None,
    encoding: str | None = None,
) -> list:
    """The (repaired, lon/lat) polygon geometries of :func:`read_polygon_features` (its errors)."""
    return [f["geometry"] for f in read_polygon_features(path, layer, field, value, key, encoding)]


def read_region(
    path: str | Path,
    field: str | None = None,
    value: str | None = None,
    layer: str | None = None,
    key: str | None = None,
    encoding: str | None = None,
):
    """One lon/lat (Multi)Polygon: the union of the selected polygons.

    ``field`` and ``value`` select features together; one without the other is refused (it would
    silently take every feature). Raises InputDataError for that, and as :func:`read_polygon_features`
    does (also when no polygon is selected).
    """
    if bool(field) != (value is not None):
        given, missing, shown = ("field", "value", field) if field else ("value", "field", value)
        raise InputDataError(
            f"{_where(Path(path), layer, key)}: {given} {shown!r} is given without {missing}, "
            "so every feature would be taken; give both (the features whose property field equals value) "
            "or neither (every feature)"
        )
    return unary_union(read_polygons(path, field, value, layer, key, encoding))
