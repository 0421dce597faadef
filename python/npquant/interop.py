"""State dicts as plain NumPy arrays, and torch objects recognised where they do not belong.

``model.state_dict()`` of a quantized npquant model holds what PyTorch's holds, under
the same keys: arrays, ``QTensor`` weights, ``(weight, bias)`` tuples and the qint8
dtype. ``state_dict_to_numpy`` turns such a dict -- npquant's, or PyTorch's own, with
torch tensors, quantized tensors and dtypes -- into a flat ``{key: numpy.ndarray}``
that ``numpy.savez`` writes and ``numpy.load`` reads back without pickle and without
torch. ``load_state_dict`` accepts all three forms. The flat form (docs/interop.md):

- an array stays an array; ``None`` (a missing bias) is left out;
- a quantized tensor at key ``K`` becomes ``K`` (its integer codes: int8 for qint8,
  uint8 for quint8, in logical order) plus ``K.q_scale`` and ``K.q_zero_point``
  (per tensor) or ``K.q_per_channel_scales``, ``K.q_per_channel_zero_points`` and
  ``K.q_per_channel_axis`` (per channel);
- a tuple at ``K`` becomes ``K.0``, ``K.1``, ... (torch's
  ``_packed_params._packed_params`` is ``(weight, bias)``);
- a dtype (``_packed_params.dtype``) becomes a 0-d string array, e.g. ``"qint8"``.

This module never imports torch: torch objects are recognised by their type's module.
"""

from __future__ import annotations

import functools
import io
import re
from collections import OrderedDict
from typing import Any

import numpy as np

from ._dtypes import QDType
from .qtensor import QTensor

__all__ = [
    "state_dict_to_numpy",
    "torch_state_dict_to_numpy",
    "state_dict_from_numpy",
    "is_torch_object",
    "model_to_bytes",
    "model_from_bytes",
    "run_model_bytes",
]

_PER_TENSOR_KEYS = ("q_scale", "q_zero_point")
_PER_CHANNEL_KEYS = ("q_per_channel_scales", "q_per_channel_zero_points", "q_per_channel_axis")
_QPARAM_SUFFIXES = tuple("." + k for k in _PER_TENSOR_KEYS + _PER_CHANNEL_KEYS)
_STORAGE_QDTYPE = {np.dtype(np.int8): "qint8", np.dtype(np.uint8): "quint8", np.dtype(np.int32): "qint32"}
_INDEX = re.compile(r"^(.*)\.(\d+)$")


def is_torch_object(obj) -> bool:
    """True for instances of torch classes (tensors, dtypes, QConfigs, observers, modules)
    and for torch classes themselves, judged by the module each class in the MRO comes
    from: torch is never imported here."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__ == "torch" or c.__module__.startswith("torch.") for c in cls.__mro__)


def _torch_dtype_name(v) -> str | None:
    s = str(v)
    return s[len("torch.") :] if is_torch_object(v) and s.startswith("torch.") else None


def _torch_qtensor(t, key: str) -> QTensor:
    """An npquant QTensor from a torch quantized tensor (duck-typed)."""
    name = _torch_dtype_name(t.dtype)
    codes = t.int_repr().detach().cpu().numpy()
    scheme = str(t.qscheme())
    if scheme in ("torch.per_tensor_affine", "torch.per_tensor_symmetric"):
        return QTensor(codes, t.q_scale(), t.q_zero_point(), name)
    if scheme in ("torch.per_channel_affine", "torch.per_channel_symmetric"):
        return QTensor(
            codes,
            t.q_per_channel_scales().cpu().numpy(),
            t.q_per_channel_zero_points().cpu().numpy(),
            name,
            axis=int(t.q_per_channel_axis()),
        )
    if scheme == "torch.per_channel_affine_float_qparams":  # weight-only embeddings
        return _torch_rowwise(t, name)
    raise ValueError(
        f"state dict entry {key!r}: quantized tensors with qscheme {scheme} are not supported "
        "(npquant reads per-tensor and per-channel affine)"
    )


def _torch_rowwise(t, name):
    """An npquant RowwiseQTensor from torch's per_channel_affine_float_qparams tensor
    (quint4x2 codes come packed two per byte, low nibble first)."""
    from .nn.quantized.embedding_ops import RowwiseQTensor

    rows, dim = (int(d) for d in t.shape)
    codes = t.int_repr().detach().cpu().numpy().astype(np.uint8)
    if name == "quint4x2":
        packed = codes.reshape(rows, -1)
        codes = np.stack([packed & 15, packed >> 4], axis=-1).reshape(rows, -1)[:, :dim]
    return RowwiseQTensor(
        codes, t.q_per_channel_scales().cpu().numpy(), t.q_per_channel_zero_points().cpu().numpy(), name
    )


def _torch_script_state(v) -> tuple | None:
    """(state, class name) of a TorchScript object's __getstate__(), or None."""
    try:
        state = v.__getstate__()
    except Exception:  # noqa: BLE001  (anything torch raises: not a script object we read)
        return None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], str):
        return state
    return None


def _torch_script_object(v, key: str) -> tuple | None:
    """The TorchScript objects of torch's dynamic quantized recurrent modules, read through
    what they expose (``__getstate__``; torch is never imported):

    - ``quantized.LinearPackedParamsBase`` (a cell's ``_packed_weight_ih``, and inside the
      next) -> ``(weight, bias)``: an int8 QTensor, or float32 array for float16 layers;
    - ``rnn.CellParamsBase`` (a dynamic LSTM / GRU's ``_all_weight_values.{k}.param``) ->
      ``(kind, w_ih, b_ih, w_hh, b_hh)``, kind ``'quantized_dynamic'`` (int8) or
      ``'quantized_fp16'``.

    None for other objects."""
    state = _torch_script_state(v)
    if state is None:
        return None
    inner, cls = state
    if cls.endswith(".LinearPackedParamsBase") and isinstance(inner, tuple) and len(inner) == 2:
        return (_to_native(inner[0], f"{key}.0"), _to_native(inner[1], f"{key}.1"))
    if cls.endswith(".CellParamsBase") and isinstance(inner, tuple) and len(inner) == 5:
        kind, packed = inner[0], inner[4]
        if kind not in ("quantized_dynamic", "quantized_fp16"):
            raise TypeError(
                f"state dict entry {key!r} holds torch's {kind!r} recurrent cell parameters; npquant "
                "reads dynamic int8 ('quantized_dynamic') and float16 ('quantized_fp16') ones"
            )
        if not (isinstance(packed, (list, tuple)) and len(packed) == 2):
            raise TypeError(f"state dict entry {key!r}: torch's cell parameters lack the two packed weights")
        pairs = [_torch_script_object(p, f"{key}.{name}") for p, name in zip(packed, ("ih", "hh"))]
        if any(p is None for p in pairs):
            raise TypeError(f"state dict entry {key!r}: torch's cell parameters hold unreadable packed weights")
        (w_ih, b_ih), (w_hh, b_hh) = pairs  # type: ignore[misc]
        return (kind, w_ih, b_ih, w_hh, b_hh)
    return None


def _to_native(v, key: str):
    """One state dict value as npquant holds it: ndarray, QTensor, tuple, str or None."""
    if v is None or isinstance(v, (QTensor, str)):
        return v
    from .nn.quantized.embedding_ops import RowwiseQTensor

    if isinstance(v, RowwiseQTensor):
        return v
    if isinstance(v, QDType):
        return v.name
    if isinstance(v, (tuple, list)):
        return tuple(_to_native(x, f"{key}.{i}") for i, x in enumerate(v))
    if isinstance(v, np.ndarray):
        return v
    if is_torch_object(v):
        name = _torch_dtype_name(v)
        if name is not None and not hasattr(v, "shape"):  # torch.qint8 and friends
            return name
        if getattr(v, "is_quantized", False):
            return _torch_qtensor(v, key)
        if hasattr(v, "detach") and hasattr(v, "numpy"):
            return v.detach().cpu().numpy()
        packed = _torch_script_object(v, key)
        if packed is not None:
            return packed
        raise TypeError(
            f"state dict entry {key!r} is a {type(v).__module__}.{type(v).__name__}, which npquant "
            "cannot read; torch's state_dict() of a converted model holds tensors, quantized "
            "tensors, dtypes and (weight, bias) tuples"
        )
    if isinstance(v, (bool, int, float, np.generic)):
        return np.asarray(v)
    if hasattr(v, "__array__") and not isinstance(v, (dict, set)):
        return np.asarray(v)
    raise TypeError(
        f"state dict entry {key!r} is a {type(v).__name__}; state dicts hold arrays, "
        "QTensors, (weight, bias) tuples and dtype names"
    )


def _flatten(key: str, v, out: dict) -> None:
    v = _to_native(v, key)
    if v is None:
        return
    if isinstance(v, QTensor):
        out[key] = np.ascontiguousarray(v.int_repr())
        if v.qscheme() == "per_tensor_affine":
            out[key + ".q_scale"] = np.array(v.q_scale(), np.float64)
            out[key + ".q_zero_point"] = np.array(v.q_zero_point(), np.int64)
        else:
            out[key + ".q_per_channel_scales"] = np.asarray(v.q_per_channel_scales(), np.float64)
            out[key + ".q_per_channel_zero_points"] = np.asarray(v.q_per_channel_zero_points(), np.int64)
            out[key + ".q_per_channel_axis"] = np.array(v.q_per_channel_axis(), np.int64)
    elif isinstance(v, tuple):
        for i, x in enumerate(v):
            _flatten(f"{key}.{i}", x, out)
    elif isinstance(v, str):
        out[key] = np.array(v)
    else:
        out[key] = v


def state_dict_to_numpy(state_dict) -> OrderedDict[str, np.ndarray]:
    """A state dict (npquant's, or PyTorch's with torch tensors, quantized tensors and
    dtypes) as a flat ``{key: numpy.ndarray}`` in the layout this module documents:
    ``numpy.savez(path, **state_dict_to_numpy(sd))`` writes a file that
    ``model.load_state_dict(numpy.load(path))`` reads with neither torch nor pickle."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict_to_numpy expects a dict (model.state_dict()), got {type(state_dict).__name__}")
    out: OrderedDict = OrderedDict()
    for key, v in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state dict keys are strings, got {key!r}")
        _flatten(key, v, out)
    return out


torch_state_dict_to_numpy = state_dict_to_numpy
torch_state_dict_to_numpy.__doc__ = state_dict_to_numpy.__doc__


def _qtensor_from_flat(key: str, flat: dict, used: set) -> QTensor:
    codes = np.asarray(flat[key])
    name = _STORAGE_QDTYPE.get(codes.dtype)
    if name is None:
        raise TypeError(
            f"state dict entry {key!r} holds quantized codes of dtype {codes.dtype}; "
            "expected int8 (qint8), uint8 (quint8) or int32 (qint32)"
        )
    per_channel = key + ".q_per_channel_scales" in flat
    need = _PER_CHANNEL_KEYS if per_channel else _PER_TENSOR_KEYS
    absent = [f"{key}.{s}" for s in need if f"{key}.{s}" not in flat]
    if absent:
        raise KeyError(f"state dict entry {key!r} is a quantized tensor but {absent} are missing")
    vals = {s: np.asarray(flat[f"{key}.{s}"]) for s in need}
    used.update([key] + [f"{key}.{s}" for s in need])
    for s in need[1:]:  # zero points (and the axis): whole numbers, never a silent cast
        v = vals[s]
        if v.dtype.kind not in "iuf" or (
            v.dtype.kind == "f" and not np.all(np.isfinite(v) & (v == np.round(v)) & (np.abs(v) < 2**31))
        ):
            raise ValueError(f"state dict entry '{key}.{s}' must hold integers, got {v.dtype} {v!r}")
    try:
        if per_channel:
            axis = vals["q_per_channel_axis"]
            if axis.size != 1 or axis.dtype.kind not in "iu":
                raise ValueError(f"q_per_channel_axis must be one integer, got {axis!r}")
            return QTensor(
                codes,
                vals["q_per_channel_scales"],
                vals["q_per_channel_zero_points"],
                name,
                axis=int(axis.reshape(-1)[0]),
            )
        sc, zp = vals["q_scale"], vals["q_zero_point"]
        if sc.size != 1 or zp.size != 1:
            raise ValueError(f"q_scale and q_zero_point must hold one value each, got shapes {sc.shape} and {zp.shape}")
        return QTensor(codes, float(sc.reshape(-1)[0]), zp.reshape(-1)[0], name)
    except (TypeError, ValueError) as e:
        raise type(e)(f"state dict entry {key!r}: {e}") from None


def state_dict_from_numpy(flat) -> OrderedDict:
    """The inverse of ``state_dict_to_numpy``: QTensors and tuples rebuilt from the flat
    keys; anything already in npquant's or torch's form passes through (torch objects
    become NumPy arrays and QTensors). ``load_state_dict`` calls it on what it is given."""
    if not hasattr(flat, "keys") or not hasattr(flat, "__getitem__"):
        raise TypeError(
            f"load_state_dict expects a dict of arrays (model.state_dict(), or numpy.load('x.npz')), "
            f"got {type(flat).__name__}"
        )
    keys = list(flat.keys())
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(f"state dict keys are strings, got {k!r}")
    values = {k: flat[k] for k in keys}  # reads every array of an NpzFile once
    used: set = set()
    native: OrderedDict = OrderedDict()
    for k in keys:
        if k in used:
            continue
        if k.endswith(_QPARAM_SUFFIXES):
            base = k.rsplit(".", 1)[0]
            if base not in values:
                raise KeyError(f"state dict entry {k!r} has no quantized codes under {base!r}")
            continue  # handled with its base key
        if k + ".q_scale" in values or k + ".q_per_channel_scales" in values:
            native[k] = _qtensor_from_flat(k, values, used)
        else:
            native[k] = _to_native(values[k], k)
            if isinstance(native[k], np.ndarray) and native[k].dtype.kind == "U" and native[k].ndim == 0:
                native[k] = str(native[k])
    # K.0, K.1, ... -> the tuple at K (a missing trailing element, a None bias, is None)
    groups: OrderedDict = OrderedDict()
    for k in list(native):
        m = _INDEX.match(k)
        if m and m.group(1) not in native:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = native.pop(k)
    for base, items in groups.items():
        native[base] = tuple(items.get(i) for i in range(max(items) + 1))
    return native


def qdtype_name(v) -> str | None:
    """'qint8' for npquant.qint8, torch.qint8 or the string 'qint8'; None if not a dtype."""
    if isinstance(v, QDType):
        return v.name
    if isinstance(v, str):
        return v[len("torch.") :] if v.startswith("torch.") else v
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind == "U":
        return qdtype_name(str(v))
    return _torch_dtype_name(v)


# ------------------------------------------------------------------ models as bytes (distributed engines)
def model_to_bytes(model: Any) -> bytes:
    """``npquant.save(model)`` as bytes: what a distributed engine (Dask, Ray, Spark)
    ships to its workers instead of a pickled model. The bytes hold arrays and a JSON
    manifest, never code; ``model_from_bytes`` reads them back (docs/file-format.md)."""
    from .serialization import save

    buf = io.BytesIO()
    save(model, buf)
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def _cached_model(blob: bytes) -> Any:
    return model_from_bytes(blob)


def model_from_bytes(blob: bytes) -> Any:
    """The model ``model_to_bytes`` wrote (``npquant.load`` of the bytes: nothing in them is
    executed or imported; weights are packed for this CPU)."""
    from .serialization import load

    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"model_from_bytes expects the bytes model_to_bytes returned, got {type(blob).__name__}")
    return load(io.BytesIO(bytes(blob)))


def run_model_bytes(x: Any, blob: bytes) -> Any:
    """``model(x)`` for the model in ``blob`` (``model_to_bytes``): the function a worker maps
    over a dataset's partitions, e.g. ``dask_array.map_blocks(run_model_bytes, blob, ...)``.
    The model is loaded once per process and kept (the last 4 distinct blobs)."""
    if isinstance(blob, (bytearray, memoryview)):
        blob = bytes(blob)
    if not isinstance(blob, bytes):
        raise TypeError(f"run_model_bytes expects the bytes model_to_bytes returned, got {type(blob).__name__}")
    return _cached_model(blob)(x)
