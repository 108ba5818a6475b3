"""Adaptive LIF (LSNN) process: Lava's LIF dynamics plus an adaptive threshold.

Per step (Lava's LIF form, the converter maps Norse/``ALIFLayerSpec`` onto it)::

    u = u * (1 - du) + a_in + a_rec
    v = v * (1 - dv) + u + bias
    b = rho * b + (1 - rho) * z_prev
    z = v > vth + beta * b ;  v[z] = 0 ;  z_prev = z

With ``beta = 0`` the floating_pt model is Lava's ``PyLifModelFloat`` operation for
operation. The ``fixed_pt`` model is Lava's ``PyLifModelBitAcc`` (same integer arithmetic)
plus an integer threshold increment ``b`` (in v units)::

    b   = sgn(b) * ((|b| * (4096 - dth)) >> 12) + beta * z_prev      (beta: int per-spike jump)
    z   = v > (vth << 6) + b

Options of the LSNN recipe (both models): ``subtract``: ``v[z] -= v_sub`` instead of
``v[z] = 0``; ``refractory = R``: a counter ``r``; where ``r > 0`` the neuron does not spike and
``v`` keeps its previous value (u still integrates), ``r -= 1``; a spike sets ``r = R``.

Recurrent input arrives on its own port ``a_rec`` so that it can be discarded at a
sequence start (the recurrent synapse still carries z of the previous sequence's last step).
At a sequence start (see :mod:`.common`) u = 0, v = v_init, b = 0, r = 0, z_prev = 0, a_rec = 0.
"""
import typing as ty

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_backend.processes.common import (effective_bias, guarded, lava_decay_into,
                                           reset_table, wrap_u_inplace)


class ALIF(AbstractProcess):
    """Adaptive leaky integrate-and-fire population (LSNN).

    Parameters
    ----------
    shape : tuple
        ``(lanes * n,)``.
    du, dv : float or int
        Current / voltage decay (float: fraction; fixed: 12-bit, Lava's du/dv convention,
        du may be -1 for "no decay").
    vth : float or int
        Threshold (fixed: 17-bit mantissa, effective ``vth << 6``).
    bias_mant, bias_exp : array_like
        Bias (fixed: effective ``bias_mant << bias_exp``; float: bias_mant, exp ignored).
    v_init : array_like
        Voltage after a sequence reset (and at start).
    beta : array_like
        Per neuron: float model, the ``beta_k``; fixed model, the integer per-spike
        threshold jump ``round(S * beta_k * (1 - rho))``.
    rho : float
        Adaptation decay (float model).
    dth : int
        12-bit adaptation decay (fixed model), factor ``(4096 - dth) / 4096``.
    subtract : bool
        Reset by subtracting ``v_sub`` (else to 0).
    v_sub : float or int
        Subtracted from v at a spike (fixed: state units).
    refractory : int
        Steps without spiking after a spike, v held.
    reset_flags : np.ndarray, optional
        ``[G, lanes]`` bool, sequence starts per lane step (see :mod:`.common`).
    depth : int
        Pipeline depth: lane step ``g`` is processed at Lava step ``g + depth``.
    name : str, optional
    """

    def __init__(self, *, shape: ty.Tuple[int], du=0.0, dv=0.0, vth=1.0, bias_mant=0.0,
                 bias_exp=0, v_init=0.0, beta=0.0, rho=0.0, dth=0, subtract: bool = False,
                 v_sub=0.0, refractory: int = 0,
                 reset_flags: ty.Optional[np.ndarray] = None, depth: int = 0,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, reset_flags=reset_flags, depth=depth, subtract=bool(subtract),
                         refractory=int(refractory), name=name)
        self.a_in = InPort(shape=shape)
        self.a_rec = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        v_init = np.broadcast_to(np.asarray(v_init), shape).copy()
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=v_init)
        self.v_init = Var(shape=shape, init=v_init)
        self.b = Var(shape=shape, init=0)
        self.z_prev = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.vth = Var(shape=(1,), init=vth)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)
        self.beta = Var(shape=shape, init=beta)
        self.rho = Var(shape=(1,), init=rho)
        self.dth = Var(shape=(1,), init=dth)
        self.v_sub = Var(shape=(1,), init=v_sub)
        self.r = Var(shape=shape, init=0)


@implements(proc=ALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyALIFModelFloat(PyLoihiProcessModel):
    """Floating-point ALIF; with beta = 0 identical to Lava's PyLifModelFloat."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    v_init: np.ndarray = LavaPyType(np.ndarray, float)
    b: np.ndarray = LavaPyType(np.ndarray, float)
    z_prev: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)
    beta: np.ndarray = LavaPyType(np.ndarray, float)
    rho: np.ndarray = LavaPyType(np.ndarray, float)
    dth: np.ndarray = LavaPyType(np.ndarray, float)
    v_sub: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n = int(proc_params["shape"][0])
        self._resets = reset_table(proc_params, n)   # {time_step: neuron indices}
        self._t = np.empty(n)
        self._s = np.empty(n, dtype=bool)
        self._options = _Options(proc_params, n, float)

    @guarded
    def run_spk(self):
        # Same floating-point operations in the same order as the reference expressions
        # (u * (1 - du) + (a + r), ...), in place on buffers allocated once.
        a = self.a_in.recv()
        r = self.a_rec.recv()
        u, v, b, z, t, s = self.u, self.v, self.b, self.z_prev, self._t, self._s
        idx = self._resets.get(self.time_step)
        if idx is not None:
            u[idx] = 0.0
            v[idx] = self.v_init[idx]
            b[idx] = 0.0
            z[idx] = 0.0
            r[idx] = 0.0                         # recv() returns a fresh array
            self.r[idx] = 0
        rho = self.rho[0]
        u *= 1 - self.du[0]
        np.add(a, r, out=t)
        u += t
        self._options.keep(v)
        v *= 1 - self.dv[0]
        v += u
        v += self.bias_mant
        b *= rho
        np.multiply(z, 1 - rho, out=t)
        b += t
        np.multiply(self.beta, b, out=t)
        t += self.vth[0]
        np.greater(v, t, out=s)
        self._options.spike_reset(s, v, self.r, self.v_sub[0])
        z[:] = s
        self.s_out.send(s)


@implements(proc=ALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyALIFModelBitAcc(PyLoihiProcessModel):
    """Bit-accurate integer ALIF; with beta = 0 identical to Lava's PyLifModelBitAcc."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    b: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    z_prev: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=1)
    du: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=17)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=3)
    beta: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    rho: np.ndarray = LavaPyType(np.ndarray, float)
    dth: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=12)
    v_sub: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    r: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=8)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n = int(proc_params["shape"][0])
        self._resets = reset_table(proc_params, n)
        self._x = np.empty(n, dtype=np.int64)
        self._t = np.empty(n, dtype=np.int64)
        self._t2 = np.empty(n, dtype=np.int64)
        self._s = np.empty(n, dtype=bool)
        self._bias = None          # bias_mant << bias_exp, from the Vars on the first step
        self._options = _Options(proc_params, n, np.int64)

    @guarded
    def run_spk(self):
        # Lava's PyLifModelBitAcc integer arithmetic (see common.lava_decay / wrap_u / clip_v)
        # in place on int64 buffers allocated once.
        a = self.a_in.recv()
        r = self.a_rec.recv()
        u, v, b, z = self.u, self.v, self.b, self.z_prev
        x, t, t2, s = self._x, self._t, self._t2, self._s
        if self._bias is None:
            self._bias = effective_bias(self.bias_mant, self.bias_exp)
        idx = self._resets.get(self.time_step)
        if idx is not None:
            u[idx] = 0
            v[idx] = self.v_init[idx]
            b[idx] = 0
            z[idx] = 0
            r[idx] = 0
            self.r[idx] = 0
        np.add(a, r, out=x, dtype=np.int64)
        np.left_shift(x, 6, out=x)
        lava_decay_into(u, 4096 - (int(self.du[0]) + 1), u, t)
        u += x
        wrap_u_inplace(u, s)
        self._options.keep(v)
        lava_decay_into(v, 4096 - int(self.dv[0]), v, t)
        v += u
        v += self._bias
        np.clip(v, -2 ** 23 + 1, 2 ** 23 - 1, out=v)
        lava_decay_into(b, 4096 - int(self.dth[0]), b, t)
        np.multiply(self.beta, z, out=t2)
        b += t2
        np.minimum(b, 2 ** 23 - 1, out=b)
        np.add(b, int(self.vth[0]) << 6, out=t)
        np.greater(v, t, out=s)
        self._options.spike_reset(s, v, self.r, int(self.v_sub[0]))
        z[:] = s
        self.s_out.send(s)


class _Options:
    """Reset by subtraction and refractory period, shared by both models (in place, buffers
    allocated once): ``keep(v)`` before the voltage update, ``spike_reset`` after the threshold."""

    def __init__(self, proc_params, n: int, dtype) -> None:
        self.subtract = bool(proc_params.get("subtract", False))
        self.refractory = int(proc_params.get("refractory", 0))
        self.v_prev = np.empty(n, dtype=dtype) if self.refractory else None
        self.ref = np.empty(n, dtype=bool)

    def keep(self, v):
        if self.refractory:
            self.v_prev[:] = v

    def spike_reset(self, s, v, r, v_sub):
        if self.refractory:  # refractory neurons: no spike, previous v, count down
            ref = self.ref
            np.greater(r, 0, out=ref)
            s &= ~ref
            v[ref] = self.v_prev[ref]
            r[ref] -= 1
            r[s] = self.refractory
        if self.subtract:
            v[s] -= v_sub
        else:
            v[s] = 0
