"""npquant.models against torchvision.models.quantization: the issue-13 acceptance table.

The comparison is tests/vision_peer.compare, which tests/test_models_torchvision.py asserts
on (with smaller images in CI); this prints it as a table, adding npquant's own
calibration. Run with the interpreter that has torch, torchvision and npquant:

    python bench/vision_models.py [--models resnet18 ...] [--size 64] [--calib 4]

(torchvision 0.28 from PyPI beside the CPU torch 2.13 imports through
vision_peer.import_torchvision.) To compare another torch in a venv of its own that lacks
npquant, add npquant's site-packages: NPQUANT_SITE=/path/to/site-packages.

Per model: torchvision's quantizable model (weights=None, quantize=False, fixed seed,
BatchNorm statistics randomized), its state dict loaded into npquant.models.<name>, then
- fp32: max |npquant - torch| / max |torch| on the same images;
- torch int8: fuse_model, HistogramObserver (reduce_range=False) + per-channel weights,
  calibrate, convert;
- qparams: torch's observers' inputs (torch's own float activations, recorded) fed to
  npquant's observers of the same names: how many give torch's qparams bit for bit;
- int8 given torch's qparams: npquant converted from those observers; its module outputs
  against torch's where tests/peers.py supplies torch's arithmetic on this CPU, and the
  fraction of logits equal to torch int8's with npquant as it is;
- npquant int8 with its own calibration (its float activations): qparams identical to
  torch's, and SQNR vs torch fp32 for npquant's and torch's int8.
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import warnings

if os.environ.get("NPQUANT_SITE"):
    site.addsitedir(os.environ["NPQUANT_SITE"])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import vision_peer  # noqa: E402  (tests/, put on the path above)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(vision_peer.MODELS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--calib", type=int, default=4, help="calibration batches of 4 images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch

        vision_peer.import_torchvision()
    except ImportError as e:
        print(f"needs torch and torchvision ({e}); see the docstring")
        return
    warnings.filterwarnings("ignore")
    import torchvision

    import npquant

    import peers

    feats = ", ".join(sorted(f for f in peers.FEATURES if "vnni" in f or "amx" in f)) or "no VNNI"
    print(f"npquant from {npquant.__file__}; torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"CPU: {feats}; torch capability {torch.backends.cpu.get_cpu_capability()}")
    print(
        "| model | fp32 rel diff | qparams identical (torch's activations) | int8 module outputs identical "
        "(torch's arithmetic emulated) | int8 logits identical (npquant as is) | qparams identical "
        "(own calibration) | SQNR npquant int8 (own) | SQNR npquant int8 (torch's qparams) | SQNR torch int8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = vision_peer.compare(name, args.size, batch=2, calib=args.calib, calib_batch=4, seed=args.seed, own=True)
        obs = r["observers"]
        layers = r["layers_compared"]
        modes = ", ".join(f"{n} {m}" for m, n in sorted(r["modes"].items()))
        print(
            f"| {name} | {r['fp32_rel']:.1e} | {obs - len(r['qparams_differ'])}/{obs} | "
            f"{layers - len(r['layers_differ'])}/{layers} ({r['codes_compared']:,} codes; layers: {modes}) | "
            f"{r['identical']:.4f} | {obs - len(r['own_qparams_differ'])}/{obs} | {r['sqnr_npq']:.1f} dB | "
            f"{r['sqnr_npq_torchq']:.1f} dB | {r['sqnr_torch']:.1f} dB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
