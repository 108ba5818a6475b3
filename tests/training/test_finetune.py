"""`sdr finetune --qat`: straight-through fake quantisation with the converter's formats, weights
snapped onto the fixed-point grid, agreement of the fixed-point network with the float model."""
import json

import numpy as np
import pytest
import torch

from spiking_deepr.cli import main as sdr
from spiking_deepr.config import load_config
from spiking_deepr.train import load_run, train

from .stocks import write_stocks_npz

QUICK = ["task=npz", "model=lsnn", "model.hidden=[40]", "model.n_alif=10", "model.readout=li",
         "model.allocation=uniform", "model.input_connectivity=0.5", "train.progress=false", "train.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qat")
    data = write_stocks_npz(tmp / "stocks")
    run = tmp / "run"
    train(load_config([*QUICK, f"task.path={data}", "train.epochs=2", f"run.dir={run}"]))
    return run


def test_fake_quantizer_forward_is_the_grid_backward_straight_through(trained):
    from lava_backend.commands import calibration_inputs
    from lava_backend.qat import FakeQuantizer
    from lava_backend.quantize import quantize_network

    _, task, model = load_run(trained)
    x, lengths = calibration_inputs(task, 16)
    fq = FakeQuantizer.calibrated(model, x, lengths).install()
    batch = torch.randn(7, 3, model.n_features)
    model(batch)                                             # the pre-hook refreshes the grid values
    w = model.layers[0].w_rec
    got = w.weight_values().detach().numpy().copy()
    latent = (w.sign * w.theta).detach().double().numpy()
    # by hand: 8-bit mantissas at the matrix's exponent, in the layer's state units
    S, e = fq.formats.layer_scales[0], fq.formats.weight_exps[0][1]
    dv = model.cfg.dt * float(model.layers[0].tau_mem_inv)   # the 12-bit decay (install set it)
    unit = 2.0 ** (7 + e)
    m = np.clip(np.round(latent * S * dv / unit), -128, 127)
    np.testing.assert_allclose(got, m * unit / (S * dv), rtol=1e-5)
    assert not np.allclose(got, latent, rtol=1e-5)           # rounding changed something
    w.theta.grad = None
    w.weight_values().sum().backward()
    torch.testing.assert_close(w.theta.grad, w.sign)        # d(sign * theta)/d theta, rounding skipped
    # a dense readout weight: the same straight-through rounding (a parametrisation)
    ro = model.readout
    assert ro.w is None
    got = ro.weight.detach().numpy().copy()
    grid = fq.quantized_spec()[1].readout.weights.values.reshape(got.shape)
    np.testing.assert_array_equal(got, grid)
    latent = ro.parametrizations.weight.original
    latent.grad = None
    ro.weight.sum().backward()
    torch.testing.assert_close(latent.grad, torch.ones_like(latent))
    spec = model.to_spec()
    # the input is rounded to the converter's payload grid
    step = fq.formats.input_scale
    xq = model.quantize_input(batch)
    q = quantize_network(spec, formats=fq.formats)
    np.testing.assert_allclose(xq.double().numpy(), q.fake_quant_input(batch.double().numpy()), rtol=1e-6)
    assert float((xq / step - (xq / step).round()).abs().max()) < 1e-3
    fq.remove()
    assert w.quantized_values is None and ro.weight is latent            # the Parameter the optimizer holds


def test_qat_raises_fixed_point_agreement(trained, tmp_path):
    """On a small LSNN, fixed-point predictions agree with the float model more often after a
    quantisation-aware fine-tune (whose weights lie on the fixed-point grid) than after the
    same fine-tune without it; the saved formats reproduce the grid exactly."""
    from lava_backend.commands import run_quantization
    from lava_backend.quantize import fake_quantize

    plain, qat = tmp_path / "ft", tmp_path / "qat"
    assert sdr(["finetune", str(trained), "--epochs", "1", "--out", str(plain)]) == 0
    assert sdr(["finetune", str(trained), "--qat", "--epochs", "1", "--out", str(qat)]) == 0
    assert (qat / "quantization.json").is_file() and not (plain / "quantization.json").exists()
    source = json.loads((trained / "summary.json").read_text())["provenance"]
    assert json.loads((qat / "summary.json").read_text())["provenance"] == source  # the same code here
    agreement = {}
    for run in (plain, qat):
        assert sdr(["simulate", str(run), "--precision", "fixed", "--calib-samples", "16"]) == 0
        agreement[run.name] = json.loads((run / "lava_eval_fixed.json").read_text())["emulator"]
    assert agreement["qat"]["sequences"] == agreement["ft"]["sequences"] > 1
    assert agreement["qat"]["prediction_agreement"] > agreement["ft"]["prediction_agreement"]
    assert agreement["qat"]["spike_agreement"] > agreement["ft"]["spike_agreement"]
    # float parity holds for the fine-tuned model too: the Lava float graph gets its rounded input
    assert sdr(["simulate", str(qat), "--precision", "float"]) == 0
    float_eval = json.loads((qat / "lava_eval_float.json").read_text())["emulator"]
    assert float_eval["spike_agreement"] == 1.0 and float_eval["prediction_agreement"] == 1.0
    # the fine-tuned float model is the dequantised fixed-point network
    cfg, task, model = load_run(qat)
    assert cfg.model.input_step > 0
    spec = model.to_spec()
    q, how = run_quantization(qat, task, spec)
    assert how["source"].endswith("quantization.json")
    again = fake_quantize(spec, q)
    for a, b in zip(spec.layers, again.layers):
        np.testing.assert_array_equal(a.w_rec.values, b.w_rec.values)
        np.testing.assert_array_equal(a.w_in.values, b.w_in.values)
    np.testing.assert_array_equal(spec.readout.weights.values, again.readout.weights.values)


def test_qat_refuses_lstm(tmp_path):
    run = tmp_path / "lstm"
    train(load_config(["task=smoke", "task.size=tiny", "model=lstm", "model.hidden=[8]", "train.epochs=1",
                       "train.max_batches_per_epoch=1", "train.progress=false", f"run.dir={run}"]))
    assert sdr(["finetune", str(run), "--qat", "--epochs", "1", "--out", str(tmp_path / "x")]) == 2


def test_finetune_refuses_an_output_directory_held_by_another_run(trained, tmp_path, capsys):
    """The fine-tuning's output directory is locked like a training run's: while another process
    holds it, `sdr finetune` refuses with one line (exit 2) and writes nothing there."""
    from spiking_deepr.rundir import RunLock

    out = tmp_path / "held"
    with RunLock(out):  # a separate open file description: conflicts like another process would
        assert sdr(["finetune", str(trained), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by another run" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
