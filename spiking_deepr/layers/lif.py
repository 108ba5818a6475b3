r"""Sparse recurrent current-based LIF layer with Norse's ``lif_step`` dynamics.

Per time step :math:`t` (Euler step ``dt``, parameters as in
:class:`norse.torch.functional.lif.LIFParameters`):

.. math::
    \begin{align*}
        i_{\text{jump}} &= i + W_{\text{in}} x[t] + W_{\text{rec}} z[t-1] \\
        v' &= v + dt\,\tau_{\text{mem}}^{-1} \big((v_{\text{leak}} - v) + i_{\text{jump}}\big) \\
        i &\leftarrow i_{\text{jump}} (1 - dt\,\tau_{\text{syn}}^{-1}) \\
        z[t] &= \Theta(v' - v_{\text{th}}) \qquad \text{(strictly greater, surrogate gradient)}\\
        v &\leftarrow (1 - z[t])\, v' + z[t]\, v_{\text{reset}} \qquad (z \text{ detached in the reset})
    \end{align*}

exactly :func:`norse.torch.functional.lif.lif_step` (same operation order), and exactly
:class:`spiking_deepr.export.LIFLayerSpec`.

Options of the authors' LSNN recipe (Bellec et al.; defaults: the Norse behaviour above):

- ``reset="subtract"``: :math:`v \leftarrow (1 - z)\, v' + z\, (v' - v_{\text{th}})` (Norse's
  :func:`~norse.torch.functional.reset.reset_subtract`; the e-prop ``CustomALIF`` subtracts its
  baseline threshold, ``I_reset = z * thr``) instead of ``"value"`` (reset to :math:`v_{\text{reset}}`).
  The spike is detached in either reset.
- ``refractory=R`` steps: after a spike the neuron cannot spike for the next R steps and its
  voltage is held (not integrated; the current still is), as Norse's
  :func:`~norse.torch.functional.lif_refrac.lif_refrac_step` and Lava's ``LIFRefractory``. A
  counter ``r`` in the state: :math:`\rho = [r > 0]`, :math:`z \leftarrow (1-\rho) z`,
  :math:`v \leftarrow (1-\rho) v + \rho\, v_{\text{prev}}`,
  :math:`r \leftarrow (1-z)\max(0, r - \rho) + z R`. The refractory mask passes no gradient
  (as ``tf.where(is_refractory, 0, z)`` in the authors' code).
- surrogate ``method="lsnn"``: the LSNN-official pseudo-derivative (see `surrogate`). Both weight matrices are DEEP R
:class:`~spiking_deepr.sparse.SparseMatrix` objects; the recurrent one excludes the diagonal by
default (Norse's ``LIFRecurrent`` has no autapses either).

Performance: the input currents :math:`W_{\text{in}} x[t]` of all steps are one sparse product over
T·B rows computed before the time loop. On the CPU (``fused=True``, the default) the time loop and
its backward pass run in the fused kernels of :mod:`spiking_deepr.layers.recurrence` (same
spikes and states as the step function, gradients equal to rounding); ``fused=False``, GPU tensors
and ``record_states=True`` loop over :func:`lif_step` with autograd.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from norse.torch.functional.lif import LIFParameters, LIFState
from torch import nn

from ..sparse import SparseMatrix, sparse_linear
from ._common import build_matrix, check_time_major, recurrent_input
from .recurrence import NeuronConstants, fused_available, spiking_recurrence
from .surrogate import SCALED_METHODS, check_method, threshold_spike

__all__ = ["LIFParameters", "LIFState", "LIFRefracState", "lif_step", "SparseLIFRecurrent", "RESETS"]

#: Reset modes: ``"value"`` (v = v_reset after a spike, Norse's default) | ``"subtract"`` (v -= v_th).
RESETS = ("value", "subtract")


class LIFRefracState(NamedTuple):
    """State of a LIF layer with a refractory period: Norse's LIFState fields (z [B, N] spikes of the
    previous step, v [B, N] voltage, i [B, N] current) plus r [B, N], refractory steps left (float)."""

    z: torch.Tensor
    v: torch.Tensor
    i: torch.Tensor
    r: torch.Tensor


def lif_integrate(x_current: torch.Tensor, state, w_rec: Optional[SparseMatrix], p,
                  dt: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Subthreshold Euler step shared by LIF and ALIF, in Norse ``lif_step``'s exact operation order:
    i_jump = i + x_current + W_rec z[t-1]; returns (v', i) before the spike and reset, each [B, N].
    ``state`` needs z, v, i; ``p`` tau_syn_inv, tau_mem_inv, v_leak."""
    i_jump = state.i + x_current
    rec = recurrent_input(state.z, w_rec)
    if rec is not None:
        i_jump = i_jump + rec
    dv = dt * p.tau_mem_inv * ((p.v_leak - state.v) + i_jump)
    v_decayed = state.v + dv
    di = -dt * p.tau_syn_inv * i_jump
    return v_decayed, i_jump + di


def spike_and_reset(v_decayed: torch.Tensor, threshold: torch.Tensor, state, p, reset: str = "value",
                    refractory: int = 0):
    """Spike, reset and refractoriness shared by LIF and ALIF (see module docstring).

    ``v_decayed`` [B, N] is v' before the spike, ``threshold`` the (adaptive) threshold; ``state``
    gives the previous v and the refractory counter r (None: all zero). Returns (z, v, r), r None
    when ``refractory == 0``."""
    z_new = threshold_spike(v_decayed, threshold, p.method, p.alpha)
    if refractory:
        r = state.r if getattr(state, "r", None) is not None else torch.zeros_like(v_decayed)
        ref = (r > 0).to(v_decayed.dtype)
        z_new = z_new * (1 - ref)
    zd = z_new.detach()
    if reset == "subtract":
        v_new = (1 - zd) * v_decayed + zd * (v_decayed - p.v_th)
    else:
        v_new = (1 - zd) * v_decayed + zd * p.v_reset
    if not refractory:
        return z_new, v_new, None
    v_new = (1 - ref) * v_new + ref * state.v
    r_new = (1 - zd) * torch.relu(r - ref) + zd * float(refractory)
    return z_new, v_new, r_new


def lif_step(x_current: torch.Tensor, state: LIFState, w_rec: Optional[SparseMatrix],
             p: LIFParameters, dt: float = 0.001, reset: str = "value",
             refractory: int = 0) -> Tuple[torch.Tensor, LIFState]:
    """One Euler step of a sparse recurrent LIF population (Norse ``lif_step`` semantics).

    Args:
        x_current: input current W_in x[t], [B, N] (already projected; see module docstring).
        state: LIFState(z [B, N] spikes of step t-1, v [B, N], i [B, N]), or LIFRefracState (plus the
            refractory counter r [B, N]) when ``refractory > 0``.
        w_rec: recurrent SparseMatrix [N, N], or None for a feed-forward population.
        p: Norse LIFParameters; ``p.method`` may also be ``"bellec"`` or ``"lsnn"`` (see `surrogate`).
        dt: integration step.
        reset: ``"value"`` | ``"subtract"``; refractory: steps (see module docstring).

    Returns:
        (z [B, N], new LIFState).
    """
    v_decayed, i_decayed = lif_integrate(x_current, state, w_rec, p, dt)
    z_new, v_new, r_new = spike_and_reset(v_decayed, p.v_th, state, p, reset, refractory)
    if r_new is None:
        return z_new, LIFState(z_new, v_new, i_decayed)
    return z_new, LIFRefracState(z_new, v_new, i_decayed, r_new)


class _SparseSpikingRecurrent(nn.Module):
    """Shared construction of the sparse spiking layers (matrices, buffers, time loop)."""

    def __init__(self, input_size: int, hidden_size: int, *, tau_syn_inv, tau_mem_inv, v_leak, v_th,
                 v_reset, method: str, alpha, dt: float, reset: str, refractory: int,
                 input_connectivity: float,
                 recurrent_connectivity: Optional[float], exclude_diagonal: bool,
                 fan_in_cap: Optional[int], input_sign: Optional[torch.Tensor],
                 recurrent_sign: Optional[torch.Tensor], input_init_std: Optional[float],
                 recurrent_init_std: Optional[float], w_in: Optional[SparseMatrix],
                 w_rec: Optional[SparseMatrix], record_states: bool, fused: bool, seed: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"{type(self).__name__}: sizes must be positive, got input_size={input_size}, "
                             f"hidden_size={hidden_size}")
        check_method(method)
        if reset not in RESETS:
            raise ValueError(f"{type(self).__name__}: reset must be one of {RESETS}, got {reset!r}")
        if int(refractory) != refractory or refractory < 0:
            raise ValueError(f"{type(self).__name__}: refractory must be a whole number of steps >= 0, "
                             f"got {refractory!r}")
        if method in SCALED_METHODS and not float(v_th) > 0:
            raise ValueError(f"{type(self).__name__}: surrogate {method!r} divides by the threshold, "
                             f"which needs v_th > 0, got {float(v_th)}")
        self.reset = reset
        self.refractory = int(refractory)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.dt = float(dt)
        self.method = method
        self.alpha = float(alpha)
        self.record_states = bool(record_states)
        self.fused = bool(fused)
        for name, value in (("tau_syn_inv", tau_syn_inv), ("tau_mem_inv", tau_mem_inv), ("v_leak", v_leak),
                            ("v_th", v_th), ("v_reset", v_reset)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32).clone())
        who = type(self).__name__
        self.w_in = build_matrix(self.hidden_size, self.input_size, w_in, connectivity=input_connectivity,
                                 fan_in_cap=fan_in_cap, presynaptic_sign=input_sign, init_std=input_init_std,
                                 seed=seed, who=f"{who}.w_in")
        if w_rec is None and recurrent_connectivity is None:
            self.w_rec = None
        else:
            self.w_rec = build_matrix(self.hidden_size, self.hidden_size, w_rec,
                                      connectivity=recurrent_connectivity or 1.0,
                                      exclude_diagonal=exclude_diagonal, fan_in_cap=fan_in_cap,
                                      presynaptic_sign=recurrent_sign, init_std=recurrent_init_std,
                                      seed=seed + 1, who=f"{who}.w_rec")

    def _step(self, x_current, state, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def initial_state(self, batch_size: int, like: Optional[torch.Tensor] = None):  # pragma: no cover - abstract
        raise NotImplementedError

    def _constants(self) -> NeuronConstants:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state=None):
        """x: [T, B, input_size] (time-major). Returns (z [T, B, hidden], state).

        ``state`` is the final state, or (``record_states=True``) the states of every step stacked
        along a leading time dimension, as Norse's ``SNNRecurrent``."""
        check_time_major(x, self.input_size, type(self).__name__)
        T, B, _ = x.shape
        state = self.initial_state(B, x) if state is None else state
        currents = sparse_linear(x, self.w_in)  # all T at once: one product over T*B rows
        if self.fused and not self.record_states and T > 0 and fused_available(currents):
            z, v, i, b, r = spiking_recurrence(currents, state.z, state.v, state.i, getattr(state, "b", None),
                                               getattr(state, "r", None), self.w_rec, self._constants(), self.dt)
            final = (z[-1], v, i) + (() if b is None else (b,)) + (() if r is None else (r,))
            return z, type(state)(*final)
        p = self.parameters_tuple()
        outputs, states = [], []
        # unbind (one backward node that stacks the T gradients), not currents[t] (T full-size
        # zero-filled gradient buffers in the backward pass)
        for current in currents.unbind(0):
            z, state = self._step(current, state, p)
            outputs.append(z)
            if self.record_states:
                states.append(state)
        if T == 0:
            return x.new_zeros(0, B, self.hidden_size), state
        if self.record_states:
            state = type(state)(*(torch.stack(parts) for parts in zip(*states)))
        return torch.stack(outputs), state

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, method={self.method!r}, "
                f"alpha={self.alpha}, dt={self.dt}, reset={self.reset!r}, refractory={self.refractory}, "
                f"fused={self.fused}")


class SparseLIFRecurrent(_SparseSpikingRecurrent):
    """Recurrent LIF population with sparse DEEP R input and recurrent matrices.

    Args:
        input_size: F, features of the input [T, B, F].
        hidden_size: N neurons.
        p: Norse ``LIFParameters`` (scalars; stored as buffers, ``method``/``alpha`` as attributes).
            ``method`` may be any Norse threshold method or ``"bellec"``.
        dt: Euler step.
        reset: ``"value"`` (v = v_reset) | ``"subtract"`` (v -= v_th); refractory: steps without spiking
            after a spike (see module docstring).
        input_connectivity, recurrent_connectivity: fraction of active entries of W_in [N, F] and
            W_rec [N, N]; ``recurrent_connectivity=None`` builds a feed-forward population.
        exclude_diagonal: no autapses in W_rec (default, as Norse).
        fan_in_cap: per-matrix cap on connections into one neuron.
        input_sign, recurrent_sign: optional +1/-1 presynaptic signs (Dale's law) of each matrix.
        input_init_std, recurrent_init_std: std of the dense initialisation each matrix replaces.
        w_in, w_rec: ready-made SparseMatrix objects (override the construction arguments).
        record_states: return the states of all steps (stacked) instead of the final one.
        fused: run the time loop in the fused CPU kernels (`recurrence`) where possible; False always
            loops over `lif_step` with autograd (the reference path).
        seed: seeds both matrices.
    """

    def __init__(self, input_size: int, hidden_size: int, p: LIFParameters = LIFParameters(), *,
                 dt: float = 0.001, reset: str = "value", refractory: int = 0, input_connectivity: float = 1.0,
                 recurrent_connectivity: Optional[float] = 1.0, exclude_diagonal: bool = True,
                 fan_in_cap: Optional[int] = None, input_sign: Optional[torch.Tensor] = None,
                 recurrent_sign: Optional[torch.Tensor] = None, input_init_std: Optional[float] = None,
                 recurrent_init_std: Optional[float] = None, w_in: Optional[SparseMatrix] = None,
                 w_rec: Optional[SparseMatrix] = None, record_states: bool = False, fused: bool = True,
                 seed: int = 0) -> None:
        super().__init__(input_size, hidden_size, tau_syn_inv=p.tau_syn_inv, tau_mem_inv=p.tau_mem_inv,
                         v_leak=p.v_leak, v_th=p.v_th, v_reset=p.v_reset, method=p.method, alpha=p.alpha,
                         dt=dt, reset=reset, refractory=refractory, input_connectivity=input_connectivity,
                         recurrent_connectivity=recurrent_connectivity, exclude_diagonal=exclude_diagonal,
                         fan_in_cap=fan_in_cap, input_sign=input_sign, recurrent_sign=recurrent_sign,
                         input_init_std=input_init_std, recurrent_init_std=recurrent_init_std,
                         w_in=w_in, w_rec=w_rec, record_states=record_states, fused=fused, seed=seed)

    def parameters_tuple(self) -> LIFParameters:
        """The neuron parameters as Norse ``LIFParameters`` (tensors are this module's buffers)."""
        return LIFParameters(self.tau_syn_inv, self.tau_mem_inv, self.v_leak, self.v_th, self.v_reset,
                             self.method, self.alpha)

    def initial_state(self, batch_size: int, like: Optional[torch.Tensor] = None) -> LIFState:
        """z = 0, v = v_leak, i = 0 (r = 0 with a refractory period), each [B, N] in the dtype/device of
        ``like`` (or of the weights)."""
        like = self.w_in.theta if like is None else like
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=like.dtype, device=like.device)
        v = zeros + self.v_leak.to(like.dtype)
        if self.refractory:
            return LIFRefracState(z=zeros, v=v, i=zeros.clone(), r=zeros.clone())
        return LIFState(z=zeros, v=v, i=zeros.clone())

    def _step(self, x_current, state, p):
        return lif_step(x_current, state, self.w_rec, p, self.dt, self.reset, self.refractory)

    def _constants(self) -> NeuronConstants:
        return NeuronConstants(self.tau_syn_inv, self.tau_mem_inv, self.v_leak, self.v_th, self.v_reset,
                               None, None, self.method, self.alpha, self.reset, self.refractory)
