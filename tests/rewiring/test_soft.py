"""soft-DEEP R: theta_min formula, stationary connectivity, dense memory baseline."""
import pytest
import torch

from spiking_deepr.rewiring import SoftDeepR, soft_deepr_theta_min
from spiking_deepr.sparse import SparseMatrix


def test_theta_min_formula():
    assert soft_deepr_theta_min(1e-3, 1e-2, 0.1) == pytest.approx(-1e-3 * 0.9 / (1e-2 * 0.1))
    with pytest.raises(ValueError, match="temperature > 0"):
        soft_deepr_theta_min(0.0, 1e-2, 0.1)


def test_connectivity_fluctuates_around_target_without_gradient():
    # With no data term the stationary law is the prior: P(active) = p0.
    m = SparseMatrix(60, 60, connectivity=0.1, seed=0)
    opt = SoftDeepR([m], lr=0.05, temperature=0.02, l1=0.1, connectivity=0.1, seed=1)
    history = []
    for step in range(3000):
        m.theta.grad = torch.zeros(m.nnz)
        opt.step()
        m.check_invariants()
        if step >= 1500:
            history.append(m.nnz / 3600)
    assert sum(history) / len(history) == pytest.approx(0.1, rel=0.15)


def test_rejects_caps():
    with pytest.raises(ValueError, match="cannot enforce fan-in"):
        SoftDeepR([SparseMatrix(10, 10, nnz=20, fan_in_cap=5)], lr=0.1, temperature=0.1, l1=0.1, connectivity=0.2)


def test_adam_variant_follows_the_gradient_and_keeps_dormant_floor():
    m = SparseMatrix(20, 20, connectivity=0.2, seed=0)
    opt = SoftDeepR([m], lr=0.05, temperature=1e-4, l1=1e-3, connectivity=0.2, adam=True, seed=1)
    before = m.to_dense().clone()
    for _ in range(20):
        m.theta.grad = -torch.ones(m.nnz)  # every active magnitude should grow
        opt.step()
    grown = m.to_dense().abs().sum()
    assert grown > before.abs().sum()
    dense = opt.state[m.theta]["dense_theta"]
    assert float(dense.min()) == pytest.approx(opt.param_groups[0]["theta_min"]) or float(dense.min()) > opt.param_groups[0]["theta_min"]


def test_connectivity_control_holds_the_target_against_a_data_pull():
    """A gradient that holds every active connection up: uncontrolled, reconnections pile up; the
    controller raises alpha and |theta_min| until the count is back at the target."""
    final = {}
    for control in (False, True):
        m = SparseMatrix(50, 50, connectivity=0.05, seed=0)
        opt = SoftDeepR([m], lr=0.01, temperature=1e-3, l1=1e-2, connectivity=0.05, control=control, seed=1)
        for _ in range(400):
            m.theta.grad = torch.full((m.nnz,), -0.05)
            opt.step()
        final[control] = m.nnz / 2500
    assert final[False] > 0.05 * 1.5
    assert final[True] == pytest.approx(0.05, rel=0.1)


def test_control_state_round_trip():
    m = SparseMatrix(20, 20, connectivity=0.1, seed=0)
    opt = SoftDeepR([m], lr=0.05, temperature=1e-3, l1=1e-2, connectivity=0.1, control=True, seed=1)
    for _ in range(5):
        m.theta.grad = -torch.ones(m.nnz)
        opt.step()
    sd = opt.state_dict()
    assert sd["log_pressure"] == opt.log_pressure != 0.0
    other = SoftDeepR([m], lr=0.05, temperature=1e-3, l1=1e-2, connectivity=0.1, control=True, seed=1)
    other.load_state_dict(sd)
    assert other.log_pressure == opt.log_pressure
