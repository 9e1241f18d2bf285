"""Feeding the classifier during a scan: batches of chips, produced ahead in a thread, scored in fixed sizes.

``prefetch`` reads and proposes block k+1 in a background thread while block k is classified (GDAL reads,
NumPy and most of SciPy release the GIL); ``rebatch`` hands the classifier batches of one size across block
borders; ``ChipScorer`` turns matched chips into P(mining) as ``garimpo.classifier.infer.predict_proba`` does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from garimpo.schema import default


def prefetch(items: Iterable, ahead: int = 1) -> Iterator:
    """The items of an iterable, produced in a background thread at most ``ahead`` items ahead of
    the consumer, so at most ``ahead + 1`` of them are alive at once (bounded memory).

    GDAL reads, NumPy and most of SciPy release the GIL, so block k+1 is read and proposed while
    block k is classified. An exception while producing an item is raised in the consumer; closing the
    generator early stops the producer and closes ``items`` in its thread.
    """
    slots = threading.Semaphore(ahead + 1)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        it = iter(items)
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(it)
                except StopIteration:
                    break
                results.put((True, item))
            results.put((None, None))
        except BaseException as exc:  # handed to the consumer
            results.put((False, exc))
        finally:
            if hasattr(it, "close"):
                it.close()  # a generator's with-blocks (open datasets) end in this thread

    worker = threading.Thread(target=work, name="scan-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = results.get()
            if ok is None:
                return
            if not ok:
                raise value
            yield value
            slots.release()  # the consumer is done with the previous result
            del value
    finally:
        stop.set()
        worker.join()


@dataclass
class Batch:
    """Chips ready for the classifier (stretched as in training) with their lattice origins, and
    the candidate pixels / blocks finished since the last batch (a block with nothing to classify
    still counts).

    ``rows``/``cols``: int [N] top-left composite pixel of each chip; ``chips``: float32 [N, C, chip, chip]
    reflectance, or None when N is 0.
    """

    rows: np.ndarray
    cols: np.ndarray
    chips: np.ndarray | None
    n_candidates: int = 0
    blocks: int = 0


def rebatch(batches: Iterator[Batch], size: int) -> Iterator[Batch]:
    """The same chips in batches of exactly ``size`` (the last one smaller), across block borders; the
    candidate and block counts travel with the first batch after them.

    Fixed-size batches let oneDNN reuse its compiled kernels; a block's last partial batch would
    otherwise give a new batch shape almost every time in a sparse two-stage scan.
    """

    def join(parts: list[Batch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(parts) == 1:
            chips = parts[0].chips
            assert chips is not None  # only batches with chips are kept in parts
            return parts[0].rows, parts[0].cols, chips
        return (
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.chips for p in parts]),
        )

    parts: list[Batch] = []
    n = cand = blocks = 0
    for b in batches:
        cand += b.n_candidates
        blocks += b.blocks
        if b.chips is not None and len(b.rows):
            parts.append(b)
            n += len(b.rows)
        while n >= size:
            rows, cols, chips = join(parts)
            n -= size
            # copies, so neither piece keeps the other alive through a shared base array
            parts = [Batch(rows[size:], cols[size:], chips[size:].copy())] if n else []
            head = chips[:size] if chips.shape[0] == size else chips[:size].copy()
            del chips
            yield Batch(rows[:size], cols[:size], head, cand, blocks)
            cand = blocks = 0
    if n or cand or blocks:
        empty = np.zeros(0, np.int64)
        yield Batch(*join(parts), cand, blocks) if parts else Batch(empty, empty, None, cand, blocks)


class ChipScorer:
    """Batched P(mining) for matched chips: inference_mode, optional channels_last / bf16 / TTA.

    ``meta``: the checkpoint's metadata (``low``, ``high``, ``input_size``, ``mean``, ``std``: what
    ``garimpo.classifier.data.preprocess`` needs); ``batch_size``: chips per forward pass; ``precision``:
    one of ``garimpo.classifier.model.PRECISIONS``; ``tta``: average the 8 dihedral views
    (``garimpo.classifier.model.view_probs``); ``device``: default the model's. Defaults are the schema's
    ``detection.batch_size``, ``detection.precision`` and ``detection.tta``.

    With ``precision="fp32"``, ``channels_last=False`` and ``tta=False`` the scores are those of
    ``garimpo.classifier.infer.predict_proba``. ``calls`` counts the images through the network (8 per
    chip with TTA).

    Raises:
        ValueError: ``precision`` is not one of ``PRECISIONS``.
    """

    def __init__(
        self,
        model,
        meta: Mapping,
        batch_size: int = default("detection.batch_size"),
        precision: str = default("detection.precision"),
        channels_last: bool = True,
        tta: bool = default("detection.tta"),
        device: str | None = None,
    ):
        import torch

        from garimpo.classifier.model import PRECISIONS

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}; choose one of {PRECISIONS}")
        self.torch: Any = torch
        self.meta = meta
        self.batch_size = int(batch_size)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.tta = bool(tta)
        self.device = torch.device(device) if device else next(model.parameters()).device
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.calls = 0  # images through the network (8 per chip with TTA)

    def __call__(self, matched: np.ndarray) -> np.ndarray:
        """float32 [N] P(mining) in [0, 1] of matched reflectance chips [N, C, H, W] (``match_chips``)."""
        from garimpo.classifier.data import preprocess
        from garimpo.classifier.model import autocast, view_probs

        torch = self.torch
        m = self.meta
        args = (m["low"], m["high"], int(m["input_size"]), m["mean"], m["std"])
        out = []
        with torch.inference_mode(), autocast(self.device, self.precision):
            for i in range(0, len(matched), self.batch_size):
                x = preprocess(matched[i : i + self.batch_size], *args).to(self.device)
                probs = view_probs(self.model, x, self.tta, self.channels_last)  # [views, chips]
                self.calls += probs.numel()
                out.append(probs.mean(0).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
