"""lava_backend's W @ s Sparse models against Lava's own Sparse models, step by step.

The models are driven directly (stub ports), on the same random weights and inputs:
fixed point must be bit-identical (a_out of every step, and the processed weights), floating
point equal up to summation order (binary spikes: Lava sums with np.add.reduceat).
"""
import numpy as np
import pytest

pytest.importorskip("lava")

from scipy.sparse import csr_matrix, random as sparse_random  # noqa: E402

from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

from lava_backend.processes.sparse import (PySparseDotModelBitAcc,  # noqa: E402
                                           PySparseDotModelFloat, csr_matvec_into)


class _In:
    def __init__(self, seq):
        self._it = iter(seq)

    def recv(self):
        return next(self._it).copy()


class _Out:
    def __init__(self):
        self.sent = []

    def send(self, x):
        self.sent.append(np.array(x, copy=True))


def _run(cls, weights, inputs, num_message_bits, **params):
    m = cls({"num_message_bits": num_message_bits, **params})
    m.weights = weights.copy()
    m.a_buff = np.zeros(weights.shape[0])
    m.num_message_bits = np.array([num_message_bits])
    m.s_in, m.a_out = _In(inputs), _Out()
    for t in range(len(inputs)):
        m.time_step = t + 1
        m.run_spk()
    return np.array(m.a_out.sent), m


def _weights(rng, n_out, n_in, density, lo, hi, dtype):
    w = sparse_random(n_out, n_in, density=density, random_state=rng, format="csr")
    w.data = rng.integers(lo, hi, w.nnz).astype(dtype) if dtype != np.float64 \
        else rng.standard_normal(w.nnz)
    w.data[::7] = 0          # explicit zeros stay in the graph
    return csr_matrix(w, dtype=dtype)


def _inputs(rng, steps, n_in, binary, fixed):
    if binary:
        x = (rng.random((steps, n_in)) < 0.15).astype(np.int32 if fixed else np.float64)
        x[0] = 0
        x[1] = 1
        return list(x)
    if fixed:
        return list(rng.integers(-2 ** 12, 2 ** 12, (steps, n_in)).astype(np.int32))
    return list(rng.standard_normal((steps, n_in)))


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("shape", [(7, 5), (60, 90), (300, 40)])
def test_float_model_equals_lava(binary, shape):
    rng = np.random.default_rng(hash((binary, shape)) % 2 ** 32)
    w = _weights(rng, *shape, 0.3, 0, 0, np.float64)
    xs = _inputs(rng, 25, shape[1], binary, fixed=False)
    nmb = 0 if binary else 24
    ours, _ = _run(PySparseDotModelFloat, w, xs, nmb)
    lava, _ = _run(PySparseModelFloat, w, xs, nmb)
    assert ours.shape == lava.shape == (25, shape[0])
    np.testing.assert_array_equal(ours[0], 0)          # one-step delay: a_buff starts at 0
    if binary:
        np.testing.assert_allclose(ours, lava, rtol=1e-13, atol=1e-13)
    else:
        np.testing.assert_array_equal(ours, lava)       # Lava's own expression
    # each step sends W @ s of the previous step
    dense = w.toarray()
    for t in range(1, 25):
        s = xs[t - 1] != 0 if binary else xs[t - 1]
        np.testing.assert_allclose(ours[t], dense @ s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("weight_exp", [-4, -1, 0, 1, 3])
@pytest.mark.parametrize("num_weight_bits", [8, 6])
def test_fixed_model_bit_identical_to_lava(binary, weight_exp, num_weight_bits):
    rng = np.random.default_rng(1000 + 10 * weight_exp + num_weight_bits + binary)
    # out-of-range weights exercise Lava's clipping, odd ones its truncation
    w = _weights(rng, 70, 50, 0.25, -400, 400, np.int32)
    xs = _inputs(rng, 30, 50, binary, fixed=True)
    nmb = 0 if binary else 24
    params = dict(weight_exp=weight_exp, num_weight_bits=num_weight_bits,
                  sign_mode=SignMode.MIXED)
    ours, mo = _run(PySparseDotModelBitAcc, w, xs, nmb, **params)
    lava, ml = _run(PySparseModelBitAcc, w, xs, nmb, **params)
    assert ours.dtype == lava.dtype
    np.testing.assert_array_equal(ours, lava)
    assert np.abs(lava[1:]).max() > 0
    assert (mo.weights != ml.weights).nnz == 0 and mo.weights.dtype == ml.weights.dtype


def test_csr_matvec_into_matches_dot():
    rng = np.random.default_rng(5)
    w = _weights(rng, 40, 30, 0.3, -100, 100, np.int64)
    x = rng.integers(0, 2, 30).astype(np.int64)
    np.testing.assert_array_equal(csr_matvec_into(w, x, np.full(40, 99, np.int64)), w @ x)
    wf = _weights(rng, 40, 30, 0.3, 0, 0, np.float64)
    xf = rng.standard_normal(30)
    np.testing.assert_array_equal(csr_matvec_into(wf, xf, np.empty(40)), wf @ xf)
    # dtype mismatch falls back to dot
    np.testing.assert_array_equal(csr_matvec_into(w, xf, np.empty(40)), w @ xf)
