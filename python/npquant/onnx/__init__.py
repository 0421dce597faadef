"""ONNX interop: export quantized npquant models to ONNX, import float and QDQ ONNX models.

``export(model, example_input, path, format=...)`` traces ``model(example_input)``
and writes an ONNX file in one of two formats: ``"qdq"`` (QuantizeLinear /
DequantizeLinear around Conv, Gemm and MatMul, per-channel weights as uint8 codes
with zero point 128, int32 biases: the standard form runtimes fuse into int8
kernels; each layer within one step of npquant on every CPU) or ``"integer"``
(MatMulInteger / ConvInteger and npquant's own requantization arithmetic: ONNX
Runtime gives npquant's codes bit for bit).
``load(path)`` builds an ``npquant.nn`` model from an ONNX file: a float model becomes
float layers ready for ``prepare``/``convert``; a QDQ model (QuantizeLinear /
DequantizeLinear: ONNX Runtime's quantize_static, PyTorch's exporter, npquant's own
export) becomes quantized layers with the file's weight codes and qparams.

The ``onnx`` package is imported only when these functions run (npquant itself
needs only NumPy).
"""

from __future__ import annotations

from ._errors import ExportError, UnsupportedOnnxError

__all__ = ["export", "load", "ExportError", "UnsupportedOnnxError"]


def _need_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("npquant.onnx needs the onnx package: pip install onnx") from None


def export(
    model,
    example_input,
    path,
    dynamic_batch: bool = True,
    format: str = "qdq",  # noqa: A002
    weight_dtype: str = "uint8",
):
    """Writes ``model`` as an ONNX model to ``path`` and returns the ``onnx.ModelProto``.

    ``format``: ``"qdq"`` (default) writes the standard QDQ form every runtime fuses
    into its int8 kernels; each layer is within one quantization step of npquant, and
    whole models can drift by a few steps (docs/onnx.md says why). ``"integer"``
    writes npquant's arithmetic with integer ONNX ops (MatMulInteger, ConvInteger) and
    float ops in npquant's order, so ONNX Runtime's output equals npquant's bit for bit
    (dynamic Linear excepted: it warns). Anything else raises ValueError.

    ``weight_dtype``: Linear / Conv weights are written as ``"uint8"`` codes (npquant's
    int8 codes + 128, zero point 128) by default, because ONNX Runtime's uint8 x int8
    kernels saturate on x86 CPUs without VNNI (e.g. AMD Zen 3) and its uint8 x uint8
    kernels are exact everywhere. ``weight_dtype="int8"`` (QDQ only) writes npquant's
    int8 codes with zero point 0: faster in ONNX Runtime on CPUs with VNNI, but up to
    tens of steps off on AVX2-only CPUs (docs/onnx.md has the measurements).

    ``example_input``: what the model is called with (a float array, a QTensor, or a
    tuple of them); the graph records the npquant modules that call runs, so any
    ``forward()`` works as long as the values passed between modules come from
    exportable npquant modules (float or quantized: Linear, Conv2d, ReLU, ReLU6,
    Hardswish, pooling, BatchNorm, Flatten, Dropout, Identity, Float/QFunctional,
    Quant/DeQuant stubs, dynamic Linear) or ``QTensor.reshape``. Anything else raises
    ``ExportError`` naming the module. Float inputs and outputs stay float; a QTensor
    input or output becomes an integer tensor (the codes, with the example's qparams).
    Dimension 0 is symbolic ("N") unless ``dynamic_batch=False``; other dimensions are
    those of the example.
    """
    from ._export import check_format

    check_format(format, weight_dtype)
    _need_onnx()
    import onnx

    from ._export import build_model

    proto = build_model(model, example_input, dynamic_batch, format, weight_dtype=weight_dtype)
    onnx.save(proto, str(path))
    return proto


def load(path):
    """An ``npquant.nn`` model equivalent to an ONNX model (path, bytes or ModelProto).

    A float model gives float layers (``npquant.onnx._load`` lists the ops); a model with
    QuantizeLinear / DequantizeLinear gives quantized layers keeping the file's int8
    weights and qparams (``npquant.onnx._qdq_load``; docs/onnx.md says what the loaded
    model computes). Any op, attribute or quantization npquant cannot express raises
    ``UnsupportedOnnxError`` naming the node and what to do.
    """
    _need_onnx()
    from ._load import load_model

    return load_model(path)
