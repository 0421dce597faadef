"""torchvision's quantizable architectures through torch.onnx.export and npquant.onnx.load:
the table of docs/onnx.md (Import), for both of torch's exporters and both batch modes.

Each row is tests/vision_peer.onnx_route, which tests/test_onnx_import_dynamo.py asserts on
for a subset of the rows (the dynamo exporter takes seconds per model): torchvision's float
model (weights=None, quantize=False, seeded, BatchNorm statistics randomized) exported
with `dynamo=False` (TorchScript) or `dynamo=True` (the default; needs onnxscript), with a
static or a dynamic batch; imported; fp32 against torch on batches of 2 (and 1 and 3 when
the batch is dynamic); then prepare / calibrate (two batches of 2) / convert with the x86
qconfig, no fusion. Run with the interpreter that has torch, torchvision, onnxscript and
npquant:

    python bench/onnx_vision_import.py [--models resnet18 ...] [--exporters dynamo]
                                       [--size 32] [--no-optimize] [--transform-input]

(torchvision 0.28 from PyPI beside the CPU torch 2.13 imports through
vision_peer.import_torchvision.) Times are one run's, on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import torch_onnx  # noqa: E402  (tests/, put on the path above)
import vision_peer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(vision_peer.MODELS))
    ap.add_argument("--exporters", nargs="*", default=list(torch_onnx.EXPORTERS), choices=torch_onnx.EXPORTERS)
    ap.add_argument("--size", type=int, default=32, help="image size (at least each model's minimum)")
    ap.add_argument("--no-optimize", action="store_true", help="dynamo exporter with optimize=False")
    ap.add_argument(
        "--transform-input",
        action="store_true",
        help="googlenet / inception_v3 with transform_input=True (as their pretrained weights set it)",
    )
    args = ap.parse_args()
    try:
        import torch

        vision_peer.import_torchvision()
    except ImportError as e:
        print(f"needs torch and torchvision ({e}); see the docstring")
        return
    warnings.filterwarnings("ignore")
    import npquant

    print(
        f"npquant from {npquant.__file__}; torch {torch.__version__}; optimize={not args.no_optimize}; "
        f"transform_input={args.transform_input}"
    )
    print(
        "| model | exporter | batch | imports | fp32 rel diff | quantizes (quantized convs, float left) "
        "| SQNR int8 vs torch fp32 | export s | load s | route s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for exporter in args.exporters:
            for dynamic in (False, True):
                batch = "dynamic" if dynamic else "static"
                t0 = time.perf_counter()
                try:
                    kw = (
                        {"transform_input": True}
                        if args.transform_input and name in ("googlenet", "inception_v3")
                        else {}
                    )
                    r = vision_peer.onnx_route(name, exporter, dynamic, args.size, not args.no_optimize, **kw)
                except Exception as e:  # a row per failure, with the reason
                    print(f"| {name} | {exporter} | {batch} | no: {str(e).splitlines()[0]} | | | | | | |", flush=True)
                    continue
                quantizes = "yes" if r["float_convs"] == 0 and r["int8_shapes_ok"] else "no"
                print(
                    f"| {name} ({r['size']}x{r['size']}) | {exporter} | {batch} | yes | {r['fp32_rel']:.1e} | "
                    f"{quantizes} ({r['quantized_convs']}, {r['float_convs']}) | {r['sqnr_int8']:.1f} dB | "
                    f"{r['export_s']:.1f} | {r['load_s']:.1f} | {time.perf_counter() - t0:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
