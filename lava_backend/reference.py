"""Pure-numpy reference simulators of a NetworkSpec (no lava import).

* ``reference_float(spec, x, lengths, form="lava")``: float64, in Lava's LIF form
  (:mod:`.params`), operation for operation what the floating_pt Lava graph computes, so the
  Lava run matches it spike for spike. ``form="spec"`` evaluates the literal equations of the
  spec docstrings (Norse i / v variables) instead -- mathematically identical, used to check
  the mapping and to compare against PyTorch.
* ``reference_fixed(q, x, lengths)``: integer semantics of the fixed_pt graph, bit-exact;
  it is :func:`lava_backend.emulator.emulate_fixed` (re-exported here).

With ``spec.n_repeat = n`` each frame is repeated n times, the layers run T·n steps (their
outputs come back at that rate) and the readout runs once per frame: "lava" form on the sum of
its synaptic input over the frame's steps with weights W/n, "spec" form on the mean output.

Every sequence starts from i = 0 (u = 0), v = v_leak, b = 0, z[-1] = 0, r = 0 (LSTM h = c = 0).
Outputs past ``lengths[k]`` are zero. Synapse delays do not exist here: layer l at step t sees
layer l-1's output of step t and its own output of step t-1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from spiking_deepr.export import NetworkSpec

from lava_backend.emulator import emulate_fixed as reference_fixed  # noqa: F401 (re-export)
from lava_backend.emulator import refractory_step
from lava_backend.params import SimulationResult, check_input, lava_form


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _spmm(w, s):
    """W [n_out, n_in] (csr) @ s [N, n_in] -> [N, n_out] with scipy's row-order sums."""
    return np.asarray(w @ s.T).T


def _update_stats(st, key, arr):
    st[key] = max(st.get(key, 0.0), float(np.abs(arr).max()) if arr.size else 0.0)


def reference_float(spec: NetworkSpec, x, lengths=None, form: str = "lava",
                    stats: Optional[dict] = None) -> SimulationResult:
    """Float64 simulation of ``spec`` on x [N, T, F]; see module docstring."""
    x, lengths = check_input(spec.n_input, x, lengths)
    if form not in ("lava", "spec"):
        raise ValueError(f"form must be 'lava' or 'spec', got {form!r}")
    lf = lava_form(spec)
    nr = lf.n_repeat
    N, T_frames, _ = x.shape
    valid_frames = (np.arange(T_frames)[None, :] < lengths[:, None])  # [N, T]
    T = T_frames * nr  # simulation steps
    valid = np.repeat(valid_frames, nr, axis=1)
    inp = np.repeat(x, nr, axis=1)
    outs = []
    lstats = []
    for L, ls in zip(lf.layers, spec.layers):
        st = {}
        if L.kind == "lstm":
            H = L.n
            h = np.zeros((N, H))
            c = np.zeros((N, H))
            out = np.zeros((N, T, H))
            for t in range(T):
                gates = _spmm(L.w_in, inp[:, t]) + _spmm(L.w_rec, h) + L.lstm_bias
                i = _sigmoid(gates[:, :H])
                f = _sigmoid(gates[:, H:2 * H])
                g = np.tanh(gates[:, 2 * H:3 * H])
                o = _sigmoid(gates[:, 3 * H:])
                c = f * c + i * g
                h = o * np.tanh(c)
                out[:, t] = h
            _update_stats(st, "max_abs_v", out)
            st.setdefault("max_abs_u", 0.0)
        else:
            n = L.n
            z = np.zeros((N, n))
            b = np.zeros((N, n))
            r = np.zeros((N, n), dtype=np.int64)
            out = np.zeros((N, T, n), dtype=np.uint8)
            if form == "lava":
                u = np.zeros((N, n))
                v = np.full((N, n), L.v_init)
                for t in range(T):
                    a = _spmm(L.w_in, inp[:, t])
                    if L.w_rec is not None:
                        a = a + _spmm(L.w_rec, z)
                    u = u * (1 - L.du)
                    u += a
                    v_prev = v
                    v = v * (1 - L.dv) + u + L.bias
                    b = L.rho * b + (1 - L.rho) * z
                    s = v > L.vth + L.beta * b
                    if L.refractory:
                        s = refractory_step(s, v, v_prev, r, L.refractory)
                    if L.subtract:
                        v[s] -= L.v_sub
                    else:
                        v[s] = 0
                    z = s.astype(np.float64)
                    out[:, t] = s
                    if stats is not None:
                        _update_stats(st, "max_abs_u", u[valid[:, t]])
                        _update_stats(st, "max_abs_v", v[valid[:, t]])
            else:
                ls_ = ls
                dt = spec.dt
                tsi, tmi = float(np.asarray(ls_.tau_syn_inv).reshape(-1)[0]), \
                    float(np.asarray(ls_.tau_mem_inv).reshape(-1)[0])
                v_th, v_leak, v_reset = (float(np.asarray(p).reshape(-1)[0]) for p in
                                         (ls_.v_th, ls_.v_leak, ls_.v_reset))
                W_in = _unscaled(ls_.w_in)
                W_rec = None if ls_.w_rec is None else _unscaled(ls_.w_rec)
                beta = L.beta
                i_cur = np.zeros((N, n))
                v = np.full((N, n), v_leak)
                for t in range(T):
                    i_jump = i_cur + _spmm(W_in, inp[:, t])
                    if W_rec is not None:
                        i_jump = i_jump + _spmm(W_rec, z)
                    v_new = v + dt * tmi * ((v_leak - v) + i_jump)
                    i_cur = i_jump * (1 - dt * tsi)
                    b = L.rho * b + (1 - L.rho) * z
                    s = v_new > v_th + beta * b
                    if L.refractory:
                        s = refractory_step(s, v_new, v, r, L.refractory)
                    v = np.where(s, v_new - v_th if L.subtract else v_reset, v_new)
                    z = s.astype(np.float64)
                    out[:, t] = s
        out[~valid] = 0
        outs.append(out)
        lstats.append(st)
        inp = out.astype(np.float64)
    R = lf.readout
    C = R.n_out
    T, valid = T_frames, valid_frames  # the readout runs once per frame
    y = np.zeros((N, T, C))
    rst = {}
    if form == "lava":
        def frame_input(t):  # the readout's synaptic input summed over the frame's steps, in order
            a = _spmm(R.w, inp[:, t * nr])
            for k in range(1, nr):
                a = a + _spmm(R.w, inp[:, t * nr + k])
            return a
    else:
        W = _unscaled(spec.readout.weights)
        pooled = inp.reshape(N, T, nr, -1).mean(axis=2) if nr > 1 else inp

        def frame_input(t):
            return _spmm(W, pooled[:, t])
    if R.kind == "linear":
        for t in range(T):
            y[:, t] = frame_input(t) + R.out_bias
        rst["max_abs_u"] = 0.0
        _update_stats(rst, "max_abs_v", y[valid])
    elif form == "lava":
        u = np.zeros((N, C))
        v = np.full((N, C), R.v_init)
        for t in range(T):
            u = u * (1 - R.du)
            u += frame_input(t)
            v = v * (1 - R.dv) + u + R.bias_v
            y[:, t] = v + R.out_bias
            if stats is not None:
                _update_stats(rst, "max_abs_u", u[valid[:, t]])
                _update_stats(rst, "max_abs_v", v[valid[:, t]])
    else:
        ro = spec.readout
        dt = spec.dt
        i_cur = np.zeros((N, C))
        v = np.full((N, C), float(ro.v_leak))
        for t in range(T):
            i_jump = i_cur + frame_input(t)
            v = v + dt * ro.tau_mem_inv * ((ro.v_leak - v) + i_jump)
            i_cur = i_jump * (1 - dt * ro.tau_syn_inv)
            y[:, t] = v + R.out_bias
    y[~valid] = 0
    if stats is not None:
        stats["layers"] = lstats
        stats["readout"] = rst
    return SimulationResult(layers=outs, readout=y, lengths=lengths)


def _unscaled(w):
    from lava_backend.params import csr_of

    return csr_of(w)
