"""npquant model -> QDQ ONNX graph.

Each traced call becomes a few ONNX nodes. Quantized activations are integer
tensors (uint8, or int8 for qint8 activations) in PyTorch's logical order;
an op that computes in float reads them through its own DequantizeLinear and
writes its result through QuantizeLinear with the output's qparams, the QDQ
layout ONNX Runtime (and other QDQ-aware runtimes) fuse into integer kernels.
Weights are int8 initializers with per-channel DequantizeLinear (axis 0 of
the ONNX weight), biases int32 at scale fl(x_scale * w_scale[n]).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .._dtypes import qint8, quint8
from ..nn import quantized as nnq
from ..nn.quantized import dynamic as nnqd
from ..qtensor import QTensor
from ._errors import ExportError
from ._modules import Reshape, Scalar
from ._trace import Call, trace

OPSET = 17          # HardSwish needs 14, per-channel QuantizeLinear axis 13
IR_VERSION = 8      # the IR of opset 17, so older runtimes load the file too
INT32_MAX = 2**31 - 1


class _Value:
    """An ONNX tensor name and, for a quantized activation, its qparams."""

    __slots__ = ("name", "qparams", "shape")

    def __init__(self, name: str, qparams, shape: tuple):
        self.name, self.qparams, self.shape = name, qparams, tuple(shape)


class _Graph:
    """Nodes and initializers being built, with unique names."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.used = [], [], set()
        self.values: dict = {}  # id(array or QTensor) -> _Value
        self.weights: dict = {}  # (id(weight QTensor), transposed) -> its DequantizeLinear inputs

    def unique(self, base: str) -> str:
        base = base.replace(".", "_") or "model"
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def const(self, base: str, array) -> str:
        from onnx import numpy_helper

        name = self.unique(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list, base: str, n_out: int = 1, **attrs):
        outs = [self.unique(f"{base}_{op}" if n_out == 1 else f"{base}_{op}_{i}") for i in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=self.unique(f"{base}/{op}"), **attrs))
        return outs[0] if n_out == 1 else outs

    # ---- values
    def value(self, v) -> _Value:
        return self.values[id(v)]

    def bind(self, v, name: str) -> None:
        qp = (v.q_scale(), v.q_zero_point(), v.dtype) if isinstance(v, QTensor) else None
        self.values[id(v)] = _Value(name, qp, v.shape)

    def qparams_inputs(self, base: str, scale, zp, dtype) -> list:
        return [self.const(f"{base}_scale", np.float32(scale)),
                self.const(f"{base}_zero_point", np.array(zp, dtype=dtype.storage))]

    def float_of(self, v, base: str) -> str:
        """A float tensor for v: its own DequantizeLinear for a quantized activation."""
        val = self.value(v)
        if val.qparams is None:
            return val.name
        return self.node("DequantizeLinear", [val.name] + self.qparams_inputs(base + "_in", *val.qparams), base)

    def quantize_to(self, x: str, out: QTensor, base: str) -> str:
        """QuantizeLinear to out's qparams; binds out to the result."""
        name = self.node("QuantizeLinear", [x] + self.qparams_inputs(
            base + "_out", out.q_scale(), out.q_zero_point(), out.dtype), base)
        self.bind(out, name)
        return name


def _quantized_input(call: Call) -> QTensor:
    x = call.inputs[0]
    if not isinstance(x, QTensor):
        raise ExportError(f"module '{call.name}' got {type(x).__name__}, expected a QTensor")
    return x


# ------------------------------------------------------------------ weights
def _weight_dq(g: _Graph, qw: QTensor, base: str, transpose: bool = False) -> str:
    """DequantizeLinear of an int8 weight (per channel along the output axis). A module
    called more than once stores its weight once."""
    key = (id(qw), transpose)
    if key not in g.weights:
        q = qw.int_repr()
        if qw.qscheme() == "per_tensor_affine":
            scale, zp, axis = np.float32(qw.q_scale()), np.int8(qw.q_zero_point()), None
        else:
            if qw.q_per_channel_axis() != 0:
                raise ExportError(f"'{base}': per-channel weights must be quantized along axis 0")
            scale = qw.q_per_channel_scales().astype(np.float32)
            zp, axis = qw.q_per_channel_zero_points().astype(np.int8), 0
        if transpose:  # MatMul takes (K, N): the channel axis becomes 1
            q, axis = np.ascontiguousarray(q.T), (None if axis is None else 1)
        ins = [g.const(f"{base}_weight", q), g.const(f"{base}_weight_scale", scale),
               g.const(f"{base}_weight_zero_point", zp)]
        g.weights[key] = (ins, {} if axis is None else {"axis": axis}, qw)  # qw kept: its id stays valid
    ins, attrs, _ = g.weights[key]
    return g.node("DequantizeLinear", ins, base + "_weight", **attrs)


def _weight_scales(qw: QTensor, n: int) -> np.ndarray:
    if qw.qscheme() == "per_tensor_affine":
        return np.full(n, qw.q_scale(), np.float32)
    return qw.q_per_channel_scales().astype(np.float32)


def _bias(g: _Graph, bias, x_scale, qw: QTensor, base: str):
    """int32 bias at scale fl(x_scale * w_scale[n]) through DequantizeLinear (the QDQ
    convention), or the float bias when some value does not fit in int32."""
    if bias is None:
        return None
    b = np.asarray(bias, np.float32)
    s = (np.float32(x_scale) * _weight_scales(qw, b.shape[0])).astype(np.float32)
    bq = np.rint(b.astype(np.float64) / s.astype(np.float64))
    if np.all(np.abs(bq) <= INT32_MAX):
        ins = [g.const(f"{base}_bias", bq.astype(np.int32)), g.const(f"{base}_bias_scale", s),
               g.const(f"{base}_bias_zero_point", np.zeros(b.shape[0], np.int32))]
        return g.node("DequantizeLinear", ins, base + "_bias", axis=0)
    return g.const(f"{base}_bias", b)


def _linear(g: _Graph, x: str, rank: int, w: str, w_t: str, b, base: str) -> str:
    """Gemm for 2-D inputs, MatMul (+ Add) otherwise. w is (N, K), w_t (K, N)."""
    if rank == 2:
        return g.node("Gemm", [x, w] + ([b] if b is not None else []), base, transB=1)
    y = g.node("MatMul", [x, w_t], base)
    return y if b is None else g.node("Add", [y, b], base)


# ------------------------------------------------------------------ attributes
def _pair(v, what: str, base: str) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2:
        raise ExportError(f"'{base}': {what} {v!r} is not an int or a pair")
    return int(t[0]), int(t[1])


def _conv_attrs(mod, base: str) -> dict:
    if getattr(mod, "padding_mode", "zeros") != "zeros":
        raise ExportError(f"'{base}': padding_mode={mod.padding_mode!r}; ONNX Conv pads with zeros only")
    k = _pair(mod.kernel_size, "kernel_size", base)
    d = _pair(mod.dilation, "dilation", base)
    p = mod.padding
    if isinstance(p, str):
        if p == "valid":
            pads = [0, 0, 0, 0]
        elif p == "same":  # torch puts the odd pixel at the end
            tot = [di * (ki - 1) for di, ki in zip(d, k)]
            pads = [tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2]
        else:
            raise ExportError(f"'{base}': padding {p!r} is not 'same', 'valid' or numbers")
    elif isinstance(p, (tuple, list)) and len(p) == 4:  # (top, left, bottom, right)
        pads = [int(p[0]), int(p[1]), int(p[2]), int(p[3])]
    else:
        ph, pw = _pair(p, "padding", base)
        pads = [ph, pw, ph, pw]
    return dict(kernel_shape=list(k), strides=list(_pair(mod.stride, "stride", base)), pads=pads,
                dilations=list(d), group=int(mod.groups))


def _pool_attrs(geom) -> dict:
    return dict(kernel_shape=list(geom.k), strides=list(geom.s), pads=[geom.p[0], geom.p[1]] * 2)


def _adaptive_pool(g: _Graph, x: str, mod, shape, base: str) -> str:
    """GlobalAveragePool, AveragePool when the bins are equal, else one ReduceMean per
    bin (PyTorch's bin bounds) joined by Concat."""
    from ..nn._pool import adaptive_bounds
    from ..nn.pooling import adaptive_output_hw

    h, w = shape[2], shape[3]
    oh, ow = adaptive_output_hw(mod.output_size, h, w)
    if (oh, ow) == (1, 1):
        return g.node("GlobalAveragePool", [x], base)
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        return g.node("AveragePool", [x], base, kernel_shape=k, strides=k)
    hs, he = adaptive_bounds(h, oh)
    ws, we = adaptive_bounds(w, ow)
    axes = g.const(base + "_axes", np.array([2, 3], np.int64))
    rows = []
    for i in range(oh):
        cells = []
        for j in range(ow):
            box = g.node("Slice", [x, g.const(base + "_starts", np.array([hs[i], ws[j]], np.int64)),
                                   g.const(base + "_ends", np.array([he[i], we[j]], np.int64)), axes], base)
            cells.append(g.node("ReduceMean", [box], base, axes=[2, 3], keepdims=1))
        rows.append(cells[0] if ow == 1 else g.node("Concat", cells, base, axis=3))
    return rows[0] if oh == 1 else g.node("Concat", rows, base, axis=2)


def _avg_pool(g: _Graph, x: str, mod, base: str) -> str:
    if mod.divisor_override is not None:
        raise ExportError(f"'{base}': AvgPool2d(divisor_override=...) has no ONNX equivalent")
    return g.node("AveragePool", [x], base, count_include_pad=int(bool(mod.count_include_pad)),
                  ceil_mode=int(mod.geometry.ceil_mode), **_pool_attrs(mod.geometry))


def _max_pool(g: _Graph, x: str, mod, base: str) -> str:
    geom = mod.geometry
    return g.node("MaxPool", [x], base, dilations=list(geom.d), ceil_mode=int(geom.ceil_mode),
                  **_pool_attrs(geom))


def _batchnorm(g: _Graph, x: str, bn, base: str) -> str:
    n = bn.num_features
    w = np.ones(n, np.float32) if bn.weight is None else bn.weight
    b = np.zeros(n, np.float32) if bn.bias is None else bn.bias
    ins = [x] + [g.const(f"{base}_{k}", np.asarray(v, np.float32))
                 for k, v in (("weight", w), ("bias", b), ("running_mean", bn.running_mean),
                              ("running_var", bn.running_var))]
    return g.node("BatchNormalization", ins, base, epsilon=float(bn.eps))


def _clip6(g: _Graph, x: str, base: str) -> str:
    return g.node("Clip", [x, g.const(base + "_min", np.float32(0)), g.const(base + "_max", np.float32(6))], base)


def _reshape(g: _Graph, x: str, in_shape: tuple, out_shape: tuple, base: str) -> str:
    """Reshape to out_shape; the batch dimension stays symbolic when it is kept."""
    if len(in_shape) >= 2 and len(out_shape) == 2 and out_shape[0] == in_shape[0]:
        return g.node("Flatten", [x], base, axis=1)
    target = list(out_shape)
    if in_shape and target and target[0] == in_shape[0]:
        target[0] = 0  # ONNX Reshape: 0 copies the input's dimension
    return g.node("Reshape", [x, g.const(base + "_shape", np.array(target, np.int64))], base)


# ------------------------------------------------------------------ converters
# Each takes (graph, call, base) and binds call.output.

def _alias(g, call, base):
    g.values[id(call.output)] = g.value(call.inputs[0])


def _float_unary(make):
    """A float module computing out = make(g, x, call, base)."""
    def convert(g, call, base):
        x = g.float_of(call.inputs[0], base)
        g.bind(call.output, make(g, x, call, base))
    return convert


def _quant_unary(make, relu: bool = False):
    """A quantized module: DequantizeLinear, the float op, QuantizeLinear to the output's qparams."""
    def convert(g, call, base):
        _quantized_input(call)
        y = make(g, g.float_of(call.inputs[0], base), call, base)
        if relu:
            y = g.node("Relu", [y], base)
        g.quantize_to(y, call.output, base)
    return convert


def _float_linear(g, x, call, base):
    lin = call.module
    w = np.asarray(lin.weight, np.float32)
    b = None if lin.bias is None else g.const(base + "_bias", np.asarray(lin.bias, np.float32))
    if len(call.inputs[0].shape) == 2:
        return _linear(g, x, 2, g.const(base + "_weight", w), None, b, base)
    return _linear(g, x, 0, None, g.const(base + "_weight", np.ascontiguousarray(w.T)), b, base)


def _float_conv(g, x, call, base):
    conv = call.module
    ins = [x, g.const(base + "_weight", np.asarray(conv.weight, np.float32))]
    if conv.bias is not None:
        ins.append(g.const(base + "_bias", np.asarray(conv.bias, np.float32)))
    return g.node("Conv", ins, base, **_conv_attrs(conv, base))


def _quant_linear(g, x, call, base):
    mod, xq = call.module, _quantized_input(call)
    qw = mod.weight()
    b = _bias(g, mod.bias(), xq.q_scale(), qw, base)
    if len(xq.shape) == 2:
        return _linear(g, x, 2, _weight_dq(g, qw, base), None, b, base)
    return _linear(g, x, 0, None, _weight_dq(g, qw, base, transpose=True), b, base)


def _quant_conv(g, x, call, base):
    mod, xq = call.module, _quantized_input(call)
    qw = mod.weight()
    ins = [x, _weight_dq(g, qw, base)]
    b = _bias(g, mod.bias(), xq.q_scale(), qw, base)
    if b is not None:
        ins.append(b)
    return g.node("Conv", ins, base, **_conv_attrs(mod, base))


def _quantize(g, call, base):
    x = g.float_of(call.inputs[0], base)
    g.quantize_to(x, call.output, base)


def _dequantize(g, call, base):
    g.bind(call.output, g.float_of(_quantized_input(call), base))


def _dynamic_linear(g, call, base):
    """DynamicQuantizeLinear (per tensor, range including 0) feeding the int8 weights."""
    mod, xv = call.module, call.inputs[0]
    if mod.per_row:
        raise ExportError(f"'{base}': dynamic Linear with per_row=True has no ONNX equivalent "
                          "(DynamicQuantizeLinear is per tensor)")
    q, s, zp = g.node("DynamicQuantizeLinear", [g.float_of(xv, base)], base, n_out=3)
    x = g.node("DequantizeLinear", [q, s, zp], base)
    qw = mod.weight()
    b = None if mod.bias() is None else g.const(base + "_bias", np.asarray(mod.bias(), np.float32))
    if len(xv.shape) == 2:
        y = _linear(g, x, 2, _weight_dq(g, qw, base), None, b, base)
    else:
        y = _linear(g, x, 0, None, _weight_dq(g, qw, base, transpose=True), b, base)
    g.bind(call.output, y)


def _flatten_call(g, call, base):
    """Flatten / QTensor.reshape: on the integer codes directly (qparams unchanged)."""
    v = g.value(call.inputs[0])
    name = _reshape(g, v.name, v.shape, tuple(call.output.shape), base)
    g.values[id(call.output)] = _Value(name, v.qparams, call.output.shape)


def _functional(g, call, base):
    """FloatFunctional / QFunctional methods."""
    op = call.op
    quantized = isinstance(call.output, QTensor)
    if op == "cat":
        dim = call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else 0)
        xs = [g.float_of(v, f"{base}_{i}") for i, v in enumerate(call.inputs)]
        y = g.node("Concat", xs, base, axis=int(dim))
    elif op in ("add_scalar", "mul_scalar"):
        c = call.kwargs.get("c", call.args[1] if len(call.args) > 1 else None)
        x = g.float_of(call.inputs[0], base)
        y = g.node("Add" if op == "add_scalar" else "Mul", [x, g.const(base + "_c", np.float32(c))], base)
    else:
        if len(call.inputs) != 2:
            raise ExportError(f"'{base}.{op}' needs two array / QTensor operands")
        a, b = (g.float_of(v, f"{base}_{i}") for i, v in enumerate(call.inputs))
        y = g.node("Mul" if op == "mul" else "Add", [a, b], base)
        if op == "add_relu":
            y = g.node("Relu", [y], base)
    if quantized:
        g.quantize_to(y, call.output, base)
    else:
        g.bind(call.output, y)


def _scalar(g, call, base):
    """npquant.onnx.Scalar (from load): x + c or x * c, requantized when x is a QTensor."""
    c = g.const(base + "_c", np.float32(call.module.c))
    y = g.node("Add" if call.module.op == "add" else "Mul", [g.float_of(call.inputs[0], base), c], base)
    if isinstance(call.output, QTensor):
        g.quantize_to(y, call.output, base)
    else:
        g.bind(call.output, y)


def _converters() -> dict:
    """Exact module type -> converter. Subclasses are not assumed to behave alike."""
    relu = lambda g, x, c, b: g.node("Relu", [x], b)  # noqa: E731
    relu6 = lambda g, x, c, b: _clip6(g, x, b)  # noqa: E731
    hswish = lambda g, x, c, b: g.node("HardSwish", [x], b)  # noqa: E731
    maxp = lambda g, x, c, b: _max_pool(g, x, c.module, b)  # noqa: E731
    avgp = lambda g, x, c, b: _avg_pool(g, x, c.module, b)  # noqa: E731
    adap = lambda g, x, c, b: _adaptive_pool(g, x, c.module, c.inputs[0].shape, b)  # noqa: E731
    bn = lambda g, x, c, b: _batchnorm(g, x, c.module, b)  # noqa: E731
    table = {
        nn.Identity: _alias, nn.Dropout: _alias, nn.QuantStub: _alias, nn.DeQuantStub: _alias,
        nn.Linear: _float_unary(_float_linear),
        nn.ReLU: _float_unary(relu), nn.ReLU6: _float_unary(relu6), nn.Hardswish: _float_unary(hswish),
        nn.MaxPool2d: _float_unary(maxp), nn.AvgPool2d: _float_unary(avgp),
        nn.AdaptiveAvgPool2d: _float_unary(adap),
        nn.BatchNorm1d: _float_unary(bn), nn.BatchNorm2d: _float_unary(bn),
        nn.Flatten: _flatten_call, nn.FloatFunctional: _functional,
        nnq.Quantize: _quantize, nnq.DeQuantize: _dequantize,
        nnq.Linear: _quant_unary(_quant_linear), nnq.LinearReLU: _quant_unary(_quant_linear, relu=True),
        nnq.ReLU: _quant_unary(relu), nnq.ReLU6: _quant_unary(relu6), nnq.Hardswish: _quant_unary(hswish),
        nnq.MaxPool2d: _quant_unary(maxp), nnq.AvgPool2d: _quant_unary(avgp),
        nnq.AdaptiveAvgPool2d: _quant_unary(adap),
        nnq.BatchNorm2d: _quant_unary(bn), nnq.BNReLU2d: _quant_unary(bn, relu=True),
        nnq.Dropout: _alias, nnq.Flatten: _flatten_call, nnq.QFunctional: _functional,
        nnqd.Linear: _dynamic_linear, Reshape: _flatten_call, Scalar: _scalar,
    }
    if hasattr(nn, "Conv2d"):
        table[nn.Conv2d] = _float_unary(_float_conv)
    if hasattr(nnq, "Conv2d"):
        table[nnq.Conv2d] = _quant_unary(_quant_conv)
        table[nnq.ConvReLU2d] = _quant_unary(_quant_conv, relu=True)
    return table


# ------------------------------------------------------------------ graph I/O
def _tensor_type(v) -> int:
    from onnx import TensorProto

    if isinstance(v, QTensor):
        return {quint8: TensorProto.UINT8, qint8: TensorProto.INT8}[v.dtype]
    return TensorProto.FLOAT


def _io_shape(v, dynamic_batch: bool) -> list:
    shape = list(v.shape)
    if dynamic_batch and shape:
        shape[0] = "N"
    return shape


def _check_input(v, i: int):
    if isinstance(v, QTensor):
        if v.qscheme() != "per_tensor_affine" or v.dtype not in (quint8, qint8):
            raise ExportError(f"example input {i}: a QTensor input must be per-tensor quint8 or qint8")
        return v
    if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
        raise ExportError(f"example input {i} must be a float numpy array or a QTensor, got "
                          f"{type(v).__name__}{'' if not isinstance(v, np.ndarray) else ' of ' + str(v.dtype)}")
    return np.ascontiguousarray(v, dtype=np.float32)


def build_model(model, example_input, dynamic_batch: bool = True, graph_name: str = "npquant"):
    """The onnx.ModelProto for model traced on example_input (an array / QTensor or a tuple)."""
    import onnx

    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    inputs = tuple(_check_input(v, i) for i, v in enumerate(inputs))
    table = _converters()
    tr = trace(model, inputs, lambda m: type(m) in table)
    g = _Graph(onnx)
    graph_inputs = []
    for i, v in enumerate(inputs):
        name = g.unique("input" if len(inputs) == 1 else f"input_{i}")
        g.bind(v, name)
        graph_inputs.append(onnx.helper.make_tensor_value_info(name, _tensor_type(v), _io_shape(v, dynamic_batch)))
    for call in tr.calls:
        base = call.name if call.op in ("call", "reshape") else f"{call.name}.{call.op}"
        base = base.strip("<>").replace("QTensor.", "") or type(call.module).__name__
        convert = _flatten_call if call.op == "reshape" else table[type(call.module)]
        convert(g, call, base)
    graph_outputs = []
    for i, v in enumerate(tr.outputs):
        name = g.unique("output" if len(tr.outputs) == 1 else f"output_{i}")
        g.nodes.append(onnx.helper.make_node("Identity", [g.value(v).name], [name], name=g.unique(name + "/Identity")))
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, _tensor_type(v), _io_shape(v, dynamic_batch)))
    graph = onnx.helper.make_graph(g.nodes, graph_name, graph_inputs, graph_outputs, g.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="npquant")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto
