"""Records which npquant modules a model's forward() calls, and on which values.

The exporter runs the example input through a deep copy of the model with a
forward pre-hook and hook on every submodule, so any forward() code works as
long as the values flowing between modules are produced by modules the
exporter knows (its "leaves"). A value made by code it cannot see (NumPy on
a float array, a QTensor built by hand, a module's ``forward`` called
directly) is caught where it is consumed or where it leaves a container, and
the error names the module.

No onnx import here: tracing is plain npquant.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np

from ..nn.module import Module
from ..qtensor import QTensor
from ._errors import ExportError

# The methods of FloatFunctional / QFunctional that act as graph operations.
FUNCTIONAL_METHODS = ("add", "add_relu", "mul", "cat", "add_scalar", "mul_scalar")


@dataclass
class Call:
    """One leaf operation: a module call, a functional method, or a QTensor method (QTENSOR_METHODS)."""

    name: str  # module path ("" for the root), or "<reshape>"
    module: object  # the module (None for reshape)
    op: str  # "call", a FUNCTIONAL_METHODS name, or a QTENSOR_METHODS name
    inputs: list  # the array / QTensor arguments, in order
    output: object
    args: tuple = ()  # the raw positional arguments (functional methods, reshape)
    kwargs: dict = field(default_factory=dict)


class Trace:
    """The graph inputs, the leaf calls in execution order, and the outputs."""

    def __init__(self, inputs: list, calls: list, outputs: list):
        self.inputs, self.calls, self.outputs = inputs, calls, outputs


def is_value(v) -> bool:
    return isinstance(v, (np.ndarray, QTensor))


def flat_values(obj) -> list:
    """Arrays and QTensors inside obj (nested tuples / lists / dicts)."""
    if is_value(obj):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [v for o in obj for v in flat_values(o)]
    if isinstance(obj, dict):
        return [v for o in obj.values() for v in flat_values(o)]
    return []


class _Recorder:
    def __init__(self, is_leaf):
        self.is_leaf = is_leaf
        self.calls: list = []
        self.known: dict = {}  # id(value) -> value (kept alive, so ids stay unique)
        self.stack: list = []  # (name, module, recording) of the calls in progress

    def know(self, v) -> None:
        self.known[id(v)] = v

    def unknown(self, obj) -> list:
        return [v for v in flat_values(obj) if id(v) not in self.known]

    @property
    def inside_leaf(self) -> bool:
        return any(rec for _, _, rec in self.stack)

    def check_inputs(self, name, module, args) -> None:
        if self.unknown(args):
            raise ExportError(
                f"an input of module '{name or '<root>'}' ({type(module).__name__}) was computed by code "
                "npquant.onnx cannot see (NumPy or QTensor arithmetic in a forward(), a module's forward() "
                "called directly, or a value built by hand). Express that step with npquant.nn modules "
                "(e.g. Flatten, FloatFunctional/QFunctional) so it can be exported"
            )

    # ---- module hooks
    def pre(self, name, module, args):
        if self.inside_leaf:
            self.stack.append((name, module, False))
            return
        leaf = self.is_leaf(module)
        if leaf:
            self.check_inputs(name, module, args)
        self.stack.append((name, module, leaf))

    def post(self, name, module, args, out):
        _, _, leaf = self.stack.pop()
        if self.inside_leaf:
            return
        if leaf:
            self.record(Call(name, module, "call", flat_values(args), out))
        elif self.unknown(out):
            raise ExportError(
                f"module '{name or '<root>'}' ({type(module).__name__}) is not one npquant.onnx can export, "
                "and its forward() computes its output with code npquant.onnx cannot see. Build it from "
                "exportable npquant.nn modules (Sequential, Linear, Conv2d, ReLU, pooling, Flatten, "
                "FloatFunctional, QuantStub/DeQuantStub, ...) or their quantized versions"
            )

    def record(self, call: Call) -> None:
        for v in flat_values(call.output):
            if id(v) not in self.known:
                self.know(v)
        self.calls.append(call)

    # ---- functional methods and QTensor.reshape
    def wrap_method(self, name, module, op, fn):
        def traced(*args, **kwargs):
            if self.inside_leaf or _active() is not self:
                return fn(*args, **kwargs)
            self.check_inputs(f"{name}.{op}", module, (args, kwargs))
            self.stack.append((name, module, True))
            try:
                out = fn(*args, **kwargs)
            finally:
                self.stack.pop()
            self.record(Call(name, module, op, flat_values(args), out, args, kwargs))
            return out

        return traced


_local = threading.local()
_patch_lock = threading.Lock()


def _active():
    return getattr(_local, "recorder", None)


# QTensor methods the tracer records (patched class-wide while tracing)
QTENSOR_METHODS = ("reshape", "chunk", "split", "transpose", "permute", "mean")


def _traced_method(op, original):
    def method(self, *args, **kwargs):
        rec = _active()
        if rec is None or rec.inside_leaf or getattr(rec, "in_method", False):
            return original(self, *args, **kwargs)
        rec.in_method = True  # a method calling another (chunk -> split) is one operation
        try:
            out = original(self, *args, **kwargs)
        finally:
            rec.in_method = False
        rec.check_inputs(f"<QTensor.{op}>", self, (self,))
        rec.record(Call(f"<QTensor.{op}>", None, op, [self], out, args, kwargs))
        return out

    return method


def trace(model: Module, inputs: tuple, is_leaf) -> Trace:
    """Runs model(*inputs) on a deep copy with recording hooks; the model is untouched."""
    model = copy.deepcopy(model)
    for name, m in model.named_modules():
        if m._forward_hooks or m._forward_pre_hooks:
            raise ExportError(
                f"module '{name or '<root>'}' ({type(m).__name__}) has forward hooks, which "
                "ONNX cannot express; remove them (handle.remove()) before export"
            )
    rec = _Recorder(is_leaf)
    for name, m in model.named_modules():
        m.register_forward_pre_hook(lambda mod, args, _n=name: rec.pre(_n, mod, args))
        m.register_forward_hook(lambda mod, args, out, _n=name: rec.post(_n, mod, args, out))
        if hasattr(type(m), "add_relu"):  # FloatFunctional and QFunctional
            for op in FUNCTIONAL_METHODS:
                if hasattr(m, op):
                    object.__setattr__(m, op, rec.wrap_method(name, m, op, getattr(m, op)))
    for v in inputs:
        rec.know(v)
    with _patch_lock:  # QTensor methods are patched class-wide; other threads pass through
        originals = {op: QTensor.__dict__[op] for op in QTENSOR_METHODS}
        for op, fn in originals.items():
            setattr(QTensor, op, _traced_method(op, fn))
        _local.recorder = rec
        try:
            out = model(*inputs)
        finally:
            _local.recorder = None
            for op, fn in originals.items():
                setattr(QTensor, op, fn)
    outputs = flat_values(out)
    if not outputs:
        raise ExportError(f"the model returned {type(out).__name__}, not an array or QTensor (or a tuple of them)")
    if rec.unknown(outputs):
        raise ExportError(
            "the model's output was computed by code npquant.onnx cannot see (NumPy or QTensor "
            "arithmetic in forward()); end the model with npquant.nn modules"
        )
    return Trace(list(inputs), rec.calls, outputs)
