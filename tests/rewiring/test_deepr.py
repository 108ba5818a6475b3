"""DEEP R optimizer: exact budget, caps, signs, uniform regrowth, noise, SGD equivalence, resume."""
import copy
import math

import pytest
import torch
from scipy import stats

from spiking_deepr.rewiring import DeepR, DeepRAdam
from spiking_deepr.sparse import SparseMatrix


def _random_grads(mats, gen, scale=1.0):
    for m in mats:
        m.theta.grad = torch.randn(m.nnz, generator=gen) * scale


def _snapshot(m):
    return m.indices.clone(), m.theta.detach().clone()


@pytest.mark.parametrize("opt_cls", [DeepR, DeepRAdam])
def test_exact_k_caps_signs_1000_steps_global_budget(opt_cls):
    """The acceptance run: random gradients, a global budget and a fan-in cap, 1,000 steps."""
    a = SparseMatrix(40, 30, connectivity=0.1, fan_in_cap=5, seed=1)
    b = SparseMatrix(30, 30, connectivity=0.2, exclude_diagonal=True, fan_in_cap=8, fan_out_cap=10, seed=2)
    mats = [a, b]
    opt = opt_cls(mats, lr=0.05, temperature=1e-3, l1=1e-2, global_budget=True, seed=0)
    gen = torch.Generator().manual_seed(0)
    budget = a.nnz + b.nnz
    rewired = 0
    for _ in range(1000):
        _random_grads(mats, gen)
        opt.step()
        assert a.nnz + b.nnz == budget
        for m in mats:
            m.check_invariants()  # sorted, unique, caps, theta >= 0, signs equal their positions' signs
        rewired += sum(opt.last_rewired)
    assert rewired > 1000  # connections really moved


def test_exact_k_per_matrix_budget_1000_steps():
    mats = [SparseMatrix(25, 25, connectivity=0.3, exclude_diagonal=True, fan_in_cap=9, seed=s) for s in range(3)]
    opt = DeepR(mats, lr=0.1, temperature=1e-3, l1=1e-2, seed=1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(1000):
        _random_grads(mats, gen)
        opt.step()
        for m in mats:
            assert m.nnz == m.budget
            assert torch.unique(m.indices).numel() == m.nnz
            assert int(m.fan_in().max()) <= 9


def test_signs_never_change_over_regrowth():
    m = SparseMatrix(20, 20, connectivity=0.25, seed=3)
    sign_of = {}
    opt = DeepR([m], lr=0.5, seed=2)
    gen = torch.Generator().manual_seed(2)
    for _ in range(300):
        _random_grads([m], gen)
        opt.step()
        for pos, s in zip(m.indices.tolist(), m.sign.tolist()):
            assert sign_of.setdefault(pos, s) == s
    assert len(sign_of) > 200  # most positions were visited


def test_dormant_entries_are_zero_and_regrown_start_at_zero_without_noise():
    m = SparseMatrix(30, 30, connectivity=0.1, seed=0)
    opt = DeepR([m], lr=0.1, temperature=0.5, seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        before = set(m.indices.tolist())
        _random_grads([m], gen, scale=10.0)
        opt.step()
        new = [k for k, p in enumerate(m.indices.tolist()) if p not in before]
        assert new, "this test needs regrowth"
        assert bool((m.theta.detach()[new] == 0).all())  # no noise, no gradient on the dormant entries
        dense = m.to_dense().reshape(-1)
        dormant = torch.ones(900, dtype=torch.bool)
        dormant[m.indices] = False
        assert bool((dense[dormant] == 0).all())


def test_update_equals_sgd_without_noise_l1_or_crossing():
    m = SparseMatrix(15, 12, connectivity=0.4, seed=1)
    m.set_active(m.indices, torch.full((m.nnz,), 5.0))
    ref = m.theta.detach().clone()
    opt = DeepR([m], lr=0.01, temperature=0.0, l1=0.0)
    sgd_param = torch.nn.Parameter(ref.clone())
    sgd = torch.optim.SGD([sgd_param], lr=0.01)
    gen = torch.Generator().manual_seed(0)
    idx = m.indices.clone()
    for _ in range(50):
        g = torch.randn(m.nnz, generator=gen)
        m.theta.grad = g.clone()
        sgd_param.grad = g.clone()
        opt.step()
        sgd.step()
    assert torch.equal(m.indices, idx)
    torch.testing.assert_close(m.theta.detach(), sgd_param.detach(), rtol=0, atol=1e-6)


def test_l1_is_a_constant_pull():
    m = SparseMatrix(10, 10, nnz=30, seed=0)
    m.set_active(m.indices, torch.full((30,), 1.0))
    opt = DeepR([m], lr=0.1, l1=0.5)
    m.theta.grad = torch.zeros(30)
    opt.step()
    torch.testing.assert_close(m.theta.detach(), torch.full((30,), 1.0 - 0.05))


def test_noise_std_is_sqrt_2_eta_t():
    m = SparseMatrix(100, 100, nnz=5000, seed=0)
    m.set_active(m.indices, torch.full((5000,), 100.0))  # far from zero: nothing crosses
    lr, temp = 0.01, 0.3
    opt = DeepR([m], lr=lr, temperature=temp, seed=4)
    m.theta.grad = torch.zeros(5000)
    opt.step()
    delta = m.theta.detach() - 100.0
    expected = math.sqrt(2 * lr * temp)
    # sample std of 5000 normals: relative standard error ~1 %
    assert delta.std().item() == pytest.approx(expected, rel=0.05)
    assert abs(delta.mean().item()) < 4 * expected / math.sqrt(5000)
    assert stats.normaltest(delta.numpy()).pvalue > 1e-3


def test_regrowth_is_uniform_over_dormant_positions():
    """Force every active entry to cross each step; count where the K new ones land (chi-square)."""
    n, k, steps = 10, 20, 3000
    m = SparseMatrix(n, n, nnz=k, exclude_diagonal=True, seed=0)
    opt = DeepR([m], lr=1.0, seed=5)
    counts = torch.zeros(n * n)
    for _ in range(steps):
        m.theta.grad = torch.full((k,), 1e3)  # theta - 1e3 < 0: all removed, all regrown
        opt.step()
        counts[m.indices] += 1
    diag = torch.arange(n) * n + torch.arange(n)
    assert bool((counts[diag] == 0).all())
    off = torch.ones(n * n, dtype=torch.bool)
    off[diag] = False
    observed = counts[off].numpy()
    assert observed.sum() == k * steps
    assert stats.chisquare(observed).pvalue > 1e-3


def test_regrowth_respects_fan_in_cap_under_pressure():
    m = SparseMatrix(8, 50, nnz=8 * 6, fan_in_cap=6, seed=0)  # saturated: every row at its cap
    opt = DeepR([m], lr=1.0, seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        m.theta.grad = torch.randn(m.nnz, generator=gen) * 3
        opt.step()
        assert torch.equal(m.fan_in(), torch.full((8,), 6))


@pytest.mark.parametrize("opt_cls", [DeepR, DeepRAdam])
@pytest.mark.parametrize("global_budget", [False, True])
def test_state_dict_round_trip_gives_identical_steps(opt_cls, global_budget):
    def make():
        mats = [SparseMatrix(20, 20, connectivity=0.2, seed=1), SparseMatrix(20, 10, connectivity=0.3, seed=2)]
        return mats, opt_cls(mats, lr=0.1, temperature=1e-2, l1=1e-2, global_budget=global_budget, seed=7)

    mats, opt = make()
    gen = torch.Generator().manual_seed(3)
    for _ in range(30):
        _random_grads(mats, gen)
        opt.step()
    saved_models = [copy.deepcopy(m.state_dict()) for m in mats]
    saved_opt = copy.deepcopy(opt.state_dict())
    gen_state = gen.get_state()
    for _ in range(30):
        _random_grads(mats, gen)
        opt.step()
    expected = [_snapshot(m) for m in mats]

    mats2, opt2 = make()
    for m, sd in zip(mats2, saved_models):
        m.load_state_dict(sd)
    opt2.load_state_dict(saved_opt)
    gen.set_state(gen_state)
    for _ in range(30):
        _random_grads(mats2, gen)
        opt2.step()
    for (idx, th), m in zip(expected, mats2):
        assert torch.equal(idx, m.indices)
        assert torch.equal(th, m.theta.detach())


def test_adam_moments_reset_for_regrown_entries():
    m = SparseMatrix(10, 10, nnz=20, seed=0)
    opt = DeepRAdam([m], lr=0.1, seed=0)
    m.theta.grad = torch.randn(20)
    opt.step()
    before = set(m.indices.tolist())
    m.theta.grad = torch.full((20,), 100.0)  # large steps: every entry crosses zero
    opt.step()
    st = opt.state[m.theta]
    new = torch.tensor([p not in before for p in m.indices.tolist()])
    assert bool(new.any())
    assert bool((st["steps"][new] == 0).all()) and bool((st["exp_avg"][new] == 0).all())
    assert st["exp_avg"].shape == (m.nnz,)


def test_regrown_entry_takes_the_first_step_of_a_fresh_adam_parameter():
    """A regrown entry starts at theta = 0 with no Adam history: its next update equals torch Adam's
    first step on a fresh parameter at 0 (size ~lr whatever the entry's predecessors saw), while the
    surviving entries continue their own Adam trajectory."""
    m = SparseMatrix(10, 10, nnz=20, seed=0)
    m.set_active(m.indices, torch.full((20,), 1e-3))
    lr = 0.1
    opt = DeepRAdam([m], lr=1e-6, seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # build up large moments on the first set of entries (tiny lr: nothing crosses)
        m.theta.grad = torch.randn(20, generator=gen) * 100.0
        opt.step()
    opt.param_groups[0]["lr"] = lr
    m.theta.grad = torch.full((20,), 1e4)  # every entry crosses zero and is replaced (a position may
    opt.step()                              # be drawn again: it is then a new entry all the same)
    assert opt.last_rewired == [20] and bool((m.theta.detach() == 0).all())
    st = opt.state[m.theta]
    assert not st["exp_avg"].any() and not st["exp_avg_sq"].any() and not st["steps"].any()
    g = torch.linspace(-1e-3, 2e-3, 20)  # tiny gradients: stale second moments would shrink this step
    g[g == 0] = 1e-4
    g = -g.abs()  # pushes every theta up: nothing crosses, so the positions stay
    fresh = torch.nn.Parameter(torch.zeros(20))
    ref = torch.optim.Adam([fresh], lr=lr)
    m.theta.grad, fresh.grad = g.clone(), g.clone()
    opt.step()
    ref.step()
    torch.testing.assert_close(m.theta.detach(), fresh.detach(), rtol=1e-5, atol=1e-7)
    assert m.theta.detach().min().item() > 0.09  # ~lr: a full-size first step


def test_noise_follows_the_scheduled_learning_rate():
    """Under an lr schedule the noise std is sqrt(2 * eta_t * T) with the step's own eta_t."""
    m = SparseMatrix(100, 100, nnz=5000, seed=0)
    m.set_active(m.indices, torch.full((5000,), 100.0))
    temp = 0.3
    opt = DeepR([m], lr=0.01, temperature=temp, seed=4)
    for lr in (0.01, 0.0025):
        for group in opt.param_groups:
            group["lr"] = lr
        start = m.theta.detach().clone()
        m.theta.grad = torch.zeros(5000)
        opt.step()
        delta = m.theta.detach() - start
        assert delta.std().item() == pytest.approx(math.sqrt(2 * lr * temp), rel=0.05)


def test_adam_matches_torch_adam_without_crossing():
    m = SparseMatrix(12, 12, nnz=40, seed=0)
    m.set_active(m.indices, torch.full((40,), 50.0))
    p = torch.nn.Parameter(m.theta.detach().clone())
    opt, ref = DeepRAdam([m], lr=0.01), torch.optim.Adam([p], lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        g = torch.randn(40, generator=gen)
        m.theta.grad, p.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(m.theta.detach(), p.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=0.0), "invalid learning rate"),
        (dict(lr=0.1, temperature=-1.0), "invalid temperature"),
        (dict(lr=0.1, l1=-0.1), "invalid l1"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepR([SparseMatrix(4, 4, nnz=3)], **kwargs)


def test_bad_inputs():
    with pytest.raises(TypeError, match="rewires SparseMatrix"):
        DeepR([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="empty list"):
        DeepR([], lr=0.1)
    m = SparseMatrix(10, 10, nnz=20, seed=0)
    opt = DeepRAdam([m], lr=0.1)
    m.theta.grad = torch.randn(20)
    opt.step()
    sd = opt.state_dict()
    small = SparseMatrix(10, 10, nnz=10, seed=0)
    with pytest.raises(ValueError, match="has 20 entries but the matrix has 10"):
        DeepRAdam([small], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="missing key"):
        DeepR([m], lr=0.1).load_state_dict(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1).state_dict())
