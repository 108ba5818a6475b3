r"""The exact-K core shared by every hard-budget rewiring optimizer (DEEP R, SET, RigL).

A rewiring optimizer is a ``torch.optim.Optimizer`` over :class:`~spiking_deepr.sparse.SparseMatrix`
objects. :class:`ExactKOptimizer` owns the one piece they all share: given, per matrix, a boolean mask
of entries to remove, it decides how many connections each matrix regrows, asks the algorithm
*where* (:meth:`ExactKOptimizer._grow`), applies removal and regrowth in one merge per matrix, moves
the per-entry optimizer state along and checks that the budget is exact.

Budgets: by default every matrix keeps its own K (removed = regrown per matrix). With
``global_budget=True`` the *sum* of active entries over all matrices stays fixed; each step's
deficit is split between matrices multinomially with probabilities proportional to their initial
budgets (as the authors' LSNN code does). A matrix whose fan-in / fan-out caps or placement rule
(``SparseMatrix.placement``, e.g. per-core hardware limits) leave no room passes its share on; new
positions always respect them.

The random state (noise, regrowth, the deficit split) is one ``torch.Generator`` saved in
``state_dict()``, so a resumed run is bit-identical.
"""
from __future__ import annotations

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
        require_keys(self, state_dict, "rng_state")
        rng = state_dict.pop("rng_state")
        super().load_state_dict(state_dict)
        self.generator.set_state(rng)


def require_keys(optimizer: torch.optim.Optimizer, state_dict: dict, *keys: str) -> None:
    """Raise ValueError naming the first of ``keys`` missing from ``optimizer``'s state dict (a
    checkpoint of another optimizer class)."""
    name = type(optimizer).__name__
    for key in keys:
        if key not in state_dict:
            raise ValueError(f"{name}.load_state_dict: missing key {key!r} (not a {name} state)")


class ExactKOptimizer(MatrixOptimizer):
    """A MatrixOptimizer that removes and regrows connections with the active count kept exact.

    Subclasses implement ``step()`` (their update and removal rule) and call :meth:`_rewire`;
    they choose where connections grow by overriding :meth:`_grow` (default: uniformly at random
    among the dormant admissible positions, as DEEP R and SET do).
    """

    def __init__(self, matrices: MatrixGroups, defaults: dict, seed: int, global_budget: bool) -> None:
        super().__init__(matrices, defaults, seed)
        self.global_budget = bool(global_budget)
        self.total_budget = sum(m.nnz for m in self.matrices())
        self.last_rewired: List[int] = [0] * len(self.matrices())

    def _rewire(self, removed: List[torch.Tensor]) -> None:
        """Remove the entries flagged in ``removed`` (bool [K_i] per matrix) and regrow as many."""
        mats = self.matrices()
        counts = [int(torch.count_nonzero(r)) for r in removed]
        self.last_rewired = counts
        if not any(counts):
            return
        new = self._regrow_positions(mats, removed, counts)
        for m, rem, pos, n_rem in zip(mats, removed, new, counts):
            if n_rem == 0 and pos.numel() == 0:
                continue
            m.rewire(~rem, pos).carry(self.state[m.theta])  # removed entries' state dropped, new start at 0
        self._check_budget(mats)

    def _regrow_positions(self, mats: List[SparseMatrix], removed: List[torch.Tensor],
                          counts: List[int]) -> List[torch.Tensor]:
        """New positions (sorted int64) per matrix: each matrix's own removals, or under a global
        budget the total deficit split ∝ initial budgets. A matrix whose placement rule (e.g. a full
        core) admits fewer than its share is closed and the rest is split again among the others."""
        keeps = [m.indices[~r] for m, r in zip(mats, removed)]
        self._prepare_growth(mats, removed, counts)
        if not self.global_budget:
            return [self._grow(i, m, n, keep, partial=False) if n else keep[:0]
                    for i, (m, n, keep) in enumerate(zip(mats, counts, keeps))]
        new = [k[:0] for k in keeps]
        closed = [False] * len(mats)
        left = sum(counts)
        while left > 0:
            grow = self._split_deficit(mats, removed, left, new, closed)
            for i, (m, n) in enumerate(zip(mats, grow)):
                if n == 0:
                    continue
                taken = torch.cat([keeps[i], new[i]]).sort().values
                pos = self._grow(i, m, n, taken, partial=m.placement is not None)
                closed[i] = pos.numel() < n
                new[i] = torch.cat([new[i], pos]).sort().values
                left -= pos.numel()
        return new

    def _prepare_growth(self, mats: List[SparseMatrix], removed: List[torch.Tensor], counts: List[int]) -> None:
        """Hook called once per rewiring before any :meth:`_grow` (RigL reads dense gradients here)."""

    def _grow(self, i: int, m: SparseMatrix, n: int, taken: torch.Tensor, partial: bool) -> torch.Tensor:
        """Up to ``n`` new sorted positions of matrix ``i`` (``taken``: sorted positions that stay
        active), admissible (caps, placement rule); fewer only when ``partial``. Default: uniformly
        at random (DEEP R, SET)."""
        return m.sample_dormant(n, self.generator, taken, partial=partial)

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
        name = type(self).__name__
        if self.global_budget:
            total = sum(m.nnz for m in mats)
            if total != self.total_budget:
                raise RuntimeError(f"{name} invariant broken: {total} active connections, budget {self.total_budget}")
        else:
            for m in mats:
                if m.nnz != m.budget:
                    raise RuntimeError(f"{name} invariant broken: {m.nnz} active connections in {m}, "
                                       f"budget {m.budget}")

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["global_budget"] = self.global_budget
        sd["total_budget"] = self.total_budget
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        name = type(self).__name__
        require_keys(self, state_dict, "rng_state", "global_budget", "total_budget")
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
        raise ValueError("rewiring optimizer got an empty list of matrices")
    if all(isinstance(x, dict) for x in items):
        for g in items:
            if "matrices" not in g:
                raise ValueError("rewiring optimizer param groups need a 'matrices' key")
        return items
    return [{"matrices": items}]


def _check_hyper(group: dict, who: str) -> None:
    if not group["lr"] > 0:
        raise ValueError(f"{who}: invalid learning rate lr={group['lr']} (must be > 0)")
    if group.get("temperature", 0.0) < 0:
        raise ValueError(f"{who}: invalid temperature {group['temperature']} (must be >= 0)")
    if group.get("l1", 0.0) < 0:
        raise ValueError(f"{who}: invalid l1 {group['l1']} (must be >= 0)")
