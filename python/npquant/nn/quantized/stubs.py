"""Quantize / DeQuantize: what QuantStub / DeQuantStub become at convert."""

from __future__ import annotations

from ..._dtypes import as_qdtype, quint8
from ...qtensor import QTensor, quantize_per_tensor
from ..linear import _float_input
from ..module import Module
from ._state import load_qparams, save_qparams

__all__ = ["Quantize", "DeQuantize"]


class Quantize(Module):
    """float array -> QTensor at fixed (scale, zero_point)."""

    def __init__(self, scale: float, zero_point: int, dtype=quint8):
        super().__init__()
        self.scale, self.zero_point, self.dtype = float(scale), int(zero_point), as_qdtype(dtype)

    def forward(self, x):
        if isinstance(x, QTensor):
            raise TypeError("Quantize got a QTensor: the data is already quantized (two QuantStubs in a row?)")
        return quantize_per_tensor(_float_input(x, "Quantize"), self.scale, self.zero_point, self.dtype)

    # state dict: torch's keys and layout, scale (1,) float32 and zero_point (1,) int64
    def _save_to_state_dict(self, dest, prefix):
        super()._save_to_state_dict(dest, prefix)
        save_qparams(dest, prefix, self.scale, self.zero_point, shape=(1,))

    def _load_from_state_dict(self, sd, prefix):
        qparams = load_qparams(sd, prefix, self.dtype)
        return lambda: self.__dict__.update(qparams)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams, observer_of

        scale, zp = activation_qparams(mod)
        return cls(scale, zp, getattr(observer_of(mod), "dtype", quint8))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, zero_point={self.zero_point}, dtype={self.dtype}"


class DeQuantize(Module):
    """QTensor -> float32 array (logical NCHW order)."""

    def forward(self, x):
        if not isinstance(x, QTensor):
            raise TypeError(
                f"DeQuantize expects a QTensor, got {type(x).__name__}: the data is already "
                "float here (is a QuantStub missing earlier, or a DeQuantStub repeated?)"
            )
        return x.dequantize()

    @classmethod
    def from_float(cls, mod):
        return cls()
