"""Float modules, and the QDQ format of the quantized ones.

A float module becomes its float ONNX op. In the QDQ format a quantized module
becomes the same float op between DequantizeLinear (of each quantized input)
and QuantizeLinear (to the output's qparams), the layout ONNX Runtime and other
QDQ-aware runtimes fuse into integer kernels; Linear/Conv weights are uint8
initializers (npquant's int8 codes + 128) with per-channel DequantizeLinear
(zero points 128, axis 0 of the ONNX weight), or int8 ones (zero point 0) with
weight_dtype="int8"; biases int32 at scale fl(x_scale * w_scale[n]).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import quantized as nnq
from ..nn.quantized import dynamic as nnqd
from ..qtensor import QTensor
from ._errors import ExportError
from ._graph import adaptive_bins, conv_attrs, functional_dim, functional_scalar, pool_attrs, quantized_input
from ._modules import Scalar

INT32_MAX = 2**31 - 1
# metadata_props key prefix (+ the int32 bias initializer's name) of the float bias an
# int32 QDQ bias was rounded from: npquant.onnx.load adds it as npquant did, so that
# export -> load is bit-identical; other runtimes ignore metadata.
FLOAT_BIAS_KEY = "npquant.float_bias:"


def encode_floats(a: np.ndarray) -> str:
    """float32 values as base64 of their little-endian bytes (a metadata_props string)."""
    import base64

    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode("ascii")


def decode_floats(text: str) -> np.ndarray:
    """The inverse of encode_floats; ValueError for text that is not such a string."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"not base64: {e}") from None
    if len(raw) % 4:
        raise ValueError("not a whole number of float32 values")
    return np.frombuffer(raw, "<f4").astype(np.float32)


# ------------------------------------------------------------------ weights
def shifted_weight(q: np.ndarray) -> np.ndarray:
    """int8 weight codes as uint8 codes 128 higher: w_u8 - 128 == w_s8, so with the zero
    point also 128 higher a runtime computes the same products. ONNX Runtime multiplies
    uint8 x uint8 exactly on every x86 CPU; its uint8 x int8 kernels on AVX2 without VNNI
    use vpmaddubsw, which saturates int16 pair sums (docs/onnx.md)."""
    return (np.asarray(q, np.int16) + 128).astype(np.uint8)


def _weight_dq(g, qw: QTensor, base: str, transpose: bool = False, channel_axis: int = 0) -> str:
    """DequantizeLinear of the weight (per channel along the output axis, channel_axis: 1
    for ConvTranspose's (in, out, kh, kw)): uint8 codes with the zero point shifted by 128
    (shifted_weight), or with g.weight_dtype == "int8" the int8 codes as they are."""
    shift = g.weight_dtype == "uint8"

    def make():
        q = qw.int_repr()
        zp: np.ndarray  # int16 while computing the shift, then the int8 / uint8 codes
        if qw.qscheme() == "per_tensor_affine":
            scale, zp, axis = np.float32(qw.q_scale()), np.array(qw.q_zero_point(), np.int16), None
        else:
            if qw.q_per_channel_axis() != channel_axis:
                raise ExportError(f"'{base}': per-channel weights must be quantized along axis {channel_axis}")
            scale = qw.q_per_channel_scales().astype(np.float32)
            zp, axis = qw.q_per_channel_zero_points().astype(np.int16), channel_axis
        q, zp = (shifted_weight(q), shifted_weight(zp)) if shift else (q, zp.astype(np.int8))
        if transpose:  # MatMul takes (K, N): the channel axis becomes 1
            q, axis = np.ascontiguousarray(q.T), (None if axis is None else 1)
        ins = [
            g.const(f"{base}_weight", q),
            g.const(f"{base}_weight_scale", scale),
            g.const(f"{base}_weight_zero_point", zp),
        ]
        return ins, ({} if axis is None else {"axis": axis})

    ins, attrs = g.cached((id(qw), "dq", transpose, shift), qw, make)
    return g.node("DequantizeLinear", ins, base + "_weight", **attrs)


def _weight_scales(qw: QTensor, n: int) -> np.ndarray:
    if qw.qscheme() == "per_tensor_affine":
        return np.full(n, qw.q_scale(), np.float32)
    return qw.q_per_channel_scales().astype(np.float32)


def _bias(g, bias, x_scale, qw: QTensor, base: str):
    """int32 bias at scale fl(x_scale * w_scale[n]) through DequantizeLinear (the QDQ
    convention), or the float bias when some value does not fit in int32."""
    if bias is None:
        return None
    b = np.asarray(bias, np.float32)
    s = (np.float32(x_scale) * _weight_scales(qw, b.shape[0])).astype(np.float32)
    bq = np.rint(b.astype(np.float64) / s.astype(np.float64))
    if np.all(np.abs(bq) <= INT32_MAX):
        ins = [
            g.const(f"{base}_bias", bq.astype(np.int32)),
            g.const(f"{base}_bias_scale", s),
            g.const(f"{base}_bias_zero_point", np.zeros(b.shape[0], np.int32)),
        ]
        g.metadata[FLOAT_BIAS_KEY + ins[0]] = encode_floats(b)
        return g.node("DequantizeLinear", ins, base + "_bias", axis=0)
    return g.const(f"{base}_bias", b)


def _linear(g, x: str, rank: int, weight, b, base: str) -> str:
    """Gemm for 2-D inputs, MatMul (+ Add) otherwise. weight(transposed) gives the
    weight as (N, K) or, transposed, (K, N)."""
    if rank == 2:
        return g.node("Gemm", [x, weight(False)] + ([b] if b is not None else []), base, transB=1)
    y = g.node("MatMul", [x, weight(True)], base)
    return y if b is None else g.node("Add", [y, b], base)


# ------------------------------------------------------------------ float ops
# Each make(g, x, call, base) returns the float result of the op on float tensor x.


def _relu(g, x, call, base):
    return g.node("Relu", [x], base)


def _relu6(g, x, call, base):
    return g.node("Clip", [x, g.const(base + "_min", np.float32(0)), g.const(base + "_max", np.float32(6))], base)


def _hardswish(g, x, call, base):
    return g.node("HardSwish", [x], base)


def _hardsigmoid(g, x, call, base):
    return g.node("HardSigmoid", [x], base, alpha=1.0 / 6.0, beta=0.5)


def _sigmoid(g, x, call, base):
    return g.node("Sigmoid", [x], base)


def _tanh(g, x, call, base):
    return g.node("Tanh", [x], base)


def _leaky_relu(g, x, call, base):
    return g.node("LeakyRelu", [x], base, alpha=float(call.module.negative_slope))


def _elu(g, x, call, base):
    return g.node("Elu", [x], base, alpha=float(call.module.alpha))


def _silu(g, x, call, base):
    return g.node("Mul", [x, g.node("Sigmoid", [x], base)], base)


def _gelu(g, x, call, base):
    """GELU without opset 20's Gelu: 0.5 x (1 + erf(x / sqrt 2)), or with approximate='tanh'
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""

    def c(name, v):
        return g.const(f"{base}_{name}", np.float32(v))

    if call.module.approximate == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x, x], base), x], base)
        inner = g.node("Add", [x, g.node("Mul", [cube, c("k", 0.044715)], base)], base)
        t = g.node("Tanh", [g.node("Mul", [inner, c("s", np.sqrt(2.0 / np.pi))], base)], base)
    else:
        t = g.node("Erf", [g.node("Mul", [x, c("rsqrt2", 1.0 / np.sqrt(2.0))], base)], base)
    one_plus = g.node("Add", [t, c("one", 1.0)], base)
    return g.node("Mul", [g.node("Mul", [x, c("half", 0.5)], base), one_plus], base)


def max_pool(g, x, call, base):
    geom = call.module.geometry
    return g.node("MaxPool", [x], base, dilations=list(geom.d), ceil_mode=int(geom.ceil_mode), **pool_attrs(geom))


def _avg_pool(g, x, call, base):
    mod = call.module
    if mod.divisor_override is not None:
        raise ExportError(
            f"'{base}': AvgPool2d(divisor_override=...) has no ONNX equivalent in float or "
            "QDQ form (format='integer' exports it)"
        )
    return g.node(
        "AveragePool",
        [x],
        base,
        count_include_pad=int(bool(mod.count_include_pad)),
        ceil_mode=int(mod.geometry.ceil_mode),
        **pool_attrs(mod.geometry),
    )


def _adaptive_pool(g, x, call, base):
    """GlobalAveragePool, AveragePool when the bins are equal, else ReduceMean per bin."""
    h, w = call.inputs[0].shape[2:4]

    def equal(x, k):
        if k == (h, w):
            return g.node("GlobalAveragePool", [x], base)
        return g.node("AveragePool", [x], base, kernel_shape=list(k), strides=list(k))

    return adaptive_bins(
        g,
        x,
        call.module,
        call.inputs[0].shape,
        base,
        equal,
        lambda box: g.node("ReduceMean", [box], base, axes=[2, 3], keepdims=1),
    )


def _batchnorm(g, x, call, base):
    bn = call.module
    n = bn.num_features
    w = np.ones(n, np.float32) if bn.weight is None else bn.weight
    b = np.zeros(n, np.float32) if bn.bias is None else bn.bias
    ins = [x] + [
        g.const(f"{base}_{k}", np.asarray(v, np.float32))
        for k, v in (("weight", w), ("bias", b), ("running_mean", bn.running_mean), ("running_var", bn.running_var))
    ]
    return g.node("BatchNormalization", ins, base, epsilon=float(bn.eps))


def _float_linear(g, x, call, base):
    lin = call.module
    w = np.asarray(lin.weight, np.float32)
    b = None if lin.bias is None else g.const(base + "_bias", np.asarray(lin.bias, np.float32))
    weight = lambda t: g.const(base + "_weight", np.ascontiguousarray(w.T) if t else w)  # noqa: E731
    return _linear(g, x, len(call.inputs[0].shape), weight, b, base)


def _float_conv(g, x, call, base):
    conv = call.module
    ins = [x, g.const(base + "_weight", np.asarray(conv.weight, np.float32))]
    if conv.bias is not None:
        ins.append(g.const(base + "_bias", np.asarray(conv.bias, np.float32)))
    return g.node("Conv", ins, base, **conv_attrs(conv, base))


def conv_transpose_attrs(mod) -> dict:
    """ConvTranspose attributes of a float or quantized ConvTranspose2d (explicit pads: the
    output size is torch's, (in - 1) * s - 2p + d (k - 1) + output_padding + 1)."""
    ph, pw = mod.padding
    return dict(
        kernel_shape=list(mod.kernel_size),
        strides=list(mod.stride),
        pads=[ph, pw, ph, pw],
        output_padding=list(mod.output_padding),
        dilations=list(mod.dilation),
        group=int(mod.groups),
    )


def _float_conv_transpose(g, x, call, base):
    mod = call.module
    ins = [x, g.const(base + "_weight", np.asarray(mod.weight, np.float32))]
    if mod.bias is not None:
        ins.append(g.const(base + "_bias", np.asarray(mod.bias, np.float32)))
    return g.node("ConvTranspose", ins, base, **conv_transpose_attrs(mod))


def _quant_conv_transpose(g, x, call, base):
    mod, xq = call.module, quantized_input(call)
    qw = mod.weight()
    ins = [x, _weight_dq(g, qw, base, channel_axis=1)]
    b = _bias(g, mod.bias(), xq.q_scale(), qw, base)
    if b is not None:
        ins.append(b)
    return g.node("ConvTranspose", ins, base, **conv_transpose_attrs(mod))


def _quant_linear(g, x, call, base):
    mod, xq = call.module, quantized_input(call)
    qw = mod.weight()
    b = _bias(g, mod.bias(), xq.q_scale(), qw, base)
    return _linear(g, x, len(xq.shape), lambda t: _weight_dq(g, qw, base, transpose=t), b, base)


def _quant_conv(g, x, call, base):
    mod, xq = call.module, quantized_input(call)
    qw = mod.weight()
    ins = [x, _weight_dq(g, qw, base)]
    b = _bias(g, mod.bias(), xq.q_scale(), qw, base)
    if b is not None:
        ins.append(b)
    return g.node("Conv", ins, base, **conv_attrs(mod, base))


def _functional_float(g, call, base) -> str:
    """The float result of a FloatFunctional / QFunctional method (operands through float_of)."""
    op = call.op
    if op == "cat":
        xs = [g.float_of(v, f"{base}_{i}") for i, v in enumerate(call.inputs)]
        return g.node("Concat", xs, base, axis=functional_dim(call))
    if op in ("add_scalar", "mul_scalar"):
        x = g.float_of(call.inputs[0], base)
        c = g.const(base + "_c", np.float32(functional_scalar(call)))
        return g.node("Add" if op == "add_scalar" else "Mul", [x, c], base)
    if len(call.inputs) != 2:
        raise ExportError(f"'{base}.{op}' needs two array / QTensor operands")
    a, b = (g.float_of(v, f"{base}_{i}") for i, v in enumerate(call.inputs))
    y = g.node("Mul" if op == "mul" else "Add", [a, b], base)
    return g.node("Relu", [y], base) if op == "add_relu" else y


def scalar_float(g, call, base) -> str:
    """npquant.onnx.Scalar (from load): x + c or x * c."""
    c = g.const(base + "_c", np.float32(call.module.c))
    return g.node("Add" if call.module.op == "add" else "Mul", [g.float_of(call.inputs[0], base), c], base)


# ------------------------------------------------------------------ converters
# Each takes (graph, call, base) and binds call.output.


def _float(make):
    """A float module computing out = make(g, x, call, base)."""

    def convert(g, call, base):
        g.bind(call.output, make(g, g.float_of(call.inputs[0], base), call, base))

    return convert


def _qdq(make, relu: bool = False):
    """A quantized module: DequantizeLinear, the float op, QuantizeLinear to the output's qparams."""

    def convert(g, call, base):
        quantized_input(call)
        y = make(g, g.float_of(call.inputs[0], base), call, base)
        if relu:
            y = g.node("Relu", [y], base)
        g.quantize_to(y, call.output, base)

    return convert


def float_or_qdq(result):
    """result(g, call, base) in float, requantized when the output is a QTensor."""

    def convert(g, call, base):
        y = result(g, call, base)
        if isinstance(call.output, QTensor):
            g.quantize_to(y, call.output, base)
        else:
            g.bind(call.output, y)

    return convert


def _quantize(g, call, base):
    g.quantize_to(g.float_of(call.inputs[0], base), call.output, base)


def _dequantize(g, call, base):
    g.bind(call.output, g.float_of(quantized_input(call), base))


def dynamic_linear(g, call, base):
    """DynamicQuantizeLinear (per tensor, range including 0) feeding the int8 weights."""
    mod, xv = call.module, call.inputs[0]
    if mod.per_row:
        raise ExportError(
            f"'{base}': dynamic Linear with per_row=True has no ONNX equivalent (DynamicQuantizeLinear is per tensor)"
        )
    if mod.reduce_range:
        raise ExportError(
            f"'{base}': dynamic Linear with reduce_range=True has no ONNX equivalent "
            "(DynamicQuantizeLinear quantizes to [0, 255]); set reduce_range = False to export"
        )
    q, s, zp = g.node("DynamicQuantizeLinear", [g.float_of(xv, base)], base, n_out=3)
    x = g.node("DequantizeLinear", [q, s, zp], base)
    qw = mod.weight()
    b = None if mod.bias() is None else g.const(base + "_bias", np.asarray(mod.bias(), np.float32))
    g.bind(call.output, _linear(g, x, len(xv.shape), lambda t: _weight_dq(g, qw, base, transpose=t), b, base))


def _resample_converters() -> dict:
    """ChannelShuffle and Upsample: exact in every format, on floats and QTensors (_resample.py)."""
    from . import _resample

    return {
        nn.ChannelShuffle: _resample.channel_shuffle,
        nn.Upsample: _resample.upsample,
        nn.UpsamplingNearest2d: _resample.upsample,
        nn.UpsamplingBilinear2d: _resample.upsample,
    }


def float_converters() -> dict:
    """Float module type -> converter (the same in every format)."""
    return {
        nn.Linear: _float(_float_linear),
        nn.Conv2d: _float(_float_conv),
        nn.Conv1d: _float(_float_conv),
        nn.ConvTranspose2d: _float(_float_conv_transpose),
        nn.ReLU: _float(_relu),
        nn.ReLU6: _float(_relu6),
        nn.Hardswish: _float(_hardswish),
        nn.Hardsigmoid: _float(_hardsigmoid),
        nn.Sigmoid: _float(_sigmoid),
        nn.Tanh: _float(_tanh),
        nn.LeakyReLU: _float(_leaky_relu),
        nn.ELU: _float(_elu),
        nn.SiLU: _float(_silu),
        nn.GELU: _float(_gelu),
        nn.MaxPool2d: _float(max_pool),
        nn.AvgPool2d: _float(_avg_pool),
        nn.AdaptiveAvgPool2d: _float(_adaptive_pool),
        nn.BatchNorm1d: _float(_batchnorm),
        nn.BatchNorm2d: _float(_batchnorm),
        nn.FloatFunctional: float_or_qdq(_functional_float),
        **_resample_converters(),
    }


def qdq_converters() -> dict:
    """Quantized module type -> its QDQ converter."""
    return {
        nnq.Quantize: _quantize,
        nnq.DeQuantize: _dequantize,
        nnq.Linear: _qdq(_quant_linear),
        nnq.LinearReLU: _qdq(_quant_linear, relu=True),
        nnq.Conv2d: _qdq(_quant_conv),
        nnq.ConvReLU2d: _qdq(_quant_conv, relu=True),
        nnq.Conv1d: _qdq(_quant_conv),
        nnq.ConvReLU1d: _qdq(_quant_conv, relu=True),
        nnq.ConvTranspose2d: _qdq(_quant_conv_transpose),
        nnq.ReLU: _qdq(_relu),
        nnq.ReLU6: _qdq(_relu6),
        nnq.Hardswish: _qdq(_hardswish),
        nnq.Hardsigmoid: _qdq(_hardsigmoid),
        nnq.Sigmoid: _qdq(_sigmoid),
        nnq.Tanh: _qdq(_tanh),
        nnq.LeakyReLU: _qdq(_leaky_relu),
        nnq.ELU: _qdq(_elu),
        nnq.SiLU: _qdq(_silu),
        nnq.GELU: _qdq(_gelu),
        nnq.MaxPool2d: _qdq(max_pool),
        nnq.AvgPool2d: _qdq(_avg_pool),
        nnq.AdaptiveAvgPool2d: _qdq(_adaptive_pool),
        nnq.BatchNorm2d: _qdq(_batchnorm),
        nnq.BNReLU2d: _qdq(_batchnorm, relu=True),
        nnq.QFunctional: float_or_qdq(_functional_float),
        Scalar: float_or_qdq(scalar_float),
        nnqd.Linear: dynamic_linear,
    }
