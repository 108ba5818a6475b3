"""Benchmark: Lava steps per second of the demo network against the floor of an empty graph.

Requirement: Lava time steps per second of the demo network against the floor of an otherwise
empty graph with the same number of processes, in the same run; target: demo time per step
<= 1.5 x the floor's.

Demo network
------------
The ``make demo`` LSNN: one layer of 200 neurons (150 LIF + 50 ALIF, beta 1.8,
tau_adapt_inv 5, dt 1e-3, tau_syn_inv 200, tau_mem_inv 50, v_th 1), 39 MFCC inputs, input and
recurrent connectivity 10 % (no diagonal), a dense 39-class ``li`` readout. By default the
``NetworkSpec`` is built here with seeded random weights scaled so that the layer spikes at a
few % per step, driven by 8 seeded N(0, 1) "MFCC" sequences of 140..280 frames (the demo's
test utterances are of that length). ``--run runs/demo`` instead loads the trained run
(``spiking_deepr.train.load_run`` -> ``model.to_spec()``) and its first 8 test utterances,
exactly what ``sdr simulate`` / ``make demo`` feed to Lava.

Graph (``lava_backend.convert``), 8 processes, 8 connections::

    SequenceSource -> Sparse(w_in) -> ALIF <-> Sparse(w_rec);  ALIF -> StepSink
                   ALIF -> Sparse(readout.w) -> Readout -> StepSink

Cases: precision float / fixed, and lanes 1 (all sequences back to back in one lane) / 8 (the
lanes ``sdr simulate`` uses: ``simulate`` defaults to ``min(N, 32)`` lanes and the demo
simulates N = 8 utterances, one per lane).

The floor
---------
``floor`` (the one the target is checked against) is the *same graph with every process
replaced by a pass-through twin that does no work*: the twin graph is built by walking the
demo graph's processes and port connections (``_mirror``), so it has the same number of
processes, the same ports (names, shapes, and the same dtypes as the real ProcessModels of
that precision) and the same connections, including the recurrent loop. Each twin's
``run_spk`` only does what Lava needs to keep the graph running: it ``recv()``s every
InPort and ``send()``s a preallocated zero vector on every OutPort, in the real model's order
(synapses send their buffered output before receiving, as Lava's ``Sparse`` does, which is
what lets the recurrent loop run). It runs for the same number of Lava steps under the same
run config and LoihiProtocol, so it pays exactly Lava's fixed per-step cost -- the runtime
service's phase commands and acknowledgements to every process, the per-phase
synchronisation, the channel transfer of every message (same payload sizes) -- and nothing
else.

This was chosen over "the real processes with 1 neuron and empty weights" because the latter
also counts the real ProcessModels' fixed Python/numpy overhead per call (reset checks, ~20
small numpy ops, Lava's bit-accurate Sparse bookkeeping), which is per-step cost of *this
package's models*, not of Lava's runtime. That variant is measured as well and reported as
``tiny`` (same ``convert``ed graph, same schedule and lanes, 1 input / 1 neuron / 1 class
per lane, explicit zero weights), so the gap floor -> tiny -> demo splits into "fixed model
overhead" and "work that scales with the network".

Every (precision, lanes) case runs demo, floor and tiny back to back, ``--repeats`` times in
rotating order, each run in a forked child (as ``simulate(isolate=True)`` does), in the same
invocation and on the same machine state; the median of each is reported. Steps per second
are Lava time steps (``graph.num_steps``) over the run phase only (``root.run``), excluding
compilation and runtime start-up, i.e. ``SimulationResult.steps_per_second``.

Writes ``benchmarks/results/bench_lava.json`` and prints a Markdown table.

    python benchmarks/bench_lava.py [--quick] [--run runs/demo] [--repeats 3]
                                    [--precision float fixed] [--lanes 1 8]
                                    [--what-if] [--profile]

``--profile`` runs demo and floor once more per case with a timer around every ProcessModel's
``run_spk`` inside the Lava worker processes (cProfile in the parent cannot see them): per
process the CPU time per step inside ``run_spk`` (``time.thread_time``; blocking ``recv``
waits use none) and of the whole worker, plus the CPU of all Lava workers together
(runtime service included). What is not in ``run_spk`` is Lava's runtime.

The demo graph is the production one: ``LavaGraph.run_cfg`` runs Lava's ``Sparse`` with
``lava_backend.processes.sparse`` (binary spikes as ``W @ s``). ``--what-if`` adds
``demo_lava_sparse``: the same graph with Lava 0.10's own Sparse models
(``W[:, s].sum(axis=1).A1``, scipy CSR column masking, which builds a new sparse matrix every
step: ~120-220 us per call whatever the size); it checks that spikes are identical (readout
within ~1e-15) and reports its ratio to the floor.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spiking_deepr.checkpoint import dumps_strict  # noqa: E402

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

TARGET = 1.5
N_SEQ = 8


# =========================================================================== null processes
# Pass-through twins of the graph's process kinds: same ports, no work. Each has a float and a
# fixed model with the port dtypes of the real models of that precision.
class NullSource(AbstractProcess):
    """Twin of SequenceSource: sends zeros on ``s_out``."""

    def __init__(self, *, s_out: tuple, name: Optional[str] = None) -> None:
        super().__init__(name=name, out_shapes={"s_out": s_out})
        self.s_out = OutPort(shape=s_out)


class NullConn(AbstractProcess):
    """Twin of Lava's Sparse: sends zeros on ``a_out`` (first, like Sparse), receives ``s_in``."""

    def __init__(self, *, s_in: tuple, a_out: tuple, name: Optional[str] = None) -> None:
        super().__init__(name=name, out_shapes={"a_out": a_out})
        self.s_in = InPort(shape=s_in)
        self.a_out = OutPort(shape=a_out)


class NullNeuron(AbstractProcess):
    """Twin of ALIF / LIF / LSTM: receives ``a_in`` and ``a_rec``, sends zeros on ``s_out``."""

    def __init__(self, *, a_in: tuple, s_out: tuple, a_rec: Optional[tuple] = None,
                 name: Optional[str] = None) -> None:
        super().__init__(name=name, out_shapes={"s_out": s_out})
        self.a_in = InPort(shape=a_in)
        self.a_rec = InPort(shape=a_rec or a_in)
        self.s_out = OutPort(shape=s_out)


class NullReadout(AbstractProcess):
    """Twin of Readout: receives ``a_in``, sends zeros on ``y_out``."""

    def __init__(self, *, a_in: tuple, y_out: tuple, name: Optional[str] = None) -> None:
        super().__init__(name=name, out_shapes={"y_out": y_out})
        self.a_in = InPort(shape=a_in)
        self.y_out = OutPort(shape=y_out)


class NullSink(AbstractProcess):
    """Twin of StepSink: receives ``a_in``."""

    def __init__(self, *, a_in: tuple, name: Optional[str] = None) -> None:
        super().__init__(name=name)
        self.a_in = InPort(shape=a_in)


class _NullModel(PyLoihiProcessModel):
    """recv() every InPort, send() preallocated zeros on every OutPort; ``_send_first`` as
    Lava's Sparse (which sends its buffered a_out before receiving)."""

    _ins: tuple = ()
    _outs: tuple = ()
    _send_first = False
    _dtype = np.float64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        shapes = proc_params.get("out_shapes", {})
        self._zeros = [(name, np.zeros(shapes[name], dtype=self._dtype)) for name in self._outs]

    def _send(self):
        for name, z in self._zeros:
            getattr(self, name).send(z)

    def run_spk(self):
        if self._send_first:
            self._send()
        for name in self._ins:
            getattr(self, name).recv()
        if not self._send_first:
            self._send()


_I24 = dict(precision=24)


@implements(proc=NullSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNullSourceFloat(_NullModel):
    _outs = ("s_out",)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NullSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyNullSourceFixed(_NullModel):
    _outs = ("s_out",)
    _dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, **_I24)


@implements(proc=NullConn, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNullConnFloat(_NullModel):
    _ins, _outs, _send_first = ("s_in",), ("a_out",), True
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NullConn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyNullConnFixed(_NullModel):
    _ins, _outs, _send_first = ("s_in",), ("a_out",), True
    _dtype = np.int32
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, **_I24)


@implements(proc=NullNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNullNeuronFloat(_NullModel):
    _ins, _outs = ("a_in", "a_rec"), ("s_out",)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NullNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyNullNeuronFixed(_NullModel):
    _ins, _outs = ("a_in", "a_rec"), ("s_out",)
    _dtype = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I24)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, **_I24)


@implements(proc=NullReadout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNullReadoutFloat(_NullModel):
    _ins, _outs = ("a_in",), ("y_out",)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NullReadout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyNullReadoutFixed(_NullModel):
    _ins, _outs = ("a_in",), ("y_out",)
    _dtype = np.int64
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I24)
    y_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=32)


@implements(proc=NullSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNullSinkFloat(_NullModel):
    _ins = ("a_in",)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=NullSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyNullSinkFixed(_NullModel):
    _ins = ("a_in",)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, **_I24)


_TWIN = {"SequenceSource": NullSource, "Sparse": NullConn, "ALIF": NullNeuron,
         "LIF": NullNeuron, "LSTM": NullNeuron, "Readout": NullReadout, "StepSink": NullSink}


def _mirror(graph):
    """The floor graph: a pass-through twin of every process of ``graph`` (a LavaGraph), with
    the same ports (shapes) and the same connections. Returns a LavaGraph-like object that
    ``run_graph`` accepts (root, num_steps, run_cfg)."""
    from lava_backend.convert import LavaGraph

    twins, by_id = {}, {}
    for key, proc in graph.processes.items():
        kind = type(proc).__name__
        if kind not in _TWIN:
            raise TypeError(f"no floor twin for process {key!r} of type {kind}")
        ports = {p.name: tuple(p.shape) for p in proc.in_ports.members + proc.out_ports.members}
        if _TWIN[kind] is NullNeuron:
            ports = {"a_in": ports["a_in"], "s_out": ports["s_out"],
                     "a_rec": ports.get("a_rec", ports["a_in"])}
        twin = _TWIN[kind](name=f"null.{key}", **ports)
        twins[key], by_id[id(proc)] = twin, twin
    n_conn = 0
    for proc in graph.processes.values():
        for op in proc.out_ports.members:
            for ip in op.out_connections:
                getattr(by_id[id(proc)], op.name).connect(getattr(by_id[id(ip.process)], ip.name))
                n_conn += 1
    return LavaGraph(precision=graph.precision, schedule=graph.schedule,
                     num_steps=graph.num_steps, T=graph.T, processes=twins, sink_paths={},
                     layer_kinds=[], info={"n_processes": len(twins), "n_connections": n_conn})


def _count_connections(graph) -> int:
    return sum(len(op.out_connections) for p in graph.processes.values()
               for op in p.out_ports.members)


# =========================================================================== what-if model
# ``--what-if``: the demo graph run with Lava 0.10's own Sparse models instead of the
# production ``W @ s`` models (for comparison).
def _with_lava_sparse(graph):
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat
    from lava.proc.sparse.process import Sparse

    fixed = graph.precision == "fixed"
    model = PySparseModelBitAcc if fixed else PySparseModelFloat
    graph.run_cfg = lambda: Loihi2SimCfg(
        select_tag="fixed_pt" if fixed else "floating_pt",
        exception_proc_model_map={Sparse: model})
    return graph


# =========================================================================== networks
def _rand_sparse(rng, n_out, n_in, nnz, scale, no_diagonal=False):
    from spiking_deepr.export import SparseWeights

    cells = np.arange(n_out * n_in)
    if no_diagonal:
        cells = cells[(cells // n_in) != (cells % n_in)]
    flat = np.sort(rng.choice(cells, size=nnz, replace=False))
    rows, cols = flat // n_in, flat % n_in
    vals = (rng.standard_normal(nnz) * scale).astype(np.float32)
    return SparseWeights(shape=(n_out, n_in), rows=rows, cols=cols, values=vals)


def demo_spec(seed: int = 0, n: int = 200, n_alif: int = 50, n_input: int = 39,
              n_classes: int = 39, p_in: float = 0.1, p_rec: float = 0.1,
              w_in_scale: float = 2.0, w_rec_scale: float = 1.0):
    """The demo LSNN with seeded random weights (scaled for a spike rate of a few % per step
    on N(0, 1) inputs; the rate is measured and reported)."""
    from spiking_deepr.export import ALIFLayerSpec, NetworkSpec, ReadoutSpec

    rng = np.random.default_rng(seed)
    w_in = _rand_sparse(rng, n, n_input, int(round(p_in * n * n_input)),
                        w_in_scale / np.sqrt(p_in * n_input))
    w_rec = _rand_sparse(rng, n, n, int(round(p_rec * n * (n - 1))),
                         w_rec_scale / np.sqrt(p_rec * n), no_diagonal=True)
    beta = np.zeros(n, dtype=np.float32)
    beta[n - n_alif:] = 1.8
    layer = ALIFLayerSpec(name="lsnn0", n=n, w_in=w_in, w_rec=w_rec, tau_syn_inv=200.0,
                          tau_mem_inv=50.0, v_th=1.0, beta=beta, tau_adapt_inv=5.0)
    ro = ReadoutSpec(kind="li", weights=_rand_sparse(rng, n_classes, n, n_classes * n,
                                                     1.0 / np.sqrt(n)),
                     bias=(rng.standard_normal(n_classes) * 0.1).astype(np.float32),
                     tau_syn_inv=200.0, tau_mem_inv=50.0)
    return NetworkSpec(n_input=n_input, dt=1e-3, layers=[layer], readout=ro)


def demo_input(seed: int = 0, n_seq: int = N_SEQ, n_input: int = 39, t_min: int = 140,
               t_max: int = 280):
    rng = np.random.default_rng(seed + 1)
    lengths = rng.integers(t_min, t_max + 1, size=n_seq)
    x = rng.standard_normal((n_seq, int(lengths.max()), n_input))
    x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0
    return x, lengths


def run_input(run_dir: Path, n_seq: int = N_SEQ):
    """The trained run's spec and its first ``n_seq`` test utterances (as ``simulate_run``)."""
    from spiking_deepr.train import load_run
    from tasks.base import collate_time_major

    _, task, model = load_run(run_dir)
    n = min(n_seq, len(task.test))
    batch = collate_time_major([task.test[i] for i in range(n)])
    return (model.to_spec(), batch.x.transpose(0, 1).double().numpy(),
            batch.lengths.numpy())


def tiny_spec(like):
    """``like``'s layer kinds and readout kind with 1 input, 1 neuron per layer and 1 class,
    every weight an explicit 0 (the 'tiny' reference: real models, no work)."""
    from spiking_deepr.export import (ALIFLayerSpec, LIFLayerSpec, NetworkSpec, ReadoutSpec,
                                      SparseWeights)

    def zero():
        return SparseWeights(shape=(1, 1), rows=np.zeros(1, np.int64),
                             cols=np.zeros(1, np.int64), values=np.zeros(1, np.float32))

    layers = []
    for ls in like.layers:
        if ls.kind not in ("lif", "alif"):
            raise ValueError(f"tiny floor: layer kind {ls.kind!r} not supported")
        common = dict(name=ls.name, n=1, w_in=zero(), w_rec=None if ls.w_rec is None else zero(),
                      tau_syn_inv=ls.tau_syn_inv, tau_mem_inv=ls.tau_mem_inv, v_th=ls.v_th,
                      v_leak=ls.v_leak, v_reset=ls.v_reset)
        if ls.kind == "alif":
            layers.append(ALIFLayerSpec(beta=np.full(1, float(np.max(ls.beta)), np.float32),
                                        tau_adapt_inv=ls.tau_adapt_inv, **common))
        else:
            layers.append(LIFLayerSpec(**common))
    r = like.readout
    ro = ReadoutSpec(kind=r.kind, weights=zero(), bias=np.zeros(1, np.float32),
                     tau_syn_inv=r.tau_syn_inv, tau_mem_inv=r.tau_mem_inv, v_leak=r.v_leak)
    return NetworkSpec(n_input=1, dt=like.dt, layers=layers, readout=ro)


# =========================================================================== running
def _child(graph, outdir, profile):
    os.setsid()
    try:
        from lava_backend.simulate import run_graph

        if profile:
            _install_model_timers(graph, outdir)
        r0 = os.times()
        timing = run_graph(graph)
        r1 = os.times()
        timing["children_cpu_seconds"] = (r1.children_user + r1.children_system
                                          - r0.children_user - r0.children_system)
        with open(os.path.join(outdir, "timing.json"), "w") as f:
            f.write(dumps_strict(timing))
        os._exit(0)
    except BaseException:  # noqa: BLE001
        with open(os.path.join(outdir, "error.txt"), "w") as f:
            f.write(traceback.format_exc())
        os._exit(1)


def timed_run(graph, timeout: float = 300.0, profile: bool = False) -> dict:
    """Run ``graph`` in a forked child (own process group, killed after ``timeout``); returns
    run_graph's timings plus ``steps_per_second`` (and ``models`` with ``profile``)."""
    outdir = tempfile.mkdtemp(prefix="bench_lava_")
    try:
        p = mp.get_context("fork").Process(target=_child, args=(graph, outdir, profile))
        p.start()
        p.join(timeout)
        if p.is_alive():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.join(5)
            raise TimeoutError(f"Lava run did not finish within {timeout} s")
        err = os.path.join(outdir, "error.txt")
        if os.path.exists(err):
            raise RuntimeError("Lava run failed:\n" + open(err).read())
        with open(os.path.join(outdir, "timing.json")) as f:
            t = json.load(f)
        t["steps_per_second"] = graph.num_steps / max(t["run_seconds"], 1e-12)
        if profile:
            t["models"] = _read_model_timers(outdir)
        return t
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _install_model_timers(graph, outdir):
    """Wrap run_spk of every ProcessModel class in this (forked) run with a timer; each Lava
    worker writes its totals at the last step. Used by ``--profile`` only."""
    from lava.magma.core.model.py.model import AbstractPyProcessModel  # noqa: F401
    import lava_backend.processes.alif  # noqa: F401
    import lava_backend.processes.io  # noqa: F401
    import lava_backend.processes.readout  # noqa: F401
    import lava_backend.processes.sparse  # noqa: F401
    import lava.proc.sparse.models  # noqa: F401

    last = graph.num_steps
    seen = set()

    def wrap(cls):
        if cls in seen or "run_spk" not in cls.__dict__:
            return
        seen.add(cls)
        inner = cls.__dict__["run_spk"]

        def run_spk(self):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(self)
            finally:
                acc = self.__dict__.setdefault("_bench_t", [0.0, 0.0, 0])
                acc[0] += time.perf_counter() - t0
                acc[1] += time.thread_time() - c0
                acc[2] += 1
                if self.time_step == last:
                    with open(os.path.join(outdir, f"model_{os.getpid()}.json"), "w") as f:
                        f.write(dumps_strict({"model": type(self).__name__,
                                              "process": self.proc_params.get("name", type(self).__name__),
                                              "wall": acc[0], "cpu": acc[1], "calls": acc[2],
                                              "worker_cpu": time.process_time()}))

        cls.run_spk = run_spk

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    for cls in list(subclasses(PyLoihiProcessModel)):
        wrap(cls)


def _read_model_timers(outdir) -> List[dict]:
    out = []
    for f in sorted(os.listdir(outdir)):
        if f.startswith("model_"):
            with open(os.path.join(outdir, f)) as fh:
                out.append(json.load(fh))
    return out


def build_graph(kind, spec, x, lengths, precision, lanes, quant, tiny, tiny_x, tiny_quant,
                workdir):
    """A fresh graph (Lava processes cannot be compiled twice) of ``kind``: demo, floor, tiny,
    demo_lava_sparse (``--what-if``)."""
    from lava_backend.convert import convert

    if kind == "tiny":
        return convert(tiny, tiny_x, lengths, precision=precision, quant=tiny_quant,
                       lanes=lanes, workdir=os.path.join(workdir, "tiny"))
    demo = convert(spec, x, lengths, precision=precision, quant=quant, lanes=lanes,
                   workdir=os.path.join(workdir, "demo"))
    if kind == "demo":
        return demo
    if kind == "demo_lava_sparse":
        return _with_lava_sparse(demo)
    return _mirror(demo)


def _spikes(res):
    return [lay.copy() for lay in res.layers], res.readout.copy()


def bench_case(spec, x, lengths, precision, lanes, repeats, quants, tiny, tiny_x,
               profile=False, what_if=False, timeout=300.0) -> dict:
    quant, tiny_quant = quants
    order = ["demo", "floor", "tiny"] + (["demo_lava_sparse"] if what_if else [])
    sps: Dict[str, List[float]] = {k: [] for k in order}
    outputs = {}
    info = {}
    workdir = tempfile.mkdtemp(prefix="bench_lava_g_")
    try:
        for r in range(repeats):
            k = r % len(order)
            for name in order[k:] + order[:k]:   # rotate: no kind always runs first
                g = build_graph(name, spec, x, lengths, precision, lanes, quant, tiny, tiny_x,
                                tiny_quant, workdir)
                t = timed_run(g, timeout=timeout)
                sps[name].append(t["steps_per_second"])
                if name == "demo_lava_sparse" and name not in outputs:
                    outputs[name] = _spikes(g.collect())
                if name == "demo" and "spike_rate" not in info:
                    res = g.collect()
                    outputs["demo"] = _spikes(res)
                    valid = np.arange(res.layers[0].shape[1])[None, :] < lengths[:, None]
                    info["spike_rate"] = float(np.mean([lay[valid].mean() for lay in res.layers]))
                    info["lava_steps"] = int(g.num_steps)
                    info["n_processes"] = len(g.processes)
                    info["n_connections"] = _count_connections(g)
                    fl = build_graph("floor", spec, x, lengths, precision, lanes, quant, tiny,
                                     tiny_x, tiny_quant, workdir)
                    info["floor_n_processes"] = len(fl.processes)
                    info["floor_n_connections"] = _count_connections(fl)
                    info["compile_seconds"] = t["compile_seconds"]
        prof = None
        if profile:
            prof = {k: timed_run(build_graph(k, spec, x, lengths, precision, lanes, quant, tiny,
                                             tiny_x, tiny_quant, workdir),
                                 timeout=timeout, profile=True)
                    for k in ("demo", "floor")}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in sps.items()}
    ratio = med["floor"] / med["demo"]          # = demo time per step / floor time per step
    out = {"precision": precision, "lanes": lanes, **info,
           "steps_per_second_demo": med["demo"], "steps_per_second_floor": med["floor"],
           "steps_per_second_tiny": med["tiny"],
           "ratio_demo_time_over_floor_time": ratio,
           "ratio_tiny_time_over_floor_time": med["floor"] / med["tiny"],
           "target": TARGET, "target_met": bool(ratio <= TARGET),
           "repeats": {k: v for k, v in sps.items()}}
    if what_if:
        (la, ra), (lb, rb) = outputs["demo"], outputs["demo_lava_sparse"]
        out["steps_per_second_demo_lava_sparse"] = med["demo_lava_sparse"]
        out["ratio_demo_lava_sparse_time_over_floor_time"] = med["floor"] / med["demo_lava_sparse"]
        out["lava_sparse_spikes_equal"] = bool(all(np.array_equal(a, b) for a, b in zip(la, lb)))
        out["lava_sparse_readout_max_abs_diff"] = float(np.max(np.abs(ra - rb)))
    if prof is not None:
        out["profile"] = prof
    return out


def machine_info() -> dict:
    import lava
    import scipy

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        from importlib.metadata import version

        lava_version = version("lava-nc")
    except Exception:  # noqa: BLE001
        lava_version = getattr(lava, "__version__", "?")
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "numpy": np.__version__,
            "scipy": scipy.__version__, "lava_nc": lava_version}


def markdown(rows: List[dict]) -> str:
    lines = ["| precision | lanes | Lava steps | spike rate | demo steps/s | floor steps/s "
             "| demo/floor time per step | target ≤ 1.5× | tiny steps/s | tiny/floor time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['lanes']} | {r['lava_steps']} | {r['spike_rate']:.3f} "
            f"| {r['steps_per_second_demo']:.0f} | {r['steps_per_second_floor']:.0f} "
            f"| {r['ratio_demo_time_over_floor_time']:.2f}× "
            f"| {'yes' if r['target_met'] else 'NO'} | {r['steps_per_second_tiny']:.0f} "
            f"| {r['ratio_tiny_time_over_floor_time']:.2f}× |")
    if any("steps_per_second_demo_lava_sparse" in r for r in rows):
        lines += ["", "What-if: the demo with Lava 0.10's own Sparse models (W[:, s].sum)", "",
                  "| precision | lanes | demo steps/s | demo Lava-Sparse steps/s | floor steps/s "
                  "| demo Lava-Sparse / floor time | spikes equal | readout max abs diff |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "steps_per_second_demo_lava_sparse" in r:
                lines.append(
                    f"| {r['precision']} | {r['lanes']} | {r['steps_per_second_demo']:.0f} "
                    f"| {r['steps_per_second_demo_lava_sparse']:.0f} "
                    f"| {r['steps_per_second_floor']:.0f} "
                    f"| {r['ratio_demo_lava_sparse_time_over_floor_time']:.2f}× "
                    f"| {r['lava_sparse_spikes_equal']} "
                    f"| {r['lava_sparse_readout_max_abs_diff']:.1e} |")
    return "\n".join(lines)


def profile_summary(rows: List[dict]) -> str:
    """Per case and graph: wall time per Lava step, CPU per step of all Lava workers together,
    and per process the CPU per step inside run_spk (recv waits do not use CPU) and of the
    whole worker process (run_spk + Lava's phase loop and channel handling)."""
    lines = []
    for r in rows:
        if "profile" not in r:
            continue
        lines.append(f"\n{r['precision']}, lanes {r['lanes']} (us per Lava step; run_spk CPU / "
                     f"worker CPU per process)")
        for kind in ("demo", "floor"):
            p = r["profile"][kind]
            n = r["lava_steps"]
            ms = sorted(p.get("models", []), key=lambda m: m["process"])
            spk = sum(m["cpu"] for m in ms) / n * 1e6
            wrk = sum(m["worker_cpu"] for m in ms) / n * 1e6
            parts = ", ".join(f"{m['process']} {1e6 * m['cpu'] / n:.0f}/"
                              f"{1e6 * m['worker_cpu'] / n:.0f}" for m in ms)
            lines.append(f"  {kind}: wall {1e6 / p['steps_per_second']:.0f}, all workers CPU "
                         f"{1e6 * p.get('children_cpu_seconds', 0) / n:.0f} (run_spk {spk:.0f}, "
                         f"model workers {wrk:.0f})\n    [{parts}]")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None,
                    help="trained run dir (e.g. runs/demo) to load instead of random weights")
    ap.add_argument("--quick", action="store_true", help="1 repeat, sequences cut to 100 steps")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--precision", nargs="+", default=["float", "fixed"],
                    choices=["float", "fixed"])
    ap.add_argument("--lanes", nargs="+", type=int, default=None,
                    help="default: 1 and the demo's min(N, 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true",
                    help="also time each ProcessModel's run_spk inside the Lava workers")
    ap.add_argument("--what-if", action="store_true",
                    help="also run the demo with Lava's own Sparse models (W[:, s].sum, "
                         "instead of the production W @ s models) and report its ratio")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_lava.json")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    from lava_backend.commands import import_lava_runtime
    from lava_backend.quantize import quantize_network

    import_lava_runtime()
    t_start = time.perf_counter()
    load_start = list(os.getloadavg())
    if args.run is not None:
        if not (args.run / "checkpoint.pt").exists():
            raise SystemExit(f"{args.run}: no checkpoint.pt")
        spec, x, lengths = run_input(args.run)
        source = f"trained run {args.run}"
    else:
        spec = demo_spec(seed=args.seed)
        x, lengths = demo_input(seed=args.seed)
        source = f"random weights (seed {args.seed})"
    if args.quick:
        lengths = np.minimum(lengths, 100)
        x = x[:, :int(lengths.max())]
    lanes_list = args.lanes or [1, min(len(lengths), 32)]
    tiny = tiny_spec(spec)
    tiny_x = np.zeros(x.shape[:2] + (1,))
    quants = {"float": (None, None)}
    if "fixed" in args.precision:
        quants["fixed"] = (quantize_network(spec, calib_x=x, calib_lengths=lengths),
                           quantize_network(tiny, input_max=1.0, calib_x=tiny_x,
                                            calib_lengths=lengths))
    rows = []
    for precision in args.precision:
        for lanes in lanes_list:
            row = bench_case(spec, x, lengths, precision, lanes, repeats, quants[precision],
                             tiny, tiny_x, profile=args.profile,
                             what_if=args.what_if)
            rows.append(row)
            print(f"[bench_lava] {precision:5s} lanes {lanes}: demo "
                  f"{row['steps_per_second_demo']:.0f} steps/s, floor "
                  f"{row['steps_per_second_floor']:.0f} steps/s -> "
                  f"{row['ratio_demo_time_over_floor_time']:.2f}x", flush=True)
    info = machine_info()
    info["loadavg_start"], info["loadavg_end"] = load_start, list(os.getloadavg())
    report = {
        "benchmark": "bench_lava",
        "network": {"source": source, "n_input": spec.n_input,
                    "layers": [{"kind": ls.kind, "n": getattr(ls, "n", None),
                                "w_in_nnz": int(ls.w_in.nnz),
                                "w_rec_nnz": None if ls.w_rec is None else int(ls.w_rec.nnz)}
                               for ls in spec.layers],
                    "readout": {"kind": spec.readout.kind,
                                "nnz": int(spec.readout.weights.nnz)},
                    "sequences": int(len(lengths)), "lengths": [int(v) for v in lengths]},
        "floor": "pass-through twin of every process (same ports, shapes, dtypes, "
                 "connections; recv all InPorts, send zeros on all OutPorts); 'tiny' = the "
                 "real models with 1 input/neuron/class per lane and zero weights",
        "metric": "Lava time steps per second of the run phase (excl. compile), median of "
                  "repeats; ratio = demo time per step / floor time per step",
        "target": TARGET, "repeats": repeats, "quick": bool(args.quick),
        "machine": info, "cases": rows,
        "all_targets_met": all(r["target_met"] for r in rows),
        "wall_seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        f.write(dumps_strict(report, indent=2))
    print()
    print(markdown(rows))
    if args.profile:
        print(profile_summary(rows))
    print(f"\nwritten {args.out} ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
