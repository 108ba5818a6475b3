"""numpy-only tests: references, quantisation, conversion errors, import hygiene."""
import subprocess
import sys

import numpy as np
import pytest

from netgen import lsnn_spec, rand_input

from lava_backend.params import ConversionError, lava_form
from lava_backend.quantize import (fake_quantize, quantize_matrix, quantize_network)
from lava_backend.reference import reference_fixed, reference_float


def test_lava_form_equals_spec_equations():
    spec = lsnn_spec(seed=11, kinds=("alif", "lif"), n=50, v_leak=0.2, v_reset=-0.3)
    x = rand_input(11, 4, 60, 8, 1.5)
    a = reference_float(spec, x, [60, 30, 45, 12])
    b = reference_float(spec, x, [60, 30, 45, 12], form="spec")
    assert a.layers[0].sum() > 100
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la, lb)
    np.testing.assert_allclose(a.readout, b.readout, atol=1e-9)


def test_sequences_independent_of_batch():
    spec = lsnn_spec(seed=12, kinds=("alif",), n=30)
    x = rand_input(12, 3, 20, 8, 1.5)
    full = reference_float(spec, x, [20, 9, 14])
    one = reference_float(spec, x[1:2, :9])
    np.testing.assert_array_equal(full.layers[0][1, :9], one.layers[0][0])
    assert not full.layers[0][1, 9:].any()


def test_numpy_lstm_matches_torch():
    torch = pytest.importorskip("torch")
    spec = lsnn_spec(seed=13, kinds=("lstm",), hidden_lstm=9, readout="linear", density=0.5)
    x = rand_input(13, 3, 15, 8)
    ref = reference_float(spec, x)
    ls = spec.layers[0]
    lstm = torch.nn.LSTM(8, 9, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(ls.w_ih.to_dense().astype(np.float64)))
        lstm.weight_hh_l0.copy_(torch.from_numpy(ls.w_hh.to_dense().astype(np.float64)))
        lstm.bias_ih_l0.copy_(torch.from_numpy(ls.bias.astype(np.float64)))
        lstm.bias_hh_l0.zero_()
        h, _ = lstm(torch.from_numpy(x.astype(np.float64)))
    np.testing.assert_allclose(ref.layers[0], h.numpy(), rtol=0, atol=1e-10)


def test_per_neuron_tau_rejected():
    spec = lsnn_spec(seed=14, kinds=("lif",), n=10)
    spec.layers[0].tau_mem_inv = np.linspace(50, 100, 10)
    with pytest.raises(ConversionError, match="per-neuron"):
        lava_form(spec)


def test_lstm_rejected_in_fixed_point():
    spec = lsnn_spec(seed=15, kinds=("lstm",), hidden_lstm=4)
    with pytest.raises(ConversionError, match="LSTM"):
        quantize_network(spec)


def test_quantize_matrix_round_trip_bounds():
    rng = np.random.default_rng(0)
    from spiking_deepr.export import SparseWeights
    rows = np.repeat(np.arange(20), 10)
    cols = np.tile(np.arange(10), 20)
    vals = rng.standard_normal(200).astype(np.float32)
    vals[:5] = 0.0
    vals[5:8] = 1e-6                                 # these quantise to zero
    w = SparseWeights(shape=(20, 10), rows=rows, cols=cols, values=vals)
    for to_state in (1e3, 3e4, 5e5):
        q = quantize_matrix(w, to_state)
        assert q.m.min() >= -128 and q.m.max() <= 127
        assert q.n_clipped == 0
        err = np.abs(q.dequantized() - vals)
        assert err.max() <= 0.5 * q.unit / to_state + 1e-12
        # 8 bits are used: the largest weight maps to |m| >= 64 unless weight_exp hit -1
        assert np.abs(q.m).max() >= 64 or q.weight_exp == -1
        assert q.n_quantized_to_zero >= 3
        csr = q.lava_csr()
        assert csr.nnz == 200                        # explicit zeros kept
        assert np.all(csr.data % 2 == 0) and csr.data.min() >= -256 and csr.data.max() <= 254
        from lava.utils.weightutils import SignMode, clip_weights, truncate_weights
        t = truncate_weights(clip_weights(csr.copy(), SignMode.MIXED, 8), SignMode.MIXED, 8)
        np.testing.assert_array_equal(t.toarray(), csr.toarray())   # Lava keeps them as-is


def test_network_quantisation_and_fake_quant():
    spec = lsnn_spec(seed=16, kinds=("alif", "lif"), n=40, v_leak=0.1)
    x = rand_input(16, 4, 50, 8, 1.5)
    q = quantize_network(spec, calib_x=x)
    rep = q.report()
    for L in q.layers:
        assert 2 ** 10 <= L.vth <= 2 ** 17 - 1   # calibration may lower S below 2**12
        assert abs(L.bias_mant) <= 4095 and 0 <= L.bias_exp <= 7
        assert -1 <= L.du <= 4095 and 0 <= L.dv <= 4095
        for m in (L.w_in, L.w_rec):
            assert -8 <= m.weight_exp <= 7
    assert rep["quantized_to_zero"] >= 1     # netgen sets 5% of weights to exactly 0... and
    # input quantisation error <= half a step
    xi = q.fake_quant_input(x)
    assert np.abs(xi - x).max() <= q.input_scale / 2 + 1e-12
    # effective parameters: fake-quantised float reference stays close to the integer one
    fq = fake_quantize(spec, q)
    rf = reference_float(fq, xi)
    rq = reference_fixed(q, x)
    agree = np.mean(rf.layers[0] == rq.layers[0])
    assert agree > 0.97
    for a, b in ((fq.layers[0].w_rec.values, spec.layers[0].w_rec.values),):
        assert np.abs(a - b).max() < 0.05 * np.abs(b).max()
    assert abs(fq.layers[0].tau_mem_inv - spec.layers[0].tau_mem_inv) < 0.5
    assert abs(fq.layers[0].v_th - spec.layers[0].v_th) < 1e-3


def test_backend_modules_import_without_lava():
    code = ("import sys; import spiking_deepr.export, lava_backend.reference, "
            "lava_backend.quantize, lava_backend.hardware, lava_backend.convert, "
            "lava_backend.simulate; "
            "bad=[m for m in sys.modules if m == 'lava' or m.startswith('lava.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_graded_input_shift_rounds_instead_of_flooring():
    """Lava's Sparse shifts the summed graded input right (floor); the rounding column adds
    2**(k-1) first, so the result is the sum divided by 2**k rounded half up."""
    spec = lsnn_spec(seed=17, kinds=("lif",), n=30, win_scale=0.05)
    q = quantize_network(spec, input_max=4.0)
    w = q.layers[0].w_in
    k = -w.weight_exp
    assert k >= 2 and w.round_offset == 2 ** (k - 2)
    x = rand_input(17, 50, 1, 8, 2.0)[:, 0]                      # 50 input vectors
    p = q.quantize_input(x)
    assert p.shape == (50, 9) and np.all(p[:, -1] == 1)
    np.testing.assert_array_equal(p[:, :-1], q.input_payload(x))
    lava = np.right_shift(np.asarray(w.lava_csr().astype(np.int64) @ p.T).T, k)   # Lava's arithmetic
    exact = np.asarray(w.lava_csr()[:, :-1].astype(np.int64) @ p[:, :-1].T).T / 2.0 ** k
    np.testing.assert_array_equal(lava, np.floor(exact + 0.5))
    assert np.any(np.floor(exact) != lava)                        # flooring would differ


def test_adaptation_jump_follows_the_quantised_decay():
    """b settles at jump / (dth / 4096) per unit rate: the jump must use the 12-bit dth, so the
    effective beta equals the float one (the exact 1 - rho would make it ~2 % larger)."""
    spec = lsnn_spec(seed=18, kinds=("alif",), n=30, n_adapt=10)
    q = quantize_network(spec, input_max=4.0)
    ql = q.layers[0]
    rho = np.exp(-spec.dt * spec.layers[0].tau_adapt_inv)
    assert ql.dth == round(4096 * (1 - rho)) and abs(ql.dth / 4096 - (1 - rho)) > 0.02 * (1 - rho)
    adaptive = spec.layers[0].beta > 0
    beta_eff = fake_quantize(spec, q).layers[0].beta
    np.testing.assert_allclose(beta_eff[adaptive], spec.layers[0].beta[adaptive], rtol=1e-3)
    assert np.all(beta_eff[~adaptive] == 0)
