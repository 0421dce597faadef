"""Linear weights packed for this CPU's kernel, keeping the plain int8 copy.

The plain weights (and their scales) are what gets saved; the packed form is
rebuilt wherever the model is loaded, for whatever ISA runs there.
"""

from __future__ import annotations

import numpy as np

from ... import _C
from ..._dtypes import qint8
from ...qparams import calculate_qparams
from ...qtensor import QTensor, quantize_per_channel
from ..module import Module
from ._state import keyed_errors, load_packed_linear, load_qparams, readonly, save_qparams


class PackedLinearParams:
    __slots__ = ("qweight", "w_scale", "bias", "packed")

    def __init__(self, qweight: QTensor, bias):
        if not isinstance(qweight, QTensor):
            raise TypeError(
                f"weight must be a QTensor of npquant.qint8 (use npquant.quantize_per_channel "
                f"or quantize_per_tensor), got {type(qweight).__name__}"
            )
        if qweight.dtype is not qint8:
            raise TypeError(f"weight must be npquant.qint8, got {qweight.dtype}")
        if qweight.ndim != 2:
            raise ValueError(f"Linear weight must be 2-D (out_features, in_features), got shape {qweight.shape}")
        n, k = qweight.shape
        if k > _C.MAX_K:
            raise ValueError(
                f"in_features={k} exceeds npquant's exact int32 accumulation bound "
                f"{_C.MAX_K}; split the layer along in_features"
            )
        if qweight.qscheme() == "per_tensor_affine":
            zps = np.array([qweight.q_zero_point()])
            scales = np.full(n, qweight.q_scale(), dtype=np.float32)
        else:
            if qweight.q_per_channel_axis() != 0:
                raise ValueError("per-channel Linear weights must be quantized along axis 0 (output channels)")
            zps = qweight.q_per_channel_zero_points()
            scales = qweight.q_per_channel_scales().astype(np.float32)
        if np.any(zps != 0):
            raise ValueError(
                "npquant needs symmetric int8 weights (zero_point 0): quantize them with a "
                "symmetric qscheme (per_tensor_symmetric or per_channel_symmetric)"
            )
        if bias is not None:
            b = np.asarray(bias)
            if hasattr(bias, "detach"):
                b = bias.detach().numpy()
            if b.shape != (n,):
                raise ValueError(f"bias must have shape ({n},), got {b.shape}")
            if not np.all(np.isfinite(b)):
                raise ValueError("bias contains NaN or Inf")
            bias = np.ascontiguousarray(b, dtype=np.float32)
        self.qweight = qweight
        self.w_scale = np.ascontiguousarray(scales)
        self.bias = bias
        self.packed = _C.PackedLinearWeight(np.ascontiguousarray(qweight.int_repr()), self.w_scale, bias)

    def __reduce__(self):
        # Saved as the plain int8 weights; unpickling (or deepcopy) packs them again
        # for the kernel of the CPU that loads them.
        return (PackedLinearParams, (self.qweight, self.bias))

    @property
    def out_features(self) -> int:
        return self.qweight.shape[0]

    @property
    def in_features(self) -> int:
        return self.qweight.shape[1]


def quantize_weight_symmetric(w: np.ndarray, per_channel: bool = True) -> QTensor:
    """int8 symmetric weights with observer math (per output channel by default)."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or Inf")
    if per_channel:
        flat = w.reshape(w.shape[0], -1)
        scale, zp = calculate_qparams(flat.min(axis=1), flat.max(axis=1), -128, 127, symmetric=True)
    else:
        scale, zp = calculate_qparams(w.min(), w.max(), -128, 127, symmetric=True)
        scale, zp = np.full(w.shape[0], scale, np.float32), np.zeros(w.shape[0], np.int64)
    return quantize_per_channel(w, scale, zp, 0, qint8)


class LinearWeights(Module):
    """Mixin of the quantized Linear layers (static and dynamic): int8 weights and
    float bias held as PackedLinearParams, with PyTorch's accessors."""

    in_features: int
    out_features: int
    scale: float  # output qparams (the static layer's; the dynamic layer has none)
    zero_point: int
    _packed_params: PackedLinearParams

    def set_weight_bias(self, w: QTensor, b) -> None:
        params = PackedLinearParams(w, b)
        if params.qweight.shape != (self.out_features, self.in_features):
            raise ValueError(
                f"weight shape {params.qweight.shape} does not match ({self.out_features}, {self.in_features})"
            )
        self._packed_params = params

    def weight(self) -> QTensor:
        return self._packed_params.qweight

    def bias(self):
        return self._packed_params.bias

    # ---- state dict: torch's keys (scale, zero_point, _packed_params.dtype,
    # _packed_params._packed_params = (weight, bias)); the dynamic layer writes
    # scale 1.0 / zero_point 0 as torch's does, and ignores them on load.
    _OUTPUT_QPARAMS = True

    def _save_to_state_dict(self, dest, prefix):
        super()._save_to_state_dict(dest, prefix)
        if self._OUTPUT_QPARAMS:
            save_qparams(dest, prefix, self.scale, self.zero_point)
        else:
            save_qparams(dest, prefix, 1.0, 0)
        dest[prefix + "_packed_params.dtype"] = qint8
        dest[prefix + "_packed_params._packed_params"] = (readonly(self.weight()), readonly(self.bias()))

    def _load_from_state_dict(self, sd, prefix):
        qparams = load_qparams(sd, prefix)
        pair = load_packed_linear(sd, prefix, self.out_features, self.in_features, self.bias() is not None)
        key = prefix + "_packed_params._packed_params"
        params = None if pair is None else keyed_errors(key, PackedLinearParams, *pair)
        if not self._OUTPUT_QPARAMS:
            qparams = {}
        if params is not None:
            qparams["_packed_params"] = params
        return lambda: self.__dict__.update(qparams)
