"""Core-aware connectivity: per-core hardware limits as a placement rule of the exact-K rewiring core.

A neuromorphic chip (Loihi) stores each neuron's incoming synapses on the core the neuron lives on.
With a fixed neuron-to-core assignment, three per-core limits become constraints on which positions a
matrix may activate:

* **neurons per core** — met by the assignment itself;
* **input axons per core** — every distinct presynaptic source with at least one synapse onto a
  core needs one input axon there;
* **synaptic memory per core** — the synapses of one source onto one core form one list costing
  ``row_bits(k)`` bits for k synapses (the profile's accounting: group headers, word rounding).

Fixed assignment (documented, deterministic): the cores given to the network are split between
populations (each layer, then the readout; every population gets its own cores, as `sdr convert`'s
mapper does) by :func:`allocate_cores`; inside a population of n neurons on c cores, neuron j lives on
core ``floor(j * c / n)`` (contiguous, near-equal blocks).

Why the trained network then maps onto ≤ N cores under `lava_backend.hardware.map_network`: that
mapper packs each population's neurons greedily in index order into contiguous runs. All three limits
are *hereditary* (a subset of a feasible core is feasible: fewer neurons, sources and synapses per
list), and for contiguous runs with hereditary limits greedy packing is optimal: if greedy's k-th core
started at or after block k's first neuron, it can hold at least up to block k's last neuron (that
stretch is a subset of block k), so greedy's k-th core ends at or after block k's end. Hence greedy
uses ≤ c cores per population whenever every block fits one core, which this rule keeps true.
Output axons (one per distinct destination core of a neuron) are not constrained: a core holds at
most ``neurons_per_core`` neurons, each with at most N destination cores, so they stay within the
limit while ``neurons_per_core * N <= output_axons_per_core`` (N <= 4 on the Loihi profiles); above
that the mapper still checks them.

Acceptance is sequential in the offered (random) order, so initialisation and regrowth stay uniform
over the positions admissible at each moment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numba as nb
import numpy as np
import torch

from ..sparse.matrix import SparseMatrix


@dataclass(frozen=True)
class CoreLimits:
    """Per-core limits of a hardware profile.

    neurons, input_axons, synapse_bits: per-core capacities.
    row_bits: int64 [neurons + 1], bits of a synapse list of k = 0..neurons synapses (one source onto
        one core has at most one synapse per neuron of the core).
    """

    neurons: int
    input_axons: int
    synapse_bits: int
    row_bits: np.ndarray


def allocate_cores(sizes: Sequence[int], budgets: Sequence[int], neurons_per_core: int,
                   max_cores: int) -> List[int]:
    """Cores per population: each gets ``ceil(n / neurons_per_core)``; the cores left over go to the
    populations in proportion to their connection budgets (largest remainder, ties to the earlier).

    sizes: neurons per population; budgets: active connections into each population.
    Raises ValueError if ``max_cores`` is below the neuron-count minimum."""
    need = [-(-int(n) // neurons_per_core) for n in sizes]
    if max_cores < sum(need):
        raise ValueError(f"max_cores={max_cores} is below the {sum(need)} cores the neuron counts "
                         f"{list(sizes)} need at {neurons_per_core} neurons per core")
    spare = max_cores - sum(need)
    total = float(sum(budgets)) or 1.0
    share = [spare * b / total for b in budgets]
    extra = [int(s) for s in share]
    order = sorted(range(len(sizes)), key=lambda i: (-(share[i] - extra[i]), i))
    for i in order[:spare - sum(extra)]:
        extra[i] += 1
    # a population never gets more cores than neurons
    return [min(int(n), a + e) for n, a, e in zip(sizes, need, extra)]


class CoreBudget:
    """The placement rule of one population: neurons on fixed cores, limits shared by all matrices
    that feed it (e.g. a layer's input and recurrent matrix); :meth:`place` puts them under it.

    Args:
        name: population name (for messages). n_neurons: its size (the matrices' n_out).
        n_cores: cores it may use. limits: the profile's :class:`CoreLimits`.
    """

    def __init__(self, name: str, n_neurons: int, n_cores: int, limits: CoreLimits) -> None:
        if not 1 <= n_cores <= n_neurons:
            raise ValueError(f"CoreBudget {name}: n_cores must be in [1, {n_neurons}], got {n_cores}")
        self.name, self.n_neurons, self.n_cores, self.limits = name, int(n_neurons), int(n_cores), limits
        self.core_of = (np.arange(self.n_neurons, dtype=np.int64) * self.n_cores) // self.n_neurons
        block = int(np.bincount(self.core_of).max())
        if block > limits.neurons:
            raise ValueError(f"CoreBudget {name}: {self.n_neurons} neurons on {n_cores} cores put {block} on "
                             f"one core, more than the {limits.neurons} a core holds")
        self.members: List[SparseMatrix] = []  # matrices placed under this rule, in order

    def place(self, mats: Sequence[SparseMatrix], generator: torch.Generator, rounds: int = 16) -> None:
        """Redraw the positions of ``mats`` under this rule and keep it as their placement rule.

        The matrices are filled together, a 1/``rounds`` share of each budget K per round, so the
        input axons of a core go to the matrices in proportion to their budgets (filling one matrix
        first would let it take every axon). Magnitudes are kept; signs follow the positions.
        Raises ValueError when some budget K does not fit."""
        thetas = [m.theta.data.clone() for m in mats]
        self.members = list(mats)
        for m in mats:
            m.placement = self
            m.rewire(torch.zeros(m.nnz, dtype=torch.bool, device=m.indices.device), m.indices[:0])
        for r in range(rounds):
            for m, theta in zip(mats, thetas):
                n = -(-theta.numel() * (r + 1) // rounds) - m.nnz
                if n > 0:
                    m.rewire(torch.ones(m.nnz, dtype=torch.bool, device=m.indices.device),
                             m.sample_dormant(n, generator, partial=True))
        placed = sum(m.nnz for m in mats)
        if placed < sum(t.numel() for t in thetas):
            raise ValueError(
                f"{self.name}: only {placed} of {sum(t.numel() for t in thetas)} connections fit its "
                f"{self.n_cores} core(s) ({self.limits.input_axons} input axons, {self.limits.synapse_bits} "
                f"synapse bits each); lower the connectivity or raise hardware.max_cores")
        for m, theta in zip(mats, thetas):
            m.set_active(m.indices, theta)

    def _counts(self, m: SparseMatrix, positions: torch.Tensor) -> np.ndarray:
        """Synapses per (source, core): int64 [n_in, n_cores]."""
        pos = positions.cpu().numpy()
        counts = np.zeros((m.n_in, self.n_cores), dtype=np.int64)
        np.add.at(counts, (pos % m.n_in, self.core_of[pos // m.n_in]), 1)
        return counts

    def usage(self, exclude: SparseMatrix = None) -> Tuple[np.ndarray, np.ndarray]:
        """(input axons [n_cores], synapse bits [n_cores]) used by the members' current positions."""
        axons = np.zeros(self.n_cores, dtype=np.int64)
        bits = np.zeros(self.n_cores, dtype=np.int64)
        for m in self.members:
            if m is not exclude:
                counts = self._counts(m, m.indices)
                axons += (counts > 0).sum(0)
                bits += self.limits.row_bits[counts].sum(0)
        return axons, bits

    def start(self, matrix: SparseMatrix, active: torch.Tensor) -> "CoreAdmission":
        if matrix.n_out != self.n_neurons:
            raise ValueError(f"CoreBudget {self.name}: matrix has {matrix.n_out} rows, the population "
                             f"{self.n_neurons} neurons")
        if not any(m is matrix for m in self.members):
            raise ValueError(f"CoreBudget {self.name}: the matrix was not placed with this budget")
        axons, bits = self.usage(exclude=matrix)
        counts = self._counts(matrix, active)
        axons += (counts > 0).sum(0)
        bits += self.limits.row_bits[counts].sum(0)
        return CoreAdmission(self, matrix.n_in, counts, axons, bits)


class CoreAdmission:
    """Usage of one population's cores while new positions of one matrix are accepted."""

    def __init__(self, budget: CoreBudget, n_in: int, counts: np.ndarray, axons: np.ndarray,
                 bits: np.ndarray) -> None:
        self.budget, self.n_in = budget, n_in
        self.counts, self.axons, self.bits = counts, axons, bits

    def admit(self, candidates: torch.Tensor, need: int) -> torch.Tensor:
        cand = candidates.cpu().numpy().astype(np.int64, copy=False)
        ok = np.zeros(cand.size, dtype=np.bool_)
        lim = self.budget.limits
        _admit(cand, int(need), self.n_in, self.budget.core_of, self.counts, self.axons, self.bits,
               lim.input_axons, lim.synapse_bits, lim.row_bits, ok)
        return candidates[torch.from_numpy(ok)]


@nb.njit(cache=True, nogil=True)
def _admit(cand, need, n_in, core_of, counts, axons, bits, max_axons, max_bits, row_bits, ok):
    """Sequential acceptance: a candidate is taken if its core stays within both limits."""
    taken = 0
    for q in range(cand.shape[0]):
        if taken >= need:
            break
        src = cand[q] % n_in
        core = core_of[cand[q] // n_in]
        k = counts[src, core]
        d_axons = 1 if k == 0 else 0
        d_bits = row_bits[k + 1] - row_bits[k]
        if axons[core] + d_axons <= max_axons and bits[core] + d_bits <= max_bits:
            counts[src, core] = k + 1
            axons[core] += d_axons
            bits[core] += d_bits
            ok[q] = True
            taken += 1
    return taken


def constrain_to_cores(populations: Sequence[Tuple[str, int, Sequence[SparseMatrix]]], limits: CoreLimits,
                       max_cores: int, seed: int = 0) -> List[CoreBudget]:
    """Give each population (name, neurons, matrices feeding it) its cores (:func:`allocate_cores`)
    and redraw every matrix's positions under its :class:`CoreBudget` (magnitudes kept).

    Raises ValueError naming the population when its budget K cannot be placed within its cores."""
    sizes = [n for _, n, _ in populations]
    budgets = [sum(m.nnz for m in mats) for _, _, mats in populations]
    cores = allocate_cores(sizes, budgets, limits.neurons, max_cores)
    gen = torch.Generator().manual_seed(int(seed) * 7 + 3)
    out = []
    for (name, n, mats), c in zip(populations, cores):
        budget = CoreBudget(name, n, c, limits)
        budget.place(mats, gen)
        out.append(budget)
    return out
