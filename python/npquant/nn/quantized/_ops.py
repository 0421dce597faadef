"""NumPy kernels for the quantized non-GEMM ops, following PyTorch's x86 arithmetic.

PyTorch's vectorized CPU kernels dequantize as ``fma(scale, q, fl(scale * -zp))``
and quantize as ``nearbyint(fl(x * fl(1 / scale))) + zp``; ``dequant`` and
``quant`` restate exactly that (the fma is computed exactly in float64, then
rounded once to float32), so npquant's outputs equal torch's quantized ops.
Activations keep their storage order: 4-D tensors stored channels-last
(the output of quantized conv) are processed as NHWC without a transpose.
"""

from __future__ import annotations

import numpy as np

from ... import _C
from ..._dtypes import QDType, quint8
from ...qtensor import QTensor, _check_scale, _check_zp
from ..module import Module


def q_input(x, name: str) -> QTensor:
    """The QTensor argument of a quantized op, or a TypeError saying what to do."""
    if not isinstance(x, QTensor):
        raise TypeError(
            f"quantized {name} expects a QTensor, got {type(x).__name__}; quantize the input first "
            "(npquant.quantize_per_tensor, or a QuantStub at the start of the quantized region), "
            "or keep this layer float (qconfig = None) with a DeQuantStub before it"
        )
    if x.qscheme() != "per_tensor_affine":
        raise TypeError(f"quantized {name} expects a per-tensor QTensor, got {x!r}")
    return x


def quint8_input(x, name: str) -> QTensor:
    """The activation of a quantized GEMM layer (Linear, Conv2d): a per-tensor quint8 QTensor."""
    if type(x) is QTensor and x._axis is None and x._dtype is quint8:
        return x  # the common case first: it runs on every call
    x = q_input(x, name)
    if x.dtype is not quint8:
        raise TypeError(f"quantized {name} expects a per-tensor quint8 QTensor, got {x!r}")
    return x


class OutputQParams(Module):
    """Mixin for layers with output qparams in ``.scale`` / ``.zero_point``
    (set freely, as in PyTorch): validated once per value, not per call (the
    checks cost microseconds, which matter for small layers)."""

    scale: float
    zero_point: int

    def _output_qparams(self):
        """(scale as float32, zero_point, scale as a Python float for the output QTensor)."""
        key = (self.scale, self.zero_point)
        cached = self.__dict__.get("_cache_qparams")
        if cached is None or cached[0] != key:
            scale = np.float32(_check_scale(self.scale))
            cached = self._cache_qparams = (key, (scale, _check_zp(self.zero_point, quint8), float(scale)))
        return cached[1]


def storage(x: QTensor):
    """(integer array in storage order, spatial axes or None, is_nhwc)."""
    if x.is_nhwc:
        return x.nhwc(), (1, 2), True
    return x.int_repr(), ((2, 3) if x.ndim == 4 else None), False


def wrap(q: np.ndarray, scale, zp, dtype: QDType, nhwc: bool) -> QTensor:
    q = np.require(q, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    return QTensor.from_nhwc(q, scale, zp, dtype) if nhwc else QTensor(q, scale, zp, dtype)


def dequant(q: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """fma(scale, float(q), fl(scale * -zp)) in float32."""
    s = np.float32(scale)
    premul = np.float64(s * np.float32(-zp))
    return (np.float64(s) * q.astype(np.float64) + premul).astype(np.float32)


def _int32_range(t: np.ndarray) -> np.ndarray:
    """t limited to [-2**31, 2**31 - 128] before rounding, NaN to the lower end: the final
    clamp to the dtype's range then decides. Without it, values beyond int64 (extreme
    scales: inf, or |t| >= 2**63) and NaN (0 * inf) would convert to int64 however the
    CPU does it (x86: INT64_MIN, which adding a negative zero point wraps to the top)."""
    return np.fmin(np.fmax(t, np.float32(-(2**31))), np.float32(2**31 - 128))


def reciprocal(scale) -> np.float32:
    """fl(1 / scale): the multiplier ``quant`` uses."""
    return np.float32(1) / np.float32(scale)


def quant(v: np.ndarray, scale: float, zp: int, dtype: QDType) -> np.ndarray:
    """clamp(nearbyint(fl(v * fl(1 / scale))) + zp) (round half to even)."""
    t = _int32_range(np.asarray(v, np.float32) * reciprocal(scale))
    r = np.rint(t).astype(np.int64) + zp
    return np.clip(r, dtype.qmin, dtype.qmax).astype(dtype.storage)


def requant_int(acc: np.ndarray, multiplier, zp: int, dtype: QDType) -> np.ndarray:
    """PyTorch's requantize_from_int: clamp(zp + nearbyint(fl(float(acc) * multiplier)))."""
    v = _int32_range(acc.astype(np.float32) * np.float32(multiplier))
    return np.clip(np.rint(v).astype(np.int64) + zp, dtype.qmin, dtype.qmax).astype(dtype.storage)


def unary_table(fn, scale: float, zp: int, dtype: QDType, out_scale: float, out_zp: int) -> np.ndarray:
    """Output code for every input code of a unary op (int8 has only 256 values)."""
    codes = np.arange(dtype.qmin, dtype.qmax + 1)
    return quant(fn(dequant(codes, scale, zp)), out_scale, out_zp, dtype)


def byte_table(table: np.ndarray, dtype: QDType) -> np.ndarray:
    """A unary_table reordered for the native lookup: entry b is the output byte of the
    code whose byte is b (int8 codes are looked up by their uint8 bit pattern)."""
    codes = np.arange(256, dtype=np.uint8).view(dtype.storage)  # in the order of their bytes
    return np.ascontiguousarray(table[codes.astype(np.int64) - dtype.qmin]).view(np.uint8)


def apply_table(by_byte: np.ndarray, q: np.ndarray, dtype: QDType) -> np.ndarray:
    """table[q - qmin] for by_byte = byte_table(table, dtype): the native lookup of the
    code bytes (a SIMD kernel where the CPU has one; cpu_info()['kernels']['lut'])."""
    return _C.lookup(u8_view(q), by_byte).view(dtype.storage)


def u8_view(a: np.ndarray) -> np.ndarray:
    """a's bytes as a C-contiguous uint8 array of a's shape (np.ascontiguousarray would
    turn a 0-d array into shape (1,))."""
    a = np.asarray(a)
    return (a if a.flags.c_contiguous else a.copy(order="C")).view(np.uint8)


def out_qparams(scale, zero_point, dtype: QDType = quint8):
    return _check_scale(scale), _check_zp(zero_point, dtype)
