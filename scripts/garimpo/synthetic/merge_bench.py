"""Peak memory of rule merge_detections on a synthetic region of many cells' chip scores.

``write_region`` writes chip-score files as ``detect_cell`` does (every chip of a brute-force lattice,
``garimpo.detection.chip_scores.save_chip_scores``) for a block of cells, with round "mines" in lon/lat that the
cells' margins see from both sides of a cell edge. Each mode runs in a fresh Python process that
reports its peak resident memory (``ru_maxrss``) after the imports and after the merge:

- ``streamed``: :func:`garimpo.detection.merge.merge_region`, the rule's merge (one cell's scores at a time);
- ``all_at_once``: every cell's scores loaded first, then merged (how the rule merged before issue 17).

Run from the repository root (brute force at 48/24 px on 100 km cells: about 190k chips per cell)::

    .venv/bin/python -m garimpo.synthetic.merge_bench --dir /tmp/bench_merge --cols 8 --rows 5

(with ``PYTHONPATH=scripts``). The last output line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from pyproj import Transformer

from garimpo.detection.chip_scores import ChipScores, save_chip_scores
from garimpo.geo.cells import DEFAULT_MARGIN_M, cell_polygons, cell_processing_grid, region_cells

MODEL_ID = "bench-model"
LOW, HIGH = 0.5, 0.75
MODES = ("streamed", "all_at_once")


def region_box(lon: float, lat: float, n_cols: int, n_rows: int, size_m: float) -> shapely.Polygon:
    """A lon/lat box over about ``n_cols`` x ``n_rows`` cells, starting in the cell holding (lon, lat)
    and stopping a little short of the last cells' far edges (so the region clip has work to do)."""
    (cid,) = region_cells(shapely.Point(lon, lat).buffer(1e-6), size_m)
    _, cell = cell_polygons(cid, size_m)
    x0, y0, x1, y1 = cell.bounds
    w, h = x1 - x0, y1 - y0
    return shapely.box(x0 + 0.1 * w, y0 + 0.1 * h, x0 + (n_cols - 0.1) * w, y0 + (n_rows - 0.1) * h)


def write_region(
    out_dir: str | Path,
    region_lonlat,
    size_m: float,
    chip_px: int = 48,
    stride: int = 24,
    mines: int = 40,
    spike_rate: float = 0.002,
    empty_cells: Sequence[str] = (),
    blank_score: float | None = None,
    seed: int = 0,
    margin_m: float = DEFAULT_MARGIN_M,
) -> list[Path]:
    """One chip-score file per cell of ``region_lonlat`` (``{out_dir}/{cell}.npz``, sorted by cell id).

    Scores: uniform noise in [0, 0.45) with lone spikes in [0.5, 0.95) (``spike_rate`` of the chips),
    plus, for chips whose centre is within a mine's radius (300-1500 m; ``mines`` of them, uniform over
    the region's bounding box), 0.5-1.0 falling off from the centre: mines give groups of chips over
    ``LOW``, spikes lone chips over it (some over ``HIGH``). Cells in
    ``empty_cells`` are written as ``detect_cell`` writes a cell whose composite had no clear pixel: no
    scene ids, no dates, and no chip classified (a two-stage scan proposes nothing there) or, with
    ``blank_score``, every chip at that score (brute force classifies the blank chips too).
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    lon0, lat0, lon1, lat1 = region_lonlat.bounds
    m_lon, m_lat = rng.uniform(lon0, lon1, mines), rng.uniform(lat0, lat1, mines)
    m_r = rng.uniform(300, 1500, mines)
    paths = []
    for cid in region_cells(region_lonlat, size_m):
        grid = cell_processing_grid(cid, size_m, 10.0, margin_m)
        empty = cid in empty_cells
        ii = np.arange(0, max(grid.height - chip_px, 0) + 1, stride)
        jj = np.arange(0, max(grid.width - chip_px, 0) + 1, stride)
        rows, cols = (a.ravel() for a in np.meshgrid(ii, jj, indexing="ij"))
        if empty and blank_score is None:
            rows, cols = rows[:0], cols[:0]
        t = grid.transform
        x, y = t.c + t.a * (cols + chip_px / 2), t.f + t.e * (rows + chip_px / 2)
        lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
        scores = rng.uniform(0, 0.45, len(rows)).astype(np.float32)
        spikes = rng.random(len(rows)) < spike_rate  # lone false positives, some over HIGH
        scores[spikes] = rng.uniform(0.5, 0.95, int(spikes.sum()))
        near: np.ndarray | list[int] = (
            np.flatnonzero(
                (m_lon > lon.min() - 0.02)
                & (m_lon < lon.max() + 0.02)
                & (m_lat > lat.min() - 0.02)
                & (m_lat < lat.max() + 0.02)
            )
            if len(lon)
            else []
        )
        for k in near:  # metres from the mine centre, equirectangular (fine at mine size)
            d = np.hypot((lon - m_lon[k]) * 111_320 * np.cos(np.radians(m_lat[k])), (lat - m_lat[k]) * 110_574)
            inside = d < m_r[k]
            scores[inside] = np.maximum(scores[inside], 1.0 - 0.5 * d[inside] / m_r[k])
        if empty and blank_score is not None:
            scores[:] = blank_score
        result = ChipScores(
            rows, cols, scores, chip_px, stride, grid.height, grid.width, grid.crs, t, mode="brute_force"
        )
        provenance = {
            "cell": cid,
            "scene_ids": [] if empty else [f"S2_{cid}_20240715"],
            "dates": [] if empty else ["2024-07-15"],
            "model_id": MODEL_ID,
            "config_hash": "bench",
            "mode": "brute_force",
        }
        paths.append(save_chip_scores(out_dir / f"{cid}.npz", result, provenance))
    return paths


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_mode(mode: str, paths: Sequence[Path], region_lonlat, size_m: float) -> dict:
    """Merge ``paths`` in this process (call it in a fresh one: peak RSS never goes down)."""
    from garimpo.detection.chip_scores import chip_features, load_chip_scores
    from garimpo.detection.merge import merge_region
    from garimpo.detection.polygons import merge_cells

    before = _peak_mib()
    t0 = time.perf_counter()
    if mode == "streamed":
        feats, meta = merge_region(paths, region_lonlat, "bench", size_m, MODEL_ID, LOW, HIGH)
        chips = meta["chips_classified"]
    elif mode == "all_at_once":
        scans = [load_chip_scores(p) for p in paths]
        keys = ("scene_ids", "dates", "model_id", "config_hash")
        per_cell = {s.provenance["cell"]: chip_features(s, LOW, {k: s.provenance[k] for k in keys}) for s in scans}
        feats = [
            f
            for f in merge_cells(per_cell, size_m, LOW, HIGH)
            if not (g := f["geometry"].intersection(region_lonlat)).is_empty and g.area > 0
        ]
        chips = sum(len(s.scores) for s in scans)
    else:
        raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
    return {
        "mode": mode,
        "cells": len(paths),
        "chips_classified": int(chips),
        "detections": len(feats),
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_after_imports_mib": round(before, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("results/bench/merge"), help="where the chip scores go")
    ap.add_argument("--cols", type=int, default=8, help="cells east-west")
    ap.add_argument("--rows", type=int, default=5, help="cells north-south")
    ap.add_argument("--size-m", type=float, default=100_000.0, help="cell size (detection.cell_size_m)")
    ap.add_argument("--mines", type=int, default=400)
    ap.add_argument("--spike-rate", type=float, default=0.002, help="share of chips that are lone false positives")
    ap.add_argument("--mode", choices=MODES, help="(internal) run one mode in this process")
    args = ap.parse_args(argv)
    region = region_box(-56.5, -6.0, args.cols, args.rows, args.size_m)
    if args.mode:  # the child: the chip scores are there already
        result = run_mode(args.mode, sorted(args.dir.glob("*.npz")), region, args.size_m)
        print(json.dumps(result))
        return result
    for old in args.dir.glob("*.npz"):
        old.unlink()
    t0 = time.perf_counter()
    paths = write_region(args.dir, region, args.size_m, mines=args.mines, spike_rate=args.spike_rate)
    on_disk = sum(p.stat().st_size for p in paths) / 2**20
    print(f"wrote {len(paths)} cells ({on_disk:.0f} MiB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs = []
    for mode in MODES:
        cmd = [
            sys.executable,
            "-m",
            "garimpo.synthetic.merge_bench",
            "--dir",
            str(args.dir),
            "--cols",
            str(args.cols),
            "--rows",
            str(args.rows),
            "--size-m",
            str(args.size_m),
            "--mode",
            mode,
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr)
    result = {
        "cells": len(paths),
        "mines": args.mines,
        "spike_rate": args.spike_rate,
        "chip_scores_on_disk_mib": round(on_disk, 1),
        "runs": runs,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
