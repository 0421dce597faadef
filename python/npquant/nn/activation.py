"""Float elementwise and shape modules: ReLU, ReLU6, Hardswish, Identity, Dropout, Flatten."""

from __future__ import annotations

import numpy as np

from .linear import _float_input
from .module import Module

__all__ = ["ReLU", "ReLU6", "Hardswish", "Identity", "Dropout", "Flatten"]


class ReLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return np.maximum(_float_input(x, "ReLU"), np.float32(0))


class ReLU6(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return np.clip(_float_input(x, "ReLU6"), np.float32(0), np.float32(6))


class Hardswish(Module):
    """x * relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = _float_input(x, "Hardswish")
        return x * np.clip(x + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)


class Identity(Module):
    """Returns its input; accepts and ignores constructor arguments, like torch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Dropout(Module):
    """Inference only: the identity (npquant does not train)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, x):
        return _float_input(x, "Dropout")

    def extra_repr(self) -> str:
        return f"p={self.p}"


def flat_shape(shape: tuple, start_dim: int, end_dim: int) -> tuple:
    nd = len(shape)
    s, e = start_dim % nd if nd else 0, end_dim % nd if nd else 0
    if s > e:
        raise ValueError(f"Flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}")
    return shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        x = _float_input(x, "Flatten")
        return x.reshape(flat_shape(x.shape, self.start_dim, self.end_dim))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
