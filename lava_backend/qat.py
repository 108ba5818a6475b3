"""Quantisation-aware fine-tuning: a SequenceModel trained through the converter's fixed-point grid.

:class:`FakeQuantizer` fixes the formats once (:class:`~lava_backend.quantize.QuantFormats`:
input step, layer scales, weight exponents, readout scale; calibrated on training sequences)
and then, before every forward pass, runs the converter's own ``quantize_network`` and
``fake_quantize`` on the model's current weights. The forward pass uses the dequantised
values (8-bit weight mantissas with each matrix's exponent, the 12-bit decays, the 17-bit
threshold, the bias, the integer adaptation jump, the 8-bit input), the backward pass treats
the rounding as identity (straight-through estimator) -- there is no second copy of the
formats. ``snap()`` finally writes the dequantised values into the model, so the fine-tuned
float model lies on the grid and ``quantize_network(spec, formats=...)`` reproduces exactly
the mantissas it was trained with; what remains between it and the integer network is the
per-step arithmetic (truncating decays, the rounded input sum).

Per-step integer truncations are not modelled; LSTM layers (no fixed-point model) are refused.
A dense readout weight gets the same straight-through rounding through a
``torch.nn.utils.parametrize`` parametrisation (removed again by ``snap``/``remove``).
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from lava_backend.params import ConversionError
from lava_backend.quantize import QuantFormats, fake_quantize, quantize_network


class FakeQuantizer:
    """Straight-through fake quantisation of ``model`` (a SequenceModel) with ``formats``.

    ``install()`` sets the neuron constants to their fixed-point values, the input step, and a
    forward pre-hook that refreshes every matrix's ``quantized_values``; ``snap()`` makes the
    quantised values the model's own and removes the hook."""

    def __init__(self, model, formats: QuantFormats) -> None:
        if model.cfg.kind == "lstm":
            raise ConversionError("quantisation-aware training: LSTM layers have no fixed-point model")
        self.model, self.formats = model, formats
        self._hook = None
        self._dense = None          # _StraightThrough of a dense readout weight, while installed

    @classmethod
    def calibrated(cls, model, calib_x: np.ndarray, calib_lengths: np.ndarray,
                   exact_input_sum: bool = True) -> "FakeQuantizer":
        """Formats chosen by ``quantize_network`` with scales calibrated on (training) inputs.

        exact_input_sum: give the first layer's input matrix weight_exp >= -1, so that Lava's
        shift of the summed graded input is exact (coarser input weights, which the fine-tuning
        trains through, instead of a per-step rounding of the input current, which it cannot)."""
        q = quantize_network(model.to_spec(), calib_x=calib_x, calib_lengths=calib_lengths)
        formats = q.formats()
        if exact_input_sum:
            formats.weight_exps[0][0] = max(formats.weight_exps[0][0], -1)
        return cls(model, formats)

    def quantized_spec(self):
        """(QuantizedNetwork, its dequantised NetworkSpec) of the model's current (latent) weights."""
        for matrix in self.model.sparse_matrices().values():
            matrix.quantized_values = None       # to_spec must see the latent weights
        if self._dense is not None:
            self._dense.quantized = None
        spec = self.model.to_spec()
        q = quantize_network(spec, formats=self.formats)
        return q, fake_quantize(spec, q)

    def install(self) -> "FakeQuantizer":
        self._set_constants()
        self.model.cfg.input_step = float(self.formats.input_scale)
        self.model.cfg.input_bits = int(self.formats.input_bits)
        ro = self.model.readout
        if ro.w is None:                          # dense readout weight
            from torch.nn.utils import parametrize

            self._dense = _StraightThrough()
            parametrize.register_parametrization(ro, "weight", self._dense)
        self._hook = self.model.register_forward_pre_hook(lambda module, args: self.refresh())
        return self

    @torch.no_grad()
    def refresh(self) -> None:
        """Quantised forward values of every matrix from the current magnitudes."""
        _, fq = self.quantized_spec()
        for matrix, values in self._pairs(fq):
            matrix.quantized_values = torch.from_numpy(values).to(matrix.theta.device)
        if self._dense is not None:
            self._dense.quantized = self._dense_values(fq)

    @torch.no_grad()
    def snap(self) -> None:
        """Write the quantised weights (theta = |w_q|, signs kept) and readout bias into the model
        and remove the hook: the float model is then the dequantised fixed-point network."""
        self._set_constants()
        _, fq = self.quantized_spec()
        for matrix, values in self._pairs(fq):
            w = torch.from_numpy(values).to(matrix.theta)
            matrix.theta.copy_(w * matrix.sign.to(w))          # |w_q| (w_q = 0 or sign * |w_q|)
            matrix.quantized_values = None
        dense = self._dense_values(fq) if self._dense is not None else None
        self.remove()
        ro = self.model.readout
        if dense is not None:
            ro.weight.copy_(dense)
        if ro.bias is not None:
            ro.bias.copy_(torch.from_numpy(np.asarray(fq.readout.bias, dtype=np.float32)))

    def remove(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for matrix in self.model.sparse_matrices().values():
            matrix.quantized_values = None
        if self._dense is not None:
            from torch.nn.utils import parametrize

            # keeps the latent weight Parameter itself (the optimizers hold it)
            parametrize.remove_parametrizations(self.model.readout, "weight", leave_parametrized=False)
            self._dense = None

    # ------------------------------------------------------------------------------------------
    def _pairs(self, fq) -> Iterator[Tuple[object, np.ndarray]]:
        """(SparseMatrix, dequantised values [K]) for every sparse matrix, in the matrix's entry
        order (``to_spec`` and ``fake_quantize`` keep it)."""
        for layer, ls in zip(self.model.layers, fq.layers):
            yield layer.w_in, ls.w_in.values
            if layer.w_rec is not None:
                yield layer.w_rec, ls.w_rec.values
        if self.model.readout.w is not None:
            yield self.model.readout.w, fq.readout.weights.values

    def _dense_values(self, fq) -> torch.Tensor:
        """The dense readout weight [C, F] on the grid (``to_spec`` lists it row-major)."""
        w = fq.readout.weights
        dense = np.zeros(w.shape, dtype=np.float32)
        dense[w.rows, w.cols] = w.values
        return torch.from_numpy(dense)

    @torch.no_grad()
    def _set_constants(self) -> None:
        """Neuron constants -> their fixed-point values (decays, threshold, leak, adaptation)."""
        _, fq = self.quantized_spec()
        for layer, ls in zip(self.model.layers, fq.layers):
            for name in ("tau_syn_inv", "tau_mem_inv", "v_th", "v_leak"):
                getattr(layer, name).fill_(float(getattr(ls, name)))
            if hasattr(layer, "tau_adapt_inv"):
                layer.tau_adapt_inv.fill_(float(ls.tau_adapt_inv))
                layer.beta.copy_(torch.from_numpy(np.asarray(ls.beta, dtype=np.float32)))
        ro = self.model.readout
        if ro.kind == "li":
            for name in ("tau_syn_inv", "tau_mem_inv", "v_leak"):
                getattr(ro, name).fill_(float(getattr(fq.readout, name)))


class _StraightThrough(torch.nn.Module):
    """Parametrisation: forward value ``quantized`` (when set), gradient straight to the weight."""

    def __init__(self) -> None:
        super().__init__()
        self.quantized: Optional[torch.Tensor] = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.quantized is None:
            return weight
        return weight + (self.quantized.to(weight) - weight).detach()
