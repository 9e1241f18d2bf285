"""Reading a region's products back for what is published from them: per-period files in period order, and
the protected areas / territories of config ``encroachment.areas``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from garimpo.detection.polygons import from_geojson
from garimpo.errors import InputDataError
from garimpo.geo.vector import read_polygon_features, source, source_encoding


def read_period_files(paths: Sequence, periods: Sequence, what: str) -> dict[str, list[dict]]:
    """period -> features of its file (``{"geometry": shapely lon/lat, "properties": dict}``), the files given in
    period order; a file's ``metadata.period``, when it has one, must be the period it stands for (so a list in
    the wrong order fails rather than mislabels). Raises :class:`InputDataError` naming the file."""
    paths, periods = list(paths), [str(p) for p in periods]
    if len(paths) != len(periods):
        raise InputDataError(
            f"{len(paths)} {what} file(s) for {len(periods)} period(s) {periods}; one {what} file per period is "
            "needed, in period order"
        )
    out = {}
    for path, period in zip(paths, periods):
        doc = json.loads(Path(path).read_text())
        stated = (doc.get("metadata") or {}).get("period") if isinstance(doc, dict) else None
        if stated is not None and str(stated) != period:
            raise InputDataError(
                f"{path}: its metadata says period {stated!r} but it is given as period {period!r}; the {what} "
                f"files must follow the order of the periods {periods}"
            )
        out[period] = from_geojson(doc)
    return out


def read_areas(path, cfg: Mapping) -> list[dict]:
    """The protected areas / territories of config ``encroachment`` (``areas``, ``name_field``, ``id_field``) read
    from ``path``: lon/lat polygon features. Raises :class:`InputDataError` naming the file and the key when a
    configured field is not in the file."""
    _, layer = source(cfg["areas"])
    areas = read_polygon_features(path, layer, key="encroachment.areas", encoding=source_encoding(cfg["areas"]))
    fields = set().union(*(a["properties"] for a in areas))
    for key in ("name_field", "id_field"):
        if cfg.get(key) is not None and cfg[key] not in fields:
            raise InputDataError(
                f"{path}: no field {cfg[key]!r} for config encroachment.{key}; the file has {sorted(fields)}"
            )
    return areas
