import pytest
import torch
import norse.torch as norse
from norse.torch.functional.lif import LIFParameters, LIFState, lif_step as norse_lif_step

from spiking_deepr.layers import SparseLIFRecurrent, lif_step
from spiking_deepr.sparse import SparseMatrix

D = torch.float64


def _p64(method="super", alpha=100.0, **kw):
    base = dict(tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0, v_reset=0.0)
    base.update(kw)
    return LIFParameters(*(torch.tensor(base[k], dtype=D) for k in
                           ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset")),
                         method, torch.tensor(alpha, dtype=D))


def _zeros_state(B, N):
    z = torch.zeros(B, N, dtype=D)
    return LIFState(z, z.clone(), z.clone())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("method", ["super", "tanh", "triangle"])
def test_parity_with_norse_lif_recurrent(method, fused, dense_grad):
    """Both paths (fused kernels: final state; step functions: every step's state) equal Norse."""
    F, N, T, B = 6, 9, 40, 3
    p = _p64(method, 100.0 if method != "triangle" else 0.3, v_leak=0.1, v_reset=-0.1)
    layer = SparseLIFRecurrent(F, N, p, input_init_std=3.0, recurrent_init_std=1.0, record_states=not fused,
                               fused=fused, seed=3).double()
    assert layer.w_rec.nnz == N * (N - 1) and layer.w_in.nnz == N * F  # 100 %, no autapses
    ref = norse.LIFRecurrent(F, N, p=p, record_states=True,
                             input_weights=torch.nn.Parameter(layer.w_in.to_dense().clone()),
                             recurrent_weights=torch.nn.Parameter(layer.w_rec.to_dense().clone()))
    x = torch.rand(T, B, F, dtype=D, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    s0 = _zeros_state(B, N)._replace(v=torch.full((B, N), 0.1, dtype=D))
    z, s = layer(x)
    z_ref, s_ref = ref(x_ref, s0)
    if fused:
        s_ref = type(s_ref)(*(part[-1] for part in s_ref))
    assert 0 < z.mean() < 0.6
    torch.testing.assert_close(z, z_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(s.v, s_ref.v, atol=1e-6, rtol=0)
    torch.testing.assert_close(s.i, s_ref.i, atol=1e-6, rtol=0)
    w = torch.randn(T, B, N, dtype=D)
    ((z * w).sum() + (s.v ** 2).sum()).backward()
    ((z_ref * w).sum() + (s_ref.v ** 2).sum()).backward()
    scale = x_ref.grad.abs().max()
    torch.testing.assert_close(x.grad / scale, x_ref.grad / scale, atol=1e-6, rtol=0)
    for mat, ref_w in ((layer.w_in, ref.input_weights), (layer.w_rec, ref.recurrent_weights)):
        scale = ref_w.grad.abs().max()
        assert scale > 0
        torch.testing.assert_close(dense_grad(mat) / scale, ref_w.grad / scale, atol=1e-6, rtol=0)


def test_only_active_entries_get_gradient(dense_grad):
    """30 % connectivity vs a dense masked reference run through Norse's lif_step."""
    F, N, T, B = 5, 12, 25, 2
    p = _p64("super")
    layer = SparseLIFRecurrent(F, N, p, input_connectivity=0.3, recurrent_connectivity=0.3,
                               input_init_std=4.0, recurrent_init_std=2.0, seed=1).double()
    x = torch.rand(T, B, F, dtype=D)
    z, _ = layer(x)
    w = torch.randn(T, B, N, dtype=D)
    (z * w).sum().backward()
    assert layer.w_rec.theta.grad.shape == (layer.w_rec.nnz,)
    mask_in = (layer.w_in.to_dense() != 0).to(D)
    mask_rec = (layer.w_rec.to_dense() != 0).to(D)
    w_in0 = layer.w_in.to_dense().clone().requires_grad_(True)
    w_rec0 = layer.w_rec.to_dense().clone().requires_grad_(True)
    state, out = _zeros_state(B, N), []
    for t in range(T):
        zt, state = norse_lif_step(x[t], state, w_in0 * mask_in, w_rec0 * mask_rec, p, 0.001)
        out.append(zt)
    torch.testing.assert_close(torch.stack(out), z.detach())
    (torch.stack(out) * w).sum().backward()
    for mat, ref in ((layer.w_in, w_in0), (layer.w_rec, w_rec0)):
        assert float(ref.grad.abs().max()) > 0
        assert torch.all(ref.grad[(mat.to_dense() == 0)] == 0)
        torch.testing.assert_close(dense_grad(mat), ref.grad, atol=1e-9, rtol=1e-7)


def test_state_shapes_and_initial_state():
    layer = SparseLIFRecurrent(4, 7, recurrent_connectivity=0.5, input_connectivity=0.5)
    x = torch.rand(11, 3, 4)
    z, s = layer(x)
    assert z.shape == (11, 3, 7) and all(t.shape == (3, 7) for t in s)
    layer.record_states = True
    z2, s2 = layer(x)
    assert all(t.shape == (11, 3, 7) for t in s2)
    torch.testing.assert_close(z, z2)
    s0 = layer.initial_state(3)
    assert torch.all(s0.z == 0) and torch.all(s0.v == layer.v_leak) and torch.all(s0.i == 0)
    # passing the final state continues the simulation: two halves == one run
    za, sa = SparseLIFRecurrent(4, 7, w_in=layer.w_in, w_rec=layer.w_rec)(x[:5])
    zb, _ = SparseLIFRecurrent(4, 7, w_in=layer.w_in, w_rec=layer.w_rec)(x[5:], sa)
    torch.testing.assert_close(torch.cat([za, zb]), z)


def test_step_function_matches_module_and_feed_forward():
    layer = SparseLIFRecurrent(3, 5, recurrent_connectivity=None, input_init_std=5.0)
    assert layer.w_rec is None
    x = torch.rand(8, 2, 3)
    z, _ = layer(x)
    state, out = layer.initial_state(2), []
    from spiking_deepr.sparse import sparse_linear
    for t in range(8):
        zt, state = lif_step(sparse_linear(x[t], layer.w_in), state, None, layer.parameters_tuple(), layer.dt)
        out.append(zt)
    torch.testing.assert_close(torch.stack(out), z)


def test_time_major_errors():
    layer = SparseLIFRecurrent(4, 6)
    with pytest.raises(ValueError, match=r"time-major input \[T, B, F\]"):
        layer(torch.rand(10, 4))
    with pytest.raises(ValueError, match="5 features .* built for 4"):
        layer(torch.rand(10, 2, 5))
    with pytest.raises(ValueError, match="shape"):
        SparseLIFRecurrent(4, 6, w_rec=SparseMatrix(5, 5, connectivity=0.5))
    with pytest.raises(ValueError, match="surrogate"):
        SparseLIFRecurrent(4, 6, LIFParameters(method="nope"))


def test_bellec_surrogate_trains_through_layer():
    layer = SparseLIFRecurrent(3, 6, LIFParameters(method="bellec", alpha=1.0), input_init_std=4.0)
    z, _ = layer(torch.rand(10, 2, 3))
    z.sum().backward()
    assert layer.w_in.theta.grad.abs().sum() > 0


def _hand_case(reset, refractory, steps):
    """dt = 1, tau_mem_inv = 0.5, tau_syn_inv = 1 (the current is used up every step), v_th = 1, a
    constant input current 3: v' = 0.5 v + 1.5 (1.5 from v = 0)."""
    p = LIFParameters(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.0), torch.tensor(1.0),
                      torch.tensor(0.0), "super", 100.0)
    layer = SparseLIFRecurrent(1, 1, p, dt=1.0, reset=reset, refractory=refractory, recurrent_connectivity=None)
    state, zs, vs = layer.initial_state(1), [], []
    for _ in range(steps):
        z, state = lif_step(torch.full((1, 1), 3.0), state, None, p, 1.0, reset, refractory)
        zs.append(int(z)), vs.append(float(state.v))
    return zs, vs


def test_recipe_options_hand_computed():
    # reset by subtraction: v = v' - 1 after each spike: v' = 1.5, 1.75, 1.875
    assert _hand_case("subtract", 0, 3) == ([1, 1, 1], pytest.approx([0.5, 0.75, 0.875]))
    # refractory 2 steps, reset to 0: the voltage is held at 0 for two steps, then v' = 1.5 again
    assert _hand_case("value", 2, 6) == ([1, 0, 0, 1, 0, 0], [0.0] * 6)
    # both: 1 step held at 0.5, then v' = 0.25 + 1.5
    assert _hand_case("subtract", 1, 5) == ([1, 0, 1, 0, 1], pytest.approx([0.5, 0.5, 0.75, 0.75, 0.875]))
    with pytest.raises(ValueError, match="reset"):
        SparseLIFRecurrent(2, 3, reset="nope")
    with pytest.raises(ValueError, match="refractory"):
        SparseLIFRecurrent(2, 3, refractory=1.5)


@pytest.mark.parametrize("fused", [True, False])
def test_refractory_equals_norse_lif_refrac(fused):
    """Norse's lif_refrac_step (rho_reset = R): same spikes and voltages, recurrent network."""
    from norse.torch.functional.lif_refrac import LIFRefracParameters, LIFRefracState, lif_refrac_step

    F, N, T, B, R = 6, 9, 60, 3, 3
    p = _p64(v_leak=0.1, v_reset=-0.1)
    layer = SparseLIFRecurrent(F, N, p, refractory=R, input_init_std=3.0, recurrent_init_std=1.0, fused=fused,
                               record_states=not fused, seed=4).double()
    x = torch.rand(T, B, F, dtype=D)
    z, s = layer(x)
    w_in, w_rec = layer.w_in.to_dense(), layer.w_rec.to_dense()
    s0 = layer.initial_state(B, x)
    state = LIFRefracState(LIFState(s0.z, s0.v, s0.i), s0.r)
    pr = LIFRefracParameters(layer.parameters_tuple(), torch.tensor(float(R), dtype=D))  # float32-rounded
    zn, vn = [], []
    for t in range(T):
        zt, state = lif_refrac_step(x[t], state, w_in, w_rec, pr, 0.001)
        zn.append(zt), vn.append(state.lif.v)
    zn, vn = torch.stack(zn), torch.stack(vn)
    z = z.detach()
    assert 0.02 < float(z.mean()) < 0.3  # spiking, and the refractory period matters:
    assert float(SparseLIFRecurrent(F, N, p, w_in=layer.w_in, w_rec=layer.w_rec).double()(x)[0].detach().mean()) > z.mean()
    torch.testing.assert_close(z, zn, atol=0, rtol=0)
    torch.testing.assert_close(s.v.detach(), vn[-1] if fused else vn, atol=1e-12, rtol=0)
    if fused:
        torch.testing.assert_close(s.r, state.rho, atol=0, rtol=0)


def test_reset_subtract_equals_norse_reset_subtract():
    """Norse's LIFBox with reset_method=reset_subtract, feed-forward, with the current used up every
    step (dt * tau_syn_inv = 1, so our current-based LIF has no synaptic memory either)."""
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step
    from norse.torch.functional.reset import reset_subtract

    F, N, T, B = 5, 8, 50, 2
    p = _p64(tau_syn_inv=1000.0, v_leak=0.05)
    layer = SparseLIFRecurrent(F, N, p, reset="subtract", recurrent_connectivity=None, input_init_std=4.0,
                               seed=2).double()
    x = torch.rand(T, B, F, dtype=D)
    z = layer(x)[0].detach()
    pb = LIFBoxParameters(p.tau_mem_inv, p.v_leak, p.v_th, p.v_reset, "super", p.alpha, reset_subtract)
    state = LIFBoxFeedForwardState(torch.full((B, N), 0.05, dtype=D))
    zn = []
    for t in range(T):
        zt, state = lif_box_feed_forward_step(x[t] @ layer.w_in.to_dense().T, state, pb, 0.001)
        zn.append(zt)
    assert 0.05 < float(z.mean()) < 0.6
    torch.testing.assert_close(z, torch.stack(zn), atol=0, rtol=0)
