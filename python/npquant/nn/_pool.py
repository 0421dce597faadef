"""Pooling geometry shared by the float and the quantized pooling modules.

Everything works on 4-D arrays whose spatial axes are given (2, 3 for NCHW,
1, 2 for NHWC), so quantized activations stored channels-last are pooled
without a transpose.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pair(v, name: str) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start
    inside the input or its left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


class Geometry:
    """Kernel, stride, padding, dilation and ceil_mode of one 2-D pooling layer."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.k = pair(kernel_size, "kernel_size")
        self.s = self.k if stride is None or stride == [] else pair(stride, "stride")
        self.p = pair(padding, "padding")
        self.d = pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)
        if min(self.k) < 1 or min(self.s) < 1 or min(self.d) < 1 or min(self.p) < 0:
            raise ValueError(
                f"pooling needs kernel_size, stride, dilation >= 1 and padding >= 0, got "
                f"kernel_size={self.k}, stride={self.s}, dilation={self.d}, padding={self.p}"
            )
        if self.p[0] > self.k[0] // 2 or self.p[1] > self.k[1] // 2:
            raise ValueError(f"padding {self.p} must be at most half the kernel size {self.k}")

    def output_hw(self, h: int, w: int) -> tuple:
        if h < 1 or w < 1:  # windows over padding alone would average nothing (0 / 0)
            raise ValueError(f"pooling needs a non-empty spatial input, got H={h}, W={w}")
        oh = out_size(h, self.k[0], self.s[0], self.p[0], self.d[0], self.ceil_mode)
        ow = out_size(w, self.k[1], self.s[1], self.p[1], self.d[1], self.ceil_mode)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"input spatial size ({h}, {w}) is too small for kernel {self.k}, padding {self.p}, dilation {self.d}"
            )
        return oh, ow

    def windows(self, x: np.ndarray, axes: tuple, pad_value) -> np.ndarray:
        """View of shape (..., oh, ow, kh, kw) (spatial axes replaced in place by oh, ow)."""
        h, w = x.shape[axes[0]], x.shape[axes[1]]
        oh, ow = self.output_hw(h, w)
        ext = []
        for n, o, k, s, p, d in (
            (h, oh, self.k[0], self.s[0], self.p[0], self.d[0]),
            (w, ow, self.k[1], self.s[1], self.p[1], self.d[1]),
        ):
            need = (o - 1) * s + d * (k - 1) + 1  # padded length the windows touch
            ext.append((p, max(need - n - p, 0)))
        widths = [(0, 0)] * x.ndim
        widths[axes[0]], widths[axes[1]] = ext
        xp = np.pad(x, widths, constant_values=pad_value) if any(map(any, ext)) else x
        kh_eff = self.d[0] * (self.k[0] - 1) + 1
        kw_eff = self.d[1] * (self.k[1] - 1) + 1
        v = sliding_window_view(xp, (kh_eff, kw_eff), axis=axes)
        sl = [slice(None)] * v.ndim
        sl[axes[0]] = slice(0, (oh - 1) * self.s[0] + 1, self.s[0])
        sl[axes[1]] = slice(0, (ow - 1) * self.s[1] + 1, self.s[1])
        sl[-2] = slice(None, None, self.d[0])
        sl[-1] = slice(None, None, self.d[1])
        return v[tuple(sl)]

    def window_max(self, x: np.ndarray, axes: tuple, pad_value) -> np.ndarray:
        """windows(...).max(axis=(-2, -1)), one np.maximum per kernel tap: a loop over
        the kh*kw taps, not over pixels, and ~15x faster than reducing the 6-D view."""
        v = self.windows(x, axes, pad_value)
        out = v[..., 0, 0].copy()
        for i in range(v.shape[-2]):
            for j in range(v.shape[-1]):
                if i or j:
                    np.maximum(out, v[..., i, j], out=out)
        return out

    def window_sum_int(self, x: np.ndarray, axes: tuple) -> np.ndarray:
        """windows(...).sum(axis=(-2, -1)) in int64 (exact, so the order is free), per tap."""
        v = self.windows(x, axes, 0)
        out = v[..., 0, 0].astype(np.int64)
        for i in range(v.shape[-2]):
            for j in range(v.shape[-1]):
                if i or j:
                    out += v[..., i, j]
        return out

    def divisors(self, h: int, w: int, count_include_pad: bool):
        """Per-output (window area within the padded input, count of real elements),
        as (oh, ow) int64 arrays: PyTorch's pool_size and size."""
        oh, ow = self.output_hw(h, w)
        per_axis = []
        for n, o, k, s, p in ((h, oh, self.k[0], self.s[0], self.p[0]), (w, ow, self.k[1], self.s[1], self.p[1])):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, n + p)
            padded = end - start
            real = np.minimum(end, n) - np.maximum(start, 0)
            per_axis.append((padded, real))
        (ph, rh), (pw, rw) = per_axis
        pool_size = np.outer(ph, pw)
        size = np.outer(rh, rw)
        return (pool_size if count_include_pad else size), size


def adaptive_bounds(n: int, o: int):
    """Start/end indices of PyTorch's adaptive pooling bins (float32 floor/ceil)."""
    i = np.arange(o)
    start = np.floor((i * n).astype(np.float32) / np.float32(o)).astype(np.int64)
    end = np.ceil(((i + 1) * n).astype(np.float32) / np.float32(o)).astype(np.int64)
    return start, end


def adaptive_sums(x: np.ndarray, axes: tuple, out_hw: tuple, acc_dtype):
    """Sums over adaptive pooling bins via an integral image (no loop over pixels).

    Returns (sums with spatial axes replaced by out_hw, bin heights (oh,), bin widths (ow,))."""
    ah, aw = axes
    h, w = x.shape[ah], x.shape[aw]
    hs, he = adaptive_bounds(h, out_hw[0])
    ws, we = adaptive_bounds(w, out_hw[1])
    c = np.cumsum(np.cumsum(x.astype(acc_dtype), axis=ah), axis=aw)
    widths = [(0, 0)] * x.ndim
    widths[ah] = widths[aw] = (1, 0)
    c = np.pad(c, widths)

    def take(hi, wi):
        return np.take(np.take(c, hi, axis=ah), wi, axis=aw)

    sums = take(he, we) - take(hs, we) - take(he, ws) + take(hs, ws)
    return sums, he - hs, we - ws
