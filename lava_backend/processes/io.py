"""Input source and fast sink processes."""
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

from lava_backend.processes.common import guarded


class SequenceSource(AbstractProcess):
    """Graded input source: sends row ``data[time_step - 1]`` every step.

    Parameters
    ----------
    data : np.ndarray
        ``[G, size]``: the lane-major input of all lanes for G lane steps (real-valued for
        ``floating_pt``, integer payloads for ``fixed_pt``). After row G-1 it sends zeros.
    fault_step : int, optional
        Test hook: the model raises ``RuntimeError`` at this Lava time step.
    name : str, optional
    """

    def __init__(self, *, data: np.ndarray, fault_step: ty.Optional[int] = None,
                 name: ty.Optional[str] = None) -> None:
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"SequenceSource: data must be [steps, size], got {data.shape}")
        super().__init__(data=data, fault_step=fault_step, name=name)
        self.s_out = OutPort(shape=(data.shape[1],))
        self.num_rows = Var(shape=(1,), init=data.shape[0])


class _AbstractSourceModel(PyLoihiProcessModel):
    s_out = None
    num_rows = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._data = proc_params["data"]
        self._fault = proc_params.get("fault_step", None)
        self._zeros = np.zeros(self._data.shape[1], dtype=self._dtype)

    @guarded
    def run_spk(self):
        if self._fault is not None and self.time_step == self._fault:
            raise RuntimeError(f"SequenceSource: injected fault at step {self.time_step}")
        g = self.time_step - 1
        if g < self._data.shape[0]:
            self.s_out.send(self._data[g].astype(self._dtype, copy=False))
        else:
            self.s_out.send(self._zeros)


@implements(proc=SequenceSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySequenceSourceFloat(_AbstractSourceModel):
    """Sends float64 rows."""
    _dtype = np.float64
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    num_rows: np.ndarray = LavaPyType(np.ndarray, int)


@implements(proc=SequenceSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PySequenceSourceFixed(_AbstractSourceModel):
    """Sends int32 graded payloads (the converter limits them to ``input_bits``)."""
    _dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    num_rows: np.ndarray = LavaPyType(np.ndarray, int)


class StepSink(AbstractProcess):
    """Records the vector arriving at ``a_in`` for lane steps ``g = time_step - offset`` in
    ``[0, num_steps)`` into a preallocated ``[num_steps, size]`` array, and writes it once
    with ``np.save(path)`` at Lava step ``dump_step``.

    Reading through a file avoids ``Var.get()``, which Lava transfers element by element
    (~20 us per element).

    Parameters
    ----------
    shape : tuple
        ``(size,)`` of the incoming vector.
    num_steps : int
        Number of lane steps G to record.
    offset : int
        Pipeline depth of the producer (lane step g arrives at Lava step g + offset).
    path : str
        ``.npy`` file written at ``dump_step``.
    dump_step : int
        Lava time step after whose recording the array is written.
    dtype : str
        numpy dtype of the buffer ("uint8" for spikes, "float64", "int64").
    name : str, optional
    """

    def __init__(self, *, shape: ty.Tuple[int], num_steps: int, offset: int, path: str,
                 dump_step: int, dtype: str = "float64",
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, num_steps=num_steps, offset=offset, path=path,
                         dump_step=dump_step, dtype=dtype, name=name)
        self.a_in = InPort(shape=shape)
        self.written = Var(shape=(1,), init=0)


class _AbstractSinkModel(PyLoihiProcessModel):
    a_in = None
    written = None

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._offset = int(p["offset"])
        self._dump = int(p["dump_step"])
        self._path = p["path"]
        self._buf = np.zeros((int(p["num_steps"]), int(p["shape"][0])), dtype=p["dtype"])

    @guarded
    def run_spk(self):
        x = self.a_in.recv()
        g = self.time_step - self._offset
        if 0 <= g < self._buf.shape[0]:
            self._buf[g] = x
        if self.time_step == self._dump:
            np.save(self._path, self._buf)
            self.written[:] = 1


@implements(proc=StepSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyStepSinkFloat(_AbstractSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    written: np.ndarray = LavaPyType(np.ndarray, int)


@implements(proc=StepSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyStepSinkFixed(_AbstractSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    written: np.ndarray = LavaPyType(np.ndarray, int)
