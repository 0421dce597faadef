"""Quantized modules (QTensor in, QTensor out), mirroring torch.ao.nn.quantized."""

from . import dynamic
from .linear import Linear, LinearReLU

__all__ = ["Linear", "LinearReLU", "dynamic"]
