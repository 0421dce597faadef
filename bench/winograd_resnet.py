"""ResNet-18 int8 with and without the Winograd 3x3 conv path, in one run.

    NPQUANT_ISA=avx2 python bench/winograd_resnet.py                  # batch 1 and 8, 1 thread
    NPQUANT_ISA=avx2 python bench/winograd_resnet.py --batch 1 --repeat 15 --profile

The model is ``npquant.models.resnet18()`` (its random initial weights), fused
(``fuse_model``), quantized with ``get_default_qconfig('x86')``: prepare, 2 calibration
batches of 8 N(0, 1) images, convert. Each quantized conv is then packed twice, as
dispatch routes it (Winograd on the 3x3 stride-1 layers, where the ISA has the kernel)
and with ``winograd=False`` (the direct path it replaces); the two sets are swapped in
and timed alternately, so both see the same machine state. Both paths are exact, so the
logits must be equal bit for bit (checked). Prints ms per batch (min and median; process
CPU time by default, which a busy machine's preemption does not inflate), the speed-up,
and with ``--profile`` the per-layer profile of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import npquant
from npquant import _C
from npquant.models import resnet18
from npquant.nn.quantized.conv import PackedConvParams


def quantized_resnet18(seed: int = 0):
    model = resnet18()
    model.fuse_model()
    model.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(model)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        prepared(rng.normal(0, 1, (8, 3, 224, 224)).astype(np.float32))
    return npquant.convert(prepared)


def packings(qmodel) -> tuple:
    """(params, routed packings, direct packings, paths) of every quantized conv."""
    params, routed, direct, paths = [], [], [], {}
    for m in qmodel.modules():
        p = getattr(m, "_packed_params", None)
        if not isinstance(p, PackedConvParams):
            continue
        w = np.ascontiguousarray(p.qweight.int_repr())
        params.append(p)
        routed.append(p.packed)
        direct.append(_C.PackedConv2dWeight(w, *p.geometry, winograd=False))
        paths[p.packed.path] = paths.get(p.packed.path, 0) + 1
    return params, routed, direct, paths


def use(params, packs) -> None:
    for p, k in zip(params, packs):
        p.packed = k


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="process CPU time (default: steadier on a shared machine, 1 thread) or wall time",
    )
    ap.add_argument("--profile", action="store_true", help="also print npquant.profile of both")
    args = ap.parse_args(argv)
    npquant.set_num_threads(args.threads)
    info = npquant.cpu_info()
    print(f"ISA {info['isa']} (NPQUANT_ISA={os.environ.get('NPQUANT_ISA', '')}), {args.threads} thread(s)")
    qmodel = quantized_resnet18()
    params, routed, direct, paths = packings(qmodel)
    print(f"quantized convs by path (routed): {paths}; {args.clock} time")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print("| batch | Winograd ms (min / median) | direct ms (min / median) | direct / Winograd |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(1)
    for batch in args.batch:
        x = rng.normal(0, 1, (batch, 3, 224, 224)).astype(np.float32)
        out = {}
        times: dict = {"routed": [], "direct": []}
        for name, packs in (("routed", routed), ("direct", direct)):  # warm-up, outputs
            use(params, packs)
            out[name] = qmodel(x)
        if not np.array_equal(out["routed"], out["direct"]):
            raise SystemExit("the Winograd and direct paths gave different logits")
        for _ in range(args.repeat):
            for name, packs in (("routed", routed), ("direct", direct)):
                use(params, packs)
                t0 = clock()
                qmodel(x)
                times[name].append((clock() - t0) * 1e3)
        w, d = times["routed"], times["direct"]
        print(
            f"| {batch} | {min(w):.1f} / {statistics.median(w):.1f} | {min(d):.1f} / "
            f"{statistics.median(d):.1f} | {min(d) / min(w):.2f}x |"
        )
        if args.profile:
            for name, packs in (("routed", routed), ("direct", direct)):
                use(params, packs)
                print(f"\nprofile, batch {batch}, {name}:")
                print(npquant.profile(qmodel, x, repeat=3))
    use(params, routed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
