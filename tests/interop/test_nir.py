"""NIR export and import, checked against an independent reader (nirtorch + Norse, see nir_reader.py)."""
import warnings

import nir
import numpy as np
import pytest
import torch

import nir_reader
from lava_backend.commands import import_lava_runtime, torch_outputs
from spiking_deepr.model import ModelConfig, SequenceModel
from spiking_deepr.nir_export import NIRExportError, drop_adaptation, spec_to_nir, write_nir
from spiking_deepr.nir_import import NIRImportError, nir_to_spec, spec_to_model

TOL = 1e-9  # float64 on both sides: outputs agree to rounding, spikes exactly


def _model(**kw):
    base = dict(kind="lif", hidden=[12, 10], connectivity=0.4, init_gain=8.0, seed=3)
    base.update(kw)
    model = SequenceModel(ModelConfig(**base), 5, 3)
    with torch.no_grad():
        if model.readout.bias is not None:
            model.readout.bias.normal_()
    return model.double()


def _inputs(T=40, B=3, F=5):
    return torch.randn(T, B, F, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2


@pytest.mark.parametrize("readout, tau_syn_inv, gain", [("li", 1 / 5e-3, 8.0), ("linear", 1 / 5e-3, 8.0),
                                                        ("li", 1e3, 40.0)])
def test_nir_round_trip_equals_model(tmp_path, readout, tau_syn_inv, gain):
    """export -> nir.write -> nir.read -> nirtorch/Norse: same spikes in every layer, same readout.
    tau_syn_inv = 1/dt exports LIF/LI nodes instead of CubaLIF/CubaLI."""
    model = _model(readout=readout, tau_syn_inv=tau_syn_inv, init_gain=gain)
    path = tmp_path / "net.nir"
    write_nir(spec_to_nir(model.to_spec()), path)
    graph = nir.read(str(path))
    kinds = {type(graph.nodes[k]).__name__ for k in ("layer0", "layer1")}
    assert kinds == ({"LIF"} if tau_syn_inv == 1e3 else {"CubaLIF"})
    assert graph.metadata["dt"] == model.cfg.dt
    x = _inputs()
    y_nir, z_nir = nir_reader.run(graph, x, model.cfg.dt, spiking=("layer0", "layer1"))
    layers, y = torch_outputs(model, x, torch.full((x.shape[1],), x.shape[0]))
    for l, z in enumerate(layers):
        ours = z.transpose(1, 0, 2)
        assert ours.sum() > 20, "too few spikes for a meaningful comparison"
        np.testing.assert_array_equal(z_nir[f"layer{l}"].numpy(), ours)
    np.testing.assert_allclose(y_nir.numpy(), y.transpose(1, 0, 2), rtol=0, atol=TOL)


def test_norse_from_nir_reads_the_recurrent_graph():
    """Norse 1.1.0's own importer (``norse.torch.from_nir``, nirtorch 2.6's ``load``) runs the recurrent
    CubaLIF graph with a linear readout exactly; it has no LI/CubaLI mapping (and silently skips those
    nodes), which is why nir_reader adds them."""
    import norse.torch as norse

    model = _model(readout="linear", hidden=[12])
    graph = spec_to_nir(model.to_spec())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch.load -> nir_to_torch notice
        module = norse.from_nir(graph, dt=model.cfg.dt).double()
    x = _inputs()
    state, ys = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(x[t], state)
            ys.append(y)
        ref = model(x)
    assert float(ref.abs().max()) > 0
    np.testing.assert_allclose(torch.stack(ys).numpy(), ref.numpy(), rtol=0, atol=TOL)


def test_dormant_connections_are_explicit_zeros():
    model = _model(hidden=[12])
    spec = model.to_spec()
    graph = spec_to_nir(spec)
    w = graph.nodes["layer0.w_rec"].weight
    assert w.shape == (12, 12)
    assert np.count_nonzero(w) <= spec.layers[0].w_rec.nnz
    np.testing.assert_array_equal(w, spec.layers[0].w_rec.to_dense())


def test_alif_refused_unless_adaptation_dropped():
    spec = SequenceModel(ModelConfig(kind="lsnn", hidden=[8], n_alif=2), 3, 2).to_spec()
    with pytest.raises(NIRExportError, match="ALIF.*--drop-adaptation"):
        spec_to_nir(spec)
    graph = spec_to_nir(drop_adaptation(spec))
    assert isinstance(graph.nodes["layer0"], nir.CubaLIF)
    with pytest.raises(NIRExportError, match="LSTM"):
        spec_to_nir(SequenceModel(ModelConfig(kind="lstm", hidden=[4]), 3, 2).to_spec())
    repeated = SequenceModel(ModelConfig(kind="lif", hidden=[8], n_repeat=2), 3, 2).to_spec()
    with pytest.raises(NIRExportError, match="n_repeat=2: .*train the model with model.n_repeat=1"):
        spec_to_nir(repeated)


def _snntorch_graph():
    """A recurrent network exported by snnTorch's own NIR writer (RSynaptic: CubaLIF + self-loop)."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(5, 8, bias=False)
            self.rsyn = snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=8, reset_mechanism="zero",
                                      init_hidden=True)
            self.fc2 = torch.nn.Linear(8, 3)
            with torch.no_grad():
                self.fc1.weight.mul_(4.0)
                self.rsyn.recurrent.bias.zero_()  # our LIF has no bias current

        def forward(self, x):
            return self.fc2(self.rsyn(self.fc1(x)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_nir(Net(), torch.randn(1, 5), ignore_dims=[0])


def test_import_snntorch_graph_matches_reader_and_lava(tmp_path):
    """snnTorch writes the graph; we import it (dt = 1e-4, snnTorch's export step) and our model and our
    Lava float simulation give the reader's spikes."""
    import_lava_runtime()
    from lava_backend.simulate import simulate

    path = tmp_path / "snn.nir"
    nir.write(str(path), _snntorch_graph())
    graph = nir.read(str(path))
    dt = 1e-4
    spec = nir_to_spec(graph, dt)
    assert spec.layers[0].w_rec is not None and spec.readout.kind == "linear"
    model = spec_to_model(spec).double()
    x = _inputs(T=30, B=2)
    lif = [k for k, v in graph.nodes.items() if isinstance(v, nir.CubaLIF)][0]
    y_ref, z_ref = nir_reader.run(graph, x, dt, spiking=(lif,))
    layers, y = torch_outputs(model, x, torch.full((2,), 30))
    z = layers[0].transpose(1, 0, 2)
    assert z.sum() > 20
    np.testing.assert_array_equal(z_ref[lif].numpy(), z)
    np.testing.assert_allclose(y_ref.numpy(), y.transpose(1, 0, 2), rtol=0, atol=1e-5)  # model weights are float32
    res = simulate(model.to_spec(), x.transpose(0, 1).numpy(), timeout=120)
    np.testing.assert_array_equal(res.layers[0], layers[0])


def test_import_refusals():
    graph = _snntorch_graph()
    with pytest.raises(NIRImportError, match="tau_syn >= dt"):
        nir_to_spec(graph, 1e-3)  # the wrong dt makes the Euler step unstable
    lif = [v for v in graph.nodes.values() if isinstance(v, nir.CubaLIF)][0]
    lif.v_threshold = np.arange(lif.v_threshold.size, dtype=float) + 1
    with pytest.raises(NIRImportError, match="v_threshold must have one value"):
        nir_to_spec(graph, 1e-4)
