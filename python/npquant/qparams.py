"""The qparam math, in one place.

Two rules exist, as in PyTorch:

* ``choose_qparams`` -- the rule the dynamic kernels use (PyTorch's
  ``ChooseQuantizationParams``, computed in C++ so the dynamic Linear and this
  function agree by construction);
* ``calculate_qparams`` -- the observers' rule (``torch.ao.quantization``
  observers' ``_calculate_qparams``), float32 arithmetic, affine or symmetric.

``requant_constants`` restates the static layers' per-channel constants (C++
``npq::requant_constants``) for code that writes the arithmetic elsewhere (the
ONNX integer export).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _C

if TYPE_CHECKING:
    from ._dtypes import QDType

__all__ = ["choose_qparams", "calculate_qparams", "quant_range", "requant_constants", "EPS"]

EPS = np.float32(np.finfo(np.float32).eps)


def choose_qparams(min_val: float, max_val: float, qmin: int = 0, qmax: int = 255) -> tuple[float, int]:
    """(scale, zero_point) for the range [min(min_val, 0), max(max_val, 0)]."""
    scale, zero_point = _C.choose_qparams(float(min_val), float(max_val), int(qmin), int(qmax))
    return float(scale), int(zero_point)


def quant_range(dtype: QDType, reduce_range: bool = False, quant_min: int | None = None,
                quant_max: int | None = None) -> tuple[int, int]:
    """(qmin, qmax) as PyTorch's observers derive it.

    Default: the dtype's full range (npquant's kernels are exact there, so
    ``reduce_range`` is only for reproducing PyTorch models calibrated with it).
    A custom range must contain 0 and span at most 256 codes; for qint8 it is
    re-centred on 0 (PyTorch's rule), and reduce_range halves it.
    """
    signed = dtype.qmin < 0
    if quant_min is None and quant_max is None:
        qmin, qmax = dtype.qmin, dtype.qmax
        return ((qmin // 2, qmax // 2) if reduce_range else (qmin, qmax))
    if quant_min is None or quant_max is None:
        raise ValueError("give both quant_min and quant_max, or neither")
    if not quant_min <= 0 <= quant_max:
        raise ValueError(f"the quantization range [{quant_min}, {quant_max}] must contain 0")
    n = quant_max - quant_min + 1
    if n > 256:
        raise ValueError(f"the quantization range [{quant_min}, {quant_max}] spans {n} codes; 8-bit "
                         "quantization has at most 256")
    qmin, qmax = (-(n // 2), n // 2 - 1) if signed else (0, n - 1)
    return (qmin // 2, qmax // 2) if reduce_range else (qmin, qmax)


def calculate_qparams(min_val: npt.ArrayLike, max_val: npt.ArrayLike, qmin: int, qmax: int, symmetric: bool,
                      unsigned_symmetric_zp: bool = False,
                      eps: float | np.floating = EPS) -> tuple[np.ndarray, np.ndarray]:
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


def requant_constants(x_scale: float, w_scales: npt.ArrayLike, y_scale: float,
                      bias: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """(bias_s, mult), float32 per output channel, exactly as the static kernels use them:
    ``s = fl(x_scale * w_scale[n])``, ``mult = fl(s / y_scale)``, ``bias_s = fl(bias / s)``
    (0 without a bias), so that ``v = fl(fl(float(acc) + bias_s) * mult)``."""
    s = (np.float32(x_scale) * np.asarray(w_scales, np.float32)).astype(np.float32)
    mult = (s / np.float32(y_scale)).astype(np.float32)
    bias_s = np.zeros_like(s) if bias is None else (np.asarray(bias, np.float32) / s).astype(np.float32)
    return bias_s, mult
