"""Sparse connectivity type and sparse-native kernels."""
from .kernels import sparse_linear
from .matrix import SparseMatrix

__all__ = ["SparseMatrix", "sparse_linear"]
