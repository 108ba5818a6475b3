import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _seed_and_single_thread():
    """Seed, and one torch + one numba thread: the test tensors are tiny, and on a small shared
    machine torch's and numba's OpenMP pools spin against each other (10-50x slower)."""
    import numba

    threads, nthreads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
    numba.set_num_threads(nthreads)


def _dense_grad(matrix):
    """Dense-equivalent gradient dE/dW [n_out, n_in] of a SparseMatrix from theta.grad (zero off the mask)."""
    g = torch.zeros(matrix.n_out * matrix.n_in, dtype=matrix.theta.dtype)
    g[matrix.indices] = matrix.theta.grad * matrix.sign
    return g.view(matrix.n_out, matrix.n_in)


@pytest.fixture
def dense_grad():
    return _dense_grad
