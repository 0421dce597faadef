"""Float LayerNorm (the native kernel), mirroring torch.nn.LayerNorm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _C
from .linear import _float_input
from .module import Module

__all__ = ["LayerNorm"]


def layer_norm(
    x: np.ndarray, normalized_shape: tuple[int, ...], weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape)
    dimensions, biased variance, float32, by the native kernel (``_C.layer_norm_f32``:
    corrected two-pass sums in one fixed order, the same bits on every ISA)."""
    nd = len(normalized_shape)
    if x.shape[x.ndim - nd :] != normalized_shape or x.ndim < nd:
        raise ValueError(
            f"LayerNorm over {list(normalized_shape)} expects an input whose last dimensions are "
            f"{list(normalized_shape)}, got shape {x.shape}"
        )
    n = math.prod(normalized_shape)
    w = None if weight is None else np.ascontiguousarray(weight, dtype=np.float32)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    return _C.layer_norm_f32(np.ascontiguousarray(x, dtype=np.float32), n, w, b, np.float32(eps))


class LayerNorm(Module):
    """Normalizes over the trailing ``normalized_shape`` dimensions; ``weight`` (ones) and
    ``bias`` (zeros) when ``elementwise_affine`` (``bias=False`` drops the bias)."""

    def __init__(
        self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or any(int(d) <= 0 for d in shape):
            raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.normalized_shape = tuple(int(d) for d in shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        affine = self.elementwise_affine
        self.register_parameter("weight", np.ones(self.normalized_shape, np.float32) if affine else None)
        self.register_parameter("bias", np.zeros(self.normalized_shape, np.float32) if affine and bias else None)

    def forward(self, x: Any) -> np.ndarray:
        return layer_norm(_float_input(x, "LayerNorm"), self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
