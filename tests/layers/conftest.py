import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _dense_grad(matrix):
    """Dense-equivalent gradient dE/dW [n_out, n_in] of a SparseMatrix from theta.grad (zero off the mask)."""
    g = torch.zeros(matrix.n_out * matrix.n_in, dtype=matrix.theta.dtype)
    g[matrix.indices] = matrix.theta.grad * matrix.sign
    return g.view(matrix.n_out, matrix.n_in)


@pytest.fixture
def dense_grad():
    return _dense_grad
