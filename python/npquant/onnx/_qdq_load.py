"""QDQ ONNX model -> quantized npquant model (QuantizeLinear / DequantizeLinear import).

A QDQ graph keeps every quantized op as its float op between DequantizeLinear (of
each quantized input) and QuantizeLinear (to the output's qparams). ``QdqBuilder``
walks it like the float import (``_load._Builder``) and turns each such unit into
the quantized npquant module with the file's qparams:

- ``DQ(x) -> Conv / Gemm / MatMul (+ Add of a bias) (-> Relu) -> Q``: quantized
  ``Conv2d`` / ``ConvReLU2d`` / ``Linear`` / ``LinearReLU``. The weight is a
  DequantizeLinear of constant codes: int8 with zero point 0 (per tensor, or per
  output channel), or uint8 with zero point 128 (npquant's own export, shifted back);
  the bias an int32 DequantizeLinear at scale ``x_scale * w_scale[n]`` (added as that
  integer, see ``exact_bias``) or a float constant;
- ``DQ -> Relu / Clip(0, 6) / MaxPool / AveragePool / GlobalAveragePool / Flatten /
  Reshape -> Q`` with the output qparams equal to the input's: the quantized module on
  the codes (Flatten / Reshape also straight on a QuantizeLinear output);
- ``DQ -> BatchNormalization (-> Relu) / HardSwish -> Q``: the quantized module at the
  Q's qparams;
- ``DQ(a), DQ(b) -> Add (-> Relu) / Mul / Concat -> Q``: ``QFunctional`` at the Q's qparams;
- ``DQ -> Add / Mul of a constant array``: ``ConstantOp`` in float (ONNX Runtime's
  MatMul -> Q -> DQ -> Add(bias) for rank-3 inputs);
- ``QuantizeLinear`` of a float value: ``Quantize``; a ``DequantizeLinear`` whose
  value some op other than the above reads: ``DeQuantize``, and that op runs in
  float (e.g. a pool whose output qparams differ from its input's, or Sigmoid),
  with the following ``QuantizeLinear`` as a ``Quantize``: what the QDQ graph says,
  in npquant's arithmetic.

int8 activations (ONNX Runtime's default ``activation_type``) become quint8 with
the zero point 128 higher: the same real values and the same rounding, codes 128
higher (npquant's static layers, like PyTorch's x86 engine, take quint8).
Anything else (asymmetric weights, per-axis activations, int16, ...) raises
``UnsupportedOnnxError`` naming the node and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn
from ..nn import quantized as nnq
from ..qtensor import QTensor
from ._errors import UnsupportedOnnxError
from ._load import _attrs, _Builder, _desc
from ._modules import ConstantOp, Reshape
from ._qdq import FLOAT_BIAS_KEY, decode_floats

__all__ = ["QdqBuilder", "exact_bias"]


@dataclass(frozen=True)
class QParams:
    """A quantized activation: where its QTensor is (a step's output name) and its qparams
    as npquant holds them (quint8; int8 files shifted by 128)."""

    step: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class QConst:
    """A DequantizeLinear of constant codes: the codes, scales, zero points and axis."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    source: str  # the codes' tensor name


def exact_bias(bq: np.ndarray, s: np.ndarray) -> np.ndarray:
    """float32 biases b whose quotient fl(b / s[n]) is the integer bq[n], or as near it as a
    float32 b can get: npquant's requantization adds ``bias_s = fl(bias / s)``
    (qparams.requant_constants), so the loaded layer adds the file's int32 bias. When
    one ulp of b moves the quotient by more than one ulp of bq (large bq, small s), no
    b divides to bq exactly and the quotient is one float32 ulp away (2**-12 for bq
    near 3000). Candidates: fl(bq * s) and its neighbours up to 4 ulps either way."""
    s = np.asarray(s, np.float32)
    target = bq.astype(np.float64)
    b0 = (bq.astype(np.float64) * s.astype(np.float64)).astype(np.float32)
    best, err = b0, np.full(b0.shape, np.inf)
    for k in (0, 1, -1, 2, -2, 3, -3, 4, -4):
        b = b0
        for _ in range(abs(k)):
            b = np.nextafter(b, np.float32(np.inf if k > 0 else -np.inf)).astype(np.float32)
        e = np.abs((b / s).astype(np.float32).astype(np.float64) - target)
        better = e < err
        best, err = np.where(better, b, best).astype(np.float32), np.where(better, e, err)
    return best


class QdqBuilder(_Builder):
    """_Builder for graphs with QuantizeLinear / DequantizeLinear (module docstring)."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.qvalues: dict[str, QParams] = {}  # ONNX name of a quantized activation
        self.deq: dict[str, tuple[str, Any]] = {}  # DQ output -> (quantized name, DQ node)
        self.qconsts: dict[str, QConst] = {}  # DQ of constant codes: output name -> codes
        self.users: dict[str, list[int]] = {}
        for i, node in enumerate(self.graph.node):
            for name in node.input:
                if name:
                    self.users.setdefault(name, []).append(i)
        self.outputs = {o.name for o in self.graph.output}
        self.float_biases = {
            p.key[len(FLOAT_BIAS_KEY) :]: p.value for p in model.metadata_props if p.key.startswith(FLOAT_BIAS_KEY)
        }
        for i, node in enumerate(self.graph.node):  # a unit reads its QuantizeLinear's qparams
            if node.op_type == "Constant":  # before that node's Constants are visited
                self.op_Constant(node, i)

    # ---- values
    def activation(self, node: Any, i: int) -> str:
        """A float activation; a DequantizeLinear's output gets its DeQuantize step here,
        when an op that runs in float first reads it."""
        name = node.input[i]
        if name in self.deq and name not in self.available:
            self._dequantize(name)
        if name in self.qvalues:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: input {i} ('{name}') is a quantized tensor (the "
                "output of QuantizeLinear); npquant imports ops on quantized values "
                "between DequantizeLinear and QuantizeLinear only"
            )
        return super().activation(node, i)

    def _dequantize(self, name: str) -> None:
        qname, dq_node = self.deq[name]
        self.add(dq_node, nnq.DeQuantize(), [self.qvalues[qname].step], output=name)

    def _before_outputs(self) -> None:
        for o in self.graph.output:
            name = self.rename.get(o.name, o.name)
            if name in self.deq and name not in self.available:
                self._dequantize(name)
            if name in self.qvalues:
                raise UnsupportedOnnxError(
                    f"graph output '{o.name}' is quantized (a QuantizeLinear output); "
                    "npquant.onnx.load imports models with float outputs (end the "
                    "graph with DequantizeLinear)"
                )

    def _qparams(self, node: Any, what: str) -> tuple[float, int, bool]:
        """(scale, zero point as quint8, int8 in the file) of a Q/DQ node on an activation."""
        scale = self.const(node, 1, f"{what} scale")
        has_zp = len(node.input) > 2 and node.input[2]
        zp = self.const(node, 2, f"{what} zero point") if has_zp else np.array(0, np.uint8)
        if scale.size != 1 or zp.size != 1:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: per-axis quantization of an activation is not "
                "supported (npquant's activations are per tensor)"
            )
        if zp.dtype not in (np.uint8, np.int8):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: {zp.dtype} activations are not supported; npquant "
                "imports uint8 and int8 (quantize with QUInt8 or QInt8 activations)"
            )
        s = float(np.float32(scale.reshape(-1)[0]))
        if not (np.isfinite(s) and s > 0):
            raise UnsupportedOnnxError(f"{_desc(node)}: scale {s} is not a positive finite number")
        z = int(zp.reshape(-1)[0]) + (128 if zp.dtype == np.int8 else 0)
        return s, z, zp.dtype == np.int8

    # ---- Q / DQ / Cast
    def op_QuantizeLinear(self, node: Any, idx: int) -> None:
        if node.input[0] in self.consts:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: QuantizeLinear of a constant (quantize the constant before export)"
            )
        s, z, _ = self._qparams(node, "QuantizeLinear")
        x = self.activation(node, 0)
        self.add(node, nnq.Quantize(s, z), [x])
        self.qvalues[node.output[0]] = QParams(node.output[0], s, z)

    def op_DequantizeLinear(self, node: Any, idx: int) -> None:
        src = node.input[0]
        if src in self.consts:
            return self._dequantize_const(node)
        if src not in self.qvalues:
            raise UnsupportedOnnxError(
                f"{_desc(node)}: dequantizes '{src}', which is neither a constant nor "
                "a QuantizeLinear output (a quantized graph input?); npquant imports "
                "QDQ models with float inputs"
            )
        q = self.qvalues[src]
        s, z, _ = self._qparams(node, "DequantizeLinear")
        if (s, z) != (q.scale, q.zero_point):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: dequantizes with scale {s}, zero point {z} a tensor "
                f"quantized with {q.scale}, {q.zero_point}"
            )
        self.deq[node.output[0]] = (src, node)

    def _dequantize_const(self, node: Any) -> None:
        codes = self.consts[node.input[0]]
        scale = self.const(node, 1, "scale").astype(np.float32)
        has_zp = len(node.input) > 2 and node.input[2]
        zp = self.const(node, 2, "zero point") if has_zp else np.zeros(1, codes.dtype)
        axis = int(_attrs(node).get("axis", 1)) if scale.size > 1 else None
        if axis is not None:
            axis %= codes.ndim
            shape = [1] * codes.ndim
            shape[axis] = -1
            real = (codes.astype(np.float64) - zp.reshape(shape)) * scale.reshape(shape)
        else:
            real = (codes.astype(np.float64) - zp.reshape(-1)[0]) * scale.reshape(-1)[0]
        value = real.astype(np.float32)
        for pc in self.pconsts:  # the float value, for ops that run in float
            pc[node.output[0]] = value
        self.qconsts[node.output[0]] = QConst(codes, scale.reshape(-1), np.asarray(zp).reshape(-1), axis, node.input[0])

    def op_Cast(self, node: Any, idx: int) -> None:
        """PyTorch's exporter casts each QuantizeLinear output to its own type: an alias."""
        from onnx import helper

        src, to = node.input[0], int(_attrs(node)["to"])
        if src in self.qvalues:
            dtype = helper.tensor_dtype_to_np_dtype(to)
            if dtype not in (np.uint8, np.int8):
                raise UnsupportedOnnxError(f"{_desc(node)}: Cast of a quantized tensor to {dtype}")
            self.qvalues[node.output[0]] = self.qvalues[src]
            return
        if helper.tensor_dtype_to_np_dtype(to) != np.float32:
            raise UnsupportedOnnxError(f"{_desc(node)}: Cast of an activation to a non-float32 type")
        self._simple(node, nn.Identity())

    # ---- the QDQ units
    def _single_user(self, name: str) -> int | None:
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def _follow(self, name: str, op: str) -> int | None:
        """The index of the only node reading name, if it is an op node."""
        j = self._single_user(name)
        return j if j is not None and self.graph.node[j].op_type == op else None

    def _quantize_after(self, name: str, relu_ok: bool) -> tuple[list[int], Any, bool] | None:
        """([skipped node indices], the QuantizeLinear node, fused relu) closing a unit at name."""
        skipped, relu = [], False
        j = self._follow(name, "Relu") if relu_ok else None
        if j is not None:
            skipped.append(j)
            relu, name = True, self.graph.node[j].output[0]
        k = self._follow(name, "QuantizeLinear")
        if k is None:
            return None
        q = self.graph.node[k]
        if q.input[0] != name:
            return None
        return skipped + [k], q, relu

    def _inputs_quantized(self, node: Any, indices: list[int]) -> list[QParams] | None:
        names = [node.input[i] for i in indices]
        if not all(n in self.deq for n in names):
            return None
        return [self.qvalues[self.deq[n][0]] for n in names]

    def _close(
        self,
        node: Any,
        module: Any,
        ins: list[QParams],
        closing: tuple,
        method: str | None = None,
        listed: bool = False,
        kwargs: dict | None = None,
    ) -> None:
        """Adds module on the input QTensors, its output bound to the closing QuantizeLinear's."""
        skipped, q, _ = closing
        s, z, _ = self._qparams(q, "QuantizeLinear")
        if hasattr(module, "scale"):  # Linear, Conv2d, QFunctional: the output qparams
            module.scale, module.zero_point = s, z
        self.skip.update(skipped)
        out = q.output[0]
        self.add(node, module, [p.step for p in ins], output=out, method=method, kwargs=kwargs, listed=listed)
        self.qvalues[out] = QParams(out, s, z)

    def _same_qparams(self, closing: tuple, p: QParams) -> bool:
        s, z, _ = self._qparams(closing[1], "QuantizeLinear")
        return (s, z) == (p.scale, p.zero_point)

    # ---- weights
    def _weight(self, node: Any, i: int, transposed: bool) -> QTensor | None:
        """The int8 weight QTensor of input i (a DequantizeLinear of constant codes), output
        channels first; None when input i is a float constant."""
        name = node.input[i]
        qc = self.qconsts.get(name)
        if qc is None:
            return None
        codes, zp, axis = qc.codes, qc.zero_point, qc.axis
        if transposed:  # (K, N) -> (N, K): the channel axis 1 becomes 0
            codes, axis = codes.T, (None if axis is None else 1 - axis)
        if codes.dtype == np.uint8 and np.all(zp == 128):
            codes, zp = (codes.astype(np.int16) - 128).astype(np.int8), np.zeros_like(zp, np.int16)
        if codes.dtype != np.int8 or np.any(zp != 0):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: weight '{name}' is {codes.dtype} with zero points {np.unique(zp)[:4]}; npquant's "
                "quantized layers take symmetric int8 weights (zero point 0; or uint8 with zero point 128). "
                "Quantize the weights symmetrically (ONNX Runtime: weight_type=QuantType.QInt8, the "
                "default) or import the float model and quantize it with npquant"
            )
        if axis not in (None, 0):
            raise UnsupportedOnnxError(
                f"{_desc(node)}: weight '{name}' is quantized along axis {qc.axis}; "
                "npquant's weights are per output channel or per tensor"
            )
        codes = np.ascontiguousarray(codes)
        if axis is None:
            return QTensor(codes, float(qc.scale[0]), 0, "qint8")
        return QTensor(codes, qc.scale.astype(np.float64), np.zeros(codes.shape[0], np.int64), "qint8", axis=0)

    def _bias(self, node: Any, name: str, x: QParams, w: QTensor) -> np.ndarray:
        """The float bias npquant adds: an int32 DequantizeLinear at scale x_scale * w_scale
        becomes exact_bias (the integer itself); a float constant stays as it is."""
        n = w.shape[0]
        qc = self.qconsts.get(name)
        if qc is None or qc.codes.dtype != np.int32:  # a float constant (or uint8 codes): its value
            b = self.consts[name].astype(np.float32).reshape(-1)
            if b.size not in (1, n):
                raise UnsupportedOnnxError(f"{_desc(node)}: bias of {b.size} values for {n} outputs")
            return np.ascontiguousarray(np.broadcast_to(b, (n,)), np.float32)
        if np.any(qc.zero_point != 0) or qc.codes.size != n:
            raise UnsupportedOnnxError(f"{_desc(node)}: bias '{name}' must be {n} int32 codes with zero point 0")
        ws = (
            np.full(n, w.q_scale(), np.float32)
            if w.qscheme() == "per_tensor_affine"
            else w.q_per_channel_scales().astype(np.float32)
        )
        s = (np.float32(x.scale) * ws).astype(np.float32)
        sb = np.broadcast_to(qc.scale, (n,)).astype(np.float32)
        bq = qc.codes.reshape(-1)
        recorded = self._recorded_bias(qc, s, sb)
        if recorded is not None:
            return recorded
        if np.array_equal(sb, s):
            return exact_bias(bq, s)
        return (bq.astype(np.float64) * sb).astype(np.float32)  # another scale: its real value

    def _recorded_bias(self, qc: QConst, s: np.ndarray, sb: np.ndarray) -> np.ndarray | None:
        """The float bias npquant's export recorded for these int32 codes (metadata), if it is
        there and rounds to them at their scale (else the file was edited: the codes win)."""
        text = self.float_biases.get(qc.source)
        if text is None or not np.array_equal(sb, s):
            return None
        try:
            b = decode_floats(text)
        except ValueError:
            return None
        bq = qc.codes.reshape(-1)
        if b.shape != bq.shape or not np.array_equal(np.rint(b.astype(np.float64) / s.astype(np.float64)), bq):
            return None
        return b

    # ---- GEMM ops
    def op_Conv(self, node: Any, idx: int) -> None:
        ins = self._inputs_quantized(node, [0])
        w = self._weight(node, 1, False) if ins else None
        closing = self._quantize_after(node.output[0], True) if w is not None else None
        if closing is None or ins is None or w is None:
            return super().op_Conv(node, idx)
        a = _attrs(node)
        if w.ndim != 4:
            raise UnsupportedOnnxError(f"{_desc(node)}: only 2-D convolution is supported")
        kh, kw = w.shape[2:]
        dil = list(a.get("dilations", [1, 1]))
        groups = int(a.get("group", 1))
        has_bias = len(node.input) > 2 and bool(node.input[2])
        cls = nnq.ConvReLU2d if closing[2] else nnq.Conv2d
        conv = cls(
            w.shape[1] * groups,
            w.shape[0],
            (kh, kw),
            stride=tuple(a.get("strides", [1, 1])),
            padding=self._pads(node, a, [kh, kw], dil),
            dilation=tuple(dil),
            groups=groups,
            bias=has_bias,
        )
        conv.set_weight_bias(w, self._bias(node, node.input[2], ins[0], w) if has_bias else None)
        self._close(node, conv, ins, closing)

    def op_Gemm(self, node: Any, idx: int) -> None:
        a = _attrs(node)
        plain = not a.get("transA", 0) and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
        ins = self._inputs_quantized(node, [0]) if plain else None
        w = self._weight(node, 1, not a.get("transB", 0)) if ins else None
        closing = self._quantize_after(node.output[0], True) if w is not None else None
        if closing is None or ins is None or w is None:
            return super().op_Gemm(node, idx)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        self._quantized_linear(node, ins, w, bias, closing)

    def op_MatMul(self, node: Any, idx: int) -> None:
        ins = self._inputs_quantized(node, [0])
        w = self._weight(node, 1, True) if ins and self.consts[node.input[1]].ndim == 2 else None
        if w is None or ins is None:
            return super().op_MatMul(node, idx)
        out, bias, skipped = node.output[0], None, []
        j = self._follow(out, "Add")
        if j is not None:
            add = self.graph.node[j]
            other = add.input[1] if add.input[0] == out else add.input[0]
            if other in self.consts and self.consts[other].size == w.shape[0]:
                bias, out, skipped = other, add.output[0], [j]
        closing = self._quantize_after(out, True)
        if closing is None:
            return super().op_MatMul(node, idx)
        self._quantized_linear(node, ins, w, bias, (skipped + closing[0],) + closing[1:])

    def _quantized_linear(self, node: Any, ins: list[QParams], w: QTensor, bias: str | None, closing: tuple) -> None:
        n, k = w.shape
        lin = (nnq.LinearReLU if closing[2] else nnq.Linear)(k, n, bias is not None)
        lin.set_weight_bias(w, None if bias is None else self._bias(node, bias, ins[0], w))
        self._close(node, lin, ins, closing)

    # ---- ops on the codes, and QFunctional
    def _on_codes(self, node: Any, idx: int, make: Any, fallback: Any) -> None:
        """DQ -> op -> Q at the input's qparams: make() on the QTensor; else fallback (float)."""
        ins = self._inputs_quantized(node, [0])
        closing = self._quantize_after(node.output[0], False) if ins else None
        if closing is None or ins is None or not self._same_qparams(closing, ins[0]):
            return fallback(node, idx)
        self._close(node, make(), ins, closing)

    def op_Relu(self, node: Any, idx: int) -> None:
        self._on_codes(node, idx, nnq.ReLU, super().op_Relu)

    def op_MaxPool(self, node: Any, idx: int) -> None:
        a = _attrs(node)

        def make() -> Any:
            k, s, p, d = self._pool_common(node, a)
            return nnq.MaxPool2d(tuple(k), s, p, d, ceil_mode=bool(a.get("ceil_mode", 0)))

        self._on_codes(node, idx, make, super().op_MaxPool)

    def op_AveragePool(self, node: Any, idx: int) -> None:
        a = _attrs(node)

        def make() -> Any:
            k, s, p, d = self._pool_common(node, a)
            if d != (1, 1):
                raise UnsupportedOnnxError(f"{_desc(node)}: dilated average pooling is not supported")
            return nnq.AvgPool2d(
                tuple(k),
                s,
                p,
                ceil_mode=bool(a.get("ceil_mode", 0)),
                count_include_pad=bool(a.get("count_include_pad", 0)),
            )

        self._on_codes(node, idx, make, super().op_AveragePool)

    def op_GlobalAveragePool(self, node: Any, idx: int) -> None:
        self._on_codes(node, idx, lambda: nnq.AdaptiveAvgPool2d(1), super().op_GlobalAveragePool)

    def _on_quantized(self, node: Any, module: Any) -> bool:
        """A layout op straight on a QuantizeLinear's output (npquant's export writes Flatten
        and Reshape so): the module on the QTensor, the output keeping its qparams."""
        q = self.qvalues.get(node.input[0])
        if q is None:
            return False
        self.add(node, module, [q.step])
        self.qvalues[node.output[0]] = QParams(node.output[0], q.scale, q.zero_point)
        return True

    def op_Flatten(self, node: Any, idx: int) -> None:
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            return super().op_Flatten(node, idx)
        if not self._on_quantized(node, nnq.Flatten(1, -1)):
            self._on_codes(node, idx, lambda: nnq.Flatten(1, -1), super().op_Flatten)

    def op_Reshape(self, node: Any, idx: int) -> None:
        target = self.consts.get(node.input[1])
        if target is None or any(
            (other := pc.get(node.input[1])) is None or not np.array_equal(other, target) for pc in self.pconsts[1:]
        ):
            return super().op_Reshape(node, idx)  # a shape computed from the input: the float path
        shape = [int(d) for d in target.reshape(-1)]
        self._check_allowzero(node, [shape])
        if not self._on_quantized(node, Reshape(shape)):
            self._on_codes(node, idx, lambda: Reshape(shape), super().op_Reshape)

    def op_Clip(self, node: Any, idx: int) -> None:
        lo = float(self.const(node, 1, "min")) if len(node.input) > 1 and node.input[1] else None
        hi = float(self.const(node, 2, "max")) if len(node.input) > 2 and node.input[2] else None
        make = nnq.ReLU6 if (lo, hi) == (0.0, 6.0) else nnq.ReLU if lo == 0.0 and hi is None else None
        if make is None:
            return super().op_Clip(node, idx)
        self._on_codes(node, idx, make, super().op_Clip)

    def _requantizing(self, node: Any, idx: int, make: Any, fallback: Any, relu_ok: bool = False) -> None:
        """DQ -> op (-> Relu) -> Q: make(relu) with the Q's output qparams; else fallback (float)."""
        ins = self._inputs_quantized(node, [0])
        closing = self._quantize_after(node.output[0], relu_ok) if ins else None
        if closing is None or ins is None:
            return fallback(node, idx)
        self._close(node, make(closing[2]), ins, closing)

    def op_HardSwish(self, node: Any, idx: int) -> None:
        self._requantizing(node, idx, lambda relu: nnq.Hardswish(), super().op_HardSwish)

    def op_BatchNormalization(self, node: Any, idx: int) -> None:
        rank = self.ranks.get(node.input[0], 4)
        if rank != 4:
            return super().op_BatchNormalization(node, idx)

        def make(relu: bool) -> Any:
            a = _attrs(node)
            if a.get("training_mode", 0):
                raise UnsupportedOnnxError(f"{_desc(node)}: training-mode BatchNormalization is not supported")
            scale, bias, mean, var = (
                self.const(node, i, w).astype(np.float32) for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
            )
            bn = (nnq.BNReLU2d if relu else nnq.BatchNorm2d)(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
            bn.weight, bn.bias, bn.running_mean, bn.running_var = scale, bias, mean.copy(), var.copy()
            return bn

        self._requantizing(node, idx, make, super().op_BatchNormalization, relu_ok=True)

    def _functional(self, node: Any, idx: int, method: str, relu_ok: bool, fallback: Any) -> None:
        indices = list(range(len(node.input)))
        ins = self._inputs_quantized(node, indices) if len(indices) >= 2 else None
        closing = self._quantize_after(node.output[0], relu_ok) if ins else None
        if closing is None or ins is None:
            return fallback(node, idx)
        if method == "cat":
            kwargs = {"dim": int(_attrs(node)["axis"])}
            self._close(node, nnq.QFunctional(), ins, closing, method="cat", listed=True, kwargs=kwargs)
        else:
            m = "add_relu" if closing[2] else method
            self._close(node, nnq.QFunctional(), ins, closing, method=m)

    def _constant_operand(self, node: Any, op: str) -> bool:
        """Add / Mul of an activation and a constant array (a bias the QDQ graph adds after
        its own QuantizeLinear): ConstantOp in float, between DeQuantize and Quantize."""
        consts = [self.is_const(node, i) for i in range(len(node.input))]
        if len(consts) != 2 or consts.count(True) != 1:
            return False
        c = self.consts[node.input[consts.index(True)]]
        if c.size == 1:
            return False  # the float import's Scalar
        self.add(node, ConstantOp(op, c), [self.activation(node, consts.index(False))])
        return True

    def op_Add(self, node: Any, idx: int) -> None:
        if not self._constant_operand(node, "add"):
            self._functional(node, idx, "add", True, super().op_Add)

    def op_Mul(self, node: Any, idx: int) -> None:
        if not self._constant_operand(node, "mul"):
            self._functional(node, idx, "mul", False, super().op_Mul)

    def op_Concat(self, node: Any, idx: int) -> None:
        self._functional(node, idx, "cat", False, super().op_Concat)
