"""The fused whole-sequence recurrence (`spiking_deepr.layers.recurrence`) against the step-function
path (`lif_step` / `alif_step` under autograd): same spikes and states bit for bit, same gradients
to rounding, for every input that can carry a gradient."""
import numba
import pytest
import torch
from norse.torch.functional.lif import LIFParameters

from spiking_deepr.layers import SparseALIFRecurrent, SparseLIFRecurrent

ALPHA = {"super": 100.0, "triangle": 0.3, "bellec": 0.8, "tanh": 3.0, "circ": 1.0, "heavi_erfc": 1.0, "lsnn": 0.3}


def _pair(kind, dtype, method="super", recurrent=0.3, F=7, N=24, seed=3, **kw):
    p = LIFParameters(v_leak=torch.as_tensor(0.05), v_reset=torch.as_tensor(-0.1), method=method,
                      alpha=torch.as_tensor(ALPHA.get(method, 1.0)))
    options = {k: kw.pop(k) for k in ("reset", "refractory") if k in kw}
    common = dict(input_connectivity=0.6, recurrent_connectivity=recurrent, input_init_std=2.5,
                  recurrent_init_std=1.0, seed=seed, **options, **kw)
    if kind == "lif":
        fused = SparseLIFRecurrent(F, N, p, **common)
    else:
        fused = SparseALIFRecurrent(F, N - N // 3, N // 3, p, beta=1.7, tau_adapt_inv=30.0, **common)
    fused = fused.to(dtype)
    args = (F, N, p) if kind == "lif" else (F, N - N // 3, N // 3, p)
    extra = {} if kind == "lif" else dict(beta=fused.beta, tau_adapt_inv=float(fused.tau_adapt_inv))
    steps = type(fused)(*args, w_in=fused.w_in, w_rec=fused.w_rec, recurrent_connectivity=recurrent, fused=False,
                        **options, **extra).to(dtype)
    return fused, steps


def _initial_state(layer, B, dtype, gen):
    """A nonzero, differentiable initial state (spikes included; a refractory counter in 0..3)."""
    s0 = layer.initial_state(B)
    parts = [(torch.rand(B, layer.hidden_size, generator=gen) < 0.3).to(dtype)]
    parts += [torch.randn(B, layer.hidden_size, generator=gen, dtype=dtype) * 0.5 for _ in s0._fields[1:]
              if _ != "r"]
    parts = [t.requires_grad_() for t in parts]
    if "r" in s0._fields:
        parts.append(torch.randint(0, 4, (B, layer.hidden_size), generator=gen).to(dtype))
    return type(s0)(*parts)


def _differentiable(state):
    return [t for name, t in zip(state._fields, state) if name != "r"]


def _run(layer, x, s0, w_out, w_state):
    """Loss that touches every output: all spikes and every final state variable."""
    z, s = layer(x, s0)
    loss = (z * w_out).sum() + sum((v * w).sum() for v, w in zip(_differentiable(s)[1:], w_state))
    leaves = [x, layer.w_in.theta] + ([layer.w_rec.theta] if layer.w_rec is not None else []) + _differentiable(s0)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return z, s, grads


def _check_fused_equals_step_functions(kind, dtype, method, **options):
    T, B, F = 35, 4, 7
    fused, steps = _pair(kind, dtype, method, **options)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, F, generator=gen) < 0.4).to(dtype).requires_grad_()
    s0 = _initial_state(fused, B, dtype, gen)
    w_out = torch.randn(T, B, fused.hidden_size, generator=gen, dtype=dtype)
    w_state = [torch.randn(B, fused.hidden_size, generator=gen, dtype=dtype) for _ in _differentiable(s0)[1:]]
    z, s, g = _run(fused, x, s0, w_out, w_state)
    z_ref, s_ref, g_ref = _run(steps, x, s0, w_out, w_state)
    assert z.grad_fn.name() == "_SpikingRecurrenceBackward"  # the fused path ran
    assert z_ref.grad_fn.name() != "_SpikingRecurrenceBackward"
    assert 0.02 < float(z.detach().mean()) < 0.6
    assert torch.equal(z, z_ref)
    for a, b in zip(s, s_ref):
        assert torch.equal(a, b)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(g, g_ref):
        scale = b.abs().max()
        assert scale > 0
        torch.testing.assert_close(a / scale, b / scale, atol=tol, rtol=0)
    return z, s


@pytest.mark.parametrize("kind", ["lif", "alif"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["super", "triangle", "bellec", "tanh"])
def test_fused_equals_step_functions(kind, dtype, method):
    _check_fused_equals_step_functions(kind, dtype, method)


@pytest.mark.parametrize("kind", ["lif", "alif"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method, reset, refractory", [("lsnn", "value", 0), ("super", "subtract", 0),
                                                       ("triangle", "value", 2), ("lsnn", "subtract", 3)])
def test_fused_equals_step_functions_with_recipe_options(kind, dtype, method, reset, refractory):
    """The LSNN recipe options (LSNN-official surrogate, reset by subtraction, refractory period) on
    both paths: same spikes, states (the refractory counter included) and gradients."""
    z, s = _check_fused_equals_step_functions(kind, dtype, method, reset=reset, refractory=refractory)
    assert ("r" in s._fields) == bool(refractory)
    if refractory:  # the refractory period is in force: no neuron spikes twice within R + 1 steps
        window = z.unfold(0, refractory + 1, 1).sum(-1)
        assert float(window.detach().max()) == 1.0


@pytest.mark.parametrize("kind", ["lif", "alif"])
def test_truncated_bptt_chunks_and_feed_forward(kind):
    """Two chunks with the state carried across (gradient flows through it) equal one run; a layer
    without recurrent matrix takes the fused path as well."""
    for recurrent in (0.3, None):
        fused, steps = _pair(kind, torch.float64, recurrent=recurrent)
        x = torch.rand(30, 3, 7, dtype=torch.float64, requires_grad=True)
        results = []
        for layer in (fused, steps):
            za, sa = layer(x[:12])
            zb, sb = layer(x[12:], sa)
            loss = (torch.cat([za, zb]) ** 2 * torch.arange(30.0).view(30, 1, 1)).sum() + sb.v.sum()
            params = [x, layer.w_in.theta] + ([layer.w_rec.theta] if recurrent else [])
            results.append((torch.cat([za, zb]), torch.autograd.grad(loss, params)))
        (z, g), (z_ref, g_ref) = results
        assert torch.equal(z, z_ref) and z.sum() > 0
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_two_threads_equal_one():
    """The kernels' parallel loops (over batch entries, neurons and synapses) are race-free."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    fused, _ = _pair("alif", torch.float32, N=300, recurrent=0.1)
    x = torch.rand(20, 8, 7)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        fused.zero_grad()
        z, s = fused(x)
        (z.sum() + s.v.sum()).backward()
        results.append((z, s.v, fused.w_rec.theta.grad.clone(), fused.w_in.theta.grad.clone()))
    (z1, v1, g1, h1), (z2, v2, g2, h2) = results
    assert torch.equal(z1, z2) and torch.equal(v1, v2)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h1, h2, atol=1e-6, rtol=1e-5)


def test_fallbacks_to_step_functions():
    """record_states, fused=False and T = 0 take the step path (same results)."""
    fused, steps = _pair("lif", torch.float32)
    x = torch.rand(6, 2, 7)
    fused.record_states = True
    z, s = fused(x)
    assert z.grad_fn.name() != "_SpikingRecurrenceBackward" and s.v.shape == (6, 2, 24)
    fused.record_states = False
    z_empty, s_empty = fused(x[:0])
    assert z_empty.shape == (0, 2, 24) and torch.equal(s_empty.v, fused.initial_state(2).v)
    assert "fused=True" in repr(fused) and "fused=False" in repr(steps)


def test_surrogate_without_gradient():
    """Norse's plain "heaviside" has no surrogate: the spikes pass no gradient on either path, the
    voltage still does."""
    fused, steps = _pair("lif", torch.float64, method="heaviside")
    x = torch.rand(10, 2, 7, dtype=torch.float64)
    w = torch.randn(10, 2, 24, dtype=torch.float64)
    grads = []
    for layer in (fused, steps):
        z, s = layer(x)
        loss = (z * w).sum() + s.v.sum() if z.requires_grad else s.v.sum()
        grads.append((z, torch.autograd.grad(loss, [layer.w_in.theta, layer.w_rec.theta])))
    (z, g), (z_ref, g_ref) = grads
    assert torch.equal(z, z_ref) and not z_ref.requires_grad
    for a, b in zip(g, g_ref):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
