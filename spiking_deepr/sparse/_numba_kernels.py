"""Numba CPU kernels for the three products of a sparse layer (see `kernels.py` for the maths).

All work on a CSR structure (crow [n_out+1], cols [K], vals [K]) and row-major dense operands.
Large inputs are cut into chunks of ``CHUNK`` rows that each thread transposes into a small
contiguous buffer, so the inner loop is a unit-stride axpy / dot over the chunk (SIMD) and the
chunk stays in L2. Small inputs (one time step of a batch) are parallelised over output rows.
"""
from __future__ import annotations

import numba as nb
import numpy as np

CHUNK = 64  # rows of the dense operand handled together; 64 floats = 4 cache lines per synapse

_jit = dict(parallel=True, fastmath=True, cache=True, boundscheck=False, nogil=True)


@nb.njit(**_jit)
def spmm(crow, cols, vals, perm, x, out, threads):
    """out[r, i] = sum_{k in row i} w[k] * x[r, cols[k]];  x [R, n_in], out [R, n_out].

    w[k] = vals[perm[k]] when ``perm`` is non-empty (the CSR of Wᵀ reads W's values in place, no
    permuted copy per call), else vals[k].

    ``threads``: numba's thread count (passed in: reading it inside a cached kernel is not allowed)."""
    R, n_in = x.shape
    n_out = crow.shape[0] - 1
    indirect = perm.shape[0] > 0
    n_chunks = (R + CHUNK - 1) // CHUNK
    if n_chunks >= 2 * threads:
        for ch in nb.prange(n_chunks):
            r0 = ch * CHUNK
            n = min(R, r0 + CHUNK) - r0
            xt = np.zeros((n_in, CHUNK), dtype=x.dtype)
            for r in range(n):
                for j in range(n_in):
                    xt[j, r] = x[r0 + r, j]
            acc = np.empty(CHUNK, dtype=x.dtype)
            yt = np.empty((n_out, CHUNK), dtype=x.dtype)
            for i in range(n_out):
                acc[:] = 0
                for k in range(crow[i], crow[i + 1]):
                    w = vals[perm[k]] if indirect else vals[k]
                    c = cols[k]
                    for r in range(CHUNK):
                        acc[r] += w * xt[c, r]
                yt[i, :] = acc
            for r in range(n):
                for i in range(n_out):
                    out[r0 + r, i] = yt[i, r]
    else:
        xt = np.ascontiguousarray(x.T)
        yt = np.zeros((n_out, R), dtype=x.dtype)
        for i in nb.prange(n_out):
            for k in range(crow[i], crow[i + 1]):
                w = vals[perm[k]] if indirect else vals[k]
                c = cols[k]
                for r in range(R):
                    yt[i, r] += w * xt[c, r]
        out[:, :] = yt.T


@nb.njit(**_jit)
def sddmm(crow, cols, d, x, parts):
    """Partial sums of g[k] = sum_r d[r, row_k] * x[r, cols[k]] (sum ``parts`` over axis 0).

    d [R, n_out], x [R, n_in]; parts [P, K] float, one partial per parallel task (no atomics).
    """
    R, n_in = x.shape
    n_out = d.shape[1]
    n_chunks = (R + CHUNK - 1) // CHUNK
    n_parts = parts.shape[0]
    if n_parts == 1:  # small input: one dot product of length R per synapse, rows in parallel
        xt = np.ascontiguousarray(x.T)
        dt = np.ascontiguousarray(d.T)
        g = parts[0]
        for i in nb.prange(n_out):
            for k in range(crow[i], crow[i + 1]):
                c = cols[k]
                s = 0.0
                for r in range(R):
                    s += dt[i, r] * xt[c, r]
                g[k] = s
        return
    per = (n_chunks + n_parts - 1) // n_parts
    for p in nb.prange(n_parts):
        g = parts[p]
        g[:] = 0
        xt = np.zeros((n_in, CHUNK), dtype=x.dtype)
        dt = np.zeros((n_out, CHUNK), dtype=x.dtype)
        for ch in range(p * per, min(n_chunks, (p + 1) * per)):
            r0 = ch * CHUNK
            n = min(R, r0 + CHUNK) - r0
            if n < CHUNK:
                xt[:] = 0
                dt[:] = 0
            for r in range(n):
                for j in range(n_in):
                    xt[j, r] = x[r0 + r, j]
                for i in range(n_out):
                    dt[i, r] = d[r0 + r, i]
            for i in range(n_out):
                for k in range(crow[i], crow[i + 1]):
                    c = cols[k]
                    s = 0.0
                    for r in range(CHUNK):
                        s += dt[i, r] * xt[c, r]
                    g[k] += s


def num_parts(rows: int) -> int:
    """How many partial gradient buffers `sddmm` should use for an input of ``rows`` rows."""
    threads = nb.get_num_threads()
    if threads == 1 or -(-rows // CHUNK) < 2 * threads:
        return 1
    return threads


@nb.njit(**_jit)
def spmm_events(crow_t, rows_t, perm_t, vals, x, out):
    """Event-driven out[r, :] = sum_{j: x[r, j] != 0} x[r, j] * W[:, j], W given by the CSR of Wᵀ
    (crow_t, rows_t). Entry q's value is vals[perm_t[q]] (W's own order) when ``perm_t`` is non-empty,
    else vals[q] (already in Wᵀ order). Work ∝ nonzeros of x × fan-out: the spike-driven product."""
    R, n_in = x.shape
    indirect = perm_t.shape[0] > 0
    for r in nb.prange(R):
        out[r, :] = 0
        for j in range(n_in):
            a = x[r, j]
            if a != 0:
                for q in range(crow_t[j], crow_t[j + 1]):
                    w = vals[perm_t[q]] if indirect else vals[q]
                    out[r, rows_t[q]] += a * w


@nb.njit(**_jit)
def sddmm_events(crow_t, rows_t, perm_t, d, x, parts_t, g):
    """Event-driven weight gradient g[k] = sum_{r: x[r, j] != 0} x[r, j] * d[r, row_k] (entry k of
    column j), written into g [K] in W's (CSR) order.

    Each parallel task takes a block of rows and accumulates into its own partial parts_t[p] in Wᵀ
    order (contiguous per input column, cache friendly); one final pass sums the partials and scatters
    them to CSR order through perm_t."""
    R, n_in = x.shape
    n_parts = parts_t.shape[0]
    per = (R + n_parts - 1) // n_parts
    for p in nb.prange(n_parts):
        acc = parts_t[p]
        acc[:] = 0
        for r in range(p * per, min(R, (p + 1) * per)):
            for j in range(n_in):
                a = x[r, j]
                if a != 0:
                    for q in range(crow_t[j], crow_t[j + 1]):
                        acc[q] += a * d[r, rows_t[q]]
    for q in nb.prange(perm_t.shape[0]):
        total = 0.0
        for p in range(n_parts):
            total += parts_t[p, q]
        g[perm_t[q]] = total
