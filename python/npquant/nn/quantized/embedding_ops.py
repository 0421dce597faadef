"""Weight-only quantized Embedding and EmbeddingBag (float out), like torch.ao.nn.quantized's.

Weights are quantized per row with a float scale and a float zero point
(torch's ``per_channel_affine_float_qparams``): 8-bit (``npquant.quint8``) or 4-bit
(``npquant.quint4x2``, packed two per byte for the kernel). The lookup and the bag
reduction run in C++ (csrc/npquant/ops/embedding.cc), whose numerics are torch's
packed ones: a row's value is ``fmaf(scale, q, bias)`` with ``bias = -(scale * zero_point)``
(both rounded to float16 for 4-bit tables, as torch's prepack does), so Embedding
equals torch's quantized Embedding bit for bit given the same qparams.

State dicts use torch's keys: ``_packed_params.dtype`` and ``_packed_params._packed_weight``
(a ``RowwiseQTensor``: codes, scales, float zero points).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _C
from ..._dtypes import QDType, as_qdtype, quint4x2, quint8
from ..module import Module
from ..sparse import Embedding as FloatEmbedding
from ..sparse import EmbeddingBag as FloatEmbeddingBag
from ..sparse import bag_inputs, check_indices, check_mode, check_padding_idx

__all__ = ["RowwiseQTensor", "EmbeddingPackedParams", "Embedding", "EmbeddingBag", "quantize_rowwise"]

FLOAT_QPARAMS = "per_channel_affine_float_qparams"
_MODE_CODE = {"sum": 0, "mean": 1, "max": 2}


class RowwiseQTensor:
    """A row-wise quantized 2-D weight with float zero points (torch's
    per_channel_affine_float_qparams tensor): codes (uint8, one per element, 0..255 or
    0..15), float32 scales and zero points, one per row."""

    __slots__ = ("_q", "_scale", "_zp", "_dtype")

    def __init__(self, int_repr: Any, scales: Any, zero_points: Any, dtype: Any = quint8) -> None:
        dt = as_qdtype(dtype)
        if dt not in (quint8, quint4x2):
            raise TypeError(f"row-wise embedding weights are npquant.quint8 or npquant.quint4x2, got {dt}")
        q = np.asarray(int_repr)
        if q.ndim != 2 or q.dtype != np.uint8:
            raise TypeError(
                f"codes must be a 2-D uint8 array (num_embeddings, embedding_dim), got {q.dtype} of shape {q.shape}"
            )
        if q.size and int(q.max()) > dt.qmax:
            raise ValueError(f"codes exceed {dt.qmax}, the largest {dt.name} code")
        s = np.ascontiguousarray(scales, dtype=np.float32).reshape(-1)
        z = np.ascontiguousarray(zero_points, dtype=np.float32).reshape(-1)
        if s.shape != (q.shape[0],) or z.shape != (q.shape[0],):
            raise ValueError(f"need one scale and one zero point per row ({q.shape[0]}), got {s.size} and {z.size}")
        if not (np.all(np.isfinite(s)) and np.all(s > 0) and np.all(np.isfinite(z))):
            raise ValueError("scales must be positive and finite, zero points finite")
        self._q, self._scale, self._zp, self._dtype = np.ascontiguousarray(q), s, z, dt

    @property
    def dtype(self) -> QDType:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._q.shape)

    def int_repr(self) -> np.ndarray:
        return self._q

    def q_per_channel_scales(self) -> np.ndarray:
        return self._scale

    def q_per_channel_zero_points(self) -> np.ndarray:
        return self._zp

    def q_per_channel_axis(self) -> int:
        return 0

    def qscheme(self) -> str:
        return FLOAT_QPARAMS

    def dequantize(self) -> np.ndarray:
        """Each row as the lookup returns it (torch's embedding_byte / embedding_4bit values)."""
        return kernel_table(self).lookup(np.arange(self._q.shape[0], dtype=np.int64))

    def __repr__(self) -> str:
        return f"RowwiseQTensor(shape={self.shape}, dtype={self._dtype})"


def quantize_rowwise(weight: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, dtype: QDType) -> RowwiseQTensor:
    """Codes = clamp(rint(w * fl(1 / scale) + zero_point), qmin, qmax), in float32, per row."""
    w = np.asarray(weight, np.float32)
    inv = (np.float32(1) / scales.astype(np.float32))[:, None]
    q = np.rint(w * inv + zero_points.astype(np.float32)[:, None])
    return RowwiseQTensor(np.clip(q, dtype.qmin, dtype.qmax).astype(np.uint8), scales, zero_points, dtype)


class _KernelTable:
    """The weight as the C++ kernel reads it: codes (4-bit: two per byte, element 2j in
    the low nibble), scale and bias per row."""

    __slots__ = ("codes", "bits", "dim", "scale", "bias")

    def __init__(self, w: RowwiseQTensor) -> None:
        q = w.int_repr()
        self.dim = q.shape[1]
        s, z = w.q_per_channel_scales(), w.q_per_channel_zero_points()
        bias = -(s * z)
        if w.dtype is quint4x2:
            padded = q if self.dim % 2 == 0 else np.pad(q, ((0, 0), (0, 1)))
            self.codes = np.ascontiguousarray(padded[:, 0::2] | (padded[:, 1::2] << 4), dtype=np.uint8)
            self.bits = 4
            s, bias = s.astype(np.float16).astype(np.float32), bias.astype(np.float16).astype(np.float32)
        else:
            self.codes, self.bits = q, 8
        self.scale = np.ascontiguousarray(s, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)

    def bags(
        self, idx: np.ndarray, off: np.ndarray, psw: np.ndarray | None, mode: str, padding_idx: int | None
    ) -> np.ndarray:
        out: np.ndarray = _C.embedding_bag_rowwise(
            self.codes,
            self.bits,
            self.dim,
            self.scale,
            self.bias,
            idx,
            off,
            psw,
            _MODE_CODE[mode],
            -1 if padding_idx is None else padding_idx,
        )
        return out

    def lookup(self, idx: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
        out = self.bags(flat, np.arange(flat.size + 1, dtype=np.int64), None, "sum", None)
        return out.reshape(idx.shape + (self.dim,))


def kernel_table(w: RowwiseQTensor) -> _KernelTable:
    return _KernelTable(w)


class EmbeddingPackedParams(Module):
    """Holds the row-wise weight (plain codes, saved) and its kernel form (a cache)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = quint8) -> None:
        super().__init__()
        self.dtype = as_qdtype(dtype)
        if self.dtype not in (quint8, quint4x2):
            raise TypeError(f"quantized embeddings are npquant.quint8 or npquant.quint4x2, got {self.dtype}")
        n, d = int(num_embeddings), int(embedding_dim)
        self.set_weight(
            RowwiseQTensor(np.zeros((n, d), np.uint8), np.ones(n, np.float32), np.zeros(n, np.float32), self.dtype)
        )

    def set_weight(self, w: RowwiseQTensor) -> None:
        if not isinstance(w, RowwiseQTensor):
            raise TypeError(f"embedding weights must be a RowwiseQTensor, got {type(w).__name__}")
        self.dtype = w.dtype
        self.codes, self.scales, self.zero_points = (
            w.int_repr(),
            w.q_per_channel_scales(),
            w.q_per_channel_zero_points(),
        )
        self._cache_table = _KernelTable(w)

    def weight(self) -> RowwiseQTensor:
        return RowwiseQTensor(self.codes, self.scales, self.zero_points, self.dtype)

    @property
    def table(self) -> _KernelTable:
        t = self.__dict__.get("_cache_table")
        if t is None:  # after npquant.load: rebuilt from the saved codes
            t = self._cache_table = _KernelTable(self.weight())
        return t

    def _save_to_state_dict(self, dest: Any, prefix: str) -> None:
        dest[prefix + "dtype"] = self.dtype
        dest[prefix + "_packed_weight"] = self.weight()

    def _load_from_state_dict(self, sd: Any, prefix: str) -> Any:
        key = prefix + "_packed_weight"
        w = sd.get(key)
        if w is None:
            return None
        if not isinstance(w, RowwiseQTensor):
            raise TypeError(
                f"state dict entry '{key}' must be a row-wise quantized weight "
                f"(per_channel_affine_float_qparams), got {type(w).__name__}"
            )
        rows, dim = self.codes.shape
        if w.dtype is quint4x2 and dim % 2 and w.shape == (rows, dim + 1):
            # torch's 4-bit tables of odd width unpack with the padding nibble as a column
            w = RowwiseQTensor(w.int_repr()[:, :dim], w.q_per_channel_scales(), w.q_per_channel_zero_points(), quint4x2)
        if w.shape != tuple(self.codes.shape):
            raise ValueError(
                f"shape mismatch for '{key}': model has {tuple(self.codes.shape)}, state dict has {w.shape}"
            )
        return lambda: self.set_weight(w)

    def forward(self, x: Any) -> Any:
        return x


def _weight_observer(mod: Any) -> Any:
    from ...observers import default_float_qparams_observer, make_observer

    qconfig = getattr(mod, "qconfig", None)
    factory = qconfig.weight if qconfig is not None and qconfig.weight is not None else default_float_qparams_observer
    obs = make_observer(factory, "weight", f"the weight observer of {type(mod).__name__}'s qconfig")
    if getattr(obs, "qscheme", None) != FLOAT_QPARAMS or obs.dtype not in (quint8, quint4x2):
        raise ValueError(
            f"{type(mod).__name__} is quantized weight-only, row-wise, with float zero points: give it "
            "qconfig npquant.qconfig.float_qparams_weight_only_qconfig (8-bit) or "
            "float_qparams_weight_only_qconfig_4bit (4-bit), e.g. quantize_dynamic(model, "
            "{nn.Linear: default_dynamic_qconfig, nn.Embedding: float_qparams_weight_only_qconfig}); "
            f"got a {obs.dtype} {getattr(obs, 'qscheme', '?')} weight observer"
        )
    return obs


def _quantized_weight(mod: Any) -> RowwiseQTensor:
    obs = _weight_observer(mod)
    obs(mod.weight)
    scales, zps = obs.calculate_qparams()
    return quantize_rowwise(mod.weight, scales, zps, obs.dtype)


class Embedding(Module):
    """Weight-only quantized lookup table: float32 rows, 8-bit or 4-bit storage."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: RowwiseQTensor | None = None,
        dtype: Any = quint8,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if self.num_embeddings <= 0 or self.embedding_dim <= 0:
            raise ValueError("num_embeddings and embedding_dim must be positive")
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings)
        self._packed_params = EmbeddingPackedParams(self.num_embeddings, self.embedding_dim, dtype)
        if _weight is not None:
            self.set_weight(_weight)

    @property
    def dtype(self) -> QDType:
        return self._packed_params.dtype

    def set_weight(self, w: RowwiseQTensor) -> None:
        if not isinstance(w, RowwiseQTensor) or w.shape != (self.num_embeddings, self.embedding_dim):
            raise ValueError(
                f"weight must be a RowwiseQTensor of shape ({self.num_embeddings}, "
                f"{self.embedding_dim}), got {getattr(w, 'shape', type(w).__name__)}"
            )
        self._packed_params.set_weight(w)

    def weight(self) -> RowwiseQTensor:
        return self._packed_params.weight()

    @classmethod
    def from_float(cls, mod: Any) -> Embedding:
        """From a float npquant.nn.Embedding; its qconfig's weight observer (default:
        8-bit float_qparams) sets the per-row qparams."""
        if type(mod) is not FloatEmbedding:
            raise TypeError(f"{cls.__name__}.from_float expects an npquant.nn.Embedding, got {type(mod).__name__}")
        return cls(mod.num_embeddings, mod.embedding_dim, mod.padding_idx, _weight=_quantized_weight(mod))

    def forward(self, indices: Any) -> np.ndarray:
        idx = check_indices(indices, self.num_embeddings, "quantized Embedding")
        return self._packed_params.table.lookup(idx)

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, dtype={self.dtype}"


class EmbeddingBag(Embedding):
    """Weight-only quantized EmbeddingBag: sum (with optional per_sample_weights), mean
    or max over bags, in index order, padding_idx left out. (torch's quantized
    EmbeddingBag always sums and ignores padding_idx; npquant follows the float
    module's mode and padding_idx.)"""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "sum",
        sparse: bool = False,
        _weight: RowwiseQTensor | None = None,
        include_last_offset: bool = False,
        dtype: Any = quint8,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx, _weight=_weight, dtype=dtype)
        self.mode = check_mode(mode)
        self.include_last_offset = bool(include_last_offset)

    @classmethod
    def from_float(cls, mod: Any) -> EmbeddingBag:
        if type(mod) is not FloatEmbeddingBag:
            raise TypeError(f"{cls.__name__}.from_float expects an npquant.nn.EmbeddingBag, got {type(mod).__name__}")
        return cls(
            mod.num_embeddings,
            mod.embedding_dim,
            mode=mod.mode,
            _weight=_quantized_weight(mod),
            include_last_offset=mod.include_last_offset,
            padding_idx=mod.padding_idx,
        )

    def forward(self, indices: Any, offsets: Any = None, per_sample_weights: Any = None) -> np.ndarray:
        idx, off, psw = bag_inputs(
            "quantized EmbeddingBag",
            self.num_embeddings,
            indices,
            offsets,
            per_sample_weights,
            self.mode,
            self.include_last_offset,
        )
        return self._packed_params.table.bags(idx, off, psw, self.mode, self.padding_idx)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"
