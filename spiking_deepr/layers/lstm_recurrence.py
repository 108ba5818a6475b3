r"""The whole-sequence sparse LSTM recurrence as one autograd function (fused CPU path).

:func:`~spiking_deepr.layers.lstm.lstm_step` runs one step as a sparse product and ~10 torch
operations, and autograd records them all for every step. :func:`lstm_recurrence` runs the whole
time loop in one numba kernel (`_lstm_kernels.forward`: per step the gate pre-activations
:math:`W_{ih} x_t + W_{hh} h_{t-1} + b` from the joint [4H, ·] matrices, then the nonlinearities
and the cell update), without autograd, and backpropagates through time by hand in a second one;
with :math:`a_t = (i, f, g, o)` the gate activations, :math:`\tau_t = \tanh(c_t)` and
:math:`\bar h_t` the gradient from the loss:

.. math::
    \begin{align*}
        \delta h_t &= \bar h_t + W_{hh}^\top \delta_{t+1}, &
        \delta c_t &= \delta c_{t+1}^{\text{carry}} + \delta h_t\, o\, (1 - \tau_t^2) \\
        \delta_t &= \big(\delta c_t\, g\, i (1-i),\ \delta c_t\, c_{t-1} f (1-f),\
            \delta c_t\, i\, (1-g^2),\ \delta h_t\, \tau_t\, o (1-o)\big), &
        \delta c_t^{\text{carry}} &= \delta c_t\, f \\
        \partial E/\partial w_k &= \textstyle\sum_t \sum_b \delta_t[b, \text{row}_k]\,
            h_{t-1}[b, \text{col}_k], &
        \partial E/\partial (W_{ih} x_t + b) &= \delta_t
    \end{align*}

with :math:`\partial E/\partial x_t = W_{ih}^\top \delta_t` and :math:`\partial E/\partial b =
\sum_{t,b} \delta_t`. The weight gradients are two SDDMMs over the T·B rows after the time loop
(`_lstm_kernels.weight_gradients`). No per-step autograd graph is built; the batch is split into
one chunk per numba thread (see `_lstm_kernels` for the layout).

Equal to :func:`lstm_step` under autograd to rounding (the sums run in another order, and sigmoid
and tanh come from the kernels' own exp, exact to a few ulp): tested to 1e-5 (float32) / 1e-12
(float64) relative, outputs and gradients.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as nnf

from ..sparse.matrix import CSRStructure
from ._simd import Lanes

__all__ = ["JointMatrix", "lstm_recurrence"]

_LANE_QUANTUM = 16  # a chunk's width is a multiple of this many batch entries (one AVX-512 float32 vector)
_STEP_PAD = 16  # elements after each step's rows (64 B in float32): the step stride is no power of two
_BLOCK_BYTES = 1024 * 1024  # the weight gradient's time block of presynaptic states: ~L2 (measured best)


class JointMatrix(NamedTuple):
    """A [4H, n_in] weight matrix as the kernels read it: values [K] (differentiable) in the CSR
    order of ``structure``."""

    values: torch.Tensor
    structure: CSRStructure


def lstm_recurrence(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: JointMatrix, w_hh: JointMatrix,
                    bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a sparse LSTM over a sequence (CPU, float32/float64).

    Args:
        x: input [T, B, F] (T > 0).
        h0, c0: initial state, each [B, H].
        w_ih, w_hh: the joint input [4H, F] and recurrent [4H, H] matrices (gate order i, f, g, o).
        bias: [4H] or None.

    Returns:
        (h [T, B, H] outputs of every step, c [B, H] final cell state); the final h is h[-1].
        Differentiable w.r.t. x, h0, c0, both value vectors and the bias.
    """
    b = torch.zeros(w_ih.structure.crow.numel() - 1, dtype=x.dtype) if bias is None else bias
    return _LSTMRecurrence.apply(x, h0, c0, w_ih.values, w_hh.values, b, w_ih.structure, w_hh.structure)


class _Chunks(NamedTuple):
    """The batch split of `_lstm_kernels`: ``n`` chunks of ``width`` lanes (B padded to n·width),
    vectors of ``lanes`` (16 or 32; divides width)."""

    n: int
    width: int
    lanes: Lanes

    @staticmethod
    def of(batch: int) -> "_Chunks":
        """One chunk per numba thread, as long as each gets at least one vector of lanes."""
        import numba

        vectors = -(-batch // _LANE_QUANTUM)
        n = max(1, min(numba.get_num_threads(), vectors))
        width = -(-vectors // n) * _LANE_QUANTUM
        return _Chunks(n, width, Lanes(32 if width % 32 == 0 else 16))

    def shape(self, *lead: int, rows: int) -> Tuple[int, ...]:
        """The chunk-major shape of a [*lead, B, rows] tensor: [n, *lead, rows·width (+ _STEP_PAD
        if there are leading dimensions)]."""
        return (self.n, *lead, rows * self.width + (_STEP_PAD if lead else 0))

    def split(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[*lead, B, R] (batch-major) -> [n, *lead, R·width (+ pad)] (chunk-major, zero lanes as
        padding), into ``out`` if given."""
        *lead, batch, rows = x.shape
        x = x.detach()
        if batch < self.n * self.width:
            x = nnf.pad(x, (0, 0, 0, self.n * self.width - batch))
        k = len(lead)
        x = x.reshape(*lead, self.n, self.width, rows).permute(k, *range(k), k + 2, k + 1)
        out = torch.empty(self.shape(*lead, rows=rows), dtype=x.dtype) if out is None else out
        out[..., :rows * self.width].view(self.n, *lead, rows, self.width).copy_(x)
        return out

    def join(self, y: torch.Tensor, batch: int, rows: int) -> torch.Tensor:
        """Inverse of `split`: [n, *lead, R·width (+ pad)] -> a new [*lead, batch, R] tensor."""
        n, *lead, _ = y.shape
        k = len(lead)
        y = y[..., :rows * self.width].view(n, *lead, rows, self.width).permute(*range(1, k + 1), 0, k + 2, k + 1)
        out = torch.empty(*lead, n * self.width, rows, dtype=y.dtype)
        out.view(*lead, n, self.width, rows).copy_(y)
        return out if batch == n * self.width else out[..., :batch, :].contiguous()


class _BufferPool:
    """Large work tensors reused between calls, under one lock.

    Why: a fresh allocation of tens of MB is returned by the allocator as untouched pages, and the
    first write to each 4 KiB page is a page fault: measured ~19,000 faults and ~40 ms of system
    time per training step at H = 512, 1 % — more than the kernels. A pooled buffer is handed out
    again only when nothing but the pool references it (``Tensor._use_count() == 1``: no autograd
    graph still saves it, no running call holds it, as every call takes its buffers under ``lock``
    and copies its outputs out of them). The pool holds at most ``max_bytes`` (least recently used
    shapes dropped first; a buffer that does not fit is simply not kept)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.lock = threading.RLock()
        self.max_bytes, self.bytes = max_bytes, 0
        self._pools: "OrderedDict[tuple, List[torch.Tensor]]" = OrderedDict()
        self.enabled = hasattr(torch.Tensor, "_use_count")

    def take(self, shapes: List[Tuple[int, ...]], dtype: torch.dtype) -> List[torch.Tensor]:
        """One uninitialised tensor per shape, distinct from each other; call with ``lock`` held."""
        out: List[torch.Tensor] = []
        for shape in shapes:
            key = (tuple(shape), dtype)
            pool = self._pools.setdefault(key, [])
            self._pools.move_to_end(key)
            free = next((b for b in pool if b._use_count() == 1 and all(b is not o for o in out)), None)
            if free is None:
                free = torch.empty(shape, dtype=dtype)
                if self.enabled:
                    self._keep(key, free)
            out.append(free)
        return out

    def _keep(self, key: tuple, buf: torch.Tensor) -> None:
        size = buf.numel() * buf.element_size()
        while self.bytes + size > self.max_bytes and next(iter(self._pools)) != key:
            for old in self._pools.popitem(last=False)[1]:
                self.bytes -= old.numel() * old.element_size()
        if self.bytes + size <= self.max_bytes:
            self._pools[key].append(buf)
            self.bytes += size


_POOL = _BufferPool()


class _LSTMRecurrence(torch.autograd.Function):
    """Forward: `_lstm_kernels.forward`; saves the gate activations, c, tanh(c) and h of every step
    (chunk-major). Backward: `_lstm_kernels.backward`, then `_lstm_kernels.weight_gradients`. The
    large work tensors come from `_POOL`."""

    @staticmethod
    def forward(ctx, x, h0, c0, vals_ih, vals_hh, bias, s_ih, s_hh):
        from . import _lstm_kernels as lk

        dtype = x.dtype
        T, B, _ = x.shape
        G = s_hh.crow.numel() - 1
        H = G // 4
        ch = _Chunks.of(B)
        h0c, c0c = ch.split(h0.to(dtype)), ch.split(c0.to(dtype))
        vi, vh = (v.detach().to(dtype).contiguous() for v in (vals_ih, vals_hh))
        with _POOL.lock:
            X, A, C, TC, Hs = _POOL.take([ch.shape(T, rows=x.shape[2]), ch.shape(T, rows=G)]
                                         + [ch.shape(T, rows=H)] * 3, dtype)
            ch.split(x, out=X)
            lk.forward(X.numpy(), h0c.numpy(), c0c.numpy(), s_ih.crow.numpy(), s_ih.cols.numpy(), vi.numpy(),
                       s_hh.crow.numpy(), s_hh.cols.numpy(), vh.numpy(), bias.detach().to(dtype).contiguous().numpy(),
                       ch.width, ch.lanes, A.numpy(), C.numpy(), TC.numpy(), Hs.numpy())
            ctx.save_for_backward(A, C, TC, Hs, h0c, c0c, X, vi[s_ih.perm_t], vh[s_hh.perm_t])
            ctx.structures, ctx.chunks = (s_ih, s_hh), ch
            return ch.join(Hs, B, H), ch.join(C[:, -1], B, H)

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        from . import _lstm_kernels as lk

        A, C, TC, Hs, h0c, c0c, X, vi_t, vh_t = ctx.saved_tensors
        s_ih, s_hh = ctx.structures
        ch = ctx.chunks
        n, T = A.shape[:2]
        G, F = s_hh.crow.numel() - 1, s_ih.crow_t.numel() - 1
        dtype = A.dtype
        B = grad_h.shape[1] if grad_h is not None else grad_c.shape[0]
        need_dx = ctx.needs_input_grad[0]
        with _POOL.lock:
            GH, DG, DX = _POOL.take([Hs.shape, A.shape, X.shape if need_dx else (n, 0, 0)], dtype)
            if grad_h is None:
                GH.zero_()
            else:
                ch.split(grad_h.to(dtype), out=GH)
            dc = torch.zeros_like(h0c) if grad_c is None else ch.split(grad_c.to(dtype))
            GB, dh = torch.empty(n, G * ch.width, dtype=dtype), torch.empty_like(h0c)
            lk.backward(GH.numpy(), A.numpy(), C.numpy(), TC.numpy(), h0c.numpy(), c0c.numpy(), s_hh.crow_t.numpy(),
                        s_hh.rows_t.numpy(), vh_t.numpy(), s_ih.crow_t.numpy(), s_ih.rows_t.numpy(), vi_t.numpy(),
                        ch.width, ch.lanes, need_dx, DG.numpy(), DX.numpy(), GB.numpy(), dh.numpy(), dc.numpy())
            gw_i, gw_h = torch.empty(s_ih.cols.numel(), dtype=dtype), torch.empty(s_hh.cols.numel(), dtype=dtype)
            if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
                block = max(1, min(T, _BLOCK_BYTES // (Hs[:, 0].numel() * Hs.element_size())))
                lk.weight_gradients(DG.numpy(), X.numpy(), Hs.numpy(), h0c.numpy(), s_ih.crow.numpy(),
                                    s_ih.cols.numpy(), s_hh.crow.numpy(), s_hh.cols.numpy(), ch.width, ch.lanes,
                                    block, gw_i.numpy(), gw_h.numpy())
            gbias = GB.view(n, G, ch.width).sum((0, 2))
            dx = ch.join(DX, B, F) if need_dx else None
            return dx, ch.join(dh, B, G // 4), ch.join(dc, B, G // 4), gw_i, gw_h, gbias, None, None
