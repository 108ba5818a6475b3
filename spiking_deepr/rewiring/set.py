r"""SET (Mocanu et al. 2018, "Sparse Evolutionary Training"): prune the smallest magnitudes, regrow at random.

The active weights are trained with Adam (per-entry moments, as :class:`~.deepr.DeepRAdam`; a weight
may change sign: :math:`w_k = s_k\theta_k` with :math:`\theta_k` of either sign). Every
``update_every`` optimizer steps, each matrix drops the :math:`\lfloor f(t)\,K_i\rceil` active entries
with the smallest :math:`|w|` and the same number of connections grows (per matrix, or split under a
global budget) — uniformly at random among the dormant admissible positions, through the exact-K core
(:mod:`.exact_k`) shared with DEEP R, so budgets and fan-in / fan-out caps hold exactly. New entries
start at w = 0 with fresh Adam moments.

The drop fraction follows RigL's cosine decay (Evci et al. 2020),

.. math:: f(t) = \frac{f_0}{2}\Bigl(1 + \cos\frac{\pi t}{t_{\text{end}}}\Bigr) \quad (t < t_{\text{end}}),
    \qquad f(t) = 0 \text{ afterwards},

so the topology settles before training ends; with ``decay_steps=None`` it stays at :math:`f_0` (the
original SET schedule). :class:`~.rigl.RigL` differs only in where connections grow.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .exact_k import ExactKOptimizer, MatrixGroups, adam_direction, require_keys


class SET(ExactKOptimizer):
    """SET over SparseMatrix objects.

    Args:
        matrices: SparseMatrix objects, or param-group dicts ``{"matrices": [...], "lr": ...}``.
        lr: Adam learning rate. betas, eps: Adam settings.
        drop_fraction: f0, fraction of each matrix's active entries replaced per topology update.
        update_every: optimizer steps between topology updates (Delta T).
        decay_steps: the step t_end at which the cosine-decayed drop fraction reaches 0 (no more
            updates after it); None keeps f0 constant.
        global_budget: keep the total active count over all matrices instead of each matrix's.
        seed: seeds the generator (regrowth positions, the global-budget split).
    """

    def __init__(self, matrices: MatrixGroups, lr: float = 1e-3, *, betas=(0.9, 0.999), eps: float = 1e-8,
                 drop_fraction: float = 0.3, update_every: int = 100, decay_steps: Optional[int] = None,
                 global_budget: bool = False, seed: int = 0) -> None:
        name = type(self).__name__
        if not 0.0 <= drop_fraction < 1.0:
            raise ValueError(f"{name}: drop_fraction must be in [0, 1), got {drop_fraction}")
        if update_every < 1:
            raise ValueError(f"{name}: update_every must be >= 1, got {update_every}")
        if decay_steps is not None and decay_steps < 1:
            raise ValueError(f"{name}: decay_steps must be >= 1 or None, got {decay_steps}")
        super().__init__(matrices, dict(lr=lr, betas=tuple(betas), eps=eps), seed, global_budget)
        self.drop_fraction, self.update_every, self.decay_steps = float(drop_fraction), int(update_every), decay_steps
        self.steps = 0

    def fraction(self, step: int) -> float:
        """Drop fraction f(step) of the cosine schedule."""
        if self.decay_steps is None:
            return self.drop_fraction
        if step >= self.decay_steps:
            return 0.0
        return 0.5 * self.drop_fraction * (1.0 + math.cos(math.pi * step / self.decay_steps))

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step on the active entries; every ``update_every`` steps a topology update.

        ``closure`` is only used by RigL (see :meth:`RigL.step`)."""
        for group in self.param_groups:
            for theta in group["params"]:
                grad = theta.grad if theta.grad is not None else torch.zeros_like(theta)
                theta.sub_(adam_direction(grad, self.state[theta], group["betas"], group["eps"]), alpha=group["lr"])
        self.steps += 1
        f = self.fraction(self.steps)
        if self.steps % self.update_every == 0 and f > 0:
            self._rewire([smallest(m.theta.detach().abs(), round(f * m.nnz)) for m in self.matrices()])
        else:
            self.last_rewired = [0] * len(self.last_rewired)
        return None

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["steps"] = self.steps
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        require_keys(self, state_dict, "steps")
        steps = state_dict.pop("steps")
        super().load_state_dict(state_dict)
        self.steps = int(steps)


def smallest(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    """bool [K]: the ``count`` entries of smallest ``magnitude`` (ties broken by position)."""
    mask = torch.zeros(magnitude.numel(), dtype=torch.bool, device=magnitude.device)
    if count > 0:
        order = torch.sort(magnitude, stable=True).indices
        mask[order[:count]] = True
    return mask

