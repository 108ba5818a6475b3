"""Iterative magnitude pruning (Han et al. 2015) on SparseMatrix objects — the pruning baseline.

Training starts dense (or at any connectivity); at the end of each epoch in
[start_epoch, end_epoch] the smallest-|w| entries of every matrix are removed so the active
count follows the cubic schedule of Zhu & Gupta (2017) from the initial K to the target K;
training then continues (fine-tuning) at the target. Pruned connections never come back.
Per-entry optimizer state (Adam moments) follows the removal.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from ..sparse.matrix import SparseMatrix
from ..sparse.sampling import count_admissible


class MagnitudePruning:
    """Prune each of ``matrices`` to its entry of ``connectivities`` (a model's budget split, see
    `SequenceModel.matrix_connectivities`) between ``start_epoch`` and ``end_epoch`` (inclusive)."""

    def __init__(self, matrices: List[SparseMatrix], connectivities: Sequence[float], start_epoch: int,
                 end_epoch: int, optimizer: torch.optim.Optimizer) -> None:
        self.matrices = list(matrices)
        self.start, self.end = int(start_epoch), int(end_epoch)
        self.optimizer = optimizer
        self.initial = [m.nnz for m in self.matrices]
        if len(connectivities) != len(self.matrices):
            raise ValueError(f"MagnitudePruning: {len(connectivities)} connectivities for {len(self.matrices)} matrices")
        self.target = [max(1, round(p * count_admissible(m.n_out, m.n_in, m.exclude_diagonal)))
                       for p, m in zip(connectivities, self.matrices)]

    def budget(self, i: int, epoch: int) -> int:
        """Active entries matrix i keeps after ``epoch`` (cubic ramp)."""
        if epoch < self.start:
            return self.initial[i]
        frac = min(1.0, (epoch - self.start + 1) / (self.end - self.start + 1))
        k0, k1 = self.initial[i], self.target[i]
        return int(round(k1 + (k0 - k1) * (1.0 - frac) ** 3))

    @torch.no_grad()
    def end_of_epoch(self, epoch: int) -> List[int]:
        """Prune after ``epoch``; returns the number removed per matrix."""
        removed = []
        for i, m in enumerate(self.matrices):
            k = min(m.nnz, self.budget(i, epoch))
            if k == m.nnz:
                removed.append(0)
                continue
            removed.append(m.nnz - k)
            keep = torch.zeros(m.nnz, dtype=torch.bool, device=m.indices.device)
            keep[torch.topk(m.weight_values().abs(), k).indices] = True
            m.rewire(keep, torch.empty(0, dtype=torch.int64)).carry(self.optimizer.state[m.theta])
        return removed

    def state_dict(self) -> Dict[str, list]:
        return {"initial": list(self.initial), "target": list(self.target)}

    def load_state_dict(self, sd: Dict[str, list]) -> None:
        self.initial, self.target = list(sd["initial"]), list(sd["target"])
