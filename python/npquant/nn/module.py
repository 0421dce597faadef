"""A small NumPy module system shaped like torch.nn.Module."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import numpy as np

__all__ = ["Module"]

_M = TypeVar("_M", bound="Module")


class Module:
    """Base class: children and parameters are found by attribute assignment.

    Subclass it as in PyTorch: call ``super().__init__()``, assign submodules
    and arrays as attributes, define ``forward``. Parameters are float32
    arrays registered with ``register_parameter`` (Linear's weight and bias)
    and buffers with ``register_buffer``; both appear in ``state_dict`` under
    PyTorch's key names.
    """

    # Set in __init__ (object.__setattr__, around Module.__setattr__). Values: Module or
    # None; float32 array or None; array (or None). Typed Any because the layers read
    # their own entries by name, knowing what they stored.
    # Every _modules entry is mirrored in the instance __dict__, so that a forward's
    # `self.conv` is found by the interpreter's own lookup, with no __getattr__ call
    # (GoogLeNet makes 238 such lookups a forward). Change children only through
    # setattr / delattr / add_module, which keep the two in step.
    _modules: OrderedDict[str, Any]
    _parameters: OrderedDict[str, Any]
    _buffers: OrderedDict[str, Any]
    _forward_pre_hooks: OrderedDict[int, Callable[..., Any]]
    _forward_hooks: OrderedDict[int, Callable[..., Any]]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- attribute plumbing
    def __setattr__(self, name: str, value: Any) -> None:
        if "_modules" not in self.__dict__:
            raise RuntimeError(
                f"cannot assign '{name}' before Module.__init__(); call super().__init__() first "
                "in your module's __init__"
            )
        if isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
            self.__dict__[name] = value  # the mirror (see _modules above)
            return
        if name == "qconfig" and value is not None:
            from ..qconfig import check_qconfig

            check_qconfig(value, f"{type(self).__name__}.qconfig")
        if name in self._modules:
            if value is None:
                self._modules[name] = self.__dict__[name] = None
                return
            del self._modules[name]
            self.__dict__.pop(name, None)
        if name in self._parameters:
            self._parameters[name] = None if value is None else _as_param(value, name)
            return
        if name in self._buffers:
            self._buffers[name] = value
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Runs on every access to a parameter or buffer (submodules are found in __dict__,
        # see _modules above): three dict probes, no loop.
        d = self.__dict__
        try:
            params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        except KeyError:  # before Module.__init__ has made the stores
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'") from None
        if name in params:
            return params[name]
        if name in buffers:
            return buffers[name]
        if name in modules:
            return modules[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                if store is self._modules:
                    self.__dict__.pop(name, None)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, value: Any) -> None:
        self.__dict__.pop(name, None)
        self._parameters[name] = None if value is None else _as_param(value, name)

    def register_buffer(self, name: str, value: Any) -> None:
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_module(self, name: str, module: Module | None) -> None:
        self.add_module(name, module)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module expects an npquant.nn.Module, got {type(module).__name__}")
        self._modules[name] = self.__dict__[name] = module

    # ---- traversal
    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_modules(self, prefix: str = "", memo: set[int] | None = None) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def get_submodule(self, target: str) -> Module:
        mod = self
        for part in target.split(".") if target else []:
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule '{part}' (in '{target}')")
            mod = child
        return mod

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None:
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[np.ndarray]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self) -> Iterator[Any]:
        for _, b in self.named_buffers():
            yield b

    def apply(self: _M, fn: Callable[[Module], object]) -> _M:
        """Calls fn on every submodule (children first), then on self, like torch."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes
    def train(self: _M, mode: bool = True) -> _M:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self: _M) -> _M:
        return self.train(False)

    # ---- state dict (PyTorch key names; values are numpy arrays)
    def _save_to_state_dict(self, dest: dict[str, Any], prefix: str) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                dest[prefix + name] = p
        for name, b in self._buffers.items():
            if b is not None:
                dest[prefix + name] = b

    def state_dict(self, prefix: str = "") -> OrderedDict[str, np.ndarray]:
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, m in self.named_modules():
            m._save_to_state_dict(out, f"{prefix}{mname}." if mname else prefix)
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Loads a state dict by PyTorch's key names: this model's own ``state_dict()``,
        PyTorch's (torch tensors, quantized tensors), or the flat NumPy form of
        ``npquant.interop.state_dict_to_numpy`` (e.g. ``numpy.load('model.npz')``).

        strict (default): every key the model has must be given and no other, else a
        KeyError names them; shapes and dtypes are checked (ValueError / TypeError
        naming the key). Nothing is changed unless everything loads. Returns
        ``(missing_keys, unexpected_keys)``, as torch does."""
        from ..interop import state_dict_from_numpy

        sd = state_dict_from_numpy(state_dict)
        for mname, m in self.named_modules():
            m._adapt_state_dict(sd, f"{mname}." if mname else "")
        own = [k for k, v in self.state_dict().items() if v is not None]
        own_set = set(own)
        given = {k for k, v in sd.items() if v is not None}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in sd if k in given and k not in own_set and not k.endswith("num_batches_tracked")]
        if strict and (missing or unexpected):
            raise KeyError(f"state dict mismatch: missing keys {missing}, unexpected keys {unexpected}")
        commits = []
        for mname, m in self.named_modules():
            commit = m._load_from_state_dict(sd, f"{mname}." if mname else "")
            if commit is not None:
                commits.append(commit)
        for commit in commits:  # everything validated: now change the model
            commit()
        return IncompatibleKeys(missing, unexpected)

    def _adapt_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Rewrites, in place, entries another library keeps under other keys than this
        module's own (torch's dynamic LSTM: ``_all_weight_values``), before the keys are
        matched. Nothing by default."""

    def _resizable(self, name: str) -> bool:
        """Whether buffer ``name`` may take another shape on load (per-channel observers)."""
        return False

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str) -> Callable[[], None] | None:
        """Checks this module's own entries (``prefix + name``) in ``state_dict`` (npquant's
        form: arrays, QTensors, tuples) and returns a function that stores them, or None.
        Quantized modules override it; absent keys are left alone (strictness is checked
        before, over the whole model)."""
        updates: list[tuple[dict[str, Any], str, np.ndarray]] = []
        for store in (self._parameters, self._buffers):
            for name, cur in store.items():
                key = prefix + name
                if cur is None or state_dict.get(key) is None:
                    continue  # a None parameter (no bias) has no key, as in torch
                val = state_dict[key]
                if not isinstance(val, np.ndarray):
                    raise TypeError(f"state dict entry '{key}' must be an array, got {type(val).__name__}")
                if np.shape(cur) != val.shape and not self._resizable(name):
                    raise ValueError(
                        f"shape mismatch for '{key}': model has {np.shape(cur)}, state dict has {val.shape}"
                    )
                if isinstance(cur, np.ndarray):
                    if val.dtype.kind not in "biuf" or (cur.dtype.kind == "f") != (val.dtype.kind == "f"):
                        raise TypeError(
                            f"dtype mismatch for '{key}': model has {cur.dtype}, state dict has {val.dtype}"
                        )
                    val = val.astype(cur.dtype, copy=False)
                updates.append((store, name, np.array(val, order="C")))  # a copy; keeps 0-d buffers 0-d
        if not updates:
            return None

        def commit() -> None:
            for store, name, val in updates:
                store[name] = val

        return commit

    # ---- call
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)  # the common case, kept cheap for small layers
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    # ---- hooks (as in torch: hook(module, args) before, hook(module, args, output) after;
    # a hook's non-None return value replaces the args / output)
    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        return RemovableHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        return RemovableHandle(self._forward_hooks, hook)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        kids = list(self.named_children())
        if not kids:
            return lines[0] + ")"
        for name, m in kids:
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class RemovableHandle:
    """Returned by register_forward_(pre_)hook; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict[int, Callable[..., Any]], hook: Callable[..., Any]) -> None:
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id
        self._hooks = hooks
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach()
    if hasattr(v, "cpu"):
        v = v.cpu()
    if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        v = v.numpy()
    return np.asarray(v)


def _as_param(value: Any, name: str) -> np.ndarray:
    arr = _to_numpy(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"parameter '{name}' must be a float array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
