"""QTensor and the quantize / dequantize functions (NumPy in, NumPy out)."""

from __future__ import annotations

from typing import Any, NoReturn, cast

import numpy as np
import numpy.typing as npt

from . import _C
from ._dtypes import QDType, as_qdtype, qint8, quint8

__all__ = ["QTensor", "quantize_per_tensor", "quantize_per_channel", "dequantize", "channel_shuffle"]


def _float_array(x: object, what: str = "input") -> np.ndarray:
    if isinstance(x, QTensor):
        raise TypeError(f"{what} is already a QTensor; call .dequantize() first for a float array")
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, float, int)):
            x = np.asarray(x, dtype=np.float32)
        else:
            raise TypeError(f"{what} must be a numpy.ndarray of float32, got {type(x).__name__}")
    if x.dtype != np.float32:
        if x.dtype.kind == "f":
            x = x.astype(np.float32)
        else:
            raise TypeError(
                f"{what} must be a float array (float32), got dtype {x.dtype}; "
                "integer data is already quantized: wrap it with npquant.QTensor(...)"
            )
    # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
    out: np.ndarray = x if x.flags.c_contiguous else x.copy(order="C")
    return out


def _check_scale(scale: Any) -> float:
    s = np.float32(scale)
    if not (np.isfinite(s) and s > 0 and np.isfinite(np.float32(1) / s)):
        raise ValueError(f"scale must be a positive finite float with a finite reciprocal, got {scale}")
    return float(s)


def _check_zp(zp: Any, dtype: QDType) -> int:
    z = int(zp)
    if z != zp or not dtype.qmin <= z <= dtype.qmax:
        raise ValueError(f"zero_point must be an integer in [{dtype.qmin}, {dtype.qmax}] for {dtype}, got {zp}")
    return z


def _c_order(a: np.ndarray) -> np.ndarray:
    """a itself when C-contiguous, else a C-ordered copy: np.require(a, requirements="C")
    for an ndarray, without NumPy's Python-level wrapper (it runs on every Flatten;
    inside a model, after the convs have evicted the caches, the wrapper took 4-14 us)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


class QTensor:
    """A quantized array: integer values plus (per-tensor or per-channel) qparams.

    Represents ``scale * (q - zero_point)``. Mirrors the parts of a PyTorch
    quantized tensor people use: ``int_repr()``, ``q_scale()``,
    ``q_zero_point()``, ``q_per_channel_scales()``, ``dequantize()``, ``shape``.
    """

    __slots__ = ("_q", "_dtype", "_scale", "_zp", "_axis", "_nhwc")
    _q: np.ndarray
    _dtype: QDType
    _scale: float | np.ndarray  # a float per tensor; float32 scales per channel (axis set)
    _zp: int | np.ndarray  # an int per tensor; int64 zero points per channel
    _axis: int | None
    _nhwc: bool

    def __init__(
        self, int_repr: npt.ArrayLike, scale: Any, zero_point: Any, dtype: object = quint8, axis: int | None = None
    ) -> None:
        dtype = as_qdtype(dtype)
        q = np.asarray(int_repr)
        if q.dtype != dtype.storage:
            raise TypeError(f"int_repr for {dtype} must have dtype {dtype.storage}, got {q.dtype}")
        # Unpickled arrays carry an equal but distinct dtype object, which the C++
        # bindings (identity check) reject: view through the canonical one.
        q = q if q.dtype is dtype.storage else q.view(dtype.storage)
        if axis is None:
            self._scale = _check_scale(scale)
            self._zp = _check_zp(zero_point, dtype)
        else:
            if not -q.ndim <= axis < q.ndim:
                raise ValueError(f"axis {axis} out of range for a {q.ndim}-D array")
            axis %= q.ndim
            sc = np.asarray(scale, dtype=np.float32).reshape(-1)
            zp = np.asarray(zero_point).reshape(-1).astype(np.int64)
            if sc.shape[0] != q.shape[axis] or zp.shape[0] != q.shape[axis]:
                raise ValueError(
                    f"per-channel qparams need {q.shape[axis]} scales and zero points (axis {axis}), "
                    f"got {sc.shape[0]} and {zp.shape[0]}"
                )
            for s in sc:
                _check_scale(s)
            if np.any(zp < dtype.qmin) or np.any(zp > dtype.qmax):
                raise ValueError(f"zero points must lie in [{dtype.qmin}, {dtype.qmax}] for {dtype}")
            self._scale, self._zp = sc, zp
        self._q = q
        self._dtype = dtype
        self._axis = axis
        # Storage order. 4-D activations flowing between quantized conv layers are
        # kept NHWC (channels last) while every public accessor shows PyTorch's
        # logical NCHW order. `_q` holds the physical array.
        self._nhwc = False

    @classmethod
    def from_nhwc(cls, q_nhwc: np.ndarray, scale: Any, zero_point: Any, dtype: object = quint8) -> QTensor:
        """A per-tensor QTensor with logical NCHW shape stored as the given NHWC array."""
        if np.ndim(q_nhwc) != 4:
            raise ValueError(f"from_nhwc needs a 4-D (N, H, W, C) array, got shape {np.shape(q_nhwc)}")
        t = cls(q_nhwc, scale, zero_point, dtype)
        t._nhwc = True
        return t

    @classmethod
    def _trusted(
        cls, q: np.ndarray, scale: float, zero_point: int, dtype: QDType = quint8, nhwc: bool = False
    ) -> QTensor:
        """A per-tensor QTensor from values and qparams the caller has already
        validated (the quantized layers' outputs): no checks, no copies."""
        t = object.__new__(cls)
        t._q, t._dtype, t._scale, t._zp, t._axis, t._nhwc = q, dtype, scale, zero_point, None, nhwc
        return t

    def nhwc(self) -> np.ndarray:
        """The 4-D integer values in NHWC order: the stored array when stored NHWC, else
        a C-contiguous copy (one native pass; NumPy's strided copy of a 3-channel image
        took ten times as long)."""
        if self._q.ndim != 4:
            raise ValueError(f"nhwc() needs a 4-D QTensor, got shape {self.shape}")
        q: np.ndarray = self._q
        if self._nhwc:
            return q
        if q.flags.c_contiguous and q.dtype.itemsize == 1:
            return cast(np.ndarray, _C.nchw_to_nhwc_u8(q.view(np.uint8)).view(q.dtype))
        return cast(np.ndarray, q.transpose(0, 2, 3, 1))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickle / deepcopy rebuild through the constructors, which validate and
        # normalize the stored array
        if self._nhwc:
            return (QTensor.from_nhwc, (self._q, self._scale, self._zp, self._dtype))
        return (QTensor, (self._q, self._scale, self._zp, self._dtype, self._axis))

    @property
    def is_nhwc(self) -> bool:
        return self._nhwc

    # PyTorch-style accessors
    def int_repr(self) -> np.ndarray:
        """Integer values in logical (PyTorch, NCHW for 4-D) order."""
        return self._q.transpose(0, 3, 1, 2) if self._nhwc else self._q

    # (the per-tensor accessors run on every quantized call: no helper calls, no cast())
    def q_scale(self) -> float:
        if self._axis is not None:
            self._need_per_tensor("q_scale")
        return self._scale  # type: ignore[return-value]  # a float when per-tensor

    def q_zero_point(self) -> int:
        if self._axis is not None:
            self._need_per_tensor("q_zero_point")
        return self._zp  # type: ignore[return-value]  # an int when per-tensor

    def q_per_channel_scales(self) -> np.ndarray:
        self._need_per_channel("q_per_channel_scales")
        return cast(np.ndarray, self._scale)

    def q_per_channel_zero_points(self) -> np.ndarray:
        self._need_per_channel("q_per_channel_zero_points")
        return cast(np.ndarray, self._zp)

    def q_per_channel_axis(self) -> int:
        self._need_per_channel("q_per_channel_axis")
        return cast(int, self._axis)

    def qscheme(self) -> str:
        return "per_tensor_affine" if self._axis is None else "per_channel_affine"

    @property
    def dtype(self) -> QDType:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        if self._nhwc:
            n, h, w, c = self._q.shape
            return (n, c, h, w)
        return self._q.shape

    @property
    def ndim(self) -> int:
        return self._q.ndim

    def numel(self) -> int:
        return int(self._q.size)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        return self.shape if dim is None else self.shape[dim]

    def dequantize(self) -> np.ndarray:
        """Float values in logical order: fl(scale * float(q - zero_point))."""
        if self._axis is None and self._dtype is quint8:  # natively, the same arithmetic
            return _C.dequantize_u8(_c_order(self._q), self._scale, self._zp, self._nhwc)
        q = self.int_repr().astype(np.int32)
        if self._axis is None:
            out: np.ndarray = (np.float32(self._scale) * (q - self._zp).astype(np.float32)).astype(np.float32)
            return out
        shape = [1] * q.ndim
        shape[self._axis] = -1
        sc = cast(np.ndarray, self._scale).reshape(shape)
        zp = cast(np.ndarray, self._zp).astype(np.int32).reshape(shape)
        out = (sc * (q - zp).astype(np.float32)).astype(np.float32)
        return out

    def reshape(self, *shape: Any) -> QTensor:
        if self._axis is not None:
            self._need_per_tensor("reshape")
        codes = self._logical_codes().reshape(*shape)
        # per-tensor (checked above), qparams valid since construction: no checks again
        return QTensor._trusted(codes, self._scale, self._zp, self._dtype)  # type: ignore[arg-type]

    def _logical_codes(self) -> np.ndarray:
        """int_repr() C-contiguous: an NHWC-stored tensor's codes transposed natively."""
        q: np.ndarray = self._q
        if self._nhwc and q.dtype.itemsize == 1 and q.flags.c_contiguous and q.shape[3] > 1 < q.shape[1] * q.shape[2]:
            return _C.nhwc_to_nchw_u8(q.view(np.uint8)).view(q.dtype)
        return _c_order(self.int_repr())

    # ---- shape ops (per-tensor): the codes move, the qparams stay, as in PyTorch
    def view(self, *shape: Any) -> QTensor:
        return self.reshape(*shape)

    def contiguous(self) -> QTensor:
        return self

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> QTensor:
        from .nn.activation import flat_shape

        return self.reshape(flat_shape(tuple(self.shape), start_dim, end_dim))

    def _dim(self, dim: int, what: str) -> int:
        nd = self._q.ndim
        if not -nd <= dim < nd:
            raise IndexError(f"{what}: dim {dim} out of range for a {nd}-D QTensor")
        return dim % nd

    def permute(self, *dims: Any) -> QTensor:
        self._need_per_tensor("permute")
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        if sorted(d % self.ndim for d in dims) != list(range(self.ndim)) or len(dims) != self.ndim:
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims")
        perm = tuple(d % self.ndim for d in dims)
        codes = np.require(self.int_repr().transpose(perm), requirements="C")
        return QTensor(codes, self._scale, self._zp, self._dtype)

    def transpose(self, dim0: int, dim1: int) -> QTensor:
        perm = list(range(self.ndim))
        a, b = self._dim(dim0, "transpose"), self._dim(dim1, "transpose")
        perm[a], perm[b] = perm[b], perm[a]
        return self.permute(perm)

    def narrow(self, dim: int, start: int, length: int) -> QTensor:
        """Elements start .. start + length - 1 along dim (a copy; channels-last storage kept)."""
        self._need_per_tensor("narrow")
        dim = self._dim(dim, "narrow")
        scale: float = self._scale  # type: ignore[assignment]  # per-tensor: a float
        zp: int = self._zp  # type: ignore[assignment]  # and an int
        n = self.shape[dim]
        start = start + n if start < 0 else start
        if not (0 <= start <= n and 0 <= length and start + length <= n):
            raise IndexError(f"narrow: [{start}, {start + length}) is outside dim {dim} of size {n}")
        if self._nhwc and dim == 1 and self._q.flags.c_contiguous and self._q.dtype.itemsize == 1:
            q = _C.channel_range_u8(self._q.view(np.uint8), start, length).view(self._q.dtype)
            return QTensor._trusted(q, scale, zp, self._dtype, True)  # (ShuffleNet's chunk)
        if self._nhwc:
            phys = (0, 3, 1, 2)[dim]
            idx = [slice(None)] * 4
            idx[phys] = slice(start, start + length)
            return QTensor._trusted(_c_order(self._q[tuple(idx)]), scale, zp, self._dtype, True)
        idx = [slice(None)] * self.ndim
        idx[dim] = slice(start, start + length)
        return QTensor._trusted(_c_order(self._q[tuple(idx)]), scale, zp, self._dtype)

    def split(
        self, split_size_or_sections: int | np.integer | list[int] | tuple[int, ...], dim: int = 0
    ) -> tuple[QTensor, ...]:
        """Like torch.Tensor.split: pieces of split_size (the last may be smaller), or of the given sizes."""
        dim = self._dim(dim, "split")
        n = self.shape[dim]
        if isinstance(split_size_or_sections, (int, np.integer)):
            step = int(split_size_or_sections)
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
        else:
            sizes = [int(v) for v in split_size_or_sections]
            if sum(sizes) != n or any(v < 0 for v in sizes):
                raise ValueError(f"split: sizes {sizes} do not add up to dim {dim}'s size {n}")
        out, start = [], 0
        for v in sizes:
            out.append(self.narrow(dim, start, v))
            start += v
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[QTensor, ...]:
        """Like torch.Tensor.chunk: pieces of ceil(size / chunks)."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[self._dim(dim, "chunk")]
        return self.split(max(-(-n // chunks), 1), dim)

    def mean(self, dim: int | tuple[int, ...] | list[int] | None = None, keepdim: bool = False) -> QTensor:
        """Mean over dims, output with the input's qparams (PyTorch's quantized mean). Over the
        spatial dims (2, 3) of a 4-D tensor it is quantized AdaptiveAvgPool2d(1), which is
        what PyTorch runs for NCHW-contiguous tensors; other dims: nearbyint of the float
        mean of (q - zp), + zp. (For a channels-last tensor, as its quantized convs return,
        PyTorch dequantizes, averages in float and quantizes again, which rounds some
        .5 means the other way: docs/peers.md.)"""
        self._need_per_tensor("mean")
        dims = tuple(range(self.ndim)) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
        dims = tuple(sorted({self._dim(d, "mean") for d in dims}))
        if self.ndim == 4 and dims == (2, 3):
            from .nn.quantized.pooling import AdaptiveAvgPool2d

            y: QTensor = AdaptiveAvgPool2d(1)(self)
            return y if keepdim else y.reshape(self.shape[0], self.shape[1])
        q = self.int_repr().astype(np.float64) - self._zp
        m = np.rint(q.mean(axis=dims, keepdims=keepdim)) + self._zp
        m = np.clip(m, self._dtype.qmin, self._dtype.qmax).astype(self._dtype.storage)
        return QTensor(np.require(m, requirements="C"), self._scale, self._zp, self._dtype)

    def __repr__(self) -> str:
        if self._axis is None:
            qp = f"scale={self._scale:.6g}, zero_point={self._zp}"
        else:
            qp = f"per_channel(axis={self._axis}, {len(cast(np.ndarray, self._scale))} channels)"
        return f"QTensor(shape={self.shape}, dtype={self._dtype}, {qp})"

    def __array__(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a QTensor is not a float array; call .dequantize() for floats or .int_repr() for integers")

    def _need_per_tensor(self, what: str) -> None:
        if self._axis is not None:
            raise ValueError(f"{what}() needs a per-tensor QTensor; this one is per-channel (axis {self._axis})")

    def _need_per_channel(self, what: str) -> None:
        if self._axis is None:
            raise ValueError(f"{what}() needs a per-channel QTensor; this one is per-tensor")


def _quantize_scalar_path(x: np.ndarray, scale: float, zp: int, dtype: QDType) -> np.ndarray:
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(
            "input contains NaN or Inf; quantization maps only finite values "
            "(replace them first, e.g. numpy.nan_to_num)"
        )
    return _C.reference.quantize(x, scale, zp, dtype.qmin, dtype.qmax).astype(dtype.storage)


def quantize_per_tensor(x: npt.ArrayLike, scale: Any, zero_point: Any, dtype: object) -> QTensor:
    """Like ``torch.quantize_per_tensor``: q = clamp(round(x / scale) + zero_point).

    Exactly ``clamp(nearbyint(fmaf(x, fl(1/scale), zero_point)))``, PyTorch's
    x86 rounding. NaN/Inf in x raise ValueError.
    """
    dtype = as_qdtype(dtype)
    x = _float_array(x)
    s = _check_scale(scale)
    z = _check_zp(zero_point, dtype)
    if dtype is quint8:
        q = _C.quantize_u8(x, s, z)
    elif dtype is qint8:
        q = _quantize_scalar_path(x, s, z, dtype)
    else:
        raise TypeError("quantize_per_tensor supports npquant.quint8 and npquant.qint8")
    return QTensor(q, s, z, dtype)


def quantize_per_channel(
    x: npt.ArrayLike, scales: npt.ArrayLike, zero_points: npt.ArrayLike, axis: int, dtype: object
) -> QTensor:
    """Like ``torch.quantize_per_channel``: one (scale, zero_point) per slice along axis."""
    dtype = as_qdtype(dtype)
    x = _float_array(x)
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"axis {axis} out of range for a {x.ndim}-D array")
    axis %= x.ndim
    sc = np.asarray(scales, dtype=np.float32).reshape(-1)
    zp = np.asarray(zero_points).reshape(-1)
    if sc.shape[0] != x.shape[axis] or zp.shape[0] != x.shape[axis]:
        raise ValueError(
            f"need {x.shape[axis]} scales and zero points along axis {axis}, got {sc.shape[0]} and {zp.shape[0]}"
        )
    xm = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    q = np.empty(xm.shape, dtype=dtype.storage)
    for c in range(xm.shape[0]):
        q[c] = _quantize_scalar_path(xm[c], _check_scale(sc[c]), _check_zp(zp[c], dtype), dtype)
    return QTensor(np.ascontiguousarray(np.moveaxis(q, 0, axis)), sc, zp, dtype, axis=axis)


def dequantize(q: QTensor) -> np.ndarray:
    if not isinstance(q, QTensor):
        raise TypeError(f"dequantize expects a QTensor, got {type(q).__name__}")
    return q.dequantize()


def channel_shuffle(x: QTensor, groups: int) -> QTensor:
    """torch.nn.functional.channel_shuffle (ShuffleNet) on a 4-D QTensor: the view /
    transpose(1, 2) / view of torchvision's channel_shuffle, on the codes."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    if x.is_nhwc and x._axis is None:  # channels last: one copy, and the result stays NHWC
        codes = x.nhwc()
        q = _C.channel_shuffle_nhwc(codes.view(np.uint8), groups).view(codes.dtype)
        return QTensor._trusted(q, x._scale, x._zp, x._dtype, True)  # type: ignore[arg-type]  # per-tensor
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
