"""npquant: exact int8 inference for NumPy, with PyTorch's eager quantization workflow.

Quick start::

    import numpy as np, npquant
    lin = npquant.nn.Linear(768, 768)
    qlin = npquant.nn.quantized.dynamic.Linear.from_float(lin)
    y = qlin(np.random.randn(32, 768).astype(np.float32))
"""

from __future__ import annotations

import os

from . import _C
from ._dtypes import QDType, float16, qint8, qint32, quint4x2, quint8
from .qtensor import QTensor, dequantize, quantize_per_channel, quantize_per_tensor

__version__ = "0.1.0"


def cpu_info() -> dict:
    """CPU features, the ISAs built into this install, and the kernel chosen per family.

    ``NPQUANT_ISA=scalar|avx2|avxvnni|avx512vnni|amx|neon|neondot|neoni8mm`` (read at
    import) caps the choice.
    """
    return _C.cpu_info()


def set_num_threads(n: int) -> None:
    """Threads used inside kernels (default: all cores, or NPQUANT_NUM_THREADS if set at
    import). The GIL is released in kernels."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    return _C.get_num_threads()


def _threads_from_environment() -> None:
    """NPQUANT_NUM_THREADS=n (read at import) sets the default thread count, as
    OMP_NUM_THREADS does for PyTorch: for a process that shares the machine (a server
    worker, a test runner) without a call in its code."""
    value = os.environ.get("NPQUANT_NUM_THREADS", "").strip()
    if not value:
        return
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(
            f"NPQUANT_NUM_THREADS={value!r} is not a positive integer: set it to a thread count "
            "(e.g. NPQUANT_NUM_THREADS=2), or unset it to use every core"
        )
    _C.set_num_threads(n)


_threads_from_environment()


# The Python layer imports the extension (above) first. ao is npquant.ao.quantization (as
# torch.ao.quantization); onnx imports the onnx package only when export / load is called.
from . import ao, nn, observers, onnx, quantization  # noqa: E402
from .freeze import FreezeError, FrozenModel, freeze  # noqa: E402
from .observers import per_channel_affine, per_channel_symmetric, per_tensor_affine, per_tensor_symmetric  # noqa: E402
from .profile import profile  # noqa: E402
from .qconfig import (  # noqa: E402
    float_qparams_weight_only_qconfig,
    float_qparams_weight_only_qconfig_4bit,
    per_token_dynamic_qconfig,
)
from .quantization import (  # noqa: E402
    DeQuantStub,
    QConfig,
    QuantStub,
    convert,
    default_dynamic_qconfig,
    default_qconfig,
    fuse_modules,
    get_default_qconfig,
    per_channel_dynamic_qconfig,
    prepare,
    propagate_qconfig_,
    quantize,
    quantize_dynamic,
    reduce_range_dynamic_qconfig,
)
from .report import compare  # noqa: E402
from .serialization import ModelFileError, load, save  # noqa: E402

__all__ = [
    "QDType",
    "QTensor",
    "quint8",
    "qint8",
    "qint32",
    "quint4x2",
    "float16",
    "per_token_dynamic_qconfig",
    "float_qparams_weight_only_qconfig",
    "float_qparams_weight_only_qconfig_4bit",
    "quantize_per_tensor",
    "quantize_per_channel",
    "dequantize",
    "cpu_info",
    "set_num_threads",
    "get_num_threads",
    "nn",
    "observers",
    "quantization",
    "ao",
    "onnx",
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "QuantStub",
    "DeQuantStub",
    "QConfig",
    "get_default_qconfig",
    "default_qconfig",
    "default_dynamic_qconfig",
    "per_channel_dynamic_qconfig",
    "reduce_range_dynamic_qconfig",
    "fuse_modules",
    "prepare",
    "convert",
    "quantize",
    "quantize_dynamic",
    "propagate_qconfig_",
    "save",
    "load",
    "ModelFileError",
    "compare",
    "profile",
    "freeze",
    "FrozenModel",
    "FreezeError",
]
