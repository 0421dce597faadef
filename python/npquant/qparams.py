"""The qparam math, in one place.

Two rules exist, as in PyTorch:

* ``choose_qparams`` -- the rule the dynamic kernels use (PyTorch's
  ``ChooseQuantizationParams``, computed in C++ so the dynamic Linear and this
  function agree by construction);
* ``calculate_qparams`` -- the observers' rule (``torch.ao.quantization``
  observers' ``_calculate_qparams``), float32 arithmetic, affine or symmetric.

``histogram_range`` and ``percentile_range`` pick the range a histogram observer
quantizes to (PyTorch's L2 search, bit for bit; a percentile clip).

``requant_constants`` restates the static layers' per-channel constants (C++
``npq::requant_constants``) for code that writes the arithmetic elsewhere (the
ONNX integer export).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _C
from ._f32 import sum32

if TYPE_CHECKING:
    from ._dtypes import QDType

__all__ = [
    "choose_qparams",
    "calculate_qparams",
    "quant_range",
    "requant_constants",
    "EPS",
    "histogram_range",
    "percentile_range",
]

EPS = np.float32(np.finfo(np.float32).eps)


def choose_qparams(min_val: float, max_val: float, qmin: int = 0, qmax: int = 255) -> tuple[float, int]:
    """(scale, zero_point) for the range [min(min_val, 0), max(max_val, 0)]."""
    scale, zero_point = _C.choose_qparams(float(min_val), float(max_val), int(qmin), int(qmax))
    return float(scale), int(zero_point)


def quant_range(
    dtype: QDType, reduce_range: bool = False, quant_min: int | None = None, quant_max: int | None = None
) -> tuple[int, int]:
    """(qmin, qmax) as PyTorch's observers derive it.

    Default: the dtype's full range (npquant's kernels are exact there, so
    ``reduce_range`` is only for reproducing PyTorch models calibrated with it).
    A custom range must contain 0 and span at most 256 codes; for qint8 it is
    re-centred on 0 (PyTorch's rule), and reduce_range halves it.
    """
    signed = dtype.qmin < 0
    if quant_min is None and quant_max is None:
        qmin, qmax = dtype.qmin, dtype.qmax
        return (qmin // 2, qmax // 2) if reduce_range else (qmin, qmax)
    if quant_min is None or quant_max is None:
        raise ValueError("give both quant_min and quant_max, or neither")
    if not quant_min <= 0 <= quant_max:
        raise ValueError(f"the quantization range [{quant_min}, {quant_max}] must contain 0")
    n = quant_max - quant_min + 1
    if n > 256:
        raise ValueError(
            f"the quantization range [{quant_min}, {quant_max}] spans {n} codes; 8-bit quantization has at most 256"
        )
    qmin, qmax = (-(n // 2), n // 2 - 1) if signed else (0, n - 1)
    return (qmin // 2, qmax // 2) if reduce_range else (qmin, qmax)


def calculate_qparams(
    min_val: npt.ArrayLike,
    max_val: npt.ArrayLike,
    qmin: int,
    qmax: int,
    symmetric: bool,
    unsigned_symmetric_zp: bool = False,
    eps: float | np.floating = EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """Observer qparams, vectorized over channels.

    min_val/max_val: scalars or 1-D arrays (per channel). Returns float32 scales
    and int64 zero points of the same shape. ``unsigned_symmetric_zp``: for a
    symmetric quint8 scheme the zero point is 128 (PyTorch's convention).
    """
    mn = np.minimum(np.asarray(min_val, dtype=np.float32), np.float32(0))
    mx = np.maximum(np.asarray(max_val, dtype=np.float32), np.float32(0))
    if not (np.all(np.isfinite(mn)) and np.all(np.isfinite(mx))):
        raise ValueError("observed min/max are not finite: the calibration data holds NaN or Inf")
    if symmetric:
        amax = np.maximum(-mn, mx)
        scale = amax / np.float32((qmax - qmin) / 2)
        scale = np.maximum(scale, np.float32(eps)).astype(np.float32)
        zp = np.full(scale.shape, 128 if unsigned_symmetric_zp else 0, dtype=np.int64)
    else:
        scale = (mx - mn) / np.float32(qmax - qmin)
        scale = np.maximum(scale, np.float32(eps)).astype(np.float32)
        zp = qmin - np.round(mn / scale).astype(np.int64)
        zp = np.clip(zp, qmin, qmax)
    return scale, zp


def requant_constants(
    x_scale: float, w_scales: npt.ArrayLike, y_scale: float, bias: npt.ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """(bias_s, mult), float32 per output channel, exactly as the static kernels use them:
    ``s = fl(x_scale * w_scale[n])``, ``mult = fl(s / y_scale)``, ``bias_s = fl(bias / s)``
    (0 without a bias), so that ``v = fl(fl(float(acc) + bias_s) * mult)``."""
    s = (np.float32(x_scale) * np.asarray(w_scales, np.float32)).astype(np.float32)
    mult = (s / np.float32(y_scale)).astype(np.float32)
    bias_s = np.zeros_like(s) if bias is None else (np.asarray(bias, np.float32) / s).astype(np.float32)
    return bias_s, mult


def _sum_like_torch(v: npt.NDArray[np.float32]) -> float:
    """torch.sum(v).item() for a float32 vector: its summation order up to 32768
    elements (every histogram PyTorch's observers use), numpy's beyond."""
    return float(sum32(v)) if v.size <= 32768 else float(v.sum(dtype=np.float32))


def _l2_error(
    hist: npt.NDArray[np.float32], min_val: np.float32, max_val: np.float32, start: int, end: int, dst_nbins: int
) -> float:
    """The L2 error of quantizing the histogram's mass to ``dst_nbins`` levels spread
    over bins [start, end]: PyTorch's _compute_quantization_error, each float32
    operation in its order (widths in float64 as Python floats, then float32)."""
    f32 = np.float32
    bins = hist.size
    bin_width = (float(max_val) - float(min_val)) / bins
    dst_w = bin_width * (end - start + 1) / dst_nbins
    if dst_w == 0.0:
        return 0.0
    bw, dw, half = f32(bin_width), f32(dst_w), f32(dst_w / 2)
    src_begin = (np.arange(bins) - start).astype(f32) * bw
    src_end = src_begin + bw
    top = f32(dst_nbins - 1)
    dst_of_begin = np.clip(np.floor_divide(src_begin, dw), f32(0), top)
    dst_of_end = np.clip(np.floor_divide(src_end, dw), f32(0), top)
    density = hist / bw

    def norm(b: npt.ArrayLike, e: npt.ArrayLike) -> npt.NDArray[np.float32]:
        b32, e32 = np.asarray(b, f32), np.asarray(e, f32)
        return np.asarray(density * ((e32 * e32 * e32 - b32 * b32 * b32) / f32(3)), f32)

    total = norm(src_begin - (dst_of_begin + f32(0.5)) * dw, np.full(bins, half, f32))
    total = total + (dst_of_end - dst_of_begin - f32(1)) * norm(f32(-half), half)
    total = total + norm(f32(-half), src_end - (dst_of_end * dw + half))
    return _sum_like_torch(total.astype(f32))


def histogram_range(
    hist: npt.ArrayLike, min_val: float, max_val: float, dst_nbins: int = 256
) -> tuple[np.float32, np.float32]:
    """PyTorch's HistogramObserver range search (_non_linear_param_search, from
    caffe2's NormMinimization) on a float32 histogram over [min_val, max_val]:
    trim the tails one quantile step (1e-5) at a time, from the side that moves more
    bins, while the L2 quantization error falls. Returns float32 (new_min, new_max)."""
    h = np.ascontiguousarray(hist, np.float32)
    lo, hi = np.float32(min_val), np.float32(max_val)
    bins = h.size
    csum = np.cumsum(h, dtype=np.float64).astype(np.float32)  # PyTorch accumulates in double
    total = _sum_like_torch(h)
    step, alpha, beta = 1e-5, 0.0, 1.0
    start, end = 0, bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha, next_beta = alpha + step, beta - step
        # first bin >= start whose cumulative mass reaches next_alpha (capped at end) ...
        left = int(np.searchsorted(csum, np.float32(next_alpha * total), side="left"))
        left = min(max(left, start), end)
        # ... and last bin <= end whose cumulative mass stays within next_beta (floored at start)
        right = int(np.searchsorted(csum, np.float32(next_beta * total), side="right")) - 1
        right = max(min(right, end), start)
        next_start, next_end = start, end
        if left - start > end - right:
            next_start, alpha = left, next_alpha
        else:
            next_end, beta = right, next_beta
        if next_start == start and next_end == end:
            continue
        norm = _l2_error(h, lo, hi, next_start, next_end, dst_nbins)
        if norm > norm_min:
            break
        norm_min, start, end = norm, next_start, next_end
    bw = np.float32((hi - lo) / np.float32(bins))
    return np.float32(lo + bw * np.float32(start)), np.float32(lo + bw * np.float32(end + 1))


def percentile_range(
    hist: npt.ArrayLike, min_val: float, max_val: float, percentile: float
) -> tuple[np.float32, np.float32]:
    """The [100 - percentile, percentile] percentiles of the values a histogram over
    [min_val, max_val] counts, read off its CDF linearly within a bin."""
    h = np.asarray(hist, np.float64)
    cdf = np.cumsum(h)
    cdf /= cdf[-1]
    edges = np.linspace(float(min_val), float(max_val), h.size + 1)
    ys = np.concatenate([[0.0], cdf])  # the CDF at each bin's right edge
    q = percentile / 100.0
    lo = np.interp(1.0 - q, ys, edges) if q < 1.0 else float(min_val)
    hi = np.interp(q, ys, edges) if q < 1.0 else float(max_val)
    return np.float32(lo), np.float32(hi)
