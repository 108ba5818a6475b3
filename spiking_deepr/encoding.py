"""Input encoders: real-valued features -> binary spikes, for chips without graded spikes (Loihi 1).

The encoder runs inside the model (``ModelConfig.input_encoding``), so the network is trained on
exactly the spikes a neuromorphic chip receives, and the Lava source sends those spikes as binary
events (`NetworkSpec.input_spikes`).

Delta (send-on-delta) modulation, per feature f, with threshold θ > 0 and a reference r = 0 at the
start of every sequence::

    on[t]  = x[t] - r >= θ          off[t] = r - x[t] >= θ
    r     += θ * (on[t] - off[t])

Each feature becomes two channels (ON, OFF): ``[T, B, F] -> [T, B, 2F]`` of 0/1, at most one spike
per channel and step (a fast change is followed as a staircase of one θ per step). Deterministic,
no gradient (it is the input).
"""
from __future__ import annotations

import torch

ENCODINGS = ("none", "delta")


@torch.no_grad()
def delta_encode(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """x [T, B, F] (time-major) -> spikes [T, B, 2F] (x's dtype): ON channels then OFF channels."""
    if not threshold > 0:
        raise ValueError(f"delta_encode: threshold must be > 0, got {threshold}")
    x = x.detach()
    ref = torch.zeros_like(x[0])
    out = torch.empty(x.shape[0], *x.shape[1:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    F = x.shape[-1]
    for t in range(x.shape[0]):
        on = (x[t] - ref) >= threshold
        off = (ref - x[t]) >= threshold
        ref = ref + threshold * (on.to(x.dtype) - off.to(x.dtype))
        out[t, ..., :F] = on
        out[t, ..., F:] = off
    return out


def encoded_features(n_features: int, encoding: str) -> int:
    """Width of the encoded input."""
    return 2 * n_features if encoding == "delta" else n_features
