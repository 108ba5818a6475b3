"""Numba CPU kernels for the whole-sequence sparse LSTM (see `lstm_recurrence.py` for the maths).

Forward: `input_gates` computes W_ih x[t] + b for all T steps at once (parallel over (t, row));
then one `recurrent_gates` call per step adds W_hh h[t-1]. The nonlinearities and the cell update
are torch's vectorised operations between the calls (numba's scalar libm exp/tanh cost more than
the synapses). Backward: one kernel for all T steps; it needs no transcendental function.

Layout: every per-step tensor is neuron-major ([rows, B], batch innermost), so each synapse is one
unit-stride axpy / dot over the batch (SIMD) and a step's state ([H, B]) stays in L2. Backward
runs the gate derivatives over hidden units, then, over presynaptic units (CSR of Wᵀ), the input
gradient Wᵀδ and the weight gradient together — for W_hh and W_ih in the same parallel loop: one
pass over all synapses per step with δ of the step still in cache, no atomics (each synapse
belongs to one presynaptic unit).

``one`` is a 1-element array of the state's dtype, so float32 arithmetic stays float32.
"""
from __future__ import annotations

import numba as nb

_jit = dict(parallel=True, cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz", "contract"})


@nb.njit(inline="always")
def _row_product(acc, r, x, lo, hi, cols, vals, zero):
    """acc[r] [B] = Σ_{k in lo..hi} vals[k] x[cols[k]] (from zero, in CSR order); x [n_in, B]."""
    B = acc.shape[1]
    for b in range(B):
        acc[r, b] = zero
    for k in range(lo, hi):
        w = vals[k]
        c = cols[k]
        for b in range(B):
            acc[r, b] += w * x[c, b]


@nb.njit(**_jit)
def input_gates(XT, crow, cols, vals, bias, zero_arr, GX):
    """GX[t] = W_ih XT[t] + bias for all steps: XT [T, F, B], (crow, cols, vals) CSR of W_ih [4H, F],
    bias [4H] (zeros for none) -> GX [T, 4H, B]. ``zero_arr``: [0] in the dtype."""
    T, G, B = GX.shape
    zero = zero_arr[0]
    for tr in nb.prange(T * G):
        t, r = tr // G, tr % G
        gx = GX[t]
        _row_product(gx, r, XT[t], crow[r], crow[r + 1], cols, vals, zero)
        for b in range(B):
            gx[r, b] = gx[r, b] + bias[r]


@nb.njit(**_jit)
def recurrent_gates(gx, hp, crow, cols, vals, zero_arr, out):
    """One step's gate pre-activations out = gx + W_hh hp, [4H, B]: gx [4H, B] from `input_gates`,
    hp [H, B] h[t-1], (crow, cols, vals) CSR of the joint W_hh [4H, H] (gate order i, f, g, o).
    The recurrent sum runs from zero and is added to gx last (as `lstm_step`)."""
    G, B = out.shape
    zero = zero_arr[0]
    for r in nb.prange(G):
        _row_product(out, r, hp, crow[r], crow[r + 1], cols, vals, zero)
        for b in range(B):
            out[r, b] = gx[r, b] + out[r, b]


@nb.njit(inline="always")
def _column_backward(d, x, c, dg, lo, hi, rows_t, vals_t, gw_t, zero):
    """For presynaptic unit (column) c with input x[c] [B]: d[c] [B] = Σ_q vals_t[q] dg[rows_t[q]] (its
    input gradient Wᵀδ) and gw_t[q] += Σ_b dg[rows_t[q], b] x[c, b] (its synapses' weight gradient)."""
    B = d.shape[1]
    for b in range(B):
        d[c, b] = zero
    for q in range(lo, hi):
        w = vals_t[q]
        r = rows_t[q]
        s = zero
        for b in range(B):
            d[c, b] += w * dg[r, b]
            s += dg[r, b] * x[c, b]
        gw_t[q] += s


@nb.njit(**_jit)
def backward(GH, A, Cs, TC, Hs, h0, c0, XT, crow_t, rows_t, vals_t, crow_ti, rows_ti, vals_ti, one_arr,
             dg, DX, gw_t, gwi_t, gbias, dh, dc):
    """Backpropagate through T steps.

    GH [T, H, B] gradient of the outputs; A [T, 4H, B] gate activations (σ(i), σ(f), tanh(g), σ(o));
    Cs, TC, Hs [T, H, B] cell states c[t], tanh(c[t]) and outputs h[t]; h0, c0 [H, B]; XT [T, F, B]
    the input; (crow_t, rows_t, vals_t) CSR of W_hhᵀ [H, 4H] and (crow_ti, rows_ti, vals_ti) CSR of
    W_ihᵀ [F, 4H] with their values. ``dc`` [H, B] holds the gradient of the final cell state on
    entry.

    Writes DX [T, F, B] the input gradient, gw_t /
    gwi_t the weight gradients of W_hh / W_ih in Wᵀ's order, gbias [4H] = Σ_t Σ_b DG, and on exit
    dh, dc [H, B] = the gradients of h0 and c0. ``dg`` [4H, B] is the workspace for ∂E/∂(gate
    pre-activations) of one step."""
    T, G, B = A.shape
    H = G // 4
    F = XT.shape[1]
    one = one_arr[0]
    zero = one - one
    gw_t[:] = 0
    gwi_t[:] = 0
    gbias[:] = 0
    dh[:] = 0  # W_hhᵀ δ[t+1]: the recurrent part of ∂E/∂h[t]
    for t in range(T - 1, -1, -1):
        at, gh = A[t], GH[t]
        cp = c0 if t == 0 else Cs[t - 1]
        hp = h0 if t == 0 else Hs[t - 1]
        for n in nb.prange(H):
            si = sf = sg = so = zero
            for b in range(B):
                i, f, g, o = at[n, b], at[H + n, b], at[2 * H + n, b], at[3 * H + n, b]
                tc = TC[t, n, b]
                d_h = gh[n, b] + dh[n, b]
                d_c = dc[n, b] + d_h * o * (one - tc * tc)
                di = d_c * g * i * (one - i)
                df = d_c * cp[n, b] * f * (one - f)
                dgg = d_c * i * (one - g * g)
                do = d_h * tc * o * (one - o)
                dg[n, b], dg[H + n, b], dg[2 * H + n, b], dg[3 * H + n, b] = di, df, dgg, do
                si, sf, sg, so = si + di, sf + df, sg + dgg, so + do
                dc[n, b] = d_c * f
            gbias[n] += si
            gbias[H + n] += sf
            gbias[2 * H + n] += sg
            gbias[3 * H + n] += so
        # presynaptic units: h[t-1] (W_hh: ∂E/∂h[t-1], weight gradient), then x[t] (W_ih)
        for c in nb.prange(H + F):
            if c < H:
                _column_backward(dh, hp, c, dg, crow_t[c], crow_t[c + 1], rows_t, vals_t, gw_t, zero)
            else:
                j = c - H
                _column_backward(DX[t], XT[t], j, dg, crow_ti[j], crow_ti[j + 1], rows_ti, vals_ti, gwi_t, zero)
