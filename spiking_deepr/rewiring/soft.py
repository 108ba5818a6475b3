r"""soft-DEEP R (Bellec et al. 2018, the paper's baseline): budget kept only on average.

Every potential connection keeps a parameter, so memory is dense (O(n_out * n_in)) — that is the
point of comparison with hard DEEP R. One step, for all entries k:

.. math::
    \theta_k \leftarrow \max\bigl(\theta_k - \eta\,\partial E/\partial\theta_k\,[\theta_k>0]
        - \eta\alpha[\theta_k>0] + \sqrt{2\eta T}\,\nu_k,\ \theta_{\min}\bigr)

The connection is active while theta > 0. Dormant parameters random-walk in [theta_min, 0) and
reconnect by themselves. With an exponential prior on active magnitudes (mass T/alpha) and a flat
one on [theta_min, 0), the expected connectivity is p0 when

.. math:: \theta_{\min} = -\frac{T (1 - p_0)}{\alpha\,p_0}.

With ``adam=True`` the gradient term is replaced by the bias-corrected Adam direction computed over
all entries (dense moments; dormant entries see a zero gradient), like `DeepRAdam` for hard DEEP R.

Connectivity control (``control=True``): the prior's p0 is the stationary connectivity *without* a
data term; the gradient holds useful connections up, and in a finite run the active magnitudes have
not decayed yet, so an uncontrolled run ends above p0 (1.66 % after 10 epochs when 1 % was asked).
With control on, a pressure g multiplies both alpha and theta_min; after every step

.. math:: \log g \leftarrow \log g + r\,(p/p_0 - 1)

where p is the measured connectivity over all matrices of the optimizer and r = ``control_rate``,
and the dormant parameters are rescaled with theta_min (so they keep their place in [theta_min, 0)).
A pressure g is the prior of a lower target p' with (1 - p')/p' = g² (1 - p0)/p0: the controller
lowers the prior's target until the data term and the prior together give p0. g is saved in
``state_dict()``.

The matrices keep the usual `SparseMatrix` interface (the layers do not change): after each step
the matrix's active set is replaced by {k : theta_k > 0}. Fan-in caps cannot be enforced by this
algorithm and are rejected; the diagonal of matrices built with ``exclude_diagonal`` stays dormant.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..sparse.matrix import SparseMatrix
from ..sparse.sampling import count_admissible
from .exact_k import MatrixGroups, MatrixOptimizer, adam_direction


def soft_deepr_theta_min(temperature: float, l1: float, connectivity: float) -> float:
    """theta_min giving expected connectivity p0 (formula above); needs T > 0, alpha > 0, 0 < p0 < 1."""
    if not (temperature > 0 and l1 > 0 and 0 < connectivity < 1):
        raise ValueError(
            f"soft-DEEP R theta_min needs temperature > 0, l1 > 0 and 0 < connectivity < 1; got "
            f"temperature={temperature}, l1={l1}, connectivity={connectivity}")
    return -temperature * (1 - connectivity) / (l1 * connectivity)


class SoftDeepR(MatrixOptimizer):
    """soft-DEEP R over SparseMatrix objects (dense parameter memory in the optimizer state).

    Args:
        matrices: SparseMatrix objects or groups ``{"matrices": [...], ...}``.
        lr, temperature, l1: as in DEEP R (temperature and l1 must be > 0).
        connectivity: target expected connectivity p0 (sets theta_min), or give ``theta_min``.
        adam, betas, eps: use Adam directions instead of the plain gradient.
        control: adapt alpha and theta_min so the measured connectivity tracks ``connectivity``.
        control_rate: r, the controller's step on log g per unit relative connectivity error.
        seed: the generator for noise and the initial dormant values.
    """

    def __init__(self, matrices: MatrixGroups, lr: float, temperature: float, l1: float,
                 *, connectivity: Optional[float] = None, theta_min: Optional[float] = None,
                 adam: bool = False, betas=(0.9, 0.999), eps: float = 1e-8, control: bool = False,
                 control_rate: float = 2.0, seed: int = 0):
        if (connectivity is None) == (theta_min is None):
            raise ValueError("SoftDeepR: give exactly one of connectivity or theta_min")
        if control and connectivity is None:
            raise ValueError("SoftDeepR: control=True needs the target connectivity")
        if theta_min is None:
            theta_min = soft_deepr_theta_min(temperature, l1, connectivity)
        if not theta_min < 0:
            raise ValueError(f"SoftDeepR: theta_min must be negative, got {theta_min}")
        super().__init__(matrices, dict(lr=lr, temperature=temperature, l1=l1, theta_min=theta_min,
                                        adam=adam, betas=tuple(betas), eps=eps), seed)
        self.target, self.control, self.control_rate = connectivity, bool(control), float(control_rate)
        self.log_pressure = 0.0

    def _check_matrix(self, m: SparseMatrix) -> None:
        if m.fan_in_cap is not None or m.fan_out_cap is not None:
            raise ValueError("SoftDeepR cannot enforce fan-in/fan-out caps; use DeepR for capped matrices")

    def _dense_theta(self, m: SparseMatrix, theta_min: float) -> torch.Tensor:
        state = self.state[m.theta]
        if "dense_theta" not in state:
            dense = torch.rand(m.n_out * m.n_in, generator=self.generator, dtype=m.theta.dtype) * theta_min
            dense = dense.to(m.theta.device)
            dense[m.indices] = m.theta.data
            state["dense_theta"] = dense
        return state["dense_theta"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        g = math.exp(self.log_pressure)
        for group in self.param_groups:
            lr, temp = group["lr"], group["temperature"]
            l1, tmin = group["l1"] * g, group["theta_min"] * g
            for theta in group["params"]:
                m = self._matrix_of[id(theta)]
                dense = self._dense_theta(m, tmin)
                grad = theta.grad if theta.grad is not None else torch.zeros_like(theta)
                if group["adam"]:
                    dense_grad = torch.zeros_like(dense)
                    dense_grad[m.indices] = grad
                    moments = self.state[theta].setdefault("adam", {})
                    dense -= lr * adam_direction(dense_grad, moments, group["betas"], group["eps"])
                    dense[m.indices] -= lr * l1
                else:
                    dense[m.indices] -= lr * (grad + l1)
                noise = torch.randn(dense.shape, generator=self.generator, dtype=dense.dtype)
                dense.add_(noise.to(dense.device), alpha=math.sqrt(2 * lr * temp)).clamp_(min=tmin)
                if m.exclude_diagonal:
                    d = torch.arange(min(m.n_out, m.n_in), device=dense.device)
                    dense[d * m.n_in + d] = tmin
                active = torch.nonzero(dense > 0).squeeze(1)
                m.set_active(active, dense[active])
        if self.control:
            self._adapt_pressure()
        return loss

    def _adapt_pressure(self) -> None:
        mats = self.matrices()
        p = sum(m.nnz for m in mats) / sum(count_admissible(m.n_out, m.n_in, m.exclude_diagonal) for m in mats)
        new = min(_MAX_LOG_PRESSURE, max(-_MAX_LOG_PRESSURE, self.log_pressure + self.control_rate * (p / self.target - 1)))
        ratio = math.exp(new - self.log_pressure)
        for m in mats:
            dense = self.state[m.theta]["dense_theta"]
            dense[dense < 0] *= ratio  # dormant values follow theta_min
        self.log_pressure = new

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["log_pressure"] = self.log_pressure
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self.log_pressure = float(state_dict.pop("log_pressure", 0.0))
        super().load_state_dict(state_dict)


_MAX_LOG_PRESSURE = 20.0  # g within e^±20: keeps alpha and theta_min finite
