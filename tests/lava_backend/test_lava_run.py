"""Lava runs (CPU) against the numpy references and hand-computed cases."""
import multiprocessing as mp

import numpy as np
import pytest

pytest.importorskip("lava")

from netgen import lsnn_spec, rand_input  # noqa: E402

from spiking_deepr.export import (LIFLayerSpec, NetworkSpec, ReadoutSpec,  # noqa: E402
                                  SparseWeights)
from lava_backend.convert import convert  # noqa: E402
from lava_backend.emulator import emulate_fixed  # noqa: E402
from lava_backend.quantize import quantize_network  # noqa: E402
from lava_backend.reference import reference_fixed, reference_float  # noqa: E402
from lava_backend.simulate import (LavaRunError, LavaTimeoutError, run_graph,  # noqa: E402
                                   simulate)

TIMEOUT = 120


def _same_spikes(a, b):
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert la.shape == lb.shape
        np.testing.assert_array_equal(la, lb)


def test_alif_beta0_equals_lava_lif_and_reference():
    spec = lsnn_spec(seed=3, kinds=("lif",), n=50, readout="linear")
    x = rand_input(3, 1, 60, 8, 1.5)
    ours = simulate(spec, x, neuron_impl="alif", timeout=TIMEOUT)
    lava_lif = simulate(spec, x, neuron_impl="lava_lif", timeout=TIMEOUT, isolate=False)
    assert ours.layers[0].sum() > 20  # network is active
    _same_spikes(ours, lava_lif)
    ref = reference_float(spec, x)
    _same_spikes(lava_lif, ref)
    np.testing.assert_allclose(lava_lif.readout, ref.readout, rtol=0, atol=1e-12)


def test_lsnn_many_sequences_equals_reference():
    spec = lsnn_spec(seed=1, kinds=("alif", "lif"), n=40, n_adapt=15, v_leak=0.3,
                     v_reset=-0.2)
    x = rand_input(1, 7, 40, 8, 1.5)
    lengths = np.array([40, 13, 27, 40, 5, 33, 19])
    res = simulate(spec, x, lengths, lanes=3, timeout=TIMEOUT)
    ref = reference_float(spec, x, lengths)
    assert res.layers[0].sum() > 50
    _same_spikes(res, ref)
    np.testing.assert_allclose(res.readout, ref.readout, rtol=0, atol=1e-12)
    assert res.steps_per_second > 0 and res.lava_steps == res.info["G"] + 2 + 1
    # the literal spec equations give the same spikes
    _same_spikes(reference_float(spec, x, lengths, form="spec"), ref)


def test_lstm_process_equals_reference():
    spec = lsnn_spec(seed=2, kinds=("lstm", "lif"), n=20, hidden_lstm=10, readout="linear")
    x = rand_input(2, 3, 25, 8, 1.0)
    lengths = np.array([25, 11, 20])
    res = simulate(spec, x, lengths, lanes=2, timeout=TIMEOUT, isolate=False)
    ref = reference_float(spec, x, lengths)
    np.testing.assert_allclose(res.layers[0], ref.layers[0], rtol=0, atol=1e-5)
    assert np.abs(ref.layers[0]).max() > 0.05
    np.testing.assert_array_equal(res.layers[1], ref.layers[1])
    np.testing.assert_allclose(res.readout, ref.readout, rtol=0, atol=1e-5)


def test_fixed_point_emulator_bit_identical():
    """The batched emulator equals Lava's fixed_pt run bit for bit: an ALIF and a LIF layer,
    5 sequences in 2 lanes (resets between back-to-back sequences), scales calibrated on other
    ("training") sequences, so some test inputs clip, and the rounding column in use."""
    spec = lsnn_spec(seed=4, kinds=("alif", "lif"), n=40, n_adapt=15, v_leak=0.1, wrec_scale=2.5)
    x = rand_input(4, 5, 35, 8, 1.5)
    lengths = np.array([35, 20, 9, 35, 28])
    q = quantize_network(spec, calib_x=rand_input(40, 6, 35, 8, 1.2))
    assert q.layers[0].w_in.round_offset > 0
    assert np.abs(q.input_payload(x)).max() == q.input_max_int        # clipped inputs
    res = simulate(spec, x, lengths, precision="fixed", quant=q, lanes=2, timeout=TIMEOUT)
    emu = emulate_fixed(q, x, lengths)
    assert emu.layers[0].sum() > 50 and emu.layers[1].sum() > 50
    assert emu.layers[0][:, :, -15:].sum() > 20                       # adaptive neurons fire
    _same_spikes(res, emu)
    np.testing.assert_array_equal(res.readout_int, emu.readout_int)


def test_fixed_point_lava_lif_bit_identical():
    """Lava's own bit-accurate LIF + Sparse equal the integer reference."""
    spec = lsnn_spec(seed=5, kinds=("lif",), n=40, readout="linear")
    x = rand_input(5, 2, 40, 8, 1.5)
    q = quantize_network(spec, calib_x=x)
    res = simulate(spec, x, precision="fixed", quant=q, neuron_impl="lava_lif",
                   timeout=TIMEOUT, isolate=False)
    ref = reference_fixed(q, x)
    assert ref.layers[0].sum() > 20
    _same_spikes(res, ref)
    np.testing.assert_array_equal(res.readout_int, ref.readout_int)


def _two_neuron_spec():
    """x -> n0 (w=2), n0 -> n1 (recurrent, w=2); du = dv = 1 so v' = i_jump = input."""
    w_in = SparseWeights(shape=(2, 1), rows=[0], cols=[0], values=[2.0])
    w_rec = SparseWeights(shape=(2, 2), rows=[1], cols=[0], values=[2.0])
    layer = LIFLayerSpec(name="l0", n=2, w_in=w_in, w_rec=w_rec, tau_syn_inv=1000.0,
                         tau_mem_inv=1000.0, v_th=1.0)
    ro = ReadoutSpec(kind="linear",
                     weights=SparseWeights(shape=(2, 2), rows=[0, 1], cols=[0, 1],
                                           values=[1.0, 10.0]), bias=np.zeros(2))
    return NetworkSpec(n_input=1, dt=1e-3, layers=[layer], readout=ro)


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_delay_alignment_two_neurons(precision):
    spec = _two_neuron_spec()
    x = np.zeros((2, 5, 1))
    x[0, 1, 0] = 1.0   # seq 0: impulse at t=1 -> z0[1], z1[2]
    x[0, 4, 0] = 1.0   # and at its last step: z1 would fire at seq 1's t=0 without reset
    x[1, 3, 0] = 1.0   # seq 1: impulse at t=3 -> z0[3], z1[4]
    res = simulate(spec, x, precision=precision, lanes=1, timeout=TIMEOUT, isolate=False,
                   input_max=1.0)
    z = res.layers[0]
    np.testing.assert_array_equal(z[0, :, 0], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(z[0, :, 1], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(z[1, :, 0], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(z[1, :, 1], [0, 0, 0, 0, 1])   # nothing leaks at t=0
    y = np.rint(res.readout).astype(int)   # linear readout: y[t] = z0[t] + 10 z1[t], same step
    np.testing.assert_array_equal(y[0], np.stack([z[0, :, 0], 10 * z[0, :, 1]], -1))
    np.testing.assert_array_equal(y[1], np.stack([z[1, :, 0], 10 * z[1, :, 1]], -1))


def _lava_children():
    return [p for p in mp.active_children()]


def test_runtime_stopped_on_exception_in_process():
    spec = lsnn_spec(seed=6, kinds=("alif",), n=20)
    x = rand_input(6, 2, 30, 8)
    before = set(p.pid for p in mp.active_children())
    graph = convert(spec, x, fault_step=10)
    with pytest.raises(LavaRunError, match="injected fault"):
        run_graph(graph, timeout=TIMEOUT)
    rt = graph.root.runtime
    assert rt is not None and not rt._is_started
    left = [p for p in mp.active_children() if p.pid not in before and p.is_alive()]
    assert not left


def test_runtime_stopped_on_exception_isolated():
    spec = lsnn_spec(seed=6, kinds=("alif",), n=20)
    x = rand_input(6, 2, 30, 8)
    with pytest.raises(LavaRunError, match="injected fault"):
        simulate(spec, x, fault_step=10, timeout=TIMEOUT)


def test_timeout_kills_run():
    spec = lsnn_spec(seed=6, kinds=("alif",), n=20)
    x = rand_input(6, 2, 30, 8)
    with pytest.raises(LavaTimeoutError):
        simulate(spec, x, timeout=0.2)
    assert not [p for p in mp.active_children() if p.is_alive()]
    graph = convert(spec, rand_input(6, 1, 20000, 8))   # in-process: SIGUSR1 interrupts
    with pytest.raises(LavaTimeoutError):
        run_graph(graph, timeout=0.5)
    assert not graph.root.runtime._is_started


def test_lsnn_recipe_options_float_parity_with_torch_and_fixed_bit_exact():
    """A model with the LSNN recipe options (reset by subtraction, refractory period, n_repeat = 2;
    LIF and ALIF neurons, a recurrent second layer) converted to Lava: floating point gives the
    PyTorch model's spikes at every valid simulation step and its frame predictions; fixed point
    equals the batched emulator bit for bit. Several sequences per lane (resets between them)."""
    import torch

    from spiking_deepr.model import ModelConfig, SequenceModel
    from lava_backend.commands import import_lava_runtime, torch_outputs

    import_lava_runtime()  # numba's parallel kernels fixed the start method already
    cfg = ModelConfig(kind="lsnn", hidden=[24, 16], n_alif=8, connectivity=0.5, init_gain=10.0, beta=3.0, dt=0.004,
                      tau_adapt_inv=20.0, reset="subtract", refractory=2, n_repeat=2, surrogate="lsnn", seed=2)
    model = SequenceModel(cfg, 5, 4)
    x = torch.rand(12, 5, 5) * 2
    lengths = torch.tensor([12, 5, 9, 12, 3])
    torch_layers, torch_logits = torch_outputs(model, x, lengths)
    spec = model.to_spec()
    xs, ls = x.transpose(0, 1).double().numpy(), lengths.numpy()
    res = simulate(spec, xs, ls, lanes=2, timeout=TIMEOUT)
    fine_valid = np.arange(24)[None, :] < 2 * ls[:, None]
    for zt, zl in zip(torch_layers, res.layers):
        assert zl.shape == zt.shape == (5, 24, zt.shape[-1])
        assert 0.02 < zl[fine_valid].mean() < 0.5
        np.testing.assert_array_equal(zl[fine_valid], zt[fine_valid])
    valid = np.arange(12)[None, :] < ls[:, None]
    np.testing.assert_allclose(res.readout[valid], torch_logits[valid], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(res.readout.argmax(-1)[valid], torch_logits.argmax(-1)[valid])
    q = quantize_network(spec, calib_x=xs, calib_lengths=ls)
    assert q.layers[0].subtract and q.layers[0].refractory == 2
    fixed = simulate(spec, xs, ls, precision="fixed", quant=q, lanes=2, timeout=TIMEOUT)
    emu = emulate_fixed(q, xs, ls)
    assert emu.layers[1].sum() > 20
    _same_spikes(fixed, emu)
    np.testing.assert_array_equal(fixed.readout_int, emu.readout_int)
