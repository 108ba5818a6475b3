"""Sparse products with a sparse-native backward pass.

For a sparse W [n_out, n_in] with K active entries (values w [K]) and input x [..., n_in]:

    forward:          y = x Wᵀ                                   [..., n_out]
    input gradient:   ∂E/∂x = δ W                                [..., n_in]
    weight gradient:  ∂E/∂w_k = Σ_r δ[r, row_k] · x[r, col_k]    [K]   (SDDMM)

with δ = ∂E/∂y and r running over all leading dimensions (B, or T·B). The weight gradient is only
ever computed at the K active positions: no dense [n_out, n_in] gradient is materialised.

Backends: ``"numba"`` (CPU kernels in `_numba_kernels`, default on CPU) and ``"torch"`` (torch sparse
CSR matmul and `torch.sparse.sampled_addmm`, used on GPUs and as a reference). Both are tested to
agree with a dense masked product.

Full matrices: when every admissible entry is active (``rewiring.algorithm=dense``, the start of
magnitude pruning), the ``"auto"`` backend multiplies by the dense weight (`dense_weight`, a view
of the values or one scatter) with torch's dense GEMM: a dense reference costs what a dense model
costs. Gradients still reach ``theta`` (equal to the sparse kernels' to rounding, tested).

Event-driven path (numba): when at most ``EVENT_DENSITY`` of the input entries are nonzero — the
spikes of a spiking layer — the forward product and the weight gradient loop over the nonzero
inputs only (work ∝ spikes × fan-out instead of rows × K). The same row-by-row kernels also take
dense inputs to a matrix with few synapses, K ≤ ``EVENT_SYNAPSES`` · (n_in + n_out) (e.g. a 1 %
input matrix of MFCC features): the chunked kernels transpose every row in and out (n_in + n_out
per row), which then costs more than the synapses (measured on 6,400 rows of 39 features into 400
neurons at 1 %: forward 12.8 → 1.6 ms, weight gradient 17 → 2.3 ms; at 10 % the chunked kernels
are faster). The input gradient δ W has a dense δ and always uses the row-parallel kernel.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from .matrix import CSRStructure, SparseMatrix
from .sampling import count_admissible

BACKENDS = ("auto", "numba", "torch")
_NO_PERM = torch.empty(0, dtype=torch.int64)
EVENT_DENSITY = 0.2  # nonzero fraction of x below which the numba backend goes event-driven
EVENT_SYNAPSES = 1.0  # ... or K below this times (n_in + n_out), whatever x holds


def sparse_linear(x: torch.Tensor, matrix: SparseMatrix, backend: str = "auto") -> torch.Tensor:
    """y = x Wᵀ for x [..., n_in] -> [..., n_out], differentiable w.r.t. x and ``matrix.theta``.

    ``backend="auto"`` uses a dense GEMM for a full matrix (see module docstring)."""
    if x.shape[-1] != matrix.n_in:
        raise ValueError(
            f"sparse_linear: input has {x.shape[-1]} features in its last dimension, "
            f"the matrix expects n_in={matrix.n_in} (input shape {tuple(x.shape)})"
        )
    if backend == "auto" and is_full(matrix):
        return torch.nn.functional.linear(x, dense_weight(matrix))
    lead = x.shape[:-1]
    y = SparseLinearFunction.apply(
        x.reshape(-1, matrix.n_in), matrix.weight_values(), matrix.structure(), matrix.n_out,
        _resolve(backend, x),
    )
    return y.reshape(*lead, matrix.n_out)


def is_full(matrix: SparseMatrix) -> bool:
    """Every admissible entry of ``matrix`` is active (a dense matrix stored as a SparseMatrix)."""
    return matrix.nnz == count_admissible(matrix.n_out, matrix.n_in, matrix.exclude_diagonal)


def dense_weight(matrix: SparseMatrix) -> torch.Tensor:
    """W [n_out, n_in] as a dense tensor, differentiable w.r.t. ``matrix.theta``: a view of the values
    when every position is active (sorted positions are row-major order), else one scatter."""
    values = matrix.weight_values()
    n = matrix.n_out * matrix.n_in
    if values.numel() == n:
        return values.view(matrix.n_out, matrix.n_in)
    return values.new_zeros(n).index_put((matrix.indices,), values).view(matrix.n_out, matrix.n_in)


def _resolve(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"sparse backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba" if x.device.type == "cpu" else "torch"
    if backend == "numba" and x.device.type != "cpu":
        raise ValueError(f"the numba sparse backend runs on the CPU, input is on {x.device}")
    return backend


class SparseLinearFunction(torch.autograd.Function):
    """Autograd function for y = x Wᵀ with W given by CSR structure + values [K]."""

    @staticmethod
    def forward(ctx, x, values, structure: CSRStructure, n_out: int, backend: str):
        x = x.detach().contiguous()
        values = values.detach().contiguous()
        events = backend == "numba" and x.numel() > 0 and (
            values.numel() <= EVENT_SYNAPSES * (x.shape[1] + n_out)
            or int(torch.count_nonzero(x)) <= EVENT_DENSITY * x.numel())
        ctx.save_for_backward(x, values)
        ctx.structure, ctx.backend, ctx.events = structure, backend, events
        if events:
            from . import _numba_kernels as nk

            out = torch.empty(x.shape[0], n_out, dtype=x.dtype)
            vals, perm = _values_for_rows(values, structure.perm_t, x.shape[0])
            nk.spmm_events(structure.crow_t.numpy(), structure.rows_t.numpy(), perm.numpy(),
                           vals.numpy(), x.numpy(), out.numpy())
            return out
        return _spmm(structure.crow, structure.cols, values, x, n_out, backend)

    @staticmethod
    def backward(ctx, grad_y):
        x, values = ctx.saved_tensors
        s, backend = ctx.structure, ctx.backend
        grad_y = grad_y.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # δ W = δ (Wᵀ)ᵀ: the CSR of Wᵀ, reading W's values through perm_t
            grad_x = _spmm(s.crow_t, s.rows_t, values, grad_y, x.shape[1], backend, perm=s.perm_t)
        if ctx.needs_input_grad[1]:
            grad_w = _sddmm_events(s, grad_y, x) if ctx.events else _sddmm(s, grad_y, x, backend)
        return grad_x, grad_w, None, None, None


def _spmm(crow, cols, values, x, n_out: int, backend: str, perm: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [R, n_in] times (CSR [n_out, n_in])ᵀ -> [R, n_out]; entry k's value is values[perm[k]]
    (values[k] without ``perm``)."""
    x = x.contiguous()
    if backend == "numba":
        from . import _numba_kernels as nk

        out = torch.empty(x.shape[0], n_out, dtype=x.dtype)
        if x.shape[0]:
            values, perm = _values_for_rows(values.detach(), _NO_PERM if perm is None else perm, x.shape[0])
            nk.spmm(crow.numpy(), cols.numpy(), values.contiguous().numpy(), perm.numpy(),
                    x.detach().numpy(), out.numpy(), nk.nb.get_num_threads())
        return out
    if perm is not None:
        values = values[perm]
    w = _csr(crow, cols, values.detach(), (n_out, x.shape[1]))
    return (w @ x.detach().T).T.contiguous()


def _sddmm(s: CSRStructure, grad_y: torch.Tensor, x: torch.Tensor, backend: str) -> torch.Tensor:
    """g[k] = Σ_r grad_y[r, row_k] · x[r, col_k], float [K]."""
    x = x.detach().contiguous()
    if backend == "numba":
        from . import _numba_kernels as nk

        parts = torch.empty(nk.num_parts(x.shape[0]), s.cols.numel(), dtype=x.dtype)
        nk.sddmm(s.crow.numpy(), s.cols.numpy(), grad_y.numpy(), x.numpy(), parts.numpy())
        return parts[0] if parts.shape[0] == 1 else parts.sum(0)
    n_out = s.crow.numel() - 1
    pattern = _csr(s.crow, s.cols, torch.zeros(s.cols.numel(), dtype=x.dtype, device=x.device), (n_out, x.shape[1]))
    return torch.sparse.sampled_addmm(pattern, grad_y.T.contiguous(), x, beta=0.0).values()


def _csr(crow, cols, values, size) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, size, check_invariants=False)


def _values_for_rows(values: torch.Tensor, perm: torch.Tensor, rows: int):
    """(values, perm) for a numba kernel that reads entry q as values[perm[q]] (or values[q] when perm
    is empty). Few rows (one time step): read through perm, no copy. Many rows: every value is read
    many times, so one permuted copy beats repeated random reads."""
    from . import _numba_kernels as nk

    if perm.numel() and rows > nk.CHUNK:
        return values[perm], _NO_PERM
    return values, perm


def _sddmm_events(s: CSRStructure, grad_y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Weight gradient for a sparse input x (event-driven, numba), float [K] in CSR order."""
    from . import _numba_kernels as nk

    parts_t = torch.empty(max(1, min(nk.nb.get_num_threads(), x.shape[0])), s.rows_t.numel(), dtype=x.dtype)
    g = torch.empty(s.rows_t.numel(), dtype=x.dtype)
    nk.sddmm_events(s.crow_t.numpy(), s.rows_t.numpy(), s.perm_t.numpy(), grad_y.numpy(), x.numpy(),
                    parts_t.numpy(), g.numpy())
    return g


def dense_masked_linear(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                        bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reference: y = x (W ⊙ M)ᵀ with dense tensors — what dense-masking libraries do."""
    return torch.nn.functional.linear(x, weight * mask, bias)
