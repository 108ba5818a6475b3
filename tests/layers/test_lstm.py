import pytest
import torch
from torch.func import functional_call

from spiking_deepr.layers import LSTMState, SparseLSTM

D = torch.float64


def _torch_lstm(layer: SparseLSTM):
    ref = torch.nn.LSTM(layer.input_size, layer.hidden_size).double()
    w_ih, w_hh = layer.dense_weights()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(w_ih)
        ref.weight_hh_l0.copy_(w_hh)
        ref.bias_ih_l0.copy_(layer.bias)
        ref.bias_hh_l0.zero_()
    return ref


@pytest.mark.parametrize("budget", ["joint", "per_gate"])
def test_parity_with_torch_lstm(budget, dense_grad):
    F, H, T, B = 5, 6, 12, 3
    layer = SparseLSTM(F, H, budget=budget, init_std=0.5, seed=4).double()
    ref = _torch_lstm(layer)
    x = torch.randn(T, B, F, dtype=D, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    h, s = layer(x)
    h_ref, (hn, cn) = ref(x_ref)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.h, hn[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(s.c, cn[0], atol=1e-5, rtol=0)
    w = torch.randn(T, B, H, dtype=D)
    ((h * w).sum() + s.c.sum()).backward()
    ((h_ref * w).sum() + cn.sum()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.bias.grad, ref.bias_ih_l0.grad, atol=1e-5, rtol=0)
    g_ih = torch.cat([dense_grad(m) for m in layer.w_ih])
    g_hh = torch.cat([dense_grad(m) for m in layer.w_hh])
    torch.testing.assert_close(g_ih, ref.weight_ih_l0.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(g_hh, ref.weight_hh_l0.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("budget", ["joint", "per_gate"])
def test_sparse_gradient_matches_dense_masked_reference(budget, dense_grad):
    F, H, T, B = 4, 5, 9, 2
    layer = SparseLSTM(F, H, budget=budget, input_connectivity=0.3, recurrent_connectivity=0.2, seed=1).double()
    ref = _torch_lstm(layer)
    w_ih, w_hh = layer.dense_weights()
    m_ih, m_hh = (w_ih != 0).to(D), (w_hh != 0).to(D)
    w_ih0, w_hh0 = w_ih.clone().requires_grad_(True), w_hh.clone().requires_grad_(True)
    x = torch.randn(T, B, F, dtype=D)
    h, _ = layer(x)
    h_ref, _ = functional_call(ref, {"weight_ih_l0": w_ih0 * m_ih, "weight_hh_l0": w_hh0 * m_hh,
                                     "bias_ih_l0": ref.bias_ih_l0, "bias_hh_l0": ref.bias_hh_l0}, (x,))
    torch.testing.assert_close(h, h_ref)
    h.pow(2).sum().backward()
    h_ref.pow(2).sum().backward()
    for mats, ref_w in ((layer.w_ih, w_ih0), (layer.w_hh, w_hh0)):
        got = torch.cat([dense_grad(m) for m in mats])
        assert all(m.theta.grad.shape == (m.nnz,) for m in mats)
        torch.testing.assert_close(got, ref_w.grad, atol=1e-10, rtol=1e-7)
        assert torch.all(got[ref_w.detach() == 0] == 0)
    # per-gate budgets: every gate keeps its own count
    if budget == "per_gate":
        assert len({m.nnz for m in layer.w_hh}) == 1 and len(layer.matrices()) == 8


def test_shapes_state_and_errors():
    layer = SparseLSTM(3, 4, input_connectivity=0.5, recurrent_connectivity=0.5)
    h, s = layer(torch.randn(7, 2, 3))
    assert h.shape == (7, 2, 4) and isinstance(s, LSTMState) and s.c.shape == (2, 4)
    assert layer.w_ih[0].shape == (16, 3) and layer.w_hh[0].shape == (16, 4)
    x = torch.randn(7, 2, 3)
    h_full, _ = layer(x)
    h_a, s_a = layer(x[:3])
    h_b, _ = layer(x[3:], s_a)
    torch.testing.assert_close(torch.cat([h_a, h_b]), h_full)
    with pytest.raises(ValueError, match="time-major"):
        layer(torch.randn(2, 3))
    with pytest.raises(ValueError, match="budget"):
        SparseLSTM(3, 4, budget="gates")


@pytest.mark.parametrize("connectivity", [1.0, 0.3])
def test_forget_gate_bias_in_sparse_and_dense_paths(connectivity):
    """``forget_bias=1`` (Jozefowicz et al. 2015) sets the forget-gate bias for a full matrix, which runs
    torch's fused nn.LSTM kernel, and for a sparse one, which runs this project's kernels; both paths
    equal the step-by-step reference with that bias, and the other gates keep torch's
    U(-1/sqrt(H), 1/sqrt(H)), which the default (None) uses for all four."""
    F, H, T, B = 3, 5, 6, 2
    kw = dict(input_connectivity=connectivity, recurrent_connectivity=connectivity, seed=2)
    layer = SparseLSTM(F, H, forget_bias=1.0, **kw).double()
    torch_init = SparseLSTM(F, H, **kw).double()
    b = layer.bias.detach()
    assert torch.equal(b[H:2 * H], torch.ones(H, dtype=D))
    assert torch.equal(b[:H], torch_init.bias[:H]) and torch.equal(b[2 * H:], torch_init.bias[2 * H:])
    assert torch_init.bias.abs().max() <= 1 / H ** 0.5 and not torch.equal(torch_init.bias[H:2 * H], b[H:2 * H])
    x = torch.randn(T, B, F, dtype=D)
    h, s = layer(x)
    reference = SparseLSTM(F, H, forget_bias=1.0, fused=False, **kw).double()
    h_ref, s_ref = reference(x)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(s.c, s_ref.c)
    torch.testing.assert_close(h, _torch_lstm(layer)(x)[0])  # torch.nn.LSTM with the same bias
