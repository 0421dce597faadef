"""Static quantized Linear: quint8 QTensor in, quint8 QTensor out (like torch.ao.nn.quantized.Linear)."""

from __future__ import annotations

import numpy as np

from ... import _C
from ..._dtypes import qint8
from ...qtensor import QTensor, quantize_per_tensor
from ..container import Sequential
from ..module import Module
from ._ops import OutputQParams, quint8_input
from ._packed import LinearWeights

__all__ = ["Linear", "LinearReLU"]


class Linear(LinearWeights, OutputQParams, Module):
    """int8 Linear with requantization: y_q = requant(x_q @ w_q.T + bias)."""

    _FUSED_RELU = False

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype=qint8):
        super().__init__()
        if dtype is not qint8:
            raise TypeError("quantized Linear weights are npquant.qint8")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.scale = 1.0
        self.zero_point = 0
        w = quantize_per_tensor(np.zeros((out_features, in_features), np.float32), 1.0, 0, qint8)
        self.set_weight_bias(w, np.zeros(out_features, np.float32) if bias_ else None)

    @classmethod
    def from_float(cls, mod):
        """From a prepared, calibrated float Linear (or fused LinearReLU): weights
        quantized by its qconfig's weight observer, output qparams from its
        activation observer."""
        from ._convert import activation_qparams, quantize_weight, weight_observer

        lin = mod[0] if isinstance(mod, Sequential) else mod
        qweight = quantize_weight(lin.weight, weight_observer(mod))
        q = cls(lin.in_features, lin.out_features, lin.bias is not None)
        q.set_weight_bias(qweight, lin.bias)
        q.scale, q.zero_point = activation_qparams(mod)
        return q

    def forward(self, x) -> QTensor:
        x = quint8_input(x, type(self).__name__)
        q = x.int_repr()
        if q.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects last dimension {self.in_features}, got shape {x.shape}")
        scale, zp, fscale = self._output_qparams()
        q2 = q if q.ndim == 2 else q.reshape(-1, self.in_features)
        y = _C.linear_static(
            np.ascontiguousarray(q2),
            self._packed_params.packed,
            x.q_scale(),
            x.q_zero_point(),
            scale,
            zp,
            self._FUSED_RELU,
        )
        return QTensor._trusted(y if q.ndim == 2 else y.reshape(q.shape[:-1] + (self.out_features,)), fscale, zp)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"scale={self.scale}, zero_point={self.zero_point}"
        )


class LinearReLU(Linear):
    """Linear followed by ReLU, fused into the requantization clamp."""

    _FUSED_RELU = True
