"""Batched, bit-exact emulation of the Lava graphs (numpy; no lava import), for whole splits.

Lava's CPU simulator runs one process per population and exchanges messages every step
(hundreds of steps per second); scoring a whole test split with it takes minutes to hours.
The emulator computes the same integers as the ``fixed_pt`` graph, vectorised over sequences
(one numpy operation per step and population for the whole batch), so a full split takes
seconds. :func:`emulate_fixed` is tested bit for bit against the Lava run (spikes of every
layer and the raw readout, LIF and ALIF, several sequences per lane with resets); the float
counterpart is :func:`lava_backend.reference.reference_float`, equal to the ``floating_pt``
graph spike for spike.

Integer semantics (what Lava 0.10's bit-accurate models compute; see :mod:`.quantize`):

* synaptic input ``a = (W2 @ s) << e`` or ``>> -e`` (arithmetic, i.e. floor), ``W2 = 2*m``
  (the first layer's matrix carries the rounding column, the input the constant payload 1);
* ``u = trunc(u * (4095 - du) / 4096) + (a << 6)``, wrapped to 24 bits;
* ``v = clip(trunc(v * (4096 - dv) / 4096) + u + bias, ±(2**23 - 1))``;
* ALIF ``b = min(trunc(b * (4096 - dth) / 4096) + jump * z[t-1], 2**23 - 1)``;
* ``z = v > (vth << 6) + b``, then ``v = 0`` where z (``subtract``: ``v -= v_sub``);
* ``refractory = R``: a counter r; where r > 0 no spike, v keeps its previous value, r -= 1;
  a spike sets r = R;
* LI readout: as u, v above, output ``v + out_bias``; linear readout ``a + out_bias``. With
  ``n_repeat = n`` the layers run n steps per frame and the readout adds up its synaptic input
  ``a`` over the frame's n steps (weights quantised from W / n) and updates once per frame.

Every sequence starts from u = 0, v = v_init, b = 0, z[-1] = 0 (Lava resets these at each
sequence start); outputs past ``lengths[k]`` are zero.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from lava_backend.params import SimulationResult, check_input

_LIM = 2 ** 23


def _shift(a, e):
    """Lava Sparse bit-accurate exponent: a << e for e > 0, else arithmetic a >> -e."""
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)


def _decay(x, d):
    """sign(x) * ((|x| * (4096 - d)) >> 12): Lava's decay, truncating toward zero."""
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def _wrap(u):
    """Lava's 24-bit wrap of the current u."""
    return np.where(u > _LIM, u - 2 * _LIM, np.where(u <= -_LIM, u + 2 * _LIM, u))


def refractory_step(s, v, v_prev, r, steps):
    """Refractory period, in place on v and the counter r (float or integer arrays alike): neurons
    with r > 0 do not spike and keep v_prev, their r counts down; neurons that spike get r = steps.
    Returns the spikes."""
    ref = r > 0
    s = s & ~ref
    v[ref] = v_prev[ref]
    r[ref] -= 1
    r[s] = steps
    return s


def _int_spmm(csr_int, s):
    """W [n_out, n_in] (int64 CSR) @ s [N, n_in] -> [N, n_out] int64."""
    return np.asarray(csr_int @ s.T).T.astype(np.int64)


def emulate_fixed(q, x, lengths=None) -> SimulationResult:
    """Bit-exact integer simulation of the fixed_pt graph of ``q`` (a QuantizedNetwork) on
    x [N, T, F] (real values, quantised here exactly as the Lava source does).

    Returns spikes per layer [N, T * n_repeat, n] (uint8) and the readout [N, T, C], dequantised
    (``readout``) and raw (``readout_int``).
    """
    spec = q.spec
    x, lengths = check_input(spec.n_input, x, lengths)
    nr = q.form.n_repeat
    N, T_frames, _ = x.shape
    valid_frames = (np.arange(T_frames)[None, :] < lengths[:, None])
    T, valid = T_frames * nr, np.repeat(valid_frames, nr, axis=1)
    inp = np.repeat(q.quantize_input(x), nr, axis=1)
    outs = []
    for ql in q.layers:
        n = ql.n
        W_in = ql.w_in.lava_csr().astype(np.int64)
        W_rec = None if ql.w_rec is None else ql.w_rec.lava_csr().astype(np.int64)
        u = np.zeros((N, n), dtype=np.int64)
        v = np.full((N, n), ql.v_init, dtype=np.int64)
        b = np.zeros((N, n), dtype=np.int64)
        z = np.zeros((N, n), dtype=np.int64)
        r = np.zeros((N, n), dtype=np.int64)
        bias = (ql.bias_mant << ql.bias_exp) if ql.bias_exp >= 0 else \
            (ql.bias_mant >> -ql.bias_exp)
        vth = ql.vth << 6
        out = np.zeros((N, T, n), dtype=np.uint8)
        for t in range(T):
            a = _shift(_int_spmm(W_in, inp[:, t]), ql.w_in.weight_exp)
            if W_rec is not None:
                a = a + _shift(_int_spmm(W_rec, z), ql.w_rec.weight_exp)
            u = _wrap(_decay(u, ql.du + 1) + (a << 6))
            v_prev = v
            v = np.clip(_decay(v, ql.dv) + u + bias, -_LIM + 1, _LIM - 1)
            b = np.minimum(_decay(b, ql.dth) + ql.beta * z, _LIM - 1)
            s = v > vth + b
            if ql.refractory:
                s = refractory_step(s, v, v_prev, r, ql.refractory)
            if ql.subtract:
                v[s] -= ql.v_sub
            else:
                v[s] = 0
            z = s.astype(np.int64)
            out[:, t] = s
        out[~valid] = 0
        outs.append(out)
        inp = out.astype(np.int64)
    R = q.readout
    W = R.w.lava_csr().astype(np.int64)
    C = R.n_out
    T, valid = T_frames, valid_frames  # the readout updates once per frame
    yi = np.zeros((N, T, C), dtype=np.int64)
    u = np.zeros((N, C), dtype=np.int64)
    v = np.full((N, C), R.v_init, dtype=np.int64)
    bias = R.bias_mant << R.bias_exp
    for t in range(T):
        a = sum(_shift(_int_spmm(W, inp[:, t * nr + k]), R.w.weight_exp) for k in range(nr))
        if R.kind == "linear":
            yi[:, t] = a + R.out_bias
            continue
        u = _wrap(_decay(u, R.du + 1) + (a << 6))
        v = np.clip(_decay(v, R.dv) + u + bias, -_LIM + 1, _LIM - 1)
        yi[:, t] = v + R.out_bias
    yi[~valid] = 0
    return SimulationResult(layers=outs, readout=q.dequantize_readout(yi), lengths=lengths,
                            readout_int=yi)


def emulate(spec, x, lengths=None, precision: str = "fixed", quant=None) -> SimulationResult:
    """The Lava graph's results without Lava: ``emulate_fixed(quant, ...)`` for "fixed",
    ``reference_float(spec, ...)`` (the floating_pt graph in float64) for "float"."""
    if precision == "fixed":
        if quant is None:
            raise ValueError("emulate: precision 'fixed' needs a QuantizedNetwork (quant=)")
        return emulate_fixed(quant, x, lengths)
    if precision == "float":
        from lava_backend.reference import reference_float

        return reference_float(spec, x, lengths)
    raise ValueError(f"precision must be 'float' or 'fixed', got {precision!r}")


def length_batches(lengths, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of the sequences in batches of similar length (longest first), so that the
    padded steps a batch computes stay few."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    for i in range(0, order.size, max(1, int(batch_size))):
        yield order[i:i + batch_size]
