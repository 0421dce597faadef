"""Quantized dtypes, named as in PyTorch (``npquant.quint8`` ~ ``torch.quint8``)."""

from __future__ import annotations

import numpy as np

__all__ = ["QDType", "quint8", "qint8", "qint32", "quint4x2", "float16"]


class QDType:
    """A quantized dtype: its storage dtype and integer range."""

    __slots__ = ("name", "storage", "qmin", "qmax")

    def __init__(self, name: str, storage: type, qmin: int, qmax: int):
        self.name = name
        self.storage = np.dtype(storage)
        self.qmin = qmin
        self.qmax = qmax

    def __repr__(self) -> str:
        return f"npquant.{self.name}"

    def __reduce__(self) -> str:
        return self.name


quint8 = QDType("quint8", np.uint8, 0, 255)
qint8 = QDType("qint8", np.int8, -128, 127)
qint32 = QDType("qint32", np.int32, -(2**31), 2**31 - 1)
# Not a quantized dtype: quantize_dynamic(..., dtype=npquant.float16) stores weights
# as float16 and computes in float32, as torch's float16 dynamic quantization does.
float16 = np.float16
# 4-bit codes 0..15 (weight-only embeddings); held one per uint8, packed two per byte in kernels.
quint4x2 = QDType("quint4x2", np.uint8, 0, 15)


def as_qdtype(dtype: object) -> QDType:
    """Accepts npquant.quint8/qint8 (or their names); raises with the fix otherwise."""
    if isinstance(dtype, QDType):
        return dtype
    if isinstance(dtype, str) and dtype in ("quint8", "qint8", "qint32", "quint4x2"):
        return {"quint8": quint8, "qint8": qint8, "qint32": qint32, "quint4x2": quint4x2}[dtype]
    name = getattr(dtype, "__name__", None) or repr(dtype)
    raise TypeError(
        f"dtype must be npquant.quint8 or npquant.qint8, got {name}; "
        "(torch.quint8 -> npquant.quint8, numpy.uint8 -> npquant.quint8)"
    )
