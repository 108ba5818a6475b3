"""optim.sparse_lr_scale=init: each sparse matrix's magnitudes step with lr / sqrt(p) (p its connectivity
at initialisation), the dense parameters with lr, under the lr schedule; checked against the hand-computed
first Adam step, lr_m * g / (|g| + eps), for fixed, DEEP R and SET."""
import math

import pytest
import torch

from spiking_deepr.config import load_config
from spiking_deepr import train as train_module
from spiking_deepr.schedule import set_lr

BASE = ["task=smoke", "task.size=tiny", "model=lif", "model.hidden=[24]", "rewiring.connectivity=0.05",
        "rewiring.l1=0", "rewiring.temperature=0", "optim.lr=1e-3"]


def _first_step(algorithm: str, mode: str, factor: float):
    cfg = load_config([*BASE, f"rewiring.algorithm={algorithm}", f"optim.sparse_lr_scale={mode}"])
    task = train_module.build_run_task(cfg)
    model = train_module.build_model(cfg, task)
    opts = train_module.build_optimizers(cfg, model)
    mats = list(model.sparse_matrices().values())
    gen = torch.Generator().manual_seed(3)
    before = []
    for m in mats:
        m.theta.grad = torch.randn(m.nnz, generator=gen)
        before.append((m.indices.clone(), m.theta.detach().clone(), m.theta.grad.clone()))
    dense = [p for p in model.dense_parameters()]
    for p in dense:
        p.grad = torch.ones_like(p)
    dense_before = [p.detach().clone() for p in dense]
    set_lr(opts.all(), cfg.optim.lr * factor)  # as the training loop does with the schedule's factor
    for opt in opts.all():
        opt.step()
    return cfg, mats, before, dense, dense_before


@pytest.mark.parametrize("algorithm", ["fixed", "deepr", "set"])
@pytest.mark.parametrize("mode", ["none", "init"])
def test_first_step_follows_initial_scale(algorithm, mode):
    factor = 0.5  # a schedule position: the scale multiplies the scheduled lr
    cfg, mats, before, dense, dense_before = _first_step(algorithm, mode, factor)
    lr = cfg.optim.lr * factor
    eps = 1e-8  # Adam's default, used by every sparse optimizer here
    scales = []
    for m, (idx, theta, grad) in zip(mats, before):
        p = idx.numel() / (m.n_out * m.n_in)  # connectivity at initialisation, measured independently
        scale = 1.0 / math.sqrt(p) if mode == "init" else 1.0
        scales.append(scale)
        expected = theta - lr * scale * grad / (grad.abs() + eps)  # first Adam step: bias corrections cancel
        # entries that survived (DEEP R removes those that crossed zero) are compared by position
        after = dict(zip(m.indices.tolist(), m.theta.detach().tolist()))
        kept = [k for k, i in enumerate(idx.tolist()) if i in after]
        assert len(kept) > 0.9 * idx.numel()
        got = torch.tensor([after[idx[k].item()] for k in kept])
        torch.testing.assert_close(got, expected[kept], rtol=0, atol=1e-6)
    if mode == "init":
        assert min(scales) > 3  # 5 % connectivity: lr x ~4.5, not a no-op
    for p, p0 in zip(dense, dense_before):  # dense parameters keep the plain lr
        torch.testing.assert_close(p.detach(), p0 - lr * torch.ones_like(p0), rtol=0, atol=1e-6)
