"""NumPy float modules mirroring torch.nn, plus the quantized ones (npquant.nn.quantized)."""

from .linear import Linear
from .module import Module

from . import quantized  # noqa: E402  (npquant.nn.quantized, npquant.nn.quantized.dynamic)

__all__ = ["Module", "Linear", "quantized"]
