"""Quantized elementwise and shape modules on QTensors (no dequantize round trip)."""

from __future__ import annotations

import numpy as np

from ... import _C
from ...qtensor import QTensor
from .. import activation as F
from ..activation import flat_shape
from ..module import Module
from ._ops import apply_table, byte_table, out_qparams, q_input, storage, unary_table, wrap
from ._state import load_qparams, save_qparams

__all__ = [
    "ReLU",
    "ReLU6",
    "Hardswish",
    "Hardsigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "ELU",
    "SiLU",
    "GELU",
    "Dropout",
    "Flatten",
]


def _clamp(q: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """min(max(q, lo), hi): natively for C-contiguous uint8 codes (every layer's output: no
    NumPy on the hot path, and npquant.freeze can replay it), in NumPy for int8 codes and
    strided views a user wrapped. lo <= hi (zero point <= qmax, quantize(6.0))."""
    if q.dtype == np.uint8 and q.flags.c_contiguous:
        return _C.clamp_u8(q, lo, hi)
    return np.clip(q, q.dtype.type(lo), q.dtype.type(hi))


def _quantize_six(scale: float, zp: int, dtype) -> int:
    """The code of 6.0, as quantize_per_tensor gives it, from the reference quantizer (the
    oracle every quantize kernel equals): a plain int, so npquant.freeze, which records the
    top-level _C functions only, sees a constant argument of the clamp, not a fresh array."""
    return int(_C.reference.quantize(_SIX, scale, zp, dtype.qmin, dtype.qmax)[0])


_SIX = np.array([6.0], np.float32)


class ReLU(Module):
    """max(q, zero_point): the output keeps the input's qparams."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = q_input(x, "ReLU")
        q, _, nhwc = storage(x)
        zp = x.q_zero_point()
        return wrap(_clamp(q, zp, x.dtype.qmax), x.q_scale(), zp, x.dtype, nhwc)

    @classmethod
    def from_float(cls, mod):
        return cls(getattr(mod, "inplace", False))


class ReLU6(Module):
    """clamp(q, zero_point, quantize(6.0)): the output keeps the input's qparams."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = q_input(x, "ReLU6")
        q, _, nhwc = storage(x)
        s, zp = x.q_scale(), x.q_zero_point()
        return wrap(_clamp(q, zp, _quantize_six(s, zp, x.dtype)), s, zp, x.dtype, nhwc)

    @classmethod
    def from_float(cls, mod):
        return cls(getattr(mod, "inplace", False))


def _hardswish(v: np.ndarray) -> np.ndarray:
    return v * np.minimum(np.maximum(v + np.float32(3), np.float32(0)), np.float32(6)) / np.float32(6)


class _Table(Module):
    """A unary op on the codes: the output code of each of the 256 input codes is
    quantize(f(dequantize(code))), computed once per input qparams, then applied by the
    native byte lookup. Subclasses define ``_fn`` and ``_out(x)`` -> (scale, zp)."""

    _name = "op"

    def _fn(self, v):
        raise NotImplementedError

    def _key(self):
        return ()

    def _out(self, x):
        s, zp = out_qparams(self.scale, self.zero_point, x.dtype)
        return s, zp

    def _out_key(self) -> tuple:
        """The attributes _out reads besides the input's dtype (they may be set freely)."""
        return (self.scale, self.zero_point)

    def forward(self, x):
        if type(x) is QTensor and x._axis is None:
            # the common case, a layer's output with the table cached: no checks, the
            # lookup on the stored codes (elementwise, so any storage order)
            fast_key = (x._scale, x._zp, x._dtype) + self._key() + self._out_key()
            fast = self.__dict__.get("_cache_fast")
            if fast is not None and fast[0] == fast_key:
                _, by_byte, s, zp = fast
                return QTensor._trusted(apply_table(by_byte, x._q, x._dtype), s, zp, x._dtype, x._nhwc)
        x = q_input(x, self._name)
        q, _, nhwc = storage(x)
        s, zp = self._out(x)
        key = (x.q_scale(), x.q_zero_point(), x.dtype, s, zp) + self._key()
        cached = self.__dict__.get("_cache_table")
        if cached is None or cached[0] != key:
            table = unary_table(self._fn, x.q_scale(), x.q_zero_point(), x.dtype, s, zp)
            cached = self._cache_table = (key, byte_table(table, x.dtype))
        if type(x) is QTensor and x._axis is None:
            self.__dict__["_cache_fast"] = (fast_key, cached[1], s, zp)
        return wrap(apply_table(cached[1], q, x.dtype), s, zp, x.dtype, nhwc)


class _Observed(_Table):
    """Output qparams (scale, zero_point) from an observer at convert, as torch's
    quantized Hardswish / LeakyReLU / ELU; saved in the state dict under torch's keys."""

    def __init__(self, scale: float = 1.0, zero_point: int = 0):
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def _save_to_state_dict(self, dest, prefix):
        super()._save_to_state_dict(dest, prefix)
        save_qparams(dest, prefix, self.scale, self.zero_point)  # torch's keys, 0-d

    def _load_from_state_dict(self, sd, prefix):
        qparams = load_qparams(sd, prefix, None)
        return lambda: self.__dict__.update(qparams)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams

        return cls(*activation_qparams(mod))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, zero_point={self.zero_point}"


class Hardswish(_Observed):
    """x * relu6(x + 3) / 6, requantized to (scale, zero_point)."""

    _name = "Hardswish"

    def _fn(self, v):
        return _hardswish(v)


class LeakyReLU(_Observed):
    """torch.ao.nn.quantized.LeakyReLU(scale, zero_point, negative_slope)."""

    _name = "LeakyReLU"

    def __init__(self, scale: float = 1.0, zero_point: int = 0, negative_slope: float = 1e-2, inplace: bool = False):
        super().__init__(scale, zero_point)
        self.negative_slope, self.inplace = float(negative_slope), inplace

    def _fn(self, v):
        return F.leaky_relu(v, self.negative_slope)

    def _key(self):
        return (self.negative_slope,)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams

        return cls(*activation_qparams(mod), mod.negative_slope, getattr(mod, "inplace", False))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", negative_slope={self.negative_slope}"


class ELU(_Observed):
    """torch.ao.nn.quantized.ELU(scale, zero_point, alpha)."""

    _name = "ELU"

    def __init__(self, scale: float = 1.0, zero_point: int = 0, alpha: float = 1.0):
        super().__init__(scale, zero_point)
        self.alpha = float(alpha)

    def _fn(self, v):
        return F.elu(v, self.alpha)

    def _key(self):
        return (self.alpha,)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams

        return cls(*activation_qparams(mod), mod.alpha)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha}"


class SiLU(_Observed):
    """x * sigmoid(x) with observed output qparams (PyTorch has no quantized SiLU: npquant
    treats it like Hardswish)."""

    _name = "SiLU"

    def _fn(self, v):
        return F.silu(v)


class _Fixed(_Table):
    """Ops with fixed output qparams, as PyTorch's quantized kernels: Sigmoid and
    Hardsigmoid give (1/256, 0) for quint8 ((1/256, -128) for qint8), Tanh
    (2/256, 128) ((2/256, 0)), whatever the input's qparams; no observer is needed.
    ``output_scale`` / ``output_zero_point`` (torch.ao.nn.quantized.Sigmoid's
    arguments) override them for quint8."""

    _fixed = (1.0 / 256, 0)

    def __init__(self, output_scale: float | None = None, output_zero_point: int | None = None):
        super().__init__()
        self.output_scale, self.output_zero_point = output_scale, output_zero_point

    def _out(self, x):
        s, zp = self._fixed
        if x.dtype.qmin < 0:  # qint8: the same range, codes shifted by 128
            zp -= 128
        elif self.output_scale is not None:
            s = self.output_scale
            zp = self.output_zero_point if self.output_zero_point is not None else zp
        return out_qparams(s, zp, x.dtype)

    def _out_key(self) -> tuple:
        return (self.output_scale, self.output_zero_point)

    @classmethod
    def from_float(cls, mod):
        return cls()


class Sigmoid(_Fixed):
    _name = "Sigmoid"

    def _fn(self, v):
        return F.sigmoid(v)


class Hardsigmoid(_Fixed):
    _name = "Hardsigmoid"

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def _fn(self, v):
        return F.hardsigmoid(v)


class Tanh(_Fixed):
    _name = "Tanh"
    _fixed = (2.0 / 256, 128)

    def _fn(self, v):
        return F.tanh(v)


class GELU(_Table):
    """GELU on the codes; the output keeps the input's qparams, as PyTorch's quantized gelu."""

    _name = "GELU"

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = F._check_gelu(approximate)

    def _fn(self, v):
        return F.gelu(v, self.approximate)

    def _key(self):
        return (self.approximate,)

    def _out(self, x):
        return x.q_scale(), x.q_zero_point()

    def _out_key(self) -> tuple:
        return ()

    @classmethod
    def from_float(cls, mod):
        return cls(mod.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    """Inference: the identity on QTensors."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return q_input(x, "Dropout")

    @classmethod
    def from_float(cls, mod):
        return cls(mod.p, mod.inplace)


class Flatten(Module):
    """Flattens in PyTorch's logical (NCHW) order, whatever the storage order."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        x = q_input(x, "Flatten")
        return x.reshape(flat_shape(tuple(x.shape), self.start_dim, self.end_dim))

    @classmethod
    def from_float(cls, mod):
        return cls(mod.start_dim, mod.end_dim)
