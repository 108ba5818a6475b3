"""Shared pieces of the recurrent layers: input checks, matrix construction, recurrent products."""
from __future__ import annotations

from typing import Optional

import torch

from ..sparse import SparseMatrix, sparse_linear


def check_time_major(x: torch.Tensor, n_features: int, who: str) -> None:
    """Raise a clear ValueError unless ``x`` is a time-major [T, B, F] tensor with F = n_features."""
    if not torch.is_tensor(x):
        raise TypeError(f"{who}: expected a torch.Tensor [T, B, {n_features}], got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"{who}: expected time-major input [T, B, F] (3 dimensions: time, batch, features), "
            f"got shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(1) for one sequence"
        )
    if x.shape[-1] != n_features:
        raise ValueError(
            f"{who}: input has {x.shape[-1]} features in its last dimension but the layer was built "
            f"for {n_features} (input shape {tuple(x.shape)}, layout [T, B, F])"
        )


def build_matrix(n_out: int, n_in: int, matrix: Optional[SparseMatrix], *, connectivity: float,
                 exclude_diagonal: bool = False, fan_in_cap: Optional[int] = None,
                 presynaptic_sign: Optional[torch.Tensor] = None, init_std: Optional[float] = None,
                 seed: int = 0, who: str = "") -> SparseMatrix:
    """Use ``matrix`` if given (checking its shape) or build a new SparseMatrix."""
    if matrix is not None:
        if not isinstance(matrix, SparseMatrix):
            raise TypeError(f"{who}: expected a SparseMatrix, got {type(matrix).__name__}")
        if matrix.shape != (n_out, n_in):
            raise ValueError(f"{who}: matrix has shape {matrix.shape}, expected {(n_out, n_in)}")
        return matrix
    return SparseMatrix(n_out, n_in, connectivity=connectivity, exclude_diagonal=exclude_diagonal,
                        fan_in_cap=fan_in_cap, presynaptic_sign=presynaptic_sign, init_std=init_std,
                        seed=seed)


def recurrent_input(z: torch.Tensor, w_rec: Optional[SparseMatrix]) -> Optional[torch.Tensor]:
    """W_rec z (sparse product) or None when there is no recurrent matrix."""
    return None if w_rec is None else sparse_linear(z, w_rec)


def masked_mean_rate(z: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-neuron mean of z [T, B, N] over time and batch, ignoring steps t >= lengths[b]. -> [N]."""
    if lengths is None:
        return z.mean(dim=(0, 1))
    mask = time_mask(lengths, z.shape[0], z.dtype, z.device)  # [T, B]
    return (z * mask.unsqueeze(-1)).sum(dim=(0, 1)) / mask.sum().clamp(min=1)


def time_mask(lengths: torch.Tensor, T: int, dtype, device) -> torch.Tensor:
    """[T, B] mask, 1 where t < lengths[b]."""
    steps = torch.arange(T, device=device).unsqueeze(1)
    return (steps < lengths.to(device).unsqueeze(0)).to(dtype)


def check_lengths(lengths: Optional[torch.Tensor], T: int, B: int, who: str) -> Optional[torch.Tensor]:
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    if lengths.shape != (B,):
        raise ValueError(f"{who}: lengths must have shape [B] = [{B}], got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"{who}: lengths must lie in [0, T={T}], got min {int(lengths.min())}, "
                         f"max {int(lengths.max())}")
    return lengths
