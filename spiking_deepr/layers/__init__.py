"""Sparse recurrent layers (LIF, adaptive LIF / LSNN, LSTM), readouts and surrogate gradients.

Every layer is a pure step function plus a thin ``nn.Module`` that loops over time; inputs are
time-major [T, B, F]. Weight matrices are DEEP R :class:`~spiking_deepr.sparse.SparseMatrix` objects.
"""
from .alif import ALIFParameters, ALIFRefracState, ALIFState, SparseALIFRecurrent, alif_step
from .bidirectional import Bidirectional, reverse_padded
from .lif import LIFParameters, LIFRefracState, LIFState, SparseLIFRecurrent, lif_step
from .lstm import LSTMState, SparseLSTM, lstm_step
from .readout import LinearReadout, LIReadout
from .surrogate import BellecSpike, bellec_fn, spike_fn, threshold_spike

__all__ = [
    "ALIFParameters", "ALIFState", "ALIFRefracState", "SparseALIFRecurrent", "alif_step",
    "Bidirectional", "reverse_padded",
    "LIFParameters", "LIFState", "LIFRefracState", "SparseLIFRecurrent", "lif_step",
    "LSTMState", "SparseLSTM", "lstm_step",
    "LinearReadout", "LIReadout",
    "BellecSpike", "bellec_fn", "spike_fn", "threshold_spike",
]
