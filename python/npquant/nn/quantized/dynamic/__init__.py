"""Dynamic quantized modules (float in, float out)."""

from .linear import Linear
from .transformer import MultiheadAttention

__all__ = ["Linear", "MultiheadAttention"]
