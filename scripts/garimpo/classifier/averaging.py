"""Exponential moving average of a network's weights during training."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """A copy of ``model`` whose floating-point weights and BatchNorm statistics follow
    ``avg = decay * avg + (1 - decay) * current`` after every optimiser step.

    From scratch at a constant learning rate the weights keep jumping between steps; their
    average lies nearer the middle of the valley the optimiser is circling, so it generalises
    better and its validation loss is less noisy from epoch to epoch.  Integer buffers
    (BatchNorm's batch counter) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"weight-average decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [t.detach() for t in (*model.parameters(), *model.buffers())]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, cur in zip(self._tensors(self.model), self._tensors(model), strict=True):
            if avg.is_floating_point():
                avg.lerp_(cur, 1.0 - self.decay)
            else:
                avg.copy_(cur)
