"""Float ConvTranspose2d (NumPy, NCHW), mirroring torch.nn.ConvTranspose2d, and the
scatter it computes (shared with the quantized layer, which runs it on int64)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .conv import _pair
from .linear import _float_input
from .module import Module

__all__ = ["ConvTranspose2d", "conv_transpose2d"]


def transpose_geometry(
    in_channels: int,
    out_channels: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: int,
    dilation: Any,
) -> dict:
    """Validated arguments as PyTorch's attribute names (pairs)."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by groups ({groups})"
        )
    g = dict(
        kernel_size=_pair(kernel_size, "kernel_size"),
        stride=_pair(stride, "stride"),
        padding=_pair(padding, "padding"),
        output_padding=_pair(output_padding, "output_padding"),
        dilation=_pair(dilation, "dilation"),
    )
    if min(g["kernel_size"] + g["stride"] + g["dilation"]) < 1 or min(g["padding"] + g["output_padding"]) < 0:
        raise ValueError(f"invalid ConvTranspose2d geometry {g}")
    if any(op >= max(s, d) for op, s, d in zip(g["output_padding"], g["stride"], g["dilation"])):
        raise ValueError(
            f"output_padding {g['output_padding']} must be smaller than stride {g['stride']} "
            f"or dilation {g['dilation']} (as in PyTorch)"
        )
    return g


def conv_transpose2d(
    x: npt.NDArray[Any],
    weight: npt.NDArray[Any],
    stride: tuple,
    padding: tuple,
    output_padding: tuple,
    dilation: tuple,
    groups: int,
) -> npt.NDArray[Any]:
    """y[n, o, i*s - p + k*d] += x[n, c, i] * w[c, o, k] per group, without bias, in x's dtype
    (float32, or int64 for the exact integer accumulation)."""
    n, c, h, w = x.shape
    _, og, kh, kw = weight.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (w - 1) * sw + dw * (kw - 1) + 1 + opw
    oh, ow = full_h - 2 * ph, full_w - 2 * pw
    if oh < 1 or ow < 1:
        raise ValueError(f"ConvTranspose2d: input {h}x{w} gives an empty output ({oh}x{ow}); reduce padding")
    cg = c // groups
    full = np.zeros((n, groups * og, full_h, full_w), x.dtype)
    for g in range(groups):
        xg = x[:, g * cg : (g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nchw,co->nohw", xg, weight[g * cg : (g + 1) * cg, :, i, j])
                full[
                    :,
                    g * og : (g + 1) * og,
                    i * dh : i * dh + (h - 1) * sh + 1 : sh,
                    j * dw : j * dw + (w - 1) * sw + 1 : sw,
                ] += contrib
    return np.ascontiguousarray(full[:, :, ph : ph + oh, pw : pw + ow])


class ConvTranspose2d(Module):
    """Transposed 2-D convolution over NCHW float32 arrays, like ``torch.nn.ConvTranspose2d``:
    ``weight`` (in_channels, out_channels // groups, kh, kw), ``bias`` (out_channels,),
    PyTorch's keys. padding_mode 'zeros' only (as PyTorch); ``output_size`` in forward
    is not supported (give output_padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        rng: Any = None,
    ):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d supports padding_mode='zeros' only (as PyTorch), got {padding_mode!r}")
        geo = transpose_geometry(
            in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, dilation
        )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.padding_mode = padding_mode
        self.__dict__.update(geo)
        rng = np.random.default_rng() if rng is None else rng
        kh, kw = self.kernel_size
        bound = 1.0 / math.sqrt(out_channels // groups * kh * kw)  # torch's fan_in of this layout
        self.register_parameter(
            "weight", rng.uniform(-bound, bound, (in_channels, out_channels // groups, kh, kw)).astype(np.float32)
        )
        self.register_parameter("bias", rng.uniform(-bound, bound, out_channels).astype(np.float32) if bias else None)

    def forward(self, x: Any) -> np.ndarray:
        x = _float_input(x, "ConvTranspose2d")
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2d expects (N, {self.in_channels}, H, W) input, got shape {x.shape}")
        y = conv_transpose2d(x, self.weight, self.stride, self.padding, self.output_padding, self.dilation, self.groups)
        if self.bias is not None:
            y = (y + self.bias.reshape(1, -1, 1, 1)).astype(np.float32)
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
