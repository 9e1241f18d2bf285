"""The detection bench's acts (``scripts/bench_detect.py`` is its command line): a bench classifier trained on a
synthetic world, one scan, and the figures of scans against the planted mines.

Everything a product act exists for is the product's: chips are gathered and matched by
``garimpo.detection.chips`` (``gather_chips``, ``match_chips``; candidates by
``garimpo.detection.candidates.candidate_mask``), prepared by ``garimpo.classifier.data.preprocess``, scored by
the scan's ``ChipScorer`` (``garimpo.detection.batching``); the thresholds are chosen by
``garimpo.classifier.train.tune_thresholds`` and picked by ``garimpo.classifier.metrics.decision_threshold``;
chip scores are written and read by ``garimpo.detection.chip_scores``; positive chips become polygons by
``garimpo.detection.chip_scores.chip_polygons`` and are matched to the mines by
``garimpo.outputs.evaluation.match_objects``. What is the bench's own: the training world and its chip
sampling, the time-boxed training loop, and the speed and memory figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

log = logging.getLogger(__name__)

TRAIN_SEED = 20240601
TRAIN_XY = (320000.0, 9100000.0)  # upper-left corner (UTM 21S m) of the training world: not the bench granule's place
TRAIN_SIZE = 3072  # training world side, 10 m px
CHIP = 48  # bench classifier input and chip side, px (the Amazon Mining Watch chip size)
N_DRAWS = 400_000  # random chip origins drawn in the training world, of which the first of each kind are kept
N_POSITIVE, N_HARD, N_EASY = 2400, 1800, 1200  # chips of each kind kept for training
MIN_MINE_PX = 20  # a positive chip holds at least this many mined pixels
NEAR_MINE_M = 60.0  # a negative chip holds no pixel within this distance of a mine
# What the bench classifier is trained with: the threshold is chosen like the product's default
# (config classifier.threshold), the rest fits a from-scratch ResNet-34 on 48 px chips in minutes of CPU.
BATCH, LEARNING_RATE, WEIGHT_DECAY, DROPOUT = 64, 2e-3, 1e-4, 0.2


def training_world(seed: int, size: int = TRAIN_SIZE) -> tuple[Any, np.ndarray, np.ndarray]:
    """A separate synthetic world to train on: (layout, reflectance float32 [6, size, size], mined mask bool
    [size, size]).

    ``size``: side in 10 m px; bands are ``garimpo.synthetic.demo_world.BANDS``; reflectance in [0, ~1] as
    written to the bench granule (rounded through its DN scale). 3 % of the area is mined.
    """
    from rasterio.features import rasterize

    from garimpo.synthetic import bench_world as bw

    lay = bw.make_layout(size, seed, *TRAIN_XY, mined_fraction=0.03)
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


def _box_sums(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, side: int) -> np.ndarray:
    """Count of True pixels in each ``side`` x ``side`` box with top-left (rows, cols), via a summed-area table."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(mask, 0, dtype=np.int64), 1, out=s[1:, 1:])
    return s[rows + side, cols + side] - s[rows, cols + side] - s[rows + side, cols] + s[rows, cols]


def training_chips(seed: int, size: int = TRAIN_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Chips of the training world as the scan gathers them, and their labels.

    Returns (reflectance float32 [N, 6, CHIP, CHIP], not yet matched; labels float32 [N] in {0, 1}): up to
    N_POSITIVE chips with >= MIN_MINE_PX mined pixels, N_HARD chips far from mines (NEAR_MINE_M) holding a
    spectral candidate pixel (``garimpo.detection.candidates.candidate_mask``) and N_EASY far chips without one.
    """
    from rasterio.features import rasterize

    from garimpo.detection.candidates import candidate_mask
    from garimpo.detection.chips import gather_chips
    from garimpo.detection.proposers import SPECTRAL_BANDS
    from garimpo.synthetic.demo_world import BANDS

    lay, img, foot = training_world(seed, size)
    near = rasterize(
        [(m.footprint.buffer(NEAR_MINE_M), 1) for m in lay.mines],
        out_shape=(size, size),
        transform=lay.transform,
        dtype="uint8",
    ).astype(bool)
    cand = candidate_mask(img[[BANDS.index(b) for b in SPECTRAL_BANDS]], SPECTRAL_BANDS)
    rng = np.random.default_rng(seed)
    r = rng.integers(0, size - CHIP, N_DRAWS)
    c = rng.integers(0, size - CHIP, N_DRAWS)
    nf, nn, nc = _box_sums(foot, r, c, CHIP), _box_sums(near, r, c, CHIP), _box_sums(cand & ~near, r, c, CHIP)
    pos = np.flatnonzero(nf >= MIN_MINE_PX)[:N_POSITIVE]
    hard = np.flatnonzero((nn == 0) & (nc > 0))[:N_HARD]
    easy = np.flatnonzero((nn == 0) & (nc == 0))[:N_EASY]
    idx = np.concatenate([pos, hard, easy])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(hard) + len(easy))]).astype(np.float32)
    chips = gather_chips(img, r[idx], c[idx], CHIP)
    log.info("training chips: %d positive, %d hard negative, %d easy negative", len(pos), len(hard), len(easy))
    return chips, labels


def train_bench_model(path: str | Path, seconds: float, threads: int, train_size: int = TRAIN_SIZE) -> dict:
    """A ResNet-34 (from scratch, CHIP px input, 6 bands) trained for about ``seconds`` on chips of the training
    world, saved as a product checkpoint at ``path``; returns its meta.

    Chips are matched to the positives' per-band P2/P98 (as ``positive_stats`` computes them for the real
    workflow) by ``match_chips`` and prepared by ``preprocess``; a sixth of them is held out, on which
    ``tune_thresholds`` chooses ``threshold`` and ``threshold_tta`` (max F1, the product's default method).
    Training augments each batch with one random rotation by 90° and flip (the dihedral group the scan's TTA
    averages over).

    Raises:
        ValueError: from ``tune_thresholds`` when the held-out labels are not 0/1.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from garimpo.classifier.data import PLAIN_MEAN, PLAIN_STD, preprocess
    from garimpo.classifier.model import build_classifier, save_checkpoint
    from garimpo.classifier.train import tune_thresholds
    from garimpo.detection.chips import match_chips
    from garimpo.schema import default
    from garimpo.synthetic.demo_world import BANDS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.time()
    raw, y = training_chips(TRAIN_SEED, train_size)
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
    model = build_classifier("resnet34", 6, dropout=DROPOUT).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    prep_s = time.time() - t0
    t1 = time.time()
    steps, epoch = 0, 0
    model.train()
    while time.time() - t1 < seconds:
        epoch += 1
        order = tr[torch.randperm(len(tr))]
        for i in range(0, len(order) - 31, BATCH):
            b = order[i : i + BATCH]
            xb = torch.rot90(x_all[b], int(torch.randint(0, 4, ())), dims=(2, 3))
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
    train_s = time.time() - t1
    val_loader = DataLoader(TensorDataset(x_all[val], y_all[val]), batch_size=256)
    tuned = tune_thresholds(model, val_loader, torch.device("cpu"), default("classifier.threshold"))
    single = tuned["val_metrics"]
    meta = {
        "arch": "resnet34",
        "bands": list(BANDS),
        "input_size": CHIP,
        "in_channels": 6,
        "dropout": DROPOUT,
        "low": low,
        "high": high,
        "mean": [PLAIN_MEAN] * 6,
        "std": [PLAIN_STD] * 6,
        "threshold": tuned["threshold"],
        "threshold_tta": tuned["threshold_tta"],
        "train_config": {
            "bench": True,
            "seed": TRAIN_SEED,
            "place": TRAIN_XY,
            "steps": steps,
            "epochs": epoch,
            "train_seconds": round(train_s, 1),
            "data_seconds": round(prep_s, 1),
            "n_chips": n,
            "val_f1": round(single["f1"], 4),
            "val_acc": round(single["accuracy"], 4),
            "val_f1_tta": round(tuned["val_metrics_tta"]["f1"], 4),
        },
    }
    meta = save_checkpoint(path, model, meta)
    log.info(
        "bench model: %d steps (%d epochs) in %.0fs, val F1 %.3f acc %.3f at t=%.3f (8-view F1 %.3f at t=%.3f)",
        steps,
        epoch,
        train_s,
        single["f1"],
        single["accuracy"],
        tuned["threshold"],
        tuned["val_metrics_tta"]["f1"],
        tuned["threshold_tta"],
    )
    return meta


def run_scan(mode: str, granule: str | Path, model_path: str | Path, out_npz: str | Path, **scan_kw: Any) -> dict:
    """One scan of ``granule`` (``brute`` or ``two_stage``) with the checkpoint at ``model_path``; its chip scores
    written to ``out_npz`` (``save_chip_scores``). Returns the scan's summary.

    ``scan_kw``: ``brute_force_scan`` / ``two_stage_scan`` keywords (``decimate`` and ``select`` are
    two-stage only and dropped for the brute force).

    Raises:
        ValueError: an unknown mode.
        garimpo.errors.ModelLoadError: the checkpoint cannot be loaded.
    """
    from garimpo.classifier.model import load_classifier
    from garimpo.detection.chip_scores import save_chip_scores
    from garimpo.detection.scan import brute_force_scan, two_stage_scan

    model, meta = load_classifier(model_path)
    if mode == "brute":
        kw = {k: v for k, v in scan_kw.items() if k not in ("decimate", "select")}
        res = brute_force_scan(granule, model, meta, **kw)
    elif mode == "two_stage":
        res = two_stage_scan(granule, model, meta, **scan_kw)
    else:
        raise ValueError(f"scan mode {mode!r}; choose brute or two_stage")
    save_chip_scores(out_npz, res, {})
    return res.summary()


def evaluate_scan(npz: str | Path, mines: Sequence[BaseGeometry], threshold: float) -> dict:
    """A scan's positive chips against the planted mines, at object level.

    ``npz``: chip scores (``load_chip_scores``); ``mines``: truth polygons in the granule's CRS (metres);
    ``threshold``: the decision threshold (``decision_threshold``), a score in [0, 1]. Positive chips are
    merged into polygons by ``chip_polygons`` and matched by ``match_objects`` (a mine is found when a polygon
    touches it). Returns ``found`` (bool [n_mines]), ``n_polygons``, ``fp_polygons`` (touching no mine),
    ``positive_chips``, and ``positive_km2`` / ``fp_km2`` (polygon area, km², 3 decimals).
    """
    from garimpo.detection.chip_scores import chip_polygons, load_chip_scores
    from garimpo.outputs.evaluation import match_objects

    scores = load_chip_scores(npz)
    geoms = [p["geometry"] for p in chip_polygons(scores, threshold)]
    match = match_objects(geoms, mines)
    false = ~match.true_detection
    return {
        "found": match.found,
        "n_polygons": len(geoms),
        "fp_polygons": int(false.sum()),
        "positive_chips": int((scores.scores >= threshold).sum()),
        "positive_km2": round(sum(g.area for g in geoms) / 1e6, 3),
        "fp_km2": round(sum(g.area for g, f in zip(geoms, false) if f) / 1e6, 3),
    }


def two_stage_in_brute(brute_npz: str | Path, two_stage_npz: str | Path) -> tuple[bool, float]:
    """Whether every chip the two-stage scan scored is a chip of the brute-force lattice, and the largest
    |score difference| over those chips (0.0 when none is shared)."""
    from garimpo.detection.chip_scores import load_chip_scores

    b, t = load_chip_scores(brute_npz), load_chip_scores(two_stage_npz)
    kb = dict(zip(zip(b.rows.tolist(), b.cols.tolist()), b.scores.tolist()))
    diffs = [
        abs(kb[(r, c)] - s) for r, c, s in zip(t.rows.tolist(), t.cols.tolist(), t.scores.tolist()) if (r, c) in kb
    ]
    return len(diffs) == len(t.scores), float(max(diffs)) if diffs else 0.0


def precision_and_tta(
    granule: str | Path, model_path: str | Path, threads: int, batch_size: int, precision: str, n: int = 1024
) -> dict:
    """Effect of bf16 on scores and cost of TTA, measured with the scan's ``ChipScorer`` on ``n`` random chips
    of the granule's top-left 1536 px (mines included).

    Returns images per second in fp32 and bf16, the max and mean |bf16 - fp32| score difference, the decisions
    that flip at the model's single-view threshold (``decision_threshold``), and the 8-view TTA throughput and
    cost factor against ``precision``.

    Raises:
        garimpo.errors.ModelLoadError: the checkpoint cannot be loaded.
        garimpo.errors.InputDataError: the granule lacks one of the model's bands.
    """
    import rasterio
    import torch

    from garimpo.classifier.metrics import decision_threshold
    from garimpo.classifier.model import load_classifier
    from garimpo.detection.batching import ChipScorer
    from garimpo.detection.chips import gather_chips, match_chips
    from garimpo.geo.raster import band_indexes, read_bands

    torch.set_num_threads(threads)
    model, meta = load_classifier(model_path)
    with rasterio.open(granule) as src:
        side = min(src.height, 1536)
        arr = read_bands(src, band_indexes(src, meta["bands"]), rasterio.windows.Window(0, 0, side, side))
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, side - CHIP, n), rng.integers(0, side - CHIP, n)
    x = match_chips(gather_chips(arr, r, c, CHIP), meta["low"], meta["high"])
    out: dict[str, Any] = {}
    ref = None
    for prec in ("fp32", "bf16"):
        sc = ChipScorer(model, meta, batch_size, prec, True)
        sc(x[:64])
        t0 = time.perf_counter()
        p = sc(x)
        dt = time.perf_counter() - t0
        out[f"{prec}_img_per_s"] = round(n / dt, 1)
        if ref is None:
            ref = p
        else:
            t = decision_threshold(meta, tta=False)
            out["bf16_max_abs_score_diff"] = round(float(np.abs(p - ref).max()), 5)
            out["bf16_mean_abs_score_diff"] = round(float(np.abs(p - ref).mean()), 6)
            out["bf16_decision_flips"] = int(((p >= t) != (ref >= t)).sum())
            out["bf16_sample_chips"] = n
    sc = ChipScorer(model, meta, batch_size, precision, True, tta=True)
    m = min(n, 256)
    t0 = time.perf_counter()
    sc(x[:m])
    out["tta_img_per_s_chips"] = round(m / (time.perf_counter() - t0), 1)
    out["tta_cost_factor"] = round(out[f"{precision}_img_per_s"] / out["tta_img_per_s_chips"], 2)
    return out


def train_stand_in_segformer(out_dir: str | Path, train_size: int, decimate: int, seconds: float, threads: int) -> dict:
    """The stand-in SegFormer (``garimpo.synthetic.proposer_bench.train_bench_segformer``) trained for about
    ``seconds`` on the training world seen at 10 m x ``decimate`` (``block_mean_nan``), saved in ``out_dir``.

    Returns the training summary of ``train_bench_segformer``.
    """
    from garimpo.detection.candidates import block_mean_nan
    from garimpo.synthetic.demo_world import BANDS
    from garimpo.synthetic.proposer_bench import train_bench_segformer

    _, img, foot = training_world(TRAIN_SEED, train_size)
    small = {b: block_mean_nan(img[i], decimate) for i, b in enumerate(BANDS)}
    truth = block_mean_nan(foot.astype(np.float32), decimate) >= 0.5
    del img, foot
    return train_bench_segformer(Path(out_dir), small, truth, seconds, threads)


def proposer_figures(
    granule: str | Path,
    mines: Sequence[BaseGeometry],
    segformer: str,
    classes: Sequence[str],
    decimate: int,
    block_px: int,
    threads: int,
) -> dict:
    """Recall and area of each proposer on the bench granule (``garimpo.synthetic.proposer_bench.evaluate_proposers``).

    ``segformer``: a SegFormer model directory or hub id, or ``"none"`` for the spectral proposer only;
    ``classes``: its suspicious classes; ``mines``: truth polygons in the granule's CRS.

    Raises:
        garimpo.errors.ModelLoadError: the SegFormer cannot be loaded (offline and not cached, or no such model).
    """
    import torch

    from garimpo.synthetic.proposer_bench import evaluate_proposers

    torch.set_num_threads(threads)
    methods: list[str] = ["spectral"]
    model = None
    params: Mapping[str, Any] = {}
    if segformer != "none":
        from garimpo.detection.segformer import SegformerProposer

        model = SegformerProposer.from_pretrained(segformer, device="cpu")
        params = {"segformer": {"suspicious_classes": list(classes)}}
        methods += ["segformer", "union"]
    return evaluate_proposers(
        granule, list(mines), methods, decimate=decimate, proposer=params, segformer=model, block_px=block_px
    )


def scan_figures(
    runs: Mapping[str, tuple[dict, float, float, dict]],
    km2: float,
    threads: int,
    mine_ha: np.ndarray,
    npz: Mapping[str, Path],
) -> dict:
    """The JSON line's per-scan figures and, when both scans ran, their comparison.

    ``runs``: mode -> (scan summary, wall s, peak RSS MB, ``evaluate_scan`` result); ``km2``: granule area;
    ``threads``: cores the scans used; ``mine_ha``: planted mine areas (ha, the truth's order); ``npz``: mode ->
    chip-score file. km2 per core-second = granule km2 / (seconds x threads).
    """
    out: dict[str, Any] = {}
    for mode, (summary, wall, rss, ev) in runs.items():
        out[f"{mode}_km2_per_core_s"] = round(km2 / (wall * threads), 3)
        out[f"{mode}_classifier_calls"] = summary["classifier_calls"]
        out[f"{mode}_recall"] = round(float(ev["found"].mean()), 4) if len(mine_ha) else None
        out[f"{mode}_wall_s"] = round(wall, 2)
        out[f"{mode}_scan_km2_per_core_s"] = round(km2 / (summary["seconds"]["total"] * threads), 3)
        out[f"{mode}_seconds"] = summary["seconds"]
        out[f"{mode}_peak_rss_mb"] = round(rss, 1)
        out[f"{mode}_positive_chips"] = ev["positive_chips"]
        out[f"{mode}_polygons"] = ev["n_polygons"]
        out[f"{mode}_fp_polygons"] = ev["fp_polygons"]
        out[f"{mode}_positive_km2"] = ev["positive_km2"]
        out[f"{mode}_fp_km2"] = ev["fp_km2"]
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
        inside, max_diff = two_stage_in_brute(npz["brute"], npz["two_stage"])
        out["two_stage_chips_in_brute"] = inside
        out["two_stage_vs_brute_max_score_diff"] = round(max_diff, 6)
    return out
