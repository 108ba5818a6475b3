"""Pure-numpy mapping of a ``NetworkSpec`` onto Lava's LIF parameterisation ("Lava form").

Norse LIF (``LIFLayerSpec``) -> Lava LIF, exactly (no approximation)::

    du = dt * tau_syn_inv          dv = dt * tau_mem_inv
    v_L = v - v_reset              vth = v_th - v_reset
    u_L = dv * i_jump              bias = dv * (v_leak - v_reset)
    W_L = dv * W                   v_init = v_leak - v_reset (Norse's initial v = v_leak)

Lava's float LIF step ``u = u*(1-du) + a; v = v*(1-dv) + u + bias; s = v > vth; v[s] = 0``
then reproduces i, v and z of the spec. ALIF adds ``thr = vth + beta * b`` with
``b = rho*b + (1-rho)*z[t-1]``, ``rho = exp(-dt*tau_adapt_inv)``.
LI readout: v_L = v (no shift), u = dv * i_jump, bias_v = dv*v_leak, W_L = dv*W,
v_init = v_leak, y = v + bias. Linear readout: y = W h + bias.

LSNN recipe options: ``reset="subtract"`` (v = v' - v_th) is ``v_L[s] -= v_sub`` with
``v_sub = v_th`` (not vth: v_L is shifted by v_reset); ``refractory = R``: a counter r per
neuron, while r > 0 the neuron cannot spike and v_L is held (u still integrates), r -= 1; a
spike sets r = R. ``n_repeat = n``: the layers run n steps per input frame; the readout sums
its input over the frame's n steps with weights W/n (W_L = dv*W/n) and updates once per frame
(see :mod:`.convert`).

Initial state of every sequence: i = 0, v = v_leak, b = 0, z[-1] = 0, LSTM h = c = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from spiking_deepr.errors import UserError
from spiking_deepr.export import (ALIFLayerSpec, LIFLayerSpec, LSTMLayerSpec, NetworkSpec,
                                  SparseWeights)


class ConversionError(UserError, ValueError):
    """A NetworkSpec feature that cannot be mapped onto Lava / Loihi."""


def scalar(value, what: str) -> float:
    """A per-population scalar; per-neuron (non-constant) arrays are rejected."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0 or arr.size == 1:
        return float(arr.reshape(-1)[0])
    if np.all(arr == arr.reshape(-1)[0]):
        return float(arr.reshape(-1)[0])
    raise ConversionError(
        f"{what}: per-neuron values are not supported (Lava's LIF/ALIF take one scalar per "
        f"population); got an array of shape {arr.shape} with differing entries")


def csr_of(w: SparseWeights, factor: float = 1.0):
    """float64 CSR keeping explicit zeros, values multiplied by ``factor``."""
    from scipy.sparse import csr_matrix

    vals = w.values.astype(np.float64) * factor
    m = csr_matrix((vals, (w.rows, w.cols)), shape=tuple(w.shape))
    m.sort_indices()
    return m


@dataclass
class LavaLayer:
    """One layer in Lava form (float)."""

    kind: str                  # "lif", "alif", "lstm"
    name: str
    n: int                     # neurons (LSTM: hidden H)
    n_in: int
    w_in: object               # scipy CSR [n or 4H, n_in], already scaled by dv
    w_rec: object              # scipy CSR or None
    du: float = 0.0
    dv: float = 0.0
    vth: float = 0.0
    bias: float = 0.0
    v_init: float = 0.0
    beta: np.ndarray = None    # [n], 0 for LIF
    rho: float = 0.0
    lstm_bias: np.ndarray = None
    graded_input: bool = False  # input is real-valued (network input or LSTM h)
    subtract: bool = False     # reset by subtracting v_sub (else v_L = 0)
    v_sub: float = 0.0
    refractory: int = 0        # steps without spiking after a spike, v held


@dataclass
class LavaReadout:
    kind: str
    n_in: int
    n_out: int
    w: object                  # CSR, scaled by dv for li
    du: float = 0.0
    dv: float = 0.0
    bias_v: float = 0.0
    v_init: float = 0.0
    out_bias: np.ndarray = None
    graded_input: bool = False


@dataclass
class LavaForm:
    n_input: int
    dt: float
    layers: List[LavaLayer]
    readout: LavaReadout
    n_repeat: int = 1


def _check_weights(w: SparseWeights, shape, what: str) -> None:
    if tuple(w.shape) != tuple(shape):
        raise ConversionError(f"{what}: shape {tuple(w.shape)} != expected {tuple(shape)}")
    if w.nnz and (w.rows.min() < 0 or w.rows.max() >= shape[0] or w.cols.min() < 0
                  or w.cols.max() >= shape[1]):
        raise ConversionError(f"{what}: indices out of range for shape {shape}")
    if not np.all(np.isfinite(w.values)):
        raise ConversionError(f"{what}: non-finite weights")


def lava_form(spec: NetworkSpec) -> LavaForm:
    """Validate ``spec`` and map it onto Lava's parameterisation (see module docstring)."""
    if not spec.dt > 0:
        raise ConversionError(f"dt must be > 0, got {spec.dt}")
    if not spec.layers:
        raise ConversionError("NetworkSpec has no layers")
    n_repeat = getattr(spec, "n_repeat", 1)
    if int(n_repeat) != n_repeat or n_repeat < 1:
        raise ConversionError(f"n_repeat must be a whole number >= 1, got {n_repeat!r}")
    layers: List[LavaLayer] = []
    n_prev, graded = spec.n_input, not spec.input_spikes
    for li, ls in enumerate(spec.layers):
        where = f"layer {li} ({getattr(ls, 'name', '?')})"
        if isinstance(ls, LSTMLayerSpec):
            H = int(ls.hidden)
            _check_weights(ls.w_ih, (4 * H, n_prev), f"{where} w_ih")
            _check_weights(ls.w_hh, (4 * H, H), f"{where} w_hh")
            bias = np.asarray(ls.bias, dtype=np.float64).reshape(-1)
            if bias.shape != (4 * H,):
                raise ConversionError(f"{where}: bias must have shape [{4 * H}], got {bias.shape}")
            layers.append(LavaLayer(kind="lstm", name=ls.name, n=H, n_in=n_prev,
                                    w_in=csr_of(ls.w_ih), w_rec=csr_of(ls.w_hh),
                                    lstm_bias=bias, graded_input=graded))
            n_prev, graded = H, True
            continue
        if not isinstance(ls, LIFLayerSpec):
            raise ConversionError(f"{where}: unsupported layer type {type(ls).__name__}")
        n = int(ls.n)
        reset, refractory = getattr(ls, "reset", "value"), getattr(ls, "refractory", 0)
        if reset not in ("value", "subtract"):
            raise ConversionError(f"{where}: reset must be 'value' or 'subtract', got {reset!r}")
        if int(refractory) != refractory or refractory < 0:
            raise ConversionError(f"{where}: refractory must be a whole number of steps >= 0, got {refractory!r}")
        _check_weights(ls.w_in, (n, n_prev), f"{where} w_in")
        if ls.w_rec is not None:
            _check_weights(ls.w_rec, (n, n), f"{where} w_rec")
        du = spec.dt * scalar(ls.tau_syn_inv, f"{where} tau_syn_inv")
        dv = spec.dt * scalar(ls.tau_mem_inv, f"{where} tau_mem_inv")
        v_th = scalar(ls.v_th, f"{where} v_th")
        v_leak = scalar(ls.v_leak, f"{where} v_leak")
        v_reset = scalar(ls.v_reset, f"{where} v_reset")
        if not (0.0 <= du <= 1.0 and 0.0 < dv <= 1.0):
            raise ConversionError(
                f"{where}: need 0 <= dt*tau_syn_inv <= 1 and 0 < dt*tau_mem_inv <= 1, got "
                f"{du}, {dv}")
        if v_th <= v_reset:
            raise ConversionError(f"{where}: v_th ({v_th}) must exceed v_reset ({v_reset})")
        beta = np.zeros(n)
        rho = 0.0
        kind = "lif"
        if isinstance(ls, ALIFLayerSpec):
            kind = "alif"
            if ls.beta is None:
                raise ConversionError(f"{where}: ALIF layer without beta")
            beta = np.asarray(ls.beta, dtype=np.float64).reshape(-1)
            if beta.shape != (n,):
                raise ConversionError(f"{where}: beta must have shape [{n}], got {beta.shape}")
            if np.any(beta < 0):
                raise ConversionError(f"{where}: negative beta is not supported")
            rho = float(np.exp(-spec.dt * scalar(ls.tau_adapt_inv, f"{where} tau_adapt_inv")))
        layers.append(LavaLayer(
            kind=kind, name=ls.name, n=n, n_in=n_prev, w_in=csr_of(ls.w_in, dv),
            w_rec=None if ls.w_rec is None else csr_of(ls.w_rec, dv), du=du, dv=dv,
            vth=v_th - v_reset, bias=dv * (v_leak - v_reset), v_init=v_leak - v_reset,
            beta=beta, rho=rho, graded_input=graded, subtract=reset == "subtract", v_sub=v_th,
            refractory=int(refractory)))
        n_prev, graded = n, False
    ro = spec.readout
    C = int(ro.weights.shape[0])
    _check_weights(ro.weights, (C, n_prev), "readout weights")
    out_bias = np.asarray(ro.bias, dtype=np.float64).reshape(-1)
    if out_bias.size == 1:
        out_bias = np.full(C, out_bias[0])
    if out_bias.shape != (C,):
        raise ConversionError(f"readout bias must have shape [{C}], got {out_bias.shape}")
    if ro.kind == "li":
        du = spec.dt * scalar(ro.tau_syn_inv, "readout tau_syn_inv")
        dv = spec.dt * scalar(ro.tau_mem_inv, "readout tau_mem_inv")
        v_leak = scalar(ro.v_leak, "readout v_leak")
        if not (0.0 <= du <= 1.0 and 0.0 <= dv <= 1.0):
            raise ConversionError(f"readout: need 0 <= du, dv <= 1, got {du}, {dv}")
        readout = LavaReadout(kind="li", n_in=n_prev, n_out=C, w=csr_of(ro.weights, dv / n_repeat),
                              du=du, dv=dv, bias_v=dv * v_leak, v_init=v_leak,
                              out_bias=out_bias, graded_input=graded)
    elif ro.kind == "linear":
        readout = LavaReadout(kind="linear", n_in=n_prev, n_out=C, w=csr_of(ro.weights, 1.0 / n_repeat),
                              out_bias=out_bias, graded_input=graded)
    else:
        raise ConversionError(f"readout kind {ro.kind!r} is not supported ('li', 'linear')")
    return LavaForm(n_input=spec.n_input, dt=spec.dt, layers=layers, readout=readout, n_repeat=int(n_repeat))


@dataclass
class SimulationResult:
    """Outputs aligned to PyTorch steps; entries at t >= lengths[k] are 0.

    layers:   per layer [N, T, n] spikes (uint8) or LSTM h (float64); with n_repeat > 1 at the
              simulation rate, [N, T * n_repeat, n] (valid below lengths[k] * n_repeat)
    readout:  [N, T, C] float64 (fixed point: dequantised)
    readout_int: [N, T, C] int64 raw fixed-point readout (fixed precision only)
    """

    layers: List[np.ndarray]
    readout: np.ndarray
    lengths: np.ndarray
    readout_int: Optional[np.ndarray] = None
    steps_per_second: float = float("nan")        # Lava time steps per wall second (run)
    sequence_steps_per_second: float = float("nan")  # PyTorch steps (all sequences) / s
    lava_steps: int = 0
    lanes: int = 1
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def predictions(self) -> np.ndarray:
        """argmax class per step, [N, T]."""
        return self.readout.argmax(-1)


def check_input(spec_n_input: int, x, lengths):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != spec_n_input:
        raise ValueError(f"x must be [N, T, {spec_n_input}], got {x.shape}")
    N, T, _ = x.shape
    if lengths is None:
        lengths = np.full(N, T, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if lengths.shape != (N,) or np.any(lengths < 1) or np.any(lengths > T):
        raise ValueError(f"lengths must be N={N} values in [1, {T}], got {lengths}")
    return x, lengths
