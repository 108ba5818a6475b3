"""Fixed-point LIF network -> lava-dl netx HDF5 network description (``netx.hdf5.Network``).

Layout (what lava-dl 0.6.0's ``netx/hdf5.py`` and ``netx/utils.py`` read)::

    layer/0    type "input", shape [F]                        (no neuron: graded input port)
    layer/l+1  type "dense_rec" (or "dense" without W_rec), shape [n],
               weight [n, n_in] int, weight_rec [n, n] int,
               neuron/{type "CUBA", iDecay, vDecay, vThMant, refDelay}

netx builds each ``dense_rec`` layer as a ``RecurrentDense`` block: Lava's ``Dense`` for both
matrices and Lava's ``LIF`` (``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``,
``bias_exp = 6``). Weights are integers: netx's ``optimize_weight_bits`` picks one weight exponent
for ``[weight, weight_rec]`` together so that they fill 8 bits. The effective synaptic value of
this project's quantisation is ``2 m << weight_exp``; it is a whole number for weight_exp >= -1, and
netx reproduces it exactly when both matrices of a layer use weight_exp = -1 (value m):
:func:`netx_quantization` re-quantises with those exponents (keeping the scales), which may round
a graded input matrix more coarsely than the default (reported in the quantisation report).

Not expressible, so refused: ALIF and LSTM layers (netx's CUBA neuron is Lava's LIF), a bias or
initial voltage (v_leak != v_reset), reset by subtraction, refractory periods, n_repeat > 1. The readout is not part of the file: netx layers emit spikes,
and a readout (non-spiking, with an output bias) has no netx block; its weights stay in this
project's run. netx resets neurons only every ``reset_interval`` steps: run one sequence per
network run (or give ``reset_interval``).
"""
from __future__ import annotations

from pathlib import Path
import numpy as np

from spiking_deepr.checkpoint import atomic_write_file

from lava_backend.params import ConversionError
from lava_backend.quantize import WEIGHT_MAX, QuantizedNetwork, quantize_network

NETX_WEIGHT_EXP = -1


def netx_quantization(q: QuantizedNetwork) -> QuantizedNetwork:
    """``q`` (this project's fixed-point quantisation) re-quantised with every layer matrix at
    weight_exp = -1, so that its effective synaptic values are the integer mantissas netx stores.
    A layer's state scale is lowered where needed so that its largest weight still fits m = 127
    (nothing is clipped; the threshold mantissa may have fewer than the default 12 bits, and a
    graded input matrix is rounded more coarsely: see the report's quantized_to_zero)."""
    for l, ql in enumerate(q.layers):
        if ql.kind != "lif":
            raise ConversionError(f"layer {l} ({ql.name}) is {ql.kind!r}: netx's CUBA neuron is Lava's LIF; "
                                  f"only LIF layers can be exported")
    formats = q.formats()
    for l, lf in enumerate(q.form.layers):
        in_factor = q.input_scale if l == 0 else 1.0
        wmax = max([abs(lf.w_in.data).max(initial=0.0) * in_factor]
                   + ([abs(lf.w_rec.data).max(initial=0.0)] if lf.w_rec is not None else []))
        if wmax > 0:  # one m-unit at weight_exp = -1 is 2**6 state units
            formats.layer_scales[l] = min(formats.layer_scales[l], WEIGHT_MAX * 64 / wmax)
        formats.weight_exps[l] = [NETX_WEIGHT_EXP, None if lf.w_rec is None else NETX_WEIGHT_EXP]
    return quantize_network(q.spec, formats=formats)


def _dense(qm) -> np.ndarray:
    if qm.weight_exp != NETX_WEIGHT_EXP or qm.round_offset:
        raise ConversionError(f"netx export needs weight_exp = {NETX_WEIGHT_EXP} (use netx_quantization), "
                              f"found {qm.weight_exp}")
    w = np.zeros(qm.shape, dtype=np.int64)
    w[qm.rows, qm.cols] = qm.m
    return w


def write_netx(q: QuantizedNetwork, path: Path) -> dict:
    """Write the netx HDF5 of ``q``'s LIF layers (atomically); returns a summary dict."""
    import h5py

    if q.form.n_repeat != 1:
        raise ConversionError(f"n_repeat={q.form.n_repeat}: netx has no repeated-frame input")
    layers = []
    for l, ql in enumerate(q.layers):
        where = f"layer {l} ({ql.name})"
        if ql.subtract or ql.refractory:
            raise ConversionError(f"{where}: reset by subtraction / refractory periods are not in netx's CUBA "
                                  f"neuron (Lava's LIF)")
        if ql.kind != "lif":
            raise ConversionError(f"{where} is {ql.kind!r}: only LIF layers have a netx (CUBA) form")
        if ql.bias_mant != 0 or ql.v_init != 0:
            raise ConversionError(f"{where}: netx's LIF starts at v = 0 without bias; needs v_leak == v_reset")
        layers.append((ql, _dense(ql.w_in), None if ql.w_rec is None else _dense(ql.w_rec)))

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            root = f.create_group("layer")
            inp = root.create_group("0")
            inp.create_dataset("type", data=np.bytes_("input"))
            inp.create_dataset("shape", data=np.array([q.spec.n_input]))
            for l, (ql, w_in, w_rec) in enumerate(layers, start=1):
                g = root.create_group(str(l))
                g.create_dataset("type", data=np.bytes_("dense" if w_rec is None else "dense_rec"))
                g.create_dataset("shape", data=np.array([ql.n]))
                g.create_dataset("weight", data=w_in)
                if w_rec is not None:
                    g.create_dataset("weight_rec", data=w_rec)
                neuron = g.create_group("neuron")
                neuron.create_dataset("type", data=np.bytes_("CUBA"))
                neuron.create_dataset("iDecay", data=ql.du + 1)   # netx: Lava du = iDecay - 1
                neuron.create_dataset("vDecay", data=ql.dv)
                neuron.create_dataset("vThMant", data=ql.vth)
                neuron.create_dataset("refDelay", data=1)
                neuron.create_dataset("gradedSpike", data=False)
            f.attrs["exported_by"] = "spiking_deepr"
            f.attrs["input_bits"] = q.input_bits
            f.attrs["input_scale"] = q.input_scale
            f.attrs["input_spikes"] = bool(getattr(q.spec, "input_spikes", False))  # then input_message_bits=0

    atomic_write_file(Path(path), write)
    return {"layers": [{"n": ql.n, "type": "dense" if w_rec is None else "dense_rec",
                        "stored_weights": int(w_in.size + (0 if w_rec is None else w_rec.size))}
                       for ql, w_in, w_rec in layers],
            "input_bits": q.input_bits, "input_scale": q.input_scale}
