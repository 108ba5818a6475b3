"""Sparse kernels: forward and backward equal a dense masked reference; gradcheck in float64."""
import pytest
import torch

from spiking_deepr.sparse import SparseMatrix, sparse_linear
from spiking_deepr.sparse.kernels import SparseLinearFunction, dense_masked_linear

BACKENDS = ["numba", "torch"]


def _dense_reference(m: SparseMatrix):
    mask = torch.zeros(m.n_out * m.n_in, dtype=torch.float64)
    mask[m.indices] = 1
    weight = m.to_dense().clone().requires_grad_(True)
    return weight, mask.view(m.n_out, m.n_in)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [1, 32, 3 * 64 + 5, 700])  # one step, a batch, chunked with a remainder
def test_forward_backward_equal_dense_masked(backend, rows):
    torch.manual_seed(rows)
    m = SparseMatrix(70, 90, connectivity=0.15, seed=rows).double()
    x = torch.randn(rows, 90, dtype=torch.float64, requires_grad=True)
    y = sparse_linear(x, m, backend)
    weight, mask = _dense_reference(m)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = dense_masked_linear(x_ref, weight, mask)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    # theta gradient = sign * dE/dw at the active positions only
    dense_grad = weight.grad.reshape(-1)
    torch.testing.assert_close(m.theta.grad, m.sign * dense_grad[m.indices], rtol=1e-10, atol=1e-10)
    assert m.theta.grad.shape == (m.nnz,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_major_input(backend):
    m = SparseMatrix(16, 12, connectivity=0.5, seed=0)
    x = torch.randn(5, 3, 12)  # [T, B, F]
    y = sparse_linear(x, m, backend)
    assert y.shape == (5, 3, 16)
    torch.testing.assert_close(y, x @ m.to_dense().T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rows", [4, 300])
def test_gradcheck_float64(backend, rows):
    torch.manual_seed(0)
    m = SparseMatrix(9, 11, connectivity=0.3, seed=4).double()
    x = torch.randn(rows, 11, dtype=torch.float64, requires_grad=True)
    v = m.weight_values().detach().clone().requires_grad_(True)
    fn = lambda x, v: SparseLinearFunction.apply(x, v, m.structure(), m.n_out, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, v), fast_mode=rows > 100)


def test_backends_agree_float32_large():
    torch.manual_seed(1)
    m = SparseMatrix(512, 600, connectivity=0.02, seed=1)
    x = (torch.rand(640, 600) < 0.1).float()
    outs = []
    for backend in BACKENDS:
        xi = x.clone().requires_grad_(True)
        y = sparse_linear(xi, m, backend)
        y.pow(2).sum().backward()
        outs.append((y.detach(), xi.grad, m.theta.grad.clone()))
        m.theta.grad = None
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_wrong_input_shape_is_a_clear_error():
    m = SparseMatrix(4, 6, nnz=5)
    with pytest.raises(ValueError, match="expects n_in=6"):
        sparse_linear(torch.randn(3, 5), m)
    with pytest.raises(ValueError, match="backend must be one of"):
        sparse_linear(torch.randn(3, 6), m, backend="cuda-magic")


@pytest.mark.parametrize("rows", [1, 32, 400])
def test_event_driven_path_equals_dense_path_on_spikes(rows, monkeypatch):
    """Binary spike input below EVENT_DENSITY takes the event-driven kernels; results must not change."""
    from spiking_deepr.sparse import kernels

    torch.manual_seed(rows)
    m = SparseMatrix(300, 250, connectivity=0.05, seed=rows).double()
    x = (torch.rand(rows, 250) < 0.05).double()
    g = torch.randn(rows, 300, dtype=torch.float64)
    outs = {}
    for threshold in (0.0, 1.0):  # 0: never event-driven, 1: always
        monkeypatch.setattr(kernels, "EVENT_DENSITY", threshold)
        xi = x.clone().requires_grad_(True)
        y = sparse_linear(xi, m, "numba")
        y.backward(g)
        outs[threshold] = (y.detach(), xi.grad, m.theta.grad.clone())
        m.theta.grad = None
    for a, b in zip(outs[0.0], outs[1.0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    weight, mask = _dense_reference(m)
    torch.testing.assert_close(outs[1.0][0], dense_masked_linear(x, weight, mask), rtol=1e-12, atol=1e-12)


def test_event_path_gradcheck():
    from spiking_deepr.sparse import kernels

    m = SparseMatrix(9, 11, connectivity=0.3, seed=4).double()
    x = torch.zeros(6, 11, dtype=torch.float64)
    x[torch.rand(6, 11) < 0.15] = 1.0
    x.requires_grad_(True)
    v = m.weight_values().detach().clone().requires_grad_(True)
    assert int(torch.count_nonzero(x)) <= kernels.EVENT_DENSITY * x.numel()
    fn = lambda x, v: SparseLinearFunction.apply(x, v, m.structure(), m.n_out, "numba")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, v))


@pytest.mark.parametrize("exclude_diagonal", [False, True])
def test_full_matrix_uses_dense_gemm_with_equal_results(exclude_diagonal):
    """A matrix with every admissible entry active (rewiring.algorithm=dense) goes through one dense
    GEMM on the ``"auto"`` backend — no sparse kernel in the graph — with the same output and
    input/theta gradients as the numba sparse kernels."""
    from spiking_deepr.sparse import dense_weight, is_full

    m = SparseMatrix(12, 12, connectivity=1.0, exclude_diagonal=exclude_diagonal, seed=3).double()
    assert is_full(m) and not is_full(SparseMatrix(12, 12, connectivity=0.9, seed=3))
    torch.testing.assert_close(dense_weight(m), m.to_dense())
    x = torch.randn(5, 7, 12, dtype=torch.float64)
    outs = []
    for backend in ("auto", "numba"):
        xr = x.clone().requires_grad_()
        y = sparse_linear(xr, m, backend)
        nodes, todo = set(), [y.grad_fn]
        while todo:  # every autograd node y depends on
            n = todo.pop()
            if n is not None and n.name() not in nodes:
                nodes.add(n.name())
                todo.extend(f for f, _ in n.next_functions)
        outs.append((y, *torch.autograd.grad((y * torch.sin(y)).sum(), [xr, m.theta]), " ".join(nodes)))
    (y, gx, gt, node), (y_ref, gx_ref, gt_ref, node_ref) = outs
    assert "SparseLinear" not in node and "SparseLinear" in node_ref
    for a, b in ((y, y_ref), (gx, gx_ref), (gt, gt_ref)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows", [1, 200])
def test_few_synapses_take_the_row_wise_kernels_on_dense_input(rows, monkeypatch):
    """A matrix with K <= n_in + n_out multiplies dense (real-valued) input with the row-by-row
    (event-driven) kernels; output and gradients equal the chunked kernels and the dense reference."""
    from spiking_deepr.sparse import kernels

    torch.manual_seed(rows)
    m = SparseMatrix(60, 25, connectivity=0.03, seed=rows).double()
    assert m.nnz <= m.n_in + m.n_out
    x = torch.randn(rows, 25, dtype=torch.float64)
    g = torch.randn(rows, 60, dtype=torch.float64)
    outs = {}
    for factor in (0.0, 1.0):  # 0: the chunked kernels, 1: the default rule (row-wise here)
        monkeypatch.setattr(kernels, "EVENT_SYNAPSES", factor)
        xi = x.clone().requires_grad_(True)
        v = m.weight_values().detach().clone().requires_grad_(True)
        y = SparseLinearFunction.apply(xi, v, m.structure(), m.n_out, "numba")
        assert y.grad_fn.events == bool(factor)
        y.backward(g)
        outs[factor] = (y.detach(), xi.grad, v.grad)
    for a, b in zip(outs[0.0], outs[1.0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    weight, mask = _dense_reference(m)
    torch.testing.assert_close(outs[1.0][0], dense_masked_linear(x, weight, mask), rtol=1e-12, atol=1e-12)
