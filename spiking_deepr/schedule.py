"""Learning-rate schedule over the training budget: linear warm-up, then cosine decay (or constant).

``lr(step) = lr * warm-up(step) * decay(step)`` for optimizer steps ``step = 0 .. total - 1``:

* warm-up: ``(step + 1) / n_warm`` for the first ``n_warm = round(warmup_fraction * total)`` steps
  (Adam's first moments are poor estimates at the start; a short ramp keeps the first DEEP R steps from
  pruning connections on noisy gradients);
* ``cosine``: ``0.5 * (1 + cos(pi * progress))`` with ``progress`` running from 0 after the warm-up to 1 at
  the last step of the budget (Loshchilov & Hutter 2017); ``constant``: 1.

The factor depends only on the step count and the budget, so a resumed run recomputes it exactly (no
state to save), and it does not react to the validation metric — on a validation split of a few
sequences (GunPoint: 5) a plateau detector would mostly follow noise. Early stopping
(:mod:`spiking_deepr.stopping`) ends runs that stop improving before the budget is spent.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

SCHEDULES = ("cosine", "constant")
SPARSE_LR_SCALES = ("none", "init")


def lr_factor(step: int, total: int, schedule: str = "cosine", warmup_fraction: float = 0.0) -> float:
    """Multiplier of the base learning rate for 0-based optimizer ``step`` of a ``total``-step budget."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    n_warm = int(round(warmup_fraction * total))
    warm = min(1.0, (step + 1) / n_warm) if n_warm > 0 else 1.0
    if schedule == "constant":
        return warm
    progress = min(1.0, max(0.0, (step - n_warm) / max(total - n_warm, 1)))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizers: Iterable[torch.optim.Optimizer], lr: float) -> None:
    """Set ``lr`` in every parameter group of every optimizer, times the group's ``lr_scale`` where it has
    one (``optim.sparse_lr_scale=init``); DEEP R's noise and L1 steps scale with it."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
