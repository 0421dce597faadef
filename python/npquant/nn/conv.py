"""Float Conv1d / Conv2d (NumPy, NCL / NCHW), mirroring torch.nn.Conv1d / Conv2d."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .linear import _float_input
from .module import Module

__all__ = ["Conv1d", "Conv2d"]

_NpPadMode = Literal["constant", "reflect", "edge", "wrap"]
_NP_PAD_MODES: dict[str, _NpPadMode] = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def _pair(v, name: str) -> tuple:
    """An int or a pair of ints -> (a, b), all >= 0 (callers check further)."""
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in t):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def _conv_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups):
    """Validates conv arguments like PyTorch; returns (kernel, stride, padding4, dilation),
    padding4 = (top, left, bottom, right)."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by groups ({groups})"
        )
    kernel, stride, dilation = (_pair(kernel_size, "kernel_size"), _pair(stride, "stride"), _pair(dilation, "dilation"))
    for name, t in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(t) < 1:
            raise ValueError(f"{name} must be >= 1, got {t}")
    if isinstance(padding, str):
        if padding == "valid":
            pad4 = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions (as in PyTorch)")
            # Total padding dil*(k-1), the odd unit on the bottom/right (PyTorch's rule).
            th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
            pad4 = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
        if min(ph, pw) < 0:
            raise ValueError(f"padding must be >= 0, got {(ph, pw)}")
        pad4 = (ph, pw, ph, pw)
    return kernel, stride, pad4, dilation


def _init_conv_attributes(
    mod, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
) -> None:
    """Validates the arguments and sets PyTorch's attribute names (in_channels, ...,
    padding_mode) plus _pad4 = (top, left, bottom, right) on a float or quantized conv."""
    kernel, st, pad4, dil = _conv_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
    mod.in_channels, mod.out_channels, mod.groups = int(in_channels), int(out_channels), int(groups)
    mod.kernel_size, mod.stride, mod.dilation = kernel, st, dil
    mod.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
    mod.padding_mode = padding_mode
    mod._pad4 = pad4


def _out_size(size, k, s, d, p0, p1, dim):
    span = d * (k - 1) + 1
    if size + p0 + p1 < span:
        raise ValueError(
            f"kernel {dim} {span} (dilated) is larger than the padded input {dim} "
            f"{size + p0 + p1} (input {size} + padding {p0 + p1}); use a larger input or more padding"
        )
    return (size + p0 + p1 - span) // s + 1


def conv2d(x, weight, bias, stride, pad4, dilation, groups, padding_mode="zeros"):
    """NCHW float convolution: im2col (one strided view, one copy) + batched matmul per group."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pad4
    oh = _out_size(h, kh, sh, dh, pt, pb, "height")
    ow = _out_size(w, kw, sw, dw, pl, pr, "width")
    if pt or pl or pb or pr:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode=_NP_PAD_MODES[padding_mode])
    x = np.ascontiguousarray(x)
    s = x.strides
    win = as_strided(
        x,
        shape=(n, c, oh, ow, kh, kw),
        strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
        writeable=False,
    )
    og = o // groups
    # cols[g, (n, oy, ox), (c, ky, kx)]
    cols = (
        win.reshape(n, groups, cg, oh, ow, kh, kw)
        .transpose(1, 0, 3, 4, 2, 5, 6)
        .reshape(groups, n * oh * ow, cg * kh * kw)
    )
    y = cols @ weight.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)  # (g, M, og)
    y = y.reshape(groups, n, oh, ow, og).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y, dtype=np.float32)


class Conv2d(Module):
    """2-D convolution over NCHW float32 arrays, like ``torch.nn.Conv2d``.

    ``weight`` has shape (out_channels, in_channels // groups, kh, kw) and ``bias``
    (out_channels,): PyTorch's key names and layout, so ``load_state_dict`` takes a
    torch state dict. padding: int, pair, 'same' or 'valid'; padding_mode: 'zeros',
    'reflect', 'replicate' or 'circular'. Unbatched (C, H, W) input is accepted.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        rng=None,
    ):
        super().__init__()
        if padding_mode not in _NP_PAD_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(_NP_PAD_MODES)}, got {padding_mode!r}")
        _init_conv_attributes(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        )
        rng = np.random.default_rng() if rng is None else rng
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Conv2d's default init range (weight and bias)
        self.register_parameter(
            "weight",
            rng.uniform(-bound, bound, (out_channels, in_channels // groups, *self.kernel_size)).astype(np.float32),
        )
        self.register_parameter("bias", rng.uniform(-bound, bound, out_channels).astype(np.float32) if bias else None)

    def forward(self, x):
        x = _float_input(x, "Conv2d")
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expects (N, {self.in_channels}, H, W) or ({self.in_channels}, H, W) "
                f"input (NCHW), got shape {x.shape}"
            )
        y = conv2d(x, self.weight, self.bias, self.stride, self._pad4, self.dilation, self.groups, self.padding_mode)
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


def _single(v, name: str) -> int:
    """An int or a 1-tuple of ints -> int (torch.nn.Conv1d's arguments)."""
    t = (v,) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) != 1 or not isinstance(t[0], (int, np.integer)) or isinstance(t[0], bool):
        raise TypeError(f"{name} must be an int or a 1-tuple of ints, got {v!r}")
    return int(t[0])


def init_conv1d_attributes(
    mod, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
) -> None:
    """torch.nn.Conv1d's attributes (1-tuples) on mod, plus the 2-D geometry it runs
    as (a 1 x k kernel over a height-1 image): _kernel2, _stride2, _dilation2, _pad4."""
    k, st, dil = _single(kernel_size, "kernel_size"), _single(stride, "stride"), _single(dilation, "dilation")
    pad2 = padding if isinstance(padding, str) else (0, _single(padding, "padding"))
    kernel, st2, pad4, dil2 = _conv_geometry(in_channels, out_channels, (1, k), (1, st), pad2, (1, dil), groups)
    mod.in_channels, mod.out_channels, mod.groups = int(in_channels), int(out_channels), int(groups)
    mod.kernel_size, mod.stride, mod.dilation = (k,), (st,), (dil,)
    mod.padding = padding if isinstance(padding, str) else (_single(padding, "padding"),)
    mod.padding_mode = padding_mode
    mod._kernel2, mod._stride2, mod._dilation2, mod._pad4 = kernel, st2, dil2, pad4


class Conv1d(Module):
    """1-D convolution over (N, C, L) float32 arrays, like ``torch.nn.Conv1d``.

    ``weight`` (out_channels, in_channels // groups, k) and ``bias`` (out_channels,)
    with PyTorch's keys. Runs as Conv2d over a height-1 image. padding: int, 'same'
    or 'valid'; padding_mode as Conv2d. Unbatched (C, L) input is accepted.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        rng=None,
    ):
        super().__init__()
        if padding_mode not in _NP_PAD_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(_NP_PAD_MODES)}, got {padding_mode!r}")
        init_conv1d_attributes(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        )
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(in_channels // groups * self.kernel_size[0])  # torch's default init range
        self.register_parameter(
            "weight",
            rng.uniform(-bound, bound, (out_channels, in_channels // groups, self.kernel_size[0])).astype(np.float32),
        )
        self.register_parameter("bias", rng.uniform(-bound, bound, out_channels).astype(np.float32) if bias else None)

    def forward(self, x):
        x = _float_input(x, "Conv1d")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv1d expects (N, {self.in_channels}, L) or ({self.in_channels}, L) input, got shape {x.shape}"
            )
        y = conv2d(
            x[:, :, None, :],
            self.weight[:, :, None, :],
            self.bias,
            self._stride2,
            self._pad4,
            self._dilation2,
            self.groups,
            self.padding_mode,
        )[:, :, 0, :]
        y = np.ascontiguousarray(y)
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1,):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
