"""The exceptions of npquant.onnx (importable without onnx)."""


class ExportError(RuntimeError):
    """The model uses something npquant.onnx cannot express in ONNX (the message says what)."""


class UnsupportedOnnxError(ValueError):
    """The ONNX file uses an op or attribute npquant.onnx.load cannot build (the message names it)."""
