"""Float MultiheadAttention and TransformerEncoderLayer (NumPy, inference), mirroring torch.nn.

State dicts use torch's keys: ``in_proj_weight`` (3E, E), ``in_proj_bias`` (3E,),
``out_proj.weight`` / ``out_proj.bias``; the encoder layer adds ``self_attn.*``,
``linear1.*``, ``linear2.*``, ``norm1.*``, ``norm2.*``.

``out_proj`` is a ``NonDynamicallyQuantizableLinear`` as in torch, so
``quantize_dynamic(model, {nn.Linear})`` leaves attention in float exactly as torch
does; put ``nn.MultiheadAttention`` in the qconfig_spec to quantize its input and
output projections as well (npquant.nn.quantized.dynamic.MultiheadAttention).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _C
from .activation import GELU, Dropout, ReLU
from .linear import Linear, _float_input
from .module import Module, _to_numpy
from .normalization import LayerNorm

__all__ = ["MultiheadAttention", "NonDynamicallyQuantizableLinear", "TransformerEncoderLayer"]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class NonDynamicallyQuantizableLinear(Linear):
    """MultiheadAttention's ``out_proj``: a Linear that quantize_dynamic's type lookup
    skips unless its parent MultiheadAttention is quantized as a whole (as in torch)."""


# ---------------------------------------------------------------- masks
def _bool_or_float_mask(m: Any, what: str) -> np.ndarray:
    """A mask as an additive float32 array: bool True (masked out) -> -inf, floats as given."""
    arr = _to_numpy(m)
    if arr.dtype == np.bool_:
        return np.where(arr, np.float32(-np.inf), np.float32(0))
    if arr.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: {what} must be a bool or float array, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _attention_bias(
    attn_mask: Any, key_padding_mask: Any, n: int, heads: int, tgt: int, src: int, unbatched: bool
) -> np.ndarray | None:
    """The additive bias of shape broadcastable to (N, H, L, S), or None."""
    bias = None
    if attn_mask is not None:
        am = _bool_or_float_mask(attn_mask, "attn_mask")
        if am.shape == (tgt, src):
            bias = am[None, None]
        elif am.shape == (n * heads, tgt, src):
            bias = am.reshape(n, heads, tgt, src)
        else:
            raise ValueError(
                f"MultiheadAttention: attn_mask must have shape ({tgt}, {src}) or "
                f"({n * heads}, {tgt}, {src}) (batch * num_heads, L, S), got {am.shape}"
            )
    if key_padding_mask is not None:
        kp = _bool_or_float_mask(key_padding_mask, "key_padding_mask")
        want = (src,) if unbatched else (n, src)
        if kp.shape != want:
            raise ValueError(
                f"MultiheadAttention: key_padding_mask must have shape {want} "
                f"({'S' if unbatched else 'batch, S'}), got {kp.shape}"
            )
        kb = kp.reshape(n, 1, 1, src)
        bias = kb if bias is None else bias + kb
    return bias


def _check_attention_input(x: Any, what: str, embed: int, batched: bool | None) -> np.ndarray:
    arr = _float_input(x, f"MultiheadAttention {what}")
    if arr.ndim not in (2, 3) or arr.shape[-1] != embed:
        raise ValueError(
            f"MultiheadAttention: {what} must be (L, N, {embed}), (N, L, {embed}) with batch_first, "
            f"or unbatched (L, {embed}), its last dimension embed_dim={embed}; got shape {arr.shape}"
        )
    if batched is not None and (arr.ndim == 3) != batched:
        raise ValueError(
            f"MultiheadAttention: query, key and value must all be batched (3-D) or all "
            f"unbatched (2-D); {what} has shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(
            f"MultiheadAttention: {what} is empty (shape {arr.shape}); attention needs at least one "
            "position and one batch entry"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"MultiheadAttention: {what} contains NaN or Inf")
    return arr


class MultiheadAttention(Module):
    """Scaled dot-product attention over ``num_heads`` heads (inference; dropout ignored).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)``;
    attn_weights is None unless need_weights (averaged over heads by default). Masks:
    bool (True = not allowed to attend) or float (added to the scores).
    key_padding_mask is (N, S); attn_mask is (L, S) or (N * num_heads, L, S)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        rng: Any = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim}, {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ValueError("npquant's MultiheadAttention does not support add_bias_kv or add_zero_attn")
        if (kdim not in (None, embed_dim)) or (vdim not in (None, embed_dim)):
            raise ValueError("npquant's MultiheadAttention needs kdim == vdim == embed_dim (one in_proj_weight)")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim = self.vdim = self.embed_dim
        self._qkv_same_embed_dim = True
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        rng = np.random.default_rng() if rng is None else rng
        e = self.embed_dim
        bound = math.sqrt(6.0 / (e + 3 * e))  # xavier_uniform_ over (3E, E), as torch
        self.register_parameter("in_proj_weight", rng.uniform(-bound, bound, (3 * e, e)).astype(np.float32))
        self.register_parameter("in_proj_bias", np.zeros(3 * e, np.float32) if bias else None)
        self.out_proj = NonDynamicallyQuantizableLinear(e, e, bias=bias, rng=rng)
        if bias:
            self.out_proj.bias = np.zeros(e, np.float32)

    # ---- the two projections (the dynamic quantized subclass replaces them)
    def _project_in(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, self_attention: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, b, e = _f32(self.in_proj_weight), self.in_proj_bias, self.embed_dim
        b = None if b is None else _f32(b)
        if self_attention:  # one (L*N, E) x (E, 3E) product, not one per batch row
            qkv = _C.linear_f32(_f32(q.reshape(-1, e)), w, b).reshape(q.shape[:-1] + (3 * e,))
            return qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
        out = []
        for i, x in enumerate((q, k, v)):
            rows = slice(i * e, (i + 1) * e)
            y = _C.linear_f32(_f32(x.reshape(-1, e)), w[rows], None if b is None else b[rows])
            out.append(y.reshape(x.shape[:-1] + (e,)))
        return out[0], out[1], out[2]

    def _project_out(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.out_proj(x)
        return result

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        e = self.embed_dim
        q = _check_attention_input(query, "query", e, None)
        batched = q.ndim == 3
        k = q if key is query else _check_attention_input(key, "key", e, batched)
        v = k if value is key else _check_attention_input(value, "value", e, batched)
        self_attention = key is query and value is query
        if not batched:
            q, k, v = q[None], k[None], v[None]  # (1, L, E)
        elif not self.batch_first:
            q, k, v = (np.ascontiguousarray(a.transpose(1, 0, 2)) for a in (q, k, v))
        # from here: (N, L, E), C-contiguous, so projections see 2-D views
        n, tgt = q.shape[0], q.shape[1]
        src = k.shape[1]
        if k.shape[0] != n or v.shape[0] != n or v.shape[1] != src:
            raise ValueError(
                f"MultiheadAttention: key and value must have the same length and batch as each "
                f"other and the query's batch; got query {np.shape(query)}, key {np.shape(key)}, "
                f"value {np.shape(value)}"
            )
        if is_causal and attn_mask is None:
            raise ValueError("MultiheadAttention: is_causal=True is a hint that needs attn_mask as well (as in torch)")
        bias = _attention_bias(attn_mask, key_padding_mask, n, self.num_heads, tgt, src, not batched)
        qp, kp, vp = self._project_in(q, k, v, self_attention)
        # softmax((q / sqrt(D)) k^T + mask) v per batch entry and head, in C++: the heads
        # are read in place from the projections (no transposed copies), the mask is added
        # inside the softmax kernel, and the output comes back as (N, L, E)
        ctx, attn = _C.attention_f32(
            qp,
            kp,
            vp,
            self.num_heads,
            np.float32(1.0 / math.sqrt(self.head_dim)),
            None if bias is None else _f32(bias),
            need_weights,
        )
        out = self._project_out(ctx.reshape(n * tgt, e)).reshape(n, tgt, e)
        weights = None
        if need_weights:
            weights = attn.mean(axis=1, dtype=np.float32) if average_attn_weights else attn
        if not batched:
            return out[0], None if weights is None else weights[0]
        if not self.batch_first:
            out = np.ascontiguousarray(out.transpose(1, 0, 2))
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


class TransformerEncoderLayer(Module):
    """Self-attention then feed-forward, each with a residual and LayerNorm (post-norm,
    or pre-norm with ``norm_first=True``); torch's signature and state-dict keys.
    ``activation``: 'relu', 'gelu' or an npquant module (e.g. nn.GELU('tanh')).
    Inference only: dropout is the identity."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Any = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        rng: Any = None,
    ) -> None:
        super().__init__()
        rng = np.random.default_rng() if rng is None else rng
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, rng=rng
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, rng=rng)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, rng=rng)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"activation must be 'relu', 'gelu' or an npquant module, got {activation!r}")
            activation = _ACTIVATIONS[activation]()
        if not isinstance(activation, Module):
            raise TypeError(
                f"activation must be 'relu', 'gelu' or an npquant.nn module, got {type(activation).__name__}"
            )
        self.activation = activation

    def forward(
        self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False
    ) -> np.ndarray:
        x = _float_input(src, "TransformerEncoderLayer")
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            out: np.ndarray = x + self._ff_block(self.norm2(x))
            return out
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        out = self.norm2(x + self._ff_block(x))
        return out

    def _sa_block(self, x: np.ndarray, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> np.ndarray:
        out: np.ndarray = self.self_attn(
            x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False, is_causal=is_causal
        )[0]
        return out

    def _ff_block(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.linear2(self.activation(self.linear1(x)))
        return out
