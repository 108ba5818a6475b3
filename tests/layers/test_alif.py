import math

import pytest
import torch
import norse.torch as norse
from norse.torch.functional.lif import LIFParameters
from norse.torch.functional.lsnn import LSNNParameters, LSNNState, lsnn_step

from spiking_deepr.layers import (ALIFParameters, ALIFState, SparseALIFRecurrent, SparseLIFRecurrent,
                                  alif_step)

D = torch.float64


def _p(**kw):
    base = dict(tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0, v_reset=0.0)
    base.update(kw)
    return LIFParameters(*(torch.tensor(base[k], dtype=D) for k in
                           ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset")), "super",
                         torch.tensor(100.0, dtype=D))


def test_hand_computed_three_steps():
    """dt=1, tau_mem_inv=0.5, tau_syn_inv=1 (current fully consumed), rho=0.5, beta=[0, 2]:
    t0: v'=1.5, b=0,   thr=[1,1]   -> z=[1,1], v=[0,0]
    t1: v'=1.5, b=0.5, thr=[1,2]   -> z=[1,0], v=[0,1.5]
    t2: v'=[1.5,2.25], b=0.25, thr=[1,1.5] -> z=[1,1], v=[0,0]"""
    p = ALIFParameters(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.0), torch.tensor(1.0),
                       torch.tensor(0.0), torch.tensor(math.log(2.0)), torch.tensor([0.0, 2.0]), "super", 100.0)
    z0 = torch.zeros(1, 2)
    state = ALIFState(z0, z0.clone(), z0.clone(), z0.clone())
    zs, vs, bs = [], [], []
    for _ in range(3):
        z, state = alif_step(torch.full((1, 2), 3.0), state, None, p, dt=1.0)
        zs.append(z[0].tolist()), vs.append(state.v[0].tolist()), bs.append(state.b[0, 1].item())
    assert zs == [[1, 1], [1, 0], [1, 1]]
    assert sum(vs, []) == pytest.approx([0, 0, 0, 1.5, 0, 0])
    assert bs == pytest.approx([0.0, 0.5, 0.25])


def test_mixed_layer_layout():
    layer = SparseALIFRecurrent(4, n_lif=300, n_alif=100, beta=1.5, input_connectivity=0.1,
                                recurrent_connectivity=0.01)
    assert layer.hidden_size == 400 and layer.n_lif == 300 and layer.n_alif == 100
    assert torch.all(layer.beta[:300] == 0) and torch.all(layer.beta[300:] == 1.5)
    z, s = layer(torch.rand(5, 2, 4))
    assert z.shape == (5, 2, 400) and isinstance(s, ALIFState) and s.b.shape == (2, 400)
    assert layer.rho == pytest.approx(math.exp(-0.001 * 5.0))
    with pytest.raises(ValueError, match="beta"):
        SparseALIFRecurrent(4, 2, 2, beta=torch.ones(3))


@pytest.mark.parametrize("fused", [True, False])
def test_beta_zero_equals_lif_layer_and_norse(fused, dense_grad):
    F, N, T, B = 5, 8, 30, 2
    p = _p(v_leak=0.05)
    alif = SparseALIFRecurrent(F, N, 0, p, input_init_std=3.0, recurrent_init_std=1.0, record_states=not fused,
                               fused=fused, seed=2).double()
    lif = SparseLIFRecurrent(F, N, p, w_in=alif.w_in, w_rec=alif.w_rec, record_states=not fused,
                             fused=fused).double()
    x = torch.rand(T, B, F, dtype=D)
    za, sa = alif(x)
    (za.sum() + sa.v.sum()).backward()
    g_alif = [m.theta.grad.clone() for m in (alif.w_in, alif.w_rec)]
    for m in (alif.w_in, alif.w_rec):
        m.theta.grad = None
    zl, sl = lif(x)
    (zl.sum() + sl.v.sum()).backward()
    assert 0 < za.mean() < 0.6
    assert torch.equal(za, zl) and torch.equal(sa.v, sl.v)
    for g, m in zip(g_alif, (alif.w_in, alif.w_rec)):
        torch.testing.assert_close(g, m.theta.grad, atol=1e-12, rtol=0)
    ref = norse.LIFRecurrent(F, N, p=p, record_states=True,
                             input_weights=torch.nn.Parameter(alif.w_in.to_dense().clone()),
                             recurrent_weights=torch.nn.Parameter(alif.w_rec.to_dense().clone()))
    s0 = alif.initial_state(B, x)
    z_ref, s_ref = ref(x, type(ref.initial_state(x))(s0.z, s0.v, s0.i))
    torch.testing.assert_close(za, z_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(sa.v, s_ref.v[-1] if fused else s_ref.v, atol=1e-6, rtol=0)


def test_coincides_with_norse_lsnn_feed_forward_shifted_by_one_step():
    """Without recurrence, Norse's LSNN with tau_adapt_inv' = (1-rho)/dt and beta' = beta (1-rho)/rho
    emits at t+1 what this layer emits at t (Norse adds the input after the decay)."""
    F, N, T, B, dt = 4, 6, 60, 2, 0.001
    p = _p()
    layer = SparseALIFRecurrent(F, 3, 3, p, beta=3.0, tau_adapt_inv=20.0, recurrent_connectivity=None,
                                input_sign=torch.ones(F), input_init_std=2.0, record_states=True, seed=5).double()
    x = torch.rand(T + 1, B, F, dtype=D)
    z, s = layer(x)
    rho = layer.rho
    pn = LSNNParameters(p.tau_syn_inv, p.tau_mem_inv, torch.tensor((1 - rho) / dt, dtype=D), p.v_leak, p.v_th,
                        p.v_reset, layer.beta * (1 - rho) / rho, "super", 100.0)
    w_in = layer.w_in.to_dense()
    zeros = torch.zeros(B, N, dtype=D)
    state = LSNNState(zeros, zeros.clone(), zeros.clone(), torch.full((B, N), 1.0, dtype=D))
    zn, vn = [], []
    for t in range(T + 1):
        zt, state = lsnn_step(x[t], state, w_in, torch.zeros(N, N, dtype=D), pn, dt)
        zn.append(zt), vn.append(state.v)
    zn, vn = torch.stack(zn), torch.stack(vn)
    assert z[:T, :, 3:].sum() > 5  # the adaptive neurons spike (and adapt)
    assert torch.equal(zn[0], zeros)
    torch.testing.assert_close(zn[1:], z[:T], atol=0, rtol=0)
    torch.testing.assert_close(vn[1:], s.v[:T], atol=1e-9, rtol=0)
    # ... and adaptation matters: without it the ALIF neurons would spike more
    no_adapt = SparseALIFRecurrent(F, 6, 0, p, w_in=layer.w_in, recurrent_connectivity=None).double()
    assert no_adapt(x)[0][:, :, 3:].sum() > z[:, :, 3:].sum()
