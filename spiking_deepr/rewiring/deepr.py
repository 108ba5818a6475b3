r"""DEEP R (Bellec, Kappel, Maass, Legenstein, ICLR 2018): training under a hard connection budget.

Each matrix is a :class:`~spiking_deepr.sparse.SparseMatrix` whose active entries have magnitudes
:math:`\theta_k \ge 0` and fixed signs :math:`s_k` (weight :math:`w_k = s_k\theta_k`). One ``step()``:

.. math::
    \theta_k &\leftarrow \theta_k - \eta\,d_k - \eta\alpha + \sqrt{2\eta T}\,\nu_k
        \qquad \text{(active k only; } \nu_k\sim\mathcal N(0,1))\\
    &\text{k with } \theta_k < 0 \text{ turns dormant (removed from the matrix)}\\
    &\text{as many dormant positions are activated, uniformly at random, with } \theta = 0

where :math:`d_k = \partial E/\partial\theta_k = s_k\,\partial E/\partial w_k` (plain DEEP R, Algorithm 1)
or the bias-corrected Adam direction (:class:`DeepRAdam`). Order inside a step: gradient / Adam
direction, then L1, then noise, then removal, then regrowth. An entry is *active* iff its position is
in the matrix's index set — never decided by the value of theta — so the count cannot drift: a
regrown entry has theta = 0 and stays active until an update makes it negative.

Budgets (per matrix, or one global budget), the deficit split, fan-in / fan-out caps and the
state carried over a rewiring are the exact-K core's (:mod:`.exact_k`), shared with SET and RigL;
DEEP R places new connections uniformly among each matrix's dormant positions. Regrowth never exceeds
a matrix's fan-in / fan-out caps nor breaks its placement rule (``SparseMatrix.placement``, e.g.
per-core hardware limits); a matrix that has no room passes its share on.

Dormant entries get no gradient, no L1 and no noise (they are not stored). The random state
(noise and regrowth) is one ``torch.Generator`` saved in ``state_dict()``, so a resumed run is
bit-identical.
"""
from __future__ import annotations

import math
from typing import List

import torch

from .exact_k import ExactKOptimizer, MatrixGroups, adam_direction


class DeepR(ExactKOptimizer):
    """Hard DEEP R with plain gradient steps.

    Args:
        matrices: SparseMatrix objects, or param-group dicts ``{"matrices": [...], "lr": ..., ...}``.
        lr: learning rate eta (> 0).
        temperature: T >= 0; noise std per step is sqrt(2 * lr * T).
        l1: L1 coefficient alpha >= 0 (a constant pull of every active theta towards 0).
        global_budget: keep the total active count over all matrices fixed instead of each matrix's.
        seed: seeds the optimizer's generator (noise and regrowth positions).
    """

    def __init__(self, matrices: MatrixGroups, lr: float, temperature: float = 0.0, l1: float = 0.0,
                 *, global_budget: bool = False, seed: int = 0) -> None:
        super().__init__(matrices, dict(lr=lr, temperature=temperature, l1=l1), seed, global_budget)

    @torch.no_grad()
    def step(self, closure=None):
        """One DEEP R step on every matrix: update, remove crossings, regrow, check the budget."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        removed: List[torch.Tensor] = []
        for group in self.param_groups:
            lr, temp, l1 = group["lr"], group["temperature"], group["l1"]
            for theta in group["params"]:
                state = self.state[theta]
                grad = theta.grad if theta.grad is not None else torch.zeros_like(theta)
                direction = self._direction(theta, grad, state, group)
                theta.sub_(direction, alpha=lr)
                if l1:
                    theta.sub_(lr * l1)
                if temp:
                    noise = torch.randn(theta.shape, generator=self.generator, dtype=theta.dtype)
                    theta.add_(noise.to(theta.device), alpha=math.sqrt(2.0 * lr * temp))
                removed.append(theta < 0)
        self._rewire(removed)
        return loss

    def _direction(self, theta: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        """The update direction d (theta <- theta - lr * d). Plain DEEP R: the gradient itself."""
        return grad


class DeepRAdam(DeepR):
    r"""Hard DEEP R with Adam directions (the LSNN recipe).

    Adam moments are kept for active entries only (O(K) memory). A removed entry's moments are
    discarded; a regrown entry starts from zero moments **and its own step count of 0**, so its bias
    correction is that of a fresh parameter (the first update has the usual Adam size ~lr) instead of
    being damped by a stale global step count. L1 and noise are applied after the Adam step, on the
    active entries, as in the authors' code.

    Args: as :class:`DeepR`, plus ``betas`` and ``eps``.
    """

    def __init__(self, matrices: MatrixGroups, lr: float = 1e-3, temperature: float = 0.0, l1: float = 0.0,
                 *, betas=(0.9, 0.999), eps: float = 1e-8, global_budget: bool = False, seed: int = 0) -> None:
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"DeepRAdam: betas must be in [0, 1), got {betas}")
        super().__init__(matrices, lr, temperature, l1, global_budget=global_budget, seed=seed)
        for group in self.param_groups:
            group.setdefault("betas", tuple(betas))
            group.setdefault("eps", eps)

    def _direction(self, theta, grad, state, group):
        return adam_direction(grad, state, group["betas"], group["eps"])
