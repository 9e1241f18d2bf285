"""Benchmark: one cell end to end, compositing + detection, against the floor of decoding its imagery.

    python scripts/bench_e2e.py                            # a full granule (10980 px), cached in results/bench/e2e/
    python scripts/bench_e2e.py --size 1024 --items 6      # quick run

Steps (each cached under --bench-dir, so a rerun skips them):
1. the bench granule (garimpo.synthetic.bench_world, seed --seed); the detection bench's copy in the bench dir's
   parent (make bench's results/bench/) is used when it is there;
2. --items synthetic Sentinel-2 L2A items of it, stored as the services store them (one COG per band, +1000 DN,
   20 m bands at 20 m, SCL with clouds and shadows) in a static STAC catalog (garimpo.synthetic.e2e_bench);
3. the detection bench's classifier (ResNet-34, 48 px, trained for --train-seconds), unless --model names one
   or it is already in the bench dir or its parent;
4. the granule as one cell: its composite (write_composite, as the composite_cell rule makes it), the two-stage
   scan of that composite (two_stage_scan, as the detect_cell rule runs it), and the decode floor (the assets the
   composite read, decoded over the grid at native resolution and nothing else), each in its own subprocess so
   its peak RSS (ru_maxrss from wait4) is its own. --modes picks which of the three to run again; the others reuse
   their last run on these items.

The last line of output is one JSON object: composite_km2_per_core_s, detect_km2_per_core_s,
end_to_end_km2_per_core_s, decode_floor_km2_per_core_s, ratio_to_floor (composite + detect wall / decoding
time), peak_rss_mb, each run's wall and peak RSS, bytes read, ... km2 per core-second = cell km2 / (s x threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from garimpo.synthetic.measure import run_measured

log = logging.getLogger("bench_e2e")

MODES = ("composite", "detect", "floor")


# --------------------------------------------------------------------------- children


def run_child(args) -> None:
    """One step in this process; writes its summary (.json) to --child-out."""
    from garimpo.synthetic import e2e_bench as eb

    out = Path(args.child_out)
    if args.child == "gen":
        from garimpo.synthetic import bench_world as bw

        summary = bw.generate(args.granule, args.size, args.seed, threads=args.threads)
    elif args.child == "items":
        summary = eb.write_catalog(args.granule, Path(args.catalog).parent, args.items, args.seed, args.threads)
    elif args.child == "train":
        from garimpo.synthetic.detect_bench import train_bench_model

        meta = train_bench_model(Path(args.model), args.train_seconds, args.threads, args.train_size)
        summary = {k: meta[k] for k in ("threshold", "threshold_tta", "model_id", "train_config")}
    elif args.child == "composite":
        grid = eb.granule_grid(args.granule)
        summary = eb.run_composite(args.catalog, grid, args.composite, args.block_px, args.items, args.threads)
        summary.update(grid_px=[grid.height, grid.width], km2=grid.width * grid.height * grid.resolution**2 / 1e6)
    elif args.child == "detect":
        summary = eb.run_detect(
            args.composite, args.model, out.with_suffix(".npz"), args.block_px, args.threads, args.precision
        )
    else:  # floor
        used = json.loads(Path(args.composite_run).read_text())["items_used"]
        paths = eb.composite_assets(args.catalog, used, args.items)
        summary = eb.decode_floor(paths, eb.granule_grid(args.granule), args.threads)
    out.write_text(json.dumps(summary))


def child_cmd(step: str, args, out: Path) -> list[str]:
    """The command line that runs ``step`` in a child process, writing its summary to ``out``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", step, "--child-out", str(out)]
    for opt in ("size", "items", "seed", "threads", "block_px", "train_seconds", "train_size"):
        cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    for opt in ("granule", "catalog", "model", "composite", "composite_run", "precision"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    return cmd


def measure(step: str, args, out: Path) -> dict:
    """Run ``step`` in a subprocess; its summary with ``wall_s`` (process wall, s) and ``peak_rss_mb`` (that
    child's own ru_maxrss) added, also written back to ``out``.

    Raises:
        SystemExit: the step failed.
    """
    cmd = child_cmd(step, args, out)
    code, wall, rss = run_measured(cmd)
    if code != 0:
        raise SystemExit(f"{step} failed (exit {code})")
    summary = json.loads(out.read_text())
    summary.update(wall_s=wall, peak_rss_mb=rss, args=" ".join([step, *cmd[6:]]))
    out.write_text(json.dumps(summary))
    return summary


def prepare(step: str, args, out: Path) -> dict:
    """Run a preparation ``step`` (granule, items, model) in a subprocess; returns its summary.

    Raises:
        subprocess.CalledProcessError: the step failed.
    """
    subprocess.run(child_cmd(step, args, out), check=True)
    return json.loads(out.read_text())


def cached(bench: Path, name: str) -> Path:
    """``bench/name``, or the detection bench's copy in ``bench``'s parent when only that one exists."""
    here, parent = bench / name, bench.parent / name
    return parent if parent.exists() and not here.exists() else here


# --------------------------------------------------------------------------- main


def main(argv=None) -> dict | None:
    """Parse ``argv``; run one child step when ``--child`` is given (returns None), else the whole bench
    (returns the dict printed as the last JSON line)."""
    from garimpo.schema import default

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="granule side in 10 m px, even (default a full one)")
    ap.add_argument("--items", type=int, default=6, help="acquisitions composited (dates of one year)")
    ap.add_argument("--seed", type=int, default=7, help="granule and items seed")
    ap.add_argument("--bench-dir", default="results/bench/e2e")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--block-px", type=int, default=default("detection.block_px"), help="composite and scan block")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="scan precision (default the schema's)")
    ap.add_argument("--model", default=None, help="classifier checkpoint (default the bench model, trained if missing)")
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--train-size", type=int, default=3072, help="side (px) of the bench model's training world")
    ap.add_argument(
        "--modes",
        default=",".join(MODES),
        help="runs to make (composite, detect, floor); one left out reuses its last run on these items if any",
    )
    ap.add_argument("--child", choices=("gen", "items", "train", *MODES), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--granule", help=argparse.SUPPRESS)
    ap.add_argument("--catalog", help=argparse.SUPPRESS)
    ap.add_argument("--composite", help=argparse.SUPPRESS)
    ap.add_argument("--composite-run", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.child:
        run_child(args)
        return None
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        ap.error(f"--modes: choose among {','.join(MODES)}")
    if args.size % 2:
        ap.error("--size must be even (the 20 m bands cover the granule)")

    # This process stays small: a child's ru_maxrss counts what it inherited, so every step is a subprocess.
    bench = Path(args.bench_dir)
    bench.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    tag = f"{args.size}_seed{args.seed}"
    args.granule = cached(bench, f"granule_{tag}.tif")
    if not (args.granule.exists() and Path(f"{args.granule}.truth.geojson").exists()):
        log.info("generating %s", args.granule)
        log.info("granule: %s", prepare("gen", args, bench / f"gen_{args.size}.json"))
    cat_dir = bench / f"items_{tag}_{args.items}"
    args.catalog = cat_dir / "catalog.json"
    items_json = cat_dir / "bench_items.json"
    generation = None
    if not (args.catalog.exists() and items_json.exists()):
        log.info("writing %d items of %s in %s", args.items, args.granule, cat_dir)
        generation = prepare("items", args, bench / f"items_{tag}_{args.items}.json")
    args.model = Path(args.model) if args.model else cached(bench, "bench_resnet34_48px.pth")
    if not args.model.exists():
        log.info("training the bench model (%.0fs)", args.train_seconds)
        prepare("train", args, args.model.with_suffix(".json"))
    args.composite = bench / f"composite_{tag}_{args.items}.tif"
    runs: dict[str, dict] = {}
    reused = []
    for mode in MODES:
        run_json = bench / f"run_{tag}_{args.items}_{mode}.json"
        if mode == "floor":
            args.composite_run = bench / f"run_{tag}_{args.items}_composite.json"
        last = json.loads(run_json.read_text()) if run_json.exists() else {}
        if mode in modes or "wall_s" not in last or (mode == "detect" and not args.composite.exists()):
            runs[mode] = measure(mode, args, run_json)
            log.info("%s: %.1fs wall, %.0f MB peak RSS", mode, runs[mode]["wall_s"], runs[mode]["peak_rss_mb"])
        else:  # not asked for: its last run on these items
            runs[mode] = last
            reused.append(mode)

    from garimpo.synthetic.e2e_bench import e2e_figures

    out = e2e_figures(runs, runs["composite"]["km2"], args.threads)
    out.update(
        {
            "grid_px": runs["composite"]["grid_px"],
            "size_px": args.size,
            "items": args.items,
            "items_used": len(runs["composite"]["items_used"]),
            "threads": args.threads,
            "block_px": args.block_px,
            "composite_threads": runs["composite"].get("threads"),  # None: write_composite takes no threads
            "seed": args.seed,
            "model_id": runs["detect"]["model_id"],
            "detect_seconds": runs["detect"]["seconds"],
            "cpu_load_1min_at_end": round(os.getloadavg()[0], 2),
        }
    )
    if reused:
        out["reused_runs"] = {m: runs[m].get("args") for m in reused}
    out["catalog_generation"] = generation or json.loads(items_json.read_text())
    out["bench_total_s"] = round(time.time() - t_all, 1)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
