"""Evidence thumbnails: a before | after true-colour view of each detection, for a reader to judge it by eye.

Per detection the workflow already has, for every period, a composite of each grid cell it touches
(``results/regions/{region}/{period}/composites/{cell}.tif``: float32 surface reflectance 0..1, bands named
by their descriptions, a UTM CRS, NaN where no clear observation). This module reads a small square window
around the detection from the composite of the period it was first detected in ("after") and of the
earliest earlier period with a clear enough view ("before"), stretches both the same way and draws the
detection's outline on both, side by side in one PNG.

Georeferencing stays at the edge (:func:`read_window` returns a :class:`View`: array plus CRS and
transform); choosing the periods (:func:`choose_periods`) and drawing (:func:`thumbnail`) are pure.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from garimpo.atomic import atomic_path
from garimpo.errors import InputDataError
from garimpo.geo.geojson import reproject
from garimpo.geo.raster import RGB_BANDS, Raster, band_indexes
from garimpo.outputs.plots import COLOURS, true_colour

log = logging.getLogger(__name__)

# The stretch of the overview map (garimpo.outputs.plots.true_colour's defaults): reflectance 0 -> black,
# 0.25 -> white, gamma 0.7. One fixed range for every panel, so "brighter after" means brighter ground,
# not a different stretch; 0.25 keeps bright bare sediment (reflectance ~0.15-0.3) from saturating at once.
STRETCH = (0.0, 0.25)
# The detection outline: the overview map's colour for mining detections, 2 px wide.
OUTLINE_RGB = tuple(int(COLOURS["mining"][i : i + 2], 16) for i in (1, 3, 5))
OUTLINE_PX = 2
MISSING_RGB = (128, 128, 128)  # a panel without imagery, and pixels without a clear observation
STRIP_RGB = (30, 30, 30)  # the label strip and the gap between panels
TEXT_RGB = (255, 255, 255)
LABEL_PX = 20  # height of the label strip above each panel
GAP_PX = 4  # between the two panels
FONT_PX = 13
# zlib level of the PNGs: 3 encodes a 516 x 276 thumbnail in ~25 ms, 4x faster than Pillow's default 6,
# for files ~12 % larger (thousands of detections on a basin run).
PNG_LEVEL = 3
NO_BEFORE = "no earlier clear view"
NO_EARLIER = "no earlier period"
NO_AFTER = "no clear view"
# A detection id becomes a file name: letters, digits, ".", "_" and "-" only, so no id can reach outside out_dir.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_OPEN_DATASETS = 32  # composites kept open at once while writing many thumbnails


@dataclass(frozen=True)
class View:
    """A square window of one composite, resampled for a thumbnail panel.

    ``array``: float32 (bands, size_px, size_px) surface reflectance (about 0..1), NaN where the composite
    has no clear observation or the window leaves the composite. ``crs`` and ``transform``: where those
    pixels lie (``transform`` maps a panel pixel's (col, row) to ``crs`` metres). ``band_names``: the bands
    of ``array`` in order. ``source``: the composite read.
    """

    array: np.ndarray
    crs: str
    transform: Affine
    band_names: tuple[str, ...]
    source: str

    @property
    def clear_fraction(self) -> float:
        """Share of the panel's pixels (0..1) with a finite value in every band."""
        return float(np.isfinite(self.array).all(axis=0).mean()) if self.array.size else 0.0


def choose_periods(
    first_detected: str, periods: Sequence[str], clear_fraction: Mapping[str, float], min_clear: float = 0.5
) -> tuple[str | None, str]:
    """The periods to show a detection in: ``(before, after)``.

    ``after`` is ``first_detected``, the period the detection first appeared in. ``before`` is the earliest
    period of ``periods`` (ordered oldest first) before it whose window around the detection is at least
    ``min_clear`` clear (``clear_fraction``: period -> share 0..1 of the window's pixels with a clear
    observation; a period it lacks counts as 0); else the earliest earlier period with any clear pixel;
    else None (the site was already there in the first period, or every earlier view is cloud: no before).
    The earliest rather than the latest earlier period so that "before" shows the ground furthest from the
    mining, for a site whose start the detector may have missed by a period.

    Raises:
        ValueError: ``first_detected`` is not one of ``periods``, or ``min_clear`` is outside 0..1.
    """
    if not 0.0 <= min_clear <= 1.0:
        raise ValueError(f"min_clear {min_clear} is not a fraction between 0 and 1")
    periods = list(periods)
    if first_detected not in periods:
        raise ValueError(f"first_detected period {first_detected!r} is not one of the periods {periods}")
    earlier = periods[: periods.index(first_detected)]
    for p in earlier:
        if clear_fraction.get(p, 0.0) >= min_clear:
            return p, first_detected
    for p in earlier:
        if clear_fraction.get(p, 0.0) > 0.0:
            return p, first_detected
    return None, first_detected


def _square(geom_lonlat: BaseGeometry, src, min_size_m: float, pad_m: float) -> tuple[Window, bool]:
    """The square window (whole source pixels) around the geometry in ``src``'s CRS, and whether ``src``
    contains the geometry's centroid."""
    geom = reproject(geom_lonlat, "EPSG:4326", src.crs)
    left, bottom, right, top = geom.bounds
    side = max(min_size_m, max(right - left, top - bottom) + 2.0 * pad_m)
    cx, cy = (left + right) / 2.0, (bottom + top) / 2.0
    raw = from_bounds(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, src.transform)
    # Snapped to the source's pixel edges, so the panel's transform is exact (off-centre by < half a pixel).
    n = max(1, int(round(max(raw.width, raw.height))))
    col = int(round(raw.col_off + raw.width / 2 - n / 2))
    row = int(round(raw.row_off + raw.height / 2 - n / 2))
    c = geom.centroid
    b = src.bounds
    return Window(col, row, n, n), bool(b.left <= c.x <= b.right and b.bottom <= c.y <= b.top)


def _read(src, window: Window, bands: Sequence[str], size_px: int) -> View:
    """``window`` of ``src`` resampled (average) to ``size_px`` square; outside the raster is NaN."""
    indexes = band_indexes(src, bands)
    inside = window.col_off >= 0 and window.row_off >= 0
    inside = inside and window.col_off + window.width <= src.width and window.row_off + window.height <= src.height
    data = src.read(
        indexes,
        window=window,
        boundless=not inside,  # a boundless read goes through a VRT: 4x slower, so only where needed
        masked=True,
        out_shape=(len(indexes), size_px, size_px),
        resampling=Resampling.average,
    )
    array = data.astype(np.float32).filled(np.nan)
    if np.issubdtype(src.dtypes[indexes[0] - 1], np.integer):  # scaled digital numbers: apply GDAL scale/offset
        for b, i in enumerate(indexes):
            array[b] = array[b] * np.float32(src.scales[i - 1]) + np.float32(src.offsets[i - 1])
    transform = src.window_transform(window) @ Affine.scale(window.width / size_px, window.height / size_px)
    return View(array, src.crs.to_string(), transform, tuple(bands), str(src.name))


def _read_view(
    sources: Sequence[Any],
    geom_lonlat: BaseGeometry,
    bands: Sequence[str],
    min_size_m: float,
    pad_m: float,
    size_px: int,
) -> View:
    """:func:`read_window` on open datasets."""
    if not sources:
        raise ValueError("read_window needs at least one composite")
    windows = [_square(geom_lonlat, src, min_size_m, pad_m) for src in sources]
    containing = [i for i, (_, inside) in enumerate(windows) if inside]
    candidates = containing or list(range(len(sources)))
    if len(candidates) == 1:
        i = candidates[0]
        return _read(sources[i], windows[i][0], bands, size_px)
    # Several (cells overlap by their margins) or none contain it: the clearest view, the first on a tie.
    views = [_read(sources[i], windows[i][0], bands, size_px) for i in candidates]
    clear = [v.clear_fraction for v in views]
    return views[clear.index(max(clear))]


def read_window(
    composite_paths: Sequence[str | os.PathLike],
    geom_lonlat: BaseGeometry,
    bands: Sequence[str] = RGB_BANDS,
    min_size_m: float = 1500.0,
    pad_m: float = 300.0,
    size_px: int = 256,
) -> View:
    """A square window of a composite centred on a detection, resampled to ``size_px`` x ``size_px``.

    ``geom_lonlat``: the detection (shapely, lon/lat). The window is centred on the geometry's bounding
    box in the composite's CRS, its side ``max(min_size_m, longest bbox side + 2 * pad_m)`` metres, snapped
    to the composite's pixel edges; only that window is read (rasterio boundless and masked reading,
    average resampling, which uses the composite's overviews when shrinking a large window), so the
    composite's size does not matter. Outside the composite and where it is NaN (no clear observation)
    the view is NaN. ``bands``: band descriptions to read, in that order (red, green, blue for a
    true-colour panel). When the detection spans several cells, the composite among ``composite_paths``
    that contains the geometry's centroid is read; when several contain it (cells overlap by their
    margins) or none does, the one whose window has the most clear pixels, the first given on a tie.

    Returns a :class:`View`: float32 (len(bands), size_px, size_px) reflectance 0..1 with its CRS and
    transform (to draw the outline).

    Raises:
        ValueError: ``composite_paths`` is empty.
        InputDataError: a composite lacks one of ``bands``.
        rasterio.errors.RasterioError: a composite cannot be opened or read.
    """
    with ExitStack() as stack:
        sources = [stack.enter_context(rasterio.open(p)) for p in composite_paths]
        return _read_view(sources, geom_lonlat, bands, min_size_m, pad_m, size_px)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, the font matplotlib bundles (it has the em dash of the labels; Pillow's own default font
    does not), else Pillow's default."""
    import matplotlib

    try:
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), FONT_PX)
    except OSError:
        return ImageFont.load_default(size=FONT_PX)


def _panel_rgb(view: View) -> np.ndarray:
    """uint8 (H, W, 3) of a view: ``true_colour`` with :data:`STRETCH`; a pixel NaN in any band (no clear
    observation) draws :data:`MISSING_RGB`, not ``true_colour``'s black, which would read as water."""
    raster = Raster(view.array, view.crs, view.transform, view.band_names)
    rgb = np.round(true_colour(raster, *STRETCH) * 255.0).astype(np.uint8)
    rgb[~np.isfinite(view.array).all(axis=0)] = MISSING_RGB
    return rgb


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    """(n, 2) coordinate arrays of every polygon ring and line of ``geom``."""
    out: list[np.ndarray] = []
    for part in getattr(geom, "geoms", [geom]):
        if part.geom_type == "Polygon":
            out += [np.asarray(r.coords) for r in (part.exterior, *part.interiors)]
        elif part.geom_type in ("LineString", "LinearRing"):
            out.append(np.asarray(part.coords))
        elif hasattr(part, "geoms"):
            out += _rings(part)
    return out


def _draw_outline(draw: ImageDraw.ImageDraw, view: View, geom_lonlat: BaseGeometry) -> None:
    """The geometry's rings on a panel of ``view``, through the view's CRS and transform."""
    inverse = ~view.transform
    for ring in _rings(reproject(geom_lonlat, "EPSG:4326", view.crs)):
        cols, rows = inverse @ (ring[:, 0], ring[:, 1])
        # Pixel (col, row) edges -> Pillow's pixel-centre coordinates.
        xy = [(float(c) - 0.5, float(r) - 0.5) for c, r in zip(cols, rows, strict=True)]
        if len(xy) >= 2:
            draw.line(xy, fill=OUTLINE_RGB, width=OUTLINE_PX, joint="curve")


def _centred_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str, fill) -> None:
    left, top, right, bottom = box
    tl, tt, tr, tb = draw.textbbox((0, 0), text, font=_font())
    x = left + (right - left - (tr - tl)) / 2 - tl
    y = top + (bottom - top - (tb - tt)) / 2 - tt
    draw.text((x, y), text, font=_font(), fill=fill)


def thumbnail(
    before: View | None,
    after: View | None,
    geom_lonlat: BaseGeometry,
    labels: tuple[str, str],
    missing: tuple[str, str] = (NO_BEFORE, NO_AFTER),
) -> np.ndarray:
    """The before | after evidence image of one detection: uint8 RGB (LABEL_PX + size, 2 * size + GAP_PX, 3).

    Each panel is its view in true colour (red, green, blue = the view's bands in order, normally
    B04/B03/B02) stretched over the same fixed reflectance range :data:`STRETCH` (0..0.25 with gamma 0.7,
    the defaults of :func:`garimpo.outputs.plots.true_colour`, which draws it), so the two panels'
    brightness compares; a pixel without a clear observation (NaN) is grey (:data:`MISSING_RGB`). The
    detection (``geom_lonlat``, shapely lon/lat) is outlined on both in :data:`OUTLINE_RGB`,
    :data:`OUTLINE_PX` wide, placed through each view's own CRS and transform.
    Above each panel a label strip shows ``labels`` (before, after), e.g. ``("2021 — before",
    "2023 — first detected")``. A view that is None draws as a grey (:data:`MISSING_RGB`) panel saying
    ``missing`` (before: "no earlier clear view").
    ``size`` is the views' side in pixels (256 when both are None).

    Raises:
        ValueError: the two views differ in size, or a view is not square.
    """
    shapes = {v.array.shape[1:] for v in (before, after) if v is not None}
    if len(shapes) > 1 or any(h != w for h, w in shapes):
        raise ValueError(f"before and after views must be square and of one size, got {sorted(shapes)}")
    size = next(iter(shapes))[0] if shapes else 256
    image = Image.new("RGB", (2 * size + GAP_PX, LABEL_PX + size), STRIP_RGB)
    draw = ImageDraw.Draw(image)
    for k, view in enumerate((before, after)):
        x0 = k * (size + GAP_PX)
        _centred_text(draw, (x0, 0, x0 + size, LABEL_PX), labels[k], TEXT_RGB)
        # Each panel is drawn on its own, so an outline leaving the window is clipped at the panel's edge.
        if view is None:
            panel = Image.new("RGB", (size, size), MISSING_RGB)
            _centred_text(ImageDraw.Draw(panel), (0, 0, size, size), missing[k], STRIP_RGB)
        else:
            panel = Image.fromarray(_panel_rgb(view), "RGB")
            _draw_outline(ImageDraw.Draw(panel), view, geom_lonlat)
        image.paste(panel, (x0, LABEL_PX))
    return np.asarray(image)


class _Datasets:
    """Composites opened on demand and kept open (at most ``limit``, least recently used closed first)."""

    def __init__(self, limit: int = _OPEN_DATASETS) -> None:
        self.limit = limit
        self.open: OrderedDict[str, Any] = OrderedDict()

    def get(self, path: str):
        if path in self.open:
            self.open.move_to_end(path)
            return self.open[path]
        if len(self.open) >= self.limit:
            _, old = self.open.popitem(last=False)
            old.close()
        self.open[path] = rasterio.open(path)
        return self.open[path]

    def close(self) -> None:
        for src in self.open.values():
            src.close()
        self.open.clear()


def _detection(feature: Mapping, k: int, path: Path, periods: Sequence[str]) -> tuple[str, BaseGeometry, list, str]:
    """(id, lon/lat geometry, cells, first_detected) of one feature, checked.

    Raises :class:`InputDataError` naming the detection and ``path``.
    """
    props = feature.get("properties") or {}
    ident = props.get("id")
    name = f"detection {ident!r} (feature {k})" if ident is not None else f"feature {k} (no id)"
    if ident is None or not _SAFE_ID.match(str(ident)):
        raise InputDataError(
            f"{path}: {name} has no usable 'id' property (letters, digits, '.', '_' and '-', starting with a "
            "letter or digit: it names the thumbnail file); write the detections with garimpo's detect stage"
        )
    if not feature.get("geometry"):
        raise InputDataError(f"{path}: {name} has no geometry; every detection needs its polygon")
    try:
        geom = shape(feature["geometry"])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise InputDataError(f"{path}: {name} has an unreadable geometry ({err})") from err
    if geom.is_empty:
        raise InputDataError(f"{path}: {name} has an empty geometry; every detection needs its polygon")
    cells = props.get("cells")
    cells = [cells] if isinstance(cells, str) else cells
    if not isinstance(cells, list) or not cells or not all(isinstance(c, str) and c for c in cells):
        raise InputDataError(
            f"{path}: {name} has no 'cells' property (the ids of the grid cells it touches), got {cells!r}; "
            "write the detections with garimpo's detect stage"
        )
    first = props.get("first_detected")
    if first not in periods:
        raise InputDataError(
            f"{path}: {name} has first_detected {first!r}, not one of the periods {list(periods)}; "
            "the detections and the periods given must come from the same run"
        )
    return str(ident), geom, cells, str(first)


def write_evidence(
    detections_geojson_path: str | os.PathLike,
    composites: Mapping[str, Mapping[str, str | os.PathLike]],
    periods: Sequence[str],
    out_dir: str | os.PathLike,
    min_clear: float = 0.5,
    min_size_m: float = 1500.0,
    pad_m: float = 300.0,
    size_px: int = 256,
    relative_to: str | os.PathLike | None = None,
) -> dict[str, dict[str, str | None]]:
    """One before | after thumbnail per detection, ``{out_dir}/{id}.png``, and their index.

    ``detections_geojson_path``: a region's latest detections (GeoJSON, lon/lat) with properties ``id``,
    ``cells`` (ids of the grid cells each touches) and ``first_detected`` (one of ``periods``).
    ``composites``: period -> cell -> path of that cell's composite GeoTIFF. ``periods``: the period names,
    oldest first. For each detection the window (:func:`read_window` with ``min_size_m``, ``pad_m``,
    ``size_px``) is read from the composites of its cells in ``first_detected`` ("after") and in the
    earlier periods, oldest first, until one is at least ``min_clear`` clear ("before",
    :func:`choose_periods`); then :func:`thumbnail` draws them. A composite missing from ``composites`` or
    from disk makes that cell's view of that period count as not clear (logged once per period and cell);
    with none of a detection's cells left for a period the panel is grey.

    Each PNG is written atomically; the same inputs give byte-identical files (Pillow writes no time
    stamp). Returns ``{id: {"path": PNG path relative to relative_to (default: out_dir's parent, e.g.
    "evidence/demo-00001.png"), "before": period or None, "after": period}}`` in the file's feature order:
    the caller writes it as JSON and references it from each feature.

    Raises:
        InputDataError: the GeoJSON cannot be read, or a detection lacks a usable id, geometry or
            ``cells``, or has a ``first_detected`` not in ``periods``, or two detections share an id (the
            message names the detection and the file); a composite lacks a red, green or blue band.
        ValueError: ``min_clear`` is outside 0..1.
        rasterio.errors.RasterioError: a composite exists but cannot be read.
    """
    if not 0.0 <= min_clear <= 1.0:
        raise ValueError(f"min_clear {min_clear} is not a fraction between 0 and 1")
    path = Path(detections_geojson_path)
    out_dir = Path(out_dir)
    base = Path(relative_to) if relative_to is not None else out_dir.parent
    try:
        features = json.loads(path.read_text())["features"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputDataError(f"{path}: not a readable GeoJSON FeatureCollection ({err})") from err
    periods = list(periods)
    detections = [_detection(f, k, path, periods) for k, f in enumerate(features)]
    seen: set[str] = set()
    for ident, *_ in detections:
        if ident in seen:
            raise InputDataError(f"{path}: two detections have the id {ident!r}; ids must be unique")
        seen.add(ident)
    out_dir.mkdir(parents=True, exist_ok=True)
    warned: set[tuple[str, str]] = set()

    def paths_for(period: str, cells: Sequence[str]) -> list[str]:
        found = []
        for cell in cells:
            p = composites.get(period, {}).get(cell)
            if p is not None and Path(p).is_file():
                found.append(str(p))
            elif (period, cell) not in warned:
                warned.add((period, cell))
                log.warning(
                    "no composite for cell %s in period %s (%s): that view counts as not clear", cell, period, p
                )
        return found

    datasets = _Datasets()

    def read(period: str, cells: Sequence[str], geom: BaseGeometry) -> View | None:
        found = paths_for(period, cells)
        if not found:
            return None
        return _read_view([datasets.get(p) for p in found], geom, RGB_BANDS, min_size_m, pad_m, size_px)

    index: dict[str, dict[str, str | None]] = {}
    try:
        for ident, geom, cells, first in detections:
            views: dict[str, View | None] = {}
            clear: dict[str, float] = {}
            for period in periods[: periods.index(first)]:  # oldest first, until one is clear enough
                view = views[period] = read(period, cells, geom)
                clear[period] = view.clear_fraction if view is not None else 0.0
                if clear[period] >= min_clear:
                    break
            before, after = choose_periods(first, periods, clear, min_clear)
            before_view = views[before] if before is not None else None
            after_view = read(after, cells, geom)
            labels = (f"{before} — before" if before is not None else "before", f"{after} — first detected")
            # a site seen from the first period has no earlier period at all: not a cloud problem
            missing = (NO_EARLIER if first == periods[0] else NO_BEFORE, NO_AFTER)
            image = thumbnail(before_view, after_view, geom, labels, missing)
            target = out_dir / f"{ident}.png"
            with atomic_path(target, suffix=".png") as tmp:
                Image.fromarray(image, "RGB").save(tmp, format="PNG", compress_level=PNG_LEVEL)
            index[ident] = {"path": Path(os.path.relpath(target, base)).as_posix(), "before": before, "after": after}
    finally:
        datasets.close()
    log.info("wrote %d evidence thumbnails to %s", len(index), out_dir)
    return index
