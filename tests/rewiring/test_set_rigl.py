"""SET and RigL: exact K with caps and global budgets, RigL growth = top dense gradient (brute force),
chunked gradient memory, cosine schedule, bit-exact resume."""
import copy
import math

import pytest
import torch

from spiking_deepr.rewiring import SET, RigL
from spiking_deepr.sparse import SparseMatrix, sparse_linear


def _structure_ok(m):
    """Sorted, unique, admissible, within caps (theta may have either sign under SET / RigL)."""
    idx = m.indices
    assert bool((idx[1:] > idx[:-1]).all())
    if m.exclude_diagonal:
        assert not bool((m.rows == m.cols).any())
    if m.fan_in_cap is not None:
        assert int(m.fan_in().max()) <= m.fan_in_cap
    if m.fan_out_cap is not None:
        assert int(m.fan_out().max()) <= m.fan_out_cap
    assert torch.equal(m.sign, m.signs_at(idx).to(m.sign.dtype))


class _Net:
    """h = tanh(x W1ᵀ), y = h W2ᵀ, squared error: a loss whose dense gradients a dense copy reproduces."""

    def __init__(self, w1, w2, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.w1, self.w2 = w1, w2
        self.x = torch.randn(16, w1.n_in, generator=gen)
        self.target = torch.randn(16, w2.n_out, generator=gen)

    def loss(self):
        return ((sparse_linear(torch.tanh(sparse_linear(self.x, self.w1)), self.w2) - self.target) ** 2).mean()

    def dense_grads(self, d1, d2):
        d1, d2 = d1.clone().requires_grad_(), d2.clone().requires_grad_()
        loss = ((torch.tanh(self.x @ d1.T) @ d2.T - self.target) ** 2).mean()
        return torch.autograd.grad(loss, [d1, d2])

    def backward(self):
        for m in (self.w1, self.w2):
            m.theta.grad = None
        self.loss().backward()


def _mats(caps=True):
    kw1 = dict(fan_in_cap=4) if caps else {}
    kw2 = dict(fan_in_cap=5, fan_out_cap=4) if caps else {}
    return (SparseMatrix(20, 12, connectivity=0.15, seed=1, **kw1),
            SparseMatrix(9, 20, connectivity=0.2, seed=2, **kw2))


@pytest.mark.parametrize("cls", [SET, RigL])
@pytest.mark.parametrize("global_budget", [False, True])
def test_exact_k_with_caps_every_step(cls, global_budget):
    w1, w2 = _mats()
    net = _Net(w1, w2)
    opt = cls([w1, w2], lr=0.05, drop_fraction=0.3, update_every=2, global_budget=global_budget, seed=0)
    budget = (w1.nnz, w2.nnz)
    moved = 0
    for _ in range(30):
        net.backward()
        opt.step(net.loss) if cls is RigL else opt.step()
        if global_budget:
            assert w1.nnz + w2.nnz == sum(budget)
        else:
            assert (w1.nnz, w2.nnz) == budget
        for m in (w1, w2):
            _structure_ok(m)
        moved += sum(opt.last_rewired)
    assert moved >= 15 * 0.3 * sum(budget) * 0.8  # every update replaced ~30 % of the entries


def test_rigl_grows_at_the_largest_dense_gradients_brute_force():
    w1, w2 = _mats(caps=False)
    net = _Net(w1, w2, seed=3)
    opt = RigL([w1, w2], lr=0.01, drop_fraction=0.25, update_every=1, chunk_size=7, seed=0)
    # a zero gradient leaves Adam's step at exactly 0, so the update acts on the current weights
    before = [(m.indices.clone(), m.weight_values().detach().clone()) for m in (w1, w2)]
    drops = [round(0.25 * m.nnz) for m in (w1, w2)]
    kept, dense = [], []
    for (idx, w), n, m in zip(before, drops, (w1, w2)):
        order = torch.sort(w.abs(), stable=True).indices
        keep = torch.ones(idx.numel(), dtype=torch.bool)
        keep[order[:n]] = False
        kept.append(idx[keep])
        d = torch.zeros(m.n_out * m.n_in)
        d[idx[keep]] = w[keep]
        dense.append(d.view(m.n_out, m.n_in))
    grads = net.dense_grads(*dense)
    for m in (w1, w2):
        m.theta.grad = torch.zeros(m.nnz)
    opt.step(net.loss)
    for m, k, g, n in zip((w1, w2), kept, grads, drops):
        score = g.abs().reshape(-1).clone()
        score[k] = -1.0  # active after the drop: not a candidate
        expected = set(torch.topk(score, n).indices.tolist())
        new = set(m.indices.tolist()) - set(k.tolist())
        assert new == expected
        assert set(k.tolist()) <= set(m.indices.tolist())


def test_rigl_chunked_gradient_memory_is_bounded_and_exact():
    results = {}
    for chunk in (5, 1 << 20):
        w1, w2 = _mats(caps=False)
        net = _Net(w1, w2, seed=4)
        opt = RigL([w1, w2], lr=0.01, drop_fraction=0.3, update_every=1, chunk_size=chunk, seed=0)
        peak = [0]
        for m in (w1, w2):
            original = m.rewire

            def recording(keep, new, _original=original):
                peak[0] = max(peak[0], new.numel())
                return _original(keep, new)
            m.rewire = recording
        net.backward()
        opt.step(net.loss)
        results[chunk] = ([m.indices.clone() for m in (w1, w2)], peak[0])
    (small_idx, small_peak), (big_idx, big_peak) = results[5], results[1 << 20]
    assert small_peak <= 5 + round(0.3 * 36)  # a probe chunk, or the final growth of one matrix
    assert big_peak > 100  # the whole dormant set probed at once
    for a, b in zip(small_idx, big_idx):
        assert torch.equal(a, b)


def test_rigl_needs_a_closure_on_update_steps():
    w1, w2 = _mats()
    opt = RigL([w1, w2], lr=0.01, update_every=2)
    for m in (w1, w2):
        m.theta.grad = torch.zeros(m.nnz)
    opt.step()  # no update: no closure needed
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()


def test_cosine_schedule_and_constant_set():
    m = SparseMatrix(10, 10, nnz=30)
    opt = SET([m], drop_fraction=0.4, decay_steps=100)
    assert opt.fraction(0) == pytest.approx(0.4)
    assert opt.fraction(50) == pytest.approx(0.2)
    assert opt.fraction(25) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)))
    assert opt.fraction(100) == 0.0 and opt.fraction(150) == 0.0
    assert SET([m], drop_fraction=0.4).fraction(10_000) == 0.4


def test_set_drops_the_smallest_magnitudes_and_grows_uniformly_at_zero():
    m = SparseMatrix(30, 30, nnz=100, seed=0)
    opt = SET([m], lr=0.01, drop_fraction=0.2, update_every=1, seed=1)
    w = m.weight_values().detach()
    smallest = set(m.indices[torch.sort(w.abs()).indices[:20]].tolist())
    old = set(m.indices.tolist())
    m.theta.grad = torch.zeros(100)
    opt.step()
    now = set(m.indices.tolist())
    assert (old - now) <= smallest and len(old - now) >= 20 - len(now & smallest - (old - smallest))
    new = torch.tensor([p not in old for p in m.indices.tolist()])
    assert int(new.sum()) == len(now - old) and bool((m.theta.detach()[new] == 0).all())
    assert opt.state[m.theta]["exp_avg"].shape == (100,)


@pytest.mark.parametrize("cls", [SET, RigL])
def test_state_dict_resume_is_bit_exact(cls):
    def make():
        w1, w2 = _mats()
        return _Net(w1, w2), cls([w1, w2], lr=0.05, update_every=3, decay_steps=40, global_budget=True, seed=5)

    def run(net, opt, n):
        for _ in range(n):
            net.backward()
            opt.step(net.loss) if cls is RigL else opt.step()

    net, opt = make()
    run(net, opt, 10)
    saved = [copy.deepcopy(m.state_dict()) for m in (net.w1, net.w2)], copy.deepcopy(opt.state_dict())
    run(net, opt, 20)
    expected = [(m.indices.clone(), m.theta.detach().clone()) for m in (net.w1, net.w2)]
    net2, opt2 = make()
    for m, sd in zip((net2.w1, net2.w2), saved[0]):
        m.load_state_dict(sd)
    opt2.load_state_dict(saved[1])
    run(net2, opt2, 20)
    for (idx, th), m in zip(expected, (net2.w1, net2.w2)):
        assert torch.equal(idx, m.indices) and torch.equal(th, m.theta.detach())
