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
