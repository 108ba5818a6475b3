"""Framework-neutral description of a trained network: what a backend (Lava) converts.

Everything here is plain numpy, so `lava_backend` never reaches into PyTorch modules and
`spiking_deepr` never imports lava. A `SequenceModel` produces a `NetworkSpec` with
``model.to_spec()``; `lava_backend.convert` turns it into a Lava process graph.

Time is discrete with step ``dt`` (seconds). All layers follow the PyTorch semantics of
`spiking_deepr.layers` exactly (see each spec's docstring); the converter is responsible for
the one-step delay that every Lava synapse hop adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from .errors import UserError


class ExportError(UserError, ValueError):
    """A trained model cannot be described as a NetworkSpec (e.g. bidirectional: not online)."""


@dataclass
class SparseWeights:
    """A synaptic matrix of shape ``[n_out, n_in]`` given by its K explicit entries.

    Entries are kept even when their value is 0.0 (a DEEP R connection that was just regrown,
    or one that quantises to zero), so the connectivity — what a chip must store — is
    ``(rows, cols)``, independent of the values.

    rows, cols: int64 [K], row-major sorted and unique.
    values:     float32 [K], the effective weights w = sign * theta.
    """

    shape: Tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.cols = np.asarray(self.cols, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float32)
        if not (self.rows.shape == self.cols.shape == self.values.shape) or self.rows.ndim != 1:
            raise ValueError(
                f"SparseWeights: rows, cols and values must be 1-D of equal length, got "
                f"{self.rows.shape}, {self.cols.shape}, {self.values.shape}"
            )

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def fan_in(self) -> np.ndarray:
        """Number of connections into each postsynaptic neuron, int64 [n_out]."""
        return np.bincount(self.rows, minlength=self.shape[0])

    def fan_out(self) -> np.ndarray:
        """Number of connections out of each presynaptic neuron, int64 [n_in]."""
        return np.bincount(self.cols, minlength=self.shape[1])

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=np.float32)
        dense[self.rows, self.cols] = self.values
        return dense

    def to_scipy_csr(self):
        """scipy CSR that keeps explicit zeros (``csr_matrix(dense)`` would drop them)."""
        from scipy.sparse import csr_matrix

        return csr_matrix((self.values, (self.rows, self.cols)), shape=self.shape)


@dataclass
class LIFLayerSpec:
    """Recurrent current-based LIF layer, Norse ``lif_step`` semantics, per step t:

        i_jump = i + W_in x[t] + W_rec z[t-1]
        v'     = v + dt*tau_mem_inv*((v_leak - v) + i_jump)
        i      = i_jump * (1 - dt*tau_syn_inv)
        z[t]   = v' > v_th                         (strictly greater)
        v      = v_reset where z[t] else v'

    Options (``spiking_deepr.layers.lif``): ``reset="subtract"``: v = v' - v_th where z[t];
    ``refractory=R``: for R steps after a spike z = 0 and v keeps its value (counter r:
    refractory while r > 0, r -= 1 per such step, r = R at a spike).
    Neuron parameters are scalars (one value per population, as Lava's LIF requires).
    """

    name: str
    n: int
    w_in: SparseWeights
    w_rec: Optional[SparseWeights]
    tau_syn_inv: float
    tau_mem_inv: float
    v_th: float
    v_leak: float = 0.0
    v_reset: float = 0.0
    reset: str = "value"
    refractory: int = 0
    kind: str = field(default="lif", init=False)


@dataclass
class ALIFLayerSpec(LIFLayerSpec):
    """LIF layer with an adaptive threshold on some neurons (LSNN, Bellec et al. 2018):

        b[t]   = rho * b[t-1] + (1 - rho) * z[t-1],   rho = exp(-dt * tau_adapt_inv)
        thr[t] = v_th + beta_k * b[t]
        z[t]   = v' > thr[t]

    with the LIF update above for i and v. ``beta`` is float32 [n]: 0 for plain LIF neurons,
    > 0 for adaptive ones (e.g. 300 LIF + 100 ALIF in one layer).
    """

    beta: np.ndarray = None  # type: ignore[assignment]
    tau_adapt_inv: float = 1.0 / 0.2
    kind: str = field(default="alif", init=False)


@dataclass
class LSTMLayerSpec:
    """LSTM layer with `torch.nn.LSTM` equations and gate order (i, f, g, o):

        gates = W_ih x[t] + W_hh h[t-1] + bias         (W_ih [4H, in], W_hh [4H, H], bias [4H])
        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the four H-slices
        c[t] = f*c[t-1] + i*g;   h[t] = o * tanh(c[t])
    """

    name: str
    hidden: int
    w_ih: SparseWeights
    w_hh: SparseWeights
    bias: np.ndarray
    kind: str = field(default="lstm", init=False)


@dataclass
class ReadoutSpec:
    """Frame-wise readout from the last layer's output [n] to C classes.

    kind "linear": y[t] = W h[t] + bias.
    kind "li":     Norse leaky integrator ``li_step``:
                   i_jump = i + W h[t];  v = v + dt*tau_mem_inv*((v_leak - v) + i_jump);
                   i = i_jump*(1 - dt*tau_syn_inv);  y[t] = v + bias.
    The class at t is argmax_c y[t, c].
    """

    kind: str
    weights: SparseWeights
    bias: np.ndarray
    tau_syn_inv: float = 0.0
    tau_mem_inv: float = 0.0
    v_leak: float = 0.0


LayerSpec = Union[LIFLayerSpec, ALIFLayerSpec, LSTMLayerSpec]


@dataclass
class NetworkSpec:
    """A unidirectional sequence model: real-valued input [T, n_input] -> layers -> readout.

    The input enters the first layer as a current (``W_in x[t]``); layer l>0 receives the
    spikes (or LSTM outputs) of layer l-1 at the same step t. ``input_spikes``: x is binary
    (0/1) spikes of an input encoder (``SequenceModel.encode_input``), sent as binary events
    (Loihi 1 has no graded spikes); otherwise x is real-valued (graded payloads).

    ``n_repeat``: every input frame is presented for n_repeat steps; the layers run at that rate
    and the readout once per frame on the last layer's output averaged over the frame's steps.
    """

    n_input: int
    dt: float
    layers: List[LayerSpec]
    readout: ReadoutSpec
    n_classes: int = 0
    n_repeat: int = 1
    input_spikes: bool = False

    def __post_init__(self) -> None:
        if not self.n_classes:
            self.n_classes = self.readout.weights.shape[0]
