"""`SequenceModel`: stacked sparse recurrent layers + a frame-wise readout, built from `ModelConfig`.

    x [T, B, F] ─► layer0 ─► layer1 ─► … ─► readout ─► logits [T, B, C]

Layers are :class:`~spiking_deepr.layers.SparseLIFRecurrent` (``kind="lif"``),
:class:`~spiking_deepr.layers.SparseALIFRecurrent` (``"lsnn"``: LIF and ALIF neurons mixed in every
layer) or :class:`~spiking_deepr.layers.SparseLSTM` (``"lstm"``), optionally wrapped in
:class:`~spiking_deepr.layers.Bidirectional`. Every weight matrix is a DEEP R
:class:`~spiking_deepr.sparse.SparseMatrix`, listed by stable names in :meth:`SequenceModel.sparse_matrices`
(train them with ``DeepR``/``DeepRAdam``); everything else (biases, a dense readout) is in
:meth:`SequenceModel.dense_parameters` (train with a normal optimizer).

Matrix names: ``layer{l}.w_in``, ``layer{l}.w_rec`` (LSTM ``budget="per_gate"``:
``layer{l}.w_in.i`` … ``layer{l}.w_rec.o``), bidirectional ``layer{l}.forward.w_in``,
``layer{l}.backward.w_in`` …, and ``readout``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .encoding import ENCODINGS, delta_encode, encoded_features
from .export import (ALIFLayerSpec, ExportError, LIFLayerSpec, LSTMLayerSpec, NetworkSpec, ReadoutSpec,
                     SparseWeights)
from .layers import (Bidirectional, LinearReadout, LIFParameters, LIReadout, SparseALIFRecurrent,
                     SparseLIFRecurrent, SparseLSTM)
from .layers._common import check_lengths, check_time_major, masked_mean_rate
from .layers.lif import RESETS
from .layers.lstm import BUDGETS
from .layers.surrogate import DEFAULT_ALPHA, METHODS, SCALED_METHODS
from .sparse import SparseMatrix
from .sparse.allocation import ALLOCATIONS, allocate

__all__ = ["ModelConfig", "SequenceModel"]

KINDS = ("lif", "lsnn", "lstm")
READOUTS = ("li", "linear")


@dataclass
class ModelConfig:
    """Architecture of a :class:`SequenceModel` (an omegaconf structured config: primitives only).

    Architecture
        kind: ``"lif"`` | ``"lsnn"`` | ``"lstm"``.
        hidden: neurons (LSTM units) per layer, e.g. ``[400]`` or ``[300, 300]``.
        n_alif: ALIF neurons per LSNN layer (the rest are LIF); None: ``round(alif_fraction * hidden[l])``.
        alif_fraction: fraction of ALIF neurons when ``n_alif`` is None (e.g. 0.25 → 300 LIF + 100 ALIF).
        bidirectional: a forward and a time-reversed backward layer per level, outputs concatenated
            (training only: ``to_spec()`` refuses it).
    Neurons (Norse units: seconds and inverse seconds; scalars per population)
        dt, tau_syn_inv, tau_mem_inv, v_th, v_reset, v_leak: LIF parameters.
        tau_adapt_inv: inverse adaptation time constant of ALIF neurons (rho = exp(-dt*tau_adapt_inv)).
        beta: adaptation strength of ALIF neurons (threshold v_th + beta * b).
        surrogate: surrogate gradient method (Norse's ``super``, ``tanh``, ``triangle``, ``circ``,
            ``heavi_erfc``, ``heaviside``, or ``bellec``).
        surrogate_alpha: its parameter; None: a per-method default (``layers.surrogate.DEFAULT_ALPHA``;
            for ``bellec`` it is the thr_scale, dampening 0.3; for ``lsnn`` the dampening, 0.3).
    LSNN recipe options (Bellec et al.; docs/lsnn_recipe.md). Default | recipe:
        reset: ``"value"`` (v = v_reset after a spike, Norse) | ``"subtract"`` (v -= v_th).
        refractory: 0 | R steps after a spike without spiking, voltage held (Norse ``lif_refrac``).
        surrogate ``"lsnn"``: LSNN-official pseudo-derivative, 0.3·max(0, 1-|x|) on
            x = (v - A)/A with the adaptive threshold A (see ``layers.surrogate``).
        n_repeat: 1 | n: every input frame is presented n times (n simulation steps of ``dt`` per
            frame; spiking layers run T·n steps); the readout runs once per frame on the last
            layer's output averaged over the frame's n steps, so logits, labels and lengths stay
            per frame (as the authors' ``outputs_ds``). Rates in ``spike_statistics`` are per step.
    Input
        input_encoding: ``"none"`` (real-valued input, graded spikes on chip) | ``"delta"`` (send-on-delta
            ON/OFF spikes, 2 channels per feature, computed inside the model so training sees exactly
            the spikes a chip receives; what Loihi 1, which has binary spikes only, needs; see
            `spiking_deepr.encoding`).
        input_threshold: the delta encoder's threshold θ (in feature units; features are normalised).
    Readout
        readout: ``"li"`` (Norse leaky integrator, output v + bias) | ``"linear"``.
        readout_tau_syn_inv, readout_tau_mem_inv: LI time constants; None: the neurons' values.
        dense_readout: a dense readout weight (normal optimizer) instead of a SparseMatrix.
    Connectivity (DEEP R budgets: fraction of admissible entries active in each matrix)
        connectivity: default for every matrix.
        input_connectivity, recurrent_connectivity, readout_connectivity: per-kind overrides (None:
            ``connectivity``). ``input`` covers every feed-forward matrix into a layer.
        allocation: how ``connectivity`` is split over the input and recurrent matrices of all layers:
            ``uniform`` (each gets ``connectivity``) or ``erdos_renyi`` (the same total, each matrix's
            share ∝ (n_out + n_in) / (n_out * n_in), SET's and RigL's allocation; see
            `spiking_deepr.sparse.allocation`; ``model=lsnn``'s default). Not with the per-kind overrides.
        fan_in_cap: at most this many connections into one neuron, per matrix (hardware limit).
        exclude_diagonal: no self-connections in recurrent spiking matrices.
        dale: Dale's law for spiking layers: each neuron is excitatory or inhibitory
            (``excitatory_fraction``), fixing the sign of all its outgoing connections (recurrent,
            next layer, sparse readout). Input-feature signs stay random. Not for LSTMs.
        excitatory_fraction: fraction of excitatory neurons under ``dale``.
        lstm_budget: ``"joint"`` (one matrix over the four gates) | ``"per_gate"`` (four).
        lstm_forget_bias: initial forget-gate bias of LSTMs, dense and sparse alike (e.g. 1.0, Jozefowicz
            et al. 2015); null: torch's uniform init (the default: it validated better, README
            "Default configurations").
        init_gain: multiplies the default initialisation std (1/sqrt(fan-in) of the dense matrix
            each SparseMatrix replaces).
    Input quantisation (what a fixed-point chip receives; set by ``sdr finetune --qat``)
        input_step: None (real input), or round the input to multiples of this step, clipped to
            ±(2**(input_bits-1) - 1) steps: the graded payloads of the Lava fixed-point graph.
        input_bits: signed payload width for ``input_step``.
    seed: seeds all matrices, signs and biases.
    """

    kind: str = "lsnn"
    hidden: List[int] = field(default_factory=lambda: [128])
    n_alif: Optional[int] = None
    alif_fraction: float = 0.25
    bidirectional: bool = False
    dt: float = 1e-3
    tau_syn_inv: float = 1.0 / 5e-3
    tau_mem_inv: float = 1.0 / 2e-2
    v_th: float = 1.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    tau_adapt_inv: float = 1.0 / 0.2
    beta: float = 1.8
    surrogate: str = "bellec"
    surrogate_alpha: Optional[float] = None
    reset: str = "value"
    refractory: int = 0
    n_repeat: int = 1
    input_encoding: str = "none"
    input_threshold: float = 0.5
    readout: str = "li"
    readout_tau_syn_inv: Optional[float] = None
    readout_tau_mem_inv: Optional[float] = None
    dense_readout: bool = False
    connectivity: float = 0.1
    input_connectivity: Optional[float] = None
    recurrent_connectivity: Optional[float] = None
    readout_connectivity: Optional[float] = None
    allocation: str = "uniform"
    fan_in_cap: Optional[int] = None
    exclude_diagonal: bool = True
    dale: bool = False
    excitatory_fraction: float = 0.8
    lstm_budget: str = "joint"
    lstm_forget_bias: Optional[float] = None
    init_gain: float = 1.0
    input_step: Optional[float] = None
    input_bits: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with the offending field's name for an inconsistent configuration."""
        def bad(name, msg):
            raise ValueError(f"ModelConfig.{name}: {msg}, got {getattr(self, name)!r}")

        if self.kind not in KINDS:
            bad("kind", f"must be one of {KINDS}")
        hidden = list(self.hidden)
        if not hidden or any(int(h) <= 0 for h in hidden):
            bad("hidden", "must be a non-empty list of positive layer sizes")
        if self.n_alif is not None and not all(0 <= self.n_alif <= h for h in hidden):
            bad("n_alif", f"must lie in [0, min(hidden)={min(hidden)}]")
        if not 0.0 <= self.alif_fraction <= 1.0:
            bad("alif_fraction", "must lie in [0, 1]")
        for name in ("dt", "tau_syn_inv", "tau_mem_inv", "tau_adapt_inv", "init_gain"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        if self.beta < 0:
            bad("beta", "must be >= 0")
        if self.surrogate not in METHODS:
            bad("surrogate", f"must be one of {METHODS}")
        if self.surrogate in SCALED_METHODS and not self.v_th > 0:
            bad("v_th", f"must be > 0 with surrogate={self.surrogate!r} (it divides by the threshold)")
        if self.reset not in RESETS:
            bad("reset", f"must be one of {RESETS}")
        if int(self.refractory) != self.refractory or self.refractory < 0:
            bad("refractory", "must be a whole number of steps >= 0")
        if int(self.n_repeat) != self.n_repeat or self.n_repeat < 1:
            bad("n_repeat", "must be a whole number >= 1")
        if self.readout not in READOUTS:
            bad("readout", f"must be one of {READOUTS}")
        for name in ("connectivity", "input_connectivity", "recurrent_connectivity", "readout_connectivity"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                bad(name, "must lie in (0, 1]")
        if self.allocation not in ALLOCATIONS:
            bad("allocation", f"must be one of {ALLOCATIONS}")
        if self.allocation != "uniform" and (self.input_connectivity is not None
                                             or self.recurrent_connectivity is not None):
            bad("allocation", "splits model.connectivity over the matrices itself (the LSNN's default): "
                              "set model.allocation=uniform to give input_connectivity or "
                              "recurrent_connectivity, or leave those unset")
        if self.fan_in_cap is not None and self.fan_in_cap <= 0:
            bad("fan_in_cap", "must be positive or None")
        if self.input_encoding not in ENCODINGS:
            bad("input_encoding", f"must be one of {ENCODINGS}")
        if not self.input_threshold > 0:
            bad("input_threshold", "must be > 0")
        if self.lstm_budget not in BUDGETS:
            bad("lstm_budget", f"must be one of {BUDGETS}")
        if self.dale and self.kind == "lstm":
            bad("dale", "Dale's law applies to spiking layers, not to kind='lstm'")
        if not 0.0 < self.excitatory_fraction <= 1.0:
            bad("excitatory_fraction", "must lie in (0, 1]")
        if self.input_step is not None and not self.input_step > 0:
            bad("input_step", "must be > 0 or None")
        if not 2 <= self.input_bits <= 24:
            bad("input_bits", "must lie in 2..24")

    # resolved values
    def alpha(self) -> float:
        return DEFAULT_ALPHA[self.surrogate] if self.surrogate_alpha is None else float(self.surrogate_alpha)

    def alif_count(self, layer: int) -> int:
        h = int(self.hidden[layer])
        return int(self.n_alif) if self.n_alif is not None else int(round(self.alif_fraction * h))

    def conn(self, which: str) -> float:
        value = getattr(self, f"{which}_connectivity")
        return self.connectivity if value is None else value


class SequenceModel(nn.Module):
    """Sparse recurrent sequence classifier: x [T, B, F] -> frame-wise logits [T, B, C].

    Args:
        cfg: a :class:`ModelConfig` (or an omegaconf DictConfig of one).
        n_features: F. n_classes: C.
    """

    def __init__(self, cfg: ModelConfig, n_features: int, n_classes: int) -> None:
        super().__init__()
        cfg = _as_config(cfg)
        if n_features <= 0 or n_classes <= 0:
            raise ValueError(f"SequenceModel: n_features and n_classes must be positive, got {n_features}, {n_classes}")
        self.cfg, self.n_features, self.n_classes = cfg, int(n_features), int(n_classes)
        gen = torch.Generator().manual_seed(cfg.seed + 99991)
        self.layers = nn.ModuleList()
        self._signs: List[Optional[torch.Tensor]] = []
        n_in, in_sign = encoded_features(self.n_features, cfg.input_encoding), None
        self._connectivity = self._layer_connectivities(n_in)
        for l, h in enumerate(cfg.hidden):
            seed = cfg.seed * 1000 + 10 * l
            if cfg.bidirectional:
                sign_f, sign_b = self._dale_signs(int(h), gen), self._dale_signs(int(h), gen)
                layer = Bidirectional(self._make_layer(l, n_in, in_sign, sign_f, seed),
                                      self._make_layer(l, n_in, in_sign, sign_b, seed + 5))
                out_sign = None if sign_f is None else torch.cat([sign_f, sign_b])
                n_out = 2 * int(h)
            else:
                out_sign = self._dale_signs(int(h), gen)
                layer = self._make_layer(l, n_in, in_sign, out_sign, seed)
                n_out = int(h)
            self.layers.append(layer)
            self._signs.append(out_sign)
            n_in, in_sign = n_out, out_sign
        rconn = None if cfg.dense_readout else cfg.conn("readout")
        common = dict(connectivity=rconn, fan_in_cap=cfg.fan_in_cap, presynaptic_sign=in_sign,
                      init_std=cfg.init_gain / n_in ** 0.5, seed=cfg.seed * 1000 + 999)
        if cfg.readout == "li":
            self.readout = LIReadout(n_in, self.n_classes, dt=cfg.dt, v_leak=0.0,
                                     tau_syn_inv=cfg.readout_tau_syn_inv or cfg.tau_syn_inv,
                                     tau_mem_inv=cfg.readout_tau_mem_inv or cfg.tau_mem_inv, **common)
        else:
            self.readout = LinearReadout(n_in, self.n_classes, **common)
        self._rates: List[torch.Tensor] = []
        self.last_stats: Dict[str, float] = {}

    # ----------------------------------------------------------------------------- construction
    def _layer_connectivities(self, n_in: int, connectivity: Optional[float] = None) -> List[Tuple[float, float]]:
        """(input, recurrent) connectivity of every layer: the per-kind values, or ``connectivity``
        (default: the config's) split over all input and recurrent matrices by ``allocation``."""
        cfg = self.cfg if connectivity is None else replace(self.cfg, connectivity=connectivity)
        if cfg.allocation == "uniform":
            return [(cfg.conn("input"), cfg.conn("recurrent"))] * len(cfg.hidden)
        shapes, copies = [], 2 if cfg.bidirectional else 1  # copies: matrices of one shape in a layer
        for h in map(int, cfg.hidden):
            if cfg.kind == "lstm":  # one [4h, n] matrix per kind, or four [h, n] (per-gate budgets)
                rows = 4 * h if cfg.lstm_budget == "joint" else h
                n = copies * (4 * h // rows)
                shapes += [(rows, n_in, n * rows * n_in), (rows, h, n * rows * h)]
            else:
                rec = h * (h - 1) if cfg.exclude_diagonal else h * h
                shapes += [(h, n_in, copies * h * n_in), (h, h, copies * rec)]
            n_in = copies * h
        p = allocate(shapes, cfg.connectivity, cfg.allocation)
        return list(zip(p[0::2], p[1::2]))

    def _dale_signs(self, n: int, gen: torch.Generator) -> Optional[torch.Tensor]:
        if not self.cfg.dale:
            return None
        n_exc = int(round(self.cfg.excitatory_fraction * n))
        sign = torch.full((n,), -1.0)
        sign[torch.randperm(n, generator=gen)[:n_exc]] = 1.0
        return sign

    def _make_layer(self, l: int, n_in: int, in_sign, rec_sign, seed: int) -> nn.Module:
        cfg, h = self.cfg, int(self.cfg.hidden[l])
        p_in, p_rec = self._connectivity[l]
        in_std = cfg.init_gain / n_in ** 0.5
        if cfg.kind == "lstm":
            return SparseLSTM(n_in, h, budget=cfg.lstm_budget, input_connectivity=p_in,
                              recurrent_connectivity=p_rec, fan_in_cap=cfg.fan_in_cap,
                              init_std=cfg.init_gain / h ** 0.5, forget_bias=cfg.lstm_forget_bias, seed=seed)
        p = LIFParameters(torch.as_tensor(cfg.tau_syn_inv), torch.as_tensor(cfg.tau_mem_inv),
                          torch.as_tensor(cfg.v_leak), torch.as_tensor(cfg.v_th), torch.as_tensor(cfg.v_reset),
                          cfg.surrogate, cfg.alpha())
        common = dict(dt=cfg.dt, reset=cfg.reset, refractory=int(cfg.refractory), input_connectivity=p_in,
                      recurrent_connectivity=p_rec, exclude_diagonal=cfg.exclude_diagonal,
                      fan_in_cap=cfg.fan_in_cap, input_sign=in_sign, recurrent_sign=rec_sign,
                      input_init_std=in_std, recurrent_init_std=cfg.init_gain / h ** 0.5, seed=seed)
        if cfg.kind == "lif":
            return SparseLIFRecurrent(n_in, h, p, **common)
        n_alif = cfg.alif_count(l)
        return SparseALIFRecurrent(n_in, h - n_alif, n_alif, p, beta=cfg.beta, tau_adapt_inv=cfg.tau_adapt_inv,
                                   **common)

    # ----------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [T, B, n_features] (time-major), lengths int [B] or None -> logits [T, B, n_classes].

        With ``n_repeat = n`` the layers run T·n steps (each frame repeated n times) and the readout
        sees the last layer's output averaged over each frame's n steps. Also records per-layer
        spike rates of this forward (padding excluded), see :meth:`spike_statistics` and
        :meth:`firing_rate_loss`."""
        check_time_major(x, self.n_features, "SequenceModel")
        T = x.shape[0]
        lengths = check_lengths(lengths, T, x.shape[1], "SequenceModel")
        x = self.encode_input(x)
        n = int(self.cfg.n_repeat)
        if n > 1:
            x = x.repeat_interleave(n, dim=0)
            lengths = None if lengths is None else lengths * n
        rates, stats = [], {}
        h = x
        for l, layer in enumerate(self.layers):
            if isinstance(layer, Bidirectional):
                h, _ = layer(h, lengths)
            else:
                h, _ = layer(h)
            if self.cfg.kind != "lstm":
                r = masked_mean_rate(h, lengths)  # [N] spikes per step, differentiable
                rates.append(r)
                stats[f"layer{l}"] = float(r.detach().mean()) if r.numel() else 0.0
        self._rates, self.last_stats = rates, stats
        if n > 1:
            h = h.view(T, n, *h.shape[1:]).mean(dim=1)
        return self.readout(h)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """x rounded to multiples of ``input_step`` (in float64, as the converter does), clipped to
        ±(2**(input_bits-1) - 1) steps; the same dtype as x."""
        step, lim = float(self.cfg.input_step), 2 ** (self.cfg.input_bits - 1) - 1
        return ((x.double() / step).round().clamp(-lim, lim) * step).to(x.dtype)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input as its first layer receives it: x [T, B, n_features] itself (rounded
        to ``input_step`` if set), or its spike encoding [T, B, 2 n_features] (``input_encoding="delta"``)."""
        if self.cfg.input_encoding == "delta":
            return delta_encode(x, self.cfg.input_threshold)
        return x if self.cfg.input_step is None else self.quantize_input(x)

    # ----------------------------------------------------------------------------- parameters
    def _layer_matrices(self, prefix: str, layer: nn.Module) -> Dict[str, SparseMatrix]:
        if isinstance(layer, Bidirectional):
            out = {}
            out.update(self._layer_matrices(f"{prefix}.forward", layer.forward_layer))
            out.update(self._layer_matrices(f"{prefix}.backward", layer.backward_layer))
            return out
        if isinstance(layer, SparseLSTM):
            return {name.replace("w_ih", f"{prefix}.w_in").replace("w_hh", f"{prefix}.w_rec"): m
                    for name, m in layer.matrices().items()}
        out = {f"{prefix}.w_in": layer.w_in}
        if layer.w_rec is not None:
            out[f"{prefix}.w_rec"] = layer.w_rec
        return out

    def sparse_matrices(self) -> Dict[str, SparseMatrix]:
        """All DEEP R matrices by stable name, in layer order (readout last)."""
        out: Dict[str, SparseMatrix] = {}
        for l, layer in enumerate(self.layers):
            out.update(self._layer_matrices(f"layer{l}", layer))
        if self.readout.w is not None:
            out["readout"] = self.readout.w
        return out

    def matrix_connectivities(self, connectivity: float) -> Dict[str, float]:
        """The connectivity each matrix of :meth:`sparse_matrices` (by name) is built with when the
        model's budget is ``connectivity``: the per-kind values or the ``allocation`` split, as at
        construction. What magnitude pruning prunes a model built dense down to."""
        layers = self._layer_connectivities(encoded_features(self.n_features, self.cfg.input_encoding), connectivity)
        out = {}
        for name in self.sparse_matrices():
            if name == "readout":
                out[name] = replace(self.cfg, connectivity=connectivity).conn("readout")
            else:  # layer{l}[.forward|.backward].w_in|w_rec[.gate]
                p_in, p_rec = layers[int(name.split(".")[0][len("layer"):])]
                out[name] = p_in if ".w_in" in name else p_rec
        return out

    def dense_parameters(self) -> List[nn.Parameter]:
        """Trainable parameters that are not DEEP R magnitudes (biases, a dense readout weight)."""
        sparse = {id(m.theta) for m in self.sparse_matrices().values()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def connectivity_report(self) -> List[dict]:
        """Per matrix: name, active, possible, connectivity, max_fan_in, max_fan_out, fan_in_cap."""
        report = []
        for name, m in self.sparse_matrices().items():
            s = m.statistics()
            report.append({"name": name, "shape": list(m.shape), **{k: s[k] for k in (
                "active", "possible", "connectivity", "max_fan_in", "max_fan_out", "fan_in_cap")}})
        return report

    def to_dense(self) -> Dict[str, torch.Tensor]:
        """Dense weight matrix per sparse matrix name (inspection only: O(n_out * n_in) memory)."""
        return {name: m.to_dense() for name, m in self.sparse_matrices().items()}

    # ----------------------------------------------------------------------------- spikes
    def spike_statistics(self) -> Dict[str, dict]:
        """Per spiking layer of the last forward: mean rate (spikes/step), rate in Hz, silent fraction."""
        out = {}
        for l, r in enumerate(self._rates):
            r = r.detach()
            out[f"layer{l}"] = {"mean_rate": float(r.mean()), "mean_rate_hz": float(r.mean()) / self.cfg.dt,
                                "silent_fraction": float((r == 0).float().mean()), "neurons": int(r.numel())}
        return out

    def firing_rate_loss(self, target_rate: float) -> torch.Tensor:
        """LSNN rate regulariser: mean over all spiking neurons of (rate - target_rate)^2.

        Rates are spikes per time step (probability; 10 Hz at dt = 1 ms is 0.01), averaged over the
        time and batch of the last forward with padding excluded. Zero for LSTM models."""
        if self.cfg.kind == "lstm":
            return torch.zeros(())
        if not self._rates:
            raise RuntimeError("SequenceModel.firing_rate_loss: call forward() first")
        rates = torch.cat(self._rates)
        return ((rates - target_rate) ** 2).mean()

    # ----------------------------------------------------------------------------- export
    def to_spec(self) -> NetworkSpec:
        """The framework-neutral description read by the Lava converter (unidirectional models only)."""
        cfg = self.cfg
        if cfg.bidirectional:
            raise ExportError(
                "SequenceModel.to_spec: bidirectional models cannot be converted — the backward layer "
                "needs the whole sequence before its first output, which cannot run online on Lava/Loihi. "
                "Train with bidirectional=False to deploy.")
        layers = []
        for l, layer in enumerate(self.layers):
            name = f"layer{l}"
            if isinstance(layer, SparseLSTM):
                w_ih, w_hh = _merge_rows(list(layer.w_ih)), _merge_rows(list(layer.w_hh))
                bias = (layer.bias.detach().float().cpu().numpy() if layer.bias is not None
                        else np.zeros(4 * layer.hidden_size, np.float32))
                layers.append(LSTMLayerSpec(name=name, hidden=layer.hidden_size, w_ih=w_ih, w_hh=w_hh, bias=bias))
                continue
            common = dict(name=name, n=layer.hidden_size, w_in=_weights(layer.w_in),
                          w_rec=None if layer.w_rec is None else _weights(layer.w_rec),
                          tau_syn_inv=float(layer.tau_syn_inv), tau_mem_inv=float(layer.tau_mem_inv),
                          v_th=float(layer.v_th), v_leak=float(layer.v_leak), v_reset=float(layer.v_reset),
                          reset=layer.reset, refractory=layer.refractory)
            if isinstance(layer, SparseALIFRecurrent):
                layers.append(ALIFLayerSpec(**common, beta=layer.beta.detach().float().cpu().numpy(),
                                            tau_adapt_inv=float(layer.tau_adapt_inv)))
            else:
                layers.append(LIFLayerSpec(**common))
        ro = self.readout
        if ro.w is not None:
            weights = _weights(ro.w)
        else:
            dense = ro.weight.detach().float().cpu().numpy()
            rows, cols = np.divmod(np.arange(dense.size), dense.shape[1])
            weights = SparseWeights(dense.shape, rows, cols, dense.reshape(-1))
        bias = ro.bias.detach().float().cpu().numpy() if ro.bias is not None else np.zeros(ro.n_classes, np.float32)
        if isinstance(ro, LIReadout):
            readout = ReadoutSpec("li", weights, bias, tau_syn_inv=float(ro.tau_syn_inv),
                                  tau_mem_inv=float(ro.tau_mem_inv), v_leak=float(ro.v_leak))
        else:
            readout = ReadoutSpec("linear", weights, bias)
        return NetworkSpec(n_input=encoded_features(self.n_features, cfg.input_encoding), dt=cfg.dt,
                           layers=layers, readout=readout, n_classes=self.n_classes,
                           n_repeat=int(cfg.n_repeat), input_spikes=cfg.input_encoding != "none")


def _weights(m: SparseMatrix) -> SparseWeights:
    return SparseWeights(m.shape, m.rows.cpu().numpy(), m.cols.cpu().numpy(),
                         m.weight_values().detach().float().cpu().numpy())


def _merge_rows(mats: List[SparseMatrix]) -> SparseWeights:
    """Stack matrices vertically (per-gate LSTM matrices -> one [4H, in] matrix), keeping entries."""
    if len(mats) == 1:
        return _weights(mats[0])
    parts = [_weights(m) for m in mats]
    offsets = np.cumsum([0] + [m.n_out for m in mats[:-1]])
    return SparseWeights((sum(m.n_out for m in mats), mats[0].n_in),
                         np.concatenate([p.rows + o for p, o in zip(parts, offsets)]),
                         np.concatenate([p.cols for p in parts]),
                         np.concatenate([p.values for p in parts]))


def _as_config(cfg) -> ModelConfig:
    if isinstance(cfg, ModelConfig):
        cfg.validate()
        return cfg
    try:  # omegaconf DictConfig (structured or plain)
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(cfg, dict):
        return ModelConfig(**cfg)
    raise TypeError(f"SequenceModel: expected a ModelConfig, got {type(cfg).__name__}")
