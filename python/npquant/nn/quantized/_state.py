"""state_dict / load_state_dict of the quantized modules, with PyTorch's keys and layouts.

Each quantized module writes what its torch.ao.nn.quantized twin writes:

- output qparams: ``scale`` (float32) and ``zero_point`` (int64), 0-d (Quantize: shape (1,));
- Linear (static and dynamic): ``_packed_params.dtype`` (npquant.qint8) and
  ``_packed_params._packed_params`` = (int8 weight QTensor, float32 bias or None);
- Conv2d: ``weight`` (int8 QTensor) and ``bias`` (float32 or None);
- BatchNorm2d: ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.

Loading validates every entry first (KeyError / ValueError / TypeError naming the key)
and returns a function that stores them, so a failed load changes nothing.
"""

from __future__ import annotations

import numpy as np

from ..._dtypes import QDType, qint8, quint8
from ...qtensor import QTensor, _check_scale, _check_zp


def readonly(a):
    """A read-only view of an array the module also holds (its packed kernels use a
    copy), so that editing a state dict in place cannot silently desynchronise them."""
    if a is None:
        return None
    if isinstance(a, QTensor):
        if a._axis is None:
            return QTensor._trusted(readonly(a._q), a.q_scale(), a.q_zero_point(), a._dtype, a._nhwc)
        return QTensor(readonly(a._q), readonly(a._scale), readonly(a._zp), a._dtype, axis=a._axis)
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v


def save_qparams(dest, prefix: str, scale, zero_point, shape=()) -> None:
    dest[prefix + "scale"] = np.array(scale, np.float32).reshape(shape)
    dest[prefix + "zero_point"] = np.array(zero_point, np.int64).reshape(shape)


def _one(sd, key: str, kind: str):
    """The single number held at sd[key] (an array of one element), or None if absent."""
    v = sd.get(key)
    if v is None:
        return None
    if isinstance(v, (int, float, np.generic)):
        v = np.asarray(v)
    if not isinstance(v, np.ndarray):
        raise TypeError(f"state dict entry '{key}' must be an array of one number, got {type(v).__name__}")
    if v.size != 1:
        raise ValueError(f"state dict entry '{key}' must hold one number, got shape {v.shape}")
    if v.dtype.kind not in kind:
        raise TypeError(
            f"state dict entry '{key}' has dtype {v.dtype}; expected {'a float' if kind == 'f' else 'an integer'}"
        )
    return v.reshape(-1)[0]


def load_scale(sd, key: str, allow_none: bool = False):
    """(present, value): the float scale at key; NaN means 'no qparams' where allow_none."""
    v = _one(sd, key, "f")
    if v is None:
        return False, None
    if allow_none and np.isnan(v):
        return True, None
    try:
        return True, _check_scale(float(v))
    except ValueError as e:
        raise ValueError(f"state dict entry '{key}': {e}") from None


def load_zero_point(sd, key: str, dtype: QDType | None = quint8):
    """(present, value): the integer zero point at key, in dtype's range (dtype None:
    quint8's or qint8's, for layers whose dtype is their input's)."""
    v = _one(sd, key, "iuf")
    if v is None:
        return False, None
    try:
        if dtype is None:
            return True, _check_zp(v, quint8 if v >= 0 else qint8)
        return True, _check_zp(v, dtype)
    except ValueError as e:
        raise ValueError(f"state dict entry '{key}': {e}") from None


def load_qparams(sd, prefix: str, dtype: QDType | None = quint8, allow_none: bool = False) -> dict:
    """{'scale': ..., 'zero_point': ...} for the entries present."""
    out = {}
    has_s, s = load_scale(sd, prefix + "scale", allow_none)
    if has_s:
        out["scale"] = s
    if s is None and has_s:
        out["zero_point"] = None
        return out
    has_z, z = load_zero_point(sd, prefix + "zero_point", dtype)
    if has_z:
        out["zero_point"] = z
    return out


def load_vector(sd, key: str, n: int):
    """The float32 vector of length n at key, or None if absent."""
    v = sd.get(key)
    if v is None:
        return None
    if not isinstance(v, np.ndarray):
        raise TypeError(f"state dict entry '{key}' must be an array, got {type(v).__name__}")
    if v.shape != (n,):
        raise ValueError(f"shape mismatch for '{key}': model has ({n},), state dict has {v.shape}")
    if v.dtype.kind != "f":
        raise TypeError(f"state dict entry '{key}' must be a float array, got dtype {v.dtype}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"state dict entry '{key}' contains NaN or Inf")
    return np.array(v, np.float32)


def load_qweight(sd, key: str, shape: tuple):
    """The int8 weight QTensor at key, shape-checked, or None if absent."""
    w = sd.get(key)
    if w is None:
        return None
    if not isinstance(w, QTensor):
        hint = (
            " (int8 codes without their qparams: the flat form needs "
            f"'{key}.q_per_channel_scales' or '{key}.q_scale' beside it)"
            if isinstance(w, np.ndarray)
            else ""
        )
        raise TypeError(f"state dict entry '{key}' must be a quantized weight (QTensor), got {type(w).__name__}{hint}")
    if w.dtype is not qint8:
        raise TypeError(f"state dict entry '{key}': weights must be qint8, got {w.dtype}")
    if tuple(w.shape) != tuple(shape):
        raise ValueError(f"shape mismatch for '{key}': model has {tuple(shape)}, state dict has {tuple(w.shape)}")
    return w


def load_bias(sd, key: str, n: int):
    """(present, bias): the float32 bias at key (None if absent)."""
    if sd.get(key) is None:
        return False, None
    return True, load_vector(sd, key, n)


def load_packed_linear(sd, prefix: str, out_features: int, in_features: int, has_bias: bool):
    """(weight QTensor, bias) from ``_packed_params._packed_params`` (checking
    ``_packed_params.dtype``), or None when absent."""
    from ...interop import qdtype_name

    dkey = prefix + "_packed_params.dtype"
    if sd.get(dkey) is not None and qdtype_name(sd[dkey]) != "qint8":
        raise ValueError(
            f"state dict entry '{dkey}' is {sd[dkey]!r}: npquant's quantized Linear layers have "
            "qint8 weights (torch's float16 dynamic Linear has no npquant equivalent)"
        )
    key = prefix + "_packed_params._packed_params"
    pair = sd.get(key)
    if pair is None:
        return None
    if isinstance(pair, QTensor):
        pair = (pair,)
    if not isinstance(pair, tuple) or not 1 <= len(pair) <= 2:
        raise TypeError(f"state dict entry '{key}' must be a (weight, bias) tuple, got {type(pair).__name__}")
    w = load_qweight({key + ".0": pair[0]}, key + ".0", (out_features, in_features))
    if w is None:
        raise KeyError(f"state dict entry '{key}' has no weight")
    bias = pair[1] if len(pair) == 2 else None
    if (bias is None) == has_bias:
        raise ValueError(
            f"state dict entry '{key}' has {'no bias' if bias is None else 'a bias'} but the "
            f"module was built {'with' if has_bias else 'without'} one"
        )
    if bias is not None:
        bias = load_vector({key + ".1": bias}, key + ".1", out_features)
    return w, bias


def keyed_errors(key: str, fn, *args):
    """fn(*args), its ValueError / TypeError prefixed with the state dict key."""
    try:
        return fn(*args)
    except (TypeError, ValueError) as e:
        raise type(e)(f"state dict entry '{key}': {e}") from None
