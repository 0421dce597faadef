"""npquant model -> ONNX graph, in one of two formats for the quantized ops.

The model's forward() is traced (see _trace); each recorded call becomes a few
ONNX nodes. Float modules, Flatten / reshape and the stubs are written the same
in every format; quantized ops by the format's converters: _qdq (QDQ: float
ops between QuantizeLinear / DequantizeLinear, what runtimes fuse into their
int8 kernels) or _integer (npquant's arithmetic step by step: bit-exact).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .._dtypes import qint8, quint8
from ..nn import quantized as nnq
from ..qtensor import QTensor
from ._errors import ExportError
from ._graph import Graph, Value, reshape
from ._integer import integer_converters
from ._modules import Reshape
from ._qdq import float_converters, qdq_converters
from ._trace import trace

OPSET = 17  # HardSwish needs 14, per-channel QuantizeLinear axis 13
IR_VERSION = 8  # the IR of opset 17, so older runtimes load the file too
FORMATS = {"qdq": qdq_converters, "integer": integer_converters}


def _alias(g, call, base):
    g.values[id(call.output)] = g.value(call.inputs[0])


def _flatten_call(g, call, base):
    """Flatten / QTensor.reshape: on the integer codes directly (qparams unchanged)."""
    v = g.value(call.inputs[0])
    name = reshape(g, v.name, v.shape, tuple(call.output.shape), base)
    g.values[id(call.output)] = Value(name, v.qparams, call.output.shape)


def _method_args(call, names: tuple, defaults: tuple) -> list:
    """The positional-or-keyword arguments of a recorded QTensor method call."""
    out = []
    for i, (n, d) in enumerate(zip(names, defaults)):
        out.append(call.args[i] if i < len(call.args) else call.kwargs.get(n, d))
    return out


def _split_call(g, call, base):
    """QTensor.chunk / split: Split of the codes (qparams unchanged)."""
    v = g.value(call.inputs[0])
    (dim,) = _method_args(call, ("size", "dim"), (None, 0))[1:]
    dim %= len(v.shape)
    parts = list(call.output)
    sizes = np.array([p.shape[dim] for p in parts], np.int64)
    names = g.node("Split", [v.name, g.const(base + "_sizes", sizes)], base, n_out=len(parts), axis=dim)
    for p, name in zip(parts, [names] if len(parts) == 1 else names):
        g.values[id(p)] = Value(name, v.qparams, p.shape)


def _transpose_call(g, call, base):
    """QTensor.transpose / permute: Transpose of the codes (qparams unchanged)."""
    v = g.value(call.inputs[0])
    nd = len(v.shape)
    if call.op == "transpose":
        d0, d1 = (d % nd for d in _method_args(call, ("dim0", "dim1"), (None, None)))
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    else:
        dims = call.args[0] if len(call.args) == 1 and isinstance(call.args[0], (tuple, list)) else call.args
        perm = [int(d) % nd for d in dims]
    name = g.node("Transpose", [v.name], base, perm=perm)
    g.values[id(call.output)] = Value(name, v.qparams, call.output.shape)


def _mean_call(g, call, base):
    """QTensor.mean, exact in every format (on the codes). Over (2, 3) of a 4-D tensor it is
    AdaptiveAvgPool2d(1), written as the integer format writes that pool; over other dims
    nearbyint of the float64 mean of (q - zp), + zp: int32 ReduceSum (exact), Cast to
    double, Div by the count (one rounding, as NumPy's mean), Round (half to even)."""
    from ..nn.quantized import AdaptiveAvgPool2d
    from ._integer import _adaptive_pool, _centred
    from ._trace import Call

    x = call.inputs[0]
    dim, keepdim = _method_args(call, ("dim", "keepdim"), (None, False))
    nd = len(x.shape)
    dims = tuple(range(nd)) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
    dims = tuple(sorted({int(d) % nd for d in dims}))
    if nd == 4 and dims == (2, 3):
        pool = AdaptiveAvgPool2d(1)
        pooled = pool(x)
        _adaptive_pool(g, Call(call.name, pool, "call", [x], pooled), base)
        out = g.value(pooled).name
        if not keepdim:
            out = reshape(g, out, tuple(pooled.shape), tuple(call.output.shape), base)
        g.bind(call.output, out)
        return
    count = int(np.prod([x.shape[d] for d in dims]))
    axes = g.const(base + "_axes", np.array(dims, np.int64))
    total = g.node("ReduceSum", [_centred(g, x, base), axes], base, keepdims=int(bool(keepdim)))
    mean = g.node("Div", [g.cast(total, np.float64, base), g.const(base + "_count", np.float64(count))], base)
    v = g.node("Add", [g.node("Round", [mean], base), g.const(base + "_zp", np.float64(x.q_zero_point()))], base)
    g.bind(call.output, g.cast(v, x.dtype.storage, base))


METHOD_CONVERTERS = {
    "mean": _mean_call,
    "reshape": _flatten_call,
    "chunk": _split_call,
    "split": _split_call,
    "transpose": _transpose_call,
    "permute": _transpose_call,
}

WEIGHT_DTYPES = ("uint8", "int8")


def check_format(fmt, weight_dtype: str = "uint8") -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(repr(f) for f in FORMATS)}, got {fmt!r}")
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(
            f"weight_dtype must be one of {', '.join(repr(w) for w in WEIGHT_DTYPES)}, got {weight_dtype!r}"
        )
    if fmt == "integer" and weight_dtype != "uint8":
        raise ValueError(
            "format='integer' writes uint8 weights (zero point 128): ONNX Runtime's "
            "uint8 x int8 kernels saturate on x86 CPUs without VNNI, so int8 weights "
            "would not be bit-exact there"
        )


def converters(fmt: str) -> dict:
    """Exact module type -> converter. Subclasses are not assumed to behave alike."""
    check_format(fmt)
    table = {
        nn.Identity: _alias,
        nn.Dropout: _alias,
        nn.QuantStub: _alias,
        nn.DeQuantStub: _alias,
        nnq.Dropout: _alias,
        nn.Flatten: _flatten_call,
        nnq.Flatten: _flatten_call,
        Reshape: _flatten_call,
    }
    table.update(float_converters())
    table.update(FORMATS[fmt]())
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
        raise ExportError(
            f"example input {i} must be a float numpy array or a QTensor, got "
            f"{type(v).__name__}{'' if not isinstance(v, np.ndarray) else ' of ' + str(v.dtype)}"
        )
    return np.ascontiguousarray(v, dtype=np.float32)


def build_model(
    model,
    example_input,
    dynamic_batch: bool = True,
    fmt: str = "qdq",
    graph_name: str = "npquant",
    weight_dtype: str = "uint8",
):
    """The onnx.ModelProto for model traced on example_input (an array / QTensor or a tuple)."""
    import onnx

    check_format(fmt, weight_dtype)
    table = converters(fmt)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    inputs = tuple(_check_input(v, i) for i, v in enumerate(inputs))
    tr = trace(model, inputs, lambda m: type(m) in table)
    g = Graph(onnx, weight_dtype)
    graph_inputs = []
    for i, v in enumerate(inputs):
        name = g.unique("input" if len(inputs) == 1 else f"input_{i}")
        g.bind(v, name)
        graph_inputs.append(onnx.helper.make_tensor_value_info(name, _tensor_type(v), _io_shape(v, dynamic_batch)))
    for call in tr.calls:
        method = call.module is None and call.op in METHOD_CONVERTERS
        base = call.name if call.op == "call" or method else f"{call.name}.{call.op}"
        base = base.strip("<>").replace("QTensor.", "") or type(call.module).__name__
        convert = METHOD_CONVERTERS[call.op] if method else table[type(call.module)]
        convert(g, call, base)
    graph_outputs = []
    for i, v in enumerate(tr.outputs):
        name = g.unique("output" if len(tr.outputs) == 1 else f"output_{i}")
        g.nodes.append(onnx.helper.make_node("Identity", [g.value(v).name], [name], name=g.unique(name + "/Identity")))
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, _tensor_type(v), _io_shape(v, dynamic_batch)))
    graph = onnx.helper.make_graph(g.nodes, graph_name, graph_inputs, graph_outputs, g.inits)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="npquant")
    proto.ir_version = IR_VERSION
    if g.metadata:
        onnx.helper.set_model_props(proto, g.metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto
