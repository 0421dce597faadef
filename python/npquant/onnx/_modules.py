"""Modules npquant.onnx.load builds that npquant.nn has no counterpart for."""

from __future__ import annotations

import numpy as np

from ..nn.module import Module
from ..qtensor import QTensor

__all__ = ["Reshape", "Scalar", "ConstantOp", "Permute", "Slice", "Mean", "GraphModule"]


class Reshape(Module):
    """ONNX Reshape with a constant target: 0 copies the input's dimension, -1 is
    inferred. Works on float arrays and on per-tensor QTensors (logical order), so
    it stays valid in a converted model."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def target(self, in_shape: tuple) -> tuple:
        out = []
        for i, d in enumerate(self.shape):
            if d == 0:
                if i >= len(in_shape):
                    raise ValueError(
                        f"Reshape{self.shape}: 0 at position {i} copies a dimension the "
                        f"{len(in_shape)}-D input does not have"
                    )
                d = in_shape[i]
            out.append(d)
        return tuple(out)

    def forward(self, x):
        shape = self.target(tuple(x.shape))
        if isinstance(x, QTensor):
            return x.reshape(*shape)
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Reshape expects a numpy array or a QTensor, got {type(x).__name__}")
        return x.reshape(shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Scalar(Module):
    """x + c or x * c for a constant scalar c, on float arrays or QTensors (PyTorch's
    quantized add_scalar / mul_scalar rules, which derive the output qparams from the
    input's, so no observer is needed)."""

    def __init__(self, op: str, c: float):
        super().__init__()
        if op not in ("add", "mul"):
            raise ValueError(f"Scalar op must be 'add' or 'mul', got {op!r}")
        self.op, self.c = op, float(c)

    def forward(self, x):
        if isinstance(x, QTensor):
            from ..nn.quantized import QFunctional

            f = QFunctional()
            return f.add_scalar(x, self.c) if self.op == "add" else f.mul_scalar(x, self.c)
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"Scalar({self.op}) expects a float numpy array or a QTensor, got {type(x).__name__}")
        c = np.float32(self.c)
        return (x + c) if self.op == "add" else (x * c)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, c={self.c}"


class ConstantOp(Module):
    """x + c or x * c for a constant array c (broadcast, float32), on float arrays: a QDQ
    model's Add / Mul of an activation and a quantized constant (e.g. ONNX Runtime's
    MatMul -> Q -> DQ -> Add(bias) -> Q), which npquant runs in float between DeQuantize
    and Quantize."""

    def __init__(self, op: str, c):
        super().__init__()
        if op not in ("add", "mul"):
            raise ValueError(f"ConstantOp op must be 'add' or 'mul', got {op!r}")
        self.op, self.c = op, np.ascontiguousarray(c, np.float32)

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise TypeError(
                f"ConstantOp({self.op}) expects a float32 numpy array, got "
                f"{type(x).__name__}{'' if not isinstance(x, np.ndarray) else ' of ' + str(x.dtype)}"
            )
        return (x + self.c) if self.op == "add" else (x * self.c)

    def extra_repr(self) -> str:
        return f"op={self.op!r}, shape={self.c.shape}"


def _array_or_qtensor(x, what: str):
    if isinstance(x, QTensor):
        return x
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} expects a numpy array or a QTensor, got {type(x).__name__}")
    return x


class Permute(Module):
    """ONNX Transpose(perm): float arrays or per-tensor QTensors (QTensor.permute)."""

    def __init__(self, perm):
        super().__init__()
        self.perm = tuple(int(d) for d in perm)

    def forward(self, x):
        x = _array_or_qtensor(x, "Permute")
        return x.permute(self.perm) if isinstance(x, QTensor) else np.ascontiguousarray(x.transpose(self.perm))

    def extra_repr(self) -> str:
        return f"perm={self.perm}"


class Slice(Module):
    """ONNX Slice / one output of Split with constant bounds: x[start:end] along dim (step 1),
    with ONNX's (and Python's) clamping of out-of-range bounds. QTensors go through narrow."""

    def __init__(self, dim: int, start: int, end: int):
        super().__init__()
        self.dim, self.start, self.end = int(dim), int(start), int(end)

    def forward(self, x):
        x = _array_or_qtensor(x, "Slice")
        n = x.shape[self.dim]
        start, stop, _ = slice(self.start, self.end).indices(n)
        length = max(stop - start, 0)
        if isinstance(x, QTensor):
            return x.narrow(self.dim, start, length)
        idx = [slice(None)] * x.ndim
        idx[self.dim] = slice(start, start + length)
        return np.ascontiguousarray(x[tuple(idx)])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, end={self.end}"


class Mean(Module):
    """ONNX ReduceMean over constant axes: float arrays, or QTensors (QTensor.mean: the
    input's qparams, as PyTorch's quantized mean)."""

    def __init__(self, dims, keepdim: bool):
        super().__init__()
        self.dims, self.keepdim = tuple(int(d) for d in dims), bool(keepdim)

    def forward(self, x):
        x = _array_or_qtensor(x, "Mean")
        if isinstance(x, QTensor):
            return x.mean(self.dims, keepdim=self.keepdim)
        return x.mean(axis=self.dims, keepdims=self.keepdim, dtype=np.float32)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, keepdim={self.keepdim}"


class Step:
    """One node of a GraphModule: out = child(*inputs) or child.method(*inputs, **kwargs)."""

    __slots__ = ("child", "method", "inputs", "output", "kwargs", "listed")

    def __init__(self, child: str, inputs: list, output: str, method=None, kwargs=None, listed=False):
        self.child, self.inputs, self.output = child, list(inputs), output
        self.method, self.kwargs, self.listed = method, dict(kwargs or {}), listed

    def __reduce__(self):
        return (Step, (self.child, self.inputs, self.output, self.method, self.kwargs, self.listed))


class GraphModule(Module):
    """A model imported from ONNX: each node is a child module, run in the file's order.

    Inputs pass through QuantStubs (``quant``, or ``quant_0``, ``quant_1``, ...) and
    outputs through DeQuantStubs (``dequant``...), identities in float, so
    ``model.qconfig = ...; npquant.prepare / calibrate / npquant.convert`` quantize
    it like a hand-written model; ``fuse_modules`` works on the children's names.
    """

    def __init__(self, input_names, output_names, steps):
        super().__init__()
        self.input_names, self.output_names, self.steps = list(input_names), list(output_names), list(steps)

    def forward(self, *xs):
        if len(xs) != len(self.input_names):
            raise TypeError(
                f"this model takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), got {len(xs)}"
            )
        env = dict(zip(self.input_names, xs))
        # Each value is dropped after the step that reads it last, so a deep network holds
        # only its live activations, not every intermediate until the end.
        last_use = {n: i for i, st in enumerate(self.steps) for n in st.inputs}
        keep = set(self.output_names)
        for i, st in enumerate(self.steps):
            args = [env[n] for n in st.inputs]
            child = getattr(self, st.child)
            if st.listed:
                args = [args]
            env[st.output] = getattr(child, st.method)(*args, **st.kwargs) if st.method else child(*args)
            for n in st.inputs:
                if last_use[n] == i and n not in keep:
                    env.pop(n, None)
        outs = tuple(env[n] for n in self.output_names)
        return outs[0] if len(outs) == 1 else outs
