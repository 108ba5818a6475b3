"""Numba CPU kernels for the whole-sequence LIF/ALIF recurrence (see `recurrence.py` for the maths).

Forward: batch entries are independent, so each thread runs whole sequences ([T, B, N] rows are
contiguous per batch entry, no synchronisation between steps); the recurrent input is event-driven
(only the synapses of neurons that spiked), in the same order as `sparse.kernels`' event-driven
product. Backward: the neuron updates run over batch entries (contiguous [T, B, N] rows); the input
gradient Wᵀδj has a dense δj, so it runs over presynaptic neurons with δj and z[t-1] neuron-major
([N, B]): every synapse is one unit-stride loop over the batch (SIMD), and its weight gradient
visits only the batch entries where the presynaptic neuron spiked. Between the two, blocked
transposes: strided column access instead is ~10× slower (with N a power of two all elements of a
column map to the same cache set).

Coefficients come in one array ``coef`` of the state's dtype (see `recurrence._coefficients`), so the
forward arithmetic stays in that dtype and repeats `lif_step`'s float operations one for one.
"""
from __future__ import annotations

import numba as nb
import numpy as np

# forward: no fastmath (the float operations must be the step function's); backward: LLVM may
# reassociate and fuse (gradients equal the step path's to rounding, not bit for bit, anyway).
_forward_jit = dict(parallel=True, cache=True, boundscheck=False, nogil=True)
_backward_jit = dict(parallel=True, cache=True, boundscheck=False, nogil=True,
                     fastmath={"reassoc", "nsz", "contract"})

_BLOCK = 64  # neurons per block of the transposes between batch- and neuron-major layouts

# indices into ``coef``
_CM, _CS, _VLEAK, _VTH, _VRESET, _RHO, _OMR, _DVDV, _DIDJ, _ONE, _ALPHA, _DAMP, _REFRAC = range(13)

#: surrogate derivatives computed inside `backward` (anything else comes precomputed as ``S``)
PRECOMPUTED, SUPER, TRIANGLE, BELLEC, LSNN = range(5)
#: methods evaluated in the kernel, with the formulas of their own backward passes (tested against them)
KERNEL_SURROGATES = {"super": SUPER, "triangle": TRIANGLE, "bellec": BELLEC, "lsnn": LSNN}


@nb.njit(**_forward_jit)
def forward(cur, z0, v0, i0, b0, r0, crow_t, rows_t, vals_t, beta, coef, adaptive, subtract, refractory, scaled,
            X, Z, TH, REF, v, i, b, r):
    """Run T steps. cur [T, B, N] input currents W_in x; z0, v0, i0, b0, r0 [B, N] initial state;
    (crow_t, rows_t, vals_t) CSR of W_recᵀ with values in that order (crow_t empty: no recurrence);
    beta [N]. Options: ``subtract`` (reset v -= v_th instead of v = v_reset), ``refractory`` (counter
    r, length coef[_REFRAC]), ``scaled`` (spike argument (v' - thr) / thr, the "lsnn" surrogate).

    Writes X [T, B, N] (the spike function's argument, kept for the surrogate gradient), Z [T, B, N]
    spikes, TH [T, B, N] the adaptive threshold (``scaled`` and ``adaptive`` only, else unused),
    REF [T, B, N] 1 where the neuron was refractory (``refractory`` only) and the final state into
    v, i, b, r [B, N]."""
    T, B, N = cur.shape
    recurrent = crow_t.shape[0] > 0
    cm, cs, vleak, vth, vreset = coef[_CM], coef[_CS], coef[_VLEAK], coef[_VTH], coef[_VRESET]
    rho, omr, n_refrac = coef[_RHO], coef[_OMR], coef[_REFRAC]
    zero = coef[_ONE] - coef[_ONE]
    for bb in nb.prange(B):
        rec = np.zeros(N, dtype=cur.dtype)
        zprev = z0[bb]
        spikes = np.empty(N, dtype=np.int64)  # neurons with z[t-1] != 0, increasing
        n_spikes = 0
        for n in range(N):
            if zprev[n] != 0:
                spikes[n_spikes] = n
                n_spikes += 1
        vb, ib, bbv, rb = v[bb], i[bb], b[bb], r[bb]
        vb[:] = v0[bb]
        ib[:] = i0[bb]
        bbv[:] = b0[bb]
        rb[:] = r0[bb]
        for t in range(T):
            rec[:] = 0
            if recurrent:
                for s in range(n_spikes):
                    c = spikes[s]
                    a = zprev[c]
                    for q in range(crow_t[c], crow_t[c + 1]):
                        rec[rows_t[q]] += a * vals_t[q]
            ct, xt, zt = cur[t, bb], X[t, bb], Z[t, bb]
            n_spikes = 0
            for n in range(N):
                j = (ib[n] + ct[n]) + rec[n]
                vd = vb[n] + cm * ((vleak - vb[n]) + j)
                ib[n] = j + cs * j
                if adaptive:
                    bn = rho * bbv[n] + omr * zprev[n]
                    bbv[n] = bn
                    th = vth + beta[n] * bn
                else:
                    th = vth
                x = vd - th
                if scaled:
                    x = x / th
                    if adaptive:
                        TH[t, bb, n] = th
                xt[n] = x
                if refractory and rb[n] > 0:  # no spike, v held, counter down
                    REF[t, bb, n] = 1
                    zt[n] = 0
                    rb[n] = max(zero, rb[n] - coef[_ONE])
                    continue
                if refractory:
                    REF[t, bb, n] = 0
                if x > 0:
                    zt[n] = 1
                    vb[n] = vd - vth if subtract else vreset
                    spikes[n_spikes] = n
                    n_spikes += 1
                    if refractory:
                        rb[n] = n_refrac
                else:
                    zt[n] = 0
                    vb[n] = vd
                    if refractory:
                        rb[n] = zero
            zprev = zt


@nb.njit(**_backward_jit)
def backward(gz, S, X, TH, REF, z0, gv, gi, gb, crow_t, rows_t, vals_t, beta, coef, adaptive, subtract, refractory,
             surrogate, GJ, gw_t, gzc):
    """Backpropagate through T steps.

    gz [T, B, N] gradient of the spikes; X, TH, REF [T, B, N] from `forward` (z = X > 0 where not
    refractory); S [T, B, N] the surrogate derivative at X when ``surrogate == PRECOMPUTED`` (else
    unused: Norse's SuperSpike 1/(|x|+1)², Norse's triangle alpha·max(0, 1-|x|), Bellec's
    damp·max(0, 1-|x|/alpha), or LSNN-official's alpha·max(0, 1-|x|) on x = (v' - A)/A, with the
    chain rule through v' (1/A) and the threshold A (-v'/A² = -(1 + x)/A));
    z0 [B, N] initial spikes; gv, gi, gb [B, N] gradients of the final state on entry, of the
    initial state on exit; (crow_t, rows_t, vals_t) CSR of W_recᵀ with its values.

    Writes GJ [T, B, N] = ∂E/∂j (= the gradient of the input currents), gw_t [K] the recurrent weight
    gradient in Wᵀ's order, and gzc [N, B] = the gradient of z0 (neuron-major; workspace before).
    """
    T, B, N = X.shape
    recurrent = crow_t.shape[0] > 0
    cm, rho, omr, dvdv, didj = coef[_CM], coef[_RHO], coef[_OMR], coef[_DVDV], coef[_DIDJ]
    one, alpha, damp, vth = coef[_ONE], coef[_ALPHA], coef[_DAMP], coef[_VTH]
    zero = one - one
    gw_t[:] = 0
    gzc[:] = 0
    gzr = np.zeros((B, N), dtype=X.dtype)  # Wᵀ δj[t+1]: the recurrent part of ∂E/∂z[t]
    gza = np.zeros((B, N), dtype=X.dtype)  # (1 - rho) δb[t+1]: the adaptation part
    gjn = np.empty((N, B), dtype=X.dtype)  # δj[t], neuron-major
    zprev = np.empty((N, B), dtype=X.dtype)  # z[t-1], neuron-major
    fired = np.empty((N, B), dtype=np.int64)  # per neuron: the batch entries where it spiked at t-1
    n_blocks = (N + _BLOCK - 1) // _BLOCK
    for t in range(T - 1, -1, -1):
        # batch entry by batch entry: spike, reset, threshold, decay
        for bb in nb.prange(B):
            for n in range(N):
                if refractory and REF[t, bb, n] != 0:
                    # z = 0 and v = v[t-1]: the gradient of v passes through unchanged, v' gets none
                    gj = gi[bb, n] * didj
                    gi[bb, n] = gj
                    GJ[t, bb, n] = gj
                    if adaptive:
                        gbt = gb[bb, n]
                        gb[bb, n] = rho * gbt
                        gza[bb, n] = omr * gbt
                    continue
                x = X[t, bb, n]
                g = gz[t, bb, n] + gzr[bb, n] + gza[bb, n]
                if surrogate == SUPER:
                    d = abs(x) + one
                    gx = g / (d * d)
                elif surrogate == TRIANGLE:
                    gx = (g * alpha) * max(zero, one - abs(x))
                elif surrogate == BELLEC:
                    gx = g * (max(zero, one - abs(x) / alpha) * damp)
                elif surrogate == LSNN:
                    gx = g * (alpha * max(zero, one - abs(x)))
                else:
                    gx = g * S[t, bb, n]
                if surrogate == LSNN:  # x = (v' - A) / A
                    th = TH[t, bb, n] if adaptive else vth
                    gxv = gx / th
                    gth = -gxv * (one + x)
                else:  # x = v' - A
                    gxv = gx
                    gth = -gx
                if subtract or not x > 0:  # reset: v = v' - z v_th, or v = v' unless it spiked
                    gvp = gv[bb, n] + gxv
                else:
                    gvp = gxv
                gj = gi[bb, n] * didj + cm * gvp
                gv[bb, n] = gvp * dvdv
                gi[bb, n] = gj
                GJ[t, bb, n] = gj
                if adaptive:
                    gbt = gb[bb, n] + beta[n] * gth
                    gb[bb, n] = rho * gbt
                    gza[bb, n] = omr * gbt  # b[t] = rho b[t-1] + (1 - rho) z[t-1]
        if not recurrent:
            continue
        for blk in nb.prange(n_blocks):  # blocked transposes of δj[t] and z[t-1]
            for bb in range(B):
                for n in range(blk * _BLOCK, min(N, (blk + 1) * _BLOCK)):
                    gjn[n, bb] = GJ[t, bb, n]
                    if t == 0:
                        zprev[n, bb] = z0[bb, n]
                    elif X[t - 1, bb, n] > 0 and not (refractory and REF[t - 1, bb, n] != 0):
                        zprev[n, bb] = one
                    else:
                        zprev[n, bb] = zero
        # presynaptic neuron by neuron: Wᵀ δj into ∂E/∂z[t-1], and the weight gradient
        for c in nb.prange(N):
            nf = 0
            for bb in range(B):
                gzc[c, bb] = zero
                if zprev[c, bb] != 0:
                    fired[c, nf] = bb
                    nf += 1
            for q in range(crow_t[c], crow_t[c + 1]):
                r = rows_t[q]
                w = vals_t[q]
                for bb in range(B):
                    gzc[c, bb] += w * gjn[r, bb]
                for f in range(nf):
                    gw_t[q] += gjn[r, fired[c, f]] * zprev[c, fired[c, f]]
        for blk in nb.prange(n_blocks):
            for bb in range(B):
                for n in range(blk * _BLOCK, min(N, (blk + 1) * _BLOCK)):
                    gzr[bb, n] = gzc[n, bb]
    # ∂E/∂z0
    for n in nb.prange(N):
        for bb in range(B):
            gzc[n, bb] = gzr[bb, n] + gza[bb, n]
