"""``npquant.save`` / ``npquant.load``: models as a zip of .npy arrays plus a JSON manifest.

The format is documented in docs/file-format.md. In short: ``manifest.json``
describes the module tree (type names from a fixed registry, plain attributes,
parameters, buffers, quantized weights) and every array is a separate
``arrays/<n>.npy`` entry. Loading never unpickles and never imports anything
named by the file: types are looked up in the registry below, arrays are
parsed from their .npy header with an allow-list of dtypes.

Quantized layers are saved through PyTorch's ``weight()`` / ``bias()`` /
``set_weight_bias()`` protocol: the file holds their plain int8 weights and
float bias, and loading calls ``set_weight_bias``, which packs the weights for
the kernel of the CPU that loads the file.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import struct
import sys
import tempfile
import zipfile
import zlib
from typing import NoReturn

import numpy as np

from ._dtypes import QDType, as_qdtype
from .nn.module import Module
from .qtensor import QTensor

__all__ = ["save", "load", "ModelFileError", "supported_module_types", "FORMAT_VERSION"]

FORMAT_NAME = "npquant-model"
# Bump on any change a previous loader would misread; keep reading older versions.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# The registry of savable module types: every npquant.nn.Module subclass exported
# by these namespaces, named "<namespace>.<ClassName>" in files. A type is found
# by that name on load, never by importing a path written in the file.
_NAMESPACES = ("nn", "nn.intrinsic", "nn.quantized", "nn.quantized.dynamic", "models", "report")

# Attributes never written as such: the Module machinery (whatever Module.__init__
# sets up: children, parameters, buffers, hook tables, the training flag), which
# has its own manifest entries, and qconfig (prepare-time configuration, not
# model state).
_NOT_SAVED = frozenset({"qconfig"})
# Attributes named _cache_* hold values a module derives from its other state
# (constants kept between calls): never written, rebuilt on first use.
_CACHE_PREFIX = "_cache_"


def _machinery() -> frozenset:
    return frozenset(vars(Module()))


# dtypes an array in a model file may have. Anything else (object arrays above all)
# is refused before its data is read.
_ARRAY_DTYPES = frozenset(
    np.dtype(t).str
    for t in (np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_)
)


class ModelFileError(ValueError):
    """The file is not a model npquant can load (corrupt, truncated, wrong version,
    unknown module type) or the model holds something npquant cannot save."""


# --------------------------------------------------------------------------- registry


def _is_native(v) -> bool:
    return type(v).__module__ == "npquant._C"


def _is_packed(v) -> bool:
    """Weights packed for one CPU's kernel: a native npquant._C object, or an object
    holding one (PackedLinearParams, ...). Never written; set_weight_bias rebuilds
    them on load from weight() and bias()."""
    if _is_native(v):
        return True
    if isinstance(v, (str, bytes, int, float, np.ndarray, QTensor, list, tuple, dict)) or v is None:
        return False
    names = list(getattr(v, "__dict__", {}))
    for cls in type(v).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return any(_is_native(getattr(v, n, None)) for n in names)


def supported_module_types() -> dict:
    """{file type name: class} for every module type ``npquant.save`` writes and
    ``npquant.load`` reads (besides ``custom_modules`` passed to load)."""
    types: dict = {}
    for ns in _NAMESPACES:
        try:
            mod = importlib.import_module(f"npquant.{ns}")
        except ModuleNotFoundError as e:
            if e.name != f"npquant.{ns}":
                raise
            continue  # a namespace this build does not have
        for attr in getattr(mod, "__all__", dir(mod)):
            obj = getattr(mod, attr, None)
            if isinstance(obj, type) and issubclass(obj, Module) and obj not in types.values():
                types[f"{ns}.{attr}"] = obj
    return types


def _type_name(cls, registry: dict) -> tuple:
    """(name, custom) for a class: its registry name, or its __qualname__ for a
    user-defined class (which load needs passed in custom_modules)."""
    for name, c in registry.items():
        if c is cls:
            return name, False
    if cls.__module__.split(".")[0] == "npquant":
        raise ModelFileError(
            f"npquant.save does not support {cls.__module__}.{cls.__qualname__}; save a float "
            "model, or a converted one (prepare()d models hold observers: call convert() first)"
        )
    return cls.__qualname__, True


def _helper_class(cls) -> bool:
    """Plain helper objects of npquant.nn modules (e.g. pooling geometry): classes
    defined in an npquant.nn module, not Modules, holding their state in __dict__.
    Saved as their attributes; rebuilt without calling __init__."""
    return (
        isinstance(cls, type)
        and cls.__module__.startswith("npquant.nn.")
        and not issubclass(cls, (Module, BaseException))
        and "." not in cls.__qualname__
        and "__dict__" in getattr(cls, "__dict__", {})
        and "__slots__" not in cls.__dict__
    )


def _find_helper_class(path: str):
    """The helper class named ``module.Class``, looked up among npquant.nn modules
    already imported (nothing is imported because a file names it)."""
    modname, _, clsname = path.rpartition(".")
    mod = sys.modules.get(modname) if modname.startswith("npquant.nn.") else None
    cls = getattr(mod, clsname, None) if mod is not None else None
    return cls if cls is not None and cls.__module__ == modname and _helper_class(cls) else None


# --------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self):
        self.arrays: list = []

    def array(self, a: np.ndarray) -> dict:
        a = np.asarray(a)
        if a.dtype.str not in _ARRAY_DTYPES:
            raise ModelFileError(f"arrays of dtype {a.dtype} cannot be saved")
        self.arrays.append(np.ascontiguousarray(a))
        return {"$array": len(self.arrays) - 1}

    def value(self, v, where: str):
        """A JSON value for an attribute; tagged objects for everything JSON lacks."""
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, np.integer):
            return v
        if isinstance(v, float):
            return v if np.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            return {"$scalar": np.dtype(type(v)).str, "value": self.value(v.item(), where)}
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, QDType):
            return {"$qdtype": v.name}
        if isinstance(v, QTensor):
            return self.qtensor(v)
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x, where) for x in v]}
        if isinstance(v, list):
            return [self.value(x, where) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"$dict": {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}}
        if _helper_class(type(v)):
            return {
                "$object": f"{type(v).__module__}.{type(v).__qualname__}",
                "state": {k: self.value(x, f"{where}.{k}") for k, x in vars(v).items()},
            }
        raise ModelFileError(
            f"cannot save {where}: values of type {type(v).__name__} are not "
            "part of npquant's file format (docs/file-format.md)"
        )

    def qtensor(self, t: QTensor) -> dict:
        out: dict[str, object] = {"$qtensor": t.dtype.name, "int_repr": self.array(t.int_repr())}
        if t.qscheme() == "per_tensor_affine":
            out.update(scale=t.q_scale(), zero_point=t.q_zero_point(), axis=None)
        else:
            out.update(
                scale=self.array(t.q_per_channel_scales()),
                zero_point=self.array(t.q_per_channel_zero_points()),
                axis=t.q_per_channel_axis(),
            )
        return out

    def module(self, m, path: str, registry: dict, seen: dict) -> dict:
        if id(m) in seen:
            raise ModelFileError(
                f"module at '{path or '<root>'}' is the same object as at "
                f"'{seen[id(m)] or '<root>'}'; shared submodules cannot be saved"
            )
        seen[id(m)] = path
        type_name, custom = _type_name(type(m), registry)
        where = path or "<root>"
        node = {"type": type_name, "training": bool(m.training)}
        if custom:
            node["custom"] = True
        attrs, machinery = {}, _machinery()
        has_packed = any(_is_packed(v) for v in vars(m).values())
        if has_packed and not callable(getattr(m, "set_weight_bias", None)):
            raise ModelFileError(
                f"cannot save {where}: it holds packed weights but has no "
                "weight()/bias()/set_weight_bias() to save them through"
            )
        # set_weight_bias sets these again on load: the weight and bias objects
        # themselves are written once, under weight_bias.
        derived = {id(m.weight()), id(m.bias())} if has_packed else set()
        derived.discard(id(None))
        for name, v in vars(m).items():
            if name in machinery and name not in ("_modules", "_parameters", "_buffers", "training") and v:
                raise ModelFileError(
                    f"cannot save {where}: it has forward hooks ({name}), which are "
                    "functions; a prepare()d model's observers are: convert() it first, "
                    "or remove your hooks"
                )
            if name in machinery or name in _NOT_SAVED or name.startswith(_CACHE_PREFIX) or name in m._modules:
                continue  # (children: the mirror of _modules, saved below)
            if _is_packed(v) or id(v) in derived:
                continue
            attrs[name] = self.value(v, f"{where}.{name}")
        node["attributes"] = attrs
        node["parameters"] = {k: None if p is None else self.array(p) for k, p in m._parameters.items()}
        node["buffers"] = {k: self.value(b, f"{where}.{k}") for k, b in m._buffers.items()}
        if has_packed:
            node["weight_bias"] = {
                "weight": self.value(m.weight(), f"{where}.weight()"),
                "bias": self.value(m.bias(), f"{where}.bias()"),
            }
        node["children"] = [
            [name, None if c is None else self.module(c, f"{path}.{name}" if path else name, registry, seen)]
            for name, c in m._modules.items()
        ]
        return node


def save(model, path) -> None:
    """Writes ``model`` (an npquant.nn.Module, float or quantized) to ``path``.

    The file is a zip: ``manifest.json`` plus one ``.npy`` per array, plain int8
    weights (never packed bytes), no pickle. See docs/file-format.md. User-defined
    Module subclasses are saved by class name; pass them to ``load`` in
    ``custom_modules``. ``qconfig`` attributes are not saved.
    """
    if not isinstance(model, Module):
        raise TypeError(f"npquant.save expects an npquant.nn.Module, got {type(model).__name__}")
    w = _Writer()
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "root": w.module(model, "", supported_module_types(), {}),
    }
    from . import __version__

    manifest["npquant_version"] = __version__
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                _write_zip(f, manifest, w.arrays)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    else:
        _write_zip(path, manifest, w.arrays)


def _write_zip(f, manifest: dict, arrays: list) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
        for i, a in enumerate(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            zf.writestr(f"arrays/{i}.npy", buf.getvalue())


# --------------------------------------------------------------------------- reading


def _fail(msg: str) -> NoReturn:
    raise ModelFileError(msg)


def _expect(cond, msg: str) -> None:
    if not cond:
        _fail(msg)


def _parse_npy(data: bytes, name: str) -> np.ndarray:
    """An array from .npy bytes, checking dtype and size before touching the data."""
    f = io.BytesIO(data)
    major, _ = np.lib.format.read_magic(f)
    read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
    if read_header is None:
        _fail(f"{name}: unsupported .npy version {major}")
    shape, fortran, dtype = read_header(f)
    _expect(
        dtype.str in _ARRAY_DTYPES and dtype.fields is None and dtype.subdtype is None,
        f"{name}: arrays of dtype {dtype} are not allowed in npquant model files",
    )
    count = 1
    for d in shape:
        count *= d
    _expect(
        len(data) - f.tell() == count * dtype.itemsize,
        f"{name}: header says shape {shape} ({count * dtype.itemsize} bytes) but the entry "
        f"holds {len(data) - f.tell()} bytes of data",
    )
    a = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return a.reshape(shape, order="F" if fortran else "C").copy(order="C")


# Decompression-bomb guard: an entry is read into memory whole, and its size in the
# zip directory bounds that. Real manifests are kilobytes; real arrays compress by a
# few x at most (int8 weights), so a big entry claiming a huge ratio is refused.
_MAX_MANIFEST_BYTES = 64 << 20
_BIG_ENTRY_BYTES = 16 << 20
_MAX_RATIO = 200


def _read_entry(zf: zipfile.ZipFile, name: str) -> bytes:
    info = zf.getinfo(name)
    _expect(
        name != MANIFEST or info.file_size <= _MAX_MANIFEST_BYTES,
        f"{name} claims {info.file_size} bytes; a manifest is far smaller",
    )
    _expect(
        info.file_size <= _BIG_ENTRY_BYTES or info.file_size <= _MAX_RATIO * max(info.compress_size, 1),
        f"{name} claims to expand {info.compress_size} bytes to {info.file_size}: refused "
        "(a decompression bomb, or a corrupt file)",
    )
    return zf.read(name)


class _Reader:
    def __init__(self, zf: zipfile.ZipFile, registry: dict, custom: dict):
        self.zf = zf
        self.names = set(zf.namelist())
        self.registry = registry
        self.custom = custom
        self.cache: dict = {}

    def array(self, idx) -> np.ndarray:
        _expect(isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0, f"bad array reference {idx!r}")
        if idx not in self.cache:
            name = f"arrays/{idx}.npy"
            _expect(name in self.names, f"the manifest refers to {name}, which the file lacks")
            self.cache[idx] = _parse_npy(_read_entry(self.zf, name), name)
        return self.cache[idx]

    def value(self, v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x) for x in v]
        _expect(isinstance(v, dict), f"unexpected value {v!r}")
        if "$array" in v:
            return self.array(v["$array"])
        if "$float" in v:
            _expect(v["$float"] in ("inf", "-inf", "nan"), f"bad float {v!r}")
            return float(v["$float"])
        if "$scalar" in v:
            dt = v["$scalar"]
            _expect(isinstance(dt, str) and dt in _ARRAY_DTYPES, f"bad scalar dtype {dt!r}")
            return np.dtype(dt).type(self.value(v.get("value")))
        if "$qdtype" in v:
            return as_qdtype(v["$qdtype"])
        if "$qtensor" in v:
            return self.qtensor(v)
        if "$tuple" in v:
            _expect(isinstance(v["$tuple"], list), f"bad tuple {v!r}")
            return tuple(self.value(x) for x in v["$tuple"])
        if "$dict" in v:
            _expect(isinstance(v["$dict"], dict), f"bad dict {v!r}")
            return {k: self.value(x) for k, x in v["$dict"].items()}
        if "$object" in v:
            return self.helper(v)
        _fail(f"unknown value tag in {sorted(v)!r}")

    def helper(self, v: dict):
        cls = _find_helper_class(v["$object"]) if isinstance(v["$object"], str) else None
        if cls is None:
            _fail(f"unknown object type {v['$object']!r}")
        state = v.get("state")
        if not (
            isinstance(state, dict)
            and all(isinstance(k, str) and k.isidentifier() and not k.startswith("__") for k in state)
        ):
            _fail(f"bad state for {v['$object']}")
        obj = cls.__new__(cls)
        for k, x in state.items():
            object.__setattr__(obj, k, self.value(x))
        return obj

    def qtensor(self, v: dict) -> QTensor:
        dtype = as_qdtype(v["$qtensor"])
        q = self.value(v.get("int_repr"))
        _expect(isinstance(q, np.ndarray), "QTensor without int_repr array")
        axis = v.get("axis")
        scale, zp = self.value(v.get("scale")), self.value(v.get("zero_point"))
        return QTensor(q, scale, zp, dtype, axis=axis)

    def module(self, node, path: str):
        where = path or "<root>"
        _expect(isinstance(node, dict) and isinstance(node.get("type"), str), f"module entry at '{where}' has no type")
        cls = self._class(node, where)
        machinery = _machinery()
        m = cls.__new__(cls)
        Module.__init__(m)
        attrs = node.get("attributes", {})
        _expect(isinstance(attrs, dict), f"'{where}': attributes must be an object")
        for name, v in attrs.items():
            _expect(
                isinstance(name, str) and name.isidentifier() and not name.startswith("__") and name not in machinery,
                f"'{where}': bad attribute name {name!r}",
            )
            object.__setattr__(m, name, self.value(v))
        object.__setattr__(m, "training", bool(node.get("training", False)))
        for store, key in (("_parameters", "parameters"), ("_buffers", "buffers")):
            entries = node.get(key, {})
            _expect(isinstance(entries, dict), f"'{where}': {key} must be an object")
            for name, v in entries.items():
                val = self.value(v)
                if store == "_parameters":
                    m.register_parameter(name, val)
                else:
                    m.register_buffer(name, val)
        if "weight_bias" in node:
            wb = node["weight_bias"]
            _expect(
                isinstance(wb, dict) and hasattr(m, "set_weight_bias"),
                f"'{where}': weight_bias given for a {node['type']} without set_weight_bias",
            )
            m.set_weight_bias(self.value(wb.get("weight")), self.value(wb.get("bias")))
        children = node.get("children", [])
        _expect(isinstance(children, list), f"'{where}': children must be a list")
        for entry in children:
            _expect(
                isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str), f"'{where}': bad child entry"
            )
            name, sub = entry
            child = None if sub is None else self.module(sub, f"{path}.{name}" if path else name)
            m.add_module(name, child)
        return m

    def _class(self, node: dict, where: str):
        name = node["type"]
        if node.get("custom"):
            cls = self.custom.get(name)
            _expect(
                cls is not None,
                f"'{where}' is a user-defined module '{name}'; load it with "
                f"npquant.load(path, custom_modules={{'{name}': {name}}})",
            )
            return cls
        cls = self.registry.get(name)
        _expect(
            cls is not None,
            f"'{where}' has module type '{name}', which this npquant does not "
            f"know (supported: {', '.join(sorted(self.registry))})",
        )
        return cls


# Exceptions a damaged file can raise while being parsed; load turns them into
# ModelFileError so callers need to catch one type.
_PARSE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    struct.error,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,
    UnicodeDecodeError,
    NotImplementedError,
    MemoryError,
)


def load(path, custom_modules: dict | None = None):
    """Reads a model written by ``npquant.save``; quantized weights are packed for this CPU.

    ``custom_modules``: {class name: class} for user-defined Module subclasses in
    the file. A corrupt, truncated, wrong-version or unknown-type file raises
    ``npquant.ModelFileError``; nothing in the file is executed or imported.
    """
    custom = dict(custom_modules or {})
    for k, c in custom.items():
        if not (isinstance(c, type) and issubclass(c, Module)):
            raise TypeError(f"custom_modules[{k!r}] must be an npquant.nn.Module subclass, got {c!r}")
    src = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    label = src if isinstance(src, str) else "<file object>"
    try:
        with zipfile.ZipFile(src, "r") as zf:
            return _load_zip(zf, custom)
    except ModelFileError as e:
        raise ModelFileError(f"{label}: {e}") from None
    except FileNotFoundError:
        raise
    except _PARSE_ERRORS as e:
        raise ModelFileError(f"{label} is not a valid npquant model file ({type(e).__name__}: {e})") from e


def _load_zip(zf: zipfile.ZipFile, custom: dict):
    _expect(MANIFEST in zf.namelist(), f"no {MANIFEST}: not a file written by npquant.save")
    manifest = json.loads(_read_entry(zf, MANIFEST).decode("utf-8"))
    _expect(
        isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME,
        f"{MANIFEST} does not describe an npquant model (format must be '{FORMAT_NAME}')",
    )
    version = manifest.get("version")
    _expect(isinstance(version, int) and not isinstance(version, bool), "the manifest has no format version")
    _expect(
        version <= FORMAT_VERSION,
        f"format version {version} was written by a newer npquant "
        f"({manifest.get('npquant_version', '?')}); this one reads up to version {FORMAT_VERSION}: upgrade npquant",
    )
    _expect(version >= 1, f"format version {version} does not exist")
    return _Reader(zf, supported_module_types(), custom).module(manifest.get("root"), "")
