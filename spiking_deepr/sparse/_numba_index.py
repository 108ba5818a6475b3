"""Numba CPU kernels that maintain a SparseMatrix's index set: each is one O(K) pass where the torch
formulation needs several K-sized sorts, searches, gathers and scatters (see `matrix.py`).

A DEEP R step changes a few hundred of K ~ 10⁵ entries, so these passes are what a rewiring costs.
"""
from __future__ import annotations

import numba as nb

_jit = dict(cache=True, boundscheck=False, nogil=True)


@nb.njit(**_jit)
def merge(indices, keep, new, out, source, new_slots):
    """Sorted union of the kept old positions and ``new`` (sorted, disjoint from them).

    indices [K] sorted positions, keep [K] bool, new [n] sorted; writes out [K'] (positions),
    source [K'] (the old entry number each slot comes from, -1 for a new position) and
    new_slots [n] (the slots of the new positions)."""
    K, n = indices.shape[0], new.shape[0]
    i = j = s = 0
    while True:
        while i < K and not keep[i]:
            i += 1
        if i < K and (j >= n or indices[i] < new[j]):
            out[s] = indices[i]
            source[s] = i
            i += 1
        elif j < n:
            out[s] = new[j]
            source[s] = -1
            new_slots[j] = s
            j += 1
        else:
            break
        s += 1


@nb.njit(**_jit)
def carry(values, source, out):
    """out[s] = values[source[s]], or 0 where source[s] < 0 (a new entry)."""
    for s in range(source.shape[0]):
        k = source[s]
        out[s] = values[k] if k >= 0 else 0


@nb.njit(**_jit)
def csr_structures(indices, n_in, crow, cols, crow_t, rows_t, perm_t):
    """CSR of W and of Wᵀ from sorted linear positions (row * n_in + col), by counting sort.

    Writes crow [n_out+1], cols [K]; crow_t [n_in+1], rows_t [K], perm_t [K] (entry q of Wᵀ is entry
    perm_t[q] of W). Positions are sorted by (row, col), so a stable pass by column leaves the rows
    of every column ascending: the same order as sorting by (col, row)."""
    K = indices.shape[0]
    crow[:] = 0
    crow_t[:] = 0
    for k in range(K):
        r = indices[k] // n_in
        c = indices[k] - r * n_in
        cols[k] = c
        crow[r + 1] += 1
        crow_t[c + 1] += 1
    for r in range(crow.shape[0] - 1):
        crow[r + 1] += crow[r]
    for c in range(crow_t.shape[0] - 1):
        crow_t[c + 1] += crow_t[c]
    fill = crow_t[:-1].copy()
    for k in range(K):
        c = cols[k]
        q = fill[c]
        fill[c] = q + 1
        rows_t[q] = indices[k] // n_in
        perm_t[q] = k

