"""The sparse connectivity type: one DEEP R matrix [n_out, n_in] that stores only its K active entries.

Every potential connection (i, j) has a sign fixed for ever and, while active, a magnitude
theta >= 0; its weight is ``w = sign * theta``. The matrix holds

- ``indices``: int64 [K] linear positions ``i * n_in + j`` of the active entries, sorted, unique;
- ``theta``:   Parameter [K] magnitudes of the active entries (the only trained tensor);
- ``sign``:    float [K] signs of the active entries, derived from the positions.

Signs of dormant positions are not stored: they are a deterministic function of the position
(a seeded hash, or the presynaptic neuron's sign under Dale's law), so a regrown connection gets
the same sign it had before. Memory is O(K + n_out + n_in); no N x N tensor is ever built on the
DEEP R path.
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional

import torch
from torch import nn

from .sampling import PlacementRule, admit_in_order, count_admissible, position_sign, sample_positions


class CSRStructure(NamedTuple):
    """Index structures of one connectivity pattern, built once per rewiring.

    crow [n_out+1], cols [K] (CSR of W); crow_t [n_in+1], rows_t [K], perm_t [K] (CSR of Wᵀ:
    entry q of Wᵀ is entry perm_t[q] of W). All int64 on the matrix's device.
    """

    crow: torch.Tensor
    cols: torch.Tensor
    crow_t: torch.Tensor
    rows_t: torch.Tensor
    perm_t: torch.Tensor


class Rewiring(NamedTuple):
    """How one rewiring moved the entries: slot s of the new active set [K'] holds old entry
    ``source[s]``, or a new entry where ``source[s] == -1`` (slots ``new_slots``). ``k_old`` /
    ``k_new``: sizes."""

    source: torch.Tensor
    new_slots: torch.Tensor
    k_old: int
    k_new: int

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """Carry a per-entry tensor [K] over to the new active set [K']; new entries get 0."""
        carry = carry_entries if values.device.type == "cpu" else carry_entries_torch
        return carry(values, self.source, self.new_slots)

    def carry(self, state: dict) -> None:
        """Apply to every per-entry tensor of an optimizer's state for this matrix, in place."""
        for key, value in list(state.items()):
            if torch.is_tensor(value) and value.shape == (self.k_old,):
                state[key] = self.apply(value)


class SparseMatrix(nn.Module):
    """A DEEP R sparse matrix of shape [n_out, n_in] with exactly ``nnz`` active entries.

    Args:
        n_out, n_in: matrix shape (postsynaptic, presynaptic neurons).
        connectivity: fraction p of the admissible entries that are active (K = round(p * admissible));
            give either this or ``nnz``.
        nnz: the budget K directly.
        exclude_diagonal: the diagonal is never a candidate (self-connections of recurrent matrices).
        fan_in_cap: at most this many connections into any postsynaptic neuron (row), in
            initialisation and every regrowth (hardware limit, e.g. Loihi fan-in).
        fan_out_cap: at most this many connections out of any presynaptic neuron (column).
        presynaptic_sign: optional float [n_in] of +1/-1: Dale's law, the sign of every connection is
            the sign of its presynaptic neuron. Otherwise signs are fair coin flips per position.
        init_std: standard deviation of the *dense* initialisation this matrix replaces
            (default 1/sqrt(n_in)). Active magnitudes are |N(0, init_std^2 / p)|, so the variance of
            a neuron's summed input equals the dense network's.
        seed: seeds the positions, magnitudes and the sign hash (reproducible construction).

    ``placement`` (None, or a :class:`~spiking_deepr.sparse.sampling.PlacementRule` assigned after
    construction, e.g. by `spiking_deepr.rewiring.cores`) is an extra admissibility rule that every
    new position obeys.
    """

    placement: Optional[PlacementRule] = None

    def __init__(
        self,
        n_out: int,
        n_in: int,
        *,
        connectivity: Optional[float] = None,
        nnz: Optional[int] = None,
        exclude_diagonal: bool = False,
        fan_in_cap: Optional[int] = None,
        fan_out_cap: Optional[int] = None,
        presynaptic_sign: Optional[torch.Tensor] = None,
        init_std: Optional[float] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_out <= 0 or n_in <= 0:
            raise ValueError(f"SparseMatrix: shape must be positive, got [{n_out}, {n_in}]")
        self.n_out, self.n_in = int(n_out), int(n_in)
        self.exclude_diagonal = bool(exclude_diagonal)
        admissible = count_admissible(self.n_out, self.n_in, self.exclude_diagonal)
        if (connectivity is None) == (nnz is None):
            raise ValueError("SparseMatrix: give exactly one of connectivity or nnz")
        if connectivity is not None:
            if not 0.0 < connectivity <= 1.0:
                raise ValueError(f"SparseMatrix: connectivity must be in (0, 1], got {connectivity}")
            nnz = max(1, round(connectivity * admissible))
        nnz = int(nnz)
        if not 0 < nnz <= admissible:
            raise ValueError(
                f"SparseMatrix: nnz={nnz} active entries requested but a {n_out}x{n_in} matrix "
                f"(exclude_diagonal={exclude_diagonal}) has only {admissible} admissible entries"
            )
        for name, cap, lines, per in (("fan_in_cap", fan_in_cap, self.n_out, self.n_in),
                                      ("fan_out_cap", fan_out_cap, self.n_in, self.n_out)):
            if cap is None:
                continue
            if cap <= 0:
                raise ValueError(f"SparseMatrix: {name} must be positive, got {cap}")
            if nnz > lines * min(cap, per):
                raise ValueError(
                    f"SparseMatrix: {name}={cap} allows at most {lines * min(cap, per)} connections "
                    f"in a {n_out}x{n_in} matrix, but nnz={nnz} were requested"
                )
        self.fan_in_cap = None if fan_in_cap is None else int(fan_in_cap)
        self.fan_out_cap = None if fan_out_cap is None else int(fan_out_cap)
        self.sign_seed = int(seed) * 7919 + 17
        self.budget = nnz  # the K this matrix was built with (the global-budget split uses it)
        if presynaptic_sign is not None:
            presynaptic_sign = torch.as_tensor(presynaptic_sign, dtype=torch.float32)
            if presynaptic_sign.shape != (self.n_in,) or not bool(((presynaptic_sign == 1) | (presynaptic_sign == -1)).all()):
                raise ValueError(
                    f"SparseMatrix: presynaptic_sign must be +1/-1 of shape [{self.n_in}], "
                    f"got shape {tuple(presynaptic_sign.shape)}"
                )
        self.register_buffer("presynaptic_sign", presynaptic_sign)

        gen = torch.Generator().manual_seed(int(seed))
        indices = sample_positions(
            nnz, self.n_out, self.n_in,
            active=torch.empty(0, dtype=torch.int64),
            exclude_diagonal=self.exclude_diagonal,
            fan_in=torch.zeros(self.n_out, dtype=torch.int64), fan_in_cap=self.fan_in_cap,
            fan_out=torch.zeros(self.n_in, dtype=torch.int64), fan_out_cap=self.fan_out_cap,
            generator=gen,
        )
        std = (1.0 / math.sqrt(self.n_in) if init_std is None else float(init_std)) / math.sqrt(self.built_density)
        theta = torch.randn(nnz, generator=gen).abs_().mul_(std)
        self.register_buffer("indices", indices)
        self.theta = nn.Parameter(theta)
        self.register_buffer("sign", self.signs_at(indices))
        self._structure: Optional[CSRStructure] = None
        self.quantized_values: Optional[torch.Tensor] = None   # [K], see weight_values

    # ----------------------------------------------------------------------------- structure
    @property
    def shape(self):
        return (self.n_out, self.n_in)

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def rows(self) -> torch.Tensor:
        return torch.div(self.indices, self.n_in, rounding_mode="floor")

    @property
    def cols(self) -> torch.Tensor:
        return self.indices % self.n_in

    def signs_at(self, positions: torch.Tensor) -> torch.Tensor:
        """The fixed sign (float32 +1/-1) of arbitrary linear positions, int64 [M] -> [M]."""
        if self.presynaptic_sign is not None:
            return self.presynaptic_sign[positions % self.n_in]
        return position_sign(positions, self.sign_seed).to(positions.device)

    def weight_values(self) -> torch.Tensor:
        """Effective weights of the active entries, w = sign * theta, float [K] (differentiable).

        With ``quantized_values`` set (quantisation-aware training) the forward value is that
        tensor and the gradient passes straight through to theta (straight-through estimator)."""
        w = self.sign * self.theta
        q = self.quantized_values
        if q is not None:
            if q.shape != w.shape:
                raise RuntimeError(f"SparseMatrix: quantized_values has shape {tuple(q.shape)}, "
                                   f"the active set {tuple(w.shape)} (rewired since it was set?)")
            w = w + (q.to(w.dtype) - w).detach()
        return w

    def structure(self) -> CSRStructure:
        """CSR (and transposed CSR) index structures of the current active set (cached)."""
        if self._structure is None or self._structure.crow.device != self.indices.device:  # e.g. after .to()
            build = csr_structures if self.indices.device.type == "cpu" else csr_structures_torch
            self._structure = build(self.indices, self.n_out, self.n_in)
        return self._structure

    def fan_in(self) -> torch.Tensor:
        """Active connections per postsynaptic neuron, int64 [n_out]."""
        return torch.bincount(self.rows, minlength=self.n_out)

    def fan_out(self) -> torch.Tensor:
        """Active connections per presynaptic neuron, int64 [n_in]."""
        return torch.bincount(self.cols, minlength=self.n_in)

    # ----------------------------------------------------------------------------- rewiring
    @torch.no_grad()
    def set_active(self, indices: torch.Tensor, theta: torch.Tensor, sign: Optional[torch.Tensor] = None) -> None:
        """Replace the active set (sorted unique int64 [K']) and its magnitudes (float [K']).

        The Parameter object is kept (its ``.data`` is swapped), so optimizers keep pointing at it;
        ``.grad`` is dropped because its entries referred to the old positions. ``sign`` may be
        passed when already known (it must equal ``signs_at(indices)``).
        """
        self.indices = indices
        dtype = self.theta.dtype
        if theta.numel() != self.theta.numel():
            # autograd caches theta's gradient accumulator with its old shape while any earlier graph
            # is alive; assigning data of another dtype is PyTorch's documented trigger to drop it.
            other = torch.float64 if dtype != torch.float64 else torch.float32
            self.theta.data = torch.empty(0, dtype=other, device=self.theta.device)
        self.theta.data = theta.to(dtype)
        self.theta.grad = None
        self.sign = (self.signs_at(indices) if sign is None else sign).to(dtype)
        self._structure = None

    def _admissibility(self, active: torch.Tensor) -> dict:
        """Keyword arguments of `sample_positions` / `admit_in_order` when ``active`` stay taken."""
        return dict(
            active=active,
            exclude_diagonal=self.exclude_diagonal,
            fan_in=torch.bincount(torch.div(active, self.n_in, rounding_mode="floor"), minlength=self.n_out)
            if self.fan_in_cap is not None else None,
            fan_in_cap=self.fan_in_cap,
            fan_out=torch.bincount(active % self.n_in, minlength=self.n_in) if self.fan_out_cap is not None else None,
            fan_out_cap=self.fan_out_cap,
            admission=None if self.placement is None else self.placement.start(self, active),
        )

    @torch.no_grad()
    def sample_dormant(self, count: int, generator: Optional[torch.Generator] = None,
                       active: Optional[torch.Tensor] = None, partial: bool = False) -> torch.Tensor:
        """Positions (sorted int64 [count]) for ``count`` new connections among the dormant ones.

        Uniform over dormant admissible positions within the fan-in/fan-out caps and the placement
        rule. ``active`` (sorted int64 positions, default: the current active set) are the positions
        that stay taken; all others count as dormant (DEEP R draws among all dormant entries,
        just-removed ones included). ``partial``: return fewer when no more are admissible (only a
        placement rule can make that happen after a removal) instead of raising.
        Does not modify the matrix."""
        active = (self.indices if active is None else active).cpu()
        return sample_positions(count, self.n_out, self.n_in, generator=generator, partial=partial,
                                **self._admissibility(active)).to(self.indices.device)

    @torch.no_grad()
    def admit(self, candidates: torch.Tensor, need: int, active: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The first ``need`` admissible dormant positions among ``candidates`` (int64, in preference
        order, e.g. by decreasing gradient), sorted; same admissibility as `sample_dormant`."""
        active = (self.indices if active is None else active).cpu()
        chosen = admit_in_order(candidates.cpu(), need, self.n_out, self.n_in, **self._admissibility(active))
        return chosen.sort().values.to(self.indices.device)

    @torch.no_grad()
    def rewire(self, keep: torch.Tensor, new: torch.Tensor) -> "Rewiring":
        """Keep the entries where ``keep`` (bool [K]) is set and activate ``new`` positions with theta = 0.

        ``new`` must be sorted, dormant and admissible (as `sample_dormant` returns). The result stays
        sorted without a full sort (a merge). Returns the mapping that per-entry optimizer state must
        follow (see `Rewiring.apply`)."""
        if keep.dtype != torch.bool or keep.shape != (self.nnz,):
            raise ValueError(f"rewire: keep must be a bool mask [{self.nnz}], got {keep.dtype} "
                             f"{tuple(keep.shape)}")
        merge = merge_active if self.indices.device.type == "cpu" else merge_active_torch
        indices, source, new_slots = merge(self.indices, keep, new)
        moves = Rewiring(source, new_slots, self.nnz, indices.numel())
        sign = moves.apply(self.sign)
        sign[new_slots] = self.signs_at(new).to(sign.dtype)
        self.set_active(indices, moves.apply(self.theta.data), sign)
        return moves

    def dormant_capacity(self) -> int:
        """How many more connections the caps and shape allow (an upper bound for ``grow``)."""
        free = count_admissible(self.n_out, self.n_in, self.exclude_diagonal) - self.nnz
        if self.fan_in_cap is not None:
            free = min(free, int((self.fan_in_cap - self.fan_in()).clamp(min=0).sum()))
        if self.fan_out_cap is not None:
            free = min(free, int((self.fan_out_cap - self.fan_out()).clamp(min=0).sum()))
        return free

    def check_invariants(self) -> None:
        """Raise AssertionError unless indices are sorted, unique, in range, admissible, capped,
        theta is non-negative and signs match the positions. O(K)."""
        idx = self.indices
        assert idx.dtype == torch.int64 and idx.dim() == 1, "indices must be int64 [K]"
        assert self.theta.shape == idx.shape == self.sign.shape, "theta/sign/indices lengths differ"
        if idx.numel():
            assert bool((idx[1:] > idx[:-1]).all()), "indices not strictly increasing"
            assert 0 <= int(idx[0]) and int(idx[-1]) < self.n_out * self.n_in, "index out of range"
        if self.exclude_diagonal:
            assert not bool((self.rows == self.cols).any()), "diagonal entry active"
        if self.fan_in_cap is not None:
            assert int(self.fan_in().max()) <= self.fan_in_cap, "fan-in cap exceeded"
        if self.fan_out_cap is not None:
            assert int(self.fan_out().max()) <= self.fan_out_cap, "fan-out cap exceeded"
        assert bool((self.theta >= 0).all()), "negative theta on an active entry"
        assert torch.equal(self.sign, self.signs_at(idx).to(self.sign.dtype)), "sign changed"

    # ----------------------------------------------------------------------------- inspection
    def to_dense(self) -> torch.Tensor:
        """Dense weight matrix [n_out, n_in] (for inspection and tests only: O(N^2) memory)."""
        dense = torch.zeros(self.n_out * self.n_in, dtype=self.theta.dtype, device=self.theta.device)
        dense[self.indices] = self.weight_values().detach()
        return dense.view(self.n_out, self.n_in)

    def statistics(self) -> Dict[str, float]:
        """active, possible, connectivity, max fan-in, max fan-out, caps."""
        possible = count_admissible(self.n_out, self.n_in, self.exclude_diagonal)
        return {
            "active": self.nnz,
            "possible": possible,
            "connectivity": self.nnz / possible,
            "max_fan_in": int(self.fan_in().max()) if self.nnz else 0,
            "max_fan_out": int(self.fan_out().max()) if self.nnz else 0,
            "fan_in_cap": self.fan_in_cap,
            "fan_out_cap": self.fan_out_cap,
        }

    def extra_repr(self) -> str:
        return (f"n_out={self.n_out}, n_in={self.n_in}, nnz={self.nnz}, "
                f"connectivity={self.nnz / (self.n_out * self.n_in):.4f}, fan_in_cap={self.fan_in_cap}")

    @property
    def built_density(self) -> float:
        """p = K / (n_out * n_in) for the K it was built with: its initial magnitudes have std
        init_std / sqrt(p)."""
        return self.budget / (self.n_out * self.n_in)

    # ----------------------------------------------------------------------------- loading
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Under a global budget K varies per matrix: adopt the checkpoint's K before loading.
        key = prefix + "indices"
        if key in state_dict and prefix + "theta" in state_dict:
            idx = state_dict[key]
            theta = state_dict[prefix + "theta"]
            problem = _validate_loaded(idx, theta, self.n_out, self.n_in)
            if problem:
                error_msgs.append(f"{key}: {problem}")
                return
            self.indices = torch.empty_like(idx, device=self.indices.device)
            self.theta.data = torch.empty_like(theta, dtype=self.theta.dtype, device=self.theta.device)
            self.sign = torch.empty(idx.numel(), dtype=self.theta.dtype, device=self.theta.device)
            self._structure = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


def _validate_loaded(idx: torch.Tensor, theta: torch.Tensor, n_out: int, n_in: int) -> str:
    if idx.dtype != torch.int64 or idx.dim() != 1:
        return f"expected int64 [K] positions, found {idx.dtype} {tuple(idx.shape)}"
    if theta.shape != idx.shape:
        return f"theta has shape {tuple(theta.shape)} but there are {idx.numel()} positions"
    if idx.numel() and (bool((idx[1:] <= idx[:-1]).any()) or int(idx[0]) < 0 or int(idx[-1]) >= n_out * n_in):
        return f"positions must be sorted, unique and in [0, {n_out * n_in}) for a {n_out}x{n_in} matrix"
    return ""


# ----------------------------------------------------------------------------- index maintenance
# CPU: one numba pass each (`_numba_index`); other devices: the torch formulation (sorts and sorted
# searches). Both are tested to agree.

def merge_active(indices: torch.Tensor, keep: torch.Tensor, new: torch.Tensor):
    """Sorted union of ``indices[keep]`` and the sorted ``new`` positions (CPU).

    Returns (positions [K'], source [K'] = old entry number or -1 for new, new_slots [len(new)])."""
    from . import _numba_index as ni

    k_new = int(torch.count_nonzero(keep)) + new.numel()
    out, source = torch.empty(k_new, dtype=torch.int64), torch.empty(k_new, dtype=torch.int64)
    new_slots = torch.empty(new.numel(), dtype=torch.int64)
    ni.merge(indices.numpy(), keep.numpy(), new.contiguous().numpy(), out.numpy(), source.numpy(), new_slots.numpy())
    return out, source, new_slots


def merge_active_torch(indices: torch.Tensor, keep: torch.Tensor, new: torch.Tensor):
    """`merge_active` with torch operations (any device)."""
    src = torch.nonzero(keep).squeeze(1)
    survivors = indices[src]
    dev, n_new = indices.device, new.numel()
    # slot of a survivor = its rank + the number of new positions below it (both lists sorted)
    dst = torch.arange(survivors.numel(), device=dev) + torch.searchsorted(new, survivors)
    new_slots = torch.searchsorted(survivors, new) + torch.arange(n_new, device=dev)
    k_new = survivors.numel() + n_new
    source = torch.full((k_new,), -1, dtype=torch.int64, device=dev)
    source[dst] = src
    out = torch.empty(k_new, dtype=torch.int64, device=dev)
    out[dst], out[new_slots] = survivors, new
    return out, source, new_slots


def carry_entries(values: torch.Tensor, source: torch.Tensor, new_slots: torch.Tensor) -> torch.Tensor:
    """out[s] = values[source[s]], 0 in the new slots (CPU)."""
    from . import _numba_index as ni

    out = torch.empty(source.numel(), dtype=values.dtype)
    ni.carry(values.detach().contiguous().numpy(), source.numpy(), out.numpy())
    return out


def carry_entries_torch(values: torch.Tensor, source: torch.Tensor, new_slots: torch.Tensor) -> torch.Tensor:
    """`carry_entries` with torch operations (any device)."""
    out = torch.zeros(source.numel(), dtype=values.dtype, device=values.device)
    kept = source >= 0
    out[kept] = values.detach()[source[kept]]
    return out


def csr_structures(indices: torch.Tensor, n_out: int, n_in: int) -> CSRStructure:
    """CSR of W and Wᵀ from sorted linear positions, by one counting-sort pass (CPU)."""
    from . import _numba_index as ni

    K = indices.numel()
    crow, crow_t = torch.empty(n_out + 1, dtype=torch.int64), torch.empty(n_in + 1, dtype=torch.int64)
    cols, rows_t, perm_t = (torch.empty(K, dtype=torch.int64) for _ in range(3))
    ni.csr_structures(indices.numpy(), n_in, crow.numpy(), cols.numpy(), crow_t.numpy(), rows_t.numpy(),
                      perm_t.numpy())
    return CSRStructure(crow, cols, crow_t, rows_t, perm_t)


def csr_structures_torch(indices: torch.Tensor, n_out: int, n_in: int) -> CSRStructure:
    """`csr_structures` with torch operations (any device)."""
    rows, cols = torch.div(indices, n_in, rounding_mode="floor"), indices % n_in
    crow = torch.zeros(n_out + 1, dtype=torch.int64, device=indices.device)
    crow[1:] = torch.bincount(rows, minlength=n_out).cumsum(0)
    crow_t = torch.zeros(n_in + 1, dtype=torch.int64, device=indices.device)
    crow_t[1:] = torch.bincount(cols, minlength=n_in).cumsum(0)
    perm_t = torch.sort(cols * n_out + rows).indices
    return CSRStructure(crow, cols.contiguous(), crow_t, rows[perm_t].contiguous(), perm_t)
