"""NIR graph (written by another library) -> NetworkSpec -> SequenceModel.

Reads the graphs :mod:`.nir_export` writes and those of other writers with the same structure,
e.g. snnTorch's ``RSynaptic``/``RLeaky`` export::

    Input -> Affine|Linear -> CubaLIF|LIF [<- Affine|Linear <- (self)] -> ... ->
          Affine (linear readout)  |  Affine|Linear -> LI|CubaLI [-> Affine(I, b)]  -> Output

NIR's neurons are interpreted with the forward-Euler step of ``dt`` and unit spikes (see
:mod:`.nir_export`); NIR files do not carry dt, so it is an argument (snnTorch writes its
parameters for dt = 1e-4, Norse's readers default to 1e-3). Per neuron, r, w_in and dt/tau_syn
scale the incoming weights, so this project's LIF (``i_jump = i + W x``) reproduces the NIR
neuron exactly:

    CubaLIF: W_ours = (r * w_in * dt/tau_syn) * W,  tau_syn_inv = 1/tau_syn, tau_mem_inv = 1/tau_mem
    LIF:     W_ours = r * W,  tau_syn_inv = 1/dt (the current does not outlive its step)

Only what this project's model can express is accepted, each refusal naming the node and
field: one value per population for tau, thresholds, v_leak, v_reset (the same for all layers,
as in ``ModelConfig``); no bias into a spiking layer (our LIF has no bias current); one input.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import UserError
from .export import LIFLayerSpec, NetworkSpec, ReadoutSpec, SparseWeights

__all__ = ["NIRImportError", "nir_to_spec", "spec_to_model", "read_nir_model"]


class NIRImportError(UserError, ValueError):
    """The NIR graph is not a network this project can represent."""


def _arr(node, field: str) -> np.ndarray:
    return np.asarray(getattr(node, field), dtype=np.float64).reshape(-1)


def _scalar(node_name: str, node, field: str) -> float:
    a = _arr(node, field)
    if a.size == 0 or not np.all(a == a[0]):
        raise NIRImportError(f"node {node_name!r}: {field} must have one value for the whole population "
                             f"(this project's neurons share their parameters), found {np.unique(a)[:5]}")
    return float(a[0])


def _dense_to_sparse(w: np.ndarray) -> SparseWeights:
    """Nonzero entries as explicit connections (zeros are dormant: not stored)."""
    rows, cols = np.nonzero(w)
    return SparseWeights(w.shape, rows, cols, w[rows, cols])


class _Graph:
    def __init__(self, graph) -> None:
        import nir

        self.nir = nir
        self.nodes = dict(graph.nodes)
        for name, node in self.nodes.items():
            if isinstance(node, nir.NIRGraph):
                raise NIRImportError(f"node {name!r} is a nested subgraph; flatten the graph first")
        self.succ: Dict[str, List[str]] = defaultdict(list)
        self.pred: Dict[str, List[str]] = defaultdict(list)
        for a, b in graph.edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise NIRImportError(f"edge ({a!r}, {b!r}) names an unknown node {end!r}")
            self.succ[a].append(b)
            self.pred[b].append(a)

    def only(self, kind) -> str:
        names = [k for k, v in self.nodes.items() if isinstance(v, kind)]
        if len(names) != 1:
            raise NIRImportError(f"expected exactly one {kind.__name__} node, found {len(names)}: {names}")
        return names[0]

    def weight(self, name: str, allow_bias: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        node = self.nodes[name]
        if not isinstance(node, (self.nir.Affine, self.nir.Linear)):
            raise NIRImportError(f"node {name!r}: expected Affine or Linear, found {type(node).__name__}")
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2:
            raise NIRImportError(f"node {name!r}: weight must be 2-D [out, in], found shape {w.shape}")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if isinstance(node, self.nir.Affine) else None
        if bias is not None and not allow_bias and np.any(bias != 0):
            raise NIRImportError(f"node {name!r}: a nonzero bias into a spiking layer cannot be represented "
                                 f"(this project's LIF has no bias current)")
        return w, bias

    def next_of(self, name: str, exclude: Tuple[str, ...] = ()) -> str:
        nxt = [n for n in self.succ[name] if n not in exclude]
        if len(nxt) != 1:
            raise NIRImportError(f"node {name!r}: expected one successor in a layered network, found {nxt}")
        return nxt[0]


def nir_to_spec(graph, dt: float) -> NetworkSpec:
    """The NetworkSpec of a NIR LIF network (see the module docstring). ``dt`` in seconds."""
    import nir

    if not dt > 0:
        raise NIRImportError(f"dt must be > 0 seconds, got {dt}")
    g = _Graph(graph)
    inp = g.only(nir.Input)
    out = g.only(nir.Output)
    n_input = int(np.prod(np.asarray(g.nodes[inp].input_type["input"]).reshape(-1)))
    layers: List[LIFLayerSpec] = []
    cur = inp
    while True:
        wname = g.next_of(cur, exclude=_rec_names(g, cur))
        nxt = g.next_of(wname)
        node = g.nodes[nxt]
        if isinstance(node, (nir.CubaLIF, nir.LIF)):
            w_in, _ = g.weight(wname, allow_bias=False)
            layers.append(_lif_layer(g, nxt, w_in, dt, len(layers)))
            cur = nxt
            continue
        readout = _readout(g, wname, nxt, out, dt)
        break
    if not layers:
        raise NIRImportError("the graph has no spiking layer (CubaLIF or LIF)")
    for field in ("tau_syn_inv", "tau_mem_inv", "v_th", "v_leak", "v_reset"):
        values = {getattr(ls, field) for ls in layers}
        if len(values) > 1:
            raise NIRImportError(f"layers differ in {field} ({sorted(values)}); this project's model uses one "
                                 f"value for all layers")
    spec = NetworkSpec(n_input=n_input, dt=float(dt), layers=layers, readout=readout)
    n_prev = n_input
    for ls in layers:
        if ls.w_in.shape[1] != n_prev:
            raise NIRImportError(f"{ls.name}: input weight has {ls.w_in.shape[1]} columns, expected {n_prev}")
        n_prev = ls.n
    return spec


def _rec_names(g: _Graph, neuron: str) -> Tuple[str, ...]:
    """Weight nodes forming a self-loop of ``neuron`` (neuron -> W -> neuron)."""
    return tuple(w for w in g.succ[neuron] if g.succ[w] == [neuron] and g.pred[w] == [neuron])


def _time_constants(g: _Graph, name: str, dt: float):
    """(tau_syn, tau_mem, input scale) of a current-based node (CubaLIF/CubaLI: r * w_in * dt/tau_syn)
    or a plain one (LIF/LI: no synapse, tau_syn = dt, scale r); times in seconds."""
    import nir

    node = g.nodes[name]
    r = _arr(node, "r")
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        tau_syn, tau_mem = _scalar(name, node, "tau_syn"), _scalar(name, node, "tau_mem")
        return tau_syn, tau_mem, r * _arr(node, "w_in") * (dt / tau_syn)
    return dt, _scalar(name, node, "tau"), r


def _lif_layer(g: _Graph, name: str, w_in: np.ndarray, dt: float, index: int) -> LIFLayerSpec:

    node = g.nodes[name]
    n = w_in.shape[0]
    tau_syn, tau_mem, scale = _time_constants(g, name, dt)
    for field, tau in (("tau_syn", tau_syn), ("tau_mem", tau_mem)):
        if not (tau > 0 and dt / tau <= 1.0):
            raise NIRImportError(f"node {name!r}: need {field} >= dt = {dt} s for a stable Euler step, found "
                                 f"{tau} (is dt right? snnTorch exports for dt = 1e-4)")
    scale = np.broadcast_to(scale, (n,))[:, None]
    recs = _rec_names(g, name)
    others = [p for p in g.pred[name] if p not in recs]
    if len(recs) > 1 or len(others) != 1:
        raise NIRImportError(f"node {name!r}: expected one input weight and at most one self-loop, found inputs "
                             f"{g.pred[name]}")
    w_rec = None
    if recs:
        w, _ = g.weight(recs[0], allow_bias=False)
        if w.shape != (n, n):
            raise NIRImportError(f"node {recs[0]!r}: recurrent weight must be [{n}, {n}], found {w.shape}")
        w_rec = _dense_to_sparse(w * scale)
    v_reset = _scalar(name, node, "v_reset") if getattr(node, "v_reset", None) is not None else 0.0
    return LIFLayerSpec(name=f"layer{index}", n=n, w_in=_dense_to_sparse(w_in * scale), w_rec=w_rec,
                        tau_syn_inv=1.0 / tau_syn, tau_mem_inv=1.0 / tau_mem,
                        v_th=_scalar(name, node, "v_threshold"), v_leak=_scalar(name, node, "v_leak"),
                        v_reset=v_reset)


def _readout(g: _Graph, wname: str, nxt: str, out: str, dt: float) -> ReadoutSpec:
    import nir

    node = g.nodes[nxt]
    if nxt == out:
        w, bias = g.weight(wname, allow_bias=True)
        return ReadoutSpec("linear", _dense_to_sparse(w), np.zeros(w.shape[0]) if bias is None else bias)
    if not isinstance(node, (nir.LI, nir.CubaLI)):
        raise NIRImportError(f"node {nxt!r}: expected CubaLIF/LIF (layer), LI/CubaLI (readout) or Output, found "
                             f"{type(node).__name__}")
    w, _ = g.weight(wname, allow_bias=False)
    C = w.shape[0]
    tau_syn, tau_mem, scale = _time_constants(g, nxt, dt)
    bias = np.zeros(C)
    after = g.next_of(nxt)
    if after != out:
        wb, b = g.weight(after, allow_bias=True)
        if wb.shape != (C, C) or not np.array_equal(wb, np.eye(C)) or g.next_of(after) != out:
            raise NIRImportError(f"node {after!r}: after the LI readout only an output bias Affine(I, b) -> Output "
                                 f"is supported")
        bias = np.zeros(C) if b is None else b
    w = w * np.broadcast_to(scale, (C,))[:, None]
    return ReadoutSpec("li", _dense_to_sparse(w), bias, tau_syn_inv=1.0 / tau_syn, tau_mem_inv=1.0 / tau_mem,
                       v_leak=_scalar(nxt, node, "v_leak"))


def spec_to_model(spec: NetworkSpec):
    """A SequenceModel (kind "lif") with exactly the spec's weights: the active entries are the
    spec's nonzero connections, each with its own sign. Such a model converts and simulates like
    a trained one; rewiring it further would regrow entries with this project's hashed signs."""
    import torch

    from .model import ModelConfig, SequenceModel

    ls0, ro = spec.layers[0], spec.readout
    if ro.kind == "li" and ro.v_leak != 0.0:
        raise NIRImportError(f"readout v_leak must be 0 (this project's LI readout leaks to 0), found {ro.v_leak}")
    cfg = ModelConfig(kind="lif", hidden=[int(ls.n) for ls in spec.layers], dt=spec.dt,
                      tau_syn_inv=ls0.tau_syn_inv, tau_mem_inv=ls0.tau_mem_inv, v_th=ls0.v_th,
                      v_reset=ls0.v_reset, v_leak=ls0.v_leak, readout=ro.kind,
                      readout_tau_syn_inv=ro.tau_syn_inv or None, readout_tau_mem_inv=ro.tau_mem_inv or None,
                      dense_readout=True, connectivity=1.0, exclude_diagonal=False)
    model = SequenceModel(cfg, spec.n_input, ro.weights.shape[0])
    with torch.no_grad():
        for layer, ls in zip(model.layers, spec.layers):
            _load(layer.w_in, ls.w_in)
            _load(layer.w_rec, ls.w_rec or SparseWeights((ls.n, ls.n), [], [], []))
        model.readout.weight.copy_(torch.from_numpy(ro.weights.to_dense()))
        if model.readout.bias is not None:
            model.readout.bias.copy_(torch.as_tensor(np.asarray(ro.bias, dtype=np.float32)))
    return model


def _load(matrix, w: SparseWeights) -> None:
    """Make ``w``'s entries the active set (at least one explicit entry: a SparseMatrix is never empty)."""
    import torch

    rows, cols, values = w.rows, w.cols, w.values
    if rows.size == 0:
        rows, cols, values = np.array([0]), np.array([1 % w.shape[1]]), np.array([0.0], np.float32)
    idx = torch.as_tensor(rows * w.shape[1] + cols, dtype=torch.int64)
    order = torch.argsort(idx)
    vals = torch.as_tensor(values, dtype=torch.float32)[order]
    sign = torch.where(vals < 0, -1.0, 1.0)
    matrix.set_active(idx[order], vals.abs(), sign=sign)


def read_nir_model(path, dt: float):
    """``nir.read`` a file and build its SequenceModel; returns (model, spec)."""
    import nir

    from .errors import UserFileNotFoundError

    if not Path(path).is_file():
        raise UserFileNotFoundError(f"{path}: no such NIR file")
    try:
        graph = nir.read(str(path))
    except (OSError, KeyError, ValueError) as err:
        raise NIRImportError(f"{path} is not a readable NIR file ({type(err).__name__}: {err})") from None
    spec = nir_to_spec(graph, dt)
    return spec_to_model(spec), spec
