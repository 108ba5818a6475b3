"""Drawing distinct matrix positions uniformly without touching N x N memory.

Positions are linear indices ``row * n_in + col`` (int64). Active sets are kept sorted, so
membership is a binary search. Candidates are drawn uniformly, filtered (diagonal, already
active, duplicates, fan-in / fan-out caps, then an optional :class:`Admission` rule) and accepted in
random order, repeating until enough distinct positions are found. Acceptance in random order keeps
the result uniform over all admissible positions (rejection sampling), which the regrowth test
checks with a chi-square test.

An :class:`Admission` is the extension point for constraints that couple positions (and matrices):
e.g. per-core hardware limits (`spiking_deepr.rewiring.cores`), where whether a position may be taken
depends on what was accepted before it. Every algorithm that grows connections through
`SparseMatrix.sample_dormant` / `SparseMatrix.admit` (initialisation, DEEP R regrowth, ...) honours it.
"""
from __future__ import annotations

from typing import Optional, Protocol

import torch


class Admission(Protocol):
    """A rule deciding, one candidate after the other, whether a new position may be taken."""

    def admit(self, candidates: torch.Tensor, need: int) -> torch.Tensor:
        """Accept ``candidates`` (int64 linear positions, dormant, in the order offered) while the
        rule allows each one *given all positions accepted before it* (in this and earlier calls),
        at most ``need`` of them; returns the accepted ones in offered order and records them."""


class PlacementRule(Protocol):
    """What a `SparseMatrix` holds to constrain its positions (``SparseMatrix.placement``)."""

    def start(self, matrix, active: torch.Tensor) -> Admission:
        """An :class:`Admission` for new positions of ``matrix`` when ``active`` (sorted int64) are the
        positions that stay taken (its other entries count as dormant)."""


def admit_in_order(
    candidates: torch.Tensor,
    need: int,
    n_out: int,
    n_in: int,
    *,
    active: torch.Tensor,
    exclude_diagonal: bool,
    fan_in: Optional[torch.Tensor] = None,
    fan_in_cap: Optional[int] = None,
    fan_out: Optional[torch.Tensor] = None,
    fan_out_cap: Optional[int] = None,
    admission: Optional[Admission] = None,
) -> torch.Tensor:
    """The first ``need`` admissible positions of ``candidates`` in the order given (e.g. by decreasing
    score for a gradient-based regrowth), in that order: repeats, taken positions, the diagonal and
    positions over a fan-in / fan-out cap are skipped, then ``admission`` decides."""
    cand = _drop_taken(_unique_in_order(candidates.to(torch.int64)), active)
    if exclude_diagonal:
        cand = cand[cand // n_in != cand % n_in]
    if fan_in_cap is not None or fan_out_cap is not None:
        cand = _within_caps(cand, n_in, fan_in if fan_in_cap is not None else None, fan_in_cap,
                            fan_out if fan_out_cap is not None else None, fan_out_cap)
    return cand[:need] if admission is None else admission.admit(cand, need)

_MAX_ROUNDS = 10_000


def position_sign(positions: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed pseudo-random sign (+1./-1., float32) for each linear position.

    DEEP R gives every potential connection a sign for ever; storing N x N signs would break
    O(K) memory, so the sign is a hash of (seed, position): the same position always gets the
    same sign, and signs are independent fair coin flips across positions.
    """
    mask = 0xFFFFFFFF
    h = (positions & mask) ^ (positions >> 32) ^ (seed & mask)
    # "lowbias32" integer hash (Wellons); every product stays below 2**63.
    h = ((h >> 16) ^ h) * 0x7FEB352D & mask
    h = ((h >> 15) ^ h) * 0x846CA68B & mask
    h = (h >> 16) ^ h
    return 1.0 - 2.0 * (h & 1).to(torch.float32)


def count_admissible(n_out: int, n_in: int, exclude_diagonal: bool) -> int:
    """Number of positions a connection may occupy."""
    return n_out * n_in - (min(n_out, n_in) if exclude_diagonal else 0)


def sample_positions(
    count: int,
    n_out: int,
    n_in: int,
    *,
    active: torch.Tensor,
    exclude_diagonal: bool,
    fan_in: Optional[torch.Tensor] = None,
    fan_in_cap: Optional[int] = None,
    fan_out: Optional[torch.Tensor] = None,
    fan_out_cap: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    admission: Optional[Admission] = None,
    partial: bool = False,
) -> torch.Tensor:
    """Draw ``count`` distinct dormant positions uniformly at random, sorted (int64 [count]).

    active:  sorted int64 [K] positions already taken (never drawn again).
    fan_in:  int64 [n_out] current connections per postsynaptic neuron (needed with a cap).
    fan_out: int64 [n_in] current connections per presynaptic neuron (needed with a cap).
    admission: an extra rule applied last, in random order (see :class:`Admission`).
    partial: return fewer positions when no more are admissible instead of raising.
    Raises RuntimeError if the caps / rule leave fewer than ``count`` admissible positions.
    """
    empty = torch.empty(0, dtype=torch.int64)
    if count <= 0:
        return empty
    total = n_out * n_in
    fan_in = fan_in.clone() if fan_in_cap is not None else None
    fan_out = fan_out.clone() if fan_out_cap is not None else None
    chosen_sorted = empty  # drawn so far; kept apart from `active` so no O(K) re-sort per round
    n_chosen = 0
    free = count_admissible(n_out, n_in, exclude_diagonal) - active.numel()
    dense_pool = None
    for _ in range(_MAX_ROUNDS):
        need = count - n_chosen
        if need <= 0:
            break
        if free <= 4 * need or total <= 4096 or dense_pool is not None:
            # Nearly full (or tiny) matrix: rejection would spin, enumerate what is left instead.
            if dense_pool is None:
                dense_pool = _drop_taken(_dormant_positions(n_out, n_in, active, exclude_diagonal), chosen_sorted)
            cand = dense_pool[torch.randperm(dense_pool.numel(), generator=generator)]
        else:
            draw = int(need * total / max(free, 1) * 1.3) + 16
            cand = torch.randint(0, total, (draw,), generator=generator, dtype=torch.int64)
            cand = _drop_taken(_drop_taken(_unique_in_order(cand), active), chosen_sorted)
            if exclude_diagonal:
                cand = cand[cand // n_in != cand % n_in]
        if fan_in is not None or fan_out is not None:
            cand = _within_caps(cand, n_in, fan_in, fan_in_cap, fan_out, fan_out_cap)
        offered = cand.numel()
        cand = cand[:need] if admission is None else admission.admit(cand, need)
        if cand.numel() == 0 and dense_pool is not None:
            break
        if cand.numel() == 0 and offered and admission is not None:
            # The rule refuses random draws: enumerate the dormant positions from now on, so the
            # loop ends as soon as nothing admissible is left.
            dense_pool = _drop_taken(_dormant_positions(n_out, n_in, active, exclude_diagonal), chosen_sorted)
            continue
        if fan_in is not None:
            fan_in += torch.bincount(cand // n_in, minlength=n_out)
        if fan_out is not None:
            fan_out += torch.bincount(cand % n_in, minlength=n_in)
        n_chosen += cand.numel()
        chosen_sorted = torch.cat([chosen_sorted, cand]).sort().values
        if dense_pool is not None:
            dense_pool = _drop_taken(dense_pool, chosen_sorted)
        free -= cand.numel()
    if n_chosen < count and not partial:
        raise RuntimeError(
            f"could place only {n_chosen} of {count} connections in a {n_out}x{n_in} matrix: "
            f"fan_in_cap={fan_in_cap}, fan_out_cap={fan_out_cap}, exclude_diagonal={exclude_diagonal}"
            f"{', ' + type(admission).__name__ if admission is not None else ''} "
            f"leave no admissible dormant position"
        )
    return chosen_sorted


def _unique_in_order(x: torch.Tensor) -> torch.Tensor:
    """Drop repeated values, keeping the first occurrence and the (random) order."""
    uniq, inverse = torch.unique(x, return_inverse=True)
    first = torch.full((uniq.numel(),), x.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(x.numel()), reduce="amin")
    return x[first.sort().values]


def _drop_taken(cand: torch.Tensor, taken_sorted: torch.Tensor) -> torch.Tensor:
    if taken_sorted.numel() == 0 or cand.numel() == 0:
        return cand
    pos = torch.searchsorted(taken_sorted, cand).clamp_(max=taken_sorted.numel() - 1)
    return cand[taken_sorted[pos] != cand]


def _dormant_positions(n_out: int, n_in: int, taken: torch.Tensor, exclude_diagonal: bool) -> torch.Tensor:
    pool = torch.arange(n_out * n_in, dtype=torch.int64)
    keep = torch.ones_like(pool, dtype=torch.bool)
    keep[taken] = False
    if exclude_diagonal:
        d = torch.arange(min(n_out, n_in), dtype=torch.int64)
        keep[d * n_in + d] = False
    return pool[keep]


def _rank_within_group(keys: torch.Tensor) -> torch.Tensor:
    """For each element, how many earlier elements share its key (order of ``keys`` kept)."""
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    idx = torch.arange(keys.numel())
    group_start = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), 0).values
    rank = torch.empty_like(idx)
    rank[order] = idx - group_start
    return rank


def _within_caps(cand, n_in, fan_in, fan_in_cap, fan_out, fan_out_cap):
    """Accept candidates in order while their row / column stays within its cap."""
    ok = torch.ones(cand.numel(), dtype=torch.bool)
    if fan_in is not None:
        rows = cand // n_in
        ok &= fan_in[rows] + _rank_within_group(rows) < fan_in_cap
    cand = cand[ok]
    if fan_out is not None:
        cols = cand % n_in
        cand = cand[fan_out[cols] + _rank_within_group(cols) < fan_out_cap]
    return cand
