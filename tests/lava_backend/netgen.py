"""Random NetworkSpecs for the lava_backend tests."""
import numpy as np

from spiking_deepr.export import (ALIFLayerSpec, LIFLayerSpec, LSTMLayerSpec, NetworkSpec,
                                  ReadoutSpec, SparseWeights)


def rand_sparse(rng, n_out, n_in, density, scale, zero_frac=0.0):
    mask = rng.random((n_out, n_in)) < density
    rows, cols = np.nonzero(mask)
    vals = (rng.standard_normal(rows.size) * scale).astype(np.float32)
    if zero_frac:
        vals[rng.random(rows.size) < zero_frac] = 0.0
    return SparseWeights(shape=(n_out, n_in), rows=rows, cols=cols, values=vals)


def lsnn_spec(seed=0, n_input=8, n=40, n_adapt=15, classes=5, readout="li", kinds=("alif",),
              density=0.3, v_leak=0.0, v_reset=0.0, win_scale=1.5, wrec_scale=0.6,
              hidden_lstm=12):
    rng = np.random.default_rng(seed)
    layers = []
    n_prev = n_input
    for k, kind in enumerate(kinds):
        if kind == "lstm":
            H = hidden_lstm
            layers.append(LSTMLayerSpec(
                name=f"lstm{k}", hidden=H, w_ih=rand_sparse(rng, 4 * H, n_prev, density, 0.5),
                w_hh=rand_sparse(rng, 4 * H, H, density, 0.5),
                bias=(rng.standard_normal(4 * H) * 0.1).astype(np.float32)))
            n_prev = H
            continue
        w_in = rand_sparse(rng, n, n_prev, density, win_scale if k == 0 else 2.0, zero_frac=0.05)
        w_rec = rand_sparse(rng, n, n, density, wrec_scale, zero_frac=0.05)
        common = dict(name=f"{kind}{k}", n=n, w_in=w_in, w_rec=w_rec, tau_syn_inv=200.0,
                      tau_mem_inv=100.0, v_th=1.0, v_leak=v_leak, v_reset=v_reset)
        if kind == "alif":
            beta = np.zeros(n, dtype=np.float32)
            beta[n - n_adapt:] = 1.8
            layers.append(ALIFLayerSpec(beta=beta, tau_adapt_inv=1 / 0.2, **common))
        else:
            layers.append(LIFLayerSpec(**common))
        n_prev = n
    ro = ReadoutSpec(kind=readout, weights=rand_sparse(rng, classes, n_prev, 0.5, 0.5),
                     bias=(rng.standard_normal(classes) * 0.1).astype(np.float32),
                     tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0)
    return NetworkSpec(n_input=n_input, dt=1e-3, layers=layers, readout=ro)


def rand_input(seed, N, T, F, scale=1.0):
    rng = np.random.default_rng(seed + 1000)
    return (rng.standard_normal((N, T, F)) * scale).astype(np.float32)
