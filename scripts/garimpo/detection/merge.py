"""Rule merge_detections' work: every tile's chip scores -> the region's detections, one tile at a time.

Brute force over the Amazon at 48/24 px classifies tens of millions of chips; holding every tile's
scores at once grew with the region (636 MiB for 35.5 M chips) past the rule's ``mem_mb``. Here one
tile's scores are read, turned into its pieces (chips over the low threshold, dissolved, clipped to
its cell) and dropped before the next tile is read, so memory is bounded by the largest tile plus the
pieces and provenance kept (small). The cross-tile dissolve and dual threshold are those of
``postprocess.merge_tiles``: the result is the same as merging everything in memory.

The merge also tells "scanned and found nothing" from "not seen": a tile whose scene had no clear
pixel (all cloud, or no imagery in the period) has no scene ids in its provenance (``tile_scene``
lists only the scenes that gave a clear pixel, and ``detect_tile`` copies them). Such a tile gives no
detection; a region made only of them is refused, and the tiles are listed in the output's metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from garimpo.detection.chip_scores import ChipScores, chip_features, load_chip_scores, read_chip_provenance
from garimpo.detection.polygons import merge_pieces, tile_pieces
from garimpo.errors import NoImageryError

log = logging.getLogger(__name__)

# What each chip feature carries from its tile's provenance into the detections' properties.
FEATURE_PROVENANCE = ("scene_ids", "dates", "model_id", "config_hash")


@dataclass(frozen=True)
class TileRecord:
    """What the merge keeps of one tile once its scores are dropped."""

    tile: str
    scene_ids: tuple[str, ...]
    dates: tuple[str, ...]
    chips_classified: int
    chips_positive: int  # chips scoring >= the low threshold


def _tile_share(
    path: str | Path, size_m: float, low: float, gap_m: float, load: Callable[[str | Path], ChipScores]
) -> tuple[TileRecord, list[dict]]:
    """One tile's record and pieces; its scores are freed when this returns. A tile whose scene had no
    clear pixel gives no pieces: its scores say nothing (brute force scores the blank chips all alike,
    possibly over the threshold, which made the whole cell one "mine")."""
    scan = load(path)
    prov = scan.provenance
    feats = chip_features(scan, low, {k: prov[k] for k in FEATURE_PROVENANCE}) if prov["scene_ids"] else []
    record = TileRecord(prov["tile"], tuple(prov["scene_ids"]), tuple(prov["dates"]), len(scan.scores), len(feats))
    return record, tile_pieces(prov["tile"], feats, size_m, low, gap_m)


def _tile_list(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_coverage(region: str, tiles: Sequence[str], empty: Sequence[str]) -> None:
    """Refuse a region none of whose tiles had a clear pixel; warn about the tiles without one.

    ``tiles``: every tile of the region; ``empty``: those whose scene had no clear pixel. Raises
    ``NoImageryError`` (naming the region, its tile count and what to change) when every tile is
    empty: its "no mining" would only mean "not seen". Some empty tiles are a WARNING (a cloudy
    corner must not stop a region), and the output's metadata lists them.
    """
    if tiles and len(empty) == len(tiles):
        raise NoImageryError(
            f"region {region}: none of its {len(tiles)} tiles had a clear pixel in its scene (all cloud, or no "
            "imagery in the period), so nothing was scanned and an empty result would read as 'no mining'. "
            "Widen imagery.period or raise imagery.max_cloud_cover (the scenes are rebuilt when these change), "
            f"and check that regions.{region} (its polygon file, field/value) lies where imagery.source has "
            f"scenes; logs/tile_scene_{region}_*.log say what each tile's search found"
        )
    if empty:
        log.warning(
            "region %s: %d of %d tiles had no clear pixel in their scene (all cloud, or no imagery in the "
            "period): %s. Nothing could be detected there: read their 'no mining' as 'not seen' "
            "(metadata tiles_without_data lists them). To cover them, widen imagery.period or raise "
            "imagery.max_cloud_cover",
            region,
            len(empty),
            len(tiles),
            _tile_list(list(empty)),
        )


def merge_region(
    chip_paths: Sequence[str | Path],
    region_lonlat,
    region: str,
    size_m: float,
    model_id: str,
    low: float,
    high: float,
    gap_m: float = 0.0,
    require_seed: bool = False,
    load: Callable[[str | Path], ChipScores] = load_chip_scores,
) -> tuple[list[dict], dict]:
    """The region's detections and the output's metadata from every tile's chip-score file.

    ``chip_paths``: one ``detect_tile`` output per tile (any order: tiles are merged in id order);
    ``region_lonlat``: the region polygon (scenes reach past it by the margin: detections are cut to
    it); ``size_m``: the tile grid's cell size; ``low``/``high``: the dual threshold
    (``postprocess.detection_thresholds``); ``load``: reads one file (tests count what it hands out).

    Only the provenance of every file is read first (cheap), to refuse before any work a tile scanned
    with another model than ``model_id`` (ValueError naming the tiles: rescan them) or a region with no
    clear pixel anywhere (``NoImageryError``, see :func:`check_coverage`). Then one tile at a time is
    loaded, reduced to its pieces and dropped. Features: shapely lon/lat geometries with the properties
    of ``merge_pieces`` plus ``label``, ``threshold``, ``isolated_threshold``. Metadata: region, tiles,
    tile_size_m, scene_ids, dates, thresholds, require_seed, chips_classified, tiles_without_data (ids of
    the tiles whose scene had no clear pixel), tiles_with_data (how many had one), model_id.
    """
    provs: dict[str, tuple[str | Path, dict]] = {}
    for path in chip_paths:
        prov = read_chip_provenance(path)
        if prov["tile"] in provs:
            raise ValueError(
                f"chip scores {provs[prov['tile']][0]} and {path} both hold tile {prov['tile']} of "
                f"region {region}: remove the one that is not results/regions/{region}/chips/"
                f"{prov['tile']}.npz"
            )
        provs[prov["tile"]] = (path, prov)
    stale = sorted(t for t, (_, p) in provs.items() if p["model_id"] != model_id)
    if stale:
        raise ValueError(
            f"tiles {stale[:5]} of {region} were scanned with another model than "
            f"{model_id}: rescan them (snakemake -R detect_tile)"
        )
    empty = sorted(t for t, (_, p) in provs.items() if not p["scene_ids"])
    check_coverage(region, sorted(provs), empty)

    records, pieces = [], []
    for tile in sorted(provs):  # the order merge_tiles dissolves in: the same unions, bit for bit
        record, share = _tile_share(provs[tile][0], size_m, low, gap_m, load)
        records.append(record)
        pieces += share
    merged = merge_pieces(pieces, low, high, gap_m, require_seed=require_seed)
    inside = []
    for f in merged:  # scenes reach past the region by the margin: keep the region's part
        geom = f["geometry"].intersection(region_lonlat)
        if not geom.is_empty and geom.area > 0:
            inside.append(
                {
                    "geometry": geom,
                    "properties": {**f["properties"], "label": "mining", "threshold": low, "isolated_threshold": high},
                }
            )
    classified = sum(r.chips_classified for r in records)
    log.info(
        "%s: %d tiles, %d chips classified, %d >= %.3f -> %d detections (isolated chips need %.3f)",
        region,
        len(records),
        classified,
        sum(r.chips_positive for r in records),
        low,
        len(inside),
        high,
    )
    metadata = {
        "region": region,
        "tiles": len(records),
        "tile_size_m": size_m,
        "scene_ids": sorted({i for r in records for i in r.scene_ids}),
        "dates": sorted({d for r in records for d in r.dates}),
        "threshold": low,
        "isolated_threshold": high,
        "require_seed": bool(require_seed),
        "chips_classified": classified,
        "tiles_without_data": empty,
        "tiles_with_data": len(records) - len(empty),
        "model_id": model_id,
    }
    return inside, metadata
