"""Benchmark: brute-force vs two-stage streaming scan of a large synthetic Sentinel-2-like tile.

    python scripts/bench_detect.py                # 10980 x 10980 px (a full granule), cached in results/bench/
    python scripts/bench_detect.py --size 2048    # quick run

Steps (each cached under --bench-dir, so a rerun skips them):
1. a synthetic tile (garimpo.synthetic.bench_world, seed --seed) with ~1 % of its area mined (mines 1-100 ha)
   plus hard negatives (rivers with sandbars, pastures, ploughed fields, fish ponds, clearings, roads);
2. a bench classifier: ResNet-34 from scratch, 48 px input, trained for --train-seconds on chips of a
   different synthetic world (other seed, other place), prepared exactly like the scan's chips;
3. brute-force and two-stage scans (garimpo.detection.scan), each in its own subprocess so its peak RSS
   (ru_maxrss from wait4) is its own.

The last line of output is one JSON object (brute_km2_per_core_s, two_stage_km2_per_core_s, speedup,
classifier calls, relative_recall, peak_rss_mb, ...). km2 per core-second = tile km2 / (wall s x threads).
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

log = logging.getLogger("bench_detect")

TRAIN_SEED = 20240601
TRAIN_XY = (320000.0, 9100000.0)  # another place than the tile (600000, 9320000)
TRAIN_SIZE = 3072
CHIP = 48


# --------------------------------------------------------------------------- bench model


def _training_world(rng_seed: int, size: int = TRAIN_SIZE):
    """(layout, reflectance [6, size, size], mined-pixel mask) of a separate synthetic world."""
    from rasterio.features import rasterize

    from garimpo.synthetic import bench_world as bw

    lay = bw.make_layout(size, rng_seed, *TRAIN_XY, mined_fraction=0.03)
    ren = bw.Renderer(lay)
    img = np.empty((6, size, size), np.float32)
    for r0 in range(0, size, 1024):
        for c0 in range(0, size, 1024):
            h, w = min(1024, size - r0), min(1024, size - c0)
            img[:, r0 : r0 + h, c0 : c0 + w] = bw.to_dn(ren.render(r0, c0, h, w)).astype(np.float32) / bw.DN_SCALE
    foot = rasterize(
        [(m.footprint, 1) for m in lay.mines], out_shape=(size, size), transform=lay.transform, dtype="uint8"
    ).astype(bool)
    return lay, img, foot


def _training_chips(rng_seed: int, size: int = TRAIN_SIZE):
    """(chips [N, 6, 48, 48] matched like the scan's, labels) from a separate synthetic world."""
    from rasterio.features import rasterize

    from garimpo.detection.scan import candidate_mask, gather_chips

    lay, img, foot = _training_world(rng_seed, size)
    near = rasterize(
        [(m.footprint.buffer(60), 1) for m in lay.mines], out_shape=(size, size), transform=lay.transform, dtype="uint8"
    ).astype(bool)
    cand = candidate_mask(img[:5], ["B02", "B03", "B04", "B08", "B11"])

    def sat(m):
        s = np.zeros((size + 1, size + 1), np.int64)
        np.cumsum(np.cumsum(m, 0, dtype=np.int64), 1, out=s[1:, 1:])
        return s

    def box_sum(s, r, c):
        return s[r + CHIP, c + CHIP] - s[r, c + CHIP] - s[r + CHIP, c] + s[r, c]

    s_foot, s_near, s_cand = sat(foot), sat(near), sat(cand & ~near)
    rng = np.random.default_rng(rng_seed)
    r = rng.integers(0, size - CHIP, 400000)
    c = rng.integers(0, size - CHIP, 400000)
    nf, nn, nc = box_sum(s_foot, r, c), box_sum(s_near, r, c), box_sum(s_cand, r, c)
    pos = np.flatnonzero(nf >= 20)[:2400]
    hard = np.flatnonzero((nn == 0) & (nc > 0))[:1800]
    easy = np.flatnonzero((nn == 0) & (nc == 0))[:1200]
    idx = np.concatenate([pos, hard, easy])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(hard) + len(easy))]).astype(np.float32)
    chips = gather_chips(img, r[idx], c[idx], CHIP)
    log.info("training chips: %d positive, %d hard negative, %d easy negative", len(pos), len(hard), len(easy))
    return chips, labels


def train_bench_model(path: Path, seconds: float, threads: int, train_size: int = TRAIN_SIZE) -> dict:
    """A ResNet-34 (from scratch, 48 px, 6 bands) trained for about ``seconds``; saved as a checkpoint."""
    import torch

    from garimpo.classifier.data import PLAIN_MEAN, PLAIN_STD, preprocess
    from garimpo.classifier.model import build_classifier, save_checkpoint
    from garimpo.detection.scan import match_chips
    from garimpo.synthetic.demo_world import BANDS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.time()
    raw, y = _training_chips(TRAIN_SEED, train_size)
    # the positives' P2/P98 per band, as positive_stats computes them for the real workflow
    pos_px = raw[y == 1].transpose(1, 0, 2, 3).reshape(6, -1)
    low = np.percentile(pos_px, 2, axis=1).tolist()
    high = np.percentile(pos_px, 98, axis=1).tolist()
    matched = match_chips(raw, low, high)
    x_all = preprocess(matched, low, high, CHIP, [PLAIN_MEAN] * 6, [PLAIN_STD] * 6)
    y_all = torch.from_numpy(y)
    n = len(y_all)
    perm = torch.randperm(n)
    n_val = n // 6
    val, tr = perm[:n_val], perm[n_val:]
    model = build_classifier("resnet34", 6, dropout=0.2).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    prep_s = time.time() - t0
    t1 = time.time()
    steps, epoch = 0, 0
    model.train()
    while time.time() - t1 < seconds:
        epoch += 1
        order = tr[torch.randperm(len(tr))]
        for i in range(0, len(order) - 31, 64):
            b = order[i : i + 64]
            xb = x_all[b]
            k = int(torch.randint(0, 4, ()))
            xb = torch.rot90(xb, k, dims=(2, 3))
            if torch.rand(()) < 0.5:
                xb = torch.flip(xb, dims=(3,))
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(xb).flatten(), y_all[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.time() - t1 >= seconds:
                break
    model.eval()
    with torch.inference_mode():
        pv = torch.cat(
            [
                torch.sigmoid(model(x_all[val[i : i + 256]].contiguous(memory_format=torch.channels_last))).flatten()
                for i in range(0, len(val), 256)
            ]
        ).numpy()
    yv = y[val.numpy()]
    # threshold: the best F1 on the held-out part
    best = (0.5, -1.0)
    for t in np.linspace(0.05, 0.95, 19):
        tp = float(((pv >= t) & (yv == 1)).sum())
        f1 = 2 * tp / max(float((pv >= t).sum()) + float((yv == 1).sum()), 1)
        if f1 > best[1]:
            best = (float(t), f1)
    acc = float(((pv >= best[0]) == (yv == 1)).mean())
    meta = {
        "arch": "resnet34",
        "bands": list(BANDS),
        "input_size": CHIP,
        "in_channels": 6,
        "dropout": 0.2,
        "low": low,
        "high": high,
        "mean": [PLAIN_MEAN] * 6,
        "std": [PLAIN_STD] * 6,
        "threshold": best[0],
        "train_config": {
            "bench": True,
            "seed": TRAIN_SEED,
            "place": TRAIN_XY,
            "steps": steps,
            "epochs": epoch,
            "train_seconds": round(time.time() - t1, 1),
            "data_seconds": round(prep_s, 1),
            "n_chips": n,
            "val_f1": round(best[1], 4),
            "val_acc": round(acc, 4),
        },
    }
    meta = save_checkpoint(path, model, meta)
    log.info(
        "bench model: %d steps (%d epochs) in %.0fs, val F1 %.3f acc %.3f at t=%.2f",
        steps,
        epoch,
        time.time() - t1,
        best[1],
        acc,
        best[0],
    )
    return meta


# --------------------------------------------------------------------------- child: one scan


def run_child(args) -> None:
    """One scan in this process; writes scores (.npz) and a summary (.json)."""
    import torch

    from garimpo.classifier.model import load_classifier
    from garimpo.detection.chip_scores import save_chip_scores
    from garimpo.detection.scan import brute_force_scan, two_stage_scan

    torch.set_num_threads(args.threads)
    model, meta = load_classifier(args.model)
    kw = dict(
        stride=args.stride,
        block_px=args.block_px,
        batch_size=args.batch_size,
        precision=args.precision,
        channels_last=True,
        tta=args.tta,
        threads=args.threads,
    )
    if args.child == "brute":
        res = brute_force_scan(args.tile, model, meta, **kw)
    else:
        res = two_stage_scan(args.tile, model, meta, decimate=args.decimate, select=args.select, **kw)
    out = Path(args.child_out)
    save_chip_scores(out.with_suffix(".npz"), res, {})
    out.write_text(json.dumps(res.summary()))


def spawn(mode: str, args, out: Path) -> tuple[dict, float, float]:
    """Run a scan in a subprocess: (summary, wall s, peak RSS MB of that child)."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        "--child-out",
        str(out),
        "--tile",
        str(args.tile),
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
    t0 = time.perf_counter()
    # as the detect_tile rule runs it (scripts/detect_tile.py), in both modes
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} scan failed (exit {proc.returncode})")
    summary = json.loads(out.read_text())
    summary.update(wall_s=wall, peak_rss_mb=ru.ru_maxrss / 1024.0, args=" ".join(cmd[3:]))
    out.write_text(json.dumps(summary))
    return summary, wall, ru.ru_maxrss / 1024.0


# --------------------------------------------------------------------------- proposers


def train_segformer_child(args) -> None:
    """The stand-in SegFormer (garimpo.synthetic.proposer_bench) trained on the training world at 20 m."""
    from garimpo.detection.scan import block_mean_nan
    from garimpo.synthetic.demo_world import BANDS
    from garimpo.synthetic.proposer_bench import train_bench_segformer

    _, img, foot = _training_world(TRAIN_SEED, args.train_size)
    f = args.decimate
    small = {b: block_mean_nan(img[i], f) for i, b in enumerate(BANDS)}
    truth = block_mean_nan(foot.astype(np.float32), f) >= 0.5
    del img, foot
    info = train_bench_segformer(Path(args.segformer), small, truth, args.segformer_train_seconds, args.threads)
    Path(args.child_out).write_text(json.dumps(info))


def proposers_child(args) -> None:
    """Recall / area of each proposer on the bench tile (garimpo.synthetic.proposer_bench)."""
    import torch
    from shapely.geometry import shape

    from garimpo.synthetic.proposer_bench import evaluate_proposers

    torch.set_num_threads(args.threads)
    truth = json.loads(Path(str(args.tile) + ".truth.geojson").read_text())
    mines = [shape(f["geometry"]) for f in truth["features"] if f["properties"]["kind"] == "mine"]
    methods, segformer, params = ["spectral"], None, {}
    if args.segformer != "none":
        from garimpo.detection.segformer import SegformerProposer

        segformer = SegformerProposer.from_pretrained(args.segformer, device="cpu")
        params = {"segformer": {"suspicious_classes": args.segformer_classes.split(",")}}
        methods += ["segformer", "union"]
    out = evaluate_proposers(
        args.tile, mines, methods, decimate=args.decimate, proposer=params, segformer=segformer, block_px=args.block_px
    )
    Path(args.child_out).write_text(json.dumps(out))


def measure_proposers(args, bench: Path, common: list) -> dict:
    """Proposer figures on the tile, in a subprocess; trains the stand-in SegFormer first if asked."""
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


# --------------------------------------------------------------------------- evaluation


def evaluate(npz: Path, truth: list, threshold: float) -> dict:
    """Recall of planted mines (found = a positive chip polygon overlaps it) and false-positive groups."""
    from affine import Affine
    from shapely import STRtree

    from garimpo.detection.scan import ScanResult, chip_polygons

    d = np.load(npz)
    res = ScanResult(
        "x",
        d["rows"],
        d["cols"],
        d["scores"],
        int(d["chip_px"]),
        int(d["stride"]),
        int(d["height"]),
        int(d["width"]),
        str(d["crs"]),
        Affine(*d["transform"]),
        0,
        0,
        0.0,
    )
    polys = chip_polygons(res, threshold)
    geoms = [p["geometry"] for p in polys]
    tree = STRtree(geoms) if geoms else None
    found = np.zeros(len(truth), bool)
    hit_poly = np.zeros(len(geoms), bool)
    if tree is not None:
        for i, g in enumerate(truth):
            idx = tree.query(g, predicate="intersects")
            found[i] = len(idx) > 0
            hit_poly[idx] = True
    return {
        "found": found,
        "n_polygons": len(geoms),
        "fp_polygons": int((~hit_poly).sum()),
        "positive_chips": int((res.scores >= threshold).sum()),
        "positive_km2": round(sum(g.area for g in geoms) / 1e6, 3),
        "fp_km2": round(sum(g.area for g, h in zip(geoms, hit_poly) if not h) / 1e6, 3),
    }


def precision_and_tta(args, meta_path: Path, n: int = 1024) -> dict:
    """Effect of bf16 on scores and cost of TTA, measured on chips of the tile (mines included)."""
    import rasterio
    import torch

    from garimpo.classifier.model import load_classifier
    from garimpo.detection.scan import ChipScorer, band_indexes, gather_chips, match_chips, read_reflectance

    torch.set_num_threads(args.threads)
    model, meta = load_classifier(meta_path)
    with rasterio.open(args.tile) as src:
        side = min(src.height, 1536)
        arr = read_reflectance(src, band_indexes(src, meta["bands"]), rasterio.windows.Window(0, 0, side, side))
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, side - CHIP, n), rng.integers(0, side - CHIP, n)
    x = match_chips(gather_chips(arr, r, c, CHIP), meta["low"], meta["high"])
    out = {}
    ref = None
    for prec in ("fp32", "bf16"):
        sc = ChipScorer(model, meta, args.batch_size, prec, True)
        sc(x[:64])
        t0 = time.perf_counter()
        p = sc(x)
        dt = time.perf_counter() - t0
        out[f"{prec}_img_per_s"] = round(n / dt, 1)
        if ref is None:
            ref = p
        else:
            t = meta["threshold"]
            out["bf16_max_abs_score_diff"] = round(float(np.abs(p - ref).max()), 5)
            out["bf16_mean_abs_score_diff"] = round(float(np.abs(p - ref).mean()), 6)
            out["bf16_decision_flips"] = int(((p >= t) != (ref >= t)).sum())
            out["bf16_sample_chips"] = n
    sc = ChipScorer(model, meta, args.batch_size, args.precision, True, tta=True)
    m = min(n, 256)
    t0 = time.perf_counter()
    sc(x[:m])
    out["tta_img_per_s_chips"] = round(m / (time.perf_counter() - t0), 1)
    out["tta_cost_factor"] = round(out[f"{args.precision}_img_per_s"] / out["tta_img_per_s_chips"], 2)
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="tile side in 10 m px (default 10980, a full granule)")
    ap.add_argument("--seed", type=int, default=7, help="tile seed (the bench model uses another)")
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
        help="modes to run; a mode left out reuses its last run on this tile if there is one",
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
    ap.add_argument("--tile", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.child == "gen":
        from garimpo.synthetic import bench_world as bw

        Path(args.child_out).write_text(json.dumps(bw.generate(args.tile, args.size, args.seed, threads=args.threads)))
        return None
    if args.child == "train":
        meta = train_bench_model(Path(args.model), args.train_seconds, args.threads, args.train_size)
        Path(args.child_out).write_text(
            json.dumps(
                {"threshold": meta["threshold"], "model_id": meta["model_id"], "train_config": meta["train_config"]}
            )
        )
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
    tile = bench / f"tile_{args.size}_seed{args.seed}.tif"
    truth_path = Path(str(tile) + ".truth.geojson")
    gen = None
    args.tile = tile
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
        "--tile",
        str(tile),
        "--model",
        str(model_path),
        "--train-seconds",
        str(args.train_seconds),
        "--train-size",
        str(args.train_size),
    ]
    if not (tile.exists() and truth_path.exists()):
        log.info("generating %s", tile)
        gen_json = bench / f"gen_{args.size}.json"
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "gen", "--child-out", str(gen_json)] + common,
            check=True,
        )
        gen = json.loads(gen_json.read_text())
        log.info("tile: %s", gen)
    if not (model_path.exists() and model_info.exists()):
        log.info("training the bench model (%.0fs)", args.train_seconds)
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", "train", "--child-out", str(model_info)] + common,
            check=True,
        )
    info = json.loads(model_info.read_text())
    thr = float(info["threshold"])
    runs = {}
    reused = []
    for mode in ("brute", "two_stage"):
        run_json = bench / f"run_{args.size}_{mode}.json"
        if mode in args.modes.split(","):
            summary, wall, rss = spawn(mode, args, run_json)
            log.info("%s: %.1fs wall, %.0f MB peak RSS, %s", mode, wall, rss, summary)
        elif run_json.exists() and "wall_s" in json.loads(run_json.read_text()):
            # not asked for: reuse the last run of this mode on this tile (e.g. the long brute force)
            summary = json.loads(run_json.read_text())
            wall, rss = summary["wall_s"], summary["peak_rss_mb"]
            reused.append(mode)
        else:
            continue
        runs[mode] = [summary, wall, rss]

    import rasterio
    from shapely.geometry import shape

    with rasterio.open(tile) as src:
        km2 = src.width * src.height * abs(src.transform.a) * abs(src.transform.e) / 1e6
        px = [src.height, src.width]
    truth_fc = json.loads(truth_path.read_text())
    mines = [shape(f["geometry"]) for f in truth_fc["features"] if f["properties"]["kind"] == "mine"]
    mine_ha = np.array([f["properties"]["area_ha"] for f in truth_fc["features"] if f["properties"]["kind"] == "mine"])
    out: dict = {}
    for mode in runs:
        runs[mode].append(evaluate(bench / f"run_{args.size}_{mode}.npz", mines, thr))
    key = {"brute": "brute", "two_stage": "two_stage"}
    for mode, (summary, wall, rss, ev) in runs.items():
        k = key[mode]
        out[f"{k}_km2_per_core_s"] = round(km2 / (wall * args.threads), 3)
        out[f"{k}_classifier_calls"] = summary["classifier_calls"]
        out[f"{k}_recall"] = round(float(ev["found"].mean()), 4) if len(mines) else None
        out[f"{k}_wall_s"] = round(wall, 2)
        out[f"{k}_scan_km2_per_core_s"] = round(km2 / (summary["seconds"]["total"] * args.threads), 3)
        out[f"{k}_seconds"] = summary["seconds"]
        out[f"{k}_peak_rss_mb"] = round(rss, 1)
        out[f"{k}_positive_chips"] = ev["positive_chips"]
        out[f"{k}_polygons"] = ev["n_polygons"]
        out[f"{k}_fp_polygons"] = ev["fp_polygons"]
        out[f"{k}_positive_km2"] = ev["positive_km2"]
        out[f"{k}_fp_km2"] = ev["fp_km2"]
        if mode == "two_stage":
            out["two_stage_candidate_fraction"] = summary["candidate_fraction"]
    if "brute" in runs and "two_stage" in runs:
        out["speedup"] = round(out["two_stage_km2_per_core_s"] / out["brute_km2_per_core_s"], 2)
        fb, ft = runs["brute"][3]["found"], runs["two_stage"][3]["found"]
        out["relative_recall"] = round(float(ft.sum()) / max(float(fb.sum()), 1.0), 4)
        small = mine_ha < 5
        out["brute_recall_lt5ha"] = round(float(fb[small].mean()), 4) if small.any() else None
        out["two_stage_recall_lt5ha"] = round(float(ft[small].mean()), 4) if small.any() else None
        out["missed_by_two_stage_only_ha"] = [round(float(v), 2) for v in mine_ha[fb & ~ft]]
        # consistency: two-stage chips are lattice chips of the brute force with the same scores
        b = np.load(bench / f"run_{args.size}_brute.npz")
        t = np.load(bench / f"run_{args.size}_two_stage.npz")
        kb = dict(zip(zip(b["rows"].tolist(), b["cols"].tolist()), b["scores"].tolist()))
        diffs = [
            abs(kb[(r, c)] - s)
            for r, c, s in zip(t["rows"].tolist(), t["cols"].tolist(), t["scores"].tolist())
            if (r, c) in kb
        ]
        out["two_stage_chips_in_brute"] = len(diffs) == len(t["scores"])
        out["two_stage_vs_brute_max_score_diff"] = round(float(max(diffs)), 6) if diffs else 0.0
    out["peak_rss_mb"] = round(max(r[2] for r in runs.values()), 1)
    if reused:
        out["reused_runs"] = {m: runs[m][0].get("args") for m in reused}
    out.update(
        {
            "tile_px": px,
            "tile_km2": round(km2, 1),
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
        out["tile_generation"] = gen
    if not args.no_extras:
        out["precision_tta"] = precision_and_tta(args, model_path)
    out["proposers"] = measure_proposers(args, bench, common)
    spectral = out["proposers"]["spectral"]
    out["proposer_pixel_recall"] = spectral["pixel_recall"]
    out["proposer_area_fraction"] = spectral["area_fraction"]
    out["bench_total_s"] = round(time.time() - t_all, 1)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
