r"""Frame-wise readouts from a layer's output [T, B, F] to class scores [T, B, C].

- :class:`LinearReadout` (``ReadoutSpec`` kind ``"linear"``): :math:`y[t] = W h[t] + b`.
- :class:`LIReadout` (kind ``"li"``): Norse's leaky integrator :func:`norse.torch.functional.leaky_integrator.li_step`,

  .. math::
      i_{\text{jump}} = i + W h[t], \quad
      v \leftarrow v + dt\,\tau_{\text{mem}}^{-1}((v_{\text{leak}} - v) + i_{\text{jump}}), \quad
      i \leftarrow i_{\text{jump}}(1 - dt\,\tau_{\text{syn}}^{-1}), \quad y[t] = v + b

  starting from :math:`v = v_{\text{leak}}, i = 0` (as ``LILinearCell``).

``W`` is a DEEP R :class:`~spiking_deepr.sparse.SparseMatrix` (any connectivity, 1.0 included) or, with
``connectivity=None``, a dense ``nn.Parameter`` trained by a normal optimizer. The product
:math:`W h[t]` of all steps is one matrix product over T·B rows; only the (elementwise) integrator
runs per step.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..sparse import sparse_linear
from ._common import build_matrix, check_time_major

__all__ = ["LinearReadout", "LIReadout"]


class _Readout(nn.Module):
    def __init__(self, input_size: int, n_classes: int, *, connectivity: Optional[float], bias: bool,
                 fan_in_cap: Optional[int], presynaptic_sign: Optional[torch.Tensor],
                 init_std: Optional[float], seed: int) -> None:
        super().__init__()
        if input_size <= 0 or n_classes <= 0:
            raise ValueError(f"{type(self).__name__}: sizes must be positive, got {input_size}, {n_classes}")
        self.input_size, self.n_classes = int(input_size), int(n_classes)
        std = 1.0 / input_size ** 0.5 if init_std is None else float(init_std)
        if connectivity is None:
            gen = torch.Generator().manual_seed(seed)
            self.w = None
            self.weight = nn.Parameter(torch.randn(n_classes, input_size, generator=gen) * std)
        else:
            self.w = build_matrix(n_classes, input_size, None, connectivity=connectivity, fan_in_cap=fan_in_cap,
                                  presynaptic_sign=presynaptic_sign, init_std=std, seed=seed,
                                  who=type(self).__name__)
            self.register_parameter("weight", None)
        self.bias = nn.Parameter(torch.zeros(n_classes)) if bias else None

    @property
    def sparse(self) -> bool:
        return self.w is not None

    def dense_weight(self) -> torch.Tensor:
        """W [C, F] as a dense tensor (detached)."""
        return self.w.to_dense() if self.w is not None else self.weight.detach().clone()

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """W h for h [..., F] -> [..., C]."""
        if self.w is not None:
            return sparse_linear(h, self.w)
        return torch.nn.functional.linear(h, self.weight)


class LinearReadout(_Readout):
    """y[t] = W h[t] + b. Args as :class:`LIReadout` without the integrator parameters."""

    kind = "linear"

    def __init__(self, input_size: int, n_classes: int, *, connectivity: Optional[float] = 1.0,
                 bias: bool = True, fan_in_cap: Optional[int] = None,
                 presynaptic_sign: Optional[torch.Tensor] = None, init_std: Optional[float] = None,
                 seed: int = 0) -> None:
        super().__init__(input_size, n_classes, connectivity=connectivity, bias=bias, fan_in_cap=fan_in_cap,
                         presynaptic_sign=presynaptic_sign, init_std=init_std, seed=seed)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_time_major(h, self.input_size, "LinearReadout")
        y = self.project(h)
        return y if self.bias is None else y + self.bias


class LIReadout(_Readout):
    """Leaky-integrator readout (Norse ``li_step``), output v[t] + b of shape [T, B, C].

    Args:
        input_size, n_classes: F and C.
        connectivity: fraction of active entries of the SparseMatrix W [C, F]; None: dense W.
        tau_syn_inv, tau_mem_inv, v_leak: Norse ``LIParameters`` (scalars, stored as buffers).
        dt: Euler step.
        bias: add a learnable bias b [C] to the voltage.
        fan_in_cap, presynaptic_sign, init_std, seed: as :class:`~spiking_deepr.sparse.SparseMatrix`.
    """

    kind = "li"

    def __init__(self, input_size: int, n_classes: int, *, connectivity: Optional[float] = 1.0,
                 tau_syn_inv: float = 1.0 / 5e-3, tau_mem_inv: float = 1.0 / 1e-2, v_leak: float = 0.0,
                 dt: float = 0.001, bias: bool = True, fan_in_cap: Optional[int] = None,
                 presynaptic_sign: Optional[torch.Tensor] = None, init_std: Optional[float] = None,
                 seed: int = 0) -> None:
        super().__init__(input_size, n_classes, connectivity=connectivity, bias=bias, fan_in_cap=fan_in_cap,
                         presynaptic_sign=presynaptic_sign, init_std=init_std, seed=seed)
        self.dt = float(dt)
        for name, value in (("tau_syn_inv", tau_syn_inv), ("tau_mem_inv", tau_mem_inv), ("v_leak", v_leak)):
            self.register_buffer(name, torch.as_tensor(float(value)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_time_major(h, self.input_size, "LIReadout")
        T, B, _ = h.shape
        currents = self.project(h)  # [T, B, C], all steps at once
        dt = self.dt
        v = torch.zeros(B, self.n_classes, dtype=currents.dtype, device=currents.device) + self.v_leak
        i = torch.zeros_like(v)
        out = []
        for cur in currents.unbind(0):  # li_step, same operation order as Norse
            i_jump = i + cur
            dv = dt * self.tau_mem_inv * ((self.v_leak - v) + i_jump)
            v = v + dv
            di = -dt * self.tau_syn_inv * i_jump
            i = i_jump + di
            out.append(v)
        y = torch.stack(out) if T else currents
        return y if self.bias is None else y + self.bias
