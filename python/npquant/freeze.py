"""``npquant.freeze``: a quantized model's forward replayed as its native calls only.

    fast = npquant.freeze(qmodel, example)   # example: a float32 array of the input's shape
    y = fast(x)                               # qmodel(x), bit for bit, without its Python

A converted model's forward is a chain of native ops (quantize, convs, pools, adds,
dequantize) glued by Python: module calls, attribute lookups, QTensor wrappers. At batch
1 that glue costs 10-25% of a forward (measured inside the model, where the convs have
evicted the interpreter's data from the caches: a Flatten that takes 6 us alone took
55-70 us there). ``freeze`` runs the model on the example and on a second input made
from it, records every call into ``npquant._C`` with its arguments, and keeps the
sequence if both runs made the same calls and every argument is, in both, either the
input, an earlier call's result (or a view of one), or the same constant (packed
weights, qparams, lookup tables). Calling the frozen model replays that sequence on the
new input. Anything else (NumPy arithmetic on activations between native calls, a
parameter computed from the data, as dynamic quantization does) makes ``freeze`` raise
:class:`FreezeError` saying which call; the model then runs as it is.

What the replay does not do: run Python code, so checks a forward makes in Python on the
data's values do not run (npquant's own layers check in their native calls: NaN/Inf
input still raises), and changes made to the model after ``freeze`` are not seen (freeze
again). A frozen model takes one float array; an input of another shape is recorded the
first time it is seen (three eager forwards), then replayed. The result is checked
against the eager forward, bit for bit, on both recorded inputs before it is used.
"""

from __future__ import annotations

import threading
import types
from typing import Any, Callable

import numpy as np

from . import _C
from .nn.module import Module
from .qtensor import QTensor

__all__ = ["freeze", "FrozenModel", "FreezeError"]


class FreezeError(ValueError):
    """The model's forward cannot be replayed as native calls alone (the message says why)."""


# ---------------------------------------------------------------- recording


class _Call:
    __slots__ = ("name", "fn", "args", "kwargs", "result")

    def __init__(self, name, fn, args, kwargs, result):
        self.name, self.fn, self.args, self.kwargs, self.result = name, fn, args, kwargs, result


def _native_functions() -> dict[str, Callable[..., Any]]:
    return {n: f for n, f in vars(_C).items() if isinstance(f, types.BuiltinFunctionType) and not n.startswith("__")}


_RECORD_LOCK = threading.Lock()


def _record(model: Module, x: np.ndarray) -> tuple[list[_Call], Any]:
    """model(x) with every npquant._C function call of this thread recorded."""
    calls: list[_Call] = []
    me = threading.get_ident()
    originals = _native_functions()

    def wrap(name, fn):
        def recorded(*args, **kwargs):
            result = fn(*args, **kwargs)
            if threading.get_ident() == me:
                calls.append(_Call(name, fn, args, kwargs, result))
            return result

        return recorded

    with _RECORD_LOCK:
        for name, fn in originals.items():
            setattr(_C, name, wrap(name, fn))
        try:
            out = model(x)
        finally:
            for name, fn in originals.items():
                setattr(_C, name, fn)
    return calls, out


# ---------------------------------------------------------------- argument specs
# A spec says where a replayed argument comes from:
#   ("in",)                    the input array
#   ("slot", k)                call k's result (k < the current call)
#   ("item", k, i)             element i of call k's tuple result
#   ("view", src, dtype, shape, strides, offset)   a view into src's memory (src: a spec above)
#   ("seq", list|tuple, [specs])
#   ("qt", spec, scale, zp, dtype, nhwc)           a per-tensor QTensor (outputs only)
#   ("const", value)


def _arrays_of(result, k: int, table: dict[int, tuple]) -> None:
    if isinstance(result, np.ndarray):
        table[id(result)] = ("slot", k)
    elif isinstance(result, tuple):
        for i, r in enumerate(result):
            if isinstance(r, np.ndarray):
                table[id(r)] = ("item", k, i)


def _spec(v, table: dict[int, tuple], where: str):
    if isinstance(v, np.ndarray):
        src = table.get(id(v))
        if src is not None:
            return src
        root = v.base
        while root is not None and id(root) not in table:
            root = root.base if isinstance(root, np.ndarray) else None
        if root is not None:
            offset = v.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            return ("view", table[id(root)], v.dtype, v.shape, v.strides, offset)
        return ("const", v)
    if isinstance(v, (list, tuple)):
        return ("seq", type(v), [_spec(e, table, where) for e in v])
    if isinstance(v, QTensor):
        if v._axis is not None:
            raise FreezeError(f"{where}: a per-channel QTensor; freeze keeps per-tensor ones only")
        return ("qt", _spec(v._q, table, where), v._scale, v._zp, v._dtype, v._nhwc)
    if isinstance(v, dict):
        raise FreezeError(f"{where}: a dict; freeze replays arrays, QTensors, lists and tuples")
    return ("const", v)


def _same_constant(a, b) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, np.ndarray):
        return False  # arrays: the same object in both runs (weights, tables), never a fresh copy
    if isinstance(a, (bool, int, float, str, np.generic, type(None), np.dtype)):
        try:
            return bool(a == b) or (a != a and b != b)  # NaN == NaN here
        except (TypeError, ValueError):
            return False
    return False  # any other object (packed weights): the same one


def _same_spec(a, b) -> bool:
    if a[0] != b[0]:
        return False
    kind = a[0]
    if kind == "const":
        return _same_constant(a[1], b[1])
    if kind == "seq":
        return a[1] is b[1] and len(a[2]) == len(b[2]) and all(map(_same_spec, a[2], b[2]))
    if kind == "view":
        return _same_spec(a[1], b[1]) and a[2:] == b[2:]
    if kind == "qt":
        return _same_spec(a[1], b[1]) and all(_same_constant(p, q) for p, q in zip(a[2:], b[2:]))
    return a == b


def _describe(call: _Call, k: int) -> str:
    return f"native call {k} ({call.name})"


def _plan(calls1, out1, x1, calls2, out2, x2) -> tuple[list, Any]:
    if [c.name for c in calls1] != [c.name for c in calls2]:
        n = next((i for i, (a, b) in enumerate(zip(calls1, calls2)) if a.name != b.name), min(len(calls1), len(calls2)))
        raise FreezeError(
            f"the forward made different native calls for two inputs of the same shape (from call {n} on): "
            "it branches on the data's values in Python"
        )
    steps = []
    tables = [{id(x1): ("in",)}, {id(x2): ("in",)}]
    for k, (c1, c2) in enumerate(zip(calls1, calls2)):
        where = _describe(c1, k)
        specs = []
        for calls_c, table in ((c1, tables[0]), (c2, tables[1])):
            specs.append(
                (
                    [_spec(a, table, where) for a in calls_c.args],
                    {n: _spec(v, table, where) for n, v in calls_c.kwargs.items()},
                )
            )
        (a1, k1), (a2, k2) = specs
        if len(a1) != len(a2) or k1.keys() != k2.keys():
            raise FreezeError(f"{where}: called with different arguments for two inputs")
        for i, (s1, s2) in enumerate(zip(a1, a2)):
            if not _same_spec(s1, s2):
                raise FreezeError(_unreplayable(where, f"argument {i}", s1))
        for n in k1:
            if not _same_spec(k1[n], k2[n]):
                raise FreezeError(_unreplayable(where, f"argument {n!r}", k1[n]))
        steps.append((c1.fn, a1, k1))
        _arrays_of(c1.result, k, tables[0])
        _arrays_of(c2.result, k, tables[1])
    o1, o2 = _spec(out1, tables[0], "the output"), _spec(out2, tables[1], "the output")
    if not _same_spec(o1, o2) or _has_fresh_constant(o1):
        raise FreezeError(_unreplayable("the output", "the value", o1))
    return steps, o1


def _has_fresh_constant(spec) -> bool:
    """An array the forward made outside native calls (in NumPy) and returns."""
    kind = spec[0]
    if kind == "const":
        return isinstance(spec[1], np.ndarray)
    if kind == "seq":
        return any(_has_fresh_constant(s) for s in spec[2])
    if kind == "qt":
        return _has_fresh_constant(spec[1])
    return False


def _unreplayable(where: str, what: str, spec) -> str:
    return (
        f"{where}: {what} differs between two inputs of the same shape and does not come from an "
        "earlier native call: the forward computes it in Python or NumPy from the data "
        f"({_kind_text(spec)}). freeze replays native calls only; run this model as it is"
    )


def _kind_text(spec) -> str:
    if spec[0] == "const" and isinstance(spec[1], np.ndarray):
        return f"a {spec[1].dtype} array of shape {spec[1].shape} made outside npquant._C"
    if spec[0] == "const":
        return f"the value {spec[1]!r}"
    return spec[0]


# ---------------------------------------------------------------- replay


def _getter(spec) -> Callable[[list], Any]:
    kind = spec[0]
    if kind == "in":
        return lambda v: v[-1]
    if kind == "slot":
        k = spec[1]
        return lambda v: v[k]
    if kind == "item":
        k, i = spec[1], spec[2]
        return lambda v: v[k][i]
    if kind == "view":
        src = _getter(spec[1])
        dtype, shape, strides, offset = spec[2], spec[3], spec[4], spec[5]
        return lambda v: np.ndarray(shape, dtype, buffer=src(v), offset=offset, strides=strides)
    if kind == "seq":
        make, parts = spec[1], [_getter(s) for s in spec[2]]
        return lambda v: make(p(v) for p in parts)
    if kind == "qt":
        q = _getter(spec[1])
        scale, zp, qdtype, nhwc = spec[2], spec[3], spec[4], spec[5]
        return lambda v: QTensor._trusted(q(v), scale, zp, qdtype, nhwc)
    value = spec[1]
    return lambda v: value


def _slots_read(spec, out: set) -> None:
    kind = spec[0]
    if kind in ("slot", "item"):
        out.add(spec[1])
    elif kind in ("view", "qt"):
        _slots_read(spec[1], out)
    elif kind == "seq":
        for s in spec[2]:
            _slots_read(s, out)


class _Program:
    """The recorded calls, as (function, fixed args, [(position, getter)], kwargs, slots to drop)."""

    def __init__(self, steps, out_spec):
        last_use: dict[int, int] = {}
        for k, (_, args, kwargs) in enumerate(steps):
            read: set[int] = set()
            for s in [*args, *kwargs.values()]:
                _slots_read(s, read)
            for r in read:
                last_use[r] = k
        kept: set[int] = set()
        _slots_read(out_spec, kept)
        drop: list[list[int]] = [[] for _ in steps]
        for r in range(len(steps)):
            if r not in kept:  # after its last reader, or at once if nothing reads it
                drop[last_use.get(r, r)].append(r)
        self.steps = []
        for k, (fn, args, kwargs) in enumerate(steps):
            fixed = [s[1] if s[0] == "const" else None for s in args]
            dynamic = [(i, _getter(s)) for i, s in enumerate(args) if s[0] != "const"]
            kw = {n: _getter(s) for n, s in kwargs.items()}
            self.steps.append((fn, fixed, dynamic, kw, drop[k]))
        self.output = _getter(out_spec)
        self.n = len(steps)

    def __call__(self, x):
        v: list[Any] = [None] * self.n + [x]  # v[-1]: the input
        for k, (fn, fixed, dynamic, kw, drop) in enumerate(self.steps):
            args = fixed.copy()
            for i, get in dynamic:
                args[i] = get(v)
            v[k] = fn(*args, **{n: get(v) for n, get in kw.items()}) if kw else fn(*args)
            for r in drop:  # free activations after their last use, as the eager forward does
                v[r] = None
        return self.output(v)


# ---------------------------------------------------------------- public


def _second_input(x: np.ndarray) -> np.ndarray:
    """Another input of x's shape and scale, different in every element (almost surely),
    so that anything computed from the data differs between the two recordings."""
    rng = np.random.default_rng(12345)
    flat = x.reshape(-1)
    spread = float(np.std(flat)) if flat.size else 1.0
    noise = rng.normal(0.0, 0.1 * (spread if spread > 0 and np.isfinite(spread) else 1.0), flat.size)
    return np.ascontiguousarray((rng.permutation(flat) + noise).astype(x.dtype).reshape(x.shape))


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    if isinstance(a, QTensor) and isinstance(b, QTensor):
        return (a._scale, a._zp, a._dtype, a.shape) == (b._scale, b._zp, b._dtype, b.shape) and np.array_equal(
            a.int_repr(), b.int_repr()
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return bool(type(a) is type(b) and a == b)


def _check_input(x, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray of float32, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{what} must have dtype float32 (the frozen model replays float32 inputs), got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous; pass numpy.ascontiguousarray(x)")
    if x.size == 0:
        raise ValueError(f"{what} is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or Inf; freeze records with finite data")
    return x


class FrozenModel:
    """What :func:`freeze` returns: call it like the model (one float32 array)."""

    def __init__(self, model: Module, example: np.ndarray):
        self.model = model
        self._programs: dict[tuple, _Program] = {}
        self._record_program(_check_input(example, "freeze's example"))

    def _record_program(self, x: np.ndarray) -> _Program:
        """Records, checks and keeps the program for x's shape (the caller has none yet)."""
        model, x1 = self.model, x.copy()
        model(x1)  # warm-up: packed weights, tables and caches are built on first use
        x2 = _second_input(x1)
        calls1, out1 = _record(model, x1)
        calls2, out2 = _record(model, x2)
        if not calls1:
            raise FreezeError("the forward made no native npquant calls: nothing to replay")
        prog = _Program(*_plan(calls1, out1, x1, calls2, out2, x2))
        for xi, want in ((x1, out1), (x2, out2)):
            if not _equal(prog(xi), want):
                raise FreezeError(
                    "the replayed calls do not reproduce the forward's result: it changes an array in "
                    "place outside npquant's native calls, or depends on state that freeze cannot see"
                )
        self._programs[x.shape] = prog
        return prog

    def __call__(self, x):
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            _check_input(x, "the input")
        prog = self._programs.get(x.shape)
        if prog is None:
            prog = self._record_program(_check_input(x, "the input"))
        return prog(x)

    def __repr__(self) -> str:
        shapes = ", ".join(str(s) for s in self._programs)
        return f"FrozenModel({type(self.model).__name__}, recorded for input shapes {shapes})"


def freeze(model: Module, example) -> FrozenModel:
    """A callable that replays ``model``'s forward as its native calls only (see the module
    docstring); ``example`` is a float32 array of the input's shape (data like the real
    inputs: it is run through the model). Raises :class:`FreezeError` if the forward does
    work between native calls that depends on the data."""
    if not isinstance(model, Module):
        raise TypeError(f"freeze expects an npquant.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("freeze expects a model in eval mode: call model.eval() first")
    return FrozenModel(model, example)
