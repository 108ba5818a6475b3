r"""The whole-sequence sparse LSTM recurrence as one autograd function (fused CPU path).

:func:`~spiking_deepr.layers.lstm.lstm_step` runs one step as a sparse product and ~10 torch
operations, and autograd records them all for every step. :func:`lstm_recurrence` runs the T
steps in one numba kernel (`_lstm_kernels.forward`) and backpropagates through time by hand
(`_lstm_kernels.backward`); with :math:`a_t = (i, f, g, o)` the gate activations,
:math:`\tau_t = \tanh(c_t)` and :math:`\bar h_t` the gradient from the loss:

.. math::
    \begin{align*}
        \delta h_t &= \bar h_t + W_{hh}^\top \delta_{t+1}, &
        \delta c_t &= \delta c_{t+1}^{\text{carry}} + \delta h_t\, o\, (1 - \tau_t^2) \\
        \delta_t &= \big(\delta c_t\, g\, i (1-i),\ \delta c_t\, c_{t-1} f (1-f),\
            \delta c_t\, i\, (1-g^2),\ \delta h_t\, \tau_t\, o (1-o)\big), &
        \delta c_t^{\text{carry}} &= \delta c_t\, f \\
        \partial E/\partial w_k &= \textstyle\sum_t \sum_b \delta_t[b, \text{row}_k]\,
            h_{t-1}[b, \text{col}_k], &
        \partial E/\partial (W_{ih} x_t + b) &= \delta_t
    \end{align*}

The input projection :math:`W_{ih} x + b` of all T steps is computed before (one sparse product
over T·B rows, ordinary autograd), so its gradient — the sparse input gradient and the SDDMM of
:math:`W_{ih}` over T·B rows — also runs once per sequence. The weight gradient of
:math:`W_{hh}` is accumulated per step next to :math:`W_{hh}^\top\delta_t` (the same pass over the
synapses, :math:`\delta_t` still in cache). No per-step autograd graph is built.

Equal to :func:`lstm_step` under autograd to rounding (the nonlinearities are numba's libm
``exp``/``tanh``, not torch's vectorised ones): tested to 1e-5 (float32) / 1e-12 (float64)
relative, outputs and gradients.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ..sparse.matrix import CSRStructure

__all__ = ["lstm_recurrence"]


def lstm_recurrence(gates_x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, values: torch.Tensor,
                    structure: CSRStructure) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a sparse LSTM over a sequence (CPU, float32/float64).

    Args:
        gates_x: W_ih x[t] + b for every step, [T, B, 4H] (differentiable), gate order i, f, g, o.
        h0, c0: initial state, each [B, H] (differentiable).
        values: recurrent weights [K] in the CSR order of ``structure`` (differentiable).
        structure: CSR (and transposed CSR) of the joint W_hh [4H, H].

    Returns:
        (h [T, B, H] outputs of every step, c [B, H] final cell state); the final h is h[-1].
    """
    return _LSTMRecurrence.apply(gates_x, h0, c0, values, structure)


def _neuron_major(x: torch.Tensor) -> torch.Tensor:
    """[..., B, M] -> contiguous [..., M, B]."""
    return x.detach().transpose(-1, -2).contiguous()


class _LSTMRecurrence(torch.autograd.Function):
    """Forward `_lstm_kernels.forward`; saves the gate activations, h and c of every step
    (neuron-major). Backward `_lstm_kernels.backward`. Gradients for gates_x, h0, c0, values."""

    @staticmethod
    def forward(ctx, gates_x, h0, c0, values, structure):
        from . import _lstm_kernels as lk

        dtype = gates_x.dtype
        T, B, G = gates_x.shape
        H = G // 4
        GX = _neuron_major(gates_x)
        h0n, c0n = _neuron_major(h0.to(dtype)), _neuron_major(c0.to(dtype))
        A = torch.empty(T, G, B, dtype=dtype)
        Hs, Cs = torch.empty(T, H, B, dtype=dtype), torch.empty(T, H, B, dtype=dtype)
        vals = values.detach().to(dtype).contiguous()
        one = torch.ones(1, dtype=dtype)
        lk.forward(GX.numpy(), h0n.numpy(), c0n.numpy(), structure.crow.numpy(), structure.cols.numpy(),
                   vals.numpy(), one.numpy(), A.numpy(), Hs.numpy(), Cs.numpy())
        ctx.save_for_backward(A, Hs, Cs, h0n, c0n, vals[structure.perm_t])
        ctx.structure = structure
        return Hs.transpose(1, 2).contiguous(), Cs[-1].T.contiguous()

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        from . import _lstm_kernels as lk

        A, Hs, Cs, h0n, c0n, vals_t = ctx.saved_tensors
        s = ctx.structure
        T, G, B = A.shape
        H = G // 4
        dtype = A.dtype
        GH = torch.zeros(T, H, B, dtype=dtype) if grad_h is None else _neuron_major(grad_h.to(dtype))
        dc = torch.zeros(H, B, dtype=dtype) if grad_c is None else _neuron_major(grad_c.to(dtype))
        DG = torch.empty(T, G, B, dtype=dtype)
        gw_t = torch.empty(vals_t.shape[0], dtype=dtype)
        dh = torch.empty(H, B, dtype=dtype)
        one = torch.ones(1, dtype=dtype)
        lk.backward(GH.numpy(), A.numpy(), Hs.numpy(), Cs.numpy(), h0n.numpy(), c0n.numpy(), s.crow_t.numpy(),
                    s.rows_t.numpy(), vals_t.numpy(), one.numpy(), DG.numpy(), gw_t.numpy(), dh.numpy(),
                    dc.numpy())
        gw = None
        if ctx.needs_input_grad[3]:
            gw = torch.empty_like(gw_t)
            gw[s.perm_t] = gw_t
        return DG.transpose(1, 2), dh.T, dc.T, gw, None
