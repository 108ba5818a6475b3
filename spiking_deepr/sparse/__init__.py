"""Sparse connectivity type and sparse-native kernels."""
from .kernels import dense_weight, is_full, sparse_linear
from .matrix import SparseMatrix

__all__ = ["SparseMatrix", "dense_weight", "is_full", "sparse_linear"]
