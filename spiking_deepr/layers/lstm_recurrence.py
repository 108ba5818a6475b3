r"""The whole-sequence sparse LSTM recurrence as one autograd function (fused CPU path).

:func:`~spiking_deepr.layers.lstm.lstm_step` runs one step as a sparse product and ~10 torch
operations, and autograd records them all for every step. :func:`lstm_recurrence` runs the T
steps in numba kernels (`_lstm_kernels`: the input projection of all steps at once, then one call
per step for the recurrent product) with torch's vectorised nonlinearities in place, without
autograd, and backpropagates through time by hand in one kernel; with :math:`a_t = (i, f, g, o)` the gate activations,
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

with :math:`\partial E/\partial x_t = W_{ih}^\top \delta_t` and :math:`\partial E/\partial b =
\sum_{t,b} \delta_t`. Both weight gradients (SDDMMs over the T·B rows) are accumulated per step
next to the products :math:`W^\top\delta_t` (one pass over the synapses, :math:`\delta_t` still in
cache). No per-step autograd graph is built.

Equal to :func:`lstm_step` under autograd to rounding (the recurrent sum and the gradient sums
run in another order): tested to 1e-5 (float32) / 1e-12 (float64)
relative, outputs and gradients.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ..sparse.matrix import CSRStructure

__all__ = ["JointMatrix", "lstm_recurrence"]


class JointMatrix(NamedTuple):
    """A [4H, n_in] weight matrix as the kernels read it: values [K] (differentiable) in the CSR
    order of ``structure``."""

    values: torch.Tensor
    structure: CSRStructure


def lstm_recurrence(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: JointMatrix, w_hh: JointMatrix,
                    bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a sparse LSTM over a sequence (CPU, float32/float64).

    Args:
        x: input [T, B, F] (T > 0).
        h0, c0: initial state, each [B, H].
        w_ih, w_hh: the joint input [4H, F] and recurrent [4H, H] matrices (gate order i, f, g, o).
        bias: [4H] or None.

    Returns:
        (h [T, B, H] outputs of every step, c [B, H] final cell state); the final h is h[-1].
        Differentiable w.r.t. x, h0, c0, both value vectors and the bias.
    """
    b = torch.zeros(w_ih.structure.crow.numel() - 1, dtype=x.dtype) if bias is None else bias
    return _LSTMRecurrence.apply(x, h0, c0, w_ih.values, w_hh.values, b, w_ih.structure, w_hh.structure)


def _swap(x: torch.Tensor) -> torch.Tensor:
    """Swap the last two dimensions (batch- <-> neuron-major), contiguous."""
    return x.detach().transpose(-1, -2).contiguous()


class _LSTMRecurrence(torch.autograd.Function):
    """Forward: `_lstm_kernels.input_gates`, then per step `_lstm_kernels.recurrent_gates` and
    torch's vectorised nonlinearities; saves the gate activations, c, tanh(c) and h of every step
    (neuron-major). Backward: `_lstm_kernels.backward`."""

    @staticmethod
    def forward(ctx, x, h0, c0, vals_ih, vals_hh, bias, s_ih, s_hh):
        from . import _lstm_kernels as lk

        dtype = x.dtype
        T, B, _ = x.shape
        G = s_hh.crow.numel() - 1
        H = G // 4
        XT = _swap(x)
        h0n, c0n = _swap(h0.to(dtype)), _swap(c0.to(dtype))
        vi, vh = (v.detach().to(dtype).contiguous() for v in (vals_ih, vals_hh))
        GX = torch.empty(T, G, B, dtype=dtype)
        zero = torch.zeros(1, dtype=dtype).numpy()
        lk.input_gates(XT.numpy(), s_ih.crow.numpy(), s_ih.cols.numpy(), vi.numpy(),
                       bias.detach().to(dtype).contiguous().numpy(), zero, GX.numpy())
        A = torch.empty(T, G, B, dtype=dtype)
        Cs, TC, Hs = (torch.empty(T, H, B, dtype=dtype) for _ in range(3))
        crow, cols, vals, GX_np, A_np, H_np = (s_hh.crow.numpy(), s_hh.cols.numpy(), vh.numpy(), GX.numpy(),
                                               A.numpy(), Hs.numpy())
        # per-step views made once (view creation is a visible part of a small step's cost)
        sig_if, g_t, o_t = A[:, :2 * H].unbind(0), A[:, 2 * H:3 * H].unbind(0), A[:, 3 * H:].unbind(0)
        i_t, f_t = A[:, :H].unbind(0), A[:, H:2 * H].unbind(0)
        c_t, tc_t, h_t = Cs.unbind(0), TC.unbind(0), Hs.unbind(0)
        for t in range(T):
            lk.recurrent_gates(GX_np[t], h0n.numpy() if t == 0 else H_np[t - 1], crow, cols, vals, zero, A_np[t])
            sig_if[t].sigmoid_()
            g_t[t].tanh_()
            o_t[t].sigmoid_()
            torch.mul(f_t[t], c0n if t == 0 else c_t[t - 1], out=c_t[t]).addcmul_(i_t[t], g_t[t])  # f c[t-1] + i g
            torch.tanh(c_t[t], out=tc_t[t])
            torch.mul(o_t[t], tc_t[t], out=h_t[t])
        ctx.save_for_backward(A, Cs, TC, Hs, h0n, c0n, XT, vi[s_ih.perm_t], vh[s_hh.perm_t])
        ctx.structures = (s_ih, s_hh)
        return _swap(Hs), _swap(Cs[-1])

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        from . import _lstm_kernels as lk

        A, Cs, TC, Hs, h0n, c0n, XT, vi_t, vh_t = ctx.saved_tensors
        s_ih, s_hh = ctx.structures
        T, G, B = A.shape
        H = G // 4
        dtype = A.dtype
        GH = torch.zeros(T, H, B, dtype=dtype) if grad_h is None else _swap(grad_h.to(dtype))
        dc = torch.zeros(H, B, dtype=dtype) if grad_c is None else _swap(grad_c.to(dtype))
        dg, DX = torch.empty(G, B, dtype=dtype), torch.empty_like(XT)
        gwi_t, gwh_t, gbias = torch.empty_like(vi_t), torch.empty_like(vh_t), torch.empty(G, dtype=dtype)
        dh = torch.empty(H, B, dtype=dtype)
        one = torch.ones(1, dtype=dtype)
        lk.backward(GH.numpy(), A.numpy(), Cs.numpy(), TC.numpy(), Hs.numpy(), h0n.numpy(), c0n.numpy(),
                    XT.numpy(), s_hh.crow_t.numpy(), s_hh.rows_t.numpy(), vh_t.numpy(), s_ih.crow_t.numpy(),
                    s_ih.rows_t.numpy(), vi_t.numpy(), one.numpy(), dg.numpy(), DX.numpy(), gwh_t.numpy(),
                    gwi_t.numpy(), gbias.numpy(), dh.numpy(), dc.numpy())
        grads = []
        for g_t, s in ((gwi_t, s_ih), (gwh_t, s_hh)):  # Wᵀ order -> CSR order
            g = torch.empty_like(g_t)
            g[s.perm_t] = g_t
            grads.append(g)
        dx = _swap(DX) if ctx.needs_input_grad[0] else None
        return dx, _swap(dh), _swap(dc), grads[0], grads[1], gbias, None, None
