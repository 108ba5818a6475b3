import math
import warnings

import numpy as np
import pytest
import torch

from spiking_deepr.export import NetworkSpec
from spiking_deepr.model import ModelConfig, SequenceModel
from spiking_deepr.rewiring import DeepRAdam

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models: one torch and one numba thread. On a small shared machine two OpenMP pools
    (torch's and numba's) spin against each other and slow these tests down 10-50x."""
    import numba

    threads, nthreads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    numba.set_num_threads(nthreads)


# ----------------------------------------------------------------------------- numpy spec simulator
def simulate_spec(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    """Re-simulate a NetworkSpec from its docstring semantics alone. x [T, B, F] -> y [T, B, C]."""
    dt, h = spec.dt, x.astype(np.float64)
    T, B = h.shape[:2]
    sig = lambda a: 1 / (1 + np.exp(-a))
    for L in spec.layers:
        out = []
        if L.kind == "lstm":
            W_ih, W_hh = L.w_ih.to_dense().astype(np.float64), L.w_hh.to_dense().astype(np.float64)
            H = L.hidden
            hh, c = np.zeros((B, H)), np.zeros((B, H))
            for t in range(T):
                g = h[t] @ W_ih.T + hh @ W_hh.T + L.bias
                i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
                c = sig(f) * c + sig(i) * np.tanh(gg)
                hh = sig(o) * np.tanh(c)
                out.append(hh)
        else:
            W_in = L.w_in.to_dense().astype(np.float64)
            W_rec = L.w_rec.to_dense().astype(np.float64) if L.w_rec is not None else np.zeros((L.n, L.n))
            adaptive = L.kind == "alif"
            rho = math.exp(-dt * L.tau_adapt_inv) if adaptive else 0.0
            z, v, i, b = np.zeros((B, L.n)), np.full((B, L.n), L.v_leak), np.zeros((B, L.n)), np.zeros((B, L.n))
            for t in range(T):
                i_jump = i + h[t] @ W_in.T + z @ W_rec.T
                v_new = v + dt * L.tau_mem_inv * ((L.v_leak - v) + i_jump)
                i = i_jump * (1 - dt * L.tau_syn_inv)
                thr = L.v_th
                if adaptive:
                    b = rho * b + (1 - rho) * z
                    thr = L.v_th + L.beta * b
                z = (v_new > thr).astype(np.float64)
                v = np.where(z > 0, L.v_reset, v_new)
                out.append(z)
        h = np.stack(out)
    R = spec.readout
    W = R.weights.to_dense().astype(np.float64)
    cur = h @ W.T
    if R.kind == "linear":
        return cur + R.bias
    v, i, ys = np.full((B, W.shape[0]), R.v_leak), np.zeros((B, W.shape[0])), []
    for t in range(T):
        i_jump = i + cur[t]
        v = v + dt * R.tau_mem_inv * ((R.v_leak - v) + i_jump)
        i = i_jump * (1 - dt * R.tau_syn_inv)
        ys.append(v + R.bias)
    return np.stack(ys)


CASES = [
    dict(kind="lif", hidden=[12, 8], readout="li", connectivity=0.4, init_gain=4.0),
    dict(kind="lsnn", hidden=[16], n_alif=6, readout="linear", connectivity=0.5, init_gain=4.0, beta=5.0,
         tau_adapt_inv=20.0, dale=True, fan_in_cap=9),
    dict(kind="lsnn", hidden=[10, 10], alif_fraction=0.5, readout="li", connectivity=0.5, init_gain=4.0,
         dense_readout=True, v_reset=-0.2, v_leak=0.1),
    dict(kind="lstm", hidden=[7], lstm_budget="per_gate", readout="li", connectivity=0.5),
    dict(kind="lstm", hidden=[6, 5], readout="linear", connectivity=0.3, readout_connectivity=1.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['kind']}-{c['readout']}-{len(c['hidden'])}")
def test_to_spec_round_trip(case):
    model = SequenceModel(ModelConfig(**case, seed=3), n_features=5, n_classes=4)
    with torch.no_grad():
        for p in model.dense_parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.rand(30, 3, 5) * 2
    y = model(x).detach().numpy()
    spec = model.to_spec()
    assert isinstance(spec, NetworkSpec) and spec.n_input == 5 and spec.n_classes == 4
    assert len(spec.layers) == len(case["hidden"])
    if case["kind"] != "lstm":
        assert 0.01 < np.mean(list(model.last_stats.values())) < 0.9  # the spiking layers are active
    y_ref = simulate_spec(spec, x.numpy())
    np.testing.assert_allclose(y, y_ref, atol=2e-4, rtol=1e-4)


def test_to_spec_fields():
    cfg = ModelConfig(kind="lsnn", hidden=[400], n_alif=100, connectivity=0.05, fan_in_cap=30)
    spec = SequenceModel(cfg, 13, 5).to_spec()
    L = spec.layers[0]
    assert L.kind == "alif" and L.n == 400 and L.beta.shape == (400,) and L.beta.dtype == np.float32
    assert int((L.beta > 0).sum()) == 100 and L.tau_adapt_inv == cfg.tau_adapt_inv
    assert L.w_rec.fan_in().max() <= 30 and not np.any(L.w_rec.rows == L.w_rec.cols)
    assert spec.readout.kind == "li" and spec.dt == cfg.dt


def test_bidirectional_cannot_be_converted():
    model = SequenceModel(ModelConfig(kind="lstm", hidden=[4], bidirectional=True), 3, 2)
    assert model(torch.rand(5, 2, 3), lengths=torch.tensor([5, 2])).shape == (5, 2, 2)
    with pytest.raises(ValueError, match="bidirectional.*online"):
        model.to_spec()


@pytest.mark.parametrize("kind", ["lif", "lsnn", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_builds_and_reports(kind, bidirectional):
    cfg = ModelConfig(kind=kind, hidden=[12, 6], bidirectional=bidirectional, connectivity=0.3,
                      input_connectivity=0.5, readout="linear" if kind == "lstm" else "li")
    model = SequenceModel(cfg, 4, 3)
    y = model(torch.rand(9, 2, 4), lengths=torch.tensor([9, 4]))
    assert y.shape == (9, 2, 3)
    names = list(model.sparse_matrices())
    assert names[-1] == "readout"
    pre = "layer0.forward." if bidirectional else "layer0."
    assert names[0] == pre + ("w_in" if kind != "lstm" else "w_in")
    assert f"{pre}w_rec" in names
    report = model.connectivity_report()
    assert [r["name"] for r in report] == names
    for r in report:
        assert set(r) >= {"name", "active", "possible", "connectivity", "max_fan_in", "max_fan_out", "fan_in_cap"}
    by_name = {r["name"]: r for r in report}
    assert by_name[pre + "w_in"]["connectivity"] == pytest.approx(0.5, abs=0.05)
    dense = model.to_dense()
    assert set(dense) == set(names)
    sparse_ids = {id(m.theta) for m in model.sparse_matrices().values()}
    assert all(id(p) not in sparse_ids for p in model.dense_parameters())
    n_params = len(list(model.parameters()))
    assert len(model.dense_parameters()) + len(sparse_ids) == n_params
    if kind == "lstm":
        assert model.last_stats == {} and float(model.firing_rate_loss(0.01)) == 0.0
    else:
        assert set(model.last_stats) == {"layer0", "layer1"}
        stats = model.spike_statistics()
        assert stats["layer0"]["neurons"] == (24 if bidirectional else 12)


def test_firing_rate_loss_and_stats():
    model = SequenceModel(ModelConfig(kind="lsnn", hidden=[8, 6], connectivity=0.5, init_gain=4.0), 3, 2)
    with pytest.raises(RuntimeError, match="forward"):
        model.firing_rate_loss(0.01)
    x = torch.rand(20, 4, 3) * 2
    lengths = torch.tensor([20, 10, 5, 1])
    model(x, lengths)
    mask = (torch.arange(20).unsqueeze(1) < lengths).float()
    h = model.layers[0](x)[0]
    rate0 = (h * mask.unsqueeze(-1)).sum((0, 1)) / mask.sum()
    assert model.last_stats["layer0"] == pytest.approx(float(rate0.detach().mean()))
    loss = model.firing_rate_loss(0.02)
    rates = torch.cat([r.detach() for r in model._rates])
    assert float(loss.detach()) == pytest.approx(float(((rates - 0.02) ** 2).mean()))
    loss.backward()
    assert model.sparse_matrices()["layer0.w_in"].theta.grad.abs().sum() > 0


def test_config_validation_and_omegaconf():
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match="ModelConfig.kind"):
        ModelConfig(kind="gru")
    with pytest.raises(ValueError, match="ModelConfig.connectivity"):
        ModelConfig(connectivity=0.0)
    with pytest.raises(ValueError, match="ModelConfig.dale"):
        ModelConfig(kind="lstm", dale=True)
    with pytest.raises(ValueError, match="ModelConfig.n_alif"):
        ModelConfig(hidden=[10], n_alif=11)
    structured = OmegaConf.structured(ModelConfig)
    merged = OmegaConf.merge(structured, OmegaConf.create({"kind": "lif", "hidden": [5, 4], "connectivity": 0.5}))
    model = SequenceModel(merged, 3, 2)
    assert model.cfg.kind == "lif" and model.cfg.hidden == [5, 4]
    with pytest.raises(Exception):
        OmegaConf.merge(structured, {"hidden": "big"})


def test_input_errors():
    model = SequenceModel(ModelConfig(hidden=[4]), 3, 2)
    with pytest.raises(ValueError, match="time-major"):
        model(torch.rand(5, 3))
    with pytest.raises(ValueError, match="features"):
        model(torch.rand(5, 2, 4))
    with pytest.raises(ValueError, match="lengths"):
        model(torch.rand(5, 2, 3), lengths=torch.tensor([5]))


def _task(T=40, B=16, F=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randn(T // 8, B, F, generator=g)
    x = seg.repeat_interleave(8, dim=0)
    labels = (x[..., 0] > 0).long()  # frame class = sign of feature 0 (piecewise constant)
    return x, labels


@pytest.mark.parametrize("kind", ["lsnn", "lstm"])
def test_trains_with_deep_r(kind):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, hidden=[16], connectivity=0.3, input_connectivity=0.6, readout="linear",
                      init_gain=2.0, seed=1)
    model = SequenceModel(cfg, 3, 2)
    budgets = {n: m.nnz for n, m in model.sparse_matrices().items()}
    opt_sparse = DeepRAdam(list(model.sparse_matrices().values()), lr=0.05, temperature=1e-6, seed=0)
    opt_dense = torch.optim.Adam(model.dense_parameters(), lr=0.05)
    x, labels = _task(T=32)
    losses = []
    for _ in range(20):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1))
        if kind == "lsnn":
            loss = loss + 0.1 * model.firing_rate_loss(0.05)
        opt_sparse.zero_grad(), opt_dense.zero_grad()
        loss.backward()
        opt_sparse.step(), opt_dense.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses
    assert losses[-1] < losses[0]
    assert {n: m.nnz for n, m in model.sparse_matrices().items()} == budgets
    for m in model.sparse_matrices().values():
        m.check_invariants()


@pytest.mark.parametrize("reset, refractory, expected", [("subtract", 0, [1.0, 1.0, 0.0]),
                                                         ("value", 1, [0.5, 0.5, 0.0])])
def test_n_repeat_hand_computed(reset, refractory, expected):
    """One LIF neuron (dt = 1, tau_mem_inv = 0.5, current used up every step, input current 3 in the
    first two frames), n_repeat = 2, readout = identity: each frame's logit is the neuron's mean
    spike count over the frame's two steps. Subtract: v' = 1.5, 1.75, 1.875, 1.9375 all spike, then
    0.47, 0.23 do not. Refractory 1 (reset to 0): spike, held, spike, held, then no input."""
    cfg = ModelConfig(kind="lif", hidden=[1], connectivity=1.0, exclude_diagonal=False, readout="linear",
                      dense_readout=True, dt=1.0, tau_mem_inv=0.5, tau_syn_inv=1.0, reset=reset,
                      refractory=refractory, n_repeat=2)
    model = SequenceModel(cfg, 1, 1)
    w_in = model.layers[0].w_in
    with torch.no_grad():
        w_in.theta.fill_(3.0)
        model.layers[0].w_rec.theta.zero_()  # no recurrence
        model.readout.weight.fill_(1.0)
        model.readout.bias.zero_()
    x = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1) * w_in.sign.view(1, 1, 1)  # current +3
    logits = model(x, torch.tensor([3]))
    assert logits.shape == (3, 1, 1)
    assert logits.detach().view(-1).tolist() == expected
    assert model.to_spec().n_repeat == 2 and model.to_spec().layers[0].reset == reset
    with pytest.raises(ValueError, match="n_repeat"):
        ModelConfig(n_repeat=0)


def test_eprop_preset_builds_and_runs():
    """conf/timit_lsnn_eprop.yaml (the authors' framewise TIMIT LSNN) loads and its model runs."""
    from spiking_deepr.config import load_config
    from spiking_deepr.train import model_config_for

    cfg = load_config(["preset=timit_lsnn_eprop"])
    m = cfg.model
    assert (m.reset, m.refractory, m.surrogate, m.n_repeat, m.n_alif, m.v_th) == ("subtract", 1, "lsnn", 5, 100, 0.01)
    model = SequenceModel(model_config_for(cfg), 39, 61)
    assert model(torch.rand(4, 2, 39), torch.tensor([4, 3])).shape == (4, 2, 61)
