r"""Spike functions with surrogate gradients.

Forward, every method is Norse's Heaviside step :math:`z = H(x) = [x > 0]` (strictly greater), with
:math:`x = v - \vartheta` the distance of the membrane voltage from the threshold. Backward, the
derivative :math:`\partial z/\partial x` is replaced by a pseudo-derivative chosen by ``method``:

- every method of :func:`norse.torch.functional.threshold.threshold` (``"super"``, ``"tanh"``,
  ``"triangle"``, ``"circ"``, ``"heavi_erfc"``, ``"heaviside"``) is passed straight to Norse,
  with Norse's meaning of ``alpha``. Note that Norse 1.1.0's SuperSpike backward pass is
  :math:`1/(|x| + 1)^2` — it ignores ``alpha`` — and ``"heaviside"`` has no surrogate (no gradient
  through the spikes); this library follows Norse exactly (the fused kernels of
  :mod:`~spiking_deepr.layers.recurrence` evaluate the same formulas);
- ``"bellec"``: the piecewise-linear pseudo-derivative of Bellec et al. 2018 (LSNN / DEEP R),

  .. math::
      \frac{\partial z}{\partial x} \approx \gamma \max\left(0,\ 1 - \frac{|x|}{s}\right),
      \qquad \gamma = 0.3 \text{ (dampening)}, \quad s = \alpha \text{ (thr\_scale, voltage units)}.

  With ``alpha = 1`` it equals Norse's ``"triangle"`` with ``alpha = 0.3``. (The authors' code
  applies the triangle to :math:`(v-\vartheta)/\vartheta`, i.e. :math:`s=\vartheta` and an extra
  factor :math:`1/\vartheta` from the chain rule; with :math:`\vartheta = 1` the two agree.)
- ``"lsnn"``: the pseudo-derivative of LSNN-official (Bellec et al. 2018,
  ``lsnn/spiking_models.py``: ``LIF.LIF_dynamic`` and ``SpikeFunction``): the spike function is
  applied to the voltage *scaled by the adaptive threshold* :math:`A = v_{\text{th}} + \beta b`,

  .. math::
      z = H(x_s), \quad x_s = \frac{v - A}{A}, \qquad
      \frac{\partial z}{\partial x_s} \approx \gamma \max(0,\ 1 - |x_s|), \quad \gamma = \alpha = 0.3,

  and autograd carries the gradient through both :math:`v` and :math:`A` (numerator and
  denominator): :math:`\partial z/\partial v = \gamma\max(0, 1-|x_s|)/A`,
  :math:`\partial z/\partial A = -\gamma\max(0, 1-|x_s|)\, v/A^2`. It needs :math:`A > 0`.
  Use :func:`threshold_spike`, which forms :math:`x_s` for this method (every other method gets
  :math:`v - A`).

:data:`DEFAULT_ALPHA` gives a sensible ``alpha`` per method when a configuration leaves it open.
"""
from __future__ import annotations

from typing import Union

import torch
from norse.torch.functional.threshold import threshold as _norse_threshold

#: Dampening factor gamma of the Bellec et al. (2018) pseudo-derivative.
BELLEC_DAMPENING = 0.3

#: Methods accepted by :func:`spike_fn` (Norse's plus ``"bellec"`` and ``"lsnn"``).
METHODS = ("super", "tanh", "triangle", "circ", "heavi_erfc", "heaviside", "bellec", "lsnn")

#: Methods whose spike function takes the voltage scaled by the threshold, (v - A) / A.
SCALED_METHODS = ("lsnn",)

#: Default ``alpha`` per method (Norse's defaults; the triangle height 0.3 of Bellec et al.;
#: thr_scale 1 for "bellec"; the dampening factor 0.3 for "lsnn").
DEFAULT_ALPHA = {"super": 100.0, "tanh": 100.0, "triangle": 0.3, "circ": 1.0, "heavi_erfc": 1.0,
                 "heaviside": 1.0, "bellec": 1.0, "lsnn": BELLEC_DAMPENING}


class BellecSpike(torch.autograd.Function):
    r"""Heaviside forward, :math:`\gamma\max(0, 1 - |x|/s)` backward (Bellec et al. 2018)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, thr_scale, dampening: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.thr_scale, ctx.dampening = thr_scale, dampening
        return torch.gt(x, 0.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_z):
        (x,) = ctx.saved_tensors
        pseudo = torch.relu(1.0 - x.abs() / ctx.thr_scale).mul_(ctx.dampening)
        return grad_z * pseudo, None, None


def bellec_fn(x: torch.Tensor, thr_scale: Union[float, torch.Tensor] = 1.0,
              dampening: float = BELLEC_DAMPENING) -> torch.Tensor:
    """Spike function with the Bellec et al. (2018) piecewise-linear pseudo-derivative."""
    return BellecSpike.apply(x, thr_scale, dampening)


def spike_fn(x: torch.Tensor, method: str, alpha) -> torch.Tensor:
    """``z = H(x)`` with the surrogate gradient ``method`` (see module docstring); for ``"lsnn"``
    ``x`` is the scaled voltage (v - A) / A and ``alpha`` the dampening factor."""
    if method == "bellec":
        return bellec_fn(x, alpha)
    if method == "lsnn":
        return bellec_fn(x, 1.0, alpha)
    return _norse_threshold(x, method, alpha)


def threshold_spike(v: torch.Tensor, threshold: torch.Tensor, method: str, alpha) -> torch.Tensor:
    """Spikes ``z = H(v - threshold)`` [B, N] with the surrogate ``method``: the argument is
    ``(v - threshold) / threshold`` for the scaled methods (``"lsnn"``), else ``v - threshold``."""
    x = v - threshold
    if method in SCALED_METHODS:
        x = x / threshold
    return spike_fn(x, method, alpha)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown surrogate gradient method {method!r}; choose one of {METHODS}")
