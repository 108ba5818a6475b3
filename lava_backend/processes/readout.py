"""Readout process: frame-wise linear readout or Norse leaky integrator ("li").

floating_pt, Lava LIF form without threshold (the converter maps ``ReadoutSpec``)::

    li:      u = u * (1 - du) + a_in ;  v = v * (1 - dv) + u + bias_v ;  y = v + out_bias
    linear:  y = a_in + out_bias

fixed_pt (integers): li uses Lava's bit-accurate LIF arithmetic (u decay with du + 1,
``a_in << 6``, 24-bit wrap of u, 24-bit clip of v, ``bias_mant << bias_exp``) without
threshold; linear is ``y = a_in + out_bias``. y is sent (graded) to a sink.
At a sequence start u = 0 and v = v_init.

``n_repeat = n`` (frames presented for n steps each, see :mod:`lava_backend.convert`): the
input is summed over the n steps of each frame (lane steps ``g`` with ``g // n`` equal; every
sequence starts on a multiple of n) and the readout updates once, at the frame's last step,
with that sum as its input; in between it sends its previous output again.
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


class Readout(AbstractProcess):
    """Readout population (``lanes * C`` units).

    Parameters
    ----------
    shape : tuple
        ``(lanes * C,)``.
    kind : str
        "li" or "linear".
    du, dv : float or int
        Decays of the li readout (fixed: 12-bit Lava convention).
    bias_mant, bias_exp : array_like
        Voltage bias of the li readout (v_leak term).
    v_init : array_like
        v after a sequence reset.
    out_bias : array_like
        Added to the output (the ReadoutSpec bias).
    reset_flags : np.ndarray, optional
        (with n_repeat > 1: flagged at the last step of a sequence's first frame)
    depth : int
    n_repeat : int
        Simulation steps per frame (see module docstring).
    name : str, optional
    """

    def __init__(self, *, shape: ty.Tuple[int], kind: str = "li", du=0.0, dv=0.0,
                 bias_mant=0.0, bias_exp=0, v_init=0.0, out_bias=0.0,
                 reset_flags: ty.Optional[np.ndarray] = None, depth: int = 0, n_repeat: int = 1,
                 name: ty.Optional[str] = None) -> None:
        if kind not in ("li", "linear"):
            raise ValueError(f"Readout: kind must be 'li' or 'linear', got {kind!r}")
        super().__init__(shape=shape, kind=kind, reset_flags=reset_flags, depth=depth,
                         n_repeat=int(n_repeat), name=name)
        v_init = np.broadcast_to(np.asarray(v_init), shape).copy()
        self.a_in = InPort(shape=shape)
        self.y_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=v_init)
        self.v_init = Var(shape=shape, init=v_init)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)
        self.out_bias = Var(shape=shape, init=out_bias)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    v_init: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)
    out_bias: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n = int(proc_params["shape"][0])
        self._linear = proc_params["kind"] == "linear"
        self._resets = {} if self._linear else reset_table(proc_params, n)
        self._y = np.zeros(n)
        self._frames = _FrameSum(proc_params, n, float)

    @guarded
    def run_spk(self):
        # same operations and order as u * (1 - du) + a ; v * (1 - dv) + u + bias ; v + out_bias
        a = self._frames.add(self.a_in.recv(), self.time_step)
        y = self._y
        if a is None:  # inside a frame: hold the output
            self.y_out.send(y)
            return
        if self._linear:
            np.add(a, self.out_bias, out=y)
            self.y_out.send(y)
            return
        u, v = self.u, self.v
        idx = self._resets.get(self.time_step)
        if idx is not None:
            u[idx] = 0.0
            v[idx] = self.v_init[idx]
        u *= 1 - self.du[0]
        u += a
        v *= 1 - self.dv[0]
        v += u
        v += self.bias_mant
        np.add(v, self.out_bias, out=y)
        self.y_out.send(y)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyReadoutModelBitAcc(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    y_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    du: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=12)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=3)
    out_bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        n = int(proc_params["shape"][0])
        self._linear = proc_params["kind"] == "linear"
        self._resets = {} if self._linear else reset_table(proc_params, n)
        self._x = np.empty(n, dtype=np.int64)
        self._t = np.empty(n, dtype=np.int64)
        self._y = np.zeros(n, dtype=np.int64)
        self._m = np.empty(n, dtype=bool)
        self._bias = None
        self._frames = _FrameSum(proc_params, n, np.int64)

    @guarded
    def run_spk(self):
        a = self._frames.add(self.a_in.recv(), self.time_step)
        y = self._y
        if a is None:  # inside a frame: hold the output
            self.y_out.send(y)
            return
        if self._linear:
            np.add(a, self.out_bias, out=y, dtype=np.int64)
            self.y_out.send(y)
            return
        u, v, x, t = self.u, self.v, self._x, self._t
        if self._bias is None:
            self._bias = effective_bias(self.bias_mant, self.bias_exp)
        idx = self._resets.get(self.time_step)
        if idx is not None:
            u[idx] = 0
            v[idx] = self.v_init[idx]
        np.left_shift(a, 6, out=x, dtype=np.int64)
        lava_decay_into(u, 4096 - (int(self.du[0]) + 1), u, t)
        u += x
        wrap_u_inplace(u, self._m)
        lava_decay_into(v, 4096 - int(self.dv[0]), v, t)
        v += u
        v += self._bias
        np.clip(v, -2 ** 23 + 1, 2 ** 23 - 1, out=v)
        np.add(v, self.out_bias, out=y)
        self.y_out.send(y)


class _FrameSum:
    """Sums the readout's input over the n_repeat steps of each frame (see module docstring)."""

    def __init__(self, proc_params, n: int, dtype) -> None:
        self.n_repeat = int(proc_params.get("n_repeat", 1))
        self.depth = int(proc_params.get("depth", 0))
        self.acc = np.zeros(n, dtype=dtype)

    def add(self, a, time_step):
        """The frame's summed input at its last step, else None (a itself when n_repeat = 1)."""
        if self.n_repeat == 1:
            return a
        k = (time_step - self.depth) % self.n_repeat
        if k == 0:
            self.acc[:] = a
        else:
            self.acc += a
        return self.acc if k == self.n_repeat - 1 else None
