"""Dynamic quantized Linear: float in, float out, int8 inside (like torch.ao.nn.quantized.dynamic.Linear)."""

from __future__ import annotations

import numpy as np

from .... import _C
from ...._dtypes import qint8
from ...linear import Linear as FloatLinear
from ...linear import _float_input
from ...module import Module
from .._convert import quantize_weight, weight_observer
from .._packed import LinearWeights, quantize_weight_symmetric

__all__ = ["Linear"]


def _per_token(qconfig) -> bool:
    """Whether a qconfig asks for per-row (per-token) dynamic activation qparams: its
    activation factory makes an observer with a per-channel qscheme."""
    factory = getattr(qconfig, "activation", None)
    if factory is None:
        return False
    return getattr(factory(), "qscheme", None) in ("per_channel_affine", "per_channel_symmetric")


class Linear(LinearWeights, Module):
    """Activations are quantized per call (full 8-bit range, PyTorch's choose_qparams
    rule; ``per_row=True`` for one scale per row), weights are int8 symmetric.

    ``reduce_range=True`` quantizes activations to [0, 127], as PyTorch's x86/fbgemm
    dynamic Linear does: with the same weights its outputs equal torch's bit for bit
    (on every x86 CPU: 7-bit activations never saturate vpmaddubsw). The qconfig
    ``npquant.reduce_range_dynamic_qconfig`` makes quantize_dynamic set it."""

    _OUTPUT_QPARAMS = False  # its state dict has torch's scale 1.0 / zero_point 0, unused
    reduce_range = False  # files saved before the option existed load with the 8-bit range

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_: bool = True,
        dtype=qint8,
        per_row: bool = False,
        reduce_range: bool = False,
    ):
        super().__init__()
        if dtype is not qint8:
            raise TypeError(
                "dynamic quantized Linear weights are npquant.qint8; for float16 weights use "
                "npquant.nn.quantized.dynamic.LinearFP16 (what quantize_dynamic(..., "
                "dtype=npquant.float16) builds)"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.per_row = bool(per_row)
        self.reduce_range = bool(reduce_range)
        w = quantize_weight_symmetric(np.zeros((out_features, in_features), np.float32))
        self.set_weight_bias(w, np.zeros(out_features, np.float32) if bias_ else None)

    @classmethod
    def from_float(cls, mod, per_channel: bool = True, per_row: bool = False):
        """Quantizes a float npquant.nn.Linear's weights (symmetric int8, per output
        channel by default; the weight observer of ``mod.qconfig`` when one is set).
        Activations get one scale per row (token) with ``per_row=True`` or when the
        qconfig's activation is per channel (npquant.qconfig.per_token_dynamic_qconfig)."""
        if not isinstance(mod, FloatLinear):
            raise TypeError(f"from_float expects an npquant.nn.Linear, got {type(mod).__name__}")
        qconfig = getattr(mod, "qconfig", None)
        per_row = per_row or _per_token(qconfig)
        if qconfig is not None and getattr(qconfig, "weight", None) is not None:
            qw = quantize_weight(mod.weight, weight_observer(mod))
        else:
            qw = quantize_weight_symmetric(mod.weight, per_channel=per_channel)
        q = cls(
            mod.in_features,
            mod.out_features,
            mod.bias is not None,
            per_row=per_row,
            reduce_range=_activation_reduce_range(qconfig),
        )
        q.set_weight_bias(qw, mod.bias)
        return q

    def forward(self, x):
        x = _float_input(x, "dynamic quantized Linear")
        shape = x.shape
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"dynamic quantized Linear expects last dimension {self.in_features}, got shape {shape}")
        x2 = x if x.ndim == 2 else x.reshape(-1, self.in_features)
        y = _C.linear_dynamic(
            np.ascontiguousarray(x2), self._packed_params.packed, self.per_row, bool(self.reduce_range)
        )
        return y if x.ndim == 2 else y.reshape(shape[:-1] + (self.out_features,))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, per_row={self.per_row}" + (
            ", reduce_range=True" if self.reduce_range else ""
        )


def _activation_reduce_range(qconfig) -> bool:
    """True when the qconfig's activation observer quantizes dynamic activations to
    [0, 127] (quant_max 127, or reduce_range=True); other ranges than [0, 255] raise."""
    act = getattr(qconfig, "activation", None) if qconfig is not None else None
    if act is None:
        return False
    obs = act()
    if getattr(obs, "reduce_range", False):
        return True
    lo, hi = getattr(obs, "quant_min", None), getattr(obs, "quant_max", None)
    if (lo, hi) in ((None, None), (0, 255)):
        return False
    if (lo, hi) == (0, 127):
        return True
    raise ValueError(
        f"dynamic Linear quantizes activations to [0, 255], or [0, 127] (reduce_range); "
        f"the qconfig's activation observer asks for [{lo}, {hi}]"
    )
