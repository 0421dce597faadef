"""Upsample / ``interpolate`` (nearest, bilinear) and ChannelShuffle, on float arrays
and QTensors alike (like torch.nn.Upsample / F.interpolate / nn.ChannelShuffle, which
run on quantized tensors directly).

On QTensors the output keeps the input's qparams and is computed from the codes as
PyTorch's quantized kernels do: nearest copies codes; bilinear weights the four
neighbouring codes in float32, subtracts the zero point, and rounds half to even
(``fl(fl(h0*fl(fl(w0*a) + fl(w1*b))) + fl(h1*fl(fl(w0*c) + fl(w1*d)))) - zp``, then
``zp + nearbyint``), which is torch's arithmetic for NCHW-contiguous input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..qtensor import QTensor
from ..qtensor import channel_shuffle as _q_channel_shuffle
from .linear import _float_input
from .module import Module

__all__ = ["interpolate", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "ChannelShuffle"]

_MODES = ("nearest", "bilinear")


def _pair_or_none(v: Any, name: str) -> tuple | None:
    if v is None:
        return None
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2:
        raise ValueError(f"{name} must be a number or a pair for 4-D input, got {v!r}")
    return t


def _output_size(hw: tuple, size: Any, scale_factor: Any) -> tuple[tuple, tuple]:
    """(output (h, w), scales passed to the kernel (None = from the sizes)), as F.interpolate."""
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate needs exactly one of size and scale_factor")
    if size is not None:
        out = tuple(int(s) for s in _pair_or_none(size, "size"))  # type: ignore[union-attr]
        return out, (None, None)
    sf = tuple(float(s) for s in _pair_or_none(scale_factor, "scale_factor"))  # type: ignore[union-attr]
    if not all(s > 0 and math.isfinite(s) for s in sf):
        raise ValueError(f"scale_factor must be positive and finite, got {scale_factor!r}")
    return tuple(int(math.floor(n * s)) for n, s in zip(hw, sf)), sf


def _scale(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> np.float32:
    """PyTorch's area_pixel_compute_scale in float32."""
    if align_corners:
        return np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(np.float32(n_in) / np.float32(n_out))


def _nearest_index(n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """PyTorch's nearest_idx: identity, i >> 1 for exactly 2x, else min(floor(i * s), n_in - 1) in float32."""
    i = np.arange(n_out)
    if n_out == n_in:
        return i
    if n_out == 2 * n_in:
        return i >> 1
    s = _scale(n_in, n_out, False, scale)
    return np.minimum(np.floor(i.astype(np.float32) * s).astype(np.int64), n_in - 1)


def _linear_params(n_in: int, n_out: int, align_corners: bool, scale: float | None):
    """(i0, i1, lambda0, lambda1) per output index: PyTorch's area_pixel_compute_source_index."""
    r = _scale(n_in, n_out, align_corners, scale)
    d = np.arange(n_out).astype(np.float32)
    if align_corners:
        src = (r * d).astype(np.float32)
    else:
        src = np.maximum((r * (d + np.float32(0.5)) - np.float32(0.5)).astype(np.float32), np.float32(0))
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < n_in - 1)
    l1 = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, (np.float32(1) - l1).astype(np.float32), l1


def _bilinear(v: np.ndarray, out_hw: tuple, align_corners: bool, scales: tuple) -> np.ndarray:
    """Bilinear over the last two axes of float32 values, in torch's float32 order."""
    h0, h1, hl0, hl1 = _linear_params(v.shape[-2], out_hw[0], align_corners, scales[0])
    w0, w1, wl0, wl1 = _linear_params(v.shape[-1], out_hw[1], align_corners, scales[1])
    top, bot = v[..., h0, :], v[..., h1, :]
    row_t = wl0 * top[..., w0] + wl1 * top[..., w1]
    row_b = wl0 * bot[..., w0] + wl1 * bot[..., w1]
    return (hl0[:, None] * row_t + hl1[:, None] * row_b).astype(np.float32)


def interpolate(
    x: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest", align_corners: bool | None = None
) -> Any:
    """torch.nn.functional.interpolate for 4-D (N, C, H, W) float arrays and QTensors,
    modes 'nearest' and 'bilinear'."""
    if mode not in _MODES:
        raise ValueError(f"interpolate supports mode {_MODES}, got {mode!r}")
    if align_corners is not None and mode == "nearest":
        raise ValueError("align_corners only has an effect with mode='bilinear' (as in PyTorch)")
    quantized = isinstance(x, QTensor)
    if quantized:
        x._need_per_tensor("interpolate")
        q = x.int_repr()
    else:
        q = _float_input(x, "interpolate")
    if q.ndim != 4 or 0 in q.shape:
        raise ValueError(f"interpolate expects non-empty 4-D (N, C, H, W) input, got shape {tuple(q.shape)}")
    out_hw, scales = _output_size(q.shape[2:], size, scale_factor)
    if min(out_hw) < 1:
        raise ValueError(f"interpolate: output size {out_hw} must be positive")
    if mode == "nearest":
        hi = _nearest_index(q.shape[2], out_hw[0], scales[0])
        wi = _nearest_index(q.shape[3], out_hw[1], scales[1])
        y = np.ascontiguousarray(q[:, :, hi][:, :, :, wi])
        return QTensor(y, x.q_scale(), x.q_zero_point(), x.dtype) if quantized else y
    ac = bool(align_corners)
    if not quantized:
        return np.ascontiguousarray(_bilinear(q, out_hw, ac, scales))
    if out_hw == tuple(q.shape[2:]):
        return QTensor(np.ascontiguousarray(q), x.q_scale(), x.q_zero_point(), x.dtype)
    zp = x.q_zero_point()
    v = (_bilinear(q.astype(np.float32), out_hw, ac, scales) - np.float32(zp)).astype(np.float32)
    codes = np.clip(np.rint(v) + zp, x.dtype.qmin, x.dtype.qmax).astype(q.dtype)
    return QTensor(np.ascontiguousarray(codes), x.q_scale(), zp, x.dtype)


class Upsample(Module):
    """torch.nn.Upsample (modes 'nearest', 'bilinear') for float arrays and QTensors."""

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"Upsample supports mode {_MODES}, got {mode!r}")
        if recompute_scale_factor:
            raise NotImplementedError("recompute_scale_factor=True is not supported; give size instead")
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x: Any) -> Any:
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear with align_corners=True (torch.nn.UpsamplingBilinear2d)."""

    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, "bilinear", align_corners=True)


class ChannelShuffle(Module):
    """torch.nn.ChannelShuffle: (N, C, ...) -> channels regrouped as (C/g, g) -> (g, C/g),
    on float arrays and (4-D) QTensors."""

    def __init__(self, groups: int):
        super().__init__()
        if not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"ChannelShuffle: groups must be a positive int, got {groups!r}")
        self.groups = int(groups)

    def forward(self, x: Any) -> Any:
        if isinstance(x, QTensor):
            return _q_channel_shuffle(x, self.groups)
        a = _float_input(x, "ChannelShuffle")
        if a.ndim < 3 or a.shape[1] % self.groups:
            raise ValueError(
                f"ChannelShuffle({self.groups}) expects (N, C, ...) input with C divisible by "
                f"{self.groups}, got shape {a.shape}"
            )
        n, c = a.shape[:2]
        rest: Sequence[int] = a.shape[2:]
        y = a.reshape(n, self.groups, c // self.groups, *rest).swapaxes(1, 2)
        return np.ascontiguousarray(y).reshape(a.shape)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
