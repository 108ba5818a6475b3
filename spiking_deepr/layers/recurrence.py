r"""The whole-sequence LIF/ALIF recurrence as one autograd function (fused CPU path).

The step functions (:func:`~spiking_deepr.layers.lif.lif_step`,
:func:`~spiking_deepr.layers.alif.alif_step`) run one time step as a handful of torch operations
and two sparse products; autograd then records ~20 nodes per step, and at 1 % connectivity the
per-step overhead costs more than the synapses. :func:`spiking_recurrence` runs the same
equations for all T steps in two numba kernels (`_recurrence_kernels`) and backpropagates
through time by hand:

.. math::
    \begin{align*}
        \delta x_t &= (\bar z_t + \delta z_t)\, \sigma'(x_t) &
            (\bar z_t: \text{gradient from the loss}; \delta z_t \text{ from step } t{+}1)\\
        \delta v'_t &= \delta v_t\,(1 - z_t) + \delta x_t, &
        \delta b_t &\mathrel{+}= -\beta\, \delta x_t \\
        \delta j_t &= (1 + c_s)\, \delta i_t + c_m\, \delta v'_t, &
        \delta v_{t-1} &= (1 - c_m)\, \delta v'_t,\quad \delta i_{t-1} = \delta j_t \\
        \delta z_{t-1} &= W_{\text{rec}}^\top \delta j_t + (1 - \rho)\, \delta b_t, &
        \delta b_{t-1} &= \rho\, \delta b_t \\
        \partial E/\partial w_k &= \textstyle\sum_t \sum_b \delta j_t[b, \text{row}_k]\,
            z_{t-1}[b, \text{col}_k] &
        \partial E/\partial c_t &= \delta j_t
    \end{align*}

with :math:`c_m = dt\,\tau_{\text{mem}}^{-1}`, :math:`c_s = -dt\,\tau_{\text{syn}}^{-1}`,
:math:`x_t = v'_t - (v_{\text{th}} + \beta b_t)` and :math:`c_t = W_{\text{in}} x[t]`. The reset uses
the detached spike (no gradient through :math:`z_t` in :math:`v_t`), the adaptation the
non-detached one, as in the step functions. The options of :mod:`~spiking_deepr.layers.lif` change
three lines: ``reset="subtract"`` gives :math:`\delta v'_t = \delta v_t + \delta x_t` whether or not
the neuron spiked; at a refractory step :math:`\delta v_{t-1} = \delta v_t` (v held) and
:math:`\delta x_t = 0`; the ``"lsnn"`` surrogate differentiates
:math:`x_t = (v'_t - A_t)/A_t` (:math:`A_t = v_{\text{th}} + \beta b_t`): :math:`\delta v'_t
\mathrel{+}= \delta x_t / A_t` and :math:`\delta b_t \mathrel{+}= -\beta\, \delta x_t (1 + x_t) / A_t`. The weight gradient only visits presynaptic neurons
that spiked, and :math:`\sigma'` is the surrogate's own backward pass (Norse's, or ``"bellec"``),
evaluated once over all steps.

The forward pass repeats the step functions' float operations in the same order, so spikes and
states match them exactly (tested), and gradients match to rounding.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..sparse import SparseMatrix
from .surrogate import BELLEC_DAMPENING, SCALED_METHODS, spike_fn

__all__ = ["NeuronConstants", "fused_available", "spiking_recurrence"]

_EMPTY = torch.empty(0, dtype=torch.int64)


class NeuronConstants(NamedTuple):
    """Scalar and per-neuron constants of a LIF/ALIF population (tensors as the layers hold them).

    tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset: 0-dim; beta: [N] or None (LIF);
    tau_adapt_inv: 0-dim (ALIF) or None; method/alpha: surrogate gradient; reset: "value" |
    "subtract"; refractory: steps (0: none)."""

    tau_syn_inv: torch.Tensor
    tau_mem_inv: torch.Tensor
    v_leak: torch.Tensor
    v_th: torch.Tensor
    v_reset: torch.Tensor
    beta: Optional[torch.Tensor]
    tau_adapt_inv: Optional[torch.Tensor]
    method: str
    alpha: float
    reset: str = "value"
    refractory: int = 0


def fused_available(x: torch.Tensor) -> bool:
    """The fused kernels run on CPU tensors of float32/float64."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def spiking_recurrence(currents: torch.Tensor, z0: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor,
                       b0: Optional[torch.Tensor], r0: Optional[torch.Tensor], w_rec: Optional[SparseMatrix],
                       c: NeuronConstants, dt: float):
    """Run a sparse recurrent LIF (``c.beta is None``) or LIF/ALIF population over a sequence.

    Args:
        currents: input currents W_in x, [T, B, N] (differentiable).
        z0, v0, i0: initial spikes, voltage, current, each [B, N]; b0: initial adaptation [B, N]
            (ALIF) or None; r0: initial refractory counter [B, N] or None (zeros).
        w_rec: recurrent SparseMatrix [N, N] or None.
        c: the population's constants; dt: Euler step.

    Returns:
        (z [T, B, N], v [B, N], i [B, N], b [B, N] or None, r [B, N] or None (no refractory
        period)): spikes of every step and the final state.
    """
    T, B, N = currents.shape
    dtype = currents.dtype
    adaptive = c.beta is not None
    coef = _coefficients(c, dt, dtype)
    beta = c.beta.to(dtype) if adaptive else torch.zeros(N, dtype=dtype)
    if b0 is None:
        b0 = torch.zeros(B, N, dtype=dtype)
    if r0 is None:
        r0 = torch.zeros(B, N, dtype=dtype)
    values = w_rec.weight_values().to(dtype) if w_rec is not None else torch.empty(0, dtype=dtype)
    structure = w_rec.structure() if w_rec is not None else None
    z, v, i, b, r = _SpikingRecurrence.apply(currents, z0, v0, i0, b0, r0, values, structure, beta, coef, adaptive,
                                             c.method, c.alpha, c.reset, c.refractory)
    return z, v, i, (b if adaptive else None), (r if c.refractory else None)


def _coefficients(c: NeuronConstants, dt: float, dtype: torch.dtype) -> torch.Tensor:
    """The constants in `_recurrence_kernels`' order, each computed by the torch expression the step
    functions evaluate (same rounding), cast to ``dtype``."""
    cm = (dt * c.tau_mem_inv).to(dtype)
    cs = (-dt * c.tau_syn_inv).to(dtype)
    adaptive = c.tau_adapt_inv is not None
    rho = torch.exp(-dt * torch.as_tensor(c.tau_adapt_inv, dtype=dtype)) if adaptive else torch.zeros((), dtype=dtype)
    one = torch.ones((), dtype=dtype)
    alpha = torch.as_tensor(c.alpha, dtype=dtype)
    damp = torch.as_tensor(BELLEC_DAMPENING, dtype=dtype)
    refrac = torch.as_tensor(float(c.refractory), dtype=dtype)
    parts = [cm, cs, c.v_leak.to(dtype), c.v_th.to(dtype), c.v_reset.to(dtype), rho, 1 - rho, 1 - cm, 1 + cs,
             one, alpha, damp, refrac]
    return torch.stack([p.reshape(()) for p in parts])


class _SpikingRecurrence(torch.autograd.Function):
    """Forward: `_recurrence_kernels.forward`; saves X = the spike function's argument [T, B, N]
    (spikes are X > 0 outside refractory steps), the refractory mask and, for the "lsnn" surrogate
    of an adaptive layer, the thresholds. Backward: `_recurrence_kernels.backward`. Gradients for
    currents, z0, v0, i0, b0 and the recurrent values (W's CSR order); the counter r has none."""

    @staticmethod
    def forward(ctx, currents, z0, v0, i0, b0, r0, values, structure, beta, coef, adaptive, method, alpha, reset,
                refractory):
        from . import _recurrence_kernels as rk

        cur = currents.detach().contiguous()
        T, B, N = cur.shape
        dtype = cur.dtype
        scaled = method in SCALED_METHODS
        refractory = bool(refractory)
        X = torch.empty(T, B, N, dtype=dtype)
        Z = torch.empty(T, B, N, dtype=dtype)
        TH = torch.empty((T, B, N) if scaled and adaptive else (0, 0, 0), dtype=dtype)
        REF = torch.empty((T, B, N) if refractory else (0, 0, 0), dtype=torch.int8)
        v, i, b, r = (torch.empty(B, N, dtype=dtype) for _ in range(4))
        z0, v0, i0, b0, r0 = (s.detach().to(dtype).contiguous() for s in (z0, v0, i0, b0, r0))
        if structure is not None:
            crow_t, rows_t, vals_t = structure.crow_t, structure.rows_t, values.detach()[structure.perm_t]
        else:
            crow_t, rows_t, vals_t = _EMPTY, _EMPTY, values.detach()
        rk.forward(cur.numpy(), z0.numpy(), v0.numpy(), i0.numpy(), b0.numpy(), r0.numpy(), crow_t.numpy(),
                   rows_t.numpy(), vals_t.numpy(), beta.numpy(), coef.numpy(), adaptive, reset == "subtract",
                   refractory, scaled, X.numpy(), Z.numpy(), TH.numpy(), REF.numpy(), v.numpy(), i.numpy(),
                   b.numpy(), r.numpy())
        ctx.save_for_backward(X, TH, REF, z0, vals_t, beta, coef)
        ctx.structure, ctx.adaptive, ctx.method, ctx.alpha = structure, adaptive, method, alpha
        ctx.subtract, ctx.refractory = reset == "subtract", refractory
        ctx.mark_non_differentiable(r)
        return Z, v, i, b, r

    @staticmethod
    def backward(ctx, gz, gv, gi, gb, gr):
        from . import _recurrence_kernels as rk

        X, TH, REF, z0, vals_t, beta, coef = ctx.saved_tensors
        T, B, N = X.shape
        dtype = X.dtype
        gz = torch.zeros_like(X) if gz is None else gz.to(dtype).contiguous()
        state_grads = [torch.zeros(B, N, dtype=dtype) if g is None else g.to(dtype).contiguous().clone()
                       for g in (gv, gi, gb)]
        surrogate = rk.KERNEL_SURROGATES.get(ctx.method, rk.PRECOMPUTED)
        S = surrogate_derivative(X, ctx.method, ctx.alpha) if surrogate == rk.PRECOMPUTED else X[:0]
        GJ = torch.empty(T, B, N, dtype=dtype)
        gw_t = torch.empty(vals_t.shape[0], dtype=dtype)
        gzc = torch.empty(N, B, dtype=dtype)
        s = ctx.structure
        crow_t, rows_t = (s.crow_t, s.rows_t) if s is not None else (_EMPTY, _EMPTY)
        rk.backward(gz.numpy(), S.numpy(), X.numpy(), TH.numpy(), REF.numpy(), z0.numpy(),
                    *(g.numpy() for g in state_grads), crow_t.numpy(), rows_t.numpy(), vals_t.numpy(), beta.numpy(),
                    coef.numpy(), ctx.adaptive, ctx.subtract, ctx.refractory, surrogate, GJ.numpy(), gw_t.numpy(),
                    gzc.numpy())
        gw = None
        if s is not None and ctx.needs_input_grad[6]:
            gw = torch.empty_like(gw_t)
            gw[s.perm_t] = gw_t
        return (GJ, gzc.T, *state_grads, None, gw, None, None, None, None, None, None, None, None)


def surrogate_derivative(x: torch.Tensor, method: str, alpha) -> torch.Tensor:
    """The pseudo-derivative dz/dx that ``spike_fn(x, method, alpha)`` backpropagates, elementwise
    (the surrogate's own backward pass, run once on the whole tensor); zeros for a method without one."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_()
        z = spike_fn(xr, method, alpha)
        if not z.requires_grad:
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(z, xr, torch.ones_like(z))
    return grad
