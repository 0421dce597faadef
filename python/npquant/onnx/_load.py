"""float ONNX model -> npquant.nn model (a GraphModule whose children are npquant.nn layers).

Supported ops (default domain; the table is in docs/onnx.md, Import): Gemm, MatMul
(+ Add of a bias), Conv (2-D), BatchNormalization (inference), Relu, Clip (0..6, 0..inf),
HardSwish, HardSigmoid, Sigmoid, Tanh, LeakyRelu, Elu, Gelu, MaxPool, AveragePool,
GlobalAveragePool, ReduceMean, Flatten (axis 1), Reshape, Transpose, Slice, Split,
SplitToSequence + SequenceAt, Gather (constant indices), Unsqueeze, Squeeze, Add / Mul of
two activations, Add / Sub / Mul / Div of an activation and a scalar, Concat, Identity,
Dropout, Constant. Shape computations (Shape, Gather, Unsqueeze, Concat, Cast, CastLike,
arithmetic on constants, ...) are folded at import, once per probe of the inputs' dynamic
dimensions. Anything else raises UnsupportedOnnxError naming the op and node.
Graphs with QuantizeLinear / DequantizeLinear go to _qdq_load.QdqBuilder, which
extends this builder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import nn
from ._errors import UnsupportedOnnxError
from ._modules import GraphModule, Mean, Permute, Reshape, Scalar, Slice, Step

_RESERVED = set(dir(GraphModule)) | {"input_names", "output_names", "steps", "training"}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _desc(node) -> str:
    return f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node (output '{node.output[0]}')"


class _Builder:
    """Walks the nodes in order, turning each into a child module and a Step."""

    def __init__(self, model):
        from onnx import numpy_helper, shape_inference

        try:
            model = shape_inference.infer_shapes(model)
        except Exception:  # shapes only refine BatchNorm's rank; the import works without them
            pass
        graph = model.graph
        self.graph = graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        # Shapes of every value for one input shape (static models) or two (inputs with
        # dynamic dimensions, set to 2 and 3): shape computations (Shape, Gather, Concat, ...)
        # are folded once per probe, and a value that differs between the probes depends
        # on the dynamic dimensions (a Reshape's batch, below).
        self.probes, self.elem_types = _probe_shapes(model)
        self.pconsts = [self.consts] + [dict(self.consts) for _ in self.probes[1:]]
        self.ranks = {}
        for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.ranks[vi.name] = len(t.shape.dim)
        self.consumers: dict = {}
        for node in graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        for o in graph.output:
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1
        self.available = set()
        self.children: dict = {}
        self.steps: list = []
        self.skip: set = set()  # nodes folded into an earlier one (MatMul's bias Add)
        # SplitToSequence outputs: name -> (activation, axis, [(start, end)]); SequenceAt
        # takes one part as a Slice
        self.sequences: dict = {}

    # ---- naming and bookkeeping
    def child_name(self, node) -> str:
        base = re.sub(r"\W+", "_", (node.name or node.output[0]).strip("/")).strip("_") or node.op_type.lower()
        if base[0].isdigit() or base in _RESERVED or re.fullmatch(r"(de)?quant(_\d+)?", base):
            base = f"n_{base}"
        name, i = base, 1
        while name in self.children:
            name, i = f"{base}_{i}", i + 1
        return name

    def add(self, node, module, inputs, output=None, method=None, kwargs=None, listed=False) -> None:
        name = self.child_name(node)
        self.children[name] = module
        out = output or node.output[0]
        self.steps.append(Step(name, inputs, out, method, kwargs, listed))
        self.available.add(out)

    def const(self, node, i: int, what: str) -> np.ndarray:
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.consts:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: {what} (input {i}, '{name}') must be a constant "
                "(an initializer or a Constant node) for npquant.onnx.load"
            )
        v = self.consts[name]
        if any(pc[name] is not v and not np.array_equal(pc[name], v) for pc in self.pconsts[1:]):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: {what} (input {i}, '{name}') depends on the "
                "input's dynamic dimensions; npquant.onnx.load folds shape "
                "computations only where they give a Reshape's batch dimension"
            )
        return v

    def activation(self, node, i: int) -> str:
        name = node.input[i]
        if name not in self.available:
            if name in self.consts:
                raise UnsupportedOnnxError(
                    f"{_desc(node)}: input {i} ('{name}') is a constant; npquant layers take activations there"
                )
            raise UnsupportedOnnxError(
                f"{_desc(node)}: input '{name}' is not computed before it (the graph is not in topological order)"
            )
        return name

    def is_const(self, node, i: int) -> bool:
        return i < len(node.input) and node.input[i] in self.consts

    # ---- the walk
    def build(self) -> GraphModule:
        if any(node.domain not in ("", "ai.onnx") for node in self.graph.node):
            bad = next(n for n in self.graph.node if n.domain not in ("", "ai.onnx"))
            raise UnsupportedOnnxError(
                f"{_desc(bad)} is in domain '{bad.domain}'; npquant.onnx.load supports standard ONNX ops only"
            )
        inputs = [i.name for i in self.graph.input if i.name not in self.consts]
        for i in self.graph.input:
            if i.name in inputs:
                self._check_float(i, "graph input")
        steps_in = []
        for k, name in enumerate(inputs):
            stub = "quant" if len(inputs) == 1 else f"quant_{k}"
            self.children[stub] = nn.QuantStub()
            self.steps.append(Step(stub, [name], f"{name}::quantized"))
            steps_in.append(name)
        self.rename = {name: f"{name}::quantized" for name in inputs}
        self.unrename = {v: k for k, v in self.rename.items()}
        self.available.update(self.rename.values())
        for idx, node in enumerate(self.graph.node):
            if idx in self.skip or self._fold(node):
                continue
            node = self._renamed(node)
            handler = getattr(self, "op_" + node.op_type, None)
            if handler is None:
                raise UnsupportedOnnxError(f"{_desc(node)}: op {node.op_type} is not supported by npquant.onnx.load")
            handler(node, idx)
        self._before_outputs()
        outputs = []
        for k, o in enumerate(self.graph.output):
            self._check_float(o, "graph output")
            src = self.rename.get(o.name, o.name)
            if src not in self.available:
                raise UnsupportedOnnxError(
                    f"graph output '{o.name}' is not computed by the graph's nodes (a constant output?)"
                )
            stub = "dequant" if len(self.graph.output) == 1 else f"dequant_{k}"
            self.children[stub] = nn.DeQuantStub()
            self.steps.append(Step(stub, [src], f"{o.name}::output"))
            outputs.append(f"{o.name}::output")
        model = GraphModule(steps_in, outputs, self.steps)
        for name, m in self.children.items():
            setattr(model, name, m)
        return model.eval()

    def _before_outputs(self) -> None:
        """Called after the last node, before the graph outputs are bound (a subclass hook)."""

    def _check_float(self, vi, what: str) -> None:
        from onnx import TensorProto

        et = vi.type.tensor_type.elem_type
        if et not in (TensorProto.FLOAT, TensorProto.UNDEFINED):
            raise UnsupportedOnnxError(
                f"{what} '{vi.name}' has element type "
                f"{TensorProto.DataType.Name(et)}; npquant.onnx.load imports float32 models"
            )

    def _renamed(self, node):
        """The node with graph inputs replaced by their QuantStub outputs."""
        if not any(n in self.rename for n in node.input):
            return node
        from onnx import NodeProto

        copy = NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(self.rename.get(n, n) for n in node.input)
        return copy

    def _fold(self, node) -> bool:
        """Shape (of a value with a known shape) and the _FOLD ops on constants: evaluated now,
        once per shape probe; True when folded."""
        if node.op_type == "Shape":
            shapes = [p.get(node.input[0]) for p in self.probes]
            if any(sh is None for sh in shapes):
                return False  # op_Shape says why
            a = _attrs(node)
            for pc, sh in zip(self.pconsts, shapes):
                pc[node.output[0]] = np.array(sh[a.get("start", 0) : a.get("end", None)], np.int64)
            return True
        if _fold_inputs(node, self.consts, self.elem_types) is None:
            return False
        for pc in self.pconsts:
            try:
                outs = _evaluate(node, _fold_inputs(node, pc, self.elem_types))
            except Exception as e:
                raise UnsupportedOnnxError(f"{_desc(node)}: cannot evaluate it on its constant inputs: {e}") from None
            for name, v in zip(node.output, outs):
                if name:
                    pc[name] = v
        return True

    def op_Shape(self, node, idx):
        raise UnsupportedOnnxError(
            f"{_desc(node)}: the shape of '{node.input[0]}' is not known at import "
            "(npquant folds Shape where ONNX shape inference gives it)"
        )

    # ---- ops
    def op_Constant(self, node, idx):
        v = _constant_value(node)
        if v is None:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: only Constant(value / value_int(s) / value_float(s)) is supported"
            )
        for pc in self.pconsts:
            pc[node.output[0]] = v

    def _linear(self, node, weight_nk: np.ndarray, bias, output=None):
        n, k = weight_nk.shape
        lin = nn.Linear(k, n, bias=bias is not None)
        lin.weight = np.ascontiguousarray(weight_nk, np.float32)
        if bias is not None:
            lin.bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.float32).reshape(-1), (n,)))
        self.add(node, lin, [self.activation(node, 0)], output)

    def _bias_vector(self, node, c: np.ndarray, n: int):
        if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            raise UnsupportedOnnxError(f"{_desc(node)}: bias of shape {c.shape} is not per output feature ({n})")
        return np.broadcast_to(c.reshape(-1), (n,))

    def op_Gemm(self, node, idx):
        a = _attrs(node)
        if a.get("transA", 0):
            raise UnsupportedOnnxError(f"{_desc(node)}: transA=1 (a transposed activation) is not supported")
        b = self.const(node, 1, "B (the weight)").astype(np.float32)
        w = (b if a.get("transB", 0) else b.T) * np.float32(a.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = self.const(node, 2, "C (the bias)").astype(np.float32) * np.float32(a.get("beta", 1.0))
            bias = self._bias_vector(node, c, w.shape[0])
        self._linear(node, w, bias)

    def op_MatMul(self, node, idx):
        if self.is_const(node, 0) or not self.is_const(node, 1) or self.const(node, 1, "B").ndim != 2:
            raise UnsupportedOnnxError(f"{_desc(node)}: npquant imports MatMul(activation, 2-D constant weight) only")
        w = self.const(node, 1, "B (the weight)").astype(np.float32).T
        bias, output = None, None
        add = self._bias_add(node, idx, w.shape[0])
        if add is not None:
            add_idx, add_node, bias = add
            self.skip.add(add_idx)
            output = add_node.output[0]
        self._linear(node, w, bias, output)

    def _bias_add(self, node, idx, n: int):
        """The Add right after node adding a constant of n values (folded as Linear's bias)."""
        out = node.output[0]
        if self.consumers.get(out, 0) != 1:
            return None
        for j in range(idx + 1, len(self.graph.node)):
            nxt = self.graph.node[j]
            if out in nxt.input:
                if nxt.op_type != "Add" or len(nxt.input) != 2:
                    return None
                other = nxt.input[1] if nxt.input[0] == out else nxt.input[0]
                c = self.consts.get(other)
                if c is None or c.size != n or (c.ndim > 1 and c.shape[-1] != n) or c.size != c.shape[-1]:
                    return None
                return j, nxt, c.astype(np.float32).reshape(-1)
        return None

    def op_Conv(self, node, idx):
        if not hasattr(nn, "Conv2d"):
            raise UnsupportedOnnxError(f"{_desc(node)}: Conv needs npquant.nn.Conv2d, which this npquant lacks")
        a = _attrs(node)
        w = self.const(node, 1, "W (the weight)").astype(np.float32)
        if w.ndim != 4:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: only 2-D convolution (4-D weight) is supported, got a weight of shape {w.shape}"
            )
        kh, kw = w.shape[2:]
        dil = list(a.get("dilations", [1, 1]))
        pads = self._pads(node, a, [kh, kw], dil)
        groups = int(a.get("group", 1))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self.const(node, 2, "B (the bias)").astype(np.float32)
        conv = nn.Conv2d(
            w.shape[1] * groups,
            w.shape[0],
            (kh, kw),
            stride=tuple(a.get("strides", [1, 1])),
            padding=pads,
            dilation=tuple(dil),
            groups=groups,
            bias=bias is not None,
        )
        conv.weight = np.ascontiguousarray(w)
        if bias is not None:
            conv.bias = np.ascontiguousarray(bias)
        self.add(node, conv, [self.activation(node, 0)])

    def _pads(self, node, a: dict, kernel, dilations) -> tuple:
        """Symmetric (pad_h, pad_w) from pads / auto_pad."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            return (0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            if any(s != 1 for s in a.get("strides", [1, 1])):
                raise UnsupportedOnnxError(
                    f"{_desc(node)}: auto_pad={auto} with stride > 1 depends on the "
                    "input size; export the model with explicit pads"
                )
            total = [d * (k - 1) for d, k in zip(dilations, kernel)]
            if any(t % 2 for t in total):
                raise UnsupportedOnnxError(
                    f"{_desc(node)}: auto_pad={auto} pads unevenly here, which "
                    "npquant's symmetric padding cannot express"
                )
            return (total[0] // 2, total[1] // 2)
        p = list(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: pads {p} are not symmetric (top == bottom, "
                "left == right); npquant pads both sides equally"
            )
        return (p[0], p[1])

    def _simple(self, node, module):
        self._simple_on(node, module, 0)

    def _simple_on(self, node, module, i: int):
        self.add(node, module, [self.activation(node, i)])

    def op_Relu(self, node, idx):
        self._simple(node, nn.ReLU())

    def op_HardSwish(self, node, idx):
        self._simple(node, nn.Hardswish())

    def op_Clip(self, node, idx):
        a = _attrs(node)
        lo, hi = a.get("min", None), a.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.const(node, 1, "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.const(node, 2, "max"))
        if lo == 0 and hi == 6:
            return self._simple(node, nn.ReLU6())
        if lo == 0 and (hi is None or hi == np.inf or hi >= np.finfo(np.float32).max):
            return self._simple(node, nn.ReLU())
        raise UnsupportedOnnxError(
            f"{_desc(node)}: Clip({lo}, {hi}) is not supported; npquant has Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU)"
        )

    def _pool_common(self, node, a):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOnnxError(f"{_desc(node)}: the Indices output is not supported")
        k = list(a.get("kernel_shape", []))
        if len(k) != 2:
            raise UnsupportedOnnxError(f"{_desc(node)}: only 2-D pooling is supported, kernel_shape {k}")
        if a.get("storage_order", 0):
            raise UnsupportedOnnxError(f"{_desc(node)}: storage_order=1 is not supported")
        dil = list(a.get("dilations", [1, 1]))
        return k, tuple(a.get("strides", [1, 1])), self._pads(node, a, k, dil), tuple(dil)

    def _pool(self, node, make):
        try:
            module = make()
        except ValueError as e:
            raise UnsupportedOnnxError(f"{_desc(node)}: {e}") from None
        self._simple(node, module)

    def op_MaxPool(self, node, idx):
        a = _attrs(node)
        k, s, p, d = self._pool_common(node, a)
        self._pool(node, lambda: nn.MaxPool2d(tuple(k), s, p, d, ceil_mode=bool(a.get("ceil_mode", 0))))

    def op_AveragePool(self, node, idx):
        a = _attrs(node)
        k, s, p, d = self._pool_common(node, a)
        if d != (1, 1):
            raise UnsupportedOnnxError(f"{_desc(node)}: dilated average pooling is not supported")
        self._pool(
            node,
            lambda: nn.AvgPool2d(
                tuple(k),
                s,
                p,
                ceil_mode=bool(a.get("ceil_mode", 0)),
                count_include_pad=bool(a.get("count_include_pad", 0)),
            ),
        )

    def op_GlobalAveragePool(self, node, idx):
        self._simple(node, nn.AdaptiveAvgPool2d(1))

    def op_Flatten(self, node, idx):
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            raise UnsupportedOnnxError(f"{_desc(node)}: Flatten(axis={axis}) is not supported (axis 1 only)")
        self._simple(node, nn.Flatten(1, -1))

    def op_Reshape(self, node, idx):
        if node.input[1] not in self.consts:
            self.const(node, 1, "shape")  # raises: not a constant
        shapes = [[int(d) for d in pc[node.input[1]].reshape(-1)] for pc in self.pconsts]
        self._check_allowzero(node, shapes)
        shape = shapes[0]
        if any(sh != shape for sh in shapes[1:]):
            shape = self._dynamic_target(node, shapes)
        self._simple(node, nn.Flatten(1, -1) if shape == [0, -1] else Reshape(shape))

    def _check_allowzero(self, node, shapes) -> None:
        """allowzero=1 (the dynamo exporter's default) differs from 0 only where the target
        has a 0: an empty dimension instead of a copy of the input's."""
        if _attrs(node).get("allowzero", 0) and any(0 in sh for sh in shapes):
            bad = next(sh for sh in shapes if 0 in sh)
            raise UnsupportedOnnxError(
                f"{_desc(node)}: allowzero=1 with a 0 in the target shape {bad} makes an empty "
                "dimension, which npquant does not support (allowzero=0 copies the input's)"
            )

    def _dynamic_target(self, node, shapes) -> list:
        """A Reshape target computed from the input's shape: a dimension that changes with the
        dynamic input dimensions becomes 0 (copy) where it equals the input's dimension in
        every probe, otherwise -1 (inferred; at most one)."""
        src = self.unrename.get(node.input[0], node.input[0])
        ins = [p.get(src) for p in self.probes]
        target = []
        for i, ds in enumerate(zip(*shapes)):
            if all(d == ds[0] for d in ds):
                target.append(ds[0])
            elif all(s is not None and i < len(s) and s[i] == d for s, d in zip(ins, ds)):
                target.append(0)
            else:
                target.append(-1)
        if len({len(sh) for sh in shapes}) != 1 or target.count(-1) > 1:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: the target shape depends on the input's dynamic "
                f"dimensions in a way npquant cannot express ({shapes})"
            )
        return target

    def _binary(self, node, method: str):
        if len(node.input) != 2:
            raise UnsupportedOnnxError(f"{_desc(node)}: expects two inputs")
        consts = [self.is_const(node, i) for i in (0, 1)]
        if not any(consts):
            return self.add(
                node, nn.FloatFunctional(), [self.activation(node, 0), self.activation(node, 1)], method=method
            )
        if all(consts):
            raise UnsupportedOnnxError(f"{_desc(node)}: both inputs are constants (fold them before import)")
        ci = consts.index(True)
        c = self.const(node, ci, "constant operand")
        if c.size != 1:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: {node.op_type} with a constant of shape {c.shape} is "
                "not supported (scalars and two activations are)"
            )
        v = float(c.reshape(-1)[0])
        if node.op_type in ("Sub", "Div"):
            if ci == 0:
                raise UnsupportedOnnxError(
                    f"{_desc(node)}: constant {node.op_type.lower()} activation is "
                    "not supported (activation - constant and activation / constant are)"
                )
            if node.op_type == "Div" and v == 0:
                raise UnsupportedOnnxError(f"{_desc(node)}: division by zero")
            v = -v if node.op_type == "Sub" else 1.0 / v
        self._simple_on(node, Scalar(method, v), 1 - ci)

    def op_Add(self, node, idx):
        self._binary(node, "add")

    def op_Sub(self, node, idx):
        if not self.is_const(node, 1):
            raise UnsupportedOnnxError(f"{_desc(node)}: Sub of two activations is not supported")
        self._binary(node, "add")

    def op_Div(self, node, idx):
        if not self.is_const(node, 1):
            raise UnsupportedOnnxError(f"{_desc(node)}: Div by an activation is not supported")
        self._binary(node, "mul")

    def op_Mul(self, node, idx):
        self._binary(node, "mul")

    def op_Concat(self, node, idx):
        names = [self.activation(node, i) for i in range(len(node.input))]
        self.add(
            node, nn.FloatFunctional(), names, method="cat", kwargs={"dim": int(_attrs(node)["axis"])}, listed=True
        )

    def op_BatchNormalization(self, node, idx):
        a = _attrs(node)
        if a.get("training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
            raise UnsupportedOnnxError(f"{_desc(node)}: training-mode BatchNormalization is not supported")
        scale, bias, mean, var = (
            self.const(node, i, w).astype(np.float32) for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
        )
        rank = self.ranks.get(node.input[0], 4)
        cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
        bn = cls(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
        bn.weight, bn.bias = scale, bias
        bn.running_mean, bn.running_var = mean.copy(), var.copy()
        self._simple(node, bn)

    def op_Identity(self, node, idx):
        self._simple(node, nn.Identity())

    def op_HardSigmoid(self, node, idx):
        a = _attrs(node)
        alpha, beta = np.float32(a.get("alpha", 0.2)), np.float32(a.get("beta", 0.5))
        if alpha != np.float32(1 / 6) or beta != np.float32(0.5):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: HardSigmoid(alpha={alpha}, beta={beta}) is not supported; "
                "npquant has PyTorch's Hardsigmoid (alpha=1/6, beta=0.5)"
            )
        self._simple(node, nn.Hardsigmoid())

    def op_Sigmoid(self, node, idx):
        self._simple(node, nn.Sigmoid())

    def op_Tanh(self, node, idx):
        self._simple(node, nn.Tanh())

    def op_LeakyRelu(self, node, idx):
        self._simple(node, nn.LeakyReLU(float(_attrs(node).get("alpha", 0.01))))

    def op_Elu(self, node, idx):
        self._simple(node, nn.ELU(float(_attrs(node).get("alpha", 1.0))))

    def op_Gelu(self, node, idx):
        approx = _attrs(node).get("approximate", "none")
        self._simple(node, nn.GELU(approx.decode() if isinstance(approx, bytes) else approx))

    def op_Transpose(self, node, idx):
        perm = _attrs(node).get("perm")
        if perm is None:
            rank = self._rank(node, 0)
            perm = list(range(rank))[::-1]
        self._simple(node, Permute(perm))

    def _rank(self, node, i: int) -> int:
        src = self.unrename.get(node.input[i], node.input[i])
        s = self.probes[0].get(src)
        if s is None:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: the rank of input {i} is unknown (run "
                "onnx.shape_inference on the model, or give the op its axes)"
            )
        return len(s)

    def _dim_size(self, node, i: int, axis: int) -> int:
        src = self.unrename.get(node.input[i], node.input[i])
        sizes = {p.get(src)[axis] if p.get(src) is not None else None for p in self.probes}
        size = sizes.pop() if len(sizes) == 1 else None
        if size is None:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: the size of axis {axis} of input {i} is unknown or "
                "dynamic; npquant splits static dimensions only"
            )
        return size

    def op_Slice(self, node, idx):
        starts = self.const(node, 1, "starts").reshape(-1)
        ends = self.const(node, 2, "ends").reshape(-1)
        axes = (
            self.const(node, 3, "axes").reshape(-1) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        )
        steps = (
            self.const(node, 4, "steps").reshape(-1)
            if len(node.input) > 4 and node.input[4]
            else np.ones(len(starts), np.int64)
        )
        if len(starts) != 1 or steps[0] != 1:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: npquant imports Slice along one axis with step 1, "
                f"got axes {list(axes)}, steps {list(steps)}"
            )
        big = np.iinfo(np.int64).max // 2
        start, end = (int(np.clip(v, -big, big)) for v in (starts[0], ends[0]))
        self._simple(node, Slice(int(axes[0]), start, end))

    def op_Split(self, node, idx):
        a = _attrs(node)
        axis = int(a.get("axis", 0))
        rank = self._rank(node, 0)
        axis %= rank
        n = self._dim_size(node, 0, axis)
        if len(node.input) > 1 and node.input[1]:
            sizes = [int(v) for v in self.const(node, 1, "split").reshape(-1)]
        elif "split" in a:
            sizes = [int(v) for v in a["split"]]
        else:
            k = len(node.output)
            step = -(-n // k)
            sizes = [min(step, n - i * step) for i in range(k)]
        if sum(sizes) != n or len(sizes) != len(node.output):
            raise UnsupportedOnnxError(f"{_desc(node)}: split sizes {sizes} do not cover axis {axis} ({n})")
        act, start = self.activation(node, 0), 0
        for out, size in zip(node.output, sizes):
            if out:
                self.add(node, Slice(axis, start, start + size), [act], output=out)
            start += size

    def _reshape_to_output(self, node, src: str, output=None) -> None:
        """src reshaped to node's output shape in every shape probe: a Reshape whose dimensions
        that change with the input's dynamic ones are 0 or -1 (_dynamic_target)."""
        shapes = [p.get(node.output[0]) for p in self.probes]
        if any(sh is None for sh in shapes):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: its output shape is unknown at import (npquant imports "
                f"{node.op_type} of an activation as a Reshape to that shape)"
            )
        target = [list(sh) for sh in shapes]
        shape = target[0] if all(t == target[0] for t in target) else self._dynamic_target(node, target)
        self.add(node, Reshape(shape), [src], output)

    def op_Unsqueeze(self, node, idx):
        self._reshape_to_output(node, self.activation(node, 0))

    def op_Squeeze(self, node, idx):
        self._reshape_to_output(node, self.activation(node, 0))

    def op_Gather(self, node, idx):
        """Gather of an activation at constant indices along a static axis: a scalar index
        (x[:, i], torchvision's transform_input) is a Slice of one and a Reshape without
        the axis; consecutive ascending indices are a Slice."""
        act = self.activation(node, 0)
        indices = self.const(node, 1, "indices")
        axis = int(_attrs(node).get("axis", 0)) % self._rank(node, 0)
        n = self._dim_size(node, 0, axis)
        flat = [int(i) + n if int(i) < 0 else int(i) for i in indices.reshape(-1)]
        if indices.ndim > 1 or not flat or any(not 0 <= i < n for i in flat):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: npquant imports Gather of an activation with a scalar or 1-D index "
                f"in range (axis {axis} of size {n}), got indices of shape {indices.shape}"
            )
        if flat != list(range(flat[0], flat[0] + len(flat))):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: indices {flat} are not consecutive and ascending; npquant imports "
                "Gather of an activation as a Slice"
            )
        if indices.ndim == 1:
            return self.add(node, Slice(axis, flat[0], flat[0] + len(flat)), [act])
        sliced = f"{node.output[0]}::slice"
        self.add(node, Slice(axis, flat[0], flat[0] + 1), [act], sliced)
        self._reshape_to_output(node, sliced)

    def op_SplitToSequence(self, node, idx):
        a = _attrs(node)
        axis = int(a.get("axis", 0)) % self._rank(node, 0)
        n = self._dim_size(node, 0, axis)
        split = self.const(node, 1, "split") if len(node.input) > 1 and node.input[1] else None
        if split is None and not a.get("keepdims", 1):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: keepdims=0 (parts with the split axis removed) is not supported"
            )
        try:
            bounds = _sequence_bounds(n, split)
        except ValueError as e:
            raise UnsupportedOnnxError(f"{_desc(node)}: {e}") from None
        self.sequences[node.output[0]] = (self.activation(node, 0), axis, bounds)

    def op_SequenceAt(self, node, idx):
        seq = self.sequences.get(node.input[0])
        if seq is None:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: input '{node.input[0]}' is not a SplitToSequence output; "
                "npquant imports sequences of an activation's parts only"
            )
        act, axis, bounds = seq
        pos = int(self.const(node, 1, "position").reshape(-1)[0])
        if not -len(bounds) <= pos < len(bounds):
            raise UnsupportedOnnxError(f"{_desc(node)}: position {pos} is outside the {len(bounds)} parts")
        start, end = bounds[pos]
        self.add(node, Slice(axis, start, end), [act])

    def op_ReduceMean(self, node, idx):
        a = _attrs(node)
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.const(node, 1, "axes").reshape(-1)]
        else:
            axes = [int(v) for v in a.get("axes", [])]
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return self._simple(node, nn.Identity())
            axes = list(range(self._rank(node, 0)))
        self._simple(node, Mean(axes, bool(a.get("keepdims", 1))))

    def op_Dropout(self, node, idx):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOnnxError(f"{_desc(node)}: the mask output is not supported")
        self._simple(node, nn.Dropout())


def _probe_shapes(model) -> tuple:
    """([{value name: shape tuple}], {value name: NumPy dtype}): shapes for the graph inputs'
    static shape, or for their dynamic dimensions set to 2 and then 3: ONNX's node-level
    shape inference, node by node, with the shape computations folded on the way (so a
    Reshape's computed target, or a Slice's computed bounds, give static shapes downstream);
    element types of the first probe."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    dynamic = any(not d.HasField("dim_value") for i in inputs for d in i.type.tensor_type.shape.dim)
    probes = [_probe(model, value) for value in ((2, 3) if dynamic else (None,))]
    return [shapes for shapes, _ in probes], probes[0][1]


def _sequence_bounds(n: int, split) -> list:
    """[(start, end)] of SplitToSequence's parts of an axis of n: split a scalar (parts of
    that size, the last one smaller), 1-D (the sizes) or None (parts of 1)."""
    if split is None:
        sizes = [1] * n
    elif np.ndim(split) == 0:
        k = int(split)
        if k <= 0:
            raise ValueError(f"split {k} is not positive")
        sizes = [min(k, n - i) for i in range(0, n, k)]
    else:
        sizes = [int(v) for v in np.asarray(split).reshape(-1)]
        if sum(sizes) != n or min(sizes, default=0) < 0:
            raise ValueError(f"split sizes {sizes} do not cover the axis ({n})")
    starts = np.cumsum([0] + sizes)
    return [(int(s), int(e)) for s, e in zip(starts[:-1], starts[1:])]


def _constant_value(node):
    """A Constant node's value (value, value_int(s), value_float(s)), or None."""
    from onnx import numpy_helper

    a = _attrs(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for k in ("value_int", "value_ints", "value_float", "value_floats"):
        if k in a:
            return np.array(a[k], np.int64 if "int" in k else np.float32)
    return None


def _fold_inputs(node, consts: dict, elem_types: dict):
    """The input values _evaluate takes for node, or None when node is not folded: every
    input a constant, except CastLike's second one, of which only the element type counts
    (given as an empty array of that type)."""
    if node.op_type not in _FOLD:
        return None
    vals: list[Any] = []
    for i, name in enumerate(node.input):
        if not name:
            vals.append(None)
        elif name in consts:
            vals.append(consts[name])
        elif node.op_type == "CastLike" and i == 1 and name in elem_types:
            vals.append(np.empty(0, elem_types[name]))
        else:
            return None
    return vals


def _probe(model, value) -> tuple:
    from onnx import TypeProto, defs, helper, numpy_helper
    from onnx.shape_inference import infer_node_outputs

    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    types: dict = {}

    def elem_types(names) -> dict:
        """{name: NumPy dtype} of those of names whose element type is known."""
        out = {}
        for name in names:
            t = types.get(name)
            if t is not None and t.HasField("tensor_type") and t.tensor_type.elem_type:
                out[name] = _np_dtype(t.tensor_type.elem_type)
        return out

    def array_type(v):
        return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))

    for name, v in consts.items():
        types[name] = array_type(v)
    for i in graph.input:
        if i.name in consts:
            continue
        t = TypeProto()
        t.CopyFrom(i.type)
        for d in t.tensor_type.shape.dim:
            if not d.HasField("dim_value") and value is not None:
                d.dim_value = value
        types[i.name] = t
    opset = {o.domain: o.version for o in model.opset_import}
    sequences: dict = {}  # SplitToSequence output -> its parts' types
    for node in graph.node:
        folded = None
        try:
            if node.op_type == "SplitToSequence":
                sequences[node.output[0]] = _sequence_types(node, types, consts)
                continue
            if node.op_type == "SequenceAt" and node.input[0] in sequences and node.input[1] in consts:
                types[node.output[0]] = sequences[node.input[0]][int(consts[node.input[1]])]
                continue
            if node.op_type == "Constant":
                v = _constant_value(node)
                folded = None if v is None else [v]
            elif node.op_type == "Shape":
                sh = _shape_of(types.get(node.input[0]))
                if sh is not None:
                    a = _attrs(node)
                    folded = [np.array(sh[a.get("start", 0) : a.get("end", None)], np.int64)]
            elif (vals := _fold_inputs(node, consts, elem_types(node.input[1:2]))) is not None:
                folded = _evaluate(node, vals)
        except Exception:
            folded = None
        if folded is not None:
            for name, v in zip(node.output, folded):
                if name:
                    consts[name] = np.asarray(v)
                    types[name] = array_type(np.asarray(v))
            continue
        try:
            schema = defs.get_schema(
                node.op_type, opset.get(node.domain or "", opset.get("ai.onnx", 21)), node.domain or ""
            )
            data = {
                n: numpy_helper.from_array(consts[n], n) for n in node.input if n in consts and consts[n].size <= 64
            }
            out = infer_node_outputs(
                schema,
                node,
                {n: types[n] for n in node.input if n in types},
                data,
                opset_imports=list(model.opset_import),
            )
        except Exception:  # shapes matter only for shape computations; without them those fail clearly
            continue
        types.update(out)
    shapes = {}
    for name, t in types.items():
        sh = _shape_of(t)
        if sh is not None:
            shapes[name] = sh
    return shapes, elem_types(types)


def _sequence_types(node, types: dict, consts: dict) -> list:
    """The tensor types of a SplitToSequence's parts (keepdims=1 or a given split)."""
    from onnx import helper

    t = types[node.input[0]]
    shape = _shape_of(t)
    a = _attrs(node)
    axis = int(a.get("axis", 0)) % len(shape)
    split = consts[node.input[1]] if len(node.input) > 1 and node.input[1] else None
    out = []
    for start, end in _sequence_bounds(shape[axis], split):
        part = list(shape)
        part[axis] = end - start
        if split is None and not a.get("keepdims", 1):
            del part[axis]
        out.append(helper.make_tensor_type_proto(t.tensor_type.elem_type, part))
    return out


def _shape_of(t):
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)
    return None if None in dims else dims


def _np_dtype(onnx_type: int):
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type))


def _axes(node, vals, a) -> list:
    if len(vals) > 1 and vals[1] is not None:
        return [int(v) for v in np.asarray(vals[1]).reshape(-1)]
    return [int(v) for v in a.get("axes", [])]


def _int_div(x, y):
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        q = np.abs(x) // np.abs(y)
        return (np.sign(x) * np.sign(y) * q).astype(np.result_type(x, y))  # ONNX truncates
    return (x / y).astype(np.result_type(x, y))


def _slice(x, starts, ends, axes, steps):
    idx = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, ax, st in zip(starts, ends, axes, steps):
        idx[int(ax)] = slice(int(s), int(e), int(st))
    return x[tuple(idx)]


def _reshape(x, shape, allowzero):
    shape = [int(d) for d in shape]
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _evaluate(node, vals: list) -> list:
    """A shape-computation node on constant inputs, in NumPy."""
    a = _attrs(node)
    op = node.op_type
    x = vals[0] if vals else None
    if x is None:  # every op folded here has a first input (the callers report the error)
        raise ValueError(f"{op} has no first input")
    if op == "Gather":
        return [np.take(x, vals[1], axis=int(a.get("axis", 0)))]
    if op == "Unsqueeze":
        return [np.expand_dims(x, tuple(_axes(node, vals, a)))]
    if op == "Squeeze":
        ax = _axes(node, vals, a)
        return [np.squeeze(x, tuple(ax)) if ax else np.squeeze(x)]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) if v.ndim == 0 else v for v in vals], axis=int(a["axis"]))]
    if op == "Cast":
        return [np.asarray(x).astype(_np_dtype(a["to"]))]
    if op == "CastLike":
        return [np.asarray(x).astype(vals[1].dtype)]
    if op in ("Add", "Sub", "Mul", "Div", "Min", "Max", "Equal", "Less", "Greater", "Mod"):
        y = vals[1]
        binary: dict[str, Callable[[Any, Any], Any]] = {
            "Add": np.add,
            "Sub": np.subtract,
            "Mul": np.multiply,
            "Div": _int_div,
            "Min": np.minimum,
            "Max": np.maximum,
            "Equal": np.equal,
            "Less": np.less,
            "Greater": np.greater,
            "Mod": np.mod,
        }
        r = np.asarray(binary[op](x, y))
        return [r if r.dtype == bool or op == "Div" else r.astype(np.result_type(x, y))]
    if op in ("Floor", "Ceil", "Neg", "Sqrt", "Abs", "Not"):
        f = {
            "Floor": np.floor,
            "Ceil": np.ceil,
            "Neg": np.negative,
            "Sqrt": np.sqrt,
            "Abs": np.abs,
            "Not": np.logical_not,
        }[op]
        return [np.asarray(f(x)).astype(x.dtype)]
    if op == "Where":
        return [np.where(vals[0], vals[1], vals[2])]
    if op == "Slice":
        if len(vals) < 3:  # opset < 10: attributes
            return [_slice(x, a["starts"], a["ends"], a.get("axes"), None)]
        axes = vals[3] if len(vals) > 3 and vals[3] is not None else None
        steps = vals[4] if len(vals) > 4 and vals[4] is not None else None
        return [_slice(x, vals[1].reshape(-1), vals[2].reshape(-1), axes, steps)]
    if op in ("Identity", "Dropout"):
        return [x] + ([np.ones(x.shape, np.bool_)] if len(node.output) > 1 else [])
    if op == "Reshape":
        return [_reshape(x, vals[1].reshape(-1), a.get("allowzero", 0))]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op == "Range":
        return [np.arange(vals[0], vals[1], vals[2]).astype(np.asarray(vals[0]).dtype)]
    if op == "ConstantOfShape":
        from onnx import numpy_helper

        v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full([int(d) for d in x.reshape(-1)], v.reshape(-1)[0], v.dtype)]
    if op == "Expand":
        shape = np.broadcast_shapes(x.shape, tuple(int(d) for d in vals[1].reshape(-1)))
        return [np.broadcast_to(x, shape).copy()]
    if op == "Size":
        return [np.array(x.size, np.int64)]
    raise AssertionError(op)


# Ops evaluated at import when all their inputs are constants (shape computations).
_FOLD = {
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Cast",
    "CastLike",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Min",
    "Max",
    "Equal",
    "Less",
    "Greater",
    "Mod",
    "Floor",
    "Ceil",
    "Neg",
    "Sqrt",
    "Abs",
    "Not",
    "Where",
    "Slice",
    "Identity",
    "Dropout",
    "Reshape",
    "Transpose",
    "Range",
    "ConstantOfShape",
    "Expand",
    "Size",
}


def load_model(src) -> GraphModule:
    import onnx

    if isinstance(src, onnx.ModelProto):
        model = src
    elif isinstance(src, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(src))
    else:
        model = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        from ._qdq_load import QdqBuilder

        return QdqBuilder(model).build()
    return _Builder(model).build()
