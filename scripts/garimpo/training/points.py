"""Point inputs (known mines, hard negatives): tables or vector files, messy rows rejected with a reason.

Tables (CSV, TSV...) go through garimpo.geo.tables (encoding, delimiter) and garimpo.geo.coordinates (decimal
commas, thousands separators, degrees-minutes-seconds); vector files (GeoJSON, Shapefile, .zip,
GeoPackage, FlatGeobuf) through garimpo.geo.vector, reprojected to lon/lat from the CRS they declare.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from garimpo.errors import CoordinateError, InputDataError
from garimpo.geo.coordinates import AXIS_NAMES, parse_coordinate
from garimpo.geo.tables import read_table, where
from garimpo.geo.vector import VECTOR_SUFFIXES, empty_advice, read_vector

log = logging.getLogger(__name__)

# As the schema's positives.points[].source: a label that becomes part of file names, so no path in it,
# no line break (matched whole: Python's `$` would let a final newline through) and at most 100 characters.
SOURCE_LABEL = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

POINT_COLUMNS = ["point_id", "lon", "lat", "source", "name"]
REJECTED_COLUMNS = ["file", "row", "lon", "lat", "reason"]
TABLE_SWAP_HINT = "check lon_column / lat_column"
VECTOR_SWAP_HINT = "does the file hold latitude before longitude?"


def check_coordinates(
    lon: float, lat: float, bounds: tuple[float, float, float, float] | None, swap_hint: str = TABLE_SWAP_HINT
) -> str | None:
    """Why a coordinate pair (degrees) is unusable, or None when it is fine.

    A pair that would be usable the other way round (in lon/lat range, or inside ``bounds``) is said
    to look swapped, followed by ``swap_hint`` (what the user should check).
    """
    if not np.isfinite(lon) or not np.isfinite(lat):
        return "missing or non-numeric coordinate"
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        if -90 <= lon <= 90 and -180 <= lat <= 180:
            return f"out of range (lon={lon}, lat={lat}); looks swapped: {swap_hint}"
        return f"out of range (lon={lon}, lat={lat}); a lost decimal point?"
    if bounds is not None:
        w, s, e, n = bounds
        if not (w <= lon <= e and s <= lat <= n):
            # In Brazil both axes are negative, so swapped columns stay in range; only the bounds tell.
            swapped = w <= lat <= e and s <= lon <= n
            return f"outside the study bounds {list(bounds)} (lon={lon}, lat={lat})" + (
                f"; looks swapped: {swap_hint}" if swapped else ""
            )
    return None


def _parse_pair(lon_text, lat_text) -> tuple[float, float, str | None]:
    """Both coordinates of a row, and the reason(s) it is rejected (None when both parse)."""
    values, reasons = {}, []
    for axis, text in (("lat", lat_text), ("lon", lon_text)):
        try:
            values[axis] = parse_coordinate(text, axis)
        except CoordinateError as exc:
            values[axis] = float("nan")
            shown = "" if text is None or str(text).strip() == "" else f" '{str(text).strip()}'"
            reasons.append(f"{AXIS_NAMES[axis]}{shown}: {exc}")
    return values["lon"], values["lat"], "; ".join(reasons) or None


def _table_rows(path: Path, spec: Mapping, key: str | None) -> list[dict]:
    """Rows ``{"row", "lon", "lat", "name"}`` of a table (text as written, ``row`` its file line); a row
    whose fields do not fit the header carries its reason."""
    table = read_table(path, spec.get("delimiter"), spec.get("encoding"), key)
    columns = list(table.cells.columns)
    lon_col, lat_col = spec.get("lon_column", "longitude"), spec.get("lat_column", "latitude")
    missing = [c for c in (lon_col, lat_col) if c not in columns]
    if missing:
        hint = " (one column only: set `delimiter`)" if len(columns) == 1 else ""
        raise InputDataError(
            f"{where(path, key)}: column(s) {missing} not found; the file has {columns} (read with delimiter "
            f"{table.delimiter!r}, encoding {table.encoding}){hint}. Set lon_column / lat_column for this input "
            "in the config."
        )
    name_col = spec.get("name_column")
    if name_col and name_col not in columns:
        raise InputDataError(
            f"{where(path, key)}: name_column {name_col!r} not found; the file has {columns}. "
            "Fix `name_column` in the config."
        )
    needed = max(columns.index(lon_col), columns.index(lat_col)) + 1  # fields a row needs to hold both
    rows = []
    for line, r, width, problem in zip(table.cells.index, table.cells.to_dict("records"), table.widths, table.problems):
        row = {"row": line, "lon": r[lon_col], "lat": r[lat_col], "name": r[name_col] if name_col else ""}
        if problem:  # e.g. an unclosed quote: the row's cells cannot be trusted
            row["reason"] = problem
        # A row split by another delimiter than the header lacks its coordinates, or may hold them in
        # other columns: say so, rather than "missing" or a wrong number.
        elif width < needed or width > len(columns):
            row["reason"] = (
                f"the row has {width} field{'s' * (width != 1)} for {len(columns)} columns (mixed "
                f"delimiter? the file is read as {table.delimiter!r}-separated)"
            )
        rows.append(row)
    return rows


def _vector_rows(path: Path, spec: Mapping, key: str | None) -> list[dict]:
    """Rows of a vector point file, in lon/lat, ``row`` numbered from 1; a row that is not one point
    carries its reason."""
    data = read_vector(path, spec.get("layer"), spec.get("encoding"), key)
    name_col = spec.get("name_column")
    if name_col and data.properties and name_col not in data.fields:
        raise data.field_error(name_col, "name_column", key)
    rows = []
    for i, (geom, props) in enumerate(zip(data.geometries, data.properties), start=1):
        row = {"row": i, "lon": None, "lat": None, "name": props.get(name_col, "") if name_col else ""}
        if geom is None or geom.is_empty:
            row["reason"] = "no geometry"
        elif geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
            geom = geom.geoms[0]
        if "reason" not in row and geom.geom_type != "Point":
            row["reason"] = f"a {geom.geom_type}, not a point" + (
                f" (of {len(geom.geoms)} points: split it into points)" if geom.geom_type == "MultiPoint" else ""
            )
        if "reason" not in row:
            row["lon"], row["lat"] = geom.x, geom.y
            if not (np.isfinite(geom.x) and np.isfinite(geom.y)):
                row["reason"] = f"cannot be reprojected from {data.crs} (outside its area of use?)"
            elif abs(geom.x) > 180 or abs(geom.y) > 90:
                row["reason"] = (
                    f"out of lon/lat range (x={geom.x}, y={geom.y}) read as {data.crs}: coordinates "
                    "in metres need the file's CRS declared (a .prj, or a GeoJSON in lon/lat)"
                )
        rows.append(row)
    return rows


def plain_label(stem: str, fallback: str = "points") -> str:
    """``stem`` (a file name without its suffix) made a valid source label (:data:`SOURCE_LABEL`).

    Accents are dropped (NFKD: 'ü' -> 'u'), any other character outside letters, digits, '_', '-' and
    '.' becomes '_', '..' becomes '_', leading characters up to the first letter or digit are dropped,
    and the label is cut to 100 characters: ``my mines ü (2023)`` -> ``my_mines_u__2023_``, ``-lead`` ->
    ``lead``. ``fallback`` when nothing is left.
    """
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", ascii_text).replace("..", "_")
    label = re.sub(r"^[^A-Za-z0-9]+", "", label)[:100]
    return label if SOURCE_LABEL.fullmatch(label) else fallback


def default_label(path: Path) -> str:
    """The source label of a points file without one: its name made plain (a warning when that changes it)."""
    label = plain_label(path.stem)
    if label != path.stem:
        log.warning(
            "points file %s: source label %r, its file name made plain (split.test_sources and evaluation.sources "
            "patterns match this label); set source in the config to choose another",
            path,
            label,
        )
    return label


def load_points(
    path: str | Path,
    lon_column: str = "longitude",
    lat_column: str = "latitude",
    name_column: str | None = None,
    source: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    *,
    layer: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    key: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read points (degrees, EPSG:4326 lon/lat). Returns (good points, rejected rows with reasons).

    Files with a suffix in ``vector.VECTOR_SUFFIXES`` are read as vector layers (``layer`` picks one
    of a GeoPackage's; ``lon_column``/``lat_column`` are not used); anything else as a table whose
    ``delimiter`` (``,`` ``;`` or tab) and ``encoding`` are found unless given. Rows are numbered as a
    user sees them: a table row by the file line it starts on (line 1 is the header), vector features
    from 1. A row's ``reason`` says which coordinate failed and why (e.g. ``latitude '12°61'00"S':
    minutes >= 60``), that it looks swapped, or that it has more or fewer fields than the header.
    ``source`` (the label starting every point id) defaults to the file's name without its suffix, made
    plain by :func:`plain_label` (with a warning when that changes it).
    Raises :class:`InputDataError` (naming the file and ``key``) for a ``source`` that cannot start a file
    name, a missing or unreadable file, a spreadsheet workbook (export it as CSV), missing columns or
    fields, or a file without a single usable point.
    """
    path = Path(path)
    if source is not None and not SOURCE_LABEL.fullmatch(str(source)):
        # The label starts every point id, and so the file name of its training image
        # (results/training_images/positive/ID.tif).
        raise InputDataError(
            f"points file {where(path, key)}: source label {source!r} cannot start a file name; use only "
            "letters, digits, '_', '-' and '.', starting with a letter or digit, no '..', at most 100 characters "
            "(e.g. amw_2023_positives)"
        )
    if not path.exists():
        raise InputDataError(f"points file {where(path, key)} not found; check the path in the config")
    if not source:
        source = default_label(path)
    spec = {
        "lon_column": lon_column,
        "lat_column": lat_column,
        "name_column": name_column,
        "layer": layer,
        "delimiter": delimiter,
        "encoding": encoding,
    }
    vector = path.suffix.lower() in VECTOR_SUFFIXES
    rows = _vector_rows(path, spec, key) if vector else _table_rows(path, spec, key)
    good, bad = [], []
    for row in rows:
        rownum = row["row"]
        reason = row.get("reason")
        if reason is None:
            lon, lat, reason = _parse_pair(row["lon"], row["lat"])
            reason = reason or check_coordinates(lon, lat, bounds, VECTOR_SWAP_HINT if vector else TABLE_SWAP_HINT)
        if reason:
            bad.append({"file": str(path), "row": rownum, "lon": row["lon"], "lat": row["lat"], "reason": reason})
        else:
            name = "" if row["name"] is None or pd.isna(row["name"]) else str(row["name"])
            good.append({"point_id": f"{source}-{rownum:05d}", "lon": lon, "lat": lat, "source": source, "name": name})
    good_df = pd.DataFrame(good, columns=POINT_COLUMNS)
    bad_df = pd.DataFrame(bad, columns=REJECTED_COLUMNS)
    if bad:
        log.warning(
            "%s: %d of %d rows rejected (first: row %s, %s)", path, len(bad), len(rows), bad[0]["row"], bad[0]["reason"]
        )
    if not rows:
        raise InputDataError(
            f"{where(path, key)}: the file holds no points (no rows or features). {empty_advice(path)}"
        )
    if good_df.empty:
        raise InputDataError(
            f"{where(path, key)}: no usable point among {len(rows)} rows"
            + (f" (first problem: row {bad[0]['row']}: {bad[0]['reason']})" if bad else "")
        )
    return good_df, bad_df


def source_labels(
    inputs: list[Mapping], key: str | None = None, reserved: Mapping[str, str] | None = None
) -> list[str]:
    """The source label of each point input, one per file: it starts every point id, and so the file name of
    each point's training images.

    A ``source`` set in the config that repeats another input's (or a ``reserved`` label: label -> what
    uses it) raises :class:`InputDataError` naming both; a label made from the file name (:func:`default_label`)
    that repeats one already taken gets a suffix ``_2``, ``_3``... with a warning naming both files. Labels
    are compared ignoring case, as a case-insensitive file system would.
    """
    name = key or "points"
    taken = {label.casefold(): user for label, user in (reserved or {}).items()}
    labels: list[str | None] = [None] * len(inputs)
    for i, spec in enumerate(inputs):  # labels set in the config first: a derived one steps aside for them
        source = spec.get("source")
        if source:
            here = f"points file {spec['path']} ({name}[{i}].source)"
            other = taken.get(str(source).casefold())
            if other:
                raise InputDataError(
                    f"{here}: source label {source!r} is also that of {other}; point ids start with it, so "
                    "the points of both would share ids and training image files. Give each file its own source"
                )
            taken[str(source).casefold()] = here
            labels[i] = str(source)
    for i, spec in enumerate(inputs):
        if labels[i] is None:
            path = Path(spec["path"])
            base = label = default_label(path)
            n = 1
            while label.casefold() in taken:
                n += 1
                label = f"{base[: 100 - len(str(n)) - 1]}_{n}"
            if label != base:
                log.warning(
                    "points file %s (%s[%d]): source label %r is also that of %s; labelled %r instead (set source "
                    "in the config to choose another)",
                    path,
                    name,
                    i,
                    base,
                    taken[base.casefold()],
                    label,
                )
            taken[label.casefold()] = f"points file {path} ({name}[{i}])"
            labels[i] = label
    return [label for label in labels if label is not None]


def check_unique_ids(points: pd.DataFrame, what: str) -> None:
    """Raise :class:`InputDataError` when ``points`` (the final table of ``what``) repeats a point id (ignoring
    case): each point's training images are written to a file named by its id, so one point's would overwrite
    another's."""
    folded = points["point_id"].astype(str).str.casefold()
    repeated = points.loc[folded.duplicated(keep=False), "point_id"].astype(str)
    if len(repeated):
        shown = sorted(set(repeated))
        raise InputDataError(
            f"{what}: point ids repeat ({len(shown)}: {', '.join(shown[:10])}{' ...' if len(shown) > 10 else ''}); "
            "each point's training images are written to a file named by its id, so one point's imagery would "
            "overwrite another's. Give each points file its own source"
        )


def load_point_sources(
    inputs: list[Mapping],
    bounds: tuple[float, float, float, float] | None = None,
    key: str | None = None,
    reserved: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load and concatenate several point inputs (config mappings: ``path``, and optionally ``lon_column``,
    ``lat_column``, ``name_column``, ``source``, ``layer``, ``delimiter``, ``encoding``).

    ``key`` (e.g. ``positives.points``) is named in errors as ``key[i]``. Each file gets its own source label
    (see :func:`source_labels`; ``reserved`` are labels other points of the same table use).
    """
    goods, bads = [], []
    for i, (spec, source) in enumerate(zip(inputs, source_labels(inputs, key, reserved))):
        g, b = load_points(
            spec["path"],
            spec.get("lon_column", "longitude"),
            spec.get("lat_column", "latitude"),
            spec.get("name_column"),
            source,
            bounds,
            layer=spec.get("layer"),
            delimiter=spec.get("delimiter"),
            encoding=spec.get("encoding"),
            key=f"{key}[{i}]" if key else None,
        )
        goods.append(g)
        bads.append(b)
    if not goods:  # no point files: training from local image folders only
        return pd.DataFrame(columns=POINT_COLUMNS), pd.DataFrame(columns=REJECTED_COLUMNS)
    return pd.concat(goods, ignore_index=True), pd.concat(bads, ignore_index=True)


def drop_duplicate_places(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points at the same (lon, lat) as an earlier one, moved to rejected rows that name the point kept.

    ``points``: ``POINT_COLUMNS``. Returns ``(kept, rejected)``: the first point of each place (order kept,
    index reset) and ``REJECTED_COLUMNS`` rows whose ``file`` is the dropped point's source, ``row`` its id,
    and ``reason`` the id it repeats, so every input row is accounted for in the rejected table.
    """
    dup = points.duplicated(subset=["lon", "lat"], keep="first")
    first = points[~dup].set_index(["lon", "lat"])["point_id"]
    dropped = points[dup]
    rejected = pd.DataFrame(
        {
            "file": dropped["source"].astype(str),
            "row": dropped["point_id"].astype(str),
            "lon": dropped["lon"],
            "lat": dropped["lat"],
            "reason": [f"same place as point {first[(x, y)]} (kept)" for x, y in zip(dropped["lon"], dropped["lat"])],
        },
        columns=REJECTED_COLUMNS,
    )
    return points[~dup].reset_index(drop=True), rejected
