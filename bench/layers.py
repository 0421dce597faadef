"""Layer by layer: npquant int8 against ONNX Runtime int8, each timed by its own profiler, one run.

    python bench/layers.py --model resnet50 --batch 8 --threads 1
    python bench/layers.py --model googlenet --batch 1 --threads 2 --top 20

bench/models.py says how much faster or slower a whole model is; this says where. The model,
calibration and both quantized versions are bench/models.py's (the twin for npquant, ORT's
quantize_static QDQ model for ONNX Runtime). npquant's times are npquant.profile's (median per
module); ORT's are its session profiler's `*_kernel_time` events (median per node over the
runs after warm-up). torch.onnx.export names a node after its module scope
("/layer1/layer1.0/conv1/Conv"), so a fused QLinearConv node maps to the npquant module of the
same dotted name ("layer1.0.conv1"). Nodes and modules without a partner (adds, pools,
concatenations, quantize/transpose nodes, npquant's Python between modules) are summed as
"between layers". Both profilers add overhead per call, so the totals are above the plain
timings of bench/models.py; compare them with each other, not with that table.

Needs torch, torchvision, onnx and onnxruntime (bench/README.md's venv); without them it says
so and exits 0. tests/test_bench_models.py checks the name matching without them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import models as M  # noqa: E402  (bench/models.py: the models, calibration and quantizers)


def scope_name(node: str) -> str | None:
    """The dotted module name of a node named by torch.onnx.export after its module scope, or
    None for a node outside any module.

    "/features/features.2/conv/conv.0/conv.0.0/Conv_token_10" -> "features.2.conv.0.0": each
    scope segment is the child's name as its parent's attribute, prefixed by the parent
    segment when the parent is a container ("conv.0" under "conv")."""
    parts = node.strip("/").split("/")[:-1]  # the last part is the op
    if not parts:
        return None
    name, prev = parts[0], parts[0]
    for seg in parts[1:]:
        name += "." + (seg[len(prev) + 1 :] if seg.startswith(prev + ".") else seg)
        prev = seg
    return name


def ort_node_times(events: list, warmup: int) -> dict:
    """{node name: median kernel time in us} from an ORT profile's events."""
    runs: dict = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs.setdefault(e["name"][: -len("_kernel_time")], []).append(e["dur"])
    return {k: statistics.median(v[warmup:] or v) for k, v in runs.items()}


def match(npq_rows: list, ort_us: dict) -> tuple:
    """Pairs npquant.profile rows ((name, type, ms)) with ORT convolution / GEMM nodes of the
    same module scope. Returns (pairs, npq_between_ms, ort_between_ms): pairs are (name, type,
    npq ms, ORT ms) in npq_rows' order; the rest of each side is summed."""
    by_scope: dict = {}
    for node, us in ort_us.items():
        s = scope_name(node)
        # only a node whose op is a convolution or GEMM belongs to a layer of the same name
        op = node.rsplit("/", 1)[-1]
        if s is not None and re.match(r"(Conv|Gemm|MatMul|QLinearConv|QLinearMatMul)", op):
            by_scope[s] = by_scope.get(s, 0.0) + us / 1000
    pairs, npq_between, used = [], 0.0, set()
    for name, typ, ms in npq_rows:
        if name in by_scope and name not in used:
            pairs.append((name, typ, ms, by_scope[name]))
            used.add(name)
        else:
            npq_between += ms
    ort_between = sum(us for us in ort_us.values()) / 1000 - sum(p[3] for p in pairs)
    return pairs, npq_between, ort_between


def report(pairs: list, npq_between: float, ort_between: float, top: int) -> str:
    """Markdown: the top pairs where npquant loses most, then sums; pairs in model order."""
    lines = [
        "| module | type | npquant ms | ORT ms | npquant / ORT |",
        "|---|---|---|---|---|",
    ]
    worst = sorted(pairs, key=lambda p: p[3] - p[2])[:top]  # where npquant loses most first
    for name, typ, a, b in worst:
        lines.append(f"| {name} | {typ} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    if pairs:
        stem = pairs[0]
        rest_a = sum(p[2] for p in pairs[1:])
        rest_b = sum(p[3] for p in pairs[1:])
        lines += [
            "",
            f"- first layer ({stem[0]}): npquant {stem[2]:.3f} ms, ORT {stem[3]:.3f} ms ({stem[2] / stem[3]:.2f})",
            f"- the other {len(pairs) - 1} convolution / linear layers: npquant {rest_a:.3f} ms, "
            f"ORT {rest_b:.3f} ms ({rest_a / rest_b:.2f})",
        ]
    a_all = sum(p[2] for p in pairs) + npq_between
    b_all = sum(p[3] for p in pairs) + ort_between
    lines += [
        f"- between layers (pools, adds, concatenations, quantize, reorders; npquant's Python "
        f"between modules): npquant {npq_between:.3f} ms, ORT {ort_between:.3f} ms",
        f"- sum: npquant {a_all:.3f} ms, ORT {b_all:.3f} ms ({a_all / b_all:.2f})",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50", choices=M.DEFAULT_MODELS)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--top", type=int, default=15, help="rows shown, where npquant loses most first")
    args = ap.parse_args(argv)
    try:
        import onnxruntime as ort
        import torch
        import torchvision  # noqa: F401
    except Exception as e:
        print(f"bench/layers.py: skipped: needs torch, torchvision and onnxruntime ({type(e).__name__}: {e})")
        return 0
    import npquant

    torch.backends.quantized.engine = "x86"
    batches = M.calibration_batches()
    fm = M.build_float(args.model)
    tmp = tempfile.mkdtemp(prefix="npq-layers-")
    M.ort_int8(M.export_onnx(fm), batches, args.threads, tmp)  # writes tmp/q.onnx
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.log_severity_level = 3
    so.enable_profiling, so.profile_file_prefix = True, os.path.join(tmp, "ort-profile")
    sess = ort.InferenceSession(os.path.join(tmp, "q.onnx"), so, providers=["CPUExecutionProvider"])
    x = M.images(args.batch, seed=7)
    warmup = 3
    for _ in range(args.repeat + warmup):
        sess.run(None, {"x": x})
    with open(sess.end_profiling()) as f:
        ort_us = ort_node_times(json.load(f), warmup)

    state = {k: v.detach().numpy() for k, v in fm.state_dict().items()}
    qt = M.quantize_twin(args.model, state, batches)
    npquant.set_num_threads(args.threads)
    prof = npquant.profile(qt, x, repeat=args.repeat)
    rows = [(r.name, r.type, r.ms) for r in prof.rows]
    pairs, npq_between, ort_between = match(rows, ort_us)
    order = {name: i for i, (name, _) in enumerate(qt.named_modules())}
    pairs.sort(key=lambda p: order.get(p[0], len(order)))  # model order: pairs[0] is the first layer
    print(M.environment())
    print(
        f"\n{args.model} int8, batch {args.batch}, {args.threads} thread(s): npquant.profile (median "
        f"of {args.repeat}) against ONNX Runtime's profiler (median of {args.repeat} runs), "
        f"{len(pairs)} layers matched by name\n"
    )
    print(report(pairs, npq_between, ort_between, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
