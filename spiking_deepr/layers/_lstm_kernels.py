"""Numba CPU kernels for the whole-sequence sparse LSTM (see `lstm_recurrence.py` for the maths).

Layout: every per-step tensor is neuron-major ([rows, B], batch innermost), so each synapse is one
unit-stride axpy / dot over the batch (SIMD) and a step's state ([H, B]) stays in L2. Each step is
parallel over hidden units: unit n owns the four gate rows n, H+n, 2H+n, 3H+n of the joint [4H, H]
recurrent matrix, so forward needs no synchronisation inside a step. Backward runs the gate
derivatives over units, then Wᵀδ and the weight gradient together over presynaptic units (CSR of
W_hhᵀ): one pass over the synapses per step, δ of the step still in cache, no atomics (each synapse
belongs to one presynaptic unit).

``one`` is a 1-element array of the state's dtype, so float32 arithmetic stays float32.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

# no "nnan"/"ninf": exp(-x) overflows to inf for very negative gates and 1/(1+inf) = 0 must hold
_jit = dict(parallel=True, cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz", "contract"})


@nb.njit(inline="always")
def _sigmoid(x, one):
    return one / (one + math.exp(-x))


@nb.njit(**_jit)
def forward(GX, h0, c0, crow, cols, vals, one_arr, A, Hs, Cs):
    """Run T steps.

    GX [T, 4H, B] input part of the gate pre-activations (W_ih x[t] + b); h0, c0 [H, B] initial
    state; (crow, cols, vals) CSR of the joint W_hh [4H, H] (gate order i, f, g, o).

    Writes A [T, 4H, B] gate activations (σ(i), σ(f), tanh(g), σ(o)), Hs [T, H, B] outputs h[t],
    Cs [T, H, B] cell states c[t]."""
    T, G, B = GX.shape
    H = G // 4
    one = one_arr[0]
    for t in range(T):
        hp = h0 if t == 0 else Hs[t - 1]
        cp = c0 if t == 0 else Cs[t - 1]
        at, gx, ht, ct = A[t], GX[t], Hs[t], Cs[t]
        for n in nb.prange(H):
            for gate in range(4):  # W_hh h[t-1] for the unit's four rows, accumulated in A
                r = gate * H + n
                acc = at[r]
                acc[:] = 0
                for k in range(crow[r], crow[r + 1]):
                    w = vals[k]
                    hc = hp[cols[k]]
                    for b in range(B):
                        acc[b] += w * hc[b]
            for b in range(B):
                i = _sigmoid(gx[n, b] + at[n, b], one)
                f = _sigmoid(gx[H + n, b] + at[H + n, b], one)
                g = math.tanh(gx[2 * H + n, b] + at[2 * H + n, b])
                o = _sigmoid(gx[3 * H + n, b] + at[3 * H + n, b], one)
                c = f * cp[n, b] + i * g
                at[n, b], at[H + n, b], at[2 * H + n, b], at[3 * H + n, b] = i, f, g, o
                ct[n, b] = c
                ht[n, b] = o * math.tanh(c)


@nb.njit(**_jit)
def backward(GH, A, Hs, Cs, h0, c0, crow_t, rows_t, vals_t, one_arr, DG, gw_t, dh, dc):
    """Backpropagate through T steps.

    GH [T, H, B] gradient of the outputs; A, Hs, Cs from `forward`; h0, c0 [H, B]; (crow_t, rows_t,
    vals_t) CSR of W_hhᵀ [H, 4H] with its values. ``dc`` [H, B] holds the gradient of the final
    cell state on entry.

    Writes DG [T, 4H, B] = ∂E/∂(gate pre-activations) (= the gradient of GX), gw_t [K] the weight
    gradient in Wᵀ's order, and on exit dh, dc [H, B] = the gradients of h0 and c0."""
    T, G, B = A.shape
    H = G // 4
    one = one_arr[0]
    gw_t[:] = 0
    dh[:] = 0  # W_hhᵀ δ[t+1]: the recurrent part of ∂E/∂h[t]
    for t in range(T - 1, -1, -1):
        at, dg, gh = A[t], DG[t], GH[t]
        cp = c0 if t == 0 else Cs[t - 1]
        hp = h0 if t == 0 else Hs[t - 1]
        for n in nb.prange(H):
            for b in range(B):
                i, f, g, o = at[n, b], at[H + n, b], at[2 * H + n, b], at[3 * H + n, b]
                tc = math.tanh(Cs[t, n, b])
                d_h = gh[n, b] + dh[n, b]
                d_c = dc[n, b] + d_h * o * (one - tc * tc)
                dg[n, b] = d_c * g * i * (one - i)
                dg[H + n, b] = d_c * cp[n, b] * f * (one - f)
                dg[2 * H + n, b] = d_c * i * (one - g * g)
                dg[3 * H + n, b] = d_h * tc * o * (one - o)
                dc[n, b] = d_c * f
        for c in nb.prange(H):  # W_hhᵀ δ[t] into ∂E/∂h[t-1], and Σ_b δ[t] h[t-1] per synapse
            d = dh[c]
            d[:] = 0
            hc = hp[c]
            for q in range(crow_t[c], crow_t[c + 1]):
                w = vals_t[q]
                dr = dg[rows_t[q]]
                s = one - one
                for b in range(B):
                    d[b] += w * dr[b]
                    s += dr[b] * hc[b]
                gw_t[q] += s
