"""Rule merge_detections' work: every cell's chip scores -> the region's detections, one cell at a time.

Brute force over the Amazon at 48/24 px classifies tens of millions of chips; holding every cell's
scores at once grew with the region (636 MiB for 35.5 M chips) past the rule's ``mem_mb``. Here one
cell's scores are read, turned into its pieces (chips over the low threshold, dissolved, clipped to
the cell) and dropped before the next cell is read, so memory is bounded by the largest cell plus the
pieces and provenance kept (small). The cross-cell dissolve and dual threshold are those of
``garimpo.detection.polygons.merge_cells``: the result is the same as merging everything in memory.

The merge also tells "scanned and found nothing" from "not seen": a cell whose composite had no clear
pixel (all cloud, or no imagery in the period) has no scene ids in its provenance (``composite_cell``
lists only the scenes that gave a clear pixel, and ``detect_cell`` copies them). Such a cell gives no
detection; a region made only of them is refused, and the cells are listed in the output's metadata.
The cell id is the provenance's ``cell``; the metadata count and list cells (``cells``, ``cell_size_m``,
``cells_without_data``, ``cells_with_data``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from garimpo.detection.chip_scores import ChipScores, chip_features, load_chip_scores, read_chip_provenance
from garimpo.detection.polygons import cell_pieces, merge_pieces
from garimpo.errors import NoImageryError

log = logging.getLogger(__name__)

# What each chip feature carries from its cell's provenance into the detections' properties.
FEATURE_PROVENANCE = ("scene_ids", "dates", "model_id", "config_hash")


@dataclass(frozen=True)
class CellRecord:
    """What the merge keeps of one cell once its scores are dropped."""

    cell: str
    scene_ids: tuple[str, ...]
    dates: tuple[str, ...]
    chips_classified: int
    chips_positive: int  # chips scoring >= the low threshold


def _cell_share(
    path: str | Path, size_m: float, low: float, gap_m: float, load: Callable[[str | Path], ChipScores]
) -> tuple[CellRecord, list[dict]]:
    """One cell's record and pieces; its scores are freed when this returns. A cell whose composite had no
    clear pixel gives no pieces: its scores say nothing (brute force scores the blank chips all alike,
    possibly over the threshold, which made the whole cell one "mine")."""
    scan = load(path)
    prov = scan.provenance
    feats = chip_features(scan, low, {k: prov[k] for k in FEATURE_PROVENANCE}) if prov["scene_ids"] else []
    record = CellRecord(prov["cell"], tuple(prov["scene_ids"]), tuple(prov["dates"]), len(scan.scores), len(feats))
    return record, cell_pieces(prov["cell"], feats, size_m, low, gap_m)


def _id_list(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_coverage(region: str, cells: Sequence[str], empty: Sequence[str], required: bool = True) -> None:
    """Refuse a region none of whose cells had a clear pixel; warn about the cells without one.

    ``cells``: every cell id of the region; ``empty``: those whose composite had no clear pixel. Some empty
    cells are a WARNING (a cloudy corner must not stop a region), and the output's metadata lists them.
    Without ``required`` (an earlier period, which the change products read as "not seen" where it saw
    nothing) a region with no clear pixel at all is a WARNING too.

    Raises:
        NoImageryError: every cell is empty and ``required`` (its "no mining" would only mean "not seen");
            the message names the region, its cell count and what to change.
    """
    if cells and len(empty) == len(cells) and required:
        raise NoImageryError(
            f"region {region}: none of its {len(cells)} cells had a clear pixel in its composite (all cloud, or "
            "no imagery in the period), so nothing was scanned and an empty result would read as 'no mining'. "
            "Widen the period (config periods), drop it if it is the last one and too cloudy, or raise "
            "imagery.max_cloud_cover (the composites are rebuilt when these change), and check that "
            f"regions.{region} (its polygon file, field/value) lies where imagery.source has scenes; "
            f"logs/composite_cell_{region}_*.log say what each cell's search found"
        )
    if empty:
        log.warning(
            "region %s: %d of %d cells had no clear pixel in their composite (all cloud, or no imagery in the "
            "period): %s. Nothing could be detected there: read their 'no mining' as 'not seen' "
            "(metadata cells_without_data lists them; the change products read them as not seen). To cover "
            "them, widen the period (config periods) or raise imagery.max_cloud_cover",
            region,
            len(empty),
            len(cells),
            _id_list(list(empty)),
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
    require_coverage: bool = True,
) -> tuple[list[dict], dict]:
    """The region's detections and the output's metadata from every cell's chip-score file.

    ``chip_paths``: one ``detect_cell`` output per cell (any order: cells are merged in id order);
    ``region_lonlat``: the region polygon (composites reach past it by the margin: detections are cut to
    it); ``size_m``: the grid's cell side (metres); ``low``/``high``: the dual threshold, scores in (0, 1]
    (``garimpo.detection.polygons.detection_thresholds``); ``load``: reads one file (tests count what it
    hands out).

    Only the provenance of every file is read first (cheap), to refuse before any work a cell scanned
    with another model than ``model_id`` or a region with no clear pixel anywhere. Then one cell at a time
    is loaded, reduced to its pieces and dropped. Features: shapely lon/lat geometries with the properties
    of ``merge_pieces`` plus ``label``, ``threshold``, ``isolated_threshold``. Metadata: region, cells (cell
    count), cell_size_m, scene_ids, dates, thresholds, require_seed, chips_classified, cells_without_data
    (ids of the cells whose composite had no clear pixel), cells_with_data (how many had one), model_id.
    ``require_coverage``: refuse a region no cell of which had a clear pixel (False for an earlier period:
    its empty result is then read as "not seen" by the change products).

    Raises:
        ValueError: two files hold the same cell, or cells were scanned with another model (rescan them).
        NoImageryError: no cell had a clear pixel and ``require_coverage`` (see :func:`check_coverage`).
    """
    provs: dict[str, tuple[str | Path, dict]] = {}
    for path in chip_paths:
        prov = read_chip_provenance(path)
        if prov["cell"] in provs:
            raise ValueError(
                f"chip scores {provs[prov['cell']][0]} and {path} both hold cell {prov['cell']} of "
                f"region {region}: remove the one that is not results/regions/{region}/chip_scores/"
                f"{prov['cell']}.npz"
            )
        provs[prov["cell"]] = (path, prov)
    stale = sorted(c for c, (_, p) in provs.items() if p["model_id"] != model_id)
    if stale:
        raise ValueError(
            f"cells {stale[:5]} of {region} were scanned with another model than "
            f"{model_id}: rescan them (snakemake -R detect_cell)"
        )
    empty = sorted(c for c, (_, p) in provs.items() if not p["scene_ids"])
    check_coverage(region, sorted(provs), empty, require_coverage)

    records, pieces = [], []
    for cell in sorted(provs):  # the order merge_cells dissolves in: the same unions, bit for bit
        record, share = _cell_share(provs[cell][0], size_m, low, gap_m, load)
        records.append(record)
        pieces += share
    merged = merge_pieces(pieces, low, high, gap_m, require_seed=require_seed)
    inside = []
    for f in merged:  # composites reach past the region by the margin: keep the region's part
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
        "%s: %d cells, %d chips classified, %d >= %.3f -> %d detections (isolated chips need %.3f)",
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
        "cells": len(records),
        "cell_size_m": size_m,
        "scene_ids": sorted({i for r in records for i in r.scene_ids}),
        "dates": sorted({d for r in records for d in r.dates}),
        "threshold": low,
        "isolated_threshold": high,
        "require_seed": bool(require_seed),
        "chips_classified": classified,
        "cells_without_data": empty,
        "cells_with_data": len(records) - len(empty),
        "model_id": model_id,
    }
    return inside, metadata
