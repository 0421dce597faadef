"""Quantized 2-D pooling with PyTorch's integer arithmetic.

The output keeps the input's qparams and storage order. PyTorch has one
kernel for contiguous NCHW and another for channels-last tensors, which round
averages differently; npquant follows the one matching the storage order
(quantized conv outputs are channels-last in both libraries). PyTorch's
channels-last AvgPool2d runs a vector loop over whole groups of 16 channels
(its AVX-512 build) and a scalar loop over the last C % 16, which rounds
differently (one fused multiply-add with the zero point, at a multiplier
rounded twice more); npquant reproduces both parts. Its results do not depend
on the CPU: PyTorch's AVX2 build (groups of 8) and its builds without vector
code round more channels the scalar way, so on those machines PyTorch's own
codes can differ from npquant's (and from PyTorch's on AVX-512 machines) by one.
(Channels-last AdaptiveAvgPool2d rounds the same way in both of its loops.)
"""

from __future__ import annotations

from typing import cast

import numpy as np

from ... import _C
from ...qtensor import QTensor
from .._pool import Geometry, adaptive_bounds, adaptive_sums
from ..module import Module
from ..pooling import adaptive_output_hw
from ._ops import q_input, requant_int, storage, wrap

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _spatial(x, name: str):
    x = q_input(x, name)
    if x.ndim != 4:
        raise ValueError(f"quantized {name} expects a 4-D (N, C, H, W) QTensor, got shape {x.shape}")
    q, axes, nhwc = storage(x)
    return x, q, axes, nhwc


def _hw(q: np.ndarray, axes) -> tuple:
    return q.shape[axes[0]], q.shape[axes[1]]


# PyTorch's channels-last AvgPool2d: channels [0, C - C % 16) take the vector
# loop's rounding, the rest the scalar loop's.
TORCH_VECTOR_CHANNELS = 16


def scalar_tail(c: int) -> slice:
    """The channels PyTorch's channels-last AvgPool2d rounds in its scalar loop."""
    return slice(c - c % TORCH_VECTOR_CHANNELS, c)


def scalar_loop_multipliers(mult: np.ndarray) -> np.ndarray:
    """fl(1 / fl(1 / mult)): the multiplier PyTorch's quantize_val / quantize_vec use when
    called at scale fl(1 / mult) (AvgPool2d's scalar loop, AdaptiveAvgPool2d's loops)."""
    one = np.float32(1)
    return one / (one / mult)


def fma_round(acc: np.ndarray, inv: np.ndarray, zp: int, dtype) -> np.ndarray:
    """clamp(nearbyint(fmaf(float(acc), inv, zp))): PyTorch's quantize_val / quantize_vec at
    scale 1 / inv. The fma is exact in float64 (a float32 product fits), then rounded once
    to float32."""
    v = (acc.astype(np.float64) * inv.astype(np.float64) + zp).astype(np.float32)
    return np.clip(np.rint(v), dtype.qmin, dtype.qmax).astype(dtype.storage)


def _grid(a: np.ndarray, axes, ndim: int) -> np.ndarray:
    """Broadcast an (oh, ow) array against the output's spatial axes."""
    shape = [1] * ndim
    shape[axes[0]], shape[axes[1]] = a.shape
    return a.reshape(shape)


class MaxPool2d(Module):
    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("quantized MaxPool2d does not return indices")
        self.geometry = Geometry(kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, x):
        if type(x) is QTensor and x._nhwc and x._axis is None and x._q.ndim == 4:
            q = x._q  # a quantized conv's output (the common case, checked in a few reads)
        else:
            x, q, axes, nhwc = _spatial(x, "MaxPool2d")
            if not nhwc:
                return self._forward_numpy(x)
        g = self.geometry  # NHWC: the native loop
        hw = q.shape[1:3]
        cached = self.__dict__.get("_cache_out_hw")  # (input hw, output hw): checks once per size
        if cached is None or cached[0] != hw:
            cached = self._cache_out_hw = (hw, g.output_hw(*hw))
        # the binding returns a py::object: the uint8/int8 array
        out = cast(np.ndarray, _C.max_pool2d_nhwc(np.ascontiguousarray(q), cached[1], g.k, g.s, g.p, g.d))
        # x is per-tensor and its qparams valid: no checks again
        return QTensor._trusted(out, x._scale, x._zp, x._dtype, True)

    def _forward_numpy(self, x):
        """The NumPy implementation (any storage order): NCHW input, and the tests' oracle."""
        x, q, axes, nhwc = _spatial(x, "MaxPool2d")
        out = self.geometry.window_max(q, axes, x.dtype.qmin)
        return wrap(out, x.q_scale(), x.q_zero_point(), x.dtype, nhwc)

    @classmethod
    def from_float(cls, mod):
        return cls(mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode)


class AvgPool2d(Module):
    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override=None,
    ):
        super().__init__()
        self.geometry = Geometry(kernel_size, stride, padding, 1, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        x, q, axes, nhwc = _spatial(x, "AvgPool2d")
        if not nhwc:
            return self._forward_numpy(x)
        # Quantized conv outputs: the native loop, with this module's constants for
        # this input size (kept between calls: they cost more than the pooling).
        h, w = _hw(q, axes)
        key = (
            h,
            w,
            self.geometry.k,
            self.geometry.s,
            self.geometry.p,
            self.geometry.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )
        cached = self.__dict__.get("_cache_constants")
        if cached is None or cached[0] != key:
            mult, size = self.multipliers(h, w, nhwc)
            inv = scalar_loop_multipliers(mult)
            cached = self._cache_constants = (key, (mult, inv, size.astype(np.int32)))
        mult, inv, size = cached[1]
        g = self.geometry
        out = _C.avg_pool2d_nhwc(
            np.ascontiguousarray(q),
            mult.shape,
            g.k,
            g.s,
            g.p,
            mult,
            inv,
            size,
            x.q_zero_point(),
            scalar_tail(q.shape[-1]).start,
        )
        return wrap(cast(np.ndarray, out), x.q_scale(), x.q_zero_point(), x.dtype, nhwc)

    def _forward_numpy(self, x):
        """The NumPy implementation (any storage order): NCHW input, and the tests' oracle."""
        x, q, axes, nhwc = _spatial(x, "AvgPool2d")
        h, w = _hw(q, axes)
        mult, size = self.multipliers(h, w, nhwc)
        zp = x.q_zero_point()
        acc = self.geometry.window_sum_int(q, axes)
        acc = acc - _grid(size, axes, q.ndim) * zp
        mult = _grid(mult, axes, q.ndim)
        if nhwc:  # channels-last kernel: requantize_from_int with fl(1 / divisor) ...
            out = requant_int(acc, mult, zp, x.dtype)
            tail = scalar_tail(out.shape[-1])  # ... and quantize_val at scale fl(1 / mult)
            out[..., tail] = fma_round(acc[..., tail], scalar_loop_multipliers(mult), zp, x.dtype)
        else:  # NCHW kernel: nearbyint(fl(sum * fl(1.0 / divisor)) + zp)
            v = acc.astype(np.float32) * mult + np.float32(zp)
            out = np.clip(np.rint(v), x.dtype.qmin, x.dtype.qmax).astype(x.dtype.storage)
        return wrap(out, x.q_scale(), zp, x.dtype, nhwc)

    def multipliers(self, h: int, w: int, nhwc: bool):
        """Per output position (oh, ow): the float32 multiplier 1 / divisor (rounded as the
        NHWC or the NCHW kernel rounds it) and the count of real (not padding) elements."""
        divisor, size = self.geometry.divisors(h, w, self.count_include_pad)
        if self.divisor_override is not None:
            divisor = np.full_like(divisor, int(self.divisor_override))
        if nhwc:
            return np.float32(1) / divisor.astype(np.float32), size
        return (1.0 / divisor.astype(np.float64)).astype(np.float32), size

    @classmethod
    def from_float(cls, mod):
        return cls(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad, mod.divisor_override)


# The native adaptive pooling sums in int32: bins of at most 2^23 codes stay exact.
_NATIVE_MAX_BIN = 1 << 23


def adaptive_multipliers(kh: np.ndarray, kw: np.ndarray, nhwc: bool) -> np.ndarray:
    """The float32 (oh, ow) multipliers of adaptive average pooling with bin heights kh
    and widths kw. Channels-last kernel: quantize_vec at scale fl(1 / fl(1 / size)), i.e.
    multiplier fl(1 / fl(1 / fl(1 / size))); NCHW kernel: fl(fl(1 / kh) / kw)."""
    one = np.float32(1)
    if nhwc:
        return scalar_loop_multipliers(one / np.outer(kh, kw).astype(np.float32))
    recip = np.outer(one / kh.astype(np.float32), np.ones(len(kw), np.float32))
    return (recip / kw.astype(np.float32)).astype(np.float32)


# The native AdaptiveAvgPool2d's bins (row start/end, column start/end, int32) and multipliers.
_AdaptiveConstants = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        x, q, axes, nhwc = _spatial(x, "AdaptiveAvgPool2d")
        if not nhwc:
            return self._forward_numpy(x)
        # Quantized conv outputs: the native loop, with the bins and multipliers for this
        # input size kept between calls (computing them costs more than the pooling).
        h, w = _hw(q, axes)
        key = (h, w)
        cached: tuple[tuple[int, int], _AdaptiveConstants | None] | None = self.__dict__.get("_cache_constants")
        if cached is None or cached[0] != key:
            out_hw = adaptive_output_hw(self.output_size, h, w)
            hs, he = adaptive_bounds(h, out_hw[0])
            ws, we = adaptive_bounds(w, out_hw[1])
            mult = adaptive_multipliers(he - hs, we - ws, True)
            area = int((he - hs).max()) * int((we - ws).max())
            i32 = lambda a: np.ascontiguousarray(a, np.int32)  # noqa: E731
            consts: _AdaptiveConstants | None = (
                None if area > _NATIVE_MAX_BIN else (i32(hs), i32(he), i32(ws), i32(we), mult)
            )
            cached = self._cache_constants = (key, consts)
        bins = cached[1]
        if bins is None:  # bins too large for exact int32 sums: NumPy sums in int64
            return self._forward_numpy(x)
        out = cast(np.ndarray, _C.adaptive_avg_pool2d_nhwc(np.ascontiguousarray(q), *bins, x.q_zero_point()))
        # x is per-tensor (q_input checked it) and its qparams valid: no checks again
        return QTensor._trusted(out, x._scale, x._zp, x._dtype, True)

    def _forward_numpy(self, x):
        """The NumPy implementation (any storage order): NCHW input, and the tests' oracle."""
        x, q, axes, nhwc = _spatial(x, "AdaptiveAvgPool2d")
        out_hw = adaptive_output_hw(self.output_size, *_hw(q, axes))
        sums, kh, kw = adaptive_sums(q, axes, out_hw, np.int64)
        size = _grid(np.outer(kh, kw), axes, q.ndim)
        mult = _grid(adaptive_multipliers(kh, kw, nhwc), axes, q.ndim)
        zp = x.q_zero_point()
        if nhwc:  # nearbyint(fmaf(sum - zp * size, mult, zp))
            out = fma_round(sums - size * zp, mult, zp, x.dtype)
        else:  # NCHW kernel: nearbyint(sum of codes * mult); stays in range
            out = np.rint(sums.astype(np.float32) * mult).astype(x.dtype.storage)
        return wrap(out, x.q_scale(), zp, x.dtype, nhwc)

    @classmethod
    def from_float(cls, mod):
        return cls(mod.output_size)
