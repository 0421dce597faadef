"""Dynamic quantized MultiheadAttention: the input and output projections run as
dynamic int8 Linear layers; the attention itself (scores, softmax, weighted sum) stays float.

torch has no such module: its ``quantize_dynamic(model, {nn.Linear})`` leaves attention
in float (``out_proj`` is a NonDynamicallyQuantizableLinear and the input projection a
bare parameter). npquant does the same by default and quantizes attention only when
``nn.MultiheadAttention`` is named in the qconfig_spec (docs/encoder.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...linear import Linear as FloatLinear
from ...module import Module
from ...transformer import MultiheadAttention as FloatMHA
from .linear import Linear

__all__ = ["MultiheadAttention"]


class MultiheadAttention(FloatMHA):
    """State dict: ``in_proj._packed_params.*`` (3E x E int8 weight, float bias) and
    ``out_proj._packed_params.*``, as two dynamic quantized Linear layers."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        per_row: bool = False,
    ) -> None:
        Module.__init__(self)
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim = self.vdim = self.embed_dim
        self._qkv_same_embed_dim = True
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self.in_proj = Linear(self.embed_dim, 3 * self.embed_dim, bias, per_row=per_row)
        self.out_proj = Linear(self.embed_dim, self.embed_dim, bias, per_row=per_row)  # type: ignore[assignment]

    @classmethod
    def from_float(cls, mod: Any) -> MultiheadAttention:
        """From a float npquant.nn.MultiheadAttention: both projections quantized with
        its qconfig (per-channel weights and per-token activations with
        per_token_dynamic_qconfig, as for Linear)."""
        if not isinstance(mod, FloatMHA) or isinstance(mod, MultiheadAttention):
            raise TypeError(f"from_float expects an npquant.nn.MultiheadAttention, got {type(mod).__name__}")
        e = mod.embed_dim
        inp = FloatLinear(e, 3 * e, bias=mod.in_proj_bias is not None)
        inp.weight, inp.bias = mod.in_proj_weight, mod.in_proj_bias
        out = FloatLinear(e, e, bias=mod.out_proj.bias is not None)
        out.weight, out.bias = mod.out_proj.weight, mod.out_proj.bias
        q = cls(e, mod.num_heads, mod.dropout, mod.in_proj_bias is not None, mod.batch_first)
        for lin in (inp, out):
            lin.qconfig = getattr(mod, "qconfig", None)
        q.in_proj = Linear.from_float(inp)
        q.out_proj = Linear.from_float(out)
        return q

    def _project_in(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, self_attention: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = self.embed_dim
        if self_attention:
            qkv = self.in_proj(q)
            return qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
        # cross attention: each input through the whole projection, keeping its third
        return self.in_proj(q)[..., :e], self.in_proj(k)[..., e : 2 * e], self.in_proj(v)[..., 2 * e :]

    def _project_out(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.out_proj(x)
        return result
