"""Which layer loses accuracy: ``npquant.compare``, and the FloatIsland that
``quantize(keep_float=..., min_sqnr_db=...)`` (npquant/quantize.py) wraps kept layers in.

``compare`` runs a float model and its quantized version on the same inputs,
records every layer's output in both, and matches layers by module name. Two
SQNRs per layer answer two questions:

* ``sqnr_db``: the quantized model's output at this layer against the float
  model's (errors of every layer before it included) -- how far off the
  activations are by the time they get here;
* ``layer_sqnr_db``: this quantized layer alone, fed the float model's input to
  it (quantized with the qparams the quantized model used there) -- how much
  error this layer adds. Low values point at the layer to keep in float.

Fused layers (``fuse_modules`` turns conv, bn, relu into one module followed by
Identity placeholders) are compared against the float output of the last
module of the group, and labelled ``conv1+bn1+relu1``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from . import nn
from .nn.module import Module
from .qtensor import QTensor, quantize_per_tensor
from .serialization import supported_module_types

__all__ = ["compare", "ComparisonReport", "LayerComparison", "FloatIsland"]

# Methods besides forward through which modules produce outputs (FloatFunctional
# / QFunctional are called as .add(a, b), .cat([...]), ...).
_FUNCTIONAL_METHODS = ("add", "add_relu", "add_scalar", "mul", "mul_scalar", "cat")


class LayerComparison(NamedTuple):
    name: str  # module name(s), "conv1+bn1+relu1" for a fused group
    float_type: str
    quantized_type: str
    sqnr_db: float  # end to end, at this layer
    layer_sqnr_db: float  # this layer alone (nan when it cannot be run alone)
    max_abs_error: float
    cosine: float
    numel: int


# --------------------------------------------------------------------------- metrics


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - test|^2); inf when equal."""
    ref, test = _flat(ref), _flat(test)
    noise = float(np.sum((ref - test) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: np.ndarray, test: np.ndarray) -> float:
    ref, test = _flat(ref), _flat(test)
    nr, nt = float(np.linalg.norm(ref)), float(np.linalg.norm(test))
    if nr == 0.0 or nt == 0.0:
        return 1.0 if nr == nt else 0.0
    return float(np.dot(ref, test) / (nr * nt))


def _flat(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _as_float(out: object) -> np.ndarray | None:
    """A recorded output as a float array (QTensors dequantized); None if not an array."""
    if isinstance(out, QTensor):
        return out.dequantize()
    if isinstance(out, np.ndarray) and out.dtype.kind == "f":
        return out
    if isinstance(out, tuple) and out:  # recurrent layers: (output, h_n) or (output, (h_n, c_n))
        parts = [_as_float(o) for o in out]
        arrays = [p for p in parts if p is not None]
        if len(arrays) == len(parts):
            return np.concatenate([p.reshape(-1) for p in arrays])
    return None


def _floats(outs: list[Any]) -> list[np.ndarray] | None:
    """Recorded outputs as float arrays; None if any of them is not an array."""
    arrays = [_as_float(o) for o in outs]
    return [a for a in arrays if a is not None] if all(a is not None for a in arrays) else None


# --------------------------------------------------------------------------- recording


class _Record:
    __slots__ = ("module", "outputs", "args")

    def __init__(self, module: Module) -> None:
        self.module = module
        self.outputs: list[Any] = []
        self.args: list[tuple[Any, ...]] = []


def _record(model: Module, batches: list[np.ndarray]) -> tuple[OrderedDict[str, _Record], list[Any]]:
    """Runs model on every batch, recording each module's outputs and positional
    inputs by name (in order of first output, i.e. execution order for leaves)."""
    records: OrderedDict[str, _Record] = OrderedDict()
    patched: list[tuple[Module, str, bool, Any]] = []

    def wrap(name: str, m: Module, meth: str) -> None:
        orig = getattr(m, meth)

        def recorder(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            rec = records.get(name)
            if rec is None:
                rec = records[name] = _Record(m)
            rec.outputs.append(out)
            rec.args.append(args)
            return out

        had = meth in m.__dict__
        patched.append((m, meth, had, m.__dict__.get(meth)))
        object.__setattr__(m, meth, recorder)

    for name, m in model.named_modules():
        for meth in ("forward",) + _FUNCTIONAL_METHODS:
            if meth == "forward" or callable(getattr(type(m), meth, None)):
                wrap(name, m, meth)
    try:
        finals = [model(x) for x in batches]
    finally:
        for m, meth, had, old in reversed(patched):
            if had:
                object.__setattr__(m, meth, old)
            else:
                del m.__dict__[meth]
    return records, finals


def _batches(inputs: object) -> list[np.ndarray]:
    if isinstance(inputs, np.ndarray):
        return [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, np.ndarray) for x in inputs):
        return list(inputs)
    raise TypeError("inputs must be a numpy array (one batch) or a non-empty list of arrays (batches)")


# --------------------------------------------------------------------------- matching


def _is_identity(m: object) -> bool:
    ident = getattr(nn, "Identity", None)
    return ident is not None and type(m) is ident


def _fused_groups(float_model: Module, q_model: Module) -> dict[str, list[str]]:
    """{first member: [members]} for groups fuse_modules made: a quantized module
    followed by Identity siblings that are not Identity in the float model."""
    groups = {}
    for pname, parent in q_model.named_modules():
        kids = list(parent.named_children())
        for i, (name, m) in enumerate(kids):
            if _is_identity(m):
                continue
            members = [name]
            for nxt, nm in kids[i + 1 :]:
                full = f"{pname}.{nxt}" if pname else nxt
                if not _is_identity(nm) or _is_identity(_get(float_model, full)):
                    break
                members.append(nxt)
            if len(members) > 1:
                prefix = f"{pname}." if pname else ""
                groups[prefix + name] = [prefix + n for n in members]
    return groups


def _get(model: Module, name: str) -> Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _unit(m: Module) -> bool:
    """Modules reported as one layer though they have children (the dynamic recurrent
    layers, whose children are their projections): class attribute _report_as_leaf."""
    return bool(getattr(type(m), "_report_as_leaf", False))


def _compared_names(q_model: Module, q_records: OrderedDict[str, _Record]) -> list[str]:
    """Quantized-model names to report: leaves and FloatIslands (not their insides),
    no Identity placeholders, in execution order."""
    islands = [n for n, m in q_model.named_modules() if isinstance(m, FloatIsland) or _unit(m)]
    out = []
    for name, rec in q_records.items():
        m = rec.module
        inside = any(name.startswith(i + ".") for i in islands)
        leaf = isinstance(m, FloatIsland) or _unit(m) or not any(True for _ in m.children())
        if name and leaf and not inside and not _is_identity(m):
            out.append(name)
    return out


# --------------------------------------------------------------------------- compare


class ComparisonReport:
    """Rows of LayerComparison in execution order; ``str()`` is a table."""

    def __init__(self, rows: list[LayerComparison], output: LayerComparison, unmatched: list[str]) -> None:
        self.rows = rows
        self.output = output
        self.unmatched = unmatched

    def __iter__(self) -> Iterator[LayerComparison]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> LayerComparison:
        for r in self.rows:
            if r.name == name or r.name.split("+")[0] == name:
                return r
        raise KeyError(f"no layer named {name!r} in the comparison")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {r.name: r._asdict() for r in self.rows + [self.output]}

    def __str__(self) -> str:
        head = ("layer", "float -> quantized", "SQNR dB", "alone dB", "max abs err", "cosine")
        lines = []
        for r in self.rows + [self.output]:
            lines.append(
                (
                    r.name,
                    f"{r.float_type} -> {r.quantized_type}",
                    _db(r.sqnr_db),
                    _db(r.layer_sqnr_db),
                    f"{r.max_abs_error:.4g}",
                    f"{r.cosine:.5f}",
                )
            )
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*x) for x in lines]
        if self.unmatched:
            out.append(f"(not in the float model: {', '.join(self.unmatched)})")
        return "\n".join(out)

    __repr__ = __str__


def _db(v: float) -> str:
    if math.isnan(v):
        return "-"
    return "inf" if v == math.inf else f"{v:.1f}"


def _type_label(m: object) -> str:
    """'Linear', 'quantized.Linear', 'quantized.dynamic.Linear', ...: the registry
    name without its 'nn.' prefix, so float and quantized types read apart."""
    for name, cls in supported_module_types().items():
        if cls is type(m):
            label: str = name[3:] if name.startswith("nn.") else name
            return label
    return type(m).__name__


def _row(
    name: str, fm: object, qm: object, f_outs: list[np.ndarray], q_outs: list[np.ndarray], alone: float
) -> LayerComparison:
    ref = np.concatenate([_flat(o) for o in f_outs])
    test = np.concatenate([_flat(o) for o in q_outs])
    return LayerComparison(
        name=name,
        float_type=_type_label(fm),
        quantized_type=_type_label(qm),
        sqnr_db=sqnr_db(ref, test),
        layer_sqnr_db=alone,
        max_abs_error=float(np.max(np.abs(ref - test))) if ref.size else 0.0,
        cosine=cosine(ref, test),
        numel=int(ref.size),
    )


def _alone(
    q_module: Module, f_args: list[tuple[Any, ...]], q_args: list[tuple[Any, ...]], f_outs: list[np.ndarray]
) -> float:
    """SQNR of q_module fed the float model's inputs (quantized like its own inputs)."""
    outs = []
    for fa, qa in zip(f_args, q_args):
        if len(fa) != 1 or len(qa) != 1 or not isinstance(fa[0], np.ndarray):
            return math.nan
        x: np.ndarray | QTensor = fa[0]
        seen = qa[0]
        if isinstance(seen, QTensor):
            if seen.qscheme() != "per_tensor_affine":
                return math.nan
            x = quantize_per_tensor(x, seen.q_scale(), seen.q_zero_point(), seen.dtype)
        elif not isinstance(seen, np.ndarray):
            return math.nan
        y = _as_float(q_module(x))
        if y is None:
            return math.nan
        outs.append(y)
    ref = np.concatenate([_flat(o) for o in f_outs])
    return sqnr_db(ref, np.concatenate([_flat(o) for o in outs]))


def compare(float_model: Module, quantized_model: Module, inputs: object) -> ComparisonReport:
    """Per-layer SQNR (dB), max abs error and cosine similarity between a float model
    and its quantized version, on ``inputs`` (an array, or a list of batches).

    Layers are matched by module name. ``print(report)`` shows the table;
    ``report['conv1']`` one row; ``report.output`` the whole model's output.
    """
    for what, m in (("float_model", float_model), ("quantized_model", quantized_model)):
        if not isinstance(m, Module):
            raise TypeError(f"{what} must be an npquant.nn.Module, got {type(m).__name__}")
    batches = _batches(inputs)
    f_rec, f_final = _record(float_model, batches)
    q_rec, q_final = _record(quantized_model, batches)
    groups = _fused_groups(float_model, quantized_model)
    rows, unmatched = [], []
    for name in _compared_names(quantized_model, q_rec):
        members = groups.get(name, [name])
        target = members[-1]
        f, q = f_rec.get(target), q_rec[name]
        f_outs = None if f is None else _floats(f.outputs)
        q_outs = _floats(q.outputs)
        if (
            f_outs is None
            or q_outs is None
            or len(f_outs) != len(q_outs)
            or any(a.size != b.size for a, b in zip(f_outs, q_outs))
        ):
            unmatched.append(name)
            continue
        first = f_rec.get(name)
        alone = math.nan if first is None else _alone(q.module, first.args, q.args, f_outs)
        rows.append(
            _row(
                "+".join(n.rsplit(".", 1)[-1] if i else n for i, n in enumerate(members)),
                _get(float_model, name),
                q.module,
                f_outs,
                q_outs,
                alone,
            )
        )
    outs_f, outs_q = _floats(f_final), _floats(q_final)
    if outs_f is None or outs_q is None:
        raise TypeError("compare needs models that return arrays (or QTensors)")
    output = _row("(model output)", float_model, quantized_model, outs_f, outs_q, math.nan)
    return ComparisonReport(rows, output, unmatched)


# --------------------------------------------------------------------------- keep_float
# (the flow that inserts FloatIslands is quantize_keeping_float in quantize.py)


class FloatIsland(Module):
    """A layer kept in float inside a quantized model: dequantize its input (when
    quantized), run the float module, quantize its output (qparams observed in
    calibration, like any QuantStub)."""

    def __init__(self, module: Module) -> None:
        super().__init__()
        self.dequant = nn.DeQuantStub()
        self.module = module
        self.quant = nn.QuantStub()

    def forward(self, x: Any) -> Any:
        if isinstance(x, QTensor):
            x = self.dequant(x)
        return self.quant(self.module(x))
