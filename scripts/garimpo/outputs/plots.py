"""Figures: the region overview with its detections over a mosaic of the cells' composites."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from affine import Affine  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from garimpo.geo.geojson import reproject  # noqa: E402
from garimpo.geo.raster import Raster, band_indexes, band_names, utm_epsg  # noqa: E402

COLOURS = {"mining": "#e4002b", "not_mining": "#00b4d8", "region": "#ffffff"}


def true_colour(image: Raster, low: float = 0.0, high: float = 0.25) -> np.ndarray:
    """B04/B03/B02 stretched to 0..1 with a gamma that lifts the dark forest; NaN shows black."""
    rgb = image.select(["B04", "B03", "B02"])
    rgb = np.clip((rgb - low) / (high - low), 0, 1) ** 0.7
    return np.nan_to_num(rgb.transpose(1, 2, 0))


def _outline(ax, geom, colour, width):
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type != "Polygon":
            continue
        x, y = poly.exterior.xy
        ax.plot(x, y, color=colour, linewidth=width)


def quicklook(
    composite_paths: Sequence[str | Path], crs: str, bounds: Sequence[float], max_px: int = 1600
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """True-colour mosaic of composites on one coarse grid over ``bounds`` (in ``crs``).

    Each composite is read decimated (its overviews make that cheap) and warped onto the
    mosaic grid, so memory depends on ``max_px``, not on the region's size.
    """
    import rasterio
    from rasterio.warp import Resampling
    from rasterio.warp import reproject as warp

    left, bottom, right, top = bounds
    res = max(right - left, top - bottom) / max_px
    width, height = max(1, int(np.ceil((right - left) / res))), max(1, int(np.ceil((top - bottom) / res)))
    dst_transform = Affine(res, 0, left, 0, -res, top)
    mosaic = np.full((3, height, width), np.nan, np.float32)
    for path in composite_paths:
        with rasterio.open(path) as src:
            if not {"B04", "B03", "B02"} <= set(band_names(src)):
                continue
            f = max(1, int(res // abs(src.transform.a)))
            shape_ = (max(1, src.height // f), max(1, src.width // f))
            arr = src.read(
                band_indexes(src, ("B04", "B03", "B02")),
                out_shape=(3, *shape_),
                resampling=Resampling.average,
            ).astype(np.float32)
            t = src.transform @ Affine.scale(src.width / shape_[1], src.height / shape_[0])
            part = np.full_like(mosaic, np.nan)
            warp(
                arr,
                part,
                src_transform=t,
                src_crs=src.crs,
                dst_transform=dst_transform,
                dst_crs=crs,
                resampling=Resampling.bilinear,
                src_nodata=np.nan,
                dst_nodata=np.nan,
            )
            mosaic = np.where(np.isnan(mosaic), part, mosaic)
    rgb = np.clip(mosaic / 0.25, 0, 1) ** 0.7
    return np.nan_to_num(rgb.transpose(1, 2, 0)), (left, right, bottom, top)


def overview_map(
    detections_path: str | Path,
    composite_paths: Sequence[str | Path],
    region_lonlat,
    out_path: str | Path,
    title: str = "",
    attribution: str = "",
) -> Path:
    """Composite mosaic, region outline and detections (red), in the UTM zone of the region's centre."""
    c = region_lonlat.centroid
    crs = f"EPSG:{utm_epsg(c.x, c.y)}"
    region = reproject(region_lonlat, "EPSG:4326", crs)
    left, bottom, right, top = region.bounds
    pad = 0.03 * max(right - left, top - bottom)
    bounds = (left - pad, bottom - pad, right + pad, top + pad)
    image, extent = quicklook(composite_paths, crs, bounds)
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(10, 10 * h / w + 0.8), dpi=120)
    ax.imshow(image, extent=extent)
    _outline(ax, region, COLOURS["region"], 1.0)
    feats = json.loads(Path(detections_path).read_text())["features"]
    for f in feats:
        _outline(ax, reproject(shape(f["geometry"]), "EPSG:4326", crs), COLOURS["mining"], 1.6)
    total = sum(float(f["properties"].get("area_ha", 0)) for f in feats)
    handles = [
        Line2D([], [], color=COLOURS["mining"], label=f"mining detections ({len(feats)}, {total:,.0f} ha)"),
        Line2D([], [], color=COLOURS["region"], label="region"),
    ]
    ax.legend(handles=handles, loc="lower right", facecolor="#333333", labelcolor="white", framealpha=0.8)
    ax.set_title(title)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(f"easting (m), {crs}")
    ax.set_ylabel("northing (m)")
    if attribution:
        fig.text(0.01, 0.005, attribution, fontsize=7, color="#555555")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
