"""The qparam math, in one place.

Two rules exist, as in PyTorch:

* ``choose_qparams`` -- the rule the dynamic kernels use (PyTorch's
  ``ChooseQuantizationParams``, computed in C++ so the dynamic Linear and this
  function agree by construction);
* ``calculate_qparams`` -- the observers' rule (``torch.ao.quantization``
  observers' ``_calculate_qparams``), float32 arithmetic, affine or symmetric.
"""

from __future__ import annotations

import numpy as np

from . import _C

__all__ = ["choose_qparams", "calculate_qparams", "EPS"]

EPS = np.float32(np.finfo(np.float32).eps)


def choose_qparams(min_val: float, max_val: float, qmin: int = 0, qmax: int = 255):
    """(scale, zero_point) for the range [min(min_val, 0), max(max_val, 0)]."""
    return _C.choose_qparams(float(min_val), float(max_val), int(qmin), int(qmax))


def calculate_qparams(min_val, max_val, qmin: int, qmax: int, symmetric: bool,
                      unsigned_symmetric_zp: bool = False, eps=EPS):
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
