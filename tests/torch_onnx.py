"""torch.onnx.export as the ONNX import tests call it: either of torch's exporters, static
or dynamic batch, to bytes.

- "torchscript": `dynamo=False`, the TorchScript exporter (deprecated in torch 2.9+, still
  what many files in the wild come from); a dynamic batch is `dynamic_axes`.
- "dynamo": `dynamo=True`, the default since torch 2.9 (needs the onnxscript package);
  a dynamic batch is `dynamic_shapes` with a `torch.export.Dim`. `optimize=True` (its
  default) runs onnxscript's optimizer, which folds BatchNormalization into Conv and
  constants into initializers; `optimize=False` leaves the graph as translated (Constant
  nodes, Shape / Expand / CastLike for Conv's zero bias, SplitToSequence for chunk).
"""

from __future__ import annotations

import io
import warnings

EXPORTERS = ("torchscript", "dynamo")


def export(model, x, exporter: str, dynamic: bool, opset: int | None = None, optimize: bool = True) -> bytes:
    """The ONNX file of model(x) (x one tensor; the input is named 'input', the output
    'output'); dynamic makes dimension 0 (the batch) symbolic."""
    import torch

    kw: dict = dict(input_names=["input"], output_names=["output"])
    if opset:
        kw["opset_version"] = opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings from torch
        if exporter == "torchscript":
            if dynamic:
                kw["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
            f = io.BytesIO()
            torch.onnx.export(model, (x,), f, dynamo=False, **kw)
            return f.getvalue()
        if exporter != "dynamo":
            raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
        if dynamic:
            kw["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        program = torch.onnx.export(model, (x,), dynamo=True, optimize=optimize, verbose=False, **kw)
        return program.model_proto.SerializeToString()
