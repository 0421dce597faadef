"""Where a model's time goes: ``npquant.profile(model, x, repeat=10)``.

Times every leaf module (a module without children: containers are not timed,
so nothing is counted twice) over ``repeat`` forward passes after one warm-up
pass, and reports per module the median time per pass, the calls per pass, the
share of the median total, GMAC/s for Linear / Conv2d and the kernel that ran.
Time spent outside leaf modules (the Python of ``forward`` methods between
them) is one row, ``other (Python between modules)``. QFunctional /
FloatFunctional are timed through their methods (``.add``, ``.cat``, ...).

    >>> print(npquant.profile(qmodel, x, repeat=10))
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from .nn.module import Module
from .nn.quantized import QFunctional

__all__ = ["profile", "Profile", "ProfileRow"]

_METHODS = ("forward", "add", "add_relu", "add_scalar", "mul", "mul_scalar", "cat")
OTHER = "other (Python between modules)"


class ProfileRow(NamedTuple):
    name: str  # module name in the model ("layer1.0.conv1"), or OTHER
    type: str  # class name
    calls: int  # calls per forward pass
    ms: float  # median time per forward pass, milliseconds
    ms_per_call: float
    share: float  # of the median total, 0..1
    gmacs: float | None  # GMAC/s for Linear / Conv2d, else None
    kernel: str  # the kernel that ran (npquant.cpu_info()['kernels'] names) or the path
    isa: str


class Profile:
    """``rows`` (slowest first, OTHER last), ``total_ms`` (median forward pass) and
    ``repeat``; ``str()`` is the table."""

    def __init__(self, rows, total_ms: float, repeat: int):
        self.rows, self.total_ms, self.repeat = rows, total_ms, repeat

    def __str__(self) -> str:
        head = ("module", "type", "calls", "ms", "ms/call", "share", "GMAC/s", "kernel")
        body = [
            (
                r.name,
                r.type,
                str(r.calls),
                f"{r.ms:.3f}",
                f"{r.ms_per_call:.3f}",
                f"{100 * r.share:.1f}%",
                "" if r.gmacs is None else f"{r.gmacs:.1f}",
                r.kernel + (f" ({r.isa})" if r.isa else ""),
            )
            for r in self.rows
        ]
        body.append(("total", "", "", f"{self.total_ms:.3f}", "", "100.0%", "", f"median of {self.repeat}"))
        widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
        right = {2, 3, 4, 5, 6}

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(head), rule] + [fmt(r) for r in body])

    __repr__ = __str__


def _macs(mod, out) -> int | None:
    """Multiply-accumulates of one call of a Linear / Conv2d (float or quantized)."""
    shape = getattr(out, "shape", None)
    if shape is None:
        return None
    numel = int(np.prod(shape))
    if hasattr(mod, "in_features"):
        return numel * int(mod.in_features)
    if hasattr(mod, "in_channels") and hasattr(mod, "kernel_size"):
        k = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
        return numel * int(mod.in_channels) // int(getattr(mod, "groups", 1)) * int(np.prod(k))
    return None


def _kernel(mod) -> tuple:
    """(kernel name, ISA) for modules backed by a packed native kernel; else the path."""
    params = mod.__dict__.get("_packed_params")
    packed = getattr(params, "packed", None)
    name = getattr(packed, "kernel", None)
    if isinstance(name, str):
        isa = name.rsplit("__", 1)[1] if "__" in name else ""
        path = getattr(packed, "path", None)
        return (f"{path}: {name}" if isinstance(path, str) else name), isa
    last = mod.__dict__.get("_last_kernel") if isinstance(mod, QFunctional) else None
    if last:  # the path of its last call: a kernel name, "lookup table" or "numpy"
        return last, (last.rsplit("__", 1)[1] if "__" in last else "")
    return "", ""


class _Timer:
    """Per-module accumulated nanoseconds and calls of the current pass."""

    def __init__(self):
        self.ns = {}
        self.calls = {}
        self.macs = {}
        self.depth = {}

    def wrap(self, name: str, mod, fn):
        def timed(*args, **kwargs):
            # a method calling another timed method of the same module counts once
            if self.depth.get(name):
                return fn(*args, **kwargs)
            self.depth[name] = 1
            t0 = time.perf_counter_ns()
            try:
                out = fn(*args, **kwargs)
            finally:
                dt = time.perf_counter_ns() - t0
                self.depth[name] = 0
            self.ns[name] = self.ns.get(name, 0) + dt
            self.calls[name] = self.calls.get(name, 0) + 1
            if name not in self.macs:
                self.macs[name] = _macs(mod, out)
            return out

        return timed


def profile(model: Module, *inputs, repeat: int = 10, warmup: int = 1) -> Profile:
    """Profiles ``model(*inputs)``: ``repeat`` timed passes after ``warmup`` untimed ones
    (the first call builds caches: packed weights, lookup tables). Returns a
    :class:`Profile`; ``print()`` it for the table."""
    if not isinstance(model, Module):
        raise TypeError(f"profile expects an npquant.nn.Module, got {type(model).__name__}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    # leaves, and modules timed as one (class attribute _report_as_leaf: the dynamic
    # recurrent layers, whose children are their projections) without their insides
    units = [n for n, m in model.named_modules() if getattr(type(m), "_report_as_leaf", False)]

    def inside(name: str) -> bool:
        return any(name != u and (u == "" or name.startswith(u + ".")) for u in units)

    leaves = [
        (name or type(model).__name__, m)
        for name, m in model.named_modules()
        if (next(iter(m.children()), None) is None or name in units) and not inside(name)
    ]
    timer = _Timer()
    patched = []
    try:
        for name, mod in leaves:
            for meth in _METHODS:
                fn = getattr(type(mod), meth, None)
                if fn is None or (meth != "forward" and not callable(fn)):
                    continue
                if meth == "forward" and fn is Module.forward:
                    continue
                object.__setattr__(mod, meth, timer.wrap(name, mod, getattr(mod, meth)))
                patched.append((mod, meth))
        for _ in range(max(0, warmup)):
            model(*inputs)
        per_pass, totals = [], []
        for _ in range(repeat):
            timer.ns, timer.calls = {}, {}
            t0 = time.perf_counter_ns()
            model(*inputs)
            totals.append(time.perf_counter_ns() - t0)
            per_pass.append((timer.ns, timer.calls))
    finally:
        for mod, meth in patched:
            mod.__dict__.pop(meth, None)
    return _report(leaves, timer, per_pass, totals, repeat)


def _report(leaves, timer, per_pass, totals, repeat) -> Profile:
    total_ms = float(np.median(totals)) / 1e6
    rows = []
    for name, mod in leaves:
        times = [ns.get(name, 0) for ns, _ in per_pass]
        calls = per_pass[-1][1].get(name, 0)
        if calls == 0:
            continue
        ms = float(np.median(times)) / 1e6
        macs = timer.macs.get(name)
        gmacs = macs * calls / (ms * 1e6) if macs and ms > 0 else None
        kernel, isa = _kernel(mod)
        rows.append(
            ProfileRow(
                name, type(mod).__name__, calls, ms, ms / calls, ms / total_ms if total_ms else 0.0, gmacs, kernel, isa
            )
        )
    rows.sort(key=lambda r: -r.ms)
    # the rest of the median pass, so that the rows add up to the total (0 when the
    # leaves' medians exceed it: noise)
    other = max(total_ms - sum(r.ms for r in rows), 0.0)
    rows.append(ProfileRow(OTHER, "", 0, other, 0.0, other / total_ms if total_ms else 0.0, None, "", ""))
    return Profile(rows, total_ms, repeat)
