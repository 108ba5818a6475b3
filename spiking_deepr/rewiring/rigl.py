r"""RigL (Evci et al. 2020, "Rigging the Lottery"): prune the smallest magnitudes, grow where the dense
gradient is largest.

Everything but the growth rule is :class:`~.set.SET` (Adam on the active weights, cosine-decayed drop
fraction, a topology update every ``update_every`` steps, the exact-K core for budgets and caps).
At an update, after the smallest-|w| entries are dropped, each matrix grows its connections at the
dormant admissible positions with the largest :math:`|\partial E/\partial w|` of the *dense* gradient,
evaluated on the current batch with the dropped entries already removed (their gradient is taken too,
so a dropped entry may come straight back, as in RigL).

The dense gradient is never held as an N x N tensor. It is read in chunks of ``chunk_size`` positions
per matrix: the chunk's dormant positions are inserted as *zero-valued* active entries (so the forward
pass is unchanged), the loss is re-evaluated by ``closure`` and differentiated with respect to the
magnitudes, and the gradient at an inserted entry is exactly the dense gradient there. Only the best
``2 n + 16`` candidates per matrix (n = connections it may grow) are kept between chunks, so the
memory is O(K + chunk_size) and the cost is one extra forward/backward per chunk and update. New
positions are then accepted in order of decreasing gradient while the fan-in / fan-out caps and the
matrix's placement rule allow (`SparseMatrix.admit`); if they reject so many that the candidates run
out, the rest grows uniformly at random (as SET).

Under ``torch.distributed`` the chunk gradients are averaged over ranks, so every rank grows the same
connections.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from ..sparse.matrix import SparseMatrix
from .set import SET


class RigL(SET):
    """RigL over SparseMatrix objects. Args as :class:`~.set.SET`, plus ``chunk_size``: positions per
    matrix whose dense gradient is evaluated in one pass (bounds the memory)."""

    def __init__(self, matrices, lr: float = 1e-3, *, chunk_size: int = 1 << 18, **kwargs) -> None:
        if chunk_size < 1:
            raise ValueError(f"RigL: chunk_size must be >= 1, got {chunk_size}")
        super().__init__(matrices, lr, **kwargs)
        self.chunk_size = int(chunk_size)
        self._closure: Optional[Callable[[], torch.Tensor]] = None
        self._pools: List[_TopScores] = []

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        """As :meth:`SET.step`. ``closure`` re-evaluates the model on the current batch and returns the
        loss as a scalar tensor with its graph (no ``backward()``: RigL differentiates it itself); it is
        called only on topology updates, once per chunk, and is required then."""
        self._closure = closure
        try:
            return super().step()
        finally:
            self._closure = None

    def _prepare_growth(self, mats: List[SparseMatrix], removed: List[torch.Tensor], counts: List[int]) -> None:
        """Rank each matrix's growth candidates by |dense gradient| (chunked probe passes)."""
        if self._closure is None:
            raise ValueError("RigL.step needs a closure that re-evaluates the loss on the current batch "
                             "on topology-update steps (step(closure))")
        most = [sum(counts) if self.global_budget else n for n in counts]  # connections a matrix may grow
        saved = [(m.indices, m.theta.data, m.sign) for m in mats]
        pools = [_TopScores(2 * n + 16) for n in most]
        n_pass = max((-(-m.n_out * m.n_in // self.chunk_size) for m, n in zip(mats, most) if n), default=0)
        try:
            for p in range(n_pass):
                slots = [self._insert_probe(m, rem, saved_m, p, first=p == 0) if n else None
                         for m, rem, n, saved_m in zip(mats, removed, most, saved)]
                with torch.enable_grad():
                    loss = self._closure()
                    params = [m.theta for m, s in zip(mats, slots) if s is not None]
                    grads = list(torch.autograd.grad(loss, params, allow_unused=True))
                for m, s, pool in zip(mats, slots, pools):
                    if s is None:
                        continue
                    g = grads.pop(0)
                    g = torch.zeros_like(m.theta) if g is None else g
                    _all_reduce_mean(g)
                    pool.add(m.indices[s], g[s].abs())
        finally:
            for m, (idx, theta, sign) in zip(mats, saved):
                m.set_active(idx, theta, sign)
        self._pools = pools

    def _grow(self, i: int, m: SparseMatrix, n: int, taken: torch.Tensor, partial: bool) -> torch.Tensor:
        """The best-ranked admissible candidates (caps, placement rule, in decreasing |gradient|); if
        the candidates run out, the rest uniformly at random."""
        chosen = m.admit(self._pools[i].ranked(), n, taken)
        if chosen.numel() < n:
            taken = torch.cat([taken, chosen]).sort().values
            extra = m.sample_dormant(n - chosen.numel(), self.generator, taken, partial=partial)
            chosen = torch.cat([chosen, extra]).sort().values
        return chosen

    def _insert_probe(self, m: SparseMatrix, removed: torch.Tensor, saved: tuple, chunk: int, first: bool):
        """From the ``saved`` (indices, theta, sign) state, activate the admissible dormant positions of
        ``chunk`` with w = 0 and zero the removed entries.

        Returns the slots of the candidate entries in the enlarged matrix (int64)."""
        active = saved[0]
        m.set_active(*saved)
        lo = chunk * self.chunk_size
        hi = min(lo + self.chunk_size, m.n_out * m.n_in)
        kept = active[~removed]
        probe = torch.arange(lo, hi, dtype=torch.int64) if lo < hi else torch.empty(0, dtype=torch.int64)
        probe = probe[_admissible(m, probe, kept) & ~_member(probe, active)]
        moves = m.rewire(torch.ones(active.numel(), dtype=torch.bool), probe.to(active.device))
        old_slot = torch.empty(active.numel(), dtype=torch.int64)
        has_old = moves.source >= 0
        old_slot[moves.source[has_old]] = torch.nonzero(has_old).squeeze(1)
        m.theta.data[old_slot[removed]] = 0.0  # the network after the removal
        slots = moves.new_slots
        if first:  # the dropped entries are dormant now: candidates too (scored once)
            dropped = old_slot[removed]
            dropped = dropped[_admissible(m, m.indices[dropped], kept)]
            slots = torch.cat([slots, dropped])
        return slots


class _TopScores:
    """The ``size`` (position, score) pairs of highest score seen so far; ties go to the lower position."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.positions = torch.empty(0, dtype=torch.int64)
        self.scores = torch.empty(0)

    def add(self, positions: torch.Tensor, scores: torch.Tensor) -> None:
        pos = torch.cat([self.positions, positions.cpu()])
        sc = torch.cat([self.scores, scores.detach().cpu().to(self.scores.dtype)])
        order = _rank(pos, sc)[: self.size]
        self.positions, self.scores = pos[order], sc[order]

    def ranked(self) -> torch.Tensor:
        return self.positions[_rank(self.positions, self.scores)]


def _rank(positions: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Order by decreasing score, then increasing position (deterministic)."""
    by_pos = torch.sort(positions, stable=True).indices
    return by_pos[torch.sort(scores[by_pos], descending=True, stable=True).indices]


def _member(x: torch.Tensor, sorted_set: torch.Tensor) -> torch.Tensor:
    sorted_set = sorted_set.cpu()
    if sorted_set.numel() == 0 or x.numel() == 0:
        return torch.zeros(x.numel(), dtype=torch.bool)
    at = torch.searchsorted(sorted_set, x).clamp_(max=sorted_set.numel() - 1)
    return sorted_set[at] == x


def _admissible(m: SparseMatrix, positions: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """bool: off the excluded diagonal and in a row / column below its cap (counted over ``kept``)."""
    positions = positions.cpu()
    kept = kept.cpu()
    rows, cols = torch.div(positions, m.n_in, rounding_mode="floor"), positions % m.n_in
    ok = torch.ones(positions.numel(), dtype=torch.bool)
    if m.exclude_diagonal:
        ok &= rows != cols
    if m.fan_in_cap is not None:
        ok &= torch.bincount(torch.div(kept, m.n_in, rounding_mode="floor"), minlength=m.n_out)[rows] < m.fan_in_cap
    if m.fan_out_cap is not None:
        ok &= torch.bincount(kept % m.n_in, minlength=m.n_in)[cols] < m.fan_out_cap
    return ok


def _all_reduce_mean(g: torch.Tensor) -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(g)
        g /= torch.distributed.get_world_size()
