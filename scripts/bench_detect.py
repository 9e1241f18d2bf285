"""Benchmark: brute-force vs two-stage streaming scan of a large synthetic Sentinel-2-like granule.

    python scripts/bench_detect.py                # 10980 x 10980 px (a full granule), cached in results/bench/
    python scripts/bench_detect.py --size 2048    # quick run

Steps (each cached under --bench-dir, so a rerun skips them):
1. a synthetic granule (garimpo.synthetic.bench_world, seed --seed) with ~1 % of its area mined (mines 1-100 ha)
   plus hard negatives (rivers with sandbars, pastures, ploughed fields, fish ponds, clearings, roads);
2. a bench classifier: ResNet-34 from scratch, 48 px input, trained for --train-seconds on chips of a
   different synthetic world (other seed, other place), prepared exactly like the scan's chips;
3. brute-force and two-stage scans (garimpo.detection.scan), each in its own subprocess so its peak RSS
   (ru_maxrss from wait4) is its own;
4. the scans' positive chips against the planted mines, at the model's decision threshold for single-view or
   (--tta) 8-view scores.

This file is the command line and the subprocess plumbing; the acts are garimpo.synthetic.detect_bench's,
which calls the product's own threshold choice, chip-score files, TTA and object-level evaluation.

The last line of output is one JSON object (brute_km2_per_core_s, two_stage_km2_per_core_s, speedup,
classifier calls, relative_recall, peak_rss_mb, ...). km2 per core-second = granule km2 / (wall s x threads).
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

import numpy as np

from garimpo.classifier.metrics import decision_threshold
from garimpo.synthetic.detect_bench import CHIP, TRAIN_SIZE
from garimpo.synthetic.measure import run_measured

log = logging.getLogger("bench_detect")


# --------------------------------------------------------------------------- child: one scan


def run_child(args) -> None:
    """One scan in this process; writes scores (.npz) and a summary (.json)."""
    import torch

    from garimpo.synthetic.detect_bench import run_scan

    torch.set_num_threads(args.threads)
    out = Path(args.child_out)
    summary = run_scan(
        args.child,
        args.granule,
        args.model,
        out.with_suffix(".npz"),
        stride=args.stride,
        block_px=args.block_px,
        batch_size=args.batch_size,
        precision=args.precision,
        channels_last=True,
        tta=args.tta,
        threads=args.threads,
        decimate=args.decimate,
        select=args.select,
    )
    out.write_text(json.dumps(summary))


def spawn(mode: str, args, out: Path) -> tuple[dict, float, float]:
    """Run a scan in a subprocess: (summary, wall s, peak RSS MB of that child).

    Raises:
        SystemExit: the scan failed.
    """
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        "--child-out",
        str(out),
        "--granule",
        str(args.granule),
        "--model",
        str(args.model),
        "--threads",
        str(args.threads),
        "--block-px",
        str(args.block_px),
        "--batch-size",
        str(args.batch_size),
        "--precision",
        args.precision,
        "--decimate",
        str(args.decimate),
        "--select",
        args.select,
    ]
    if args.stride:
        cmd += ["--stride", str(args.stride)]
    if args.tta:
        cmd += ["--tta"]
    # as the detect_cell rule runs it (scripts/detect_cell.py), in both modes
    code, wall, rss = run_measured(cmd)
    if code != 0:
        raise SystemExit(f"{mode} scan failed (exit {code})")
    summary = json.loads(out.read_text())
    summary.update(wall_s=wall, peak_rss_mb=rss, args=" ".join(cmd[3:]))
    out.write_text(json.dumps(summary))
    return summary, wall, rss


# --------------------------------------------------------------------------- proposers


def _mines(granule: Path) -> tuple[list, np.ndarray]:
    """The planted mines of a bench granule (polygons in its CRS) and their areas (ha), from its truth GeoJSON."""
    from shapely.geometry import shape

    truth = json.loads(Path(str(granule) + ".truth.geojson").read_text())
    feats = [f for f in truth["features"] if f["properties"]["kind"] == "mine"]
    return [shape(f["geometry"]) for f in feats], np.array([f["properties"]["area_ha"] for f in feats])


def train_segformer_child(args) -> None:
    """The stand-in SegFormer trained on the training world at 10 m x ``--decimate``."""
    from garimpo.synthetic.detect_bench import train_stand_in_segformer

    info = train_stand_in_segformer(
        args.segformer, args.train_size, args.decimate, args.segformer_train_seconds, args.threads
    )
    Path(args.child_out).write_text(json.dumps(info))


def proposers_child(args) -> None:
    """Recall / area of each proposer on the bench granule."""
    from garimpo.synthetic.detect_bench import proposer_figures

    mines, _ = _mines(Path(args.granule))
    classes = args.segformer_classes.split(",") if args.segformer != "none" else []
    out = proposer_figures(args.granule, mines, args.segformer, classes, args.decimate, args.block_px, args.threads)
    Path(args.child_out).write_text(json.dumps(out))


def measure_proposers(args, bench: Path, common: list) -> dict:
    """Proposer figures on the granule, in a subprocess; trains the stand-in SegFormer first if asked."""
    seg = args.segformer
    classes = args.segformer_classes
    info = None
    if seg == "train":
        seg_dir = bench / "bench_segformer_b0"
        info_path = seg_dir / "bench_training.json"
        if not info_path.exists():
            log.info("training the stand-in SegFormer (%.0fs)", args.segformer_train_seconds)
            subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--child",
                    "train_segformer",
                    "--child-out",
                    str(info_path),
                    "--segformer",
                    str(seg_dir),
                    "--decimate",
                    str(args.decimate),
                    "--segformer-train-seconds",
                    str(args.segformer_train_seconds),
                ]
                + common,
                check=True,
            )
        info = json.loads(info_path.read_text())
        seg, classes = str(seg_dir), classes or "mine"
    classes = classes or "barren,water"
    out_json = bench / f"proposers_{args.size}.json"
    subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "proposers",
            "--child-out",
            str(out_json),
            "--segformer",
            seg,
            "--segformer-classes",
            classes,
            "--decimate",
            str(args.decimate),
            "--block-px",
            str(args.block_px),
        ]
        + common,
        check=True,
    )
    res = json.loads(out_json.read_text())
    if "segformer" in res:
        res["segformer"].update(
            model=args.segformer if args.segformer != "train" else "stand-in MiT-b0 trained here",
            classes=classes.split(","),
            training=info,
        )
    return res


# --------------------------------------------------------------------------- main


def main(argv=None) -> dict | None:
    """Parse ``argv``; run one child step when ``--child`` is given (returns None), else the whole bench
    (returns the dict printed as the last JSON line)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="granule side in 10 m px (default 10980, a full one)")
    ap.add_argument("--seed", type=int, default=7, help="granule seed (the bench model uses another)")
    ap.add_argument("--bench-dir", default="results/bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--block-px", type=int, default=2048)
    ap.add_argument("--stride", type=int, default=None, help="lattice stride px (default half a chip)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--decimate", type=int, default=2, help="two-stage proposer on f x f means (1, 2 = 20 m, 4 = 40 m)")
    ap.add_argument(
        "--select",
        choices=("any", "centre"),
        default="centre",
        help="two-stage: classify chips holding a candidate pixel anywhere (any) or in their centre square",
    )
    ap.add_argument("--tta", action="store_true", help="8-view TTA in both scans")
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--train-size", type=int, default=TRAIN_SIZE, help="side (px) of the training world")
    ap.add_argument(
        "--modes",
        default="brute,two_stage",
        help="modes to run; a mode left out reuses its last run on this granule if there is one",
    )
    ap.add_argument("--no-extras", action="store_true", help="skip the bf16/TTA side measurements")
    ap.add_argument(
        "--segformer",
        default="train",
        help="SegFormer proposer to measure: a model directory or hub id (e.g. a LoveDA fine-tune "
        "fetched by the fetch_segformer rule), 'train' (a MiT-b0 trained here from scratch on the "
        "training world, the offline stand-in) or 'none'",
    )
    ap.add_argument(
        "--segformer-classes",
        default=None,
        help="comma-separated suspicious classes (default: 'mine' for 'train', else 'barren,water')",
    )
    ap.add_argument("--segformer-train-seconds", type=float, default=150.0)
    ap.add_argument(
        "--child",
        choices=("brute", "two_stage", "gen", "train", "train_segformer", "proposers"),
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--granule", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.child == "gen":
        from garimpo.synthetic import bench_world as bw

        summary = bw.generate(args.granule, args.size, args.seed, threads=args.threads)
        Path(args.child_out).write_text(json.dumps(summary))
        return None
    if args.child == "train":
        from garimpo.synthetic.detect_bench import train_bench_model

        meta = train_bench_model(Path(args.model), args.train_seconds, args.threads, args.train_size)
        keep = ("threshold", "threshold_tta", "model_id", "train_config")
        Path(args.child_out).write_text(json.dumps({k: meta[k] for k in keep}))
        return None
    if args.child == "train_segformer":
        train_segformer_child(args)
        return None
    if args.child == "proposers":
        proposers_child(args)
        return None
    if args.child:
        run_child(args)
        return None

    # This process stays small until the scans are done: a child's ru_maxrss counts what it
    # inherited at fork, so generation and training run in their own subprocesses too.
    bench = Path(args.bench_dir)
    bench.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    granule = bench / f"granule_{args.size}_seed{args.seed}.tif"
    truth_path = Path(str(granule) + ".truth.geojson")
    gen = None
    args.granule = granule
    model_path = bench / "bench_resnet34_48px.pth"
    model_info = bench / "bench_resnet34_48px.json"
    args.model = model_path
    common = [
        "--size",
        str(args.size),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--granule",
        str(granule),
        "--model",
        str(model_path),
        "--train-seconds",
        str(args.train_seconds),
        "--train-size",
        str(args.train_size),
    ]
    if not (granule.exists() and truth_path.exists()):
        log.info("generating %s", granule)
        gen_json = bench / f"gen_{args.size}.json"
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "gen", "--child-out", str(gen_json)] + common,
            check=True,
        )
        gen = json.loads(gen_json.read_text())
        log.info("granule: %s", gen)
    if not (model_path.exists() and model_info.exists()):
        log.info("training the bench model (%.0fs)", args.train_seconds)
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "train", "--child-out", str(model_info)] + common,
            check=True,
        )
    info = json.loads(model_info.read_text())
    thr = decision_threshold(info, args.tta)
    runs: dict[str, tuple[dict, float, float]] = {}
    reused = []
    for mode in ("brute", "two_stage"):
        run_json = bench / f"run_{args.size}_{mode}.json"
        if mode in args.modes.split(","):
            summary, wall, rss = spawn(mode, args, run_json)
            log.info("%s: %.1fs wall, %.0f MB peak RSS, %s", mode, wall, rss, summary)
        elif run_json.exists() and "wall_s" in json.loads(run_json.read_text()):
            # not asked for: reuse the last run of this mode on this granule (e.g. the long brute force)
            summary = json.loads(run_json.read_text())
            wall, rss = summary["wall_s"], summary["peak_rss_mb"]
            reused.append(mode)
        else:
            continue
        runs[mode] = (summary, wall, rss)

    from garimpo.geo.raster import read_header
    from garimpo.synthetic.detect_bench import evaluate_scan, scan_figures

    header = read_header(granule)
    km2 = header.shape[0] * header.shape[1] * abs(header.transform.a) * abs(header.transform.e) / 1e6
    px = list(header.shape)
    mines, mine_ha = _mines(granule)
    npz = {mode: bench / f"run_{args.size}_{mode}.npz" for mode in runs}
    figures = {mode: (*runs[mode], evaluate_scan(npz[mode], mines, thr)) for mode in runs}
    out: dict = scan_figures(figures, km2, args.threads, mine_ha, npz)
    out["peak_rss_mb"] = round(max(r[2] for r in runs.values()), 1)
    if reused:
        out["reused_runs"] = {m: runs[m][0].get("args") for m in reused}
    out.update(
        {
            "granule_px": px,
            "granule_km2": round(km2, 1),
            "threads": args.threads,
            "n_mines": len(mines),
            "mined_km2": round(float(mine_ha.sum()) / 100, 2),
            "chip_px": CHIP,
            "stride_px": args.stride or CHIP // 2,
            "block_px": args.block_px,
            "precision": args.precision,
            "tta": args.tta,
            "decimate": args.decimate,
            "select": args.select,
            "threshold": thr,
            "model_id": info["model_id"],
            "model_train": info.get("train_config", {}),
            "cpu_load_1min_at_end": round(os.getloadavg()[0], 2),
        }
    )
    if gen:
        out["granule_generation"] = gen
    if not args.no_extras:
        from garimpo.synthetic.detect_bench import precision_and_tta

        out["precision_tta"] = precision_and_tta(granule, model_path, args.threads, args.batch_size, args.precision)
    out["proposers"] = measure_proposers(args, bench, common)
    spectral = out["proposers"]["spectral"]
    out["proposer_pixel_recall"] = spectral["pixel_recall"]
    out["proposer_area_fraction"] = spectral["area_fraction"]
    out["bench_total_s"] = round(time.time() - t_all, 1)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
