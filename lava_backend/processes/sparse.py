"""ProcessModels for Lava's own ``Sparse`` process that compute the synaptic input as ``W @ s``.

Lava 0.10's ``PySparseModelFloat`` / ``PySparseModelBitAcc`` handle binary spikes
(``num_message_bits == 0``) with ``W[:, s].sum(axis=1).A1``: scipy's column selection builds
a new sparse matrix every step (~120-220 us per call whatever the size). These models do
the same thing as a CSR mat-vec into a buffer allocated once (~5-50 us). Everything else is
Lava's model unchanged:

- the one-step delay: ``a_out`` sends ``a_buff`` (the previous step's accumulation) before
  ``s_in`` is received, ``a_buff`` starts as the process Var's zeros;
- binary inputs are ``s_in.astype(bool)`` (any non-zero payload is a spike);
- graded inputs (``num_message_bits > 0``) use ``weights.dot(s_in)`` with the same dtypes as
  Lava (fixed point: int32 weights x int32 payload -> int32, as scipy computes it);
- fixed point: on the first step the weights go through Lava's own ``clip_weights`` (8 bits)
  and ``truncate_weights`` (``num_weight_bits``, ``sign_mode`` from proc_params or
  ``determine_sign_mode``), and the accumulation is shifted by ``weight_exp`` exactly as
  Lava does (``<< weight_exp`` if > 0, else ``>> -weight_exp``); binary accumulations are
  int64 as Lava's ``.sum`` returns them.

Results: fixed point is bit-identical to Lava's model (integer sums do not depend on the
order). In floating point the graded branch is Lava's own expression; the binary branch
sums each row's active weights in column order, left to right, whereas Lava's
``.sum(axis=1)`` uses ``np.add.reduceat`` (numpy's pairwise summation for rows with more
than 8 active inputs), so the two can differ by a few ulp (observed <= 1e-15).

They are not tagged for discovery (Lava only looks for ``Sparse`` models next to the
``Sparse`` process); ``LavaGraph.run_cfg`` selects them with ``exception_proc_model_map``.
"""
import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.sparse.models import AbstractPySparseModelBitAcc, AbstractPySparseModelFloat
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from lava_backend.processes.common import guarded

try:  # scipy's compiled CSR mat-vec (what ``csr_matrix.dot`` calls), into our own buffer
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - other scipy layouts: fall back to W.dot
    _csr_matvec = None


def csr_matvec_into(w, x, out):
    """``out[:] = w @ x`` for a CSR ``w`` (sorted or not), with scipy's own kernel and
    summation order. ``out`` must have the dtype scipy would give the product
    (``w.dtype`` and ``x.dtype`` equal to ``out.dtype``); otherwise falls back to ``w.dot``."""
    if (_csr_matvec is not None and w.dtype == out.dtype and x.dtype == out.dtype
            and x.flags.c_contiguous):
        out.fill(0)
        m, n = w.shape
        _csr_matvec(m, n, w.indptr, w.indices, w.data, x, out)
    else:
        out[...] = w.dot(x)
    return out


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "lava_backend_dot")
class PySparseDotModelFloat(AbstractPySparseModelFloat):
    """Lava's ``PySparseModelFloat`` with the binary branch as ``W @ s``."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._x = None        # binary input as float64 0/1, allocated on the first step
        self._acc = None      # accumulation buffer (becomes a_buff)

    @guarded
    def run_spk(self):
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() > 0:
            self.a_buff = self.weights.dot(s_in)
            return
        if self._acc is None:
            self._x = np.zeros(self.weights.shape[1], dtype=np.float64)
            self._acc = np.zeros(self.weights.shape[0],
                                 dtype=np.result_type(self.weights.dtype, np.float64))
        np.not_equal(s_in, 0, out=self._x)           # s_in.astype(bool) as 0.0 / 1.0
        self.a_buff = csr_matvec_into(self.weights, self._x, self._acc)


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt", "lava_backend_dot")
class PySparseDotModelBitAcc(AbstractPySparseModelBitAcc):
    """Lava's ``PySparseModelBitAcc`` with the binary branch as ``W @ s`` (bit-identical)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._w64 = None      # clipped/truncated weights as int64 (binary branch)
        self._x = None
        self._acc = None

    def _set_weights(self):
        # exactly Lava's first-step weight processing
        num_weight_bits = self.proc_params.get("num_weight_bits", 8)
        sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
        self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
        self.weights = truncate_weights(self.weights, sign_mode, num_weight_bits)
        self.weights_set = True
        w = self.weights.tocsr()
        self._w64 = w.astype(np.int64)
        self._x = np.zeros(w.shape[1], dtype=np.int64)
        self._acc = np.zeros(w.shape[0], dtype=np.int64)

    @guarded
    def run_spk(self):
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            self._set_weights()
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        e = self.weight_exp
        if self.num_message_bits.item() > 0:
            a_accum = self.weights.dot(s_in)
            self.a_buff = np.left_shift(a_accum, e) if e > 0 else np.right_shift(a_accum, -e)
            return
        # Lava: W[:, s].sum(axis=1).A1 -> int64 sums of the active columns
        np.not_equal(s_in, 0, out=self._x)
        acc = csr_matvec_into(self._w64, self._x, self._acc)
        if e > 0:
            np.left_shift(acc, e, out=acc)
        elif e < 0:
            np.right_shift(acc, -e, out=acc)
        self.a_buff = acc
