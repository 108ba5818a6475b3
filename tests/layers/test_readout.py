import pytest
import torch
from norse.torch.functional.leaky_integrator import LIParameters, LIState, li_step
from norse.torch.module.leaky_integrator import LILinearCell

from spiking_deepr.layers import LinearReadout, LIReadout

D = torch.float64


@pytest.mark.parametrize("connectivity", [1.0, 0.4, None])
def test_li_readout_matches_norse(connectivity):
    F, C, T, B = 6, 3, 15, 2
    ro = LIReadout(F, C, connectivity=connectivity, tau_syn_inv=150.0, tau_mem_inv=80.0, v_leak=0.25,
                   seed=2).double()
    with torch.no_grad():
        ro.bias.copy_(torch.randn(C))
    p = LIParameters(torch.tensor(150.0, dtype=D), torch.tensor(80.0, dtype=D), torch.tensor(0.25, dtype=D))
    cell = LILinearCell(F, C, p=p).double()
    with torch.no_grad():
        cell.input_weights.copy_(ro.dense_weight())
    h = torch.rand(T, B, F, dtype=D, requires_grad=True)
    y = ro(h)
    state, outs, outs_fn = None, [], []
    state_fn = LIState(torch.full((B, C), 0.25, dtype=D), torch.zeros(B, C, dtype=D))
    for t in range(T):
        v, state = cell(h[t], state)
        outs.append(v)
        v2, state_fn = li_step(h[t], state_fn, cell.input_weights, p, 0.001)
        outs_fn.append(v2)
    torch.testing.assert_close(y, torch.stack(outs) + ro.bias, atol=1e-12, rtol=0)
    torch.testing.assert_close(y, torch.stack(outs_fn) + ro.bias, atol=1e-12, rtol=0)
    (y ** 2).sum().backward()
    assert (ro.w is None) == (connectivity is None)
    if ro.w is not None:
        assert ro.w.theta.grad.shape == (ro.w.nnz,)


def test_linear_readout():
    ro = LinearReadout(5, 4, connectivity=0.5)
    h = torch.rand(3, 2, 5)
    expected = torch.nn.functional.linear(h, ro.dense_weight(), ro.bias)
    torch.testing.assert_close(ro(h), expected)
    dense = LinearReadout(5, 4, connectivity=None)
    assert dense.w is None and dense(h).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="time-major"):
        ro(torch.rand(2, 5))
