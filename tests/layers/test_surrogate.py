import pytest
import torch
from norse.torch.functional.threshold import threshold

from spiking_deepr.layers.surrogate import BELLEC_DAMPENING, bellec_fn, spike_fn


def test_bellec_forward_and_gradient_against_hand_formula():
    x = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    for scale in (1.0, 0.5, 2.0):
        z = bellec_fn(x, scale)
        assert torch.equal(z.detach(), (x > 0).double())
        (g,) = torch.autograd.grad(z.sum(), x)
        hand = torch.tensor([BELLEC_DAMPENING * max(0.0, 1 - abs(v) / scale) for v in x.tolist()], dtype=torch.float64)
        torch.testing.assert_close(g, hand, atol=1e-12, rtol=0)


def test_bellec_equals_norse_triangle_at_unit_scale():
    x = torch.randn(100, requires_grad=True)
    (g1,) = torch.autograd.grad(spike_fn(x, "bellec", 1.0).sum(), x)
    (g2,) = torch.autograd.grad(threshold(x, "triangle", 0.3).sum(), x)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("method", ["super", "tanh", "triangle", "circ", "heavi_erfc"])
def test_norse_methods_pass_through(method):
    x = torch.randn(50, requires_grad=True)
    (g1,) = torch.autograd.grad(spike_fn(x, method, 2.0).sum(), x)
    (g2,) = torch.autograd.grad(threshold(x, method, 2.0).sum(), x)
    torch.testing.assert_close(g1, g2)
    with pytest.raises(ValueError):
        spike_fn(x, "nope", 1.0)


def test_lsnn_official_pseudo_derivative_against_hand_formula():
    """LSNN-official (lsnn/spiking_models.py): z = SpikeFunction((v - A) / A, 0.3) with
    dz/dx = 0.3 max(0, 1 - |x|), differentiated through v and through the adaptive threshold A."""
    from spiking_deepr.layers import threshold_spike

    v = torch.linspace(-1.0, 4.0, 41, dtype=torch.float64, requires_grad=True)
    A = torch.full((41,), 1.6, dtype=torch.float64).requires_grad_()
    z = threshold_spike(v, A, "lsnn", 0.3)
    assert torch.equal(z.detach(), (v > A).double())
    gv, gA = torch.autograd.grad(z.sum(), [v, A])
    x = (v - A) / A
    pseudo = 0.3 * torch.clamp(1 - x.abs(), min=0)
    torch.testing.assert_close(gv, pseudo / A, atol=1e-12, rtol=0)
    torch.testing.assert_close(gA, -pseudo * v / A ** 2, atol=1e-12, rtol=0)
    assert gv.abs().sum() > 0 and gA.abs().sum() > 0
