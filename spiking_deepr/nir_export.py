"""NetworkSpec -> NIR graph (Neuromorphic Intermediate Representation, ``nir`` 1.0).

NIR's neurons are continuous-time ODEs; readers simulate them with a forward-Euler step of
``dt`` and *unit* spikes (a spike is 1 for one step, not a Dirac of area 1/dt) — the convention
of snnTorch's export, Norse's import and the NIR paper's recurrent networks::

    CubaLIF:  I <- I + dt/tau_syn * (-I + w_in * s)
              v <- v + dt/tau_mem * ((v_leak - v) + r * I);   z = v > v_threshold;  v <- v_reset
    LI:       v <- v + dt/tau * ((v_leak - v) + r * s)

This project's LIF (``LIFLayerSpec``) adds the input to the current *without* a factor
(``i_jump = i + W x``), so with ``tau_syn = 1/tau_syn_inv``, ``tau_mem = 1/tau_mem_inv``,
``r = 1`` and ``w_in = tau_syn/dt`` (= 1/(dt*tau_syn_inv)) the Euler CubaLIF's I equals
``i_jump`` and its v, z equal ours exactly (up to rounding). A current that decays fully every
step (dt*tau_syn_inv == 1) is a plain ``LIF`` with ``r = 1``. The LI readout becomes ``CubaLI``
(or ``LI``) the same way; its output bias (``y = v + b``) an ``Affine(I, b)`` after it.

Graph, per layer l (names are the node keys)::

    input -> layer0.w_in (Linear) -> layer0 (CubaLIF) -> ... -> readout(.w) -> [readout.bias] -> output
                                     layer{l} -> layer{l}.w_rec (Linear) -> layer{l}   (self-loop)

The recurrent edge carries z[t-1] in a stepwise reader, as in the spec. NIR stores **dense**
weight arrays: every dormant DEEP R connection is written as an explicit 0.0 (the file is
O(N^2) however sparse the network). dt is not part of NIR's node types; it is stored in the
graph metadata (``dt``) and must be given to a reader.

ALIF layers have no NIR primitive (NIR has no adaptive threshold): refused, unless
``drop_adaptation`` turns them into LIF layers (beta = 0), which changes the network.
LSTM layers are refused.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import UserError
from .export import ALIFLayerSpec, LIFLayerSpec, LSTMLayerSpec, NetworkSpec

__all__ = ["NIRExportError", "drop_adaptation", "spec_to_nir", "write_nir"]


class NIRExportError(UserError, ValueError):
    """The network contains something NIR cannot express."""


def drop_adaptation(spec: NetworkSpec) -> NetworkSpec:
    """A copy of ``spec`` with every ALIF layer replaced by the LIF layer it contains (beta = 0)."""
    layers = []
    for ls in spec.layers:
        if isinstance(ls, ALIFLayerSpec):
            fields = {f.name: getattr(ls, f.name) for f in dataclasses.fields(LIFLayerSpec) if f.init}
            ls = LIFLayerSpec(**fields)
        layers.append(ls)
    return dataclasses.replace(spec, layers=layers)


def _full(value: float, n: int) -> np.ndarray:
    return np.full(n, float(value), dtype=np.float64)


def _neuron(ls: LIFLayerSpec, dt: float):
    """CubaLIF (or LIF when the current decays fully each step) with this project's semantics."""
    import nir

    n = int(ls.n)
    du = dt * float(ls.tau_syn_inv)
    common = dict(v_threshold=_full(ls.v_th, n), v_leak=_full(ls.v_leak, n), r=_full(1.0, n),
                  v_reset=_full(ls.v_reset, n))
    if du == 1.0:
        return nir.LIF(tau=_full(1.0 / float(ls.tau_mem_inv), n), **common)
    return nir.CubaLIF(tau_syn=_full(1.0 / float(ls.tau_syn_inv), n),
                       tau_mem=_full(1.0 / float(ls.tau_mem_inv), n),
                       w_in=_full(1.0 / du, n), **common)


def spec_to_nir(spec: NetworkSpec, *, source: str = "") -> "nir.NIRGraph":
    """The NIR graph of a unidirectional LIF network (see the module docstring).

    Raises NIRExportError for ALIF layers (use :func:`drop_adaptation` first) and LSTM layers."""
    import nir

    if getattr(spec, "n_repeat", 1) != 1:
        raise NIRExportError(f"n_repeat={spec.n_repeat}: NIR has no repeated-frame input or frame pooling; "
                             f"train the model with model.n_repeat=1 to export it")
    nodes = {"input": nir.Input(input_type={"input": np.array([spec.n_input])})}
    edges = []
    prev = "input"
    for l, ls in enumerate(spec.layers):
        where = f"layer {l} ({ls.name})"
        if isinstance(ls, LSTMLayerSpec):
            raise NIRExportError(f"{where} is an LSTM: NIR has no LSTM node; only LIF networks are exported")
        if ls.reset != "value" or ls.refractory:
            raise NIRExportError(f"{where}: reset={ls.reset!r}, refractory={ls.refractory}: NIR's LIF resets to "
                                 f"v_reset and has no refractory period")
        if isinstance(ls, ALIFLayerSpec):
            raise NIRExportError(
                f"{where} has adaptive-threshold (ALIF) neurons, which NIR cannot express (it has no "
                f"adaptive neuron); use --drop-adaptation to export them as plain LIF (changes accuracy)")
        name = f"layer{l}"
        nodes[f"{name}.w_in"] = nir.Linear(weight=ls.w_in.to_dense().astype(np.float64))
        nodes[name] = _neuron(ls, spec.dt)
        edges += [(prev, f"{name}.w_in"), (f"{name}.w_in", name)]
        if ls.w_rec is not None:
            nodes[f"{name}.w_rec"] = nir.Linear(weight=ls.w_rec.to_dense().astype(np.float64))
            edges += [(name, f"{name}.w_rec"), (f"{name}.w_rec", name)]
        prev = name
    ro = spec.readout
    w = ro.weights.to_dense().astype(np.float64)
    bias = np.broadcast_to(np.asarray(ro.bias, dtype=np.float64).reshape(-1), (w.shape[0],)).copy()
    C = w.shape[0]
    if ro.kind == "linear":
        nodes["readout"] = nir.Affine(weight=w, bias=bias)
        edges.append((prev, "readout"))
        last = "readout"
    elif ro.kind == "li":
        du = spec.dt * float(ro.tau_syn_inv)
        li = dict(tau_mem=_full(1.0 / float(ro.tau_mem_inv), C), r=_full(1.0, C),
                  v_leak=_full(ro.v_leak, C))
        nodes["readout.w"] = nir.Linear(weight=w)
        nodes["readout"] = (nir.LI(tau=li["tau_mem"], r=li["r"], v_leak=li["v_leak"]) if du == 1.0 else
                            nir.CubaLI(tau_syn=_full(1.0 / float(ro.tau_syn_inv), C), w_in=_full(1.0 / du, C),
                                       **li))
        edges += [(prev, "readout.w"), ("readout.w", "readout")]
        last = "readout"
        if np.any(bias != 0):
            nodes["readout.bias"] = nir.Affine(weight=np.eye(C), bias=bias)
            edges.append(("readout", "readout.bias"))
            last = "readout.bias"
    else:
        raise NIRExportError(f"readout kind {ro.kind!r} cannot be exported ('linear', 'li')")
    nodes["output"] = nir.Output(output_type={"output": np.array([C])})
    edges.append((last, "output"))
    metadata = {"dt": float(spec.dt), "exported_by": "spiking_deepr",
                "weights": "dense; dormant connections are explicit zeros",
                "discretisation": "forward Euler with unit spikes (I += dt/tau_syn*(-I + w_in*s))"}
    if getattr(spec, "input_spikes", False):
        metadata["input"] = "binary spikes: the model's input encoder (e.g. send-on-delta) is not part of the graph"
    if source:
        metadata["source"] = source
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(graph, path: Path) -> None:
    """``nir.write`` to a temporary file beside ``path``, renamed when complete (atomic)."""
    import nir

    from .checkpoint import atomic_write_file

    atomic_write_file(Path(path), lambda tmp: nir.write(tmp, graph))
