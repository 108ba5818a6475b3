"""How one connection budget is split over several sparse matrices.

``uniform``: every matrix gets the same connectivity p. ``erdos_renyi``: the Erdős–Rényi allocation of
SET (Mocanu et al. 2018, Nat. Commun. 9:2383) as used by RigL (Evci et al. 2020, ICML): a matrix of
shape [n_out, n_in] gets connectivity eps * (n_out + n_in) / (n_out * n_in), with one eps for all
matrices chosen so that the total number of active entries is the uniform one, p * sum(admissible);
a matrix whose share would exceed 1 is dense and eps is solved again over the others. Small matrices
(e.g. the input matrix of a layer fed by a few features) so get a larger fraction than large ones.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

ALLOCATIONS = ("uniform", "erdos_renyi")


def allocate(shapes: Sequence[Tuple[int, int, int]], p: float, allocation: str = "uniform") -> List[float]:
    """Connectivity per matrix for a total budget of ``p`` times their admissible entries.

    shapes: per matrix (n_out, n_in, admissible entries — n_out * n_in, or fewer, e.g. without the
    diagonal). Returns one connectivity in (0, 1] per matrix, in order."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must lie in (0, 1], got {p}")
    if allocation == "uniform" or p == 1.0:
        return [p] * len(shapes)
    scale = [(n_out + n_in) / (n_out * n_in) for n_out, n_in, _ in shapes]
    size = [a for _, _, a in shapes]
    target = p * sum(size)
    dense: set = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        eps = (target - sum(size[i] for i in dense)) / sum(scale[i] * size[i] for i in free)
        over = {i for i in free if eps * scale[i] >= 1.0}
        if not over:
            return [1.0 if i in dense else eps * scale[i] for i in range(len(shapes))]
        dense |= over
