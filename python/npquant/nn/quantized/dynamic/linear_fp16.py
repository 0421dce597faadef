"""Dynamic float16 Linear: weights stored as float16, computed in float32.

This is torch's ``quantize_dynamic(..., dtype=torch.float16)``: the weights are
rounded to float16 once (halving their memory), and every call multiplies in
float32 with those rounded weights, adding the float32 bias, as fbgemm's fp16
GEMM does. No activation is quantized.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...._dtypes import float16
from ...linear import Linear as FloatLinear
from ...linear import _float_input
from ...module import Module

__all__ = ["LinearFP16"]


def to_float16(w: np.ndarray, what: str) -> np.ndarray:
    """float16 copy of a float weight; refuses values float16 cannot hold (they would be inf)."""
    w = np.asarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what} contains NaN or Inf")
    big = float(np.max(np.abs(w))) if w.size else 0.0
    if big > float(np.finfo(np.float16).max):
        raise ValueError(
            f"{what} has a value of magnitude {big:g}, beyond float16's range "
            f"({float(np.finfo(np.float16).max):g}); quantize this layer to qint8 instead"
        )
    return np.ascontiguousarray(w.astype(np.float16))


def fp16_matmul(w32t: np.ndarray, bias: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """x -> x @ w32t + bias in float32, w32t being the float16 weights upcast and transposed."""
    if bias is None:
        return lambda x: x @ w32t
    return lambda x: np.add(x @ w32t, bias, dtype=np.float32)


class LinearFP16(Module):
    """Dynamic Linear with float16 weights (``quantize_dynamic(model, dtype=npquant.float16)``)."""

    dtype = float16

    def __init__(self, in_features: int, out_features: int, bias_: bool = True):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be positive, got {in_features}, {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.set_weight_bias(
            np.zeros((out_features, in_features), np.float32), np.zeros(out_features, np.float32) if bias_ else None
        )

    @classmethod
    def from_float(cls, mod: FloatLinear) -> LinearFP16:
        if not isinstance(mod, FloatLinear):
            raise TypeError(f"from_float expects an npquant.nn.Linear, got {type(mod).__name__}")
        q = cls(mod.in_features, mod.out_features, mod.bias is not None)
        q.set_weight_bias(mod.weight, mod.bias)
        return q

    def set_weight_bias(self, w: np.ndarray, b: np.ndarray | None) -> None:
        w = np.asarray(w)
        if w.shape != (self.out_features, self.in_features):
            raise ValueError(f"weight shape {w.shape} does not match ({self.out_features}, {self.in_features})")
        if w.dtype.kind != "f":
            raise TypeError(f"weight must be a float array, got dtype {w.dtype}")
        if b is not None:
            b = np.asarray(b)
            if b.shape != (self.out_features,) or b.dtype.kind != "f" or not np.all(np.isfinite(b)):
                raise ValueError(f"bias must be a finite float array of shape ({self.out_features},)")
            b = np.ascontiguousarray(b, dtype=np.float32)
        self.weight16 = to_float16(w, "weight")
        self.bias32 = b
        self.__dict__.pop("_cache_w32t", None)

    def weight(self) -> np.ndarray:
        return self.weight16

    def bias(self) -> np.ndarray | None:
        return self.bias32

    def matmul(self) -> Callable[[np.ndarray], np.ndarray]:
        """The float32 product with the float16 weights (built on first use)."""
        w32t = self.__dict__.get("_cache_w32t")
        if w32t is None:  # a float32 copy, kept between calls (never saved)
            w32t = self.weight16.astype(np.float32).T
            object.__setattr__(self, "_cache_w32t", w32t)
        return fp16_matmul(w32t, self.bias32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _float_input(x, "dynamic float16 Linear")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"dynamic float16 Linear expects last dimension {self.in_features}, got shape {x.shape}")
        return self.matmul()(x)

    # state dict: torch's keys for its float16 dynamic Linear
    def _save_to_state_dict(self, dest: dict[str, Any], prefix: str) -> None:
        super()._save_to_state_dict(dest, prefix)
        dest[prefix + "_packed_params.dtype"] = float16
        dest[prefix + "_packed_params._packed_params"] = (self.weight16, self.bias32)

    def _load_from_state_dict(self, sd: dict[str, Any], prefix: str) -> Callable[[], None] | None:
        pair = sd.get(prefix + "_packed_params._packed_params")
        if pair is None:
            return None
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"state dict entry '{prefix}_packed_params._packed_params' must be (weight, bias)")
        probe = LinearFP16(self.in_features, self.out_features, pair[1] is not None)
        probe.set_weight_bias(*pair)  # validates
        return lambda: self.set_weight_bias(probe.weight16, probe.bias32)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=float16"
