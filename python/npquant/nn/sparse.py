"""Float Embedding and EmbeddingBag (NumPy), mirroring torch.nn.Embedding / EmbeddingBag.

The index checks live here too and are shared with the weight-only quantized
modules (npquant.nn.quantized.Embedding / EmbeddingBag): indices and offsets must
be integer arrays, indices in ``[0, num_embeddings)``, offsets start at 0 and never
decrease. Bad input gets an IndexError / ValueError / TypeError saying what to do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .module import Module, _to_numpy

__all__ = ["Embedding", "EmbeddingBag"]

_MODES = ("sum", "mean", "max")


# ---------------------------------------------------------------- argument checks
def _integer_array(x: Any, what: str, layer: str) -> np.ndarray:
    """x as an int64 array; TypeError for anything but integers (bool included)."""
    if hasattr(x, "detach") and type(x).__module__.startswith("torch"):
        raise TypeError(f"{layer} expects {what} as a numpy.ndarray, got a torch.Tensor: pass x.numpy()")
    arr = np.asarray(x) if isinstance(x, (list, tuple, np.ndarray)) else None
    if arr is None:
        raise TypeError(f"{layer} expects {what} as an integer numpy.ndarray, got {type(x).__name__}")
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        if arr.size == 0 and arr.dtype.kind == "f" and isinstance(x, (list, tuple)):
            return np.zeros(arr.shape, np.int64)  # [] is float64 to NumPy
        raise TypeError(
            f"{layer} expects integer {what} (int32 / int64), got dtype {arr.dtype}; "
            f"convert with {what}.astype(numpy.int64) if they are whole numbers"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_indices(indices: Any, num_embeddings: int, layer: str) -> np.ndarray:
    """int64 indices, every one in [0, num_embeddings) (IndexError naming the first bad one)."""
    idx = _integer_array(indices, "indices", layer)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num_embeddings:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"{layer}: index {bad} is out of range for {num_embeddings} embeddings "
                f"(valid indices are 0..{num_embeddings - 1})"
            )
    return idx


def check_offsets(offsets: Any, n_indices: int, include_last_offset: bool, layer: str) -> np.ndarray:
    """Bag boundaries as an int64 array of B + 1 entries (the last is n_indices)."""
    off = _integer_array(offsets, "offsets", layer)
    if off.ndim != 1:
        raise ValueError(f"{layer}: offsets must be 1-D, got shape {off.shape}")
    if include_last_offset and off.size == 0:
        raise ValueError(
            f"{layer}: with include_last_offset=True, offsets needs at least one entry "
            f"(the end of the indices, {n_indices})"
        )
    if off.size and off[0] != 0:
        raise ValueError(f"{layer}: offsets must start at 0, got {int(off[0])}")
    if off.size > 1 and np.any(np.diff(off) < 0):
        i = int(np.argmax(np.diff(off) < 0))
        raise ValueError(
            f"{layer}: offsets must not decrease, got {int(off[i])} then {int(off[i + 1])} at positions {i}, {i + 1}"
        )
    if off.size and off[-1] > n_indices:
        raise ValueError(f"{layer}: offset {int(off[-1])} is past the end of the {n_indices} indices")
    if include_last_offset:
        if off[-1] != n_indices:
            raise ValueError(
                f"{layer}: with include_last_offset=True the last offset must be the number of "
                f"indices, {n_indices}, got {int(off[-1])}"
            )
        return off
    return np.append(off, np.int64(n_indices))


def check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"EmbeddingBag mode must be 'sum', 'mean' or 'max', got {mode!r}")
    return mode


def check_padding_idx(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        raise ValueError(f"padding_idx must be within [-{num_embeddings}, {num_embeddings}), got {padding_idx}")
    return p + num_embeddings if p < 0 else p


def bag_inputs(
    layer: str,
    num_embeddings: int,
    input: Any,
    offsets: Any,
    per_sample_weights: Any,
    mode: str,
    include_last_offset: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(indices 1-D, offsets with B + 1 entries, weights 1-D float32 or None), checked.

    2-D input: each row is a bag (offsets must be None); 1-D input needs offsets."""
    idx = check_indices(input, num_embeddings, layer)
    if idx.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{layer}: offsets must be None when input is 2-D (each row is a bag)")
        bags, length = idx.shape
        off = np.arange(bags + 1, dtype=np.int64) * length
        idx = idx.reshape(-1)
    elif idx.ndim == 1:
        if offsets is None:
            raise ValueError(
                f"{layer}: 1-D input needs offsets (the start of each bag); or pass a 2-D input whose rows are the bags"
            )
        off = check_offsets(offsets, idx.size, include_last_offset, layer)
    else:
        raise ValueError(f"{layer}: input must be 1-D (with offsets) or 2-D (bags as rows), got shape {idx.shape}")
    psw = None
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError(f"{layer}: per_sample_weights are only supported with mode='sum', got mode={mode!r}")
        psw = _to_numpy(per_sample_weights)
        if psw.dtype.kind != "f":
            raise TypeError(f"{layer}: per_sample_weights must be a float array, got dtype {psw.dtype}")
        if psw.size != idx.size or psw.ndim != np.ndim(input):
            raise ValueError(
                f"{layer}: per_sample_weights must have the shape of input {np.shape(input)}, got {psw.shape}"
            )
        psw = np.ascontiguousarray(psw.reshape(-1), dtype=np.float32)
        if not np.all(np.isfinite(psw)):
            raise ValueError(f"{layer}: per_sample_weights contain NaN or Inf")
    return idx, off, psw


def reduce_bags(rows: np.ndarray, off: np.ndarray, idx: np.ndarray, mode: str, padding_idx: int | None) -> np.ndarray:
    """Reduces gathered float32 rows (one per index, weights already applied) into bags,
    in index order; padding_idx entries are skipped (and not counted by 'mean')."""
    bags, dim = off.size - 1, rows.shape[1]
    keep = np.ones(idx.size, bool) if padding_idx is None else idx != padding_idx
    bag_of = np.repeat(np.arange(bags), np.diff(off))
    counts = np.bincount(bag_of[keep], minlength=bags)
    out = np.zeros((bags, dim), np.float32)
    if mode == "max":
        out.fill(-np.inf)
        np.maximum.at(out, bag_of[keep], rows[keep])
        out[counts == 0] = 0
        return out
    np.add.at(out, bag_of[keep], rows[keep])
    if mode == "mean":
        nz = counts > 0
        out[nz] = out[nz] / counts[nz, None].astype(np.float32)
    return out


def _weight_matrix(weight: Any, num_embeddings: int | None, embedding_dim: int | None) -> np.ndarray:
    w = _to_numpy(weight)
    if w.ndim != 2:
        raise ValueError(f"embedding weights must be 2-D (num_embeddings, embedding_dim), got shape {w.shape}")
    if num_embeddings is not None and w.shape != (num_embeddings, embedding_dim):
        raise ValueError(f"_weight has shape {w.shape}, expected ({num_embeddings}, {embedding_dim})")
    if w.dtype.kind != "f":
        raise TypeError(f"embedding weights must be a float array, got dtype {w.dtype}")
    return np.ascontiguousarray(w, dtype=np.float32)


def _init_weight(num_embeddings: int, embedding_dim: int, _weight: Any) -> np.ndarray:
    if num_embeddings <= 0 or embedding_dim <= 0:
        raise ValueError(f"num_embeddings and embedding_dim must be positive, got {num_embeddings}, {embedding_dim}")
    if _weight is not None:
        return _weight_matrix(_weight, num_embeddings, embedding_dim)
    return np.random.default_rng().standard_normal((num_embeddings, embedding_dim)).astype(np.float32)


# ---------------------------------------------------------------- modules
class Embedding(Module):
    """A lookup table: ``y = weight[indices]``, shape ``indices.shape + (embedding_dim,)``.

    ``padding_idx``'s row starts as zeros (as in torch; inference never changes it).
    ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` concern training and are kept
    for signature compatibility only (max_norm must be None)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Any = None,
        _freeze: bool = False,
    ) -> None:
        super().__init__()
        if max_norm is not None:
            raise ValueError("npquant's Embedding does not renormalize rows (max_norm must be None)")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        w = _init_weight(self.num_embeddings, self.embedding_dim, _weight)
        if _weight is None and self.padding_idx is not None:
            w[self.padding_idx] = 0
        self.register_parameter("weight", w)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        """An Embedding holding ``embeddings`` (2-D float array) as its weight."""
        w = _weight_matrix(embeddings, None, None)
        return cls(
            w.shape[0],
            w.shape[1],
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight=w,
            _freeze=freeze,
        )

    def forward(self, input: Any) -> np.ndarray:
        idx = check_indices(input, self.num_embeddings, "Embedding")
        w: np.ndarray = self.weight
        rows: np.ndarray = w[idx]
        return rows

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class EmbeddingBag(Module):
    """Sums, averages or takes the max of bags of embeddings without materializing them.

    ``forward(input, offsets=None, per_sample_weights=None)``: a 1-D ``input`` with
    ``offsets`` (start of each bag; with ``include_last_offset=True`` the last entry is
    the end), or a 2-D ``input`` whose rows are the bags. ``per_sample_weights`` scale
    each row (mode 'sum' only). Indices equal to ``padding_idx`` are left out (and not
    counted by 'mean'); an empty bag gives zeros."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: Any = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        if max_norm is not None:
            raise ValueError("npquant's EmbeddingBag does not renormalize rows (max_norm must be None)")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self.mode = check_mode(mode)
        self.include_last_offset = bool(include_last_offset)
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings)
        w = _init_weight(self.num_embeddings, self.embedding_dim, _weight)
        if _weight is None and self.padding_idx is not None:
            w[self.padding_idx] = 0
        self.register_parameter("weight", w)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> EmbeddingBag:
        w = _weight_matrix(embeddings, None, None)
        return cls(
            w.shape[0],
            w.shape[1],
            max_norm,
            norm_type,
            scale_grad_by_freq,
            mode,
            sparse,
            w,
            include_last_offset,
            padding_idx,
        )

    def forward(self, input: Any, offsets: Any = None, per_sample_weights: Any = None) -> np.ndarray:
        idx, off, psw = bag_inputs(
            "EmbeddingBag", self.num_embeddings, input, offsets, per_sample_weights, self.mode, self.include_last_offset
        )
        rows = self.weight[idx]
        if psw is not None:
            rows = rows * psw[:, None]
        return reduce_bags(rows, off, idx, self.mode, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}{pad}"
