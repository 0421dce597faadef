"""The integer format: each quantized op written with ONNX ops whose arithmetic is
npquant's, step by step, so ONNX Runtime reproduces npquant's codes bit for bit.

- Linear / Conv2d: MatMulInteger / ConvInteger (uint8 activations x uint8 weights
  128 above npquant's int8 codes, with the input zero point and weight zero point
  128) give the exact int32 accumulator on every CPU; Cast, Add bias_s[n], Mul mult[n] (the
  float32 constants of npquant's kernels) give v = fl(fl(float(acc) + bias_s) * mult);
  then (Relu and) QuantizeLinear with scale 1 and the output zero point, which
  rounds half to even and saturates: npquant's nearbyint + clamp.
- Ops whose output code is a function of one input code (ReLU, ReLU6, Hardswish,
  add_scalar, mul_scalar, cat's requantization of an input): Gather from the table
  of npquant's own outputs for every code. DeQuantize likewise (a table of floats).
- Quantize: npquant computes nearbyint(fmaf(x, fl(1 / scale), zp)), and ONNX has no
  fused multiply-add. QuantizeLinear gives a code within one of npquant's; the
  thresholds where npquant's code changes (found by bisection on npquant's quantize)
  correct it: q = c - [x < T[c]] + [x >= T[c + 1]].
- add / add_relu, mul, pooling, BatchNorm: npquant's float (or float64) operations in
  npquant's order, on the same constants.

Dynamic Linear is not exact here: npquant picks its activation qparams per call with
PyTorch's choose_qparams and quantizes with an fma; it is written as in the QDQ
format (DynamicQuantizeLinear), with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..nn import quantized as nnq
from ..nn._pool import adaptive_bounds
from ..nn.pooling import adaptive_output_hw
from ..nn.quantized import dynamic as nnqd
from ..nn.quantized._ops import dequant, reciprocal
from ..nn.quantized.functional_modules import mul_multiplier
from ..nn.quantized.pooling import adaptive_multipliers, scalar_loop_multipliers, scalar_tail
from ..qparams import requant_constants
from ..qtensor import QTensor, quantize_per_tensor
from ._errors import ExportError
from ._graph import adaptive_bins, conv_attrs, functional_dim, quantized_input
from ._modules import Scalar
from ._qdq import dynamic_linear, float_or_qdq, max_pool, scalar_float, shifted_weight

FLT_MAX = np.finfo(np.float32).max


# ------------------------------------------------------------------ building blocks
def _codes(dtype) -> np.ndarray:
    return np.arange(dtype.qmin, dtype.qmax + 1).astype(dtype.storage)


def _index(g, x: str, dtype, base: str) -> str:
    """int32 code - qmin: the position of each code in a table over all codes."""
    i = g.cast(x, np.int32, base)
    return i if dtype.qmin == 0 else g.node("Add", [i, g.const(base + "_offset", np.int32(-dtype.qmin))], base)


def _lookup(g, x: str, dtype, table: np.ndarray, base: str) -> str:
    """table[code] for every code of x (table has one entry per code of dtype)."""
    return g.node("Gather", [g.const(base + "_table", table), _index(g, x, dtype, base)], base)


def _map_codes(g, x: str, dtype, table: np.ndarray, base: str) -> str:
    """Codes through a code -> code table; no node when the table is the identity."""
    return x if np.array_equal(table, _codes(dtype)) else _lookup(g, x, dtype, table, base)


def _centred(g, v: QTensor, base: str) -> str:
    """int32 (code - zero point) of a quantized value."""
    x = g.cast(g.value(v).name, np.int32, base)
    return g.node("Sub", [x, g.const(base + "_zero_point", np.int32(v.q_zero_point()))], base)


def _round(g, v: str, zp: int, dtype, base: str) -> str:
    """nearbyint(v) + zp, saturated to the dtype: QuantizeLinear with scale 1."""
    return g.node(
        "QuantizeLinear",
        [v, g.const(base + "_one", np.float32(1)), g.const(base + "_zp", np.array(zp, dtype.storage))],
        base,
    )


def _output(g, call, v: str, base: str, relu: bool = False) -> None:
    """Binds call.output to nearbyint(v) + its zero point (clamped; at the zero point from
    below with relu)."""
    out = call.output
    if relu:
        v = g.node("Relu", [v], base)
    g.bind(out, _round(g, v, out.q_zero_point(), out.dtype, base))


def _channel(a: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along axis of a rank-D tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return np.ascontiguousarray(a, np.float32).reshape(shape)


# ------------------------------------------------------------------ tables from npquant itself
def _probe(x: QTensor, axis: int) -> QTensor:
    """Every code of x's dtype once, along axis of an x.ndim-D QTensor with x's qparams and
    storage order (which decides some ops' rounding)."""
    shape = [1] * x.ndim
    shape[axis] = -1
    codes = _codes(x.dtype).reshape(shape)
    if x.is_nhwc:
        return QTensor.from_nhwc(
            np.ascontiguousarray(codes.transpose(0, 2, 3, 1)), x.q_scale(), x.q_zero_point(), x.dtype
        )
    return QTensor(codes, x.q_scale(), x.q_zero_point(), x.dtype)


def _rerun(call, probes: list):
    """The traced op, called again with probes in place of its QTensor inputs."""
    if call.op == "call":  # forward, not __call__: the traced copy's recording hooks stay out
        return call.module.forward(*probes)
    fn = getattr(call.module, call.op)
    if call.op == "cat":
        return fn(probes, *call.args[1:], **call.kwargs)
    return fn(*probes, *call.args[len(probes) :], **call.kwargs)


def _tables(call, axis: int) -> list:
    """For each QTensor input, the output code npquant gives for each of its codes."""
    out = _rerun(call, [_probe(x, axis) for x in call.inputs])
    if (out.q_scale(), out.q_zero_point()) != (call.output.q_scale(), call.output.q_zero_point()):
        raise ExportError(f"'{call.name}.{call.op}': output qparams differ between calls")
    return np.split(out.int_repr().reshape(-1), len(call.inputs))


def _code_map(g, call, base):
    """An op whose output code is a function of its input code: a table lookup."""
    x = quantized_input(call)
    (table,) = _tables(call, min(1, x.ndim - 1))
    g.bind(call.output, _map_codes(g, g.value(x).name, x.dtype, table, base))


def _cat(g, call, base):
    """Each input through its requantization table, then Concat of the codes."""
    xs = call.inputs
    dim = functional_dim(call) % xs[0].ndim
    parts = [
        _map_codes(g, g.value(x).name, x.dtype, t, f"{base}_{i}")
        for i, (x, t) in enumerate(zip(xs, _tables(call, dim)))
    ]
    g.bind(call.output, g.node("Concat", parts, base, axis=dim))


def _dequantize(g, call, base):
    x = quantized_input(call)
    table = QTensor(_codes(x.dtype), x.q_scale(), x.q_zero_point(), x.dtype).dequantize()
    g.bind(call.output, _lookup(g, g.value(x).name, x.dtype, table, base))


# ------------------------------------------------------------------ Quantize
def _key(f: np.ndarray) -> np.ndarray:
    """float32 -> int64 with the same order (-0.0 and 0.0 alike)."""
    b = np.asarray(f, np.float32).view(np.int32).astype(np.int64)
    return np.where(b >= 0, b, -(b & 0x7FFFFFFF))


def _from_key(k: np.ndarray) -> np.ndarray:
    bits = np.where(k >= 0, k, (-k) | 0x80000000)
    return bits.astype(np.uint32).view(np.float32)


def quantize_thresholds(scale, zp, dtype) -> np.ndarray:
    """T[j] (j = 1 .. number of codes - 1): the smallest float32 npquant quantizes to code
    qmin + j or above, with T[0] = -inf and T[number of codes] = +inf. npquant's quantize is
    monotonic in x, so a bisection over the float32 order finds each T[j] exactly."""
    target = np.arange(dtype.qmin + 1, dtype.qmax + 1)
    lo = np.full(target.shape, _key(-FLT_MAX))  # code(lo) < target <= code(hi)
    hi = np.full(target.shape, _key(FLT_MAX))
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = quantize_per_tensor(_from_key(mid), scale, zp, dtype).int_repr() >= target
        hi, lo = np.where(reached, mid, hi), np.where(reached, lo, mid)
    return np.concatenate([[-np.inf], _from_key(hi), [np.inf]]).astype(np.float32)


def _quantize(g, call, base):
    out, x = call.output, g.value(call.inputs[0]).name
    s, zp, dtype = out.q_scale(), out.q_zero_point(), out.dtype
    table = g.const(base + "_thresholds", quantize_thresholds(s, zp, dtype))
    c = g.node("QuantizeLinear", [x] + g.qparams_inputs(base + "_out", s, zp, dtype), base)
    i = _index(g, c, dtype, base)
    lo = g.node("Gather", [table, i], base)
    hi = g.node("Gather", [table, g.node("Add", [i, g.const(base + "_one", np.int32(1))], base)], base)
    down = g.cast(g.node("Less", [x, lo], base), np.int32, base)
    up = g.cast(g.node("GreaterOrEqual", [x, hi], base), np.int32, base)
    i = g.node("Add", [g.node("Sub", [i, down], base), up], base)
    if dtype.qmin:
        i = g.node("Add", [i, g.const(base + "_qmin", np.int32(dtype.qmin))], base)
    g.bind(out, g.cast(i, dtype.storage, base))


# ------------------------------------------------------------------ Linear / Conv2d
def _requantize(g, call, acc: str, rank: int, axis: int, base: str, relu: bool) -> None:
    """v = fl(fl(float(acc) + bias_s[n]) * mult[n]) with the layer's packed constants."""
    p, xq = call.module._packed_params, call.inputs[0]
    bias_s, mult = requant_constants(xq.q_scale(), p.w_scale, call.output.q_scale(), p.bias)
    v = g.node("Add", [g.cast(acc, np.float32, base), g.const(base + "_bias_s", _channel(bias_s, rank, axis))], base)
    v = g.node("Mul", [v, g.const(base + "_multiplier", _channel(mult, rank, axis))], base)
    _output(g, call, v, base, relu)


def _weight(g, qw: QTensor, base: str, transpose: bool) -> list:
    """The weight as uint8 codes 128 higher, and its zero point 128: MatMulInteger /
    ConvInteger then compute sum (x - xz) * w exactly in ONNX Runtime on every CPU (its
    uint8 x int8 kernels saturate on AVX2 without VNNI; see shifted_weight)."""

    def make():
        q = shifted_weight(qw.int_repr())
        return (
            g.const(base + "_weight", np.ascontiguousarray(q.T if transpose else q)),
            g.const(base + "_weight_zero_point", np.uint8(128)),
        )

    return list(g.cached((id(qw), "uint8", transpose), qw, make))


def _x_zero_point(g, xq: QTensor, base: str) -> str:
    return g.const(base + "_x_zero_point", np.array(xq.q_zero_point(), xq.dtype.storage))


def _gemm(op: str, relu: bool):
    """Linear (MatMulInteger on a (K, N) weight, channels last) or Conv2d (ConvInteger,
    channels on axis 1), then npquant's requantization."""

    def convert(g, call, base):
        xq = quantized_input(call)
        linear = op == "MatMulInteger"
        w, w_zp = _weight(g, call.module.weight(), base, transpose=linear)
        attrs = {} if linear else conv_attrs(call.module, base)
        acc = g.node(op, [g.value(xq).name, w, _x_zero_point(g, xq, base), w_zp], base, **attrs)
        _requantize(g, call, acc, len(xq.shape), -1 if linear else 1, base, relu)

    return convert


def _conv_transpose(g, call, base):
    """ConvTranspose2d as the convolution it equals, from ConvInteger (ONNX has no integer
    ConvTranspose): the input with stride - 1 zero-point codes between neighbours, padded
    by d (k - 1) - p (+ output_padding at the end; cropped where that is negative), and the
    kernel flipped with its in / out channels swapped per group; stride 1, the layer's
    dilation. The zero-point codes and ConvInteger's padding (the zero point too) add 0, so
    the int32 accumulator is npquant's exact one; then its requantization."""
    mod, xq = call.module, quantized_input(call)
    n, c, h, w = xq.shape
    (kh, kw), (sh, sw), (dh, dw) = mod.kernel_size, mod.stride, mod.dilation
    (ph, pw), (oph, opw) = mod.padding, mod.output_padding
    x = g.value(xq).name
    xz = np.array(xq.q_zero_point(), xq.dtype.storage)
    if (sh, sw) != (1, 1):
        x = g.node("Reshape", [x, g.const(base + "_cells", np.array([0, c, h, 1, w, 1], np.int64))], base)
        ends = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1], np.int64)
        x = g.node("Pad", [x, g.const(base + "_spread", ends), g.const(base + "_xz", xz)], base)
        x = g.node("Reshape", [x, g.const(base + "_spread_shape", np.array([0, c, h * sh, w * sw], np.int64))], base)
        x = g.node(
            "Slice",
            [
                x,
                g.const(base + "_starts", np.array([0, 0], np.int64)),
                g.const(base + "_ends", np.array([(h - 1) * sh + 1, (w - 1) * sw + 1], np.int64)),
                g.const(base + "_axes", np.array([2, 3], np.int64)),
            ],
            base,
        )
    sizes = ((h - 1) * sh + 1, (w - 1) * sw + 1)
    begin = [dh * (kh - 1) - ph, dw * (kw - 1) - pw]
    end = [begin[0] + oph, begin[1] + opw]
    if min(begin + end) < 0:  # more padding than the kernel reaches: crop the spread input
        starts = [max(-b, 0) for b in begin]
        stops = [size - max(-e, 0) for size, e in zip(sizes, end)]
        x = g.node(
            "Slice",
            [
                x,
                g.const(base + "_crop_starts", np.array(starts, np.int64)),
                g.const(base + "_crop_ends", np.array(stops, np.int64)),
                g.const(base + "_crop_axes", np.array([2, 3], np.int64)),
            ],
            base,
        )
    qw = mod.weight().int_repr()  # (in, out / groups, kh, kw)
    groups, cg, og = mod.groups, c // mod.groups, qw.shape[1]
    flipped = qw[:, :, ::-1, ::-1].reshape(groups, cg, og, kh, kw).transpose(0, 2, 1, 3, 4)
    wc = np.ascontiguousarray(flipped.reshape(groups * og, cg, kh, kw))
    acc = g.node(
        "ConvInteger",
        [
            x,
            g.const(base + "_weight", shifted_weight(wc)),
            _x_zero_point(g, xq, base),
            g.const(base + "_weight_zero_point", np.uint8(128)),
        ],
        base,
        kernel_shape=[kh, kw],
        strides=[1, 1],
        pads=[max(b, 0) for b in begin] + [max(e, 0) for e in end],
        dilations=[dh, dw],
        group=groups,
    )
    bias_s, mult = requant_constants(xq.q_scale(), mod._w_scales, call.output.q_scale(), mod.bias())
    v = g.node("Add", [g.cast(acc, np.float32, base), g.const(base + "_bias_s", _channel(bias_s, 4, 1))], base)
    v = g.node("Mul", [v, g.const(base + "_multiplier", _channel(mult, 4, 1))], base)
    _output(g, call, v, base)


# ------------------------------------------------------------------ elementwise
def _add(g, call, base):
    """fl(dequant(a) + dequant(b)) (Relu), times fl(1 / scale), rounded."""
    a, b = (quantized_input(call, i) for i in (0, 1))
    fa, fb = (
        _lookup(g, g.value(v).name, v.dtype, dequant(_codes(v.dtype), v.q_scale(), v.q_zero_point()), f"{base}_{i}")
        for i, v in enumerate((a, b))
    )
    v = g.node("Add", [fa, fb], base)
    if call.op == "add_relu":
        v = g.node("Relu", [v], base)
    _output(g, call, g.node("Mul", [v, g.const(base + "_inv_scale", reciprocal(call.output.q_scale()))], base), base)


def _mul(g, call, base):
    """int32 product of the centred codes, times npquant's multiplier, rounded."""
    a, b = (quantized_input(call, i) for i in (0, 1))
    acc = g.node("Mul", [_centred(g, a, f"{base}_0"), _centred(g, b, f"{base}_1")], base)
    mult = mul_multiplier(a.q_scale(), b.q_scale(), call.output.q_scale())
    _output(g, call, g.node("Mul", [g.cast(acc, np.float32, base), g.const(base + "_multiplier", mult)], base), base)


def _qfunctional(g, call, base):
    ops = {"add": _add, "add_relu": _add, "mul": _mul, "cat": _cat, "add_scalar": _code_map, "mul_scalar": _code_map}
    ops[call.op](g, call, base)


def _batchnorm(relu: bool):
    """fl(fl(float(q - zp) * alpha[c]) + beta[c]), rounded to the output zero point."""

    def convert(g, call, base):
        xq = quantized_input(call)
        alpha, beta = call.module.affine(xq.q_scale(), call.output.q_scale())
        v = g.node(
            "Mul",
            [g.cast(_centred(g, xq, base), np.float32, base), g.const(base + "_alpha", _channel(alpha, 4, 1))],
            base,
        )
        v = g.node("Add", [v, g.const(base + "_beta", _channel(beta, 4, 1))], base)
        _output(g, call, v, base, relu)

    return convert


# ------------------------------------------------------------------ pooling
def _max_pool(g, call, base):
    """MaxPool on the codes (the maximum code is the code of the maximum)."""
    g.bind(call.output, max_pool(g, g.value(quantized_input(call)).name, call, base))


def _window_sums(g, xq: QTensor, geom, out_hw: tuple, base: str) -> str:
    """int32 sum of (code - zp) over each window's real elements: ConvInteger of a ones
    kernel per channel, whose padding is the zero point (so it adds 0). The end pads
    cover ceil_mode's partial windows."""
    ends = [max((o - 1) * s + k - n - p, 0) for n, o, k, s, p in zip(xq.shape[2:], out_hw, geom.k, geom.s, geom.p)]
    c = xq.shape[1]
    ones = g.const(base + "_ones", np.ones((c, 1) + tuple(geom.k), np.int8))
    return g.node(
        "ConvInteger",
        [g.value(xq).name, ones, _x_zero_point(g, xq, base)],
        base,
        kernel_shape=list(geom.k),
        strides=list(geom.s),
        pads=list(geom.p) + ends,
        group=c,
    )


def _fma_round(g, acc: str, inv: np.ndarray, zp: int, dtype, base: str) -> str:
    """nearbyint(fmaf(acc, inv, zp)) as npquant's fma_round computes it: exact float64
    product and sum, rounded once to float32."""
    v = g.node("Mul", [g.cast(acc, np.float64, base), g.const(base + "_inv", inv.astype(np.float64))], base)
    v = g.node("Add", [v, g.const(base + "_zp_float", np.float64(zp))], base)
    return _round(g, g.cast(v, np.float32, base), 0, dtype, base)


def _avg_pool(g, call, base):
    """NHWC input: nearbyint(fl(acc * mult)) + zp, and on PyTorch's scalar-loop channels
    (the last C % 16) nearbyint(fmaf(acc, fl(1 / fl(1 / mult)), zp)); NCHW input:
    nearbyint(fl(fl(acc * mult) + zp))."""
    xq, mod = quantized_input(call), call.module
    c, (h, w) = xq.shape[1], xq.shape[2:]
    out_hw = mod.geometry.output_hw(h, w)
    mult, _ = mod.multipliers(h, w, xq.is_nhwc)
    mult = mult.reshape(1, 1, *out_hw)
    acc_int = _window_sums(g, xq, mod.geometry, out_hw, base)
    v = g.node("Mul", [g.cast(acc_int, np.float32, base), g.const(base + "_multiplier", mult)], base)
    zp = xq.q_zero_point()
    if not xq.is_nhwc:
        v = g.node("Add", [v, g.const(base + "_zp_float", np.float32(zp))], base)
        g.bind(call.output, _round(g, v, 0, xq.dtype, base))
        return
    out = _round(g, v, zp, xq.dtype, base)
    tail = scalar_tail(c)
    if tail.start < c:
        scalar = _fma_round(g, acc_int, scalar_loop_multipliers(mult), zp, xq.dtype, base + "_tail")
        in_tail = np.zeros((1, c, 1, 1), bool)
        in_tail[:, tail] = True
        out = g.node("Where", [g.const(base + "_scalar_channels", in_tail), scalar, out], base)
    g.bind(call.output, out)


def _adaptive_pool(g, call, base):
    """Sums over PyTorch's bins, then NHWC input: nearbyint(fmaf(sum(q - zp), mult, zp));
    NCHW: nearbyint(fl(sum(q) * mult))."""
    xq, mod = quantized_input(call), call.module
    h, w = xq.shape[2:]
    oh, ow = adaptive_output_hw(mod.output_size, h, w)
    kh, kw = (np.subtract(*adaptive_bounds(n, o)[::-1]) for n, o in ((h, oh), (w, ow)))
    mult = adaptive_multipliers(kh, kw, xq.is_nhwc).reshape(1, 1, oh, ow)
    x = _centred(g, xq, base) if xq.is_nhwc else g.cast(g.value(xq).name, np.int32, base)

    def reduce(box, axes, keep):
        return g.node("ReduceSum", [box, g.const(base + "_axes", np.array(axes, np.int64))], base, keepdims=keep)

    def equal(x, k):  # (N, C, oh, kh, ow, kw), summed over kh and kw
        shape = g.const(base + "_bins", np.array([0, 0, oh, k[0], ow, k[1]], np.int64))
        return reduce(g.node("Reshape", [x, shape], base), [3, 5], 0)

    sums = adaptive_bins(g, x, mod, xq.shape, base, equal, lambda box: reduce(box, [2, 3], 1))
    if xq.is_nhwc:
        g.bind(call.output, _fma_round(g, sums, mult, xq.q_zero_point(), xq.dtype, base))
    else:
        v = g.node("Mul", [g.cast(sums, np.float32, base), g.const(base + "_multiplier", mult)], base)
        g.bind(call.output, _round(g, v, 0, xq.dtype, base))


# ------------------------------------------------------------------ the table
def _scalar(g, call, base):
    """npquant.onnx.Scalar: a code table on a QTensor, float arithmetic on an array."""
    if isinstance(call.output, QTensor):
        _code_map(g, call, base)
    else:
        float_or_qdq(scalar_float)(g, call, base)


def _dynamic_linear(g, call, base):
    warnings.warn(
        f"'{base}': dynamic Linear is exported as DynamicQuantizeLinear + MatMul, which is not "
        "bit-exact with npquant (ONNX Runtime chooses the activation qparams and rounds "
        "differently); only static quantized layers are exact in format='integer'",
        stacklevel=4,
    )
    dynamic_linear(g, call, base)


def integer_converters() -> dict:
    """Quantized module type -> its integer-format converter."""
    return {
        nnq.Quantize: _quantize,
        nnq.DeQuantize: _dequantize,
        nnq.Linear: _gemm("MatMulInteger", False),
        nnq.LinearReLU: _gemm("MatMulInteger", True),
        nnq.Conv2d: _gemm("ConvInteger", False),
        nnq.ConvReLU2d: _gemm("ConvInteger", True),
        nnq.Conv1d: _gemm("ConvInteger", False),
        nnq.ConvReLU1d: _gemm("ConvInteger", True),
        nnq.ConvTranspose2d: _conv_transpose,
        nnq.ReLU: _code_map,
        nnq.ReLU6: _code_map,
        nnq.Hardswish: _code_map,
        nnq.Hardsigmoid: _code_map,
        nnq.Sigmoid: _code_map,
        nnq.Tanh: _code_map,
        nnq.LeakyReLU: _code_map,
        nnq.ELU: _code_map,
        nnq.SiLU: _code_map,
        nnq.GELU: _code_map,
        nnq.MaxPool2d: _max_pool,
        nnq.AvgPool2d: _avg_pool,
        nnq.AdaptiveAvgPool2d: _adaptive_pool,
        nnq.BatchNorm2d: _batchnorm(False),
        nnq.BNReLU2d: _batchnorm(True),
        nnq.QFunctional: _qfunctional,
        Scalar: _scalar,
        nnqd.Linear: _dynamic_linear,
    }
