"""Chip scores of one scan: the record (``ChipScores``), on disk (.npz), and what they become in space
(lon/lat chip squares for the merge, polygons in the composite's CRS)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box, shape

from garimpo.atomic import atomic_path


@dataclass
class ChipScores:
    """Every chip one scan of a cell's composite classified, with the geometry to place them and the scan's counts.

    Geometry: ``rows``/``cols``: int [N] top-left pixel of each chip in the composite; ``scores``: float32 [N]
    P(mining) in [0, 1]; ``chip_px``: chip side and ``stride``: lattice step (composite pixels);
    ``height``/``width``: the composite's size (px); ``crs`` and ``transform``: its georeferencing.
    Counts (what ``summary`` reports): ``mode`` (``brute_force`` or ``two_stage``), ``lattice_chips`` (chips
    of the whole lattice), ``classifier_calls`` (images through the network: 8 per chip with TTA), ``km2``
    (the composite's area), ``seconds`` (time per step), ``candidate_pixels`` (pixels the proposer marked,
    each counted once), ``blocks`` (blocks streamed). ``provenance``: what ``save_chip_scores`` stored beside
    the scores (cell, scene ids, dates, model id, ...; empty for a scan's own result). ``clear_px``: uint16
    [ceil(height/unit_px), ceil(width/unit_px)] clear pixels per ``unit_px`` square of the composite
    (``garimpo.detection.coverage``), what the change products read to tell "not detected" from "not seen";
    None when not measured (``unit_px`` 0).
    """

    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    chip_px: int
    stride: int
    height: int
    width: int
    crs: str | None
    transform: Affine
    mode: str = ""
    lattice_chips: int = 0
    classifier_calls: int = 0
    km2: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    candidate_pixels: int = 0
    blocks: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    clear_px: np.ndarray | None = None
    unit_px: int = 0

    @property
    def chips_classified(self) -> int:
        """Chips scored (N)."""
        return len(self.scores)

    def summary(self) -> dict[str, Any]:
        """The scan's counts as a JSON-able dict (km2 to 3 decimals, seconds to ms, candidate_fraction: candidate
        pixels / composite pixels to 5 decimals)."""
        return {
            "mode": self.mode,
            "chips_classified": self.chips_classified,
            "lattice_chips": self.lattice_chips,
            "classifier_calls": self.classifier_calls,
            "km2": round(self.km2, 3),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "candidate_fraction": round(self.candidate_pixels / max(self.height * self.width, 1), 5),
            "blocks": self.blocks,
            "chip_px": self.chip_px,
            "stride": self.stride,
        }


def config_hash(params: Mapping) -> str:
    """12 hex digits of the sha256 of ``params`` as sorted JSON: tells scans run with other settings apart."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def save_chip_scores(path: str | Path, result: ChipScores, provenance: Mapping) -> Path:
    """A scan's chip scores (all of them, so thresholds can change without rescanning) as .npz, written
    atomically, with ``provenance`` (JSON-able) and ``result.summary()``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = dict(
        rows=result.rows.astype(np.int32),
        cols=result.cols.astype(np.int32),
        scores=result.scores.astype(np.float32),
        chip_px=result.chip_px,
        stride=result.stride,
        height=result.height,
        width=result.width,
        crs=str(result.crs),
        transform=np.asarray(list(result.transform)[:6]),
        provenance=json.dumps(dict(provenance)),
        summary=json.dumps(result.summary()),
        candidate_pixels=int(getattr(result, "candidate_pixels", 0)),
    )
    if result.clear_px is not None:  # what the composite saw, for the change products
        arrays.update(clear_px=result.clear_px.astype(np.uint16), unit_px=int(result.unit_px))
    with atomic_path(path, suffix=".npz") as tmp:  # numpy appends .npz to a name without it
        np.savez_compressed(tmp, **arrays)
    return path


def load_chip_scores(path: str | Path) -> ChipScores:
    """Every chip score of one cell's scan, as :func:`save_chip_scores` wrote them (12 bytes a chip in memory),
    with the counts of its summary and its provenance.

    Raises:
        OSError, KeyError, ValueError: the file is missing or not a chip-score file.
    """
    with np.load(path) as z:
        summary = json.loads(str(z["summary"]))
        height, width = int(z["height"]), int(z["width"])
        if "candidate_pixels" in z.files:
            candidates = int(z["candidate_pixels"])
        else:  # written before the count was stored: back from the rounded fraction
            candidates = int(round(float(summary.get("candidate_fraction", 0.0)) * height * width))
        return ChipScores(
            z["rows"],
            z["cols"],
            z["scores"],
            int(z["chip_px"]),
            int(z["stride"]),
            height,
            width,
            str(z["crs"]),
            Affine(*z["transform"].tolist()),
            mode=str(summary.get("mode", "")),
            lattice_chips=int(summary.get("lattice_chips", 0)),
            classifier_calls=int(summary.get("classifier_calls", 0)),
            km2=float(summary.get("km2", 0.0)),
            seconds=dict(summary.get("seconds", {})),
            candidate_pixels=candidates,
            blocks=int(summary.get("blocks", 0)),
            provenance=json.loads(str(z["provenance"])),
            clear_px=z["clear_px"] if "clear_px" in z.files else None,
            unit_px=int(z["unit_px"]) if "unit_px" in z.files else 0,
        )


@dataclass(frozen=True)
class Coverage:
    """What one cell's scan saw, without its scores: ``clear_px`` uint16 [UH, UW] clear pixels per unit square
    of ``unit_px`` px (unit (i, j) covers composite pixels [i*unit_px, (i+1)*unit_px) x [j*unit_px, ...)), the
    lattice (``chip_px``, ``stride``), the composite's ``height``/``width`` (px), ``transform`` and ``crs``,
    ``provenance`` (cell, period, scene ids, ...), and the chips scored: ``rows``/``cols`` int [N] top-left
    pixels and ``scores`` float32 [N] (empty when not given)."""

    clear_px: np.ndarray
    unit_px: int
    chip_px: int
    stride: int
    height: int
    width: int
    transform: Affine
    crs: str
    provenance: dict[str, Any]
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def unit_transform(self) -> Affine:
        """The transform of the unit grid (one unit a pixel)."""
        return self.transform @ Affine.scale(self.unit_px)


def read_coverage(path: str | Path) -> Coverage:
    """A cell's :class:`Coverage` from its chip-score file (12 bytes a chip scored, plus 2 a unit).

    Raises:
        ValueError: the file has no clear-pixel counts (written before they were measured): rescan the cell.
        OSError, KeyError: the file is missing or not a chip-score file.
    """
    with np.load(path) as z:
        if "clear_px" not in z.files:
            raise ValueError(
                f"chip scores {path} hold no clear-pixel counts (written by an older version); delete the file "
                "and rerun so the cell is scanned again"
            )
        return Coverage(
            z["clear_px"],
            int(z["unit_px"]),
            int(z["chip_px"]),
            int(z["stride"]),
            int(z["height"]),
            int(z["width"]),
            Affine(*z["transform"].tolist()),
            str(z["crs"]),
            json.loads(str(z["provenance"])),
            z["rows"],
            z["cols"],
            z["scores"],
        )


def read_chip_provenance(path: str | Path) -> dict:
    """The provenance saved with a cell's chip scores (cell, scene_ids, dates, model_id, ...), without
    reading the scores: an .npz member is decompressed only when asked for."""
    with np.load(path) as z:
        return json.loads(str(z["provenance"]))


def chip_features(result: ChipScores, threshold: float, provenance: Mapping) -> list[dict]:
    """Features (shapely lon/lat squares + properties ``score``, rounded to 4 decimals, and ``provenance``) of a
    scan's chips scoring >= ``threshold`` (in [0, 1]), one per chip.

    Each chip stays its own part so the merge can tell an isolated chip from a group
    (the dual threshold) and dissolve chips across cell edges.
    """
    keep = result.scores >= threshold
    rows, cols, scores = result.rows[keep], result.cols[keep], result.scores[keep]
    if not len(scores):
        return []
    t, size = result.transform, result.chip_px
    x0, y0 = t.c + t.a * cols, t.f + t.e * rows
    x1, y1 = x0 + t.a * size, y0 + t.e * size
    squares = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1))
    tf = Transformer.from_crs(result.crs, "EPSG:4326", always_xy=True)
    lonlat = shapely.transform(squares, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
    return [{"geometry": g, "properties": {"score": round(float(s), 4), **provenance}} for g, s in zip(lonlat, scores)]


def chip_polygons(result: ChipScores, threshold: float) -> list[dict]:
    """Positive chips (score >= ``threshold``) as polygons in the composite's CRS: the union of chip squares,
    one dict per connected group with its ``geometry``, max ``score``, ``n_chips`` and ``area_km2`` (km², of
    a metric CRS).

    Chip squares are painted on a grid of gcd(chip, stride) px cells and vectorised (4-connected), then
    clipped to the composite's extent.
    """
    pos = result.scores >= threshold
    if not pos.any():
        return []
    chip, stride = result.chip_px, result.stride
    cell = math.gcd(chip, stride)
    k = chip // cell
    rows, cols, scores = result.rows[pos] // cell, result.cols[pos] // cell, result.scores[pos]
    h = int(rows.max()) + k + 1
    w = int(cols.max()) + k + 1
    hit = np.zeros((h, w), np.uint8)
    best = np.zeros((h, w), np.float32)
    n_chips = np.zeros((h, w), np.int32)
    for di in range(k):
        for dj in range(k):
            hit[rows + di, cols + dj] = 1
            np.maximum.at(best, (rows + di, cols + dj), scores)
    np.add.at(n_chips, (rows, cols), 1)
    from scipy import ndimage

    labels, n = ndimage.label(hit)
    tr = result.transform @ Affine.scale(cell, cell)
    left, top = result.transform.c, result.transform.f
    right = left + result.transform.a * result.width
    bottom = top + result.transform.e * result.height
    extent = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    max_score = ndimage.maximum(best, labels, index=np.arange(1, n + 1))
    counts = ndimage.sum(n_chips, labels, index=np.arange(1, n + 1))
    out = []
    geoms: dict[int, list] = {}
    for geom, value in rasterio.features.shapes(labels.astype(np.int32), mask=labels > 0, transform=tr, connectivity=4):
        geoms.setdefault(int(value), []).append(shape(geom))
    from shapely.ops import unary_union

    for value in sorted(geoms):
        g = unary_union(geoms[value]).intersection(extent)
        if g.is_empty:
            continue
        out.append(
            {
                "geometry": g,
                "score": float(max_score[value - 1]),
                "n_chips": int(counts[value - 1]),
                "area_km2": g.area / 1e6,
            }
        )
    return out
