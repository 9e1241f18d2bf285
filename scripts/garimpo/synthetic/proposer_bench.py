"""Proposers measured on a labelled granule: recall of true mine area inside the candidates and the
share of the area passed on to the classifier (``scripts/bench_detect.py`` runs this on its granule).

Streams the raster in the scan's blocks (``garimpo.detection.lattice.iter_blocks``), so memory is bounded; each
pixel is counted once, in the block that owns it. For each method:

- ``pixel_recall``: mined pixels inside candidates / mined pixels (the issue's "recall of true mine area");
- ``mine_recall``: mines with at least one candidate pixel / mines (what the classifier can still find);
- ``area_fraction``: candidate pixels / valid pixels (the cost: what the classifier is asked to look at);
- ``seconds``: proposer time alone (read excluded).

``train_bench_segformer`` trains a small SegFormer (MiT-b0 layout, from scratch) on the bench's
separate training world, for measuring the SegFormer path offline when no pretrained fine-tune
(e.g. the LoveDA one) can be downloaded. It is a stand-in, not the LoveDA model: its figures say
what the SegFormer proposer does with in-domain labels, nothing about the LoveDA weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.features import rasterize
from shapely import STRtree
from shapely.geometry import box

from garimpo.detection.candidates import block_mean_nan
from garimpo.detection.lattice import DEFAULT_BLOCK_PX, DEFAULT_HALO_PX, Lattice, iter_blocks
from garimpo.detection.proposers import SPECTRAL_BANDS, propose, scale_params, valid_mask
from garimpo.geo.raster import band_indexes, read_bands

log = logging.getLogger(__name__)

PROPOSER_BANDS = list(SPECTRAL_BANDS)  # the bands the spectral proposer reads
MINE_LABEL = "mine"


class _SameMaskOnce:
    """Hands a SegFormer mask already computed for this block to ``propose(method="union")``."""

    def __init__(self, mask: np.ndarray | None):  # None when no method of the run asks for a SegFormer
        self.mask = mask

    def predict_mask(self, rgb, suspicious_classes, **kwargs):
        return self.mask


def evaluate_proposers(
    path,
    mines: Sequence,
    methods: Sequence[str] = ("spectral",),
    decimate: int = 2,
    proposer: Mapping | None = None,
    segformer=None,
    block_px: int = DEFAULT_BLOCK_PX,
    halo: int = DEFAULT_HALO_PX,
    chip: int = 48,
    stride: int = 24,
) -> dict:
    """Per-method recall / area figures (see the module doc) of ``mines`` (polygons in the raster CRS)."""
    proposer = dict(proposer or {})
    seg_params = dict(proposer.get("segformer", {}))
    tree = STRtree(list(mines)) if len(mines) else None
    stats: dict[str, dict[str, Any]] = {m: {"hit_px": 0, "cand_px": 0, "found": set(), "seconds": 0.0} for m in methods}
    truth_px = valid_px = 0
    with rasterio.open(path) as src:
        idx = band_indexes(src, PROPOSER_BANDS)
        lat = Lattice(src.height, src.width, chip, stride)
        for block in iter_blocks(lat, block_px, halo):
            arr = read_bands(src, idx, block.read)
            h, w = arr.shape[1:]
            o_r0, o_r1, o_c0, o_c1 = block.owned_box(lat)  # as in the scan: each pixel once
            own = (slice(o_r0, o_r1), slice(o_c0, o_c1))
            win_tr = src.window_transform(block.read)
            ids = np.zeros((h, w), np.int32)
            if tree is not None:
                left, top = win_tr @ (0, 0)
                right, bottom = win_tr @ (w, h)
                near = tree.query(box(min(left, right), min(top, bottom), max(left, right), max(top, bottom)))
                if len(near):
                    ids = rasterize(
                        [(mines[i], int(i) + 1) for i in near], out_shape=(h, w), transform=win_tr, dtype="int32"
                    )
            ids_own = ids[own]
            truth = ids_own > 0
            small = {n: block_mean_nan(arr[k], decimate) for k, n in enumerate(PROPOSER_BANDS)}
            valid_full = valid_mask({n: arr[k] for k, n in enumerate(PROPOSER_BANDS)})[own]
            truth_px += int((truth & valid_full).sum())
            valid_px += int(valid_full.sum())
            params = scale_params(proposer, decimate)
            seg_raw, seg_s = None, 0.0
            if {"segformer", "union"} & set(methods):
                t0 = time.perf_counter()
                seg_raw = _raw_segformer_mask(small, seg_params, segformer)  # once per block for both
                seg_s = time.perf_counter() - t0
            for m in methods:
                t0 = time.perf_counter()
                if m == "spectral":
                    mask = propose(small, "spectral", params)
                else:
                    mask = propose(small, m, params, model=_SameMaskOnce(seg_raw))
                    t0 -= seg_s
                stats[m]["seconds"] += time.perf_counter() - t0
                full = np.repeat(np.repeat(mask, decimate, 0), decimate, 1)[:h, :w][own] & valid_full
                stats[m]["hit_px"] += int((full & truth).sum())
                stats[m]["cand_px"] += int(full.sum())
                stats[m]["found"].update(np.unique(ids_own[full & truth]).tolist())
    out = {}
    for m, s in stats.items():
        out[m] = {
            "pixel_recall": round(s["hit_px"] / truth_px, 4) if truth_px else None,
            "mine_recall": round(len(s["found"]) / len(mines), 4) if len(mines) else None,
            "area_fraction": round(s["cand_px"] / valid_px, 5) if valid_px else None,
            "seconds": round(s["seconds"], 2),
            "decimate": decimate,
        }
    return out


def _raw_segformer_mask(small: Mapping[str, np.ndarray], seg_params: Mapping, segformer) -> np.ndarray:
    """The SegFormer's suspicious-class mask before smoothing (what ``propose`` ORs in for union)."""
    from garimpo.detection.proposers.segformer import segformer_candidates

    return segformer_candidates(small, seg_params, segformer)


# --------------------------------------------------------------------------- a SegFormer trained here


def segformer_b0_config(num_labels: int = 2, labels: Sequence[str] = ("background", MINE_LABEL)):
    """A MiT-b0-sized SegFormer config (3.7 M parameters), built locally: nothing is downloaded."""
    from transformers import SegformerConfig

    return SegformerConfig(
        num_channels=3,
        num_encoder_blocks=4,
        depths=[2, 2, 2, 2],
        sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[32, 64, 160, 256],
        num_attention_heads=[1, 2, 5, 8],
        decoder_hidden_size=256,
        num_labels=num_labels,
        id2label={i: n for i, n in enumerate(labels)},
        label2id={n: i for i, n in enumerate(labels)},
    )


def train_bench_segformer(
    out_dir: Path,
    image: Mapping[str, np.ndarray],
    truth: np.ndarray,
    seconds: float,
    threads: int,
    crop: int = 128,
    batch: int = 8,
    seed: int = 0,
) -> dict:
    """Train ``segformer_b0_config`` for about ``seconds`` on ``image`` (``{band: array}`` at the
    proposer's resolution, B02-B04 at least) and its bool ``truth`` mask; save it as a Hugging Face
    model directory in ``out_dir`` (``SegformerProposer.from_pretrained`` loads it)."""
    import torch
    import torch.nn.functional as F
    from transformers import SegformerForSemanticSegmentation

    from garimpo.detection.segformer import normalise_rgb, rgb_from_bands

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rgb = rgb_from_bands(image)
    norm = normalise_rgb(rgb)
    x_all = torch.from_numpy(norm)
    y_all = torch.from_numpy(truth.astype(np.int64))
    h, w = truth.shape
    # half of the crops centred on mined pixels: mines are ~1-3 % of the area
    rng = np.random.default_rng(seed)
    mined = np.argwhere(truth)
    model = SegformerForSemanticSegmentation(segformer_b0_config())
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=1e-2)
    weight = torch.tensor([1.0, 3.0])  # recall first, as for the spectral proposer
    model.train()
    t0 = time.time()
    steps = 0
    while time.time() - t0 < seconds:
        rows, cols = [], []
        for k in range(batch):
            if k % 2 == 0 and len(mined):
                r, c = mined[rng.integers(len(mined))]
                r = int(np.clip(r - rng.integers(0, crop), 0, h - crop))
                c = int(np.clip(c - rng.integers(0, crop), 0, w - crop))
            else:
                r, c = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            rows.append(r)
            cols.append(c)
        xb = torch.stack([x_all[:, r : r + crop, c : c + crop] for r, c in zip(rows, cols)])
        yb = torch.stack([y_all[r : r + crop, c : c + crop] for r, c in zip(rows, cols)])
        k = int(rng.integers(0, 4))
        xb, yb = torch.rot90(xb, k, (2, 3)), torch.rot90(yb, k, (1, 2))
        logits = model(pixel_values=xb).logits
        logits = F.interpolate(logits, size=(crop, crop), mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, yb, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    info = {
        "steps": steps,
        "seconds": round(time.time() - t0, 1),
        "crop": crop,
        "batch": batch,
        "final_loss": round(float(loss.item()), 4),
        "labels": ["background", MINE_LABEL],
        "note": "MiT-b0 layout trained from scratch on the bench's synthetic training world; not LoveDA",
    }
    log.info("bench SegFormer: %s", info)
    return info
