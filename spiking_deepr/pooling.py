"""Sequence classification from a frame-wise readout: pool the logits over each sequence's valid frames.

A :class:`~spiking_deepr.model.SequenceModel` emits logits for every frame, ``[T, B, C]``. When a task has
one label per sequence, the trainer's sequence-level loss (cross entropy on the pooled logits) and the
sequence accuracy reported by training, ``sdr evaluate`` and ``sdr simulate`` all pool the same way:

* ``mean``: the average over the valid frames ``t < length``;
* ``last``: the last valid frame (what a leaky-integrator readout accumulates towards);
* ``max``:  per class, the largest logit over the valid frames.

Frames beyond a sequence's length (batch padding) never enter the pool.
"""
from __future__ import annotations

import torch

POOLINGS = ("mean", "last", "max")


def valid_frames(lengths: torch.Tensor, n_steps: int) -> torch.Tensor:
    """bool [T, B]: True where frame ``t`` lies within sequence ``b`` (``t < lengths[b]``)."""
    return torch.arange(n_steps, device=lengths.device)[:, None] < lengths[None, :]


def pool_logits(logits: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    """logits [T, B, C], lengths int [B] (1 <= length <= T) -> pooled logits [B, C] (``how`` in POOLINGS)."""
    if how not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")
    lengths = lengths.to(logits.device)
    if how == "last":
        return logits[lengths - 1, torch.arange(logits.shape[1], device=logits.device)]
    mask = valid_frames(lengths, logits.shape[0]).unsqueeze(-1)  # [T, B, 1]
    if how == "mean":
        return (logits * mask).sum(0) / lengths.unsqueeze(-1).to(logits.dtype)
    return logits.masked_fill(~mask, float("-inf")).amax(0)
