"""Fixed-point (Loihi) quantisation of a NetworkSpec.

Representation (all integers; "state units" = the integer units of u and v):

* **Weights**: 8-bit two's complement mantissas ``m`` in [-128, 127], one ``weight_exp``
  per synaptic matrix (each Lava ``Sparse``: input and recurrent matrix of a layer get their
  own exponent; the layer shares one state scale S). Lava's ``Sparse`` is given
  ``weights = 2*m``, ``sign_mode=MIXED``, ``num_weight_bits=8``: MIXED keeps only even values
  in [-256, 254], so ``2m`` passes ``clip_weights``/``truncate_weights`` unchanged and the
  effective precision is exactly 8 bits (sign + 7). A spike through synapse m adds
  ``(sum 2m) << weight_exp`` (``>> 1`` for weight_exp = -1, exact since the sum is even) to
  the synaptic input, and neurons add ``a_in << 6`` to u: one m-unit is
  ``2**(7 + weight_exp)`` state units. ``weight_exp >= -1`` for spike inputs (a smaller
  exponent would floor the *summed* input and lose LSBs), ``>= -8`` for the graded network
  input (the floor then loses < 64 state units per step), ``<= 7`` (Loihi range).
* **Layer scale S** (state units per unit of the Lava-form v, see :mod:`.params`):
  chosen so the largest |dv * w| of the layer hits m = 127 at weight_exp = -1, but clipped
  so that the threshold mantissa ``vth = S*vth_L/64`` lies in [2**12, 2**15]
  (>= 12-bit threshold resolution, v keeps 4x headroom in its 24 bits). With a calibration
  run S is lowered further if the observed |v| or |u| would exceed 2**22.
* **Decays**: ``du = round(4096*dt*tau_syn_inv) - 1`` (Lava adds 1; -1 means no decay),
  ``dv = round(4096*dt*tau_mem_inv)`` (12 bits, at most 4095), adaptation
  ``dth = round(4096*(1 - rho))``.
* **Threshold**: 17-bit mantissa, effective ``vth << 6``. **Bias**: 13-bit signed mantissa
  (|m| <= 4095) and 3-bit exponent 0..7 (smallest exponent that fits).
* **ALIF**: integer threshold increment b (state units, 24 bit), per-spike jump
  ``round(S * beta_k * (1 - rho))``.
* **Input**: real x -> graded payload ``clip(round(x / x_scale), -(2**(b-1)-1), 2**(b-1)-1)``
  with ``b = input_bits`` (default 8, signed; Lava's CPU models carry up to 24-bit graded
  payloads), ``x_scale = input_max / (2**(b-1) - 1)``; x_scale is folded into the first
  layer's weights.
* **Readout**: own scale S_R. li: the calibrated (or bounded) max |v| maps to 2**22 (and
  S_R is lowered if the largest weight would not fit m = 127 at weight_exp = 7);
  ``y_int = v + out_bias_int``. linear: ``y_int = a_in + out_bias_int`` is no 24-bit state,
  so S_R maps the largest |w| to m = 127 at weight_exp = 6. Dequantised ``y = y_int / S_R``.

``fake_quantize`` returns a NetworkSpec with the dequantised (effective) weights and
parameters, for quantisation-aware fine-tuning in PyTorch.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from spiking_deepr.export import ALIFLayerSpec, NetworkSpec, SparseWeights

from lava_backend.params import ConversionError, LavaForm, lava_form

WEIGHT_MIN, WEIGHT_MAX = -128, 127
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -1, 7
GRADED_EXP_MIN = -8
LINEAR_EXP = 6
VTH_MANT_MIN, VTH_MANT_MAX = 2 ** 12, 2 ** 15
VTH_MANT_LIMIT = 2 ** 17 - 1
BIAS_MANT_LIMIT = 4095
BIAS_EXP_MAX = 7
UV_LIMIT = 2 ** 23 - 1
STATE_TARGET = 2 ** 22


@dataclass
class QuantMatrix:
    """8-bit quantised synaptic matrix on the spec's connectivity (explicit entries kept).

    m: int64 [K] mantissas in [-128, 127]; one m-unit is ``2**(act_shift + 1 + weight_exp)``
    state units (act_shift 6 into neurons, 0 into a linear readout).
    """

    shape: tuple
    rows: np.ndarray
    cols: np.ndarray
    m: np.ndarray
    weight_exp: int
    act_shift: int
    to_state: float            # state units per unit of the original spec weight
    n_quantized_to_zero: int = 0
    n_clipped: int = 0
    round_offset: int = 0      # > 0: an extra input column (payload 1) with this mantissa

    @property
    def unit(self) -> float:
        return float(2.0 ** (self.act_shift + 1 + self.weight_exp))

    def lava_csr(self):
        """int32 CSR of ``2*m`` (Lava Sparse MIXED, num_weight_bits=8), explicit zeros kept.

        With ``round_offset`` the matrix gets one more input column (index ``shape[1]``) holding
        ``2*round_offset`` in every row: fed a constant payload of 1 it adds
        ``2**(-weight_exp - 1)`` to every row's sum before Lava's arithmetic right shift by
        ``-weight_exp``, so the shift rounds (half up) instead of flooring."""
        from scipy.sparse import csr_matrix

        rows, cols, vals, shape = self.rows, self.cols, 2 * self.m, self.shape
        if self.round_offset:
            n_out, n_in = shape
            rows = np.concatenate([rows, np.arange(n_out)])
            cols = np.concatenate([cols, np.full(n_out, n_in)])
            vals = np.concatenate([vals, np.full(n_out, 2 * self.round_offset)])
            shape = (n_out, n_in + 1)
        c = csr_matrix((vals.astype(np.int32), (rows, cols)), shape=shape)
        c.sort_indices()
        return c

    def dequantized(self) -> np.ndarray:
        """Effective float weights (spec units) [K]."""
        return self.m * self.unit / self.to_state

    def report(self) -> dict:
        return {"nnz": int(self.m.size), "weight_exp": int(self.weight_exp),
                "quantized_to_zero": int(self.n_quantized_to_zero),
                "clipped": int(self.n_clipped),
                "max_abs_m": int(np.abs(self.m).max()) if self.m.size else 0,
                "round_offset": int(self.round_offset)}


def _choose_exp(max_abs_state: float, act_shift: int, exp_min: int = -1) -> int:
    if max_abs_state <= 0:
        return exp_min
    e = math.ceil(math.log2(max_abs_state / (WEIGHT_MAX + 0.49))) - (act_shift + 1)
    return int(min(max(e, exp_min), WEIGHT_EXP_MAX))


def quantize_matrix(w: SparseWeights, to_state: float, act_shift: int = 6,
                    weight_exp: Optional[int] = None, graded: bool = False) -> QuantMatrix:
    """Quantise ``w`` whose real value times ``to_state`` is in state units.

    graded: the matrix receives graded (multi-bit) input; then weight_exp may go down to
    GRADED_EXP_MIN so that the mantissas use all 8 bits -- the arithmetic right shift of the
    summed input then drops less than one input unit (2**act_shift state units) per step.
    """
    q = w.values.astype(np.float64) * to_state
    if weight_exp is None:
        weight_exp = _choose_exp(float(np.abs(q).max()) if q.size else 0.0, act_shift,
                                 GRADED_EXP_MIN if graded else WEIGHT_EXP_MIN)
    unit = 2.0 ** (act_shift + 1 + weight_exp)
    r = np.round(q / unit)
    m = np.clip(r, WEIGHT_MIN, WEIGHT_MAX).astype(np.int64)
    # Lava's Sparse floors the summed graded input when it shifts right by more than the one
    # bit that 2*m makes free; a rounding column (see lava_csr) removes that bias
    round_offset = 2 ** (-weight_exp - 2) if graded and weight_exp < -1 else 0
    return QuantMatrix(shape=tuple(w.shape), rows=w.rows.copy(), cols=w.cols.copy(), m=m,
                       weight_exp=int(weight_exp), act_shift=act_shift, to_state=to_state,
                       n_quantized_to_zero=int(np.sum((m == 0) & (w.values != 0))),
                       n_clipped=int(np.sum(r != m)), round_offset=round_offset)


def _bias(value_state: float, where: str):
    """Integer bias -> (mant, exp) with |mant| <= 4095, exp in 0..7."""
    b = int(round(value_state))
    for e in range(BIAS_EXP_MAX + 1):
        mant = int(round(b / 2 ** e))
        if abs(mant) <= BIAS_MANT_LIMIT:
            return mant, e
    raise ConversionError(f"{where}: bias {b} state units does not fit 13-bit mantissa << 7")


def _du(du: float) -> int:
    return int(np.clip(round(du * 4096) - 1, -1, 4095))


def _dv(dv: float) -> int:
    return int(np.clip(round(dv * 4096), 0, 4095))


def _dth(rho: float) -> int:
    return int(np.clip(round(4096 * (1.0 - rho)), 0, 4095))


@dataclass
class QuantLayer:
    kind: str
    name: str
    n: int
    scale: float               # S: state units per Lava-form v unit
    du: int
    dv: int
    vth: int                   # 17-bit mantissa
    bias_mant: int
    bias_exp: int
    v_init: int
    beta: np.ndarray           # int64 per-spike threshold jump
    dth: int
    w_in: QuantMatrix
    w_rec: Optional[QuantMatrix]
    graded_input: bool = False
    warnings: List[str] = field(default_factory=list)
    subtract: bool = False     # reset by v -= v_sub (else v = 0)
    v_sub: int = 0             # state units: (vth << 6) when v_reset = 0
    refractory: int = 0


@dataclass
class QuantReadout:
    kind: str
    n_out: int
    scale: float
    du: int
    dv: int
    bias_mant: int
    bias_exp: int
    v_init: int
    out_bias: np.ndarray       # int64
    w: QuantMatrix


@dataclass
class QuantizedNetwork:
    """Integer parameters of a whole network (see module docstring)."""

    spec: NetworkSpec
    form: LavaForm
    input_bits: int
    input_scale: float
    layers: List[QuantLayer]
    readout: QuantReadout

    @property
    def input_max_int(self) -> int:
        return 2 ** (self.input_bits - 1) - 1

    def input_payload(self, x: np.ndarray) -> np.ndarray:
        """Real input [..., F] -> graded integer payloads [..., F] (int64)."""
        lim = self.input_max_int
        return np.clip(np.round(np.asarray(x, dtype=np.float64) / self.input_scale),
                       -lim, lim).astype(np.int64)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """What the source sends: the payloads, plus a constant 1 column [..., F + 1] when the
        first layer's input matrix has a rounding column (see ``QuantMatrix.lava_csr``)."""
        p = self.input_payload(x)
        if self.layers and self.layers[0].w_in.round_offset:
            p = np.concatenate([p, np.ones(p.shape[:-1] + (1,), dtype=np.int64)], axis=-1)
        return p

    def fake_quant_input(self, x: np.ndarray) -> np.ndarray:
        return self.input_payload(x) * self.input_scale

    def formats(self) -> "QuantFormats":
        """The scale and exponent choices of this quantisation (to reuse them on new weights)."""
        return QuantFormats(
            input_bits=self.input_bits, input_scale=self.input_scale,
            layer_scales=[q.scale for q in self.layers],
            weight_exps=[[q.w_in.weight_exp, None if q.w_rec is None else q.w_rec.weight_exp]
                         for q in self.layers],
            readout_scale=self.readout.scale, readout_exp=self.readout.w.weight_exp)

    def dequantize_readout(self, y_int: np.ndarray) -> np.ndarray:
        return np.asarray(y_int, dtype=np.float64) / self.readout.scale

    def report(self) -> dict:
        """Per matrix nnz / exponent / weights quantised to zero / clipped, per layer scale."""
        out = {"input_bits": self.input_bits, "input_scale": self.input_scale, "layers": []}
        for q in self.layers:
            out["layers"].append({
                "name": q.name, "kind": q.kind, "scale": q.scale, "vth_mant": q.vth,
                "du": q.du, "dv": q.dv, "bias_mant": q.bias_mant, "bias_exp": q.bias_exp,
                "dth": q.dth, "w_in": q.w_in.report(),
                "w_rec": None if q.w_rec is None else q.w_rec.report(),
                "warnings": list(q.warnings)})
        out["readout"] = {"kind": self.readout.kind, "scale": self.readout.scale,
                          "w": self.readout.w.report()}
        out["quantized_to_zero"] = int(
            sum(q.w_in.n_quantized_to_zero + (q.w_rec.n_quantized_to_zero if q.w_rec else 0)
                for q in self.layers) + self.readout.w.n_quantized_to_zero)
        return out


@dataclass
class QuantFormats:
    """The choices ``quantize_network`` makes from the weights and the calibration data: input
    step, one state scale S per layer, the weight exponent of every matrix, the readout scale.
    Given these, every integer parameter follows from the weights alone, so a network whose
    float weights already lie on this grid (after quantisation-aware fine-tuning) quantises to
    exactly those mantissas. JSON-serialisable with ``to_dict`` / ``from_dict``."""

    input_bits: int
    input_scale: float
    layer_scales: List[float]
    weight_exps: List[List[Optional[int]]]     # per layer [w_in exp, w_rec exp or None]
    readout_scale: float
    readout_exp: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict, where: str = "formats") -> "QuantFormats":
        missing = sorted(set(cls.__dataclass_fields__) - set(d))
        if missing:
            raise ConversionError(f"{where}: missing fields {missing}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def quantize_network(spec: NetworkSpec, input_max: Optional[float] = None, input_bits: int = 8,
                     calib_x: Optional[np.ndarray] = None, calib_lengths=None,
                     formats: Optional[QuantFormats] = None) -> QuantizedNetwork:
    """Quantise ``spec`` for Loihi-style fixed point.

    input_max: the real input value mapped to the largest payload (default: max |calib_x|,
    else 1.0). calib_x [N, T, F]: optional calibration inputs; the float reference is run on
    them to bound |u|, |v| (hidden layers) and the readout range. Calibrate on training data:
    scales fitted to the sequences that are then scored flatter the result.
    formats: reuse these scales and exponents (``QuantizedNetwork.formats()``) instead of
    choosing them (input_max, input_bits and calib_x are then ignored).
    """
    form = lava_form(spec)
    if formats is not None:
        input_bits = int(formats.input_bits)
        if len(formats.layer_scales) != len(form.layers):
            raise ConversionError(f"formats: {len(formats.layer_scales)} layer scales for a "
                                  f"network of {len(form.layers)} layers")
    if not 2 <= input_bits <= 24:
        raise ConversionError(f"input_bits must be in 2..24, got {input_bits}")
    for lf in form.layers:
        if lf.kind == "lstm":
            raise ConversionError(
                f"layer {lf.name!r}: LSTM layers have no fixed-point model (floating_pt only)")
    stats = None
    if calib_x is not None and formats is None:
        from lava_backend.reference import reference_float

        stats = {}
        reference_float(spec, calib_x, calib_lengths, stats=stats)
        if input_max is None:
            input_max = float(np.abs(np.asarray(calib_x)).max())
    if not input_max or input_max <= 0:
        input_max = 1.0
    if spec.input_spikes and formats is None:  # binary input spikes: payload 1 = one spike
        input_max, input_bits = 1.0, 2
    x_scale = float(input_max) / (2 ** (input_bits - 1) - 1)
    if formats is not None:
        x_scale = float(formats.input_scale)

    layers: List[QuantLayer] = []
    for li, (lf, ls) in enumerate(zip(form.layers, spec.layers)):
        where = f"layer {li} ({lf.name})"
        in_factor = x_scale if li == 0 else 1.0
        maxes = [float(np.abs(lf.w_in.data).max()) * in_factor if lf.w_in.nnz else 0.0]
        if lf.w_rec is not None and lf.w_rec.nnz:
            maxes.append(float(np.abs(lf.w_rec.data).max()))
        wmax = max(maxes)
        s_lo, s_hi = VTH_MANT_MIN * 64 / lf.vth, VTH_MANT_MAX * 64 / lf.vth
        S = (WEIGHT_MAX * 64 / wmax) if wmax > 0 else s_hi
        S = min(max(S, s_lo), s_hi)
        warnings = []
        if stats is not None:
            peak = max(stats["layers"][li]["max_abs_v"], stats["layers"][li]["max_abs_u"])
            if peak * S > STATE_TARGET:
                S = STATE_TARGET / peak
                warnings.append(f"scale lowered to {S:.4g} by calibration (|v|,|u| <= {peak:.4g})")
        exp_in = exp_rec = None
        if formats is not None:
            S = float(formats.layer_scales[li])
            exp_in, exp_rec = formats.weight_exps[li]
        vth = int(round(S * lf.vth / 64))
        if not 1 <= vth <= VTH_MANT_LIMIT:
            raise ConversionError(f"{where}: threshold mantissa {vth} outside 1..{VTH_MANT_LIMIT}")
        bm, be = _bias(S * lf.bias, where)
        dv = _dv(lf.dv)
        w_in = quantize_matrix(ls.w_in, S * lf.dv * in_factor, weight_exp=exp_in, graded=(li == 0))
        w_rec = None if ls.w_rec is None else quantize_matrix(ls.w_rec, S * lf.dv, weight_exp=exp_rec)
        for nm, qm in (("w_in", w_in), ("w_rec", w_rec)):
            if qm is not None and qm.n_clipped:
                warnings.append(f"{nm}: {qm.n_clipped} weights clipped to 8 bits")
            if qm is not None and qm.n_quantized_to_zero:
                warnings.append(f"{nm}: {qm.n_quantized_to_zero} nonzero weights quantised to 0")
        dth = _dth(lf.rho) if lf.kind == "alif" else 0
        # per-spike jump (1 - rho) * beta from the *quantised* decay: b then settles at
        # S * beta * rate exactly as in float (the exact 1 - rho would make it ~2 % larger)
        beta = np.round(S * lf.beta * (dth / 4096.0)).astype(np.int64)
        layers.append(QuantLayer(
            kind=lf.kind, name=lf.name, n=lf.n, scale=S, du=_du(lf.du), dv=dv, vth=vth,
            bias_mant=bm, bias_exp=be,
            v_init=int(np.clip(round(S * lf.v_init), -UV_LIMIT, UV_LIMIT)), beta=beta,
            dth=dth, w_in=w_in, w_rec=w_rec, graded_input=(li == 0 and not spec.input_spikes), warnings=warnings,
            subtract=lf.subtract, refractory=lf.refractory,
            # v_sub = vth (v_reset = 0) subtracts exactly the quantised threshold
            v_sub=int(np.clip((vth << 6) + round(S * (lf.v_sub - lf.vth)), 0, UV_LIMIT))))

    ro, rs = form.readout, spec.readout
    nr = form.n_repeat  # the graph applies W / n_repeat to the sum over a frame's steps
    absw = np.zeros(ro.n_out)
    np.add.at(absw, rs.weights.rows, np.abs(rs.weights.values.astype(np.float64)))
    if stats is not None:
        B = max(stats["readout"]["max_abs_v"], stats["readout"]["max_abs_u"] / max(ro.dv, 1e-12)
                if ro.kind == "li" else 0.0, 1e-9)
    elif ro.kind == "li":
        B = abs(ro.v_init) + float(absw.max(initial=0.0)) / max(ro.du, 1.0 / 64)
    else:
        B = float(absw.max(initial=0.0))
    B = max(B, 1e-9)
    SR = STATE_TARGET / B
    wmax_ro = float(np.abs(rs.weights.values).max()) / nr if rs.weights.nnz else 0.0
    if ro.kind == "li" and wmax_ro > 0 and ro.dv > 0:
        # never clip: the largest weight must fit m = 127 at weight_exp = 7
        SR = min(SR, WEIGHT_MAX * 2.0 ** (7 + WEIGHT_EXP_MAX) / (ro.dv * wmax_ro))
    if ro.kind == "linear":
        # y = a_in + bias is not a 24-bit neuron state: use the full 8-bit mantissas at
        # weight_exp = LINEAR_EXP (one m-unit = 2**(1 + LINEAR_EXP) output units)
        SR = WEIGHT_MAX * 2.0 ** (1 + LINEAR_EXP) / wmax_ro if wmax_ro > 0 else 1.0
    exp_ro = None if ro.kind == "li" else LINEAR_EXP
    if formats is not None:
        SR, exp_ro = float(formats.readout_scale), int(formats.readout_exp)
    if ro.kind == "li":
        wq = quantize_matrix(rs.weights, SR * ro.dv / nr, act_shift=6, weight_exp=exp_ro)
        bm, be = _bias(SR * ro.bias_v, "readout")
        q_ro = QuantReadout(kind="li", n_out=ro.n_out, scale=SR, du=_du(ro.du), dv=_dv(ro.dv),
                            bias_mant=bm, bias_exp=be,
                            v_init=int(np.clip(round(SR * ro.v_init), -UV_LIMIT, UV_LIMIT)),
                            out_bias=np.round(SR * ro.out_bias).astype(np.int64), w=wq)
    else:
        wq = quantize_matrix(rs.weights, SR / nr, act_shift=0, weight_exp=exp_ro)
        q_ro = QuantReadout(kind="linear", n_out=ro.n_out, scale=SR, du=0, dv=0, bias_mant=0,
                            bias_exp=0, v_init=0,
                            out_bias=np.round(SR * ro.out_bias).astype(np.int64), w=wq)
    return QuantizedNetwork(spec=spec, form=form, input_bits=input_bits, input_scale=x_scale,
                            layers=layers, readout=q_ro)


def fake_quantize(spec: NetworkSpec, q: Optional[QuantizedNetwork] = None,
                  **quantize_kwargs) -> NetworkSpec:
    """A copy of ``spec`` with the effective (dequantised) weights and parameters.

    Weights are ``m * unit / to_state`` with the *quantised* dv, decays are the effective
    12-bit ones (du_eff = (du+1)/4096, dv_eff = dv/4096, rho_eff = 1 - dth/4096),
    thresholds ``v_reset + vth*64/S``, v_leak from the quantised bias, beta from the integer
    jump. Real inputs should be passed through ``q.fake_quant_input``. The integer
    arithmetic's per-step truncations are not modelled.
    """
    if q is None:
        q = quantize_network(spec, **quantize_kwargs)
    dt = spec.dt
    new = copy.deepcopy(spec)
    for li, (ls, ql) in enumerate(zip(new.layers, q.layers)):
        S = ql.scale
        du_eff = (ql.du + 1) / 4096.0
        dv_eff = ql.dv / 4096.0
        v_reset = float(np.asarray(ls.v_reset).reshape(-1)[0])
        ls.tau_syn_inv = du_eff / dt
        ls.tau_mem_inv = dv_eff / dt
        ls.v_th = v_reset + ql.vth * 64.0 / S
        bias_eff = ql.bias_mant * 2.0 ** ql.bias_exp
        ls.v_leak = v_reset + bias_eff / (S * dv_eff) if dv_eff > 0 else ls.v_leak
        in_factor = q.input_scale if li == 0 else 1.0
        # the real weights: dequantised m relative to the effective dv
        for attr, qm, fac in (("w_in", ql.w_in, in_factor), ("w_rec", ql.w_rec, 1.0)):
            if qm is None:
                continue
            w = getattr(ls, attr)
            vals = qm.m * qm.unit / (S * dv_eff * fac)
            setattr(ls, attr, SparseWeights(shape=tuple(w.shape), rows=w.rows.copy(),
                                            cols=w.cols.copy(), values=vals.astype(np.float32)))
        if isinstance(ls, ALIFLayerSpec):
            rho_eff = 1.0 - ql.dth / 4096.0
            ls.tau_adapt_inv = -math.log(rho_eff) / dt if rho_eff > 0 else float("inf")
            ls.beta = (ql.beta / (S * (1.0 - rho_eff))).astype(np.float32) if rho_eff < 1 \
                else np.zeros_like(ls.beta)
    ro, qr = new.readout, q.readout
    SR = qr.scale
    if qr.kind == "li":
        du_eff, dv_eff = (qr.du + 1) / 4096.0, qr.dv / 4096.0
        ro.tau_syn_inv, ro.tau_mem_inv = du_eff / dt, dv_eff / dt
        if dv_eff > 0:
            ro.v_leak = qr.bias_mant * 2.0 ** qr.bias_exp / (SR * dv_eff)
        vals = qr.w.m * qr.w.unit / (SR * dv_eff) if dv_eff > 0 else qr.w.dequantized()
    else:
        vals = qr.w.m * qr.w.unit / SR
    vals = vals * getattr(spec, "n_repeat", 1)  # the graph applies W / n_repeat to a sum
    ro.weights = SparseWeights(shape=tuple(ro.weights.shape), rows=ro.weights.rows.copy(),
                               cols=ro.weights.cols.copy(), values=vals.astype(np.float32))
    ro.bias = (qr.out_bias / SR).astype(np.float32)
    return new
