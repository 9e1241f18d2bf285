"""Detection helpers around the scan: chip preparation (the per-chip reference), chip scores on disk, and
positive chips as lon/lat squares for the merge."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer

from garimpo.atomic import atomic_path
from garimpo.contract import check_scene, collection_units
from garimpo.geo.raster import Raster, read_header
from garimpo.pixels.matching import reference_bounds, stretch_to_reference

log = logging.getLogger(__name__)


def extract_chip(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """A (bands, size, size) window of ``image``; parts outside the image are NaN."""
    bands, h, w = image.shape
    chip = np.full((bands, size, size), np.nan, dtype=np.float32)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size, h), min(col + size, w)
    if r1 > r0 and c1 > c0:
        chip[:, r0 - row : r1 - row, c0 - col : c1 - col] = image[:, r0:r1, c0:c1]
    return chip


def prepare_chips(
    scene: Raster, windows: Sequence[tuple[int, int]], chip_px: int, stats: Mapping, bands: Sequence[str]
) -> np.ndarray:
    """Chips matched to the positive statistics exactly as the training tiles were, in ``bands`` order."""
    low, high = reference_bounds(stats, scene.band_names)
    idx = [scene.band_names.index(b) for b in bands]
    chips = []
    for row, col in windows:
        chip = extract_chip(scene.array, row, col, chip_px)
        matched = stretch_to_reference(chip, low, high)
        chips.append(matched[idx])
    return np.stack(chips) if chips else np.zeros((0, len(bands), chip_px, chip_px), np.float32)


def scene_chip_px(meta: Mapping, scene: str | Path, scene_meta: Mapping, tile_size_m: float) -> int:
    """Chip side (scene pixels) at which the model sees the ground it was trained on, checked before any scan.

    ``scene``: the tile's composite GeoTIFF (its pixel size is read); ``scene_meta``: the scene's JSON
    (``source.collection`` gives its units); ``tile_size_m``: config tiles.size_m. Raises
    ``ContractError`` when the model's footprint, pixel size or units disagree with them (see
    ``garimpo.contract.check_scene``), or when the checkpoint records none.
    """
    resolution = abs(read_header(scene).transform.a)
    collection = (scene_meta.get("source") or {}).get("collection", "sentinel-2-l2a")
    return check_scene(
        meta,
        tile_size_m,
        resolution,
        collection_units(collection),
        f"scene {scene} ({collection}, imagery.source.collection)",
    )


def config_hash(params: Mapping) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def chip_features(result, threshold: float, provenance: Mapping) -> list[dict]:
    """Features (shapely lon/lat squares + properties) of a scan's chips scoring >= ``threshold``, one per chip.

    Each chip stays its own part so the merge can tell an isolated chip from a group
    (the dual threshold) and dissolve chips across tile edges.
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


@dataclass
class ChipScores:
    """Every chip a tile scan classified: top-left pixel, score and the scene's georeferencing."""

    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    chip_px: int
    crs: str
    transform: Affine
    provenance: dict
    summary: dict


def save_chip_scores(path: str | Path, result, provenance: Mapping) -> Path:
    """A scan's chip scores (all of them, so thresholds can change without rescanning) as .npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:  # numpy appends .npz to a name without it
        np.savez_compressed(
            tmp,
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
        )
    return path


def load_chip_scores(path: str | Path) -> ChipScores:
    """Every chip score of one tile scan, as :func:`save_chip_scores` wrote them (12 bytes a chip in memory)."""
    with np.load(path) as z:
        return ChipScores(
            z["rows"],
            z["cols"],
            z["scores"],
            int(z["chip_px"]),
            str(z["crs"]),
            Affine(*z["transform"].tolist()),
            json.loads(str(z["provenance"])),
            json.loads(str(z["summary"])),
        )


def read_chip_provenance(path: str | Path) -> dict:
    """The provenance saved with a tile's chip scores (tile, scene_ids, dates, model_id, ...), without
    reading the scores: an .npz member is decompressed only when asked for."""
    with np.load(path) as z:
        return json.loads(str(z["provenance"]))
