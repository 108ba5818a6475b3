"""Fixed-width SIMD vectors for numba kernels: register accumulators over a batch of lanes.

Why: a sparse product in neuron-major layout ([rows, B], batch innermost) is, per synapse, an axpy
over the B lanes of one row. Written as a numba loop, LLVM cannot keep the accumulator row in
registers (it cannot prove the output row does not alias the input), and with B = 16–32 the
vectorised loop body (vector width × interleave) is longer than the trip count, so the scalar
remainder loop does all the work: ~5–7 GMAC/s. With an explicit vector value
(``acc = vfma(w, vload(x, i, lanes), acc)``) the accumulator stays in registers and each synapse is
one vector load and one FMA per 16 lanes: ~19 GMAC/s on one core (float32, AVX-512). An FMA
waits for the previous one on the same accumulator (4 cycles), so the kernels keep two
accumulators per sum and add them at the end.

A vector is an LLVM ``<lanes x dtype>`` value; its width must be a compile-time constant, so kernels
take a `Lanes` object, which numba types by its width (one compiled and cached specialisation per
width; a plain int with ``numba.literally`` instead re-runs type inference on every call). LLVM
splits a vector wider than the machine's registers into several (a ``<32 x float>`` is two
AVX-512 registers, four AVX2 ones).

Functions (all inlined into the caller; ``arr`` is a 1-D contiguous array, ``i`` an element offset,
the vector covers ``arr[i : i + lanes]``, no bounds check):

- ``width(lanes)``: the width as an int;
- ``vsplat(arr, value, lanes)``: every lane = ``value`` (in ``arr``'s dtype);
- ``vload(arr, i, lanes)`` / ``vstore(arr, i, v)``;
- ``vfma(w, x, acc)``: ``acc + w * x`` for a scalar ``w``;
- ``vmuladd(a, b, acc)``: ``acc + a * b`` lane by lane; ``vadd(a, b)``: ``a + b``;
- ``vsum(v)``: the sum of the lanes (a pairwise tree);
- ``cast_like(value, x)``: ``value`` converted to ``x``'s type (a float64 constant in float32
  code stays float32);
- ``ldexp_int(p, n)``: ``p · 2ⁿ`` for a float ``n`` holding an integer in the normal exponent range,
  by building 2ⁿ's bit pattern (no libm call, so loops that use it vectorise).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import NativeValue, intrinsic, models, register_model, typeof_impl, unbox

__all__ = ["Lanes", "width", "vsplat", "vload", "vstore", "vfma", "vmuladd", "vadd", "vsum", "cast_like", "ldexp_int"]

_FAST = ("reassoc", "nsz", "contract")
_I32 = ir.IntType(32)


class Lanes:
    """The vector width of a kernel call: ``Lanes(16)`` (numba types it as ``LanesType(16)``)."""

    def __init__(self, n: int):
        self.n = int(n)


class LanesType(types.Dummy):
    def __init__(self, n: int):
        self.n = int(n)
        super().__init__(name=f"Lanes({self.n})")


@typeof_impl.register(Lanes)
def _typeof_lanes(val, c):
    return LanesType(val.n)


register_model(LanesType)(models.OpaqueModel)


@unbox(LanesType)
def _unbox_lanes(typ, obj, c):
    return NativeValue(c.context.get_dummy_value())


class Vec(types.Type):
    """numba type of a ``<lanes x dtype>`` SIMD value."""

    def __init__(self, dtype, lanes: int):
        self.dtype, self.lanes = dtype, int(lanes)
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _element_pointer(context, builder, arr_type, arr, i, i_type):
    data = context.make_array(arr_type)(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, i, i_type, types.intp)])


def _vector_pointer(context, builder, vec_type, arr_type, arr, i, i_type):
    ptr = _element_pointer(context, builder, arr_type, arr, i, i_type)
    return builder.bitcast(ptr, context.get_value_type(vec_type).as_pointer())


def _splat(builder, ll_vec, scalar):
    v = builder.insert_element(ir.Constant(ll_vec, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(ll_vec, ir.Undefined), ir.Constant(ir.VectorType(_I32, ll_vec.count),
                                                                                     [0] * ll_vec.count))


@intrinsic
def width(typingctx, lanes):
    if not isinstance(lanes, LanesType):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, lanes.n)

    return types.intp(lanes), codegen


@intrinsic
def vsplat(typingctx, arr, value, lanes):
    if not isinstance(lanes, LanesType):
        return None
    vt = Vec(arr.dtype, lanes.n)

    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[1], sig.args[1], vt.dtype)
        return _splat(builder, context.get_value_type(vt), scalar)

    return vt(arr, value, lanes), codegen


@intrinsic
def vload(typingctx, arr, i, lanes):
    if not isinstance(lanes, LanesType):
        return None
    vt = Vec(arr.dtype, lanes.n)

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, vt, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(ptr, align=vt.dtype.bitwidth // 8)

    return vt(arr, i, lanes), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    if not isinstance(v, Vec) or v.dtype != arr.dtype:
        return None

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, v, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], ptr, align=v.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(arr, i, v), codegen


@intrinsic
def vfma(typingctx, w, x, acc):
    if not isinstance(x, Vec) or x != acc:
        return None

    def codegen(context, builder, sig, args):
        ll = context.get_value_type(x)
        wv = _splat(builder, ll, context.cast(builder, args[0], sig.args[0], x.dtype))
        return builder.fadd(args[2], builder.fmul(wv, args[1], flags=_FAST), flags=_FAST)

    return x(w, x, acc), codegen


@intrinsic
def vmuladd(typingctx, a, b, acc):
    if not isinstance(a, Vec) or not (a == b == acc):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[2], builder.fmul(args[0], args[1], flags=_FAST), flags=_FAST)

    return a(a, b, acc), codegen


@intrinsic
def vadd(typingctx, a, b):
    if not isinstance(a, Vec) or a != b:
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1], flags=_FAST)

    return a(a, b), codegen


@intrinsic
def vsum(typingctx, v):
    if not isinstance(v, Vec) or v.lanes & (v.lanes - 1):
        return None

    def codegen(context, builder, sig, args):
        x, n = args[0], v.lanes
        while n > 1:  # add the upper half onto the lower half
            n //= 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
            x = builder.fadd(lo, hi, flags=_FAST)
        return builder.extract_element(x, ir.Constant(_I32, 0))

    return v.dtype(v), codegen


@intrinsic
def ldexp_int(typingctx, p, n):
    if not isinstance(p, types.Float) or p != n:
        return None
    mantissa, bias = (23, 127) if p.bitwidth == 32 else (52, 1023)

    def codegen(context, builder, sig, args):
        int_type = ir.IntType(p.bitwidth)
        e = builder.add(builder.fptosi(args[1], int_type), ir.Constant(int_type, bias))
        two_n = builder.bitcast(builder.shl(e, ir.Constant(int_type, mantissa)), context.get_value_type(p))
        return builder.fmul(args[0], two_n)

    return p(p, n), codegen


@intrinsic
def cast_like(typingctx, value, x):
    if not isinstance(value, (types.Float, types.Integer)) or not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], x)

    return x(value, x), codegen
