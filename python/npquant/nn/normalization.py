"""Float LayerNorm (NumPy), mirroring torch.nn.LayerNorm."""

from __future__ import annotations

from typing import Any

import numpy as np

from .linear import _float_input
from .module import Module

__all__ = ["LayerNorm"]


def layer_norm(
    x: np.ndarray, normalized_shape: tuple[int, ...], weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape)
    dimensions; biased variance from a second pass, all in float32 (NumPy's pairwise
    sums: within 1e-6 relative of torch's Welford)."""
    nd = len(normalized_shape)
    if x.shape[x.ndim - nd :] != normalized_shape or x.ndim < nd:
        raise ValueError(
            f"LayerNorm over {list(normalized_shape)} expects an input whose last dimensions are "
            f"{list(normalized_shape)}, got shape {x.shape}"
        )
    axes = tuple(range(x.ndim - nd, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float32)  # NumPy's pairwise sums
    y: np.ndarray = x - mean
    var = np.square(y).mean(axis=axes, keepdims=True, dtype=np.float32)  # two-pass, biased
    y *= np.float32(1) / np.sqrt(var + np.float32(eps))
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y


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
