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

Budgets: by default every matrix keeps its own K. With ``global_budget=True`` the optimizer keeps
the *sum* of active entries over all its matrices fixed; each step's deficit is split between
matrices multinomially with probabilities proportional to their initial budgets (as the authors'
LSNN code does), then placed uniformly among each matrix's dormant positions. Regrowth never
exceeds a matrix's fan-in / fan-out caps nor breaks its placement rule (``SparseMatrix.placement``,
e.g. per-core hardware limits); a matrix that has no room passes its share on.

Dormant entries get no gradient, no L1 and no noise (they are not stored). The random state
(noise and regrowth) is one ``torch.Generator`` saved in ``state_dict()``, so a resumed run is
bit-identical.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Union

import torch

from ..sparse.matrix import SparseMatrix

MatrixGroups = Union[Iterable[SparseMatrix], Iterable[dict]]


class MatrixOptimizer(torch.optim.Optimizer):
    """Base of the rewiring optimizers: torch.optim param groups over SparseMatrix objects.

    Groups are given as SparseMatrix objects or ``{"matrices": [...], <hyper-parameters>}``; internally
    each group's ``params`` are the matrices' ``theta`` Parameters (so torch.optim's state handling,
    ``zero_grad`` and ``state_dict`` work), and the optimizer keeps a map back to the matrices. One
    ``torch.Generator`` (noise, regrowth) is saved in ``state_dict()``.
    """

    def __init__(self, matrices: MatrixGroups, defaults: dict, seed: int) -> None:
        self._matrix_of: Dict[int, SparseMatrix] = {}
        groups = [self._unpack(group, defaults) for group in _as_groups(matrices)]
        super().__init__(groups, defaults)
        self.generator = torch.Generator().manual_seed(int(seed))

    def _unpack(self, group: dict, defaults: dict) -> dict:
        group = dict(group)
        mats = list(group.pop("matrices"))
        for m in mats:
            if not isinstance(m, SparseMatrix):
                raise TypeError(f"{type(self).__name__} rewires SparseMatrix objects, got {type(m).__name__}")
            self._check_matrix(m)
            self._matrix_of[id(m.theta)] = m
        group["params"] = [m.theta for m in mats]
        _check_hyper({**defaults, **group}, type(self).__name__)
        return group

    def _check_matrix(self, m: SparseMatrix) -> None:
        """Hook: reject matrices this algorithm cannot handle."""

    def matrices(self) -> List[SparseMatrix]:
        return [self._matrix_of[id(p)] for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict) -> None:
        if "matrices" in param_group:  # public form; the base class calls this with "params"
            param_group = self._unpack(param_group, self.defaults)
        super().add_param_group(param_group)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["rng_state"] = self.generator.get_state()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        if "rng_state" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing key 'rng_state' "
                             f"(not a {type(self).__name__} state)")
        rng = state_dict.pop("rng_state")
        super().load_state_dict(state_dict)
        self.generator.set_state(rng)


class DeepR(MatrixOptimizer):
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
        super().__init__(matrices, dict(lr=lr, temperature=temperature, l1=l1), seed)
        self.global_budget = bool(global_budget)
        self.total_budget = sum(m.nnz for m in self.matrices())
        self.last_rewired: List[int] = [0] * len(self.matrices())

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

    # ----------------------------------------------------------------------------- rewiring
    def _rewire(self, removed: List[torch.Tensor]) -> None:
        mats = self.matrices()
        counts = [int(torch.count_nonzero(r)) for r in removed]
        new = self._regrow_positions(mats, removed, counts)
        for i, (m, rem, pos) in enumerate(zip(mats, removed, new)):
            self.last_rewired[i] = counts[i]
            if counts[i] == 0 and pos.numel() == 0:
                continue
            moves = m.rewire(~rem, pos)
            moves.carry(self.state[m.theta])  # removed entries' state dropped, new ones start at 0
        self._check_budget(mats)

    def _regrow_positions(self, mats: List[SparseMatrix], removed: List[torch.Tensor],
                          counts: List[int]) -> List[torch.Tensor]:
        """New positions (sorted int64) per matrix: each matrix's own removals, or under a global
        budget the total deficit split ∝ initial budgets. A matrix whose placement rule (e.g. a full
        core) admits fewer than its share is closed and the rest is split again among the others."""
        keeps = [m.indices[~r] for m, r in zip(mats, removed)]
        if not self.global_budget:
            return [m.sample_dormant(n, self.generator, keep) if n else keep[:0]
                    for m, n, keep in zip(mats, counts, keeps)]
        new = [k[:0] for k in keeps]
        closed = [False] * len(mats)
        left = sum(counts)
        while left > 0:
            grow = self._split_deficit(mats, removed, left, new, closed)
            for i, (m, n) in enumerate(zip(mats, grow)):
                if n == 0:
                    continue
                taken = torch.cat([keeps[i], new[i]]).sort().values
                pos = m.sample_dormant(n, self.generator, taken, partial=m.placement is not None)
                closed[i] = pos.numel() < n
                new[i] = torch.cat([new[i], pos]).sort().values
                left -= pos.numel()
        return new

    def _split_deficit(self, mats: List[SparseMatrix], removed: List[torch.Tensor], deficit: int,
                       placed: List[torch.Tensor], closed: List[bool]) -> List[int]:
        """Split ``deficit`` new connections between the open matrices ∝ initial budgets, within
        capacity (``placed``: positions already regrown this step)."""
        grow = [0] * len(mats)
        if deficit == 0:
            return grow
        capacity = [0 if shut else m.dormant_capacity() + int(r.sum()) - p.numel()
                    for m, r, p, shut in zip(mats, removed, placed, closed)]
        weights = torch.tensor([float(m.budget) for m in mats], dtype=torch.float64)
        left = deficit
        while left > 0:
            open_ = torch.tensor([c > g for c, g in zip(capacity, grow)])
            if not bool(open_.any()):
                raise RuntimeError(f"global budget: no matrix has room for {left} more connections")
            p = weights * open_
            draw = torch.multinomial(p / p.sum(), left, replacement=True, generator=self.generator)
            for i, n in enumerate(torch.bincount(draw, minlength=len(mats)).tolist()):
                take = min(n, capacity[i] - grow[i])
                grow[i] += take
                left -= take
        return grow

    def _check_budget(self, mats: List[SparseMatrix]) -> None:
        if self.global_budget:
            total = sum(m.nnz for m in mats)
            if total != self.total_budget:
                raise RuntimeError(f"DEEP R invariant broken: {total} active connections, budget {self.total_budget}")
        else:
            for m in mats:
                if m.nnz != m.budget:
                    raise RuntimeError(f"DEEP R invariant broken: {m.nnz} active connections in {m}, budget {m.budget}")

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["global_budget"] = self.global_budget
        sd["total_budget"] = self.total_budget
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        name = type(self).__name__
        for key in ("rng_state", "global_budget", "total_budget"):
            if key not in state_dict:
                raise ValueError(f"{name}.load_state_dict: missing key {key!r} (not a DEEP R state)")
        if state_dict["global_budget"] != self.global_budget:
            raise ValueError(f"{name}.load_state_dict: checkpoint has global_budget={state_dict['global_budget']}, "
                             f"this optimizer {self.global_budget}")
        for i, m in enumerate(self.matrices()):
            for key, value in state_dict["state"].get(i, {}).items():
                if torch.is_tensor(value) and value.dim() == 1 and value.numel() != m.nnz:
                    raise ValueError(
                        f"{name}.load_state_dict: state {key!r} of matrix {i} has {value.numel()} "
                        f"entries but the matrix has {m.nnz} active (load the model checkpoint first)")
        self.total_budget = state_dict.pop("total_budget")
        del state_dict["global_budget"]
        super().load_state_dict(state_dict)


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


def adam_direction(grad: torch.Tensor, state: dict, betas, eps: float) -> torch.Tensor:
    """Bias-corrected Adam direction m̂ / (sqrt(v̂) + eps) with a step count *per entry* (so entries
    whose moments were reset restart their bias correction). ``state`` holds exp_avg, exp_avg_sq and
    steps, created on first use with ``grad``'s shape."""
    beta1, beta2 = betas
    if not state:
        state["exp_avg"] = torch.zeros_like(grad)
        state["exp_avg_sq"] = torch.zeros_like(grad)
        state["steps"] = torch.zeros(grad.shape, dtype=torch.int64, device=grad.device)
    m, v, steps = state["exp_avg"], state["exp_avg_sq"], state["steps"]
    steps.add_(1)
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    t = steps.to(grad.dtype)
    return (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)


def _as_groups(matrices: MatrixGroups) -> List[dict]:
    items = list(matrices)
    if not items:
        raise ValueError("DEEP R optimizer got an empty list of matrices")
    if all(isinstance(x, dict) for x in items):
        for g in items:
            if "matrices" not in g:
                raise ValueError("DEEP R param groups need a 'matrices' key")
        return items
    return [{"matrices": items}]


def _check_hyper(group: dict, who: str) -> None:
    if not group["lr"] > 0:
        raise ValueError(f"{who}: invalid learning rate lr={group['lr']} (must be > 0)")
    if group["temperature"] < 0:
        raise ValueError(f"{who}: invalid temperature {group['temperature']} (must be >= 0)")
    if group["l1"] < 0:
        raise ValueError(f"{who}: invalid l1 {group['l1']} (must be >= 0)")
