"""Figures: the region overview with candidate zones and the classifier's verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from .geo import reproject  # noqa: E402
from .raster import Raster  # noqa: E402

COLOURS = {"mining": "#e4002b", "not_mining": "#00b4d8", "region": "#ffffff"}


def true_colour(scene: Raster, low: float = 0.0, high: float = 0.25) -> np.ndarray:
    """B04/B03/B02 stretched to 0..1 with a gamma that lifts the dark forest; NaN shows black."""
    rgb = scene.select(["B04", "B03", "B02"])
    rgb = np.clip((rgb - low) / (high - low), 0, 1) ** 0.7
    return np.nan_to_num(rgb.transpose(1, 2, 0))


def _outline(ax, geom, colour, width):
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type != "Polygon":
            continue
        x, y = poly.exterior.xy
        ax.plot(x, y, color=colour, linewidth=width)


def overview_map(scene: Raster, scored_path: str | Path, region_lonlat, out_path: str | Path, title: str = "",
                 attribution: str = "") -> Path:
    """True-colour scene, region outline, candidate zones coloured by verdict (in the scene's CRS)."""
    h, w = scene.array.shape[1:]
    t = scene.transform
    extent = (t.c, t.c + t.a * w, t.f + t.e * h, t.f)
    fig, ax = plt.subplots(figsize=(10, 10 * h / w + 0.8), dpi=120)
    ax.imshow(true_colour(scene), extent=extent)
    _outline(ax, reproject(region_lonlat, "EPSG:4326", scene.crs), COLOURS["region"], 1.0)
    feats = json.loads(Path(scored_path).read_text())["features"]
    counts = {"mining": 0, "not_mining": 0}
    for f in feats:
        label = f["properties"]["label"]
        counts[label] += 1
        _outline(ax, reproject(shape(f["geometry"]), "EPSG:4326", scene.crs), COLOURS[label], 1.6 if label == "mining" else 0.9)
    handles = [Line2D([], [], color=COLOURS["mining"], label=f"mining ({counts['mining']})"),
               Line2D([], [], color=COLOURS["not_mining"], label=f"candidate, not mining ({counts['not_mining']})"),
               Line2D([], [], color=COLOURS["region"], label="region")]
    ax.legend(handles=handles, loc="lower right", facecolor="#333333", labelcolor="white", framealpha=0.8)
    ax.set_title(title)
    ax.set_xlabel(f"easting (m), {scene.crs}")
    ax.set_ylabel("northing (m)")
    if attribution:
        fig.text(0.01, 0.005, attribution, fontsize=7, color="#555555")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
