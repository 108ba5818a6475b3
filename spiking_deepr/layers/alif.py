r"""Sparse recurrent adaptive LIF layer (LSNN, Bellec et al. 2018): LIF and ALIF neurons in one layer.

Per time step :math:`t`, the LIF update of :mod:`spiking_deepr.layers.lif` (Norse ``lif_step``
order: input jump, then decay) plus a threshold adaptation :math:`b` per neuron:

.. math::
    \begin{align*}
        i_{\text{jump}} &= i + W_{\text{in}} x[t] + W_{\text{rec}} z[t-1] \\
        v' &= v + dt\,\tau_{\text{mem}}^{-1} \big((v_{\text{leak}} - v) + i_{\text{jump}}\big),
            \qquad i \leftarrow i_{\text{jump}} (1 - dt\,\tau_{\text{syn}}^{-1}) \\
        b[t] &= \rho\, b[t-1] + (1 - \rho)\, z[t-1], \qquad \rho = \exp(-dt\,\tau_{\text{adapt}}^{-1}) \\
        \vartheta_k[t] &= v_{\text{th}} + \beta_k\, b_k[t] \\
        z[t] &= \Theta(v' - \vartheta[t]), \qquad v \leftarrow (1 - z[t])\, v' + z[t]\, v_{\text{reset}}
    \end{align*}

exactly :class:`spiking_deepr.export.ALIFLayerSpec`. The options ``reset="subtract"`` (subtracts the
baseline :math:`v_{\text{th}}`), ``refractory`` and the surrogate ``"lsnn"`` (scaled by the adaptive
threshold :math:`\vartheta_k[t]`) are those of :mod:`spiking_deepr.layers.lif`. ``beta`` is a per-neuron vector: 0 for plain
LIF neurons, > 0 for adaptive ones (``n_lif`` LIF neurons first, then ``n_alif`` ALIF neurons). With
``beta = 0`` everywhere the layer is bit-for-bit the LIF layer (and Norse's ``lif_step``).
Gradients: the reset uses the detached spike (as Norse); the adaptation :math:`b` is driven by the
*non-detached* spike, so BPTT flows through the threshold as in Bellec et al. (2018). On the CPU the
layer runs the fused kernels of :mod:`spiking_deepr.layers.recurrence` (as the LIF layer;
``fused=False`` loops over :func:`alif_step`).

**How Norse's LSNN differs** (:func:`norse.torch.functional.lsnn.lsnn_step`, ``LSNNRecurrent``):

1. *Order.* Norse decays first, using the current of the previous step, and adds the new input
   afterwards: :math:`v' = v + dt\,\tau_{\text{mem}}^{-1}((v_{\text{leak}} - v) + i)`,
   :math:`i \leftarrow (1 - dt\,\tau_{\text{syn}}^{-1}) i + W_{\text{in}} x[t] + W_{\text{rec}} z[t-1]`.
   The input reaches the voltage one step later than here (and than in Norse's own ``lif_step``),
   and a recurrent spike two steps later instead of one.
2. *Threshold.* Norse's state ``b`` *is* the threshold: initialised to ``v_th``, relaxing towards it
   with the Euler step :math:`b \leftarrow b + dt\,\tau_{\text{adapt}}^{-1}(v_{\text{th}} - b)`
   (linear factor :math:`1 - dt\,\tau_{\text{adapt}}^{-1}`, not :math:`\exp(-dt\,\tau_{\text{adapt}}^{-1})`),
   and jumping by :math:`\beta z` *after* the spike (no :math:`1-\rho` factor). Here
   :math:`b \in [0, 1]` is a low-pass filter of the spike train and the threshold is
   :math:`v_{\text{th}} + \beta_k b_k`.
3. *Per-neuron mixing.* Norse's ``beta`` is one value per population; here it is a vector, so
   LIF and ALIF neurons share one layer (and one pair of DEEP R matrices).
4. *Gradients.* Norse detaches the spike in the adaptation jump (``z_new.detach() * beta``); here it
   is not detached. Norse's module docstring writes :math:`z = \Theta(v - v_{\text{th}} + b)`; the
   code computes :math:`\Theta(v - b)`.

What coincides (tested): without recurrent weights, with
:math:`\tau^{\text{Norse}}_{\text{adapt}}{}^{-1} = (1 - \rho)/dt` and
:math:`\beta^{\text{Norse}} = \beta (1 - \rho)/\rho`, Norse's LSNN output at step :math:`t+1` equals
this layer's output at step :math:`t` (spikes and voltages), the one-step shift coming from (1).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple, Union

import torch
from norse.torch.functional.lif import LIFParameters

from ..sparse import SparseMatrix
from .lif import _SparseSpikingRecurrent, lif_integrate, spike_and_reset
from .recurrence import NeuronConstants

__all__ = ["ALIFParameters", "ALIFState", "ALIFRefracState", "alif_step", "SparseALIFRecurrent"]


class ALIFParameters(NamedTuple):
    """Parameters of a mixed LIF/ALIF population (Norse LIFParameters plus adaptation).

    beta: float [N] (0 for LIF neurons) or a scalar; tau_adapt_inv: inverse adaptation time constant.
    """

    tau_syn_inv: torch.Tensor = torch.as_tensor(1.0 / 5e-3)
    tau_mem_inv: torch.Tensor = torch.as_tensor(1.0 / 1e-2)
    v_leak: torch.Tensor = torch.as_tensor(0.0)
    v_th: torch.Tensor = torch.as_tensor(1.0)
    v_reset: torch.Tensor = torch.as_tensor(0.0)
    tau_adapt_inv: torch.Tensor = torch.as_tensor(1.0 / 0.2)
    beta: torch.Tensor = torch.as_tensor(1.8)
    method: str = "super"
    alpha: float = 100.0


class ALIFState(NamedTuple):
    """z [B, N] spikes of the previous step, v [B, N] voltage, i [B, N] current, b [B, N] adaptation."""

    z: torch.Tensor
    v: torch.Tensor
    i: torch.Tensor
    b: torch.Tensor


class ALIFRefracState(NamedTuple):
    """ALIFState plus r [B, N], refractory steps left (float), for a layer with a refractory period."""

    z: torch.Tensor
    v: torch.Tensor
    i: torch.Tensor
    b: torch.Tensor
    r: torch.Tensor


def alif_step(x_current: torch.Tensor, state: ALIFState, w_rec: Optional[SparseMatrix],
              p: ALIFParameters, dt: float = 0.001, reset: str = "value",
              refractory: int = 0) -> Tuple[torch.Tensor, ALIFState]:
    """One Euler step of a sparse recurrent LIF/ALIF population (`ALIFLayerSpec` semantics).

    ``x_current`` is the projected input W_in x[t], [B, N]; ``w_rec`` a SparseMatrix [N, N] or None;
    ``reset`` / ``refractory`` as :func:`~spiking_deepr.layers.lif.lif_step` (``refractory > 0``:
    the state is an ALIFRefracState).
    """
    v_decayed, i_decayed = lif_integrate(x_current, state, w_rec, p, dt)
    rho = torch.exp(-dt * torch.as_tensor(p.tau_adapt_inv, dtype=state.v.dtype))
    b_new = rho * state.b + (1 - rho) * state.z
    z_new, v_new, r_new = spike_and_reset(v_decayed, p.v_th + p.beta * b_new, state, p, reset, refractory)
    if r_new is None:
        return z_new, ALIFState(z_new, v_new, i_decayed, b_new)
    return z_new, ALIFRefracState(z_new, v_new, i_decayed, b_new, r_new)


class SparseALIFRecurrent(_SparseSpikingRecurrent):
    """Recurrent LSNN layer: ``n_lif`` LIF neurons followed by ``n_alif`` ALIF neurons.

    Args:
        input_size: F.
        n_lif, n_alif: neuron counts (hidden size N = n_lif + n_alif).
        p: Norse ``LIFParameters`` for the shared membrane/synapse parameters.
        beta: adaptation strength of the ALIF neurons (scalar), or a float [N] vector (then n_lif /
            n_alif only fix N).
        tau_adapt_inv: inverse adaptation time constant (scalar).
        Other arguments (``reset``, ``refractory`` included): as
            :class:`~spiking_deepr.layers.lif.SparseLIFRecurrent`.
    """

    def __init__(self, input_size: int, n_lif: int, n_alif: int, p: LIFParameters = LIFParameters(), *,
                 beta: Union[float, torch.Tensor] = 1.8, tau_adapt_inv: float = 1.0 / 0.2,
                 dt: float = 0.001, reset: str = "value", refractory: int = 0, input_connectivity: float = 1.0,
                 recurrent_connectivity: Optional[float] = 1.0, exclude_diagonal: bool = True,
                 fan_in_cap: Optional[int] = None, input_sign: Optional[torch.Tensor] = None,
                 recurrent_sign: Optional[torch.Tensor] = None, input_init_std: Optional[float] = None,
                 recurrent_init_std: Optional[float] = None, w_in: Optional[SparseMatrix] = None,
                 w_rec: Optional[SparseMatrix] = None, record_states: bool = False, fused: bool = True,
                 seed: int = 0) -> None:
        if n_lif < 0 or n_alif < 0:
            raise ValueError(f"SparseALIFRecurrent: n_lif and n_alif must be >= 0, got {n_lif}, {n_alif}")
        n = n_lif + n_alif
        super().__init__(input_size, n, tau_syn_inv=p.tau_syn_inv, tau_mem_inv=p.tau_mem_inv,
                         v_leak=p.v_leak, v_th=p.v_th, v_reset=p.v_reset, method=p.method, alpha=p.alpha,
                         dt=dt, reset=reset, refractory=refractory, input_connectivity=input_connectivity,
                         recurrent_connectivity=recurrent_connectivity, exclude_diagonal=exclude_diagonal,
                         fan_in_cap=fan_in_cap, input_sign=input_sign, recurrent_sign=recurrent_sign,
                         input_init_std=input_init_std, recurrent_init_std=recurrent_init_std,
                         w_in=w_in, w_rec=w_rec, record_states=record_states, fused=fused, seed=seed)
        beta_t = torch.as_tensor(beta, dtype=torch.float32)
        if beta_t.dim() == 0:
            beta_t = torch.cat([torch.zeros(n_lif), torch.full((n_alif,), float(beta_t))])
        if beta_t.shape != (n,) or bool((beta_t < 0).any()):
            raise ValueError(f"SparseALIFRecurrent: beta must be a scalar or a non-negative vector of "
                             f"length {n}, got shape {tuple(beta_t.shape)}")
        if tau_adapt_inv <= 0:
            raise ValueError(f"SparseALIFRecurrent: tau_adapt_inv must be > 0, got {tau_adapt_inv}")
        self.n_lif = int((beta_t == 0).sum())
        self.n_alif = n - self.n_lif
        self.register_buffer("beta", beta_t)
        self.register_buffer("tau_adapt_inv", torch.as_tensor(float(tau_adapt_inv)))

    @property
    def rho(self) -> float:
        """Adaptation decay per step, exp(-dt * tau_adapt_inv)."""
        return math.exp(-self.dt * float(self.tau_adapt_inv))

    def parameters_tuple(self) -> ALIFParameters:
        return ALIFParameters(self.tau_syn_inv, self.tau_mem_inv, self.v_leak, self.v_th, self.v_reset,
                              self.tau_adapt_inv, self.beta, self.method, self.alpha)

    def initial_state(self, batch_size: int, like: Optional[torch.Tensor] = None) -> ALIFState:
        """z = 0, v = v_leak, i = 0, b = 0 (r = 0 with a refractory period), each [B, N]."""
        like = self.w_in.theta if like is None else like
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=like.dtype, device=like.device)
        v = zeros + self.v_leak.to(like.dtype)
        if self.refractory:
            return ALIFRefracState(z=zeros, v=v, i=zeros.clone(), b=zeros.clone(), r=zeros.clone())
        return ALIFState(z=zeros, v=v, i=zeros.clone(), b=zeros.clone())

    def _step(self, x_current, state, p):
        return alif_step(x_current, state, self.w_rec, p, self.dt, self.reset, self.refractory)

    def _constants(self) -> NeuronConstants:
        return NeuronConstants(self.tau_syn_inv, self.tau_mem_inv, self.v_leak, self.v_th, self.v_reset,
                               self.beta, self.tau_adapt_inv, self.method, self.alpha, self.reset,
                               self.refractory)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_lif={self.n_lif}, n_alif={self.n_alif}"
