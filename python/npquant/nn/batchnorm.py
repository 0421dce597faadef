"""Inference BatchNorm (running statistics), with PyTorch's state-dict keys."""

from __future__ import annotations

import numpy as np

from .linear import _float_input
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, over dim 1.

    npquant runs inference only: the running statistics are always used (what
    torch does after ``model.eval()``), whatever ``training`` says.
    """

    _NDIMS: tuple = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        if not track_running_stats:
            raise ValueError(
                "npquant's BatchNorm is inference-only and needs running statistics (track_running_stats=True)"
            )
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = True
        n = self.num_features
        self.register_parameter("weight", np.ones(n, np.float32) if affine else None)
        self.register_parameter("bias", np.zeros(n, np.float32) if affine else None)
        self.register_buffer("running_mean", np.zeros(n, np.float32))
        self.register_buffer("running_var", np.ones(n, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def scale_shift(self):
        """(alpha, beta) with y = x * alpha + beta per channel, float32."""
        invstd = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        w = 1.0 if self.weight is None else self.weight.astype(np.float64)
        b = 0.0 if self.bias is None else self.bias.astype(np.float64)
        alpha = w * invstd
        beta = b - self.running_mean.astype(np.float64) * alpha
        n = self.num_features
        return np.broadcast_to(alpha, n).astype(np.float32), np.broadcast_to(beta, n).astype(np.float32)

    def check_input(self, shape, name: str) -> None:
        if len(shape) not in self._NDIMS or shape[1] != self.num_features:
            raise ValueError(
                f"{name}({self.num_features}) expects a {' or '.join(map(str, self._NDIMS))}-D "
                f"input with {self.num_features} channels in dim 1, got shape {tuple(shape)}"
            )

    def forward(self, x):
        name = type(self).__name__
        x = _float_input(x, name)
        self.check_input(x.shape, name)
        alpha, beta = self.scale_shift()
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        return x * alpha.reshape(bshape) + beta.reshape(bshape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    _NDIMS = (2, 3)


class BatchNorm2d(_BatchNorm):
    _NDIMS = (4,)
