"""A self-contained offline web map per region: one HTML file that opens from the file system with no network.

The page draws the detections of each period, the new mining of each period (new sites and expansions),
the footprint of all mining ever detected, protected areas and the region's outline, each as a Leaflet
layer in a layer control, with a legend, a scale bar and a popup per detection (score, area, dates,
evidence thumbnail). Leaflet (BSD-2-Clause) comes from the pinned ``XStatic-Leaflet`` package and is
inlined with its stylesheet, the evidence thumbnails and the optional true-colour image as ``data:``
URIs: nothing is fetched when the page is viewed, so it works offline and in the field.

There are no base tiles (they would need the network). :func:`basemap_png` instead renders the
region's own composites as one true-colour image in Web Mercator (EPSG:3857), Leaflet's default CRS,
so an ``L.imageOverlay`` with lon/lat bounds lines up with the vectors.

Every text from user files (territory names, ids) reaches the page as JSON (``<``, ``>`` and ``&`` written
as ``\\u003c`` etc., so no ``</script>`` can end the data block) and is HTML-escaped in the page's
JavaScript before it is shown. After it has built every layer the page sets
``window.garimpoMap = {ready: true, layers: {name: features drawn}, errors: [...], map: the L.Map,
overlays: {name: its L.GeoJSON}}`` for tests and users' automation.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from shapely.errors import GeometryTypeError
from shapely.geometry import mapping, shape

from garimpo.atomic import atomic_path
from garimpo.errors import InputDataError
from garimpo.geo.raster import RGB_BANDS, band_indexes

log = logging.getLogger(__name__)

KINDS = ("detections", "change", "footprint", "areas", "region")
COORD_DECIMALS = 6  # 1e-6 degree is at most 0.11 m
METRES_PER_DEGREE = 111_320.0  # at the equator; simplification tolerances are converted with it
STRETCH_MAX = 0.25  # reflectance drawn as full brightness in the true-colour image
MERCATOR_MAX_LAT = 85.0511287798  # EPSG:3857 ends here (atan(sinh(pi)))
LEAFLET_LICENCE = """Leaflet {version}, https://leafletjs.com, bundled inline (from PyPI's XStatic-Leaflet).
BSD 2-Clause License
Copyright (c) 2010-2023, Volodymyr Agafonkin
Copyright (c) 2010-2011, CloudMade
All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are
permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of
   conditions and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list
   of conditions and the following disclaimer in the documentation and/or other materials
   provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY
EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE
COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE
GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED
AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED
OF THE POSSIBILITY OF SUCH DAMAGE."""
_IMAGE_MIME = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def leaflet_assets() -> tuple[str, str, str]:
    """(version, leaflet.js, leaflet.css) of the installed XStatic-Leaflet, ready to inline.

    The stylesheet's ``url(images/...)`` references (the layer-control icon, the default marker) become
    ``data:`` URIs of the package's own images, and the script's ``sourceMappingURL`` comment is dropped,
    so the page refers to no other file.

    Raises:
        ModuleNotFoundError: XStatic-Leaflet is not installed (``pip install -r requirements.txt``).
        ValueError: the script holds text that would end an inline ``<script>`` (never in Leaflet 1.9.3).
    """
    try:
        import xstatic.pkg.leaflet as xleaflet
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the web map inlines Leaflet from the XStatic-Leaflet package; install the pinned requirements "
            "(pip install -r requirements.txt, or the envs/publish.yaml conda environment)"
        ) from err
    base = Path(xleaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    js = re.sub(r"^//# sourceMappingURL=.*$", "", js, flags=re.MULTILINE)
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        image = base / match.group(1)
        return f"url({_data_uri(image.read_bytes())})" if image.is_file() else "none"

    css = re.sub(r"url\((images/[A-Za-z0-9_.-]+)\)", inline, css)
    for text in (js, css):
        if re.search(r"</(script|style)|<!--", text, flags=re.IGNORECASE):
            raise ValueError(f"{base}: Leaflet's files hold text that would end an inline script or style")
    return str(xleaflet.VERSION), js, css


def _data_uri(data: bytes) -> str:
    """A ``data:`` URI of PNG or JPEG bytes (type from the magic number). Raises ValueError for other bytes."""
    mime = next((m for magic, m in _IMAGE_MIME.items() if data.startswith(magic)), None)
    if mime is None:
        raise ValueError("not a PNG or JPEG image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _script_json(value) -> str:
    """JSON text safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u003c`` etc."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_safe(value):
    """``value`` with NaN and infinities as None, numpy scalars as Python ones, tuples as lists and
    anything else JSON cannot hold as its ``str()`` (JSON.parse refuses NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _geometry(feature: Mapping):
    """The shapely geometry of a GeoJSON-like feature (GeoJSON mapping or shapely geometry); None if empty."""
    geom = feature.get("geometry")
    if geom is None:
        return None
    geom = geom if isinstance(geom, shapely.Geometry) else shape(geom)
    return None if geom.is_empty else geom


def _rounded(geom) -> dict:
    """GeoJSON mapping of ``geom`` with coordinates rounded to :data:`COORD_DECIMALS` (0.1 m)."""
    return mapping(shapely.transform(geom, lambda xy: np.round(xy, COORD_DECIMALS)))


def feature_id(feature: Mapping) -> str | None:
    """A feature's id as text: ``properties.id``, else the feature's own ``id``; None without one."""
    fid = (feature.get("properties") or {}).get("id", feature.get("id"))
    return None if fid is None else str(fid)


def _evidence_uris(evidence: Mapping | None, ids: set[str]) -> dict[str, dict]:
    """``{"uri": data: URI, "width": px, "height": px}`` of the evidence images of the features ``ids`` (PNG/JPEG
    bytes or a file path each). The size lets the page lay the popup out before the image is decoded, so
    Leaflet pans the map to show the whole popup."""
    out: dict[str, dict] = {}
    for key, image in (evidence or {}).items():
        fid = str(key)
        if fid not in ids or image is None:
            continue
        if isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        else:
            try:
                data = Path(image).read_bytes()
            except OSError as err:
                raise InputDataError(
                    f"evidence image {image} of detection {fid} cannot be read ({err}); "
                    "rebuild the evidence thumbnails or leave the detection out of the evidence mapping"
                ) from err
        try:
            uri = _data_uri(data)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
            out[fid] = {"uri": uri, "width": width, "height": height}
        except (ValueError, OSError):
            raise InputDataError(
                f"the evidence image of detection {fid} ({image if not isinstance(image, bytes) else 'bytes'}) "
                "is not a PNG or JPEG image"
            ) from None
    return out


def _bbox(geoms: Sequence) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of shapely geometries; None when there are none."""
    if not geoms:
        return None
    b = shapely.total_bounds(np.array(geoms, dtype=object))
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _layer_features(layer: Mapping) -> list:
    """The features of a layer record: a list of features, or a FeatureCollection mapping."""
    feats = layer.get("features") or []
    if isinstance(feats, Mapping):
        feats = feats.get("features") or []
    return list(feats)


def _prepare_layers(
    layers: Sequence[Mapping], simplify_m: float, clip_margin: float
) -> tuple[list[dict], tuple[float, float, float, float] | None]:
    """The page's layer records (features as rounded GeoJSON) and the bbox the ``areas`` were clipped to.

    Raises ValueError for an unknown kind, a duplicate or empty name, or a feature that is not a mapping;
    InputDataError (a ValueError) for a geometry that is not GeoJSON.
    """
    geoms: list[list] = []
    names: set[str] = set()
    for i, layer in enumerate(layers):
        name, kind = layer.get("name"), layer.get("kind")
        if not isinstance(name, str) or not name:
            raise ValueError(f"layer {i} has no name (a non-empty text)")
        if name in names:
            raise ValueError(f"two layers are called {name!r}; layer names label the layer control and must differ")
        if kind not in KINDS:
            raise ValueError(f"layer {name!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
        names.add(name)
        feats = _layer_features(layer)
        bad = next((j for j, f in enumerate(feats) if not isinstance(f, Mapping)), None)
        if bad is not None:
            raise ValueError(f"feature {bad} of layer {name!r} is not a GeoJSON-like mapping")
        try:
            geoms.append([_geometry(f) for f in feats])
        except (GeometryTypeError, AttributeError, KeyError, TypeError, ValueError) as err:
            raise InputDataError(
                f"layer {name!r} has a feature whose geometry is not GeoJSON ({err}); fix or drop it in its source file"
            ) from err
    # Areas (whole territories, national parks) can be far bigger than the region: clip them to the
    # region's outline, else to everything else on the map, with a margin.
    region = [g for layer, gs in zip(layers, geoms) if layer["kind"] == "region" for g in gs if g is not None]
    others = [g for layer, gs in zip(layers, geoms) if layer["kind"] != "areas" for g in gs if g is not None]
    clip = _bbox(region or others)
    if clip is not None:
        w, s, e, n = clip
        pad = clip_margin * max(e - w, n - s, 1e-3)
        clip = (w - pad, s - pad, e + pad, n + pad)
    out = []
    for layer, gs in zip(layers, geoms):
        feats = []
        for feat, geom in zip(_layer_features(layer), gs):
            if geom is None:
                continue
            if layer["kind"] == "areas":
                if simplify_m > 0:
                    geom = shapely.simplify(geom, simplify_m / METRES_PER_DEGREE, preserve_topology=True)
                if clip is not None:
                    geom = shapely.clip_by_rect(geom, *clip)
                if geom.is_empty:
                    continue
            props = _json_safe(dict(feat.get("properties") or {}))
            fid = feature_id(feat)
            if fid is not None:
                props.setdefault("id", fid)
            feats.append({"type": "Feature", "properties": props, "geometry": _rounded(geom)})
        dropped = len(gs) - len(feats)
        if dropped:
            log.info(
                "web map layer %r: %d of %d features left out (no geometry, or outside the region)",
                layer["name"],
                dropped,
                len(gs),
            )
        out.append(
            {
                "name": layer["name"],
                "kind": layer["kind"],
                "visible": bool(layer.get("visible", True)),
                "period": None if layer.get("period") is None else str(layer["period"]),
                "features": feats,
            }
        )
    return out, clip


def render_webmap(
    title: str,
    layers: Sequence[Mapping],
    evidence: Mapping | None = None,
    basemap: tuple[bytes, Sequence[float]] | None = None,
    attribution: str = "",
    simplify_m: float = 50.0,
    clip_margin: float = 0.1,
) -> tuple[str, dict[str, int]]:
    """The HTML text of the web map and the number of features each layer draws (see :func:`write_webmap`)."""
    if simplify_m < 0 or not math.isfinite(simplify_m):
        raise ValueError(f"simplify_m must be a finite number of metres >= 0, not {simplify_m}")
    page_layers, _ = _prepare_layers(layers, simplify_m, clip_margin)
    ids = {
        str(f["properties"]["id"])
        for lyr in page_layers
        if lyr["kind"] in ("detections", "change")
        for f in lyr["features"]
        if f["properties"].get("id") is not None
    }
    overlay = None
    if basemap is not None:
        png, bounds = basemap
        w, s, e, n = (float(v) for v in bounds)
        if not (w < e and s < n):
            raise ValueError(f"basemap bounds {tuple(bounds)} are not (west, south, east, north)")
        overlay = {"uri": _data_uri(bytes(png)), "bounds": [[s, w], [n, e]]}
    version, leaflet_js, leaflet_css = leaflet_assets()
    data = {
        "title": title,
        "attribution": attribution,
        "leaflet": version,
        "layers": page_layers,
        "evidence": _evidence_uris(evidence, ids),
        "basemap": overlay,
    }
    licence = LEAFLET_LICENCE.format(version=version).replace("--", "- -")
    parts = {
        "TITLE": html.escape(title),
        "LICENCE": licence,
        "LEAFLET_CSS": leaflet_css,
        "PAGE_CSS": _CSS,
        "LEAFLET_JS": leaflet_js,
        "PAGE_JS": _JS,
        "DATA": _script_json(data),
    }
    # One pass, so text put in (a title, Leaflet's source) is never searched for placeholders again.
    page = re.sub(r"@([A-Z_]+)@", lambda m: parts[m.group(1)], _PAGE)
    return page, {lyr["name"]: len(lyr["features"]) for lyr in page_layers}


def write_webmap(
    path: str | os.PathLike,
    title: str,
    layers: Sequence[Mapping],
    evidence: Mapping | None = None,
    basemap: tuple[bytes, Sequence[float]] | None = None,
    attribution: str = "",
    simplify_m: float = 50.0,
    clip_margin: float = 0.1,
) -> dict[str, int]:
    """Write the region's offline web map to ``path`` (HTML, atomically); return the features drawn per layer.

    ``layers``: an ordered list (the order of the layer control and legend) of mappings ``name`` (unique
    text), ``kind`` (``"detections"``: a period's detections; ``"change"``: a period's new mining, coloured
    by ``properties.kind``, ``new_site`` or ``expansion``; ``"footprint"``; ``"areas"``: protected areas or
    indigenous territories; ``"region"``: the outline, not clickable), ``features`` (GeoJSON-like dicts in
    lon/lat, geometry as a GeoJSON mapping or a shapely geometry; features without geometry are left
    out), ``visible`` (shown when the page opens; default True) and optionally ``period`` (shown in
    popups of features without a ``period`` property). Layers may be empty. Layers are stacked by kind
    (areas, region, footprint, detections, change from bottom to top), whatever their order.

    Popups of detections and change show the id, score (2 decimals), area_ha, status, first_detected,
    last_detected, period, kind, protected_area (where present) and the evidence thumbnail when
    ``evidence`` maps the feature's id (``properties.id`` or the feature's ``id``, compared as text) to
    PNG/JPEG bytes or a file path; it is embedded as a base64 ``data:`` URI. Coordinates are rounded to 6
    decimals (0.1 m). Areas are simplified with ``shapely.simplify(preserve_topology=True)`` at a
    tolerance of ``simplify_m`` metres (as degrees: ``simplify_m / 111320``; 0 keeps them as they are) and
    clipped to the bounding box of the ``region`` layers (else of all other layers) widened by
    ``clip_margin`` of its longer side; an area left empty is not drawn.

    ``basemap``: ``(png_bytes, (west, south, east, north))`` in degrees as :func:`basemap_png` returns,
    drawn under the vectors as an ``L.imageOverlay``. ``attribution``: text for the attribution control
    (escaped; HTML is shown as text), beside Leaflet's version and licence. ``title``: the page title.

    Raises:
        ValueError: an unknown layer kind, a duplicate or empty layer name, a non-mapping feature, a
            non-finite coordinate, bad basemap bounds or ``simplify_m``.
        InputDataError: a geometry is not GeoJSON; an evidence image cannot be read or is not PNG/JPEG.
        ModuleNotFoundError: XStatic-Leaflet is not installed.
        OSError: ``path`` cannot be written.
    """
    page, counts = render_webmap(title, layers, evidence, basemap, attribution, simplify_m, clip_margin)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "no layers"
    log.info("wrote the web map %s (%.1f MiB): %s", path, len(page.encode()) / 2**20, summary)
    return counts


def _mercator_grid(
    bounds_lonlat: Sequence[float], max_px: int, finest_m: float
) -> tuple[Affine, int, int, tuple[float, float, float, float]]:
    """(transform, width, height, lon/lat bounds) of an EPSG:3857 grid over ``bounds_lonlat`` whose longer side
    is at most ``max_px`` pixels and whose pixels are no finer than ``finest_m`` metres on the ground."""
    west, south, east, north = (float(v) for v in bounds_lonlat)
    if not (west < east and south < north) or not all(map(math.isfinite, (west, south, east, north))):
        raise ValueError(f"bounds {tuple(bounds_lonlat)} are not (west, south, east, north) in degrees")
    if south < -MERCATOR_MAX_LAT or north > MERCATOR_MAX_LAT:
        raise ValueError(f"bounds {tuple(bounds_lonlat)} reach beyond Web Mercator's ±{MERCATOR_MAX_LAT:.4f}° latitude")
    to_m = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x0, y0 = to_m.transform(west, south)
    x1, y1 = to_m.transform(east, north)
    # Web Mercator stretches ground distances by 1 / cos(latitude).
    scale = 1.0 / math.cos(math.radians((south + north) / 2))
    res = max((x1 - x0) / max_px, (y1 - y0) / max_px, finest_m * scale)
    width, height = max(1, math.ceil((x1 - x0) / res)), max(1, math.ceil((y1 - y0) / res))
    transform = Affine(res, 0.0, x0, 0.0, -res, y1)
    lon1, lat0 = to_m.transform(x0 + width * res, y1 - height * res, direction="INVERSE")
    return transform, width, height, (west, float(lat0), float(lon1), north)


def basemap_png(
    composite_paths: Sequence[str | os.PathLike], bounds_lonlat: Sequence[float], max_px: int = 2048
) -> tuple[bytes, tuple[float, float, float, float]]:
    """A true-colour RGBA PNG of the composites over ``bounds_lonlat``, in Web Mercator, and its lon/lat bounds.

    ``composite_paths``: float reflectance GeoTIFFs (any projected CRS, e.g. UTM; bands found by their band
    descriptions, ``B04``, ``B03``, ``B02`` for red, green, blue; NaN or the nodata value = no data; GDAL
    scale/offset of integer bands applied). They are mosaicked in the order given (a pixel already filled
    by an earlier composite is kept). ``bounds_lonlat``: (west, south, east, north) in degrees.

    The image is on an EPSG:3857 grid: Leaflet's default map CRS (``L.CRS.EPSG3857``,
    https://leafletjs.com/reference.html#crs-l-crs-epsg3857) and ``L.imageOverlay`` stretches an image
    linearly between its corners in that CRS, so only a Web Mercator image lines up with the vectors at
    every latitude. Its longer side is at most ``max_px`` pixels, and pixels are no finer than the finest
    composite's. Each composite is read decimated to about that resolution (``out_shape``, so GDAL uses
    overviews where the file has them, averaging otherwise; NaN is skipped) over the part that covers the
    bounds only, so memory stays near the output's size whatever the region's, then warped bilinearly
    with ``rasterio.warp.reproject``. Reflectance 0..:data:`STRETCH_MAX` is stretched linearly to 0..255;
    pixels without all three bands are transparent (alpha 0).

    Returns ``(png_bytes, (west, south, east, north))``: the bounds of the image's pixel grid in degrees
    (west and north are the requested ones; east and south may reach one pixel further), to pass to
    ``L.imageOverlay`` / :func:`write_webmap`.

    Raises:
        ValueError: ``max_px`` < 1, no composites, or bounds not (west, south, east, north) within Web
            Mercator's latitude range.
        InputDataError: a composite lacks the red, green or blue band, or none of them covers the bounds.
        rasterio.errors.RasterioError: a composite cannot be read.
    """
    if max_px < 1:
        raise ValueError(f"max_px must be at least 1, not {max_px}")
    if not composite_paths:
        raise ValueError("no composites to draw the true-colour image from")
    finest = math.inf
    for p in composite_paths:
        with rasterio.open(p) as src:
            finest = min(finest, abs(src.res[0]) * (1.0 if src.crs is None or src.crs.is_projected else 111_320.0))
    transform, width, height, out_bounds = _mercator_grid(bounds_lonlat, max_px, finest)
    rgb = np.full((3, height, width), np.nan, dtype=np.float32)
    dst_bounds = (transform.c, transform.f + transform.e * height, transform.c + transform.a * width, transform.f)
    covered = False
    for p in composite_paths:
        with rasterio.open(p) as src:
            piece = _read_decimated(src, dst_bounds, transform.a)
            if piece is None:
                continue
            arr, src_transform = piece
            out = np.full((3, height, width), np.nan, dtype=np.float32)
            reproject(
                arr,
                out,
                src_transform=src_transform,
                src_crs=src.crs,
                src_nodata=np.nan,
                dst_transform=transform,
                dst_crs="EPSG:3857",
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
            empty = np.isnan(rgb)
            rgb[empty] = out[empty]
            covered = True
    if not covered:
        raise InputDataError(
            f"none of the composites {[str(p) for p in composite_paths]} covers {tuple(bounds_lonlat)}; "
            "pass the composites of the region (or no true-colour image)"
        )
    valid = np.all(np.isfinite(rgb), axis=0)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    scaled = np.clip(np.nan_to_num(rgb, nan=0.0) / STRETCH_MAX, 0.0, 1.0) * 255.0
    rgba[..., :3] = np.moveaxis(np.round(scaled), 0, -1).astype(np.uint8)
    rgba[..., 3] = np.where(valid, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=True)
    return buf.getvalue(), out_bounds


def _read_decimated(src, dst_bounds_3857: Sequence[float], dst_res_m: float) -> tuple[np.ndarray, Affine] | None:
    """float32 (3, rows, cols) red, green, blue of ``src`` over the part of it under ``dst_bounds_3857``, read
    at about ``dst_res_m`` (Web Mercator metres, at most the source's own resolution), and its transform;
    None when ``src`` does not cover the bounds. Nodata and non-finite values are NaN."""
    indexes = band_indexes(src, RGB_BANDS)
    left, bottom, right, top = transform_bounds("EPSG:3857", src.crs, *dst_bounds_3857, densify_pts=21)
    exact = from_bounds(left, bottom, right, top, src.transform)
    col0, row0 = math.floor(exact.col_off), math.floor(exact.row_off)
    window = Window(
        col0, row0, math.ceil(exact.col_off + exact.width) - col0, math.ceil(exact.row_off + exact.height) - row0
    )
    try:
        window = window.intersection(Window(0, 0, src.width, src.height))
    except rasterio.errors.WindowError:
        return None
    if window.width < 1 or window.height < 1:
        return None
    # Source pixels per output pixel: Web Mercator metres are ground metres / cos(lat) at most, so the
    # source pixel size is compared with the output's finest ground size.
    lat = math.radians(
        Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform((left + right) / 2, (bottom + top) / 2)[1]
    )
    factor = max(1.0, dst_res_m * math.cos(lat) / abs(src.res[0]))
    rows, cols = max(1, round(window.height / factor)), max(1, round(window.width / factor))
    arr = src.read(indexes, window=window, out_shape=(3, rows, cols), resampling=Resampling.average)
    arr = _decode(src, arr, indexes)
    transform = src.window_transform(window) @ Affine.scale(window.width / cols, window.height / rows)
    return arr, transform


def _decode(src, arr: np.ndarray, indexes: Sequence[int]) -> np.ndarray:
    """float32 reflectance of bands read from ``src``: GDAL scale/offset of integer bands applied, nodata
    and non-finite values as NaN (as garimpo.geo.raster.read_bands does)."""
    nodata = src.nodata
    bad = (arr == nodata) if nodata is not None and not np.isnan(nodata) else np.zeros(arr.shape, bool)
    out = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        for b, i in enumerate(indexes):
            scale, offset = src.scales[i - 1], src.offsets[i - 1]
            if scale != 1.0 or offset != 0.0:
                out[b] = out[b] * np.float32(scale) + np.float32(offset)
    out[bad | ~np.isfinite(out)] = np.nan
    return out


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="garimpo">
<title>@TITLE@</title>
<!--
A self-contained offline map made by garimpo: it loads nothing from the network.
@LICENCE@
-->
<style>
@LEAFLET_CSS@
</style>
<style>
@PAGE_CSS@
</style>
<script>
@LEAFLET_JS@
</script>
</head>
<body>
<div id="map"></div>
<script type="application/json" id="garimpo-data">@DATA@</script>
<script>
@PAGE_JS@
</script>
</body>
</html>
"""

_CSS = """html, body, #map { height: 100%; margin: 0; padding: 0; }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #dfe3e6; }
.garimpo-box { background: rgba(255, 255, 255, 0.92); padding: 6px 9px; border-radius: 4px;
  box-shadow: 0 1px 4px rgba(0, 0, 0, 0.35); max-width: 320px; }
.garimpo-title { font-weight: 600; font-size: 15px; }
.garimpo-legend .row { display: flex; align-items: center; gap: 6px; margin: 2px 0; }
.garimpo-legend .swatch { width: 16px; height: 11px; border: 2px solid; box-sizing: border-box; flex: none; }
.garimpo-popup table { border-collapse: collapse; }
.garimpo-popup th { text-align: left; padding-right: 8px; font-weight: 600; vertical-align: top; }
.garimpo-popup img { display: block; max-width: 300px; margin-top: 6px; image-rendering: auto; }
"""

_JS = r"""(function () {
  "use strict";
  var state = {ready: false, layers: {}, errors: [], map: null, overlays: {}};
  window.garimpoMap = state;
  window.addEventListener("error", function (e) { state.errors.push(String(e.message || e)); });

  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function present(v) { return v !== null && v !== undefined && v !== ""; }
  function fixed(v, n) { return typeof v === "number" ? v.toFixed(n) : v; }

  var data = JSON.parse(document.getElementById("garimpo-data").textContent);
  // Detections: the newest period red, older ones ever lighter (oldest beyond the ramp share its last colour).
  var DETECTION_COLOURS = ["#e31a1c", "#fc4e2a", "#fd8d3c", "#feb24c", "#fed976", "#ffeda0"];
  var CHANGE_COLOURS = {new_site: "#00e5ff", expansion: "#1f78b4"};
  var PANES = {areas: 410, region: 420, footprint: 430, detections: 440, change: 450};

  var map = L.map("map", {zoomSnap: 0.25, preferCanvas: false});
  state.map = map;
  map.attributionControl.setPrefix("Leaflet " + esc(data.leaflet) + " (BSD-2-Clause)");
  if (present(data.attribution)) { map.attributionControl.addAttribution(esc(data.attribution)); }
  Object.keys(PANES).forEach(function (k) { map.createPane(k).style.zIndex = PANES[k]; });
  L.control.scale({imperial: false}).addTo(map);

  var detectionsLeft = data.layers.filter(function (l) { return l.kind === "detections"; }).length;
  function styleFor(layer) {
    if (layer.kind === "detections") {
      var c = DETECTION_COLOURS[Math.min(--detectionsLeft, DETECTION_COLOURS.length - 1)];
      return function () { return {color: c, weight: 2, fillColor: c, fillOpacity: 0.35}; };
    }
    if (layer.kind === "change") {
      return function (f) {
        var c = CHANGE_COLOURS[(f.properties || {}).kind] || "#a6cee3";
        return {color: c, weight: 2, fillColor: c, fillOpacity: 0.55};
      };
    }
    if (layer.kind === "footprint") {
      return function () {
        return {color: "#7b3294", weight: 1.5, dashArray: "4 3", fillColor: "#c2a5cf", fillOpacity: 0.25};
      };
    }
    if (layer.kind === "areas") {
      return function () { return {color: "#1a9850", weight: 1.5, fillColor: "#a6d96a", fillOpacity: 0.12}; };
    }
    return function () { return {color: "#111111", weight: 2.5, dashArray: "6 4", fill: false}; };
  }

  var FIELDS = [["id", "id"], ["score", "score"], ["area_ha", "area (ha)"], ["kind", "change"], ["status", "status"],
                ["first_detected", "first detected"], ["last_detected", "last detected"], ["period", "period"],
                ["protected_area", "protected area"]];
  function popupHtml(f, layer) {
    var p = f.properties || {};
    var rows = "";
    FIELDS.forEach(function (fl) {
      var v = p[fl[0]];
      if (fl[0] === "period" && !present(v)) { v = layer.period; }
      if (fl[0] === "score") { v = fixed(v, 2); }
      if (fl[0] === "area_ha") { v = fixed(v, 2); }
      if (present(v)) { rows += "<tr><th>" + esc(fl[1]) + "</th><td>" + esc(v) + "</td></tr>"; }
    });
    var html = "<div class='garimpo-popup'><b>" + esc(layer.name) + "</b><table>" + rows + "</table>";
    var ev = present(p.id) ? data.evidence[String(p.id)] : undefined;
    if (ev && /^data:image\/(png|jpeg);base64,[A-Za-z0-9+\/=]+$/.test(ev.uri)) {
      var w = Math.min(Number(ev.width) || 300, 300);
      var h = Math.round((w * (Number(ev.height) || 0)) / (Number(ev.width) || 1));
      html += "<img alt='evidence: before and after' width='" + w + "' height='" + h + "' src='" + ev.uri + "'>";
    }
    return html + "</div>";
  }
  function areaLabel(f) {
    var p = f.properties || {};
    var name = p.name || p.NAME || p.nome || p.id;
    return present(name) ? esc(name) : "";
  }

  var bounds = {region: L.latLngBounds([]), data: L.latLngBounds([]), areas: L.latLngBounds([])};
  var control = L.control.layers(null, null, {collapsed: false, position: "topright"});
  var legendRows = [];

  if (data.basemap) {
    try {
      var img = L.imageOverlay(data.basemap.uri, data.basemap.bounds, {pane: "tilePane", opacity: 1});
      img.addTo(map);
      control.addOverlay(img, "True colour (latest composites)");
      state.overlays["basemap"] = img;
    } catch (err) { state.errors.push("basemap: " + err); }
  }

  data.layers.forEach(function (layer) {
    try {
      var style = styleFor(layer);
      var interactive = layer.kind !== "region";
      var gj = L.geoJSON({type: "FeatureCollection", features: layer.features}, {
        pane: layer.kind,
        style: style,
        interactive: interactive,
        pointToLayer: function (f, latlng) { return L.circleMarker(latlng, {radius: 6, pane: layer.kind}); },
        onEachFeature: function (f, lyr) {
          if (layer.kind === "detections" || layer.kind === "change" || layer.kind === "footprint") {
            lyr.bindPopup(popupHtml(f, layer), {maxWidth: 340});
          } else if (layer.kind === "areas") {
            var label = areaLabel(f);
            if (label) { lyr.bindTooltip(label, {sticky: true}); }
          }
        }
      });
      state.layers[layer.name] = gj.getLayers().length;
      state.overlays[layer.name] = gj;
      if (layer.visible) { gj.addTo(map); }
      control.addOverlay(gj, esc(layer.name) + " (" + gj.getLayers().length + ")");
      if (gj.getLayers().length) {
        var key = layer.kind === "region" ? "region" : (layer.kind === "areas" ? "areas" : "data");
        bounds[key].extend(gj.getBounds());
      }
      if (layer.kind === "change") {
        legendRows.push([CHANGE_COLOURS.new_site, esc(layer.name) + ": new site"]);
        legendRows.push([CHANGE_COLOURS.expansion, esc(layer.name) + ": expansion"]);
      } else {
        legendRows.push([style({properties: {}}).color, esc(layer.name)]);
      }
    } catch (err) {
      state.errors.push("layer " + layer.name + ": " + err);
    }
  });
  control.addTo(map);

  var title = L.control({position: "topleft"});
  title.onAdd = function () {
    var div = L.DomUtil.create("div", "garimpo-box garimpo-title");
    div.innerHTML = esc(data.title);
    return div;
  };
  title.addTo(map);
  // A popup that opens under the title box is moved down out of it (controls stay above popups in Leaflet).
  map.on("popupopen", function (e) {
    var box = title.getContainer().getBoundingClientRect();
    var pop = e.popup.getElement().getBoundingClientRect();
    if (pop.top < box.bottom && pop.left < box.right && pop.right > box.left) {
      map.panBy([0, -(box.bottom - pop.top + 10)], {animate: false});
    }
  });
  var legend = L.control({position: "bottomleft"});
  legend.onAdd = function () {
    var div = L.DomUtil.create("div", "garimpo-box garimpo-legend");
    div.innerHTML = "<b>Legend</b>" + legendRows.map(function (r) {
      return "<div class='row'><span class='swatch' style='border-color:" + r[0] + ";background:" + r[0] +
             "55'></span>" + r[1] + "</div>";
    }).join("");
    return div;
  };
  legend.addTo(map);

  var fit = bounds.region.isValid() ? bounds.region : (bounds.data.isValid() ? bounds.data : bounds.areas);
  if (!fit.isValid() && data.basemap) { fit = L.latLngBounds(data.basemap.bounds); }
  if (fit.isValid()) { map.fitBounds(fit, {padding: [20, 20]}); } else { map.setView([-5, -60], 4); }
  state.ready = true;
})();
"""
