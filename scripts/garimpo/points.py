"""Point inputs (known mines, hard negatives): CSV or GeoJSON, messy rows rejected with a reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import InputDataError

log = logging.getLogger(__name__)

POINT_COLUMNS = ["point_id", "lon", "lat", "source", "name"]


def _to_float(value) -> float:
    """Parse a decimal-degree value; tolerate thousands separators and a decimal comma."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    if isinstance(value, (int, float, np.number)):
        return float(value)
    text = str(value).strip().replace(" ", "")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # decimal comma: -6,25
    else:
        text = text.replace(",", "")  # thousands separators: 1,234.5
    try:
        return float(text)
    except ValueError:
        return float("nan")


def check_coordinates(lon: float, lat: float, bounds: tuple[float, float, float, float] | None) -> str | None:
    """Why a coordinate pair is unusable, or None when it is fine."""
    if not np.isfinite(lon) or not np.isfinite(lat):
        return "missing or non-numeric coordinate"
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        if -90 <= lon <= 90 and -180 <= lat <= 180:
            return f"out of range (lon={lon}, lat={lat}); looks swapped: check the lon/lat column names"
        return f"out of range (lon={lon}, lat={lat}); a lost decimal point?"
    if bounds is not None:
        w, s, e, n = bounds
        if not (w <= lon <= e and s <= lat <= n):
            return f"outside the study bounds {list(bounds)} (lon={lon}, lat={lat})"
    return None


def load_points(
    path: str | Path,
    lon_column: str = "longitude",
    lat_column: str = "latitude",
    name_column: str | None = None,
    source: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read points from CSV or GeoJSON. Returns (good points, rejected rows with reasons).

    Rows are numbered as a user sees them: CSV data rows from 2 (line 1 is the header),
    GeoJSON features from 1.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"points file {path} not found; check the path in the config")
    source = source or path.stem
    if path.suffix.lower() in (".geojson", ".json"):
        raw = _read_geojson_points(path)
        first_row = 1
    else:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding_errors="replace")
        first_row = 2
        missing = [c for c in (lon_column, lat_column) if c not in raw.columns]
        if missing:
            raise InputDataError(
                f"{path}: column(s) {missing} not found; the file has {list(raw.columns)}. "
                "Set lon_column / lat_column for this input in the config."
            )
        raw = raw.rename(columns={lon_column: "lon", lat_column: "lat"})
    good, bad = [], []
    for i, row in enumerate(raw.to_dict("records")):
        lon, lat = _to_float(row.get("lon")), _to_float(row.get("lat"))
        reason = check_coordinates(lon, lat, bounds)
        rownum = i + first_row
        name = str(row.get(name_column, "")) if name_column else ""
        if reason:
            bad.append({"file": str(path), "row": rownum, "lon": row.get("lon"), "lat": row.get("lat"), "reason": reason})
        else:
            good.append({"point_id": f"{source}-{rownum:05d}", "lon": lon, "lat": lat, "source": source, "name": name})
    good_df = pd.DataFrame(good, columns=POINT_COLUMNS)
    bad_df = pd.DataFrame(bad, columns=["file", "row", "lon", "lat", "reason"])
    if bad:
        log.warning("%s: %d of %d rows rejected (first: row %s, %s)", path, len(bad), len(raw), bad[0]["row"], bad[0]["reason"])
    if good_df.empty:
        raise InputDataError(
            f"{path}: no usable point among {len(raw)} rows"
            + (f" (first problem: row {bad[0]['row']}: {bad[0]['reason']})" if bad else "")
        )
    return good_df, bad_df


def _read_geojson_points(path: Path) -> pd.DataFrame:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc})") from exc
    rows = []
    for feat in data.get("features", []):
        geom = feat.get("geometry") or {}
        props = feat.get("properties") or {}
        if geom.get("type") == "Point":
            lon, lat = geom["coordinates"][:2]
        elif geom.get("type") == "MultiPoint" and geom["coordinates"]:
            lon, lat = geom["coordinates"][0][:2]
        else:
            lon = lat = None  # rejected below as missing
        rows.append({**props, "lon": lon, "lat": lat})
    return pd.DataFrame(rows)


def load_point_sources(
    inputs: list[Mapping], bounds: tuple[float, float, float, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load and concatenate several point inputs (each a config mapping with ``path`` and column names)."""
    goods, bads = [], []
    for spec in inputs:
        g, b = load_points(
            spec["path"],
            spec.get("lon_column", "longitude"),
            spec.get("lat_column", "latitude"),
            spec.get("name_column"),
            spec.get("source"),
            bounds,
        )
        goods.append(g)
        bads.append(b)
    if not goods:  # no point files: training from local image folders only
        return pd.DataFrame(columns=POINT_COLUMNS), pd.DataFrame(columns=["file", "row", "lon", "lat", "reason"])
    return pd.concat(goods, ignore_index=True), pd.concat(bads, ignore_index=True)
