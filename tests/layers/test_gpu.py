"""The sparse layers on a CUDA device (torch sparse kernels: CSR matmul and sampled_addmm, the step
path; torch's LSTM for full matrices) give the CPU results. Skipped without a GPU."""
import pytest
import torch
from norse.torch.functional.lif import LIFParameters

from spiking_deepr.layers import SparseALIFRecurrent, SparseLIFRecurrent, SparseLSTM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _layers():
    p = LIFParameters(v_th=torch.as_tensor(0.3), method="super")
    common = dict(input_connectivity=0.5, recurrent_connectivity=0.3, input_init_std=2.0, seed=1)
    return [SparseLIFRecurrent(6, 20, p, **common), SparseALIFRecurrent(6, 14, 6, p, **common),
            SparseLSTM(6, 9, input_connectivity=0.5, recurrent_connectivity=0.3, seed=1),
            SparseLSTM(6, 9, budget="per_gate", input_connectivity=0.5, recurrent_connectivity=0.3, seed=1),
            SparseLSTM(6, 9, seed=1)]  # full matrices: torch's LSTM (cuDNN)


@pytest.mark.parametrize("index", range(5))
def test_layer_on_gpu_equals_cpu(index):
    cpu = _layers()[index].double()
    gen = torch.Generator().manual_seed(index)
    x = (torch.rand(25, 3, 6, generator=gen, dtype=torch.float64) < 0.5).double()
    outs = []
    for device in ("cpu", "cuda"):
        layer = cpu.to(device)  # the same module moved: its cached CSR structure must follow
        xd = x.to(device).requires_grad_()
        out, _ = layer(xd)
        weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=device).view_as(out)
        params = [p for p in layer.parameters() if p.requires_grad]
        grads = torch.autograd.grad((out * weights).sum(), [xd, *params])
        outs.append([out.detach().cpu()] + [g.cpu() for g in grads])
    assert outs[0][0].abs().sum() > 0
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
