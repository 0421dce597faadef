"""Float Linear (the native float32 GEMM), mirroring torch.nn.Linear."""

from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..qtensor import QTensor
from .module import Module

__all__ = ["Linear"]


def _float_input(x: object, layer: str) -> np.ndarray:
    if type(x) is np.ndarray and x.dtype == np.float32:
        return x  # the common case first: it runs on every call
    if isinstance(x, QTensor):
        raise TypeError(
            f"{layer} is a float layer but got a QTensor; put a DeQuantStub before it, "
            "or convert the model so this layer is quantized"
        )
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach") and type(x).__module__.startswith("torch"):
            raise TypeError(
                f"{layer} expects a numpy.ndarray, got a torch.Tensor: pass x.detach().numpy() "
                "(npquant computes on NumPy arrays)"
            )
        raise TypeError(f"{layer} expects a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer} expects a float array, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features), float32."""

    # Parameters (Module keeps them in _parameters).
    weight: np.ndarray
    bias: np.ndarray | None

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be positive, got {in_features}, {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(in_features)  # torch.nn.Linear's default init range
        self.register_parameter("weight", rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32))
        self.register_parameter("bias", rng.uniform(-bound, bound, out_features).astype(np.float32) if bias else None)

    def forward(self, x: object) -> np.ndarray:
        x = _float_input(x, "Linear")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects last dimension {self.in_features}, got shape {x.shape}")
        # the native float32 GEMM: every output one fma chain over in_features in order,
        # the same bits on every ISA (NumPy's BLAS would pick its own order per CPU)
        w = np.ascontiguousarray(self.weight, dtype=np.float32)
        b = None if self.bias is None else np.ascontiguousarray(self.bias, dtype=np.float32)
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        y: np.ndarray = _C.linear_f32(x2, w, b)
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
