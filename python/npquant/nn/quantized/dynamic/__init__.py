"""Dynamic quantized modules (float in, float out)."""

from .linear import Linear

__all__ = ["Linear"]
