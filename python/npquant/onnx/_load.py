"""float ONNX model -> npquant.nn model (a GraphModule whose children are npquant.nn layers).

Supported ops (default domain): Gemm, MatMul (+ Add of a bias), Conv (2-D),
Relu, Clip (to [0, 6] or [0, inf)), HardSwish, MaxPool, AveragePool,
GlobalAveragePool, Flatten (axis 1), Reshape (constant shape), Add / Mul (two
activations, or an activation and a scalar constant), Concat, BatchNormalization
(inference), Identity, Dropout, Constant. Weights must be initializers or
Constant nodes. Anything else raises UnsupportedOnnxError naming the op and node.
"""

from __future__ import annotations

import re

import numpy as np

from .. import nn
from ._errors import UnsupportedOnnxError
from ._modules import GraphModule, Reshape, Scalar, Step

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
            raise UnsupportedOnnxError(f"{_desc(node)}: {what} (input {i}, '{name}') must be a constant "
                                       "(an initializer or a Constant node) for npquant.onnx.load")
        return self.consts[name]

    def activation(self, node, i: int) -> str:
        name = node.input[i]
        if name not in self.available:
            if name in self.consts:
                raise UnsupportedOnnxError(f"{_desc(node)}: input {i} ('{name}') is a constant; npquant "
                                           "layers take activations there")
            raise UnsupportedOnnxError(f"{_desc(node)}: input '{name}' is not computed before it (the "
                                       "graph is not in topological order)")
        return name

    def is_const(self, node, i: int) -> bool:
        return i < len(node.input) and node.input[i] in self.consts

    # ---- the walk
    def build(self) -> GraphModule:
        if any(node.domain not in ("", "ai.onnx") for node in self.graph.node):
            bad = next(n for n in self.graph.node if n.domain not in ("", "ai.onnx"))
            raise UnsupportedOnnxError(f"{_desc(bad)} is in domain '{bad.domain}'; npquant.onnx.load "
                                       "supports standard ONNX ops only")
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
        self.available.update(self.rename.values())
        for idx, node in enumerate(self.graph.node):
            if idx in self.skip:
                continue
            node = self._renamed(node)
            handler = getattr(self, "op_" + node.op_type, None)
            if handler is None:
                hint = (" (a quantized QDQ model: load imports float models)"
                        if node.op_type in ("QuantizeLinear", "DequantizeLinear") else "")
                raise UnsupportedOnnxError(f"{_desc(node)}: op {node.op_type} is not supported by "
                                           f"npquant.onnx.load{hint}")
            handler(node, idx)
        outputs = []
        for k, o in enumerate(self.graph.output):
            self._check_float(o, "graph output")
            src = self.rename.get(o.name, o.name)
            if src not in self.available:
                raise UnsupportedOnnxError(f"graph output '{o.name}' is not computed by the graph's nodes "
                                           "(a constant output?)")
            stub = "dequant" if len(self.graph.output) == 1 else f"dequant_{k}"
            self.children[stub] = nn.DeQuantStub()
            self.steps.append(Step(stub, [src], f"{o.name}::output"))
            outputs.append(f"{o.name}::output")
        model = GraphModule(steps_in, outputs, self.steps)
        for name, m in self.children.items():
            setattr(model, name, m)
        return model.eval()

    def _check_float(self, vi, what: str) -> None:
        from onnx import TensorProto

        et = vi.type.tensor_type.elem_type
        if et not in (TensorProto.FLOAT, TensorProto.UNDEFINED):
            raise UnsupportedOnnxError(f"{what} '{vi.name}' has element type "
                                       f"{TensorProto.DataType.Name(et)}; npquant.onnx.load imports float32 models")

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

    # ---- ops
    def op_Constant(self, node, idx):
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" not in a:
            raise UnsupportedOnnxError(f"{_desc(node)}: only Constant(value=tensor) is supported")
        self.consts[node.output[0]] = numpy_helper.to_array(a["value"])

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
            raise UnsupportedOnnxError(f"{_desc(node)}: npquant imports MatMul(activation, 2-D constant "
                                       "weight) only")
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
            raise UnsupportedOnnxError(f"{_desc(node)}: only 2-D convolution (4-D weight) is supported, "
                                       f"got a weight of shape {w.shape}")
        kh, kw = w.shape[2:]
        dil = list(a.get("dilations", [1, 1]))
        pads = self._pads(node, a, [kh, kw], dil)
        groups = int(a.get("group", 1))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self.const(node, 2, "B (the bias)").astype(np.float32)
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], (kh, kw), stride=tuple(a.get("strides", [1, 1])),
                         padding=pads, dilation=tuple(dil), groups=groups, bias=bias is not None)
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
                raise UnsupportedOnnxError(f"{_desc(node)}: auto_pad={auto} with stride > 1 depends on the "
                                           "input size; export the model with explicit pads")
            total = [d * (k - 1) for d, k in zip(dilations, kernel)]
            if any(t % 2 for t in total):
                raise UnsupportedOnnxError(f"{_desc(node)}: auto_pad={auto} pads unevenly here, which "
                                           "npquant's symmetric padding cannot express")
            return (total[0] // 2, total[1] // 2)
        p = list(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
            raise UnsupportedOnnxError(f"{_desc(node)}: pads {p} are not symmetric (top == bottom, "
                                       "left == right); npquant pads both sides equally")
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
        raise UnsupportedOnnxError(f"{_desc(node)}: Clip({lo}, {hi}) is not supported; npquant has Clip(0, 6) "
                                   "(ReLU6) and Clip(0, inf) (ReLU)")

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
        self._pool(node, lambda: nn.AvgPool2d(tuple(k), s, p, ceil_mode=bool(a.get("ceil_mode", 0)),
                                              count_include_pad=bool(a.get("count_include_pad", 0))))

    def op_GlobalAveragePool(self, node, idx):
        self._simple(node, nn.AdaptiveAvgPool2d(1))

    def op_Flatten(self, node, idx):
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            raise UnsupportedOnnxError(f"{_desc(node)}: Flatten(axis={axis}) is not supported (axis 1 only)")
        self._simple(node, nn.Flatten(1, -1))

    def op_Reshape(self, node, idx):
        if _attrs(node).get("allowzero", 0):
            raise UnsupportedOnnxError(f"{_desc(node)}: allowzero=1 is not supported")
        shape = [int(d) for d in self.const(node, 1, "shape").reshape(-1)]
        self._simple(node, nn.Flatten(1, -1) if shape == [0, -1] else Reshape(shape))

    def _binary(self, node, method: str):
        if len(node.input) != 2:
            raise UnsupportedOnnxError(f"{_desc(node)}: expects two inputs")
        consts = [self.is_const(node, i) for i in (0, 1)]
        if not any(consts):
            return self.add(node, nn.FloatFunctional(), [self.activation(node, 0), self.activation(node, 1)],
                            method=method)
        if all(consts):
            raise UnsupportedOnnxError(f"{_desc(node)}: both inputs are constants (fold them before import)")
        ci = consts.index(True)
        c = self.const(node, ci, "constant operand")
        if c.size != 1:
            raise UnsupportedOnnxError(f"{_desc(node)}: {node.op_type} with a constant of shape {c.shape} is "
                                       "not supported (scalars and two activations are)")
        self._simple_on(node, Scalar(method, float(c.reshape(-1)[0])), 1 - ci)

    def op_Add(self, node, idx):
        self._binary(node, "add")

    def op_Mul(self, node, idx):
        self._binary(node, "mul")

    def op_Concat(self, node, idx):
        names = [self.activation(node, i) for i in range(len(node.input))]
        self.add(node, nn.FloatFunctional(), names, method="cat", kwargs={"dim": int(_attrs(node)["axis"])},
                 listed=True)

    def op_BatchNormalization(self, node, idx):
        a = _attrs(node)
        if a.get("training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
            raise UnsupportedOnnxError(f"{_desc(node)}: training-mode BatchNormalization is not supported")
        scale, bias, mean, var = (self.const(node, i, w).astype(np.float32)
                                  for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        rank = self.ranks.get(node.input[0], 4)
        cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
        bn = cls(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
        bn.weight, bn.bias = scale, bias
        bn.running_mean, bn.running_var = mean.copy(), var.copy()
        self._simple(node, bn)

    def op_Identity(self, node, idx):
        self._simple(node, nn.Identity())

    def op_Dropout(self, node, idx):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOnnxError(f"{_desc(node)}: the mask output is not supported")
        self._simple(node, nn.Dropout())


def load_model(src) -> GraphModule:
    import onnx

    if isinstance(src, onnx.ModelProto):
        model = src
    elif isinstance(src, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(src))
    else:
        model = onnx.load(str(src))
    return _Builder(model).build()
