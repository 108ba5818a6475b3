r"""Sparse LSTM layer with `torch.nn.LSTM` equations and gate order (i, f, g, o).

.. math::
    \begin{align*}
        \text{gates}[t] &= W_{ih} x[t] + W_{hh} h[t-1] + b \qquad (W_{ih}\,[4H, F],\ W_{hh}\,[4H, H],\ b\,[4H])\\
        i, f, g, o &= \sigma, \sigma, \tanh, \sigma \text{ of the four } H\text{-slices} \\
        c[t] &= f \odot c[t-1] + i \odot g, \qquad h[t] = o \odot \tanh(c[t])
    \end{align*}

exactly :class:`spiking_deepr.export.LSTMLayerSpec`. One bias vector :math:`b` replaces torch's
``bias_ih + bias_hh``.

DEEP R budgets (``budget``):

- ``"joint"``: one SparseMatrix [4H, F] for the input and one [4H, H] for the recurrent weights;
  connections move freely between gates (the matrices' K are shared by the four gates).
- ``"per_gate"``: four input matrices [H, F] and four recurrent matrices [H, H], each with its own
  fixed K (every gate keeps the same number of connections).

On the CPU (``fused=True``, the default) the time loop and its backward pass run in the fused
kernels of :mod:`spiking_deepr.layers.lstm_recurrence` (equal to :func:`lstm_step` to rounding);
``fused=False`` and GPU tensors loop over :func:`lstm_step` with autograd, the input product of all
T steps computed before the loop (one sparse product over T·B rows).

Dense matrices (every entry active: ``rewiring.algorithm=dense``): with ``fused=True`` the layer runs
torch's own fused LSTM (``torch.nn.LSTM``'s kernel, cuDNN on a GPU) on the dense views of the
matrices, so a dense reference costs what ``torch.nn.LSTM`` costs; the SparseMatrix objects stay the
trained parameters (checkpoints and export unchanged).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..sparse import SparseMatrix, dense_weight, is_full, sparse_linear
from ..sparse.matrix import csr_structures
from ._common import build_matrix, check_time_major
from .lstm_recurrence import JointMatrix, lstm_recurrence
from .recurrence import fused_available

__all__ = ["LSTMState", "lstm_step", "SparseLSTM", "BUDGETS"]

BUDGETS = ("joint", "per_gate")


class LSTMState(NamedTuple):
    """h [B, H] output of the previous step, c [B, H] cell state."""

    h: torch.Tensor
    c: torch.Tensor


def _product(x: torch.Tensor, matrices: List[SparseMatrix]) -> torch.Tensor:
    """x W^T for one [4H, in] matrix or the row-concatenation of four [H, in] matrices."""
    if len(matrices) == 1:
        return sparse_linear(x, matrices[0])
    return torch.cat([sparse_linear(x, m) for m in matrices], dim=-1)


def lstm_step(gates_x: torch.Tensor, state: LSTMState, w_hh: List[SparseMatrix],
              bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, LSTMState]:
    """One LSTM step. ``gates_x`` = W_ih x[t] [B, 4H] (precomputed); ``w_hh``: [one [4H, H]] or four [H, H]."""
    gates = gates_x + _product(state.h, w_hh)
    if bias is not None:
        gates = gates + bias
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, LSTMState(h, c)


class SparseLSTM(nn.Module):
    """LSTM with sparse DEEP R weight matrices, time-major input [T, B, F] -> output [T, B, H].

    Args:
        input_size, hidden_size: F and H.
        budget: ``"joint"`` or ``"per_gate"`` (see module docstring).
        input_connectivity, recurrent_connectivity: fraction of active entries.
        fan_in_cap: per-matrix cap on connections into one gate unit.
        bias: learnable bias [4H] (initialised like torch: U(-1/sqrt(H), 1/sqrt(H)), forget-gate entries
            then set to ``forget_bias``).
        forget_bias: initial forget-gate bias, e.g. 1.0 (Jozefowicz et al. 2015: the cell starts out
            remembering); None (default): torch's uniform init, which validated better on GunPoint and
            PLAID (README "Default configurations").
        init_std: std of the dense initialisation the matrices replace (default 1/sqrt(H), roughly
            torch's uniform init).
        fused: run the time loop in the fused CPU kernels (`lstm_recurrence`) where possible; False
            always loops over `lstm_step` with autograd (the reference path).
        seed: seeds matrices and bias.
    """

    def __init__(self, input_size: int, hidden_size: int, *, budget: str = "joint",
                 input_connectivity: float = 1.0, recurrent_connectivity: float = 1.0,
                 fan_in_cap: Optional[int] = None, bias: bool = True, init_std: Optional[float] = None,
                 forget_bias: Optional[float] = None,
                 fused: bool = True, seed: int = 0) -> None:
        super().__init__()
        if budget not in BUDGETS:
            raise ValueError(f"SparseLSTM: budget must be one of {BUDGETS}, got {budget!r}")
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"SparseLSTM: sizes must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size, self.budget = int(input_size), int(hidden_size), budget
        self.fused = bool(fused)
        H = self.hidden_size
        std = 1.0 / H ** 0.5 if init_std is None else float(init_std)
        if budget == "joint":
            self.w_ih = nn.ModuleList([build_matrix(4 * H, input_size, None, connectivity=input_connectivity,
                                                    fan_in_cap=fan_in_cap, init_std=std, seed=seed)])
            self.w_hh = nn.ModuleList([build_matrix(4 * H, H, None, connectivity=recurrent_connectivity,
                                                    fan_in_cap=fan_in_cap, init_std=std, seed=seed + 1)])
        else:
            self.w_ih = nn.ModuleList([build_matrix(H, input_size, None, connectivity=input_connectivity,
                                                    fan_in_cap=fan_in_cap, init_std=std, seed=seed + 2 * g)
                                       for g in range(4)])
            self.w_hh = nn.ModuleList([build_matrix(H, H, None, connectivity=recurrent_connectivity,
                                                    fan_in_cap=fan_in_cap, init_std=std, seed=seed + 2 * g + 1)
                                       for g in range(4)])
        if bias:
            gen = torch.Generator().manual_seed(seed)
            b = (torch.rand(4 * H, generator=gen) * 2 - 1) / H ** 0.5
            if forget_bias is not None:
                b[H:2 * H] = forget_bias  # gate order i, f, g, o
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("bias", None)

    def matrices(self) -> dict:
        """{"w_ih": SparseMatrix} / {"w_ih.i": ..., "w_ih.f": ...} etc., stable names."""
        if self.budget == "joint":
            return {"w_ih": self.w_ih[0], "w_hh": self.w_hh[0]}
        out = {}
        for prefix, mats in (("w_ih", self.w_ih), ("w_hh", self.w_hh)):
            for gate, m in zip("ifgo", mats):
                out[f"{prefix}.{gate}"] = m
        return out

    def dense_weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(W_ih [4H, F], W_hh [4H, H]) dense, for inspection and export."""
        return (torch.cat([m.to_dense() for m in self.w_ih]), torch.cat([m.to_dense() for m in self.w_hh]))

    def _joint(self, mats: nn.ModuleList) -> JointMatrix:
        """The joint [4H, n_in] matrix of ``w_ih`` or ``w_hh`` for the fused kernels: the matrix itself,
        or the four per-gate [H, n_in] matrices stacked by rows (gate g's positions shift by g·H·n_in,
        so the concatenated positions stay sorted)."""
        if len(mats) == 1:
            return JointMatrix(mats[0].weight_values(), mats[0].structure())
        H, n_in = self.hidden_size, mats[0].n_in
        values = torch.cat([m.weight_values() for m in mats])
        positions = torch.cat([m.indices + g * H * n_in for g, m in enumerate(mats)])
        return JointMatrix(values, csr_structures(positions, 4 * H, n_in))

    def _dense_forward(self, x: torch.Tensor, state: LSTMState):
        """torch's fused LSTM on the dense weights (one bias: torch's bias_hh is zero)."""
        w_ih = torch.cat([dense_weight(m) for m in self.w_ih])
        w_hh = torch.cat([dense_weight(m) for m in self.w_hh])
        params = [w_ih, w_hh] + ([self.bias, torch.zeros_like(self.bias)] if self.bias is not None else [])
        h, hn, cn = torch._VF.lstm(x, (state.h[None], state.c[None]), params, self.bias is not None, 1, 0.0,
                                   self.training, False, False)
        return h, LSTMState(hn[0], cn[0])

    def initial_state(self, batch_size: int, like: Optional[torch.Tensor] = None) -> LSTMState:
        like = self.w_ih[0].theta if like is None else like
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=like.dtype, device=like.device)
        return LSTMState(zeros, zeros.clone())

    def forward(self, x: torch.Tensor, state: Optional[LSTMState] = None):
        """x [T, B, F] -> (h [T, B, H], final LSTMState)."""
        check_time_major(x, self.input_size, "SparseLSTM")
        T, B, _ = x.shape
        state = self.initial_state(B, x) if state is None else state
        if self.fused and T > 0 and all(is_full(m) for m in (*self.w_ih, *self.w_hh)):
            return self._dense_forward(x, state)
        if self.fused and T > 0 and fused_available(x):
            h, c = lstm_recurrence(x, state.h, state.c, self._joint(self.w_ih), self._joint(self.w_hh), self.bias)
            return h, LSTMState(h[-1], c)
        gates_x = _product(x, list(self.w_ih))  # [T, B, 4H], all steps at once
        if self.bias is not None:
            gates_x = gates_x + self.bias  # folded in once instead of per step
        w_hh = list(self.w_hh)
        outputs = []
        for g in gates_x.unbind(0):
            h, state = lstm_step(g, state, w_hh, None)
            outputs.append(h)
        if T == 0:
            return x.new_zeros(0, B, self.hidden_size), state
        return torch.stack(outputs), state

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, budget={self.budget!r}, "
                f"fused={self.fused}")
