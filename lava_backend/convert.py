"""NetworkSpec -> Lava process graph.

Graph (O(layers) processes, never one per neuron)::

    SequenceSource -> [Sparse(W_in) -> ALIF | LIF | LSTM <- Sparse(W_rec) <- (self)] x L
                   -> Sparse(W_out) -> Readout -> StepSink      (+ one StepSink per layer)

Connectivity is passed as scipy CSR with explicit entries, so zero-valued synapses are part
of the graph (see ``SparseWeights.to_scipy_csr``).

Delays
------
Every ``Sparse`` hop adds one time step (it sends the activation computed on the previous
step). With 1-based Lava time steps, the source sends lane step g at Lava step g + 1, so
layer l (0-based) processes lane step g at Lava step ``g + l + 2`` ("depth" l + 2; in
0-based Lava steps: PyTorch step t <-> step t + l + 1), and the readout at ``g + L + 2``.
The recurrent Sparse delivers z[g-1] exactly at that step, which is the spec's W_rec z[t-1].
A run needs ``G + L + 1`` Lava steps for G lane steps; sinks record with the producer's
depth as offset, so all outputs come back aligned to PyTorch steps.

Many sequences: lanes and resets
--------------------------------
``lanes`` copies of the network run side by side in the same processes (block-diagonal
weights, lane-major neuron order), and every lane runs its sequences back to back without
gaps. Each neuron process knows the per-lane sequence starts (``reset_flags [G, lanes]``)
and its depth; at a start it resets u, v, b (h, c) and discards the recurrent port input
(which carries the previous sequence's last spikes). Sequences are assigned to lanes
longest-first to the least-loaded lane.

Standard processes: Lava's own ``LIF`` (``lava.proc.lif``, with a Loihi 2 hardware model) has
no per-lane reset and one input port, so it runs a LIF layer exactly when every lane holds a
single sequence (each lane's neurons then start from zero: one sequence per run segment) and
the layer has no bias and starts at v = 0 (v_leak == v_reset; warm-up steps leave it at 0),
hard reset, no refractory period (fixed point: a current decay du >= 0). ``neuron_impl``
"auto" (default) uses it for every LIF layer where these hold and this package's ALIF process
(beta = 0) elsewhere; "lava_lif" requires it (ConversionError otherwise); "alif" never uses it.
``LavaGraph.info["neurons"]`` names the process each layer got. ALIF (adaptive threshold with
hard reset) and LSTM layers have no standard process.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from spiking_deepr.export import NetworkSpec

from lava_backend.params import (ConversionError, LavaForm, SimulationResult, check_input,
                                 lava_form)


# --------------------------------------------------------------------------- scheduling
@dataclass
class Schedule:
    """Placement of N sequences into ``lanes`` back-to-back streams of G lane steps."""

    lanes: int
    G: int
    lane: np.ndarray          # [N] lane of each sequence
    start: np.ndarray         # [N] first lane step
    lengths: np.ndarray       # [N]
    reset_flags: np.ndarray   # [G, lanes] bool


def make_schedule(lengths, lanes: int) -> Schedule:
    lengths = np.asarray(lengths, dtype=np.int64)
    N = lengths.size
    lanes = int(max(1, min(lanes, N)))
    load = np.zeros(lanes, dtype=np.int64)
    lane = np.zeros(N, dtype=np.int64)
    start = np.zeros(N, dtype=np.int64)
    for k in np.argsort(-lengths, kind="stable"):
        j = int(np.argmin(load))
        lane[k], start[k] = j, load[j]
        load[j] += lengths[k]
    G = int(load.max())
    flags = np.zeros((G, lanes), dtype=bool)
    flags[start, lane] = True
    return Schedule(lanes=lanes, G=G, lane=lane, start=start, lengths=lengths,
                    reset_flags=flags)


def pack(x: np.ndarray, sched: Schedule) -> np.ndarray:
    """[N, T, F] -> lane-major [G, lanes * F]."""
    N, T, F = x.shape
    out = np.zeros((sched.G, sched.lanes, F), dtype=x.dtype)
    for k in range(N):
        L = sched.lengths[k]
        out[sched.start[k]:sched.start[k] + L, sched.lane[k]] = x[k, :L]
    return out.reshape(sched.G, sched.lanes * F)


def unpack(buf: np.ndarray, sched: Schedule, T: int, dtype=None) -> np.ndarray:
    """Lane-major [G, lanes * n] -> [N, T, n] (zeros past each length)."""
    G = buf.shape[0]
    n = buf.shape[1] // sched.lanes
    b = buf.reshape(G, sched.lanes, n)
    N = sched.lengths.size
    out = np.zeros((N, T, n), dtype=dtype or buf.dtype)
    for k in range(N):
        L = sched.lengths[k]
        out[k, :L] = b[sched.start[k]:sched.start[k] + L, sched.lane[k]]
    return out


def block_diag_csr(m, lanes: int, dtype=None):
    """``lanes`` copies of CSR ``m`` on the diagonal, explicit zeros kept."""
    from scipy.sparse import csr_matrix

    m = m.tocsr()
    m.sort_indices()
    n_out, n_in = m.shape
    data = np.tile(m.data, lanes)
    indices = np.concatenate([m.indices + k * n_in for k in range(lanes)])
    indptr = np.concatenate([m.indptr[:-1] + k * m.nnz for k in range(lanes)]
                            + [[lanes * m.nnz]])
    out = csr_matrix((data.astype(dtype or m.dtype), indices, indptr),
                     shape=(lanes * n_out, lanes * n_in))
    out.has_sorted_indices = True
    return out


# --------------------------------------------------------------------------- graph
@dataclass
class LavaGraph:
    """A built Lava process graph plus what is needed to run it and read results back."""

    precision: str
    schedule: Schedule
    num_steps: int
    T: int
    processes: dict
    sink_paths: dict            # "layer{l}" / "readout" -> .npy path
    layer_kinds: List[str]
    quant: object = None
    n_repeat: int = 1           # simulation steps per input frame
    workdir: str = ""
    info: dict = field(default_factory=dict)

    @property
    def root(self):
        return self.processes["source"]

    def run_cfg(self):
        """Loihi2SimCfg of this precision, with Lava's ``Sparse`` run by this package's
        ``W @ s`` models (:mod:`lava_backend.processes.sparse`; Lava 0.10's own models build
        a new scipy matrix per step for binary spikes)."""
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.sparse.process import Sparse

        from lava_backend.processes.sparse import PySparseDotModelBitAcc, PySparseDotModelFloat

        fixed = self.precision == "fixed"
        return Loihi2SimCfg(
            select_tag="fixed_pt" if fixed else "floating_pt",
            exception_proc_model_map={
                Sparse: PySparseDotModelBitAcc if fixed else PySparseDotModelFloat})

    def collect(self) -> SimulationResult:
        """Read the sink files once and unpack them to PyTorch-aligned [N, T, ...] arrays (layers
        at the simulation rate, the readout at each frame's last step when n_repeat > 1)."""
        layers = []
        for l, kind in enumerate(self.layer_kinds):
            p = self.sink_paths.get(f"layer{l}")
            if p is None:
                layers.append(None)
                continue
            buf = np.load(p)
            layers.append(unpack(buf, self.schedule, self.T,
                                 dtype=np.float64 if kind == "lstm" else np.uint8))
        buf = np.load(self.sink_paths["readout"])
        n = self.n_repeat
        if self.precision == "fixed":
            yi = unpack(buf.astype(np.int64), self.schedule, self.T)[:, n - 1::n]
            y = self.quant.dequantize_readout(yi)
        else:
            yi, y = None, unpack(buf, self.schedule, self.T, dtype=np.float64)[:, n - 1::n]
        return SimulationResult(layers=layers, readout=y, readout_int=yi,
                                lengths=self.schedule.lengths // n, lava_steps=self.num_steps,
                                lanes=self.schedule.lanes)


def _lava_lif_problem(lf, ql, one_seq_per_lane: bool, must: bool) -> Optional[str]:
    """Why Lava's standard LIF cannot run LIF layer ``lf`` exactly (None: it can). With ``must``
    a reason is raised as ConversionError instead of returned."""
    if lf.subtract or lf.refractory:
        why = "reset by subtraction and refractory periods are not in Lava's LIF"
    elif not one_seq_per_lane:
        why = "Lava's LIF cannot reset between sequences: it needs one sequence per lane (lanes >= N)"
    elif (ql.bias_mant != 0 or ql.v_init != 0) if ql is not None else (lf.bias != 0 or lf.v_init != 0):
        why = "Lava's LIF starts at v = 0 without bias: it needs v_leak == v_reset"
    elif ql is not None and ql.du < 0:
        why = "Lava's fixed-point LIF needs a current decay du >= 0"
    else:
        return None
    if must:
        raise ConversionError(f"layer {lf.name!r}: neuron_impl='lava_lif': {why}")
    return why


def convert(spec: NetworkSpec, x, lengths=None, precision: str = "float", quant=None,
            lanes: Optional[int] = None, record_layers: bool = True,
            workdir: Optional[str] = None, neuron_impl: str = "auto",
            fault_step: Optional[int] = None) -> LavaGraph:
    """Build the Lava graph that runs ``spec`` on the sequences x [N, T, F].

    precision: "float" (floating_pt models) or "fixed" (bit-accurate fixed_pt models;
    ``quant`` is a QuantizedNetwork, default ``quantize_network(spec, calib_x=x)``).
    lanes: sequences simulated side by side (default min(N, 32)).
    neuron_impl: "auto" (Lava's standard LIF for LIF layers where it is exact, see module doc),
    "lava_lif" (require it for every LIF layer) or "alif" (this package's ALIF process for LIF
    and ALIF layers, supports back-to-back sequences).
    """
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    from lava_backend.processes.alif import ALIF
    from lava_backend.processes.io import SequenceSource, StepSink
    from lava_backend.processes.lstm import LSTM
    from lava_backend.processes.readout import Readout

    if precision not in ("float", "fixed"):
        raise ValueError(f"precision must be 'float' or 'fixed', got {precision!r}")
    if neuron_impl not in ("auto", "alif", "lava_lif"):
        raise ValueError(f"neuron_impl must be 'auto', 'alif' or 'lava_lif', got {neuron_impl!r}")
    x, lengths = check_input(spec.n_input, x, lengths)
    N, T, F = x.shape
    form: LavaForm = lava_form(spec)
    fixed = precision == "fixed"
    if fixed and quant is None:
        from lava_backend.quantize import quantize_network

        quant = quantize_network(spec, calib_x=x, calib_lengths=lengths)
    n_repeat = form.n_repeat  # every frame repeated: the whole graph runs at the simulation rate
    x, lengths, T = np.repeat(x, n_repeat, axis=1), lengths * n_repeat, T * n_repeat
    sched = make_schedule(lengths, lanes if lanes else min(N, 32))
    B = sched.lanes
    L = len(form.layers)
    num_steps = sched.G + L + 1
    workdir = workdir or tempfile.mkdtemp(prefix="lava_backend_")
    os.makedirs(workdir, exist_ok=True)

    if fixed:
        xin = pack(quant.quantize_input(x), sched).astype(np.int32)
    else:
        xin = pack(x, sched)
    procs = {"source": SequenceSource(data=xin, fault_step=fault_step, name="source")}
    prev_out = procs["source"].s_out
    sink_paths = {}
    kinds = []

    def sparse(w_float, qm, graded, name):
        if fixed:
            return Sparse(weights=block_diag_csr(qm.lava_csr(), B, np.int32),
                          num_message_bits=24 if graded else 0, weight_exp=qm.weight_exp,
                          num_weight_bits=8, sign_mode=SignMode.MIXED, name=name)
        return Sparse(weights=block_diag_csr(w_float, B, np.float64),
                      num_message_bits=24 if graded else 0, name=name)

    one_seq_per_lane = bool(np.all(sched.start == 0))
    for l, lf in enumerate(form.layers):
        depth = l + 2
        ql = quant.layers[l] if fixed else None
        kinds.append(lf.kind)
        s_in = sparse(lf.w_in, ql.w_in if fixed else None, lf.graded_input, f"{lf.name}.w_in")
        prev_out.connect(s_in.s_in)
        if lf.kind == "lstm":
            if fixed:
                raise ConversionError(f"layer {lf.name!r}: LSTM has no fixed_pt model")
            neu = LSTM(hidden=lf.n, lanes=B, bias=lf.lstm_bias, reset_flags=sched.reset_flags,
                       depth=depth, name=lf.name)
            rec_port = neu.a_rec
        elif neuron_impl != "alif" and lf.kind == "lif" and _lava_lif_problem(
                lf, ql, one_seq_per_lane, must=neuron_impl == "lava_lif") is None:
            if fixed:
                neu = LIF(shape=(B * lf.n,), du=ql.du, dv=ql.dv, vth=ql.vth, bias_mant=0,
                          bias_exp=0, name=lf.name)
            else:
                neu = LIF(shape=(B * lf.n,), du=lf.du, dv=lf.dv, vth=lf.vth, bias_mant=0.0,
                          name=lf.name)
            rec_port = neu.a_in
        else:
            shape = (B * lf.n,)
            if fixed:
                neu = ALIF(shape=shape, du=ql.du, dv=ql.dv, vth=ql.vth,
                           bias_mant=ql.bias_mant, bias_exp=ql.bias_exp, v_init=ql.v_init,
                           beta=np.tile(ql.beta, B), dth=ql.dth, subtract=ql.subtract, v_sub=ql.v_sub,
                           refractory=ql.refractory,
                           reset_flags=sched.reset_flags, depth=depth, name=lf.name)
            else:
                neu = ALIF(shape=shape, du=lf.du, dv=lf.dv, vth=lf.vth, bias_mant=lf.bias,
                           v_init=lf.v_init, beta=np.tile(lf.beta, B), rho=lf.rho, subtract=lf.subtract,
                           v_sub=lf.v_sub, refractory=lf.refractory,
                           reset_flags=sched.reset_flags, depth=depth, name=lf.name)
            rec_port = neu.a_rec
        s_in.a_out.connect(neu.a_in)
        procs[f"{lf.name}.w_in"] = s_in
        procs[lf.name] = neu
        if lf.w_rec is not None:
            s_rec = sparse(lf.w_rec, ql.w_rec if fixed else None, lf.kind == "lstm",
                           f"{lf.name}.w_rec")
            neu.s_out.connect(s_rec.s_in)
            s_rec.a_out.connect(rec_port)
            procs[f"{lf.name}.w_rec"] = s_rec
        if record_layers:
            path = os.path.join(workdir, f"layer{l}.npy")
            sink = StepSink(shape=(B * lf.n,), num_steps=sched.G, offset=depth, path=path,
                            dump_step=num_steps,
                            dtype="float64" if lf.kind == "lstm" else "uint8",
                            name=f"{lf.name}.sink")
            neu.s_out.connect(sink.a_in)
            procs[f"{lf.name}.sink"] = sink
            sink_paths[f"layer{l}"] = path
        prev_out = neu.s_out

    R = form.readout
    qr = quant.readout if fixed else None
    s_out = sparse(R.w, qr.w if fixed else None, R.graded_input, "readout.w")
    prev_out.connect(s_out.s_in)
    depth = L + 2
    C = R.n_out
    # the readout updates at each frame's last step: its resets move there too
    ro_flags = np.zeros_like(sched.reset_flags)
    ro_flags[n_repeat - 1:] = sched.reset_flags[:sched.G - (n_repeat - 1)]
    if fixed:
        ro = Readout(shape=(B * C,), kind=R.kind, du=qr.du, dv=qr.dv, bias_mant=qr.bias_mant,
                     bias_exp=qr.bias_exp, v_init=qr.v_init, out_bias=np.tile(qr.out_bias, B),
                     reset_flags=ro_flags, depth=depth, n_repeat=n_repeat, name="readout")
    else:
        ro = Readout(shape=(B * C,), kind=R.kind, du=R.du, dv=R.dv, bias_mant=R.bias_v,
                     v_init=R.v_init, out_bias=np.tile(R.out_bias, B),
                     reset_flags=ro_flags, depth=depth, n_repeat=n_repeat, name="readout")
    s_out.a_out.connect(ro.a_in)
    path = os.path.join(workdir, "readout.npy")
    sink = StepSink(shape=(B * C,), num_steps=sched.G, offset=depth, path=path,
                    dump_step=num_steps, dtype="int64" if fixed else "float64",
                    name="readout.sink")
    ro.y_out.connect(sink.a_in)
    procs.update({"readout.w": s_out, "readout": ro, "readout.sink": sink})
    sink_paths["readout"] = path
    neurons = {name: type(p).__name__ for name, p in procs.items() if name in {lf.name for lf in form.layers}}
    return LavaGraph(precision=precision, schedule=sched, num_steps=num_steps, T=T,
                     processes=procs, sink_paths=sink_paths, layer_kinds=kinds, quant=quant,
                     workdir=workdir, n_repeat=n_repeat,
                     info={"neurons": neurons, "n_processes": len(procs), "lanes": B, "G": sched.G})
