"""Quantized elementwise and shape modules on QTensors (no dequantize round trip)."""

from __future__ import annotations

import numpy as np

from ...qtensor import quantize_per_tensor
from ..activation import flat_shape
from ..module import Module
from ._state import load_qparams, save_qparams
from ._ops import apply_table, out_qparams, q_input, storage, unary_table, wrap

__all__ = ["ReLU", "ReLU6", "Hardswish", "Dropout", "Flatten"]


class ReLU(Module):
    """max(q, zero_point): the output keeps the input's qparams."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = q_input(x, "ReLU")
        q, _, nhwc = storage(x)
        zp = x.q_zero_point()
        return wrap(np.maximum(q, q.dtype.type(zp)), x.q_scale(), zp, x.dtype, nhwc)

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
        six = quantize_per_tensor(np.array([6.0], np.float32), s, zp, x.dtype).int_repr()[0]
        return wrap(np.clip(q, q.dtype.type(zp), six), s, zp, x.dtype, nhwc)

    @classmethod
    def from_float(cls, mod):
        return cls(getattr(mod, "inplace", False))


def _hardswish(v: np.ndarray) -> np.ndarray:
    return v * np.minimum(np.maximum(v + np.float32(3), np.float32(0)), np.float32(6)) / np.float32(6)


class Hardswish(Module):
    """x * relu6(x + 3) / 6, requantized to (scale, zero_point)."""

    def __init__(self, scale: float = 1.0, zero_point: int = 0):
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def forward(self, x):
        x = q_input(x, "Hardswish")
        q, _, nhwc = storage(x)
        s, zp = out_qparams(self.scale, self.zero_point, x.dtype)
        table = unary_table(_hardswish, x.q_scale(), x.q_zero_point(), x.dtype, s, zp)
        return wrap(apply_table(table, q, x.dtype), s, zp, x.dtype, nhwc)

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
