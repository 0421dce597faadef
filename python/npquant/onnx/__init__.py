"""ONNX interop: export quantized npquant models as QDQ ONNX, import float ONNX models.

``export(model, example_input, path)`` traces ``model(example_input)`` and writes
a QDQ-format ONNX file (QuantizeLinear / DequantizeLinear around Conv, Gemm and
MatMul, per-channel int8 weights, int32 biases, uint8 activations) that ONNX
Runtime runs within one quantization step of npquant. ``load(path)`` builds an
``npquant.nn`` model from a float ONNX file, ready for ``prepare``/``convert``.

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


def export(model, example_input, path, dynamic_batch: bool = True):
    """Writes ``model`` as a QDQ ONNX model to ``path`` and returns the ``onnx.ModelProto``.

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
    _need_onnx()
    import onnx

    from ._export import build_model

    proto = build_model(model, example_input, dynamic_batch)
    onnx.save(proto, str(path))
    return proto


def load(path):
    """An ``npquant.nn`` model equivalent to a float ONNX model (path, bytes or ModelProto).

    See ``npquant.onnx._load`` for the supported ops; any other op raises
    ``UnsupportedOnnxError`` naming it and its node.
    """
    _need_onnx()
    from ._load import load_model

    return load_model(path)

