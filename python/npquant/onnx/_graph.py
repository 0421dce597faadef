"""The ONNX graph being built, and the helpers every export format shares.

Quantized activations are integer tensors (uint8, or int8 for qint8
activations) in PyTorch's logical order, whatever npquant's storage order;
each Value remembers its qparams, so the formats differ only in the nodes
they write for a quantized op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..qtensor import QTensor
from ._errors import ExportError


class Value:
    """An ONNX tensor name and, for a quantized activation, its qparams."""

    __slots__ = ("name", "qparams", "shape")

    def __init__(self, name: str, qparams, shape: tuple):
        self.name, self.qparams, self.shape = name, qparams, tuple(shape)


class Graph:
    """Nodes and initializers being built, with unique names."""

    def __init__(self, onnx, weight_dtype: str = "uint8"):
        self.onnx, self.h = onnx, onnx.helper
        self.weight_dtype = weight_dtype  # of Linear / Conv weights in the QDQ format
        self.nodes: list[Any] = []  # onnx NodeProto (onnx has no type information)
        self.inits: list[Any] = []  # onnx TensorProto
        self.used: set[str] = set()  # node, value and initializer names taken
        self.values: dict = {}  # id(array or QTensor) -> Value
        self._cache: dict = {}  # key -> (initializer names, the object the key's id belongs to)
        self.metadata: dict = {}  # the model's metadata_props (key -> str)

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

    def cached(self, key: tuple, owner, make):
        """make()'s result, made once per key (key starts with id(owner)): a layer called
        more than once stores its weights once."""
        if key not in self._cache:
            self._cache[key] = (make(), owner)  # owner kept alive: its id stays unique
        return self._cache[key][0]

    def node(self, op: str, inputs: list, base: str, n_out: int = 1, **attrs):
        outs = [self.unique(f"{base}_{op}" if n_out == 1 else f"{base}_{op}_{i}") for i in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=self.unique(f"{base}/{op}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def cast(self, x: str, dtype, base: str) -> str:
        """Cast to a numpy dtype (np.int32, np.float32, np.uint8, ...)."""
        return self.node("Cast", [x], base, to=self.h.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    # ---- values
    def value(self, v) -> Value:
        return self.values[id(v)]

    def bind(self, v, name: str) -> None:
        qp = (v.q_scale(), v.q_zero_point(), v.dtype) if isinstance(v, QTensor) else None
        self.values[id(v)] = Value(name, qp, v.shape)

    def qparams_inputs(self, base: str, scale, zp, dtype) -> list:
        return [
            self.const(f"{base}_scale", np.float32(scale)),
            self.const(f"{base}_zero_point", np.array(zp, dtype=dtype.storage)),
        ]

    def float_of(self, v, base: str) -> str:
        """A float tensor for v: its own DequantizeLinear for a quantized activation."""
        val = self.value(v)
        if val.qparams is None:
            return val.name
        return self.node("DequantizeLinear", [val.name] + self.qparams_inputs(base + "_in", *val.qparams), base)

    def quantize_to(self, x: str, out: QTensor, base: str) -> str:
        """QuantizeLinear to out's qparams; binds out to the result."""
        name = self.node(
            "QuantizeLinear",
            [x] + self.qparams_inputs(base + "_out", out.q_scale(), out.q_zero_point(), out.dtype),
            base,
        )
        self.bind(out, name)
        return name


def quantized_input(call, i: int = 0) -> QTensor:
    x = call.inputs[i]
    if not isinstance(x, QTensor):
        raise ExportError(f"module '{call.name}' got {type(x).__name__}, expected a QTensor")
    return x


# ------------------------------------------------------------------ attributes
def _pair(v, what: str, base: str) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2:
        raise ExportError(f"'{base}': {what} {v!r} is not an int or a pair")
    return int(t[0]), int(t[1])


def conv_attrs(mod, base: str) -> dict:
    """Conv / ConvInteger attributes of a float or quantized Conv2d or Conv1d."""
    if getattr(mod, "padding_mode", "zeros") != "zeros":
        raise ExportError(f"'{base}': padding_mode={mod.padding_mode!r}; ONNX Conv pads with zeros only")
    if len(mod.kernel_size) == 1:  # Conv1d: its 2-D geometry (a height-1 image) has the pads
        _, left, _, right = mod._pad4
        return dict(
            kernel_shape=[int(mod.kernel_size[0])],
            strides=[int(mod.stride[0])],
            pads=[int(left), int(right)],
            dilations=[int(mod.dilation[0])],
            group=int(mod.groups),
        )
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
    return dict(
        kernel_shape=list(k),
        strides=list(_pair(mod.stride, "stride", base)),
        pads=pads,
        dilations=list(d),
        group=int(mod.groups),
    )


def pool_attrs(geom) -> dict:
    return dict(kernel_shape=list(geom.k), strides=list(geom.s), pads=[geom.p[0], geom.p[1]] * 2)


def adaptive_bins(g: Graph, x: str, mod, shape, base: str, equal, cell) -> str:
    """Adaptive pooling over PyTorch's bins: equal(x, k) when k-sized bins tile the input,
    else cell(box) for each bin's Slice, joined by Concat."""
    from ..nn._pool import adaptive_bounds
    from ..nn.pooling import adaptive_output_hw

    h, w = shape[2], shape[3]
    oh, ow = adaptive_output_hw(mod.output_size, h, w)
    if h % oh == 0 and w % ow == 0:
        return equal(x, (h // oh, w // ow))
    hs, he = adaptive_bounds(h, oh)
    ws, we = adaptive_bounds(w, ow)
    axes = g.const(base + "_axes", np.array([2, 3], np.int64))
    rows = []
    for i in range(oh):
        cells = []
        for j in range(ow):
            box = g.node(
                "Slice",
                [
                    x,
                    g.const(base + "_starts", np.array([hs[i], ws[j]], np.int64)),
                    g.const(base + "_ends", np.array([he[i], we[j]], np.int64)),
                    axes,
                ],
                base,
            )
            cells.append(cell(box))
        rows.append(cells[0] if ow == 1 else g.node("Concat", cells, base, axis=3))
    return rows[0] if oh == 1 else g.node("Concat", rows, base, axis=2)


def reshape(g: Graph, x: str, in_shape: tuple, out_shape: tuple, base: str) -> str:
    """Reshape to out_shape; the batch dimension stays symbolic when it is kept."""
    if len(in_shape) >= 2 and len(out_shape) == 2 and out_shape[0] == in_shape[0]:
        return g.node("Flatten", [x], base, axis=1)
    target = list(out_shape)
    if in_shape and target and target[0] == in_shape[0]:
        target[0] = 0  # ONNX Reshape: 0 copies the input's dimension
    return g.node("Reshape", [x, g.const(base + "_shape", np.array(target, np.int64))], base)


def functional_scalar(call):
    """The constant of add_scalar / mul_scalar."""
    return call.kwargs.get("c", call.args[1] if len(call.args) > 1 else None)


def functional_dim(call) -> int:
    """cat's dimension."""
    return int(call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else 0))
