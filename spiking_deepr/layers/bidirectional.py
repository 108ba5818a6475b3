"""Bidirectional wrapper for recurrent layers (offline / training use only).

Output: ``cat([forward(x), reverse(backward(reverse(x)))], -1)`` [T, B, H_f + H_b]. With ``lengths``
each sequence b is reversed over its own valid steps ``0 .. lengths[b]-1`` only, so the backward
layer starts at the last *valid* frame and padding never enters its state; both halves are zero at
padded steps t >= lengths[b].

A backward-in-time pass needs the whole sequence before it can emit its first output, so it cannot
run online on neuromorphic hardware: Lava conversion (``SequenceModel.to_spec()``) supports
unidirectional models only and raises for bidirectional ones.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._common import check_lengths, time_mask

__all__ = ["Bidirectional", "reverse_padded"]


def reverse_padded(x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Reverse x [T, B, ...] in time, per sequence within its length (padding stays in place)."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(1)
    L = lengths.to(x.device).unsqueeze(0)
    idx = torch.where(t < L, L - 1 - t, t)  # [T, B]; an involution
    idx = idx.view(T, B, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


class Bidirectional(nn.Module):
    """Runs ``forward_layer`` on x and ``backward_layer`` on the per-sequence time reversal of x.

    Both layers map [T, B, F] -> ([T, B, H], state) (e.g. SparseLSTM, SparseALIFRecurrent).
    """

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module) -> None:
        super().__init__()
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """x [T, B, F], lengths int [B] or None -> (out [T, B, H_f + H_b], (state_f, state_b))."""
        if x.dim() != 3:
            raise ValueError(f"Bidirectional: expected time-major input [T, B, F], got shape {tuple(x.shape)}")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], "Bidirectional")
        out_f, state_f = self.forward_layer(x)
        out_b, state_b = self.backward_layer(reverse_padded(x, lengths))
        out_b = reverse_padded(out_b, lengths)
        out = torch.cat([out_f, out_b], dim=-1)
        if lengths is not None:
            out = out * time_mask(lengths, x.shape[0], out.dtype, out.device).unsqueeze(-1)
        return out, (state_f, state_b)
