"""LSTM process (floating point), torch.nn.LSTM equations, gate order (i, f, g, o).

Per step, for each lane (inputs lane-major, ``[lanes, 4H]``)::

    gates = a_in + a_rec + bias
    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the four H-slices
    c = f * c + i * g ;  h = o * tanh(c)        (h is sent, graded)

``a_in`` carries W_ih x[t], ``a_rec`` W_hh h[t-1] (one-step synapse delay). At a sequence
start h = c = 0 and a_rec is discarded.
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

from lava_backend.processes.common import guarded, reset_mask


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class LSTM(AbstractProcess):
    """LSTM population of ``lanes`` independent copies of an H-unit layer.

    Parameters
    ----------
    hidden : int
        H.
    lanes : int
        Number of independent copies (block-diagonal synapses).
    bias : array_like
        ``[4H]`` gate bias (b_ih + b_hh), shared by all lanes.
    reset_flags : np.ndarray, optional
        ``[G, lanes]`` bool, sequence starts per lane step.
    depth : int
        Pipeline depth.
    name : str, optional
    """

    def __init__(self, *, hidden: int, lanes: int = 1, bias=None,
                 reset_flags: ty.Optional[np.ndarray] = None, depth: int = 0,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(hidden=hidden, lanes=lanes, reset_flags=reset_flags, depth=depth,
                         name=name)
        n = hidden * lanes
        bias = np.zeros(4 * hidden) if bias is None else np.asarray(bias, dtype=float)
        self.a_in = InPort(shape=(4 * n,))
        self.a_rec = InPort(shape=(4 * n,))
        self.s_out = OutPort(shape=(n,))
        self.h = Var(shape=(n,), init=0)
        self.c = Var(shape=(n,), init=0)
        self.bias = Var(shape=(4 * n,), init=np.tile(bias, lanes))


@implements(proc=LSTM, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLSTMModelFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    h: np.ndarray = LavaPyType(np.ndarray, float)
    c: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    @guarded
    def run_spk(self):
        a = self.a_in.recv()
        r = self.a_rec.recv()
        H, lanes = int(self.proc_params["hidden"]), int(self.proc_params["lanes"])
        m = reset_mask(self.proc_params, self.time_step, self.h.shape[0])
        if m is not None:
            self.h[m] = 0.0
            self.c[m] = 0.0
            r = np.where(np.repeat(m.reshape(lanes, H)[:, :1], 4 * H, axis=1).ravel(), 0.0, r)
        gates = (a + r + self.bias).reshape(lanes, 4, H)
        i = sigmoid(gates[:, 0])
        f = sigmoid(gates[:, 1])
        g = np.tanh(gates[:, 2])
        o = sigmoid(gates[:, 3])
        c = f * self.c.reshape(lanes, H) + i * g
        h = o * np.tanh(c)
        self.c[:] = c.ravel()
        self.h[:] = h.ravel()
        self.s_out.send(self.h.copy())
