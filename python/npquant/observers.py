"""Observers: collect statistics of float arrays during calibration, then turn
them into (scale, zero_point) with the math in ``npquant.qparams``.

Names, arguments and results follow ``torch.ao.quantization.observer``:
``MinMaxObserver.with_args(dtype=npquant.qint8, qscheme=npquant.per_tensor_symmetric)``
makes a factory, calling an observer on an array records it and returns the
array, ``calculate_qparams()`` returns float32 scales and int64 zero points
(arrays of one element for per-tensor schemes, as torch returns tensors).

Two deliberate differences from PyTorch: ``reduce_range`` defaults to False
everywhere (npquant's int8 kernels are exact with the full 8-bit range), and
an observer that saw no data raises instead of returning scale 1.0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._dtypes import QDType, as_qdtype, qint8, quint4x2, quint8
from ._f32 import linspace32, sum32
from .nn.module import Module
from .qparams import EPS, calculate_qparams, histogram_range, percentile_range, quant_range
from .qtensor import QTensor

__all__ = [
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "float_qparams",
    "default_float_qparams_observer",
    "default_float_qparams_observer_4bit",
    "ObserverBase",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
    "PercentileObserver",
    "PlaceholderObserver",
    "default_observer",
    "default_weight_observer",
    "default_per_channel_weight_observer",
    "default_histogram_observer",
    "default_dynamic_quant_observer",
    "default_placeholder_observer",
    "ProtocolObserver",
]

# qschemes, spelled like torch.per_tensor_affine etc. (QTensor.qscheme() returns these strings)
per_tensor_affine = "per_tensor_affine"
per_tensor_symmetric = "per_tensor_symmetric"
per_channel_affine = "per_channel_affine"
per_channel_symmetric = "per_channel_symmetric"
# Row-wise float scale and float zero point (weight-only embeddings, as torch's):
# scale = (max - min) / (qmax - qmin) (1 where not above eps), zero_point = -min / scale.
per_channel_affine_float_qparams = "per_channel_affine_float_qparams"
_PER_TENSOR = (per_tensor_affine, per_tensor_symmetric)
_PER_CHANNEL = (per_channel_affine, per_channel_symmetric)


class _ObserverFactory:
    """What ``Observer.with_args(...)`` returns: call it for a fresh observer."""

    def __init__(self, cls: Callable[..., ObserverBase], **kwargs: Any) -> None:
        self._make = functools.partial(cls, **kwargs)

    def with_args(self, **kwargs: Any) -> _ObserverFactory:
        merged = dict(self._make.keywords, **kwargs)
        return _ObserverFactory(self._make.func, **merged)

    def __call__(self, **kwargs: Any) -> ObserverBase:
        return self._make(**kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._make.keywords.items())
        return f"{getattr(self._make.func, '__name__', self._make.func)}.with_args({args})"


def _observed_array(x: Any, who: str) -> np.ndarray:
    if isinstance(x, QTensor):
        raise TypeError(
            f"{who} observes float arrays, got a QTensor: observers belong before "
            "quantization (did convert already run on this model?)"
        )
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr: np.ndarray = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{who} observes float arrays, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{who}: the calibration data contains NaN or Inf; clean it first "
            "(numpy.nan_to_num) or find where the model produces it"
        )
    return arr


def float_qparams(
    min_val: np.ndarray, max_val: np.ndarray, quant_min: int, quant_max: int, eps: np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """torch's per_channel_affine_float_qparams rule, in float32: (scales, float zero points)."""
    mn, mx = np.atleast_1d(np.asarray(min_val, np.float32)), np.atleast_1d(np.asarray(max_val, np.float32))
    scale = (mx - mn) / np.float32(quant_max - quant_min)
    scale = np.where(scale > eps, scale, np.float32(1)).astype(np.float32)
    return scale, (-mn / scale).astype(np.float32)


class ObserverBase(Module):
    """Common arguments and the one-line contract: ``observe(x)`` collects,
    ``calculate_qparams()`` computes. ``__call__``/``forward`` observe and return x."""

    def __init__(
        self,
        dtype: object = quint8,
        qscheme: str = per_tensor_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        super().__init__()
        self.dtype = as_qdtype(dtype)
        if qscheme not in _PER_TENSOR + _PER_CHANNEL + (per_channel_affine_float_qparams,):
            raise ValueError(f"unknown qscheme {qscheme!r}; use one of {_PER_TENSOR + _PER_CHANNEL}")
        if qscheme == per_tensor_symmetric and reduce_range and self.dtype is quint8:
            raise NotImplementedError("reduce_range is not supported for symmetric quint8 (as in PyTorch)")
        self.qscheme = qscheme
        self.reduce_range = bool(reduce_range)
        self.quant_min, self.quant_max = quant_range(self.dtype, reduce_range, quant_min, quant_max)
        self.has_customized_qrange = quant_min is not None
        self.eps = np.float32(eps)
        self.is_dynamic = bool(is_dynamic)

    @classmethod
    def with_args(cls, **kwargs: Any) -> _ObserverFactory:
        """A factory making observers of this class with these arguments."""
        return _ObserverFactory(cls, **kwargs)

    def forward(self, x: Any) -> Any:
        self.observe(x)
        return x

    def observe(self, x: Any) -> None:
        raise NotImplementedError

    @property
    def has_data(self) -> bool:
        raise NotImplementedError

    def _require_data(self) -> None:
        if not self.has_data:
            raise RuntimeError(
                f"{type(self).__name__} has seen no data: run calibration inputs through "
                "the prepared model (or call observe(x)) before calculate_qparams / convert"
            )

    def _qparams(self, min_val: npt.ArrayLike, max_val: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """PyTorch's _calculate_qparams on float32 min/max (scalars or per channel)."""
        mn, mx = np.asarray(min_val, np.float32), np.asarray(max_val, np.float32)
        if np.any(mn > mx):
            raise ValueError(f"min {mn} exceeds max {mx}")
        if self.qscheme == per_channel_affine_float_qparams:
            return float_qparams(mn, mx, self.quant_min, self.quant_max, self.eps)
        symmetric = self.qscheme in (per_tensor_symmetric, per_channel_symmetric)
        scale, zp = calculate_qparams(
            mn, mx, self.quant_min, self.quant_max, symmetric, unsigned_symmetric_zp=self.dtype is quint8, eps=self.eps
        )
        if symmetric and self.dtype is quint8 and self.has_customized_qrange:
            zp = np.full_like(zp, (self.quant_min + self.quant_max) // 2)
        return np.atleast_1d(scale).astype(np.float32), np.atleast_1d(zp).astype(np.int64)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, qscheme={self.qscheme}, quant_min={self.quant_min}, quant_max={self.quant_max}"


class MinMaxObserver(ObserverBase):
    """Running min and max over everything observed."""

    # Buffers (Module stores them in _buffers): 0-d float32 arrays, or float32 scalars once
    # a moving average has replaced them.
    min_val: np.ndarray | np.float32
    max_val: np.ndarray | np.float32

    def __init__(
        self,
        dtype: object = quint8,
        qscheme: str = per_tensor_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        if qscheme in _PER_CHANNEL:
            raise ValueError(f"{type(self).__name__} is per tensor; use PerChannelMinMaxObserver for {qscheme}")
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.reset_min_max_vals()

    def reset_min_max_vals(self) -> None:
        self.register_buffer("min_val", np.array(np.inf, np.float32))
        self.register_buffer("max_val", np.array(-np.inf, np.float32))

    @property
    def has_data(self) -> bool:
        return bool(np.all(self.min_val <= self.max_val))

    def observe(self, x: Any) -> None:
        x = _observed_array(x, type(self).__name__)
        if x.size:
            self._update(x.min(), x.max())

    def _update(self, lo: Any, hi: Any) -> None:
        self.min_val = np.minimum(self.min_val, lo).astype(np.float32)
        self.max_val = np.maximum(self.max_val, hi).astype(np.float32)

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        self._require_data()
        return self._qparams(self.min_val, self.max_val)


class MovingAverageMinMaxObserver(MinMaxObserver):
    """min/max as exponential moving averages: m += c * (batch_min - m), in float32."""

    def __init__(
        self,
        averaging_constant: float = 0.01,
        dtype: object = quint8,
        qscheme: str = per_tensor_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.averaging_constant = averaging_constant

    def _update(self, lo: Any, hi: Any) -> None:
        if not self.has_data:
            self.min_val, self.max_val = np.float32(lo), np.float32(hi)
            return
        c = np.float32(self.averaging_constant)
        self.min_val = (self.min_val + c * (np.float32(lo) - self.min_val)).astype(np.float32)
        self.max_val = (self.max_val + c * (np.float32(hi) - self.max_val)).astype(np.float32)


class PerChannelMinMaxObserver(ObserverBase):
    """min/max per slice along ``ch_axis`` (weights: the output channels)."""

    # Buffers: float32, shape (0,) until data is seen, then one value per channel.
    min_val: np.ndarray
    max_val: np.ndarray

    def __init__(
        self,
        ch_axis: int = 0,
        dtype: object = quint8,
        qscheme: str = per_channel_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        if qscheme in _PER_TENSOR:
            raise ValueError(f"{type(self).__name__} is per channel; use MinMaxObserver for {qscheme}")
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.ch_axis = int(ch_axis)
        self.reset_min_max_vals()

    def reset_min_max_vals(self) -> None:
        self.register_buffer("min_val", np.zeros(0, np.float32))
        self.register_buffer("max_val", np.zeros(0, np.float32))

    def _resizable(self, name: str) -> bool:
        return name in ("min_val", "max_val")  # (0,) until it has seen data, as in torch

    @property
    def has_data(self) -> bool:
        return self.min_val.size > 0

    def observe(self, x: Any) -> None:
        x = _observed_array(x, type(self).__name__)
        if x.size == 0:
            return
        if not -x.ndim <= self.ch_axis < x.ndim:
            raise ValueError(f"{type(self).__name__}: ch_axis {self.ch_axis} is out of range for shape {x.shape}")
        rows = np.moveaxis(x, self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1)
        if self.has_data and rows.shape[0] != self.min_val.size:
            raise ValueError(
                f"{type(self).__name__} saw {self.min_val.size} channels before and "
                f"{rows.shape[0]} now (shape {x.shape}, ch_axis {self.ch_axis})"
            )
        self._update(rows.min(axis=1), rows.max(axis=1))

    def _update(self, lo: Any, hi: Any) -> None:
        if not self.has_data:
            self.min_val, self.max_val = lo.astype(np.float32), hi.astype(np.float32)
        else:
            self.min_val = np.minimum(self.min_val, lo).astype(np.float32)
            self.max_val = np.maximum(self.max_val, hi).astype(np.float32)

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        self._require_data()
        return self._qparams(self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"ch_axis={self.ch_axis}, " + super().extra_repr()


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    def __init__(
        self,
        averaging_constant: float = 0.01,
        ch_axis: int = 0,
        dtype: object = quint8,
        qscheme: str = per_channel_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        super().__init__(ch_axis, dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.averaging_constant = averaging_constant

    def _update(self, lo: Any, hi: Any) -> None:
        if not self.has_data:
            self.min_val, self.max_val = lo.astype(np.float32), hi.astype(np.float32)
            return
        c = np.float32(self.averaging_constant)
        self.min_val = (self.min_val + c * (lo.astype(np.float32) - self.min_val)).astype(np.float32)
        self.max_val = (self.max_val + c * (hi.astype(np.float32) - self.max_val)).astype(np.float32)


# ---------------------------------------------------------------- histograms
def _histc(x: np.ndarray, bins: int, lo: Any, hi: Any) -> np.ndarray:
    """torch.histc in float32: bin = int(fl(fl(x - lo) * bins) / fl(hi - lo)), the last edge inclusive."""
    lo, hi = np.float32(lo), np.float32(hi)
    if lo == hi:  # torch widens a degenerate range by one on each side
        lo, hi = np.float32(np.float64(lo) - 1), np.float32(np.float64(hi) + 1)
    x = x[(x >= lo) & (x <= hi)]
    pos = ((x - lo) * np.float32(bins) / (hi - lo)).astype(np.int64)
    pos[pos == bins] = bins - 1
    return np.bincount(pos, minlength=bins).astype(np.float32)


class HistogramObserver(ObserverBase):
    """Running histogram of the values, then PyTorch's search for the [min, max]
    minimizing the L2 quantization error (NormMinimization from caffe2)."""

    def __init__(
        self,
        bins: int = 2048,
        dtype: object = quint8,
        qscheme: str = per_tensor_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        if qscheme in _PER_CHANNEL:
            raise ValueError(f"{type(self).__name__} supports per_tensor_affine / per_tensor_symmetric only")
        if is_dynamic:
            raise ValueError("HistogramObserver does not support dynamic quantization")
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.bins = int(bins)
        self.dst_nbins = 256
        self.upsample_rate = 16  # sub-bins per bin when re-binning onto a wider range
        self.register_buffer("histogram", np.zeros(self.bins, np.float32))
        self.register_buffer("min_val", np.array(np.inf, np.float32))
        self.register_buffer("max_val", np.array(-np.inf, np.float32))

    @property
    def has_data(self) -> bool:
        return bool(self.min_val <= self.max_val)

    def observe(self, x: Any) -> None:
        x = _observed_array(x, type(self).__name__).reshape(-1)
        if x.size == 0:
            return
        lo, hi = x.min(), x.max()
        if not self.has_data:
            self.min_val, self.max_val = np.float32(lo), np.float32(hi)
            self.histogram = _histc(x, self.bins, lo, hi)
            return
        new_min, new_max = min(self.min_val, lo), max(self.max_val, hi)
        update = _histc(x, self.bins, new_min, new_max)
        if new_min == self.min_val and new_max == self.max_val:
            self.histogram = self.histogram + update
        else:
            self.histogram = update + self._rebin(new_min, new_max)
            self.min_val, self.max_val = np.float32(new_min), np.float32(new_max)

    def _rebin(self, new_min: Any, new_max: Any) -> np.ndarray:
        """The current histogram spread onto bins over [new_min, new_max]."""
        if self.min_val == self.max_val:  # one value: all its mass lands in one new bin
            mass = np.float32(sum32(self.histogram)) if self.bins <= 32768 else self.histogram.sum(dtype=np.float32)
            spread: np.ndarray = _histc(np.array([self.min_val]), self.bins, new_min, new_max) * mass
            return spread
        up = self.upsample_rate
        fine = np.repeat(self.histogram, up) / np.float32(up)
        width = (self.max_val - self.min_val) / np.float32(self.bins * up)
        mids = linspace32(self.min_val, self.max_val, self.bins * up + 1)[:-1] + np.float32(0.5) * width
        edges = linspace32(new_min, new_max, self.bins + 1)
        idx = np.clip(np.searchsorted(edges, mids, side="right") - 1, 0, self.bins - 1)
        out = np.zeros(self.bins, np.float32)
        np.add.at(out, idx, fine.astype(np.float32))  # sequential float32 sums, like torch.bincount
        return out

    def _search_range(self) -> tuple[np.float32, np.float32]:
        return histogram_range(self.histogram, self.min_val, self.max_val, self.dst_nbins)

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        self._require_data()
        return self._qparams(*self._search_range())


class PercentileObserver(HistogramObserver):
    """Clips the range to the given percentiles of the observed values (read off
    the running histogram, linearly within a bin): ``percentile=99.99`` keeps the
    range [0.01th, 99.99th percentile]. Robust to rare outliers; cheap to compute."""

    def __init__(
        self,
        percentile: float = 99.99,
        bins: int = 2048,
        dtype: object = quint8,
        qscheme: str = per_tensor_affine,
        reduce_range: bool = False,
        quant_min: int | None = None,
        quant_max: int | None = None,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        super().__init__(bins, dtype, qscheme, reduce_range, quant_min, quant_max, eps, is_dynamic)
        self.percentile = float(percentile)

    def _search_range(self) -> tuple[np.float32, np.float32]:
        return percentile_range(self.histogram, self.min_val, self.max_val, self.percentile)

    def extra_repr(self) -> str:
        return f"percentile={self.percentile}, " + super().extra_repr()


class PlaceholderObserver(ObserverBase):
    """Records nothing; marks the dtype of an activation computed at run time
    (dynamic quantization) or left float. ``calculate_qparams`` is an error."""

    # Unlike the other observers: dtype may be a float type (np.float32, float16), and
    # quant_min / quant_max None.
    dtype: Any
    quant_min: Any
    quant_max: Any

    def __init__(
        self,
        dtype: object = np.float32,
        custom_op_name: str = "",
        compute_dtype: object = None,
        quant_min: int | None = None,
        quant_max: int | None = None,
        qscheme: str = per_tensor_affine,
        eps: float = EPS,
        is_dynamic: bool = False,
    ) -> None:
        Module.__init__(self)
        self.dtype = dtype if not isinstance(dtype, (QDType, str)) else as_qdtype(dtype)
        self.qscheme, self.quant_min, self.quant_max = qscheme, quant_min, quant_max
        self.custom_op_name, self.compute_dtype = custom_op_name, compute_dtype
        self.eps, self.is_dynamic = np.float32(eps), bool(is_dynamic)

    has_data = False

    def observe(self, x: Any) -> None:
        pass

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError(
            "PlaceholderObserver records nothing, so it has no qparams: use a "
            "MinMaxObserver or HistogramObserver in the qconfig for static quantization"
        )


class ProtocolObserver(ObserverBase):
    """Adapts an observer written to torch's protocol -- any object with ``forward(x)``
    (observe, return x) and ``calculate_qparams()`` (return scales and zero points) --
    to npquant's: ``prepare`` wraps such objects made by a QConfig factory.

    Optional attributes of the object are honoured: ``dtype`` (npquant.quint8 for
    activations and npquant.qint8 for weights by default), ``qscheme``, ``ch_axis``
    (per-channel weights) and ``has_data`` (default: whether forward saw a non-empty array).
    """

    def __init__(self, observer: Any, role: str = "activation") -> None:
        super().__init__(dtype=getattr(observer, "dtype", quint8 if role == "activation" else qint8))
        self.observer = observer
        qscheme = str(getattr(observer, "qscheme", ""))
        qscheme = qscheme[len("torch.") :] if qscheme.startswith("torch.") else qscheme
        ch_axis = getattr(observer, "ch_axis", None)
        if qscheme in _PER_TENSOR + _PER_CHANNEL:
            self.qscheme = qscheme
        elif ch_axis is not None:  # no qscheme given: a ch_axis means per channel
            self.qscheme = per_channel_symmetric if role == "weight" else per_channel_affine
        self.ch_axis = ch_axis if self.qscheme in _PER_CHANNEL else None
        self._seen = False

    @property
    def has_data(self) -> bool:
        has = getattr(self.observer, "has_data", None)
        return self._seen if has is None else bool(has() if callable(has) else has)

    def observe(self, x: Any) -> None:
        x = _observed_array(x, type(self.observer).__name__)
        fwd = getattr(self.observer, "forward", None) or self.observer
        fwd(x)
        self._seen = self._seen or x.size > 0

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        from .interop import _to_native

        name = type(self.observer).__name__
        r = self.observer.calculate_qparams()
        if not isinstance(r, (tuple, list)) or len(r) != 2:
            raise TypeError(f"{name}.calculate_qparams() must return (scale, zero_point), got {type(r).__name__}")
        scale, zp = (np.asarray(_to_native(v, f"{name}.calculate_qparams()")) for v in r)
        if scale.dtype.kind != "f" or zp.dtype.kind not in "iuf" or scale.size == 0 or scale.size != zp.size:
            raise TypeError(
                f"{name}.calculate_qparams() must return float scales and integer zero points "
                f"of one size, got {scale.dtype} {scale.shape} and {zp.dtype} {zp.shape}"
            )
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"{name}.calculate_qparams() returned scales that are not positive and finite: {scale}")
        if np.any(zp != np.round(zp)) or np.any(zp < self.quant_min) or np.any(zp > self.quant_max):
            raise ValueError(
                f"{name}.calculate_qparams() returned zero points outside the integers "
                f"[{self.quant_min}, {self.quant_max}] of {self.dtype}: {zp}"
            )
        if scale.size > 1 and self.ch_axis is None:
            raise ValueError(
                f"{name}.calculate_qparams() returned {scale.size} scales; a per-channel "
                "observer needs qscheme per_channel_symmetric and a ch_axis attribute"
            )
        return scale.reshape(-1).astype(np.float32), zp.reshape(-1).astype(np.int64)

    def extra_repr(self) -> str:
        return f"{type(self.observer).__name__}, dtype={self.dtype}"


def make_observer(factory: Any, role: str, where: str) -> ObserverBase:
    """factory() as an npquant observer: npquant's own, or one following torch's
    protocol (wrapped in ProtocolObserver). Raises naming ``where`` otherwise."""
    from .interop import is_torch_object
    from .qconfig import torch_observer_error

    if is_torch_object(factory):
        raise torch_observer_error(factory, where)
    obs = factory()
    if isinstance(obs, ObserverBase):
        return obs
    if is_torch_object(obs):
        raise torch_observer_error(obs, where)
    has_fwd = callable(getattr(obs, "forward", None)) or callable(obs)
    if not (has_fwd and callable(getattr(obs, "calculate_qparams", None))):
        raise TypeError(
            f"{where} made a {type(obs).__name__}, which is not an observer: an observer needs "
            "forward(x) (or __call__) and calculate_qparams(), or subclass "
            "npquant.observers.ObserverBase"
        )
    return ProtocolObserver(obs, role)


default_observer = MinMaxObserver.with_args(dtype=quint8)
default_weight_observer = MinMaxObserver.with_args(dtype=qint8, qscheme=per_tensor_symmetric)
default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(dtype=qint8, qscheme=per_channel_symmetric)
default_histogram_observer = HistogramObserver.with_args(dtype=quint8)
default_dynamic_quant_observer = PlaceholderObserver.with_args(
    dtype=quint8, quant_min=0, quant_max=255, is_dynamic=True
)
default_placeholder_observer = PlaceholderObserver
# Weight-only embeddings (torch's default_float_qparams_observer / _4bit).
default_float_qparams_observer = PerChannelMinMaxObserver.with_args(
    dtype=quint8, qscheme=per_channel_affine_float_qparams, ch_axis=0
)
default_float_qparams_observer_4bit = PerChannelMinMaxObserver.with_args(
    dtype=quint4x2, qscheme=per_channel_affine_float_qparams, ch_axis=0
)
