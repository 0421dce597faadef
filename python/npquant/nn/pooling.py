"""Float 2-D pooling (NCHW): MaxPool2d, AvgPool2d, AdaptiveAvgPool2d."""

from __future__ import annotations

import numpy as np

from ._pool import Geometry, adaptive_sums, pair
from .linear import _float_input
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "adaptive_output_hw"]


def _nchw(x, name: str) -> np.ndarray:
    x = _float_input(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name} expects a 4-D (N, C, H, W) input, got shape {x.shape}")
    return x


class MaxPool2d(Module):
    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d(return_indices=True) is not supported by npquant")
        self.geometry = Geometry(kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, x):
        x = _nchw(x, "MaxPool2d")
        return self.geometry.window_max(x, (2, 3), -np.inf)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


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
        if divisor_override is not None and int(divisor_override) == 0:
            raise ValueError("divisor_override must not be zero")
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def divisors(self, h: int, w: int) -> np.ndarray:
        if self.divisor_override is not None:
            oh, ow = self.geometry.output_hw(h, w)
            return np.full((oh, ow), int(self.divisor_override), np.int64)
        return self.geometry.divisors(h, w, self.count_include_pad)[0]

    def forward(self, x):
        x = _nchw(x, "AvgPool2d")
        sums = self.geometry.windows(x, (2, 3), 0).sum(axis=(-2, -1), dtype=np.float32)
        return (sums / self.divisors(x.shape[2], x.shape[3]).astype(np.float32)).astype(np.float32)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def adaptive_output_hw(output_size, h: int, w: int) -> tuple:
    """(oh, ow) from an int, a pair, or a pair with None (keep that input size)."""
    if h < 1 or w < 1:  # empty bins would divide by zero (PyTorch refuses these inputs too)
        raise ValueError(f"adaptive average pooling needs a non-empty spatial input, got H={h}, W={w}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
        oh, ow = (h if output_size[0] is None else output_size[0]), (w if output_size[1] is None else output_size[1])
    else:
        oh = ow = output_size
    oh, ow = pair((oh, ow), "output_size")
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return oh, ow


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        adaptive_output_hw(output_size, 1, 1)  # validates
        self.output_size = output_size

    def forward(self, x):
        x = _nchw(x, "AdaptiveAvgPool2d")
        out_hw = adaptive_output_hw(self.output_size, x.shape[2], x.shape[3])
        if x.shape[2] % out_hw[0] == 0 and x.shape[3] % out_hw[1] == 0:
            n, c, h, w = x.shape
            blocks = x.reshape(n, c, out_hw[0], h // out_hw[0], out_hw[1], w // out_hw[1])
            return blocks.mean(axis=(3, 5), dtype=np.float32).astype(np.float32)
        sums, kh, kw = adaptive_sums(x, (2, 3), out_hw, np.float64)
        return (sums / np.outer(kh, kw)).astype(np.float32)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
