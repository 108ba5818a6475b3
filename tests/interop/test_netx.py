"""lava-dl netx export: the HDF5 written by lava_backend.netx_export is loaded by lava-dl 0.6.0's own
reader (netx.hdf5.Network), simulated in Lava, and gives the spikes of this project's fixed-point run."""
import os
import warnings

import numpy as np
import pytest
import torch

from lava_backend.commands import import_lava_runtime
from lava_backend.netx_export import netx_quantization, write_netx
from lava_backend.params import ConversionError
from lava_backend.quantize import quantize_network
from spiking_deepr.model import ModelConfig, SequenceModel

T = 40


def _spec(**kw):
    torch.manual_seed(0)
    base = dict(kind="lif", hidden=[12, 10], connectivity=0.4, init_gain=8.0, seed=3)
    base.update(kw)
    return SequenceModel(ModelConfig(**base), 5, 3).to_spec()


def _inputs(n=2):
    return np.random.default_rng(1).normal(size=(n, T, 5)) * 2


def _run_netx(path, q, x, workdir):
    """One sequence through lava-dl's netx network in Lava (fixed point): spikes per layer [T, n]."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from lava_backend.processes.io import SequenceSource, StepSink

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lava.lib.dl import netx
    net = netx.hdf5.Network(net_config=str(path), input_message_bits=24)
    src = SequenceSource(data=q.quantize_input(x).astype(np.int32))
    src.s_out.connect(net.inp)
    L = len(net.layers)
    paths = [os.path.join(workdir, f"netx{l}.npy") for l in range(L)]
    for l, layer in enumerate(net.layers):  # layer l sees step t at Lava step t + l + 2 (one Dense hop each)
        sink = StepSink(shape=layer.out.shape, num_steps=T, offset=l + 2, path=paths[l], dump_step=T + L + 1,
                        dtype="uint8")
        layer.out.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=T + L + 1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    finally:
        src.stop()
    return net, [np.load(p) for p in paths]


def test_netx_file_loaded_by_lava_dl_gives_the_fixed_point_spikes(tmp_path):
    pytest.importorskip("lava.lib.dl.netx")
    import_lava_runtime()
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF

    from lava_backend.simulate import simulate

    spec, x = _spec(), _inputs(1)
    q = netx_quantization(quantize_network(spec, calib_x=x))
    assert all(m.weight_exp == -1 for ql in q.layers for m in (ql.w_in, ql.w_rec))
    assert q.report()["layers"][1]["w_rec"]["clipped"] == 0
    path = tmp_path / "net.netx.h5"
    write_netx(q, path)
    ours = simulate(spec, x, precision="fixed", quant=q, timeout=120)   # this project's Lava graph
    for k in range(len(x)):
        net, layers = _run_netx(path, q, x[k], str(tmp_path))
        assert [type(b).__name__ for b in net.layers] == ["RecurrentDense", "RecurrentDense"]
        assert all(isinstance(b.neuron, LIF) and isinstance(b.synapse_rec, Dense) for b in net.layers)
        for l, z in enumerate(layers):
            assert z.sum() > 5
            np.testing.assert_array_equal(z, ours.layers[l][k])


def test_netx_refusals(tmp_path):
    spec = SequenceModel(ModelConfig(kind="lsnn", hidden=[8], n_alif=2), 3, 2).to_spec()
    with pytest.raises(ConversionError, match="only LIF layers"):
        netx_quantization(quantize_network(spec))
    leaky = _spec(v_leak=0.5)
    with pytest.raises(ConversionError, match="v_leak == v_reset"):
        write_netx(netx_quantization(quantize_network(leaky)), tmp_path / "x.h5")
