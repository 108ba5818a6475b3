"""SparseMatrix: exact budget, uniqueness, caps, signs, initial variance, errors."""
import math

import pytest
import torch

from spiking_deepr.sparse import SparseMatrix
from spiking_deepr.sparse.sampling import position_sign


def test_exact_k_distinct_sorted_positions():
    m = SparseMatrix(300, 200, connectivity=0.05, seed=3)
    assert m.nnz == round(0.05 * 300 * 200)
    assert torch.unique(m.indices).numel() == m.nnz
    m.check_invariants()


def test_exclude_diagonal_and_caps_hold_at_init():
    m = SparseMatrix(100, 100, connectivity=0.3, exclude_diagonal=True, fan_in_cap=31, fan_out_cap=33, seed=0)
    assert not bool((m.rows == m.cols).any())
    assert int(m.fan_in().max()) <= 31 and int(m.fan_out().max()) <= 33
    assert m.nnz == round(0.3 * (100 * 100 - 100))


def test_cap_exactly_saturated():
    # every row gets exactly the cap: K = n_out * cap
    m = SparseMatrix(20, 30, nnz=20 * 4, fan_in_cap=4, seed=1)
    assert torch.equal(m.fan_in(), torch.full((20,), 4))


def test_full_connectivity():
    m = SparseMatrix(12, 9, connectivity=1.0)
    assert m.nnz == 108 and torch.equal(m.indices, torch.arange(108))


def test_signs_fixed_by_position_and_balanced():
    m = SparseMatrix(200, 200, connectivity=0.2, seed=5)
    assert torch.equal(m.sign, m.signs_at(m.indices))
    assert abs(float(m.sign.mean())) < 0.02  # 8000 fair coins: 4.5 sigma = 0.05, generous
    # the hash is a pure function of (seed, position)
    pos = torch.arange(1000)
    assert torch.equal(position_sign(pos, 7), position_sign(pos.clone(), 7))
    assert not torch.equal(position_sign(pos, 7), position_sign(pos, 8))


def test_dale_signs_follow_presynaptic_neuron():
    pre = torch.where(torch.arange(50) < 40, 1.0, -1.0)
    m = SparseMatrix(60, 50, connectivity=0.3, presynaptic_sign=pre, seed=2)
    assert torch.equal(m.sign, pre[m.cols])
    dense = m.to_dense()
    assert bool((dense[:, :40] >= 0).all()) and bool((dense[:, 40:] <= 0).all())


def test_initial_variance_matches_dense_init():
    # summed input variance of sparse init equals that of a dense N(0, 1/n_in) init
    n = 2000
    m = SparseMatrix(n, n, connectivity=0.05, seed=11)
    w = m.to_dense()
    x = torch.randn(64, n)
    var_sparse = (x @ w.T).var().item()
    assert var_sparse == pytest.approx(1.0, rel=0.1)
    assert m.weight_values().pow(2).mean().item() == pytest.approx(1.0 / (n * 0.05), rel=0.05)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_out=10, n_in=10, nnz=101), "only 100 admissible"),
        (dict(n_out=10, n_in=10, nnz=91, exclude_diagonal=True), "only 90 admissible"),
        (dict(n_out=10, n_in=10, nnz=50, fan_in_cap=4), "fan_in_cap=4 allows at most 40"),
        (dict(n_out=10, n_in=10, connectivity=1.5), "connectivity must be in"),
        (dict(n_out=0, n_in=10, nnz=1), "shape must be positive"),
        (dict(n_out=5, n_in=4, nnz=3, presynaptic_sign=torch.ones(5)), "presynaptic_sign must be"),
    ],
)
def test_clear_errors(kwargs, message):
    n_out, n_in = kwargs.pop("n_out"), kwargs.pop("n_in")
    with pytest.raises(ValueError, match=message):
        SparseMatrix(n_out, n_in, **kwargs)


def test_state_dict_round_trip_with_different_k():
    a = SparseMatrix(30, 20, nnz=50, seed=1)
    b = SparseMatrix(30, 20, nnz=70, seed=1)
    b.load_state_dict(a.state_dict())
    assert b.nnz == 50 and torch.equal(b.indices, a.indices) and torch.equal(b.theta, a.theta)
    b.check_invariants()


def test_corrupt_state_dict_rejected():
    a = SparseMatrix(30, 20, nnz=50, seed=1)
    sd = a.state_dict()
    sd["indices"] = sd["indices"].flip(0)
    with pytest.raises(RuntimeError, match="sorted, unique"):
        SparseMatrix(30, 20, nnz=50, seed=1).load_state_dict(sd)


def test_memory_is_o_k():
    m = SparseMatrix(20_000, 20_000, connectivity=0.0005, seed=0)  # 400M possible entries
    tensors = list(m.parameters()) + list(m.buffers())
    assert sum(t.numel() for t in tensors) <= 3 * m.nnz + 1
    s = m.structure()
    assert s.crow.numel() == 20_001 and s.cols.numel() == m.nnz
    assert math.isclose(m.statistics()["connectivity"], 0.0005, rel_tol=1e-3)


def test_backward_after_k_changes_while_an_old_graph_is_alive():
    # Global budgets, soft-DEEP R and pruning change K between steps; the previous step's graph
    # (e.g. a loss tensor still referenced by the training loop) must not pin theta's old shape.
    from spiking_deepr.sparse import sparse_linear

    m = SparseMatrix(20, 20, nnz=40, seed=0)
    old = sparse_linear(torch.randn(3, 20), m).sum()
    old.backward()
    m.rewire(torch.arange(m.nnz) >= 5, torch.empty(0, dtype=torch.int64))  # drop the first 5 entries
    new = sparse_linear(torch.randn(3, 20), m).sum()
    new.backward()
    assert m.theta.grad.shape == (35,) and m.theta.dtype == torch.float32 and old is not None


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("shape", [(30, 30), (7, 50), (64, 5)])
def test_index_maintenance_numba_equals_torch(shape):
    """The CPU kernels that merge a rewiring, carry per-entry state and build the CSR structures equal
    the torch formulations (used on other devices) and a direct reference."""
    from spiking_deepr.sparse.matrix import (carry_entries, carry_entries_torch, csr_structures,
                                             csr_structures_torch, merge_active, merge_active_torch)

    n_out, n_in = shape
    gen = torch.Generator().manual_seed(sum(shape))
    for k in (0, 1, n_out * n_in // 3):
        perm = torch.randperm(n_out * n_in, generator=gen)
        indices, new = perm[:k].sort().values, perm[k:k + 5].sort().values
        keep = torch.rand(k, generator=gen) < 0.7
        merged = merge_active(indices, keep, new)
        for a, b in zip(merged, merge_active_torch(indices, keep, new)):
            assert torch.equal(a, b)
        out, source, new_slots = merged
        assert torch.equal(out, torch.cat([indices[keep], new]).sort().values)
        assert torch.equal(out[new_slots], new) and torch.all(source[new_slots] == -1)
        values = torch.randn(k, generator=gen, dtype=torch.float64)
        carried = carry_entries(values, source, new_slots)
        assert torch.equal(carried, carry_entries_torch(values, source, new_slots))
        assert torch.equal(carried[source >= 0], values[keep]) and torch.all(carried[new_slots] == 0)
        for a, b in zip(csr_structures(out, n_out, n_in), csr_structures_torch(out, n_out, n_in)):
            assert torch.equal(a, b)
        s = csr_structures(out, n_out, n_in)
        dense = torch.zeros(n_out, n_in, dtype=torch.int64)
        dense.view(-1)[out] = torch.arange(1, out.numel() + 1)
        csr = torch.sparse_csr_tensor(s.crow, s.cols, torch.arange(1, out.numel() + 1), (n_out, n_in),
                                      check_invariants=True)
        assert torch.equal(csr.to_dense(), dense)
        csr_t = torch.sparse_csr_tensor(s.crow_t, s.rows_t, s.perm_t + 1, (n_in, n_out), check_invariants=True)
        assert torch.equal(csr_t.to_dense(), dense.T)
