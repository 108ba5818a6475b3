"""The fused whole-sequence LSTM (`spiking_deepr.layers.lstm_recurrence`) against the step-function
path (`lstm_step` under autograd) and against `torch.nn.LSTM` at 100 % connectivity: same outputs,
states and gradients to rounding, for every input that can carry a gradient."""
import pytest
import torch

from spiking_deepr.layers import LSTMState, SparseLSTM
from spiking_deepr.layers.lstm_recurrence import lstm_recurrence
from spiking_deepr.sparse import sparse_linear


def _pair(budget, dtype, conn=0.3, F=5, H=7, seed=2):
    fused = SparseLSTM(F, H, budget=budget, input_connectivity=0.6, recurrent_connectivity=conn, init_std=0.8,
                       seed=seed).to(dtype)
    steps = SparseLSTM(F, H, budget=budget, input_connectivity=0.6, recurrent_connectivity=conn, init_std=0.8,
                       fused=False, seed=seed).to(dtype)
    steps.load_state_dict(fused.state_dict())
    return fused, steps


def _run(layer, x, s0, w_out, w_state):
    h, s = layer(x, s0)
    loss = (h * w_out).sum() + (s.h * w_state[0]).sum() + (s.c * w_state[1]).sum()
    leaves = [x, layer.bias, *s0] + [m.theta for m in (*layer.w_ih, *layer.w_hh)]
    return h, s, torch.autograd.grad(loss, leaves)


def _close(a, b, dtype):
    """Equal to rounding, relative to the reference's largest entry."""
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    scale = b.abs().max()
    assert scale > 0
    torch.testing.assert_close(a / scale, b / scale, atol=tol, rtol=0)


@pytest.mark.parametrize("budget", ["joint", "per_gate"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_step_functions(budget, dtype):
    T, B = 23, 4
    fused, steps = _pair(budget, dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, fused.input_size, generator=gen, dtype=dtype).requires_grad_()
    s0 = LSTMState(*(torch.randn(B, fused.hidden_size, generator=gen, dtype=dtype).requires_grad_() for _ in "hc"))
    w_out = torch.randn(T, B, fused.hidden_size, generator=gen, dtype=dtype)
    w_state = [torch.randn(B, fused.hidden_size, generator=gen, dtype=dtype) for _ in "hc"]
    h, s, g = _run(fused, x, s0, w_out, w_state)
    h_ref, s_ref, g_ref = _run(steps, x, s0, w_out, w_state)
    assert h.grad_fn.name() == "_LSTMRecurrenceBackward"  # the fused path ran
    assert h_ref.grad_fn.name() != "_LSTMRecurrenceBackward"
    for a, b in zip((h, *s), (h_ref, *s_ref)):
        _close(a, b, dtype)
    for a, b in zip(g, g_ref):
        _close(a, b, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_torch_lstm_at_full_connectivity(dtype):
    """The fused sparse kernels at 100 % connectivity with a nonzero initial state: outputs, final
    state and every gradient equal torch.nn.LSTM's. (The layer itself runs torch's LSTM on full
    matrices, see below, so the fused function is called directly.)"""
    F, H, T, B = 6, 8, 19, 3
    layer = SparseLSTM(F, H, init_std=0.7, seed=5).to(dtype)
    ref = torch.nn.LSTM(F, H).to(dtype)
    w_ih, w_hh = layer.dense_weights()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(w_ih)
        ref.weight_hh_l0.copy_(w_hh)
        ref.bias_ih_l0.copy_(layer.bias)
        ref.bias_hh_l0.zero_()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, F, generator=gen, dtype=dtype)
    h0, c0 = (torch.randn(B, H, generator=gen, dtype=dtype) for _ in "hc")
    w_out = torch.randn(T, B, H, generator=gen, dtype=dtype)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    s0s = [[h0.clone().requires_grad_(), c0.clone().requires_grad_()] for _ in range(2)]
    h, c = lstm_recurrence(xs[0], *s0s[0], layer._joint(layer.w_ih), layer._joint(layer.w_hh), layer.bias)
    s = LSTMState(h[-1], c)
    h_ref, (hn, cn) = ref(xs[1], (s0s[1][0][None], s0s[1][1][None]))
    for a, b in ((h, h_ref), (s.h, hn[0]), (s.c, cn[0])):
        _close(a, b, dtype)
    ((h * w_out).sum() + s.c.sum()).backward()
    ((h_ref * w_out).sum() + cn.sum()).backward()
    sign_ih, sign_hh = layer.w_ih[0].sign.view(4 * H, F), layer.w_hh[0].sign.view(4 * H, H)
    pairs = [(xs[0].grad, xs[1].grad), (s0s[0][0].grad, s0s[1][0].grad), (s0s[0][1].grad, s0s[1][1].grad),
             (layer.bias.grad, ref.bias_ih_l0.grad),
             (layer.w_ih[0].theta.grad.view(4 * H, F) * sign_ih, ref.weight_ih_l0.grad),
             (layer.w_hh[0].theta.grad.view(4 * H, H) * sign_hh, ref.weight_hh_l0.grad)]
    for a, b in pairs:
        _close(a, b, dtype)


def test_truncated_bptt_chunks_and_edge_cases():
    """Two chunks with the state carried across (gradient flows through it) equal one run; T = 0 and
    a recurrent matrix with a single entry go through as well."""
    layer = SparseLSTM(4, 6, recurrent_connectivity=0.2, seed=1).double()
    x = torch.randn(15, 2, 4, dtype=torch.float64, requires_grad=True)
    h_full, s_full = layer(x)
    g_full = torch.autograd.grad(h_full.sum() + s_full.c.sum(), [x, layer.w_hh[0].theta])
    h_a, s_a = layer(x[:6])
    h_b, s_b = layer(x[6:], s_a)
    torch.testing.assert_close(torch.cat([h_a, h_b]), h_full)
    g_chunks = torch.autograd.grad(h_a.sum() + h_b.sum() + s_b.c.sum(), [x, layer.w_hh[0].theta])
    for a, b in zip(g_chunks, g_full):
        torch.testing.assert_close(a, b)
    h0, s0 = layer(x[:0])
    assert h0.shape == (0, 2, 6) and s0.c.shape == (2, 6)
    tiny, tiny_steps = (SparseLSTM(3, 2, recurrent_connectivity=1 / 16, fused=f, seed=0).double()
                        for f in (True, False))
    tiny_steps.load_state_dict(tiny.state_dict())
    assert tiny.w_hh[0].nnz == 1
    xt = torch.randn(5, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(tiny(xt)[0], tiny_steps(xt)[0], atol=1e-12, rtol=0)


def _graph_nodes(t):
    """Names of every autograd node t depends on."""
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        todo.extend(n for n, _ in node.next_functions)
    return names


def _sparse_kernel_lstm(layer, x, s0):
    """The LSTM equations with every product through the numba sparse kernels (the dense path
    before the dispatch)."""
    def product(v, mats):
        return torch.cat([sparse_linear(v, m, backend="numba") for m in mats], -1)

    gx = product(x, layer.w_ih) + layer.bias
    h, c = s0
    outs = []
    for t in range(x.shape[0]):
        i, f, g, o = (gx[t] + product(h, layer.w_hh)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), LSTMState(h, c)


@pytest.mark.parametrize("budget", ["joint", "per_gate"])
def test_dense_matrices_run_torch_lstm_with_equal_results(budget):
    """At 100 % connectivity (rewiring.algorithm=dense) the layer runs torch's LSTM on the dense views
    of its SparseMatrix objects — no sparse kernel in the graph — with the same outputs and
    input/state/bias/theta gradients as the sparse kernels."""
    dtype = torch.float64
    layer = SparseLSTM(5, 7, budget=budget, init_std=0.8, seed=2).to(dtype)
    gen = torch.Generator().manual_seed(4)
    T, B = 11, 3
    x = torch.randn(T, B, 5, generator=gen, dtype=dtype).requires_grad_()
    s0 = LSTMState(*(torch.randn(B, 7, generator=gen, dtype=dtype).requires_grad_() for _ in "hc"))
    w_out = torch.randn(T, B, 7, generator=gen, dtype=dtype)
    w_state = [torch.randn(B, 7, generator=gen, dtype=dtype) for _ in "hc"]
    leaves = [x, layer.bias, *s0] + [m.theta for m in (*layer.w_ih, *layer.w_hh)]
    results = []
    for run in (layer, lambda x, s0: _sparse_kernel_lstm(layer, x, s0)):
        h, s = run(x, s0)
        results.append((h, s, _graph_nodes(h)))
        loss = (h * w_out).sum() + (s.h * w_state[0]).sum() + (s.c * w_state[1]).sum()
        results[-1] += (torch.autograd.grad(loss, leaves),)
    (h, s, nodes, g), (h_ref, s_ref, nodes_ref, g_ref) = results
    assert not any("SparseLinear" in n or "LSTMRecurrence" in n for n in nodes), nodes
    assert any("SparseLinear" in n for n in nodes_ref)
    for a, b in zip((h, *s, *g), (h_ref, *s_ref, *g_ref)):
        _close(a, b, dtype)


@pytest.mark.parametrize("threads, B", [(1, 1), (2, 1), (2, 40), (1, 33)])
def test_fused_equals_step_functions_for_any_batch_split(threads, B):
    """The batch split into one chunk per thread (zero-padded lanes, 16- or 32-wide vectors) gives
    the step functions' outputs and gradients for batch 1, uneven and multi-chunk batches."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        dtype = torch.float64
        fused, steps = _pair("joint", dtype, conn=0.2, F=3, H=9, seed=4)
        gen = torch.Generator().manual_seed(6)
        T = 7
        x = torch.randn(T, B, 3, generator=gen, dtype=dtype).requires_grad_()
        s0 = LSTMState(*(torch.randn(B, 9, generator=gen, dtype=dtype).requires_grad_() for _ in "hc"))
        w_out = torch.randn(T, B, 9, generator=gen, dtype=dtype)
        w_state = [torch.randn(B, 9, generator=gen, dtype=dtype) for _ in "hc"]
        (h, s, g), (h_ref, s_ref, g_ref) = (_run(m, x, s0, w_out, w_state) for m in (fused, steps))
    finally:
        numba.set_num_threads(before)
    for a, b in zip((h, *s, *g), (h_ref, *s_ref, *g_ref)):
        _close(a, b, dtype)


def test_retained_graph_and_interleaved_sequences_keep_their_buffers():
    """The work buffers are pooled between calls: a graph kept for a second backward
    (retain_graph=True) and a second sequence run before the first one's backward must not share
    them — both give the gradients of a fresh, separate run."""
    layer = SparseLSTM(4, 6, recurrent_connectivity=0.3, seed=3).double()
    xs = [torch.randn(9, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(k)) for k in range(2)]

    def grads(x, retain=False, run=None):
        h, _ = run if run is not None else layer(x)
        return torch.autograd.grad((h ** 2).sum(), [layer.w_hh[0].theta, layer.bias], retain_graph=retain)

    reference = [grads(x) for x in xs]
    runs = [layer(x) for x in xs]  # both graphs alive at once
    for k in (1, 0):
        for a, b in zip(grads(xs[k], retain=True, run=runs[k]), reference[k]):
            torch.testing.assert_close(a, b)
        layer(xs[1 - k])  # another call in between
        for a, b in zip(grads(xs[k], run=runs[k]), reference[k]):  # the retained graph, a second time
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_exp_sigmoid_tanh_match_torch(dtype):
    """The kernels' own branch-free exp, sigmoid and tanh equal torch's to a few ulp (float32) /
    1e-14 (float64), including saturation (|x| up to 100) and tiny arguments (tanh: absolute)."""
    import numba
    import numpy as np

    from spiking_deepr.layers import _lstm_kernels as lk

    @numba.njit
    def apply(x, out):
        for j in range(x.shape[0]):
            out[0, j], out[1, j], out[2, j] = lk._exp(x[j]), lk._sigmoid(x[j]), lk._tanh(x[j])

    x = torch.cat([torch.linspace(-100, 100, 2001, dtype=dtype), torch.linspace(-1e-3, 1e-3, 101, dtype=dtype)])
    out = np.empty((3, x.numel()), dtype=x.numpy().dtype)
    apply(x.numpy(), out)
    out = torch.from_numpy(out)
    # float32: a few ulp; float64: the Cody-Waite reduction's ln2_lo limits exp to ~1e-14 relative
    eps = torch.finfo(dtype).eps if dtype == torch.float32 else 1e-14 / 4
    inside = x.abs() <= 80
    torch.testing.assert_close(out[0][inside], torch.exp(x[inside]), rtol=4 * eps, atol=0)
    # sigmoid's tail below e^-87 (exp's clamp) is e^-87 ~ 1.6e-38 instead of smaller
    torch.testing.assert_close(out[1], torch.sigmoid(x), rtol=4 * eps, atol=2e-38)
    torch.testing.assert_close(out[2], torch.tanh(x), rtol=0, atol=4 * eps)


def test_buffer_pool_reuses_only_free_buffers_within_its_byte_budget():
    """The pool hands a buffer out again only once no autograd graph saves it, never twice in one
    call, and drops the least recently used shapes to stay within its byte budget."""
    from spiking_deepr.layers.lstm_recurrence import _BufferPool

    class Save(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, buf):
            ctx.save_for_backward(buf)
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g, None

    pool = _BufferPool(max_bytes=4 * 100 * 8)
    with pool.lock:
        a, b = pool.take([(100,), (100,)], torch.float64)
        assert a is not b and pool.bytes == 1600
        assert pool.take([(100,)], torch.float64)[0] is a  # free again after the call
        y = Save.apply(torch.ones(2, requires_grad=True), a)  # a graph saves a
        c, d = pool.take([(100,), (100,)], torch.float64)
        assert c is not a and d is not a and (c is b or d is b)
        y.sum().backward()  # the graph releases a
        assert pool.take([(100,)], torch.float64)[0] is a
        pool.take([(150,)], torch.float64)  # 3 × 800 + 1200 > 3200: the (100,) buffers are dropped
        assert pool.bytes == 1200 and pool.bytes <= pool.max_bytes
        assert pool.take([(100,)], torch.float64)[0] is not a
        assert pool.bytes == 2000
