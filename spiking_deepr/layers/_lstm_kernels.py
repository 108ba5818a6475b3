"""Numba CPU kernels for the whole-sequence sparse LSTM (see `lstm_recurrence.py` for the maths).

Layout: the batch is split into ``n_chunks`` chunks of ``W`` lanes (W a multiple of 16, padded with
zero lanes), one per thread; every per-step tensor is chunk-major and neuron-major,
``[n_chunks, T, rows·W + pad]`` (row r's lanes at ``r·W … r·W + W``; the step stride is padded off
a power of two: the weight gradient reads one row of many steps, and with a stride of 2ᵏ bytes
all of them fall into the same cache set). Chunks are independent sequences, so `forward` and
`backward` run each chunk's whole time loop in one thread with no synchronisation between steps,
and a chunk's state of one step ([4H, W]) stays in L2.

Products: each synapse is one SIMD axpy over a row's W lanes with the accumulator in registers
(`_simd`): the gate pre-activations by rows of W_ih and W_hh (both CSR, the input x[t] folded into
the same accumulator as W_hh h[t-1]), the input gradients Wᵀδ by rows of Wᵀ (CSR of the transpose:
every presynaptic unit accumulates its own lanes, no scatter). The weight gradients are one SDDMM
over all T·B rows after the time loop (`weight_gradients`), parallel over the matrix's rows and
blocked over time so the presynaptic block stays in L2; the horizontal lane sum is paid once per
synapse and time block, not per step, and four entries of a row share each δ load.

Nonlinearities: sigmoid and tanh from one branch-free exp (`_exp`: Cody–Waite reduction, degree-13
Taylor polynomial, 2ⁿ by bit pattern), so the cell-update loop vectorises; exact to a few ulp in
float32, 1e-14 relative in float64 (tested). Constants are cast to the state's dtype, so float32
arithmetic stays float32. The backward pass needs no transcendental function.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._simd import cast_like, ldexp_int, vadd, vfma, vload, vmuladd, vsplat, vstore, vsum, width

_FM = {"reassoc", "nsz", "contract", "arcp"}
_jit = dict(parallel=True, cache=True, boundscheck=False, nogil=True, fastmath=_FM, error_model="numpy")

_TAYLOR = 13  # degree of exp's polynomial on |r| <= ln2/2: remainder < 1e-17
_INV_FACTORIAL = tuple(1 / math.factorial(k) for k in range(_TAYLOR, -1, -1))  # Horner order
_LN2_HI = 0.693359375  # 9 significant bits: n·ln2_hi is exact for |n| < 2¹⁵ in float32 and float64
_LN2_LO = math.log(2) - _LN2_HI
_LOG2E = 1 / math.log(2)
_XMAX = 87.0  # e^±87 is inside float32's normal range


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _exp(x):
    """e^x in x's precision for |x| <= 87 (clamped there). Constants are compile-time values cast to
    x's type (an array of them would be reloaded in every iteration of a loop that writes arrays,
    and the loop would not vectorise)."""
    xmax = cast_like(_XMAX, x)
    x = xmax if x > xmax else (-xmax if x < -xmax else x)
    n = np.floor(x * cast_like(_LOG2E, x) + cast_like(0.5, x))
    r = (x - n * cast_like(_LN2_HI, x)) - n * cast_like(_LN2_LO, x)
    p = cast_like(_INV_FACTORIAL[0], x)
    for k in range(1, _TAYLOR + 1):
        p = p * r + cast_like(_INV_FACTORIAL[k], x)
    return ldexp_int(p, n)


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _sigmoid(x):
    one = cast_like(1.0, x)
    return one / (one + _exp(-x))


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _tanh(x):
    one, two = cast_like(1.0, x), cast_like(2.0, x)
    return two / (one + _exp(-two * x)) - one


@nb.njit(inline="always")
def _gates(a, hw):
    """The four gate slices (i, f, g, o) of one chunk-step's [4·HW] gate vector."""
    return a[:hw], a[hw:2 * hw], a[2 * hw:3 * hw], a[3 * hw:4 * hw]


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _cell_update(a, cp, c, tc, h, hw):
    """One chunk-step's nonlinearities and cell update, in place on the gate pre-activations a [4·HW]
    (-> σ(i), σ(f), tanh(g), σ(o)): c = f cp + i g, tc = tanh(c), h = o tc, each [HW].

    Loops over slices from index 0: an index like ``a[hw + j]`` gets numba's negative-index
    wrap-around select, which stops LLVM from vectorising the loop."""
    i, f, g, o = _gates(a, hw)
    for j in range(hw):
        i[j] = _sigmoid(i[j])
    for j in range(hw):
        f[j] = _sigmoid(f[j])
    for j in range(hw):
        g[j] = _tanh(g[j])
    for j in range(hw):
        o[j] = _sigmoid(o[j])
    for j in range(hw):
        c[j] = f[j] * cp[j] + i[j] * g[j]
    for j in range(hw):
        tc[j] = _tanh(c[j])
    for j in range(hw):
        h[j] = o[j] * tc[j]


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _sparse_dot(acc0, acc1, x, lo, hi, idx, vals, W, v, lanes):
    """(acc0, acc1) + Σ_{k in lo..hi} vals[k] x[idx[k]·W + v : … + lanes], alternating between the two
    accumulators (independent FMA chains); x is one chunk-step's [n·W] state."""
    k = lo
    while k + 1 < hi:
        acc0 = vfma(vals[k], vload(x, idx[k] * W + v, lanes), acc0)
        acc1 = vfma(vals[k + 1], vload(x, idx[k + 1] * W + v, lanes), acc1)
        k += 2
    if k < hi:
        acc0 = vfma(vals[k], vload(x, idx[k] * W + v, lanes), acc0)
    return acc0, acc1


@nb.njit(**_jit)
def forward(X, h0, c0, crow_i, cols_i, vals_i, crow_h, cols_h, vals_h, bias, W, lanes, A, C, TC, Hs):
    """Run T steps for every batch chunk.

    X [n_chunks, T, ≥ F·W] input; h0, c0 [n_chunks, H·W]; (crow_i, cols_i, vals_i) CSR of W_ih
    [4H, F], (crow_h, cols_h, vals_h) CSR of W_hh [4H, H] (gate order i, f, g, o); bias [4H]; W the
    chunk width; ``lanes`` the SIMD width (`_simd.Lanes` of 16 or 32, divides W). Writes A
    [n_chunks, T, ≥ 4H·W] the gate activations (σ(i), σ(f), tanh(g), σ(o)), C, TC, Hs
    [n_chunks, T, ≥ H·W] c[t], tanh(c[t]), h[t]."""
    nv = width(lanes)
    n_chunks, T = A.shape[:2]
    G = crow_h.shape[0] - 1
    for ch in nb.prange(n_chunks):
        for t in range(T):
            x, a = X[ch, t], A[ch, t]
            hp = h0[ch] if t == 0 else Hs[ch, t - 1]
            for r in range(G):
                for v in range(0, W, nv):
                    acc0, acc1 = vsplat(a, bias[r], lanes), vsplat(a, 0, lanes)
                    acc0, acc1 = _sparse_dot(acc0, acc1, x, crow_i[r], crow_i[r + 1], cols_i, vals_i, W, v, lanes)
                    acc0, acc1 = _sparse_dot(acc0, acc1, hp, crow_h[r], crow_h[r + 1], cols_h, vals_h, W, v, lanes)
                    vstore(a, r * W + v, vadd(acc0, acc1))
            _cell_update(a, c0[ch] if t == 0 else C[ch, t - 1], C[ch, t], TC[ch, t], Hs[ch, t], G // 4 * W)


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _transposed_product(out, dg, crow_t, rows_t, vals_t, W, lanes):
    """out [n_in·W] = Wᵀ dg for one chunk: dg [4H·W], (crow_t, rows_t, vals_t) CSR of Wᵀ [n_in, 4H]."""
    nv = width(lanes)
    for c in range(crow_t.shape[0] - 1):
        for v in range(0, W, nv):
            zero = vsplat(out, 0, lanes)
            acc0, acc1 = _sparse_dot(zero, zero, dg, crow_t[c], crow_t[c + 1], rows_t, vals_t, W, v, lanes)
            vstore(out, c * W + v, vadd(acc0, acc1))


@nb.njit(**_jit)
def backward(GH, A, C, TC, h0, c0, crow_th, rows_th, vals_th, crow_ti, rows_ti, vals_ti, W, lanes, need_dx,
             DG, DX, GB, dh, dc):
    """Backpropagate through T steps for every batch chunk (shapes as in `forward`).

    GH [n_chunks, T, ≥ H·W] ∂E/∂h[t] from the loss; A, C, TC from `forward`; (crow_th, rows_th,
    vals_th) CSR of W_hhᵀ [H, 4H] and (crow_ti, rows_ti, vals_ti) of W_ihᵀ [F, 4H]. ``dc``
    [n_chunks, H·W] holds ∂E/∂c[T-1] on entry.

    Writes DG [n_chunks, T, ≥ 4H·W] ∂E/∂(gate pre-activations) (for `weight_gradients`), DX
    [n_chunks, T, ≥ F·W] = W_ihᵀ δ[t] (only if ``need_dx``), GB [n_chunks, 4H·W] δ summed over time
    (the bias gradient before the sum over chunks and lanes), and on exit dh, dc = ∂E/∂h0, ∂E/∂c0."""
    nv = width(lanes)
    n_chunks, T = A.shape[:2]
    hw = (crow_th.shape[0] - 1) * W
    for ch in nb.prange(n_chunks):
        dhc, dcc, gb = dh[ch], dc[ch], GB[ch]
        dhc[:] = 0  # W_hhᵀ δ[t+1]: the recurrent part of ∂E/∂h[t]
        gb[:] = 0
        for t in range(T - 1, -1, -1):
            a, tc, gh, dg = A[ch, t], TC[ch, t], GH[ch, t], DG[ch, t]
            cp = c0[ch] if t == 0 else C[ch, t - 1]
            ai, af, ag, ao = _gates(a, hw)
            di, df, dgg, do = _gates(dg, hw)
            for j in range(hw):
                i, f, g, o = ai[j], af[j], ag[j], ao[j]
                one = cast_like(1.0, i)
                tcj = tc[j]
                d_h = gh[j] + dhc[j]
                d_c = dcc[j] + d_h * o * (one - tcj * tcj)
                di[j], df[j] = d_c * g * i * (one - i), d_c * cp[j] * f * (one - f)
                dgg[j], do[j] = d_c * i * (one - g * g), d_h * tcj * o * (one - o)
                dcc[j] = d_c * f
            for j in range(4 * hw):  # the bias gradient, summed over time
                gb[j] += dg[j]
            _transposed_product(dhc, dg, crow_th, rows_th, vals_th, W, lanes)
            if need_dx:
                _transposed_product(DX[ch, t], dg, crow_ti, rows_ti, vals_ti, W, lanes)


@nb.njit(inline="always", fastmath=_FM, error_model="numpy")
def _row_gradient(gw, lo, hi, cols, dg, r, p, p0, shift, t0, t1, W, lanes):
    """gw[k] += Σ_chunks Σ_{t0 <= t < t1} δ[., t, row r] · pre[., t, col_k] for k in lo..hi (the
    entries of row r); dg, p, p0: DG, P, p0 of `weight_gradients` (3-D, 3-D, 2-D). Four entries at
    a time: each δ vector loaded serves all four, and the four sums are independent FMA chains."""
    nv = width(lanes)
    n_chunks, T, sd = dg.shape
    sp, s0 = p.shape[2], p0.shape[1]
    dgf, pf, p0f = dg.reshape(-1), p.reshape(-1), p0.reshape(-1)
    ta = max(t0, shift)  # first step that reads P (W_hh's t = 0 reads h0)
    for k in range(lo, hi, 4):
        # entries past the row's end repeat its last one; their sums are dropped
        k1, k2, k3 = min(k + 1, hi - 1), min(k + 2, hi - 1), min(k + 3, hi - 1)
        c0, c1, c2, c3 = cols[k] * W, cols[k1] * W, cols[k2] * W, cols[k3] * W
        g0, g1, g2, g3 = gw[k], gw[k1], gw[k2], gw[k3]
        for v in range(0, W, nv):
            a0, a1, a2, a3 = (vsplat(gw, 0, lanes), vsplat(gw, 0, lanes), vsplat(gw, 0, lanes),
                              vsplat(gw, 0, lanes))
            for ch in range(n_chunks):
                if t0 < shift:
                    d = vload(dgf, ch * T * sd + r * W + v, lanes)
                    j = ch * s0 + v
                    a0 = vmuladd(d, vload(p0f, j + c0, lanes), a0)
                    a1 = vmuladd(d, vload(p0f, j + c1, lanes), a1)
                    a2 = vmuladd(d, vload(p0f, j + c2, lanes), a2)
                    a3 = vmuladd(d, vload(p0f, j + c3, lanes), a3)
                i = (ch * T + ta) * sd + r * W + v
                j = (ch * T + ta - shift) * sp + v
                for t in range(ta, t1):
                    d = vload(dgf, i, lanes)
                    a0 = vmuladd(d, vload(pf, j + c0, lanes), a0)
                    a1 = vmuladd(d, vload(pf, j + c1, lanes), a1)
                    a2 = vmuladd(d, vload(pf, j + c2, lanes), a2)
                    a3 = vmuladd(d, vload(pf, j + c3, lanes), a3)
                    i += sd
                    j += sp
            g0, g1, g2, g3 = g0 + vsum(a0), g1 + vsum(a1), g2 + vsum(a2), g3 + vsum(a3)
        gw[k] = g0
        if k1 > k:
            gw[k1] = g1
        if k2 > k1:
            gw[k2] = g2
        if k3 > k2:
            gw[k3] = g3


@nb.njit(**_jit)
def weight_gradients(DG, X, Hs, h0, crow_i, cols_i, crow_h, cols_h, W, lanes, block, gw_i, gw_h):
    """Both weight gradients as one SDDMM over the T·B rows, in CSR order:
    gw_i[k] = Σ_t Σ_b δ[t, b, row_k] x[t, b, col_k] (W_ih [4H, F]) and
    gw_h[k] = Σ_t Σ_b δ[t, b, row_k] h[t-1, b, col_k] (W_hh [4H, H], h[-1] = h0).

    DG [n_chunks, T, ≥ 4H·W] from `backward`; X [n_chunks, T, ≥ F·W], Hs [n_chunks, T, ≥ H·W], h0
    [n_chunks, H·W] from `forward`. Parallel over rows (a row's δ is read once for both matrices);
    time runs in blocks of ``block`` steps, so a block of the presynaptic states stays in L2 while
    every row reads it, and the lane sum is paid once per entry and block."""
    T = DG.shape[1]
    G = crow_h.shape[0] - 1
    gw_i[:] = 0
    gw_h[:] = 0
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        for r in nb.prange(G):
            _row_gradient(gw_i, crow_i[r], crow_i[r + 1], cols_i, DG, r, X, h0, 0, t0, t1, W, lanes)
            _row_gradient(gw_h, crow_h[r], crow_h[r + 1], cols_h, DG, r, Hs, h0, 1, t0, t1, W, lanes)
