"""Whole torchvision models: npquant int8 against PyTorch int8 and ONNX Runtime int8, one run.

    python bench/models.py                              # default models, batch 1 and 8, 1 thread
    python bench/models.py --models resnet18 --batch 1 --threads 1 2 --repeat 10
    python bench/models.py --results bench/RESULTS.md   # also append the tables there
    python bench/models.py --isa avx2                   # also npquant with NPQUANT_ISA=avx2
    ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
        NPQUANT_ISA=avx2 python bench/models.py  # PyTorch and npquant as on an AVX2-only
        # CPU (ORT has no cap: the report says which peer ran what)

Per model (torchvision.models.quantization.<name>(weights=None, quantize=False), random
weights from a fixed seed, BatchNorm statistics randomized so activations are not
degenerate), the same calibration images (fixed-seed N(0, 1), CALIB_BATCHES x 8) feed:
- torch int8: eval, fuse_model(), qconfig x86, prepare, calibrate, convert;
- ORT int8: torch.onnx.export of the float model (dynamo=False), then
  onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, uint8
  activations, MinMax) with the same images;
- npquant int8 (twin): npquant.models.<name> (torchvision's architecture written in npquant.nn)
  with the torch model's state dict loaded, fuse_model(), qconfig
  npquant.get_default_qconfig('x86'), prepare, calibrate, convert: what a user with
  torchvision weights does, and the headline ratio;
- npquant int8 frozen: the twin through npquant.freeze (its recorded native calls replayed
  without the Python between them; results bit-identical, checked here);
- npquant int8 (ONNX): the same float ONNX through npquant.onnx.load, Conv+Relu and Add+Relu
  fused (fuse_plan), the same qconfig and flow;
- npquant fp32 (the imported float model) and torch fp32 for scale.
Reported: ms per batch (min and median of --repeat after warm-up), npquant int8 time / the
faster int8 peer's for each npquant route, and top-1 agreement of each int8 model with torch fp32 on EVAL_IMAGES other
images from the same distribution. Without torch/torchvision it says so and exits 0:
the models come from torchvision. Timing never runs in the unit tests (tests/test_bench_models.py
checks the pieces below without torchvision).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

DEFAULT_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0", "googlenet")
CALIB_BATCHES = 4  # of 8 images
EVAL_IMAGES = 32
IMG = (3, 224, 224)


# ---------------------------------------------------------------- pieces (no torch needed)


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n,) + IMG).astype(np.float32)


def calibration_batches() -> list:
    x = images(8 * CALIB_BATCHES, seed=1234)
    return [x[i : i + 8] for i in range(0, len(x), 8)]


def time_ms(fn, repeat: int, warmup: int = 2) -> tuple:
    """(min, median) milliseconds of fn() over repeat calls after warmup calls."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return min(t), statistics.median(t)


def top1_agreement(logits: np.ndarray, ref: np.ndarray) -> float:
    """Share of images whose top-1 class agrees, on logits centered over the images: random
    weights give every image the same raw top-1 class, which would make any model agree."""
    c = lambda a: a - a.mean(axis=0, keepdims=True)  # noqa: E731
    return float(np.mean(np.argmax(c(logits), axis=1) == np.argmax(c(ref), axis=1)))


def rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def fold_constant_identities(proto):
    """torch.onnx.export writes Identity nodes on shared weights; npquant.onnx.load takes
    activations only there, so such Identity outputs become initializers."""
    import onnx

    inits = {t.name: t for t in proto.graph.initializer}
    keep = []
    for n in proto.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            proto.graph.initializer.append(t)
            inits[t.name] = t
        else:
            keep.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return proto


def fuse_plan(net) -> tuple:
    """For an npquant.onnx.load GraphModule: the [conv, relu] pairs fuse_modules takes
    (a Conv2d whose output only a ReLU reads), and the Add steps a ReLU alone follows
    (to become add_relu, as torchvision's quantizable blocks write them)."""
    from npquant import nn

    readers: dict = {}
    for st in net.steps:
        for i in st.inputs:
            readers.setdefault(i, []).append(st)
    outputs = set(net.output_names) if hasattr(net, "output_names") else set()
    pairs, add_relu = [], []
    for st in net.steps:
        r = readers.get(st.output, [])
        if len(r) != 1 or st.output in outputs or not isinstance(getattr(net, r[0].child), nn.ReLU):
            continue
        mod = getattr(net, st.child)
        if isinstance(mod, nn.Conv2d) and st.method is None:
            pairs.append([st.child, r[0].child])
        elif st.method == "add":
            add_relu.append((st, r[0]))
    return pairs, add_relu


def apply_add_relu(net, add_relu) -> None:
    """Rewrites Add -> ReLU steps as one add_relu (the ReLU becomes an Identity)."""
    from npquant import nn

    for add, relu in add_relu:
        add.method = "add_relu"
        setattr(net, relu.child, nn.Identity())


def quantize_npquant(net, batches):
    import npquant

    pairs, _ = fuse_plan(net)
    net = npquant.fuse_modules(net, pairs) if pairs else net  # a copy: plan the add_relu on it
    apply_add_relu(net, fuse_plan(net)[1])
    net.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(net)
    for x in batches:
        prepared(x)
    return npquant.convert(prepared)


def quantize_twin(name: str, state: dict, batches):
    """npquant.models.<name> with a torchvision state dict (NumPy arrays), quantized as
    torchvision's quantizable models are: fuse_model(), qconfig x86, calibrate, convert."""
    import npquant
    import npquant.models as nm

    m = getattr(nm, name)(weights=state)
    m.fuse_model()
    m.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(m)
    for x in batches:
        prepared(x)
    return npquant.convert(prepared)


# twin (headline), the twin through npquant.freeze (its native calls replayed, no Python
# between them: bit-identical results), ONNX import
NPQ_ROUTES = ("npquant int8", "npquant int8 frozen", "npquant int8 onnx")


def table(rows: list, batches: list, threads: list) -> str:
    """Markdown: one row per (model, batch, threads); ms as min/median."""
    fixed = ["torch fp32", "npquant fp32", "torch int8", "ORT int8", *NPQ_ROUTES]
    extra = sorted({k for r in rows for k in r["ms"] if k not in fixed})  # e.g. "npquant int8 avx2"
    present = [i for i in fixed + extra if any(i in r["ms"] for r in rows)]
    ratios = [k for k in NPQ_ROUTES if k in present]
    head = (
        ["model", "batch", "thr"]
        + [f"{i} ms" for i in present]
        + [f"{k} / faster int8 peer (<1: npquant faster)" for k in ratios]
        + [
            "top-1 agree (torch/ORT/npq int8)",
            "rel. error (torch/ORT/npq)",
        ]
    )
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["batch"]), str(r["threads"])]
        for i in present:
            v = r["ms"].get(i)
            cells.append("" if v is None else f"{v[0]:.1f} / {v[1]:.1f}")
        peers = [r["ms"][p][0] for p in ("torch int8", "ORT int8") if p in r["ms"]]
        for k in ratios:
            npq = r["ms"].get(k)
            cells.append(f"{npq[0] / min(peers):.2f}" if npq and peers else "")
        ag = r.get("agree", {})
        cells.append(
            " / ".join(
                "-" if k not in ag else f"{100 * ag[k]:.0f}%" for k in ("torch int8", "ORT int8", "npquant int8")
            )
        )
        er = r.get("err", {})
        cells.append(
            " / ".join("-" if k not in er else f"{er[k]:.3f}" for k in ("torch int8", "ORT int8", "npquant int8"))
        )
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def environment() -> str:
    import npquant

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    vers = [f"npquant {npquant.__version__} (ISA {npquant.cpu_info().get('isa', '?')})", f"numpy {np.__version__}"]
    for mod in ("torch", "torchvision", "onnxruntime", "onnx"):
        try:
            vers.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            vers.append(f"{mod} missing")
        except Exception as e:  # e.g. PyPI's CUDA torchvision beside a CPU torch (RuntimeError)
            vers.append(f"{mod} not importable ({type(e).__name__})")
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"
    flags: set = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line.split(":", 1)[1].split() for line in f if line.startswith("flags")))
    except (OSError, StopIteration):
        pass
    try:
        import torch

        aten = torch.backends.cpu.get_cpu_capability()
    except Exception:
        aten = None
    return (
        f"CPU: {cpu}; {os.cpu_count()} cores; load average {load}\nVersions: {', '.join(vers)}\n"
        f"Peers: {peer_isas(os.environ, flags, aten)}"
    )


def peer_isas(env, flags: set, aten_cap) -> str:
    """Which int8 instructions the peers run here, and so whether they are exact. PyTorch's
    x86 engine runs convs on oneDNN and the rest on FBGEMM; both take the best ISA unless
    ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) and FBGEMM_ENABLE_INSTRUCTIONS cap them (AVX2:
    vpmaddubsw, as on an AVX2-only CPU). ONNX Runtime's MLAS has no such cap. Without VNNI
    the peers saturate int16 pair sums: faster than exact, and not exact."""
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    kind = lambda v: "VNNI, exact" if v else "vpmaddubsw, saturating int16"  # noqa: E731
    parts = []
    for lib, var, pre_vnni in (
        ("oneDNN", "ONEDNN_MAX_CPU_ISA", ("AVX2", "AVX512_CORE")),
        ("FBGEMM", "FBGEMM_ENABLE_INSTRUCTIONS", ("AVX2", "AVX512", "AVX512_256")),
    ):
        cap = str(env.get(var) or (env.get("DNNL_MAX_CPU_ISA", "") if lib == "oneDNN" else "")).upper()
        parts.append(f"{lib} {'capped at ' + cap if cap else 'best ISA'} ({kind(vnni and cap not in pre_vnni)})")
    return (
        f"torch int8 on {', '.join(parts)}, ATen {aten_cap or '?'}; ONNX Runtime int8 on MLAS's best ISA ({kind(vnni)})"
    )


# ---------------------------------------------------------------- peers (torch, torchvision, ORT)


def randomize_bn(torch, model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean = 0.2 * torch.randn(c, generator=g)
            m.running_var = 0.5 + torch.rand(c, generator=g)


def build_float(name: str):
    import torch
    from torchvision.models import quantization as tq

    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    m = getattr(tq, name)(weights=None, quantize=False, **kw).eval()
    randomize_bn(torch, m, 1)
    return m


def torch_int8(name: str, batches):
    import copy

    import torch

    m = copy.deepcopy(build_float(name))
    m.fuse_model()
    m.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.backends.quantized.engine = "x86"
    torch.ao.quantization.prepare(m, inplace=True)
    with torch.no_grad():
        for x in batches:
            m(torch.from_numpy(x))
    return torch.ao.quantization.convert(m)


def export_onnx(model) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, *IMG),),
            buf,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )
    return buf.getvalue()


def ort_int8(float_onnx: bytes, batches, threads: int, tmp: str):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x} for x in batches])

        def get_next(self):
            return next(self.it, None)

    src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
    with open(src, "wb") as f:
        f.write(float_onnx)
    quantize_static(
        src,
        dst,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return ort_session(dst, threads)


def ort_session(path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- the run


def run_npquant_only(args) -> None:
    """Child process (NPQUANT_ISA set by the parent): the twins' int8 rows as JSON, from the
    state dicts the parent saved as <name>.npz."""
    import npquant

    out = []
    for name in args.models:
        path = os.path.join(args.npquant_only, name + ".npz")
        if not os.path.exists(path):
            continue
        with np.load(path) as z:
            q = quantize_twin(name, dict(z), calibration_batches())
        for threads in args.threads:
            npquant.set_num_threads(threads)
            for b in args.batch:
                x = images(b, seed=7)
                out.append({"model": name, "batch": b, "threads": threads, "ms": time_ms(lambda: q(x), args.repeat)})
    print(json.dumps({"isa": npquant.cpu_info().get("isa"), "rows": out}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--isa", default=None, help="also time npquant int8 with NPQUANT_ISA=<isa> (subprocess)")
    ap.add_argument("--profile", type=int, default=1, help="print npquant.profile rows for the slowest model")
    ap.add_argument("--results", default=None, help="append the report to this Markdown file")
    ap.add_argument("--npquant-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.npquant_only:
        run_npquant_only(args)
        return 0

    import npquant

    try:
        import torch
        import torchvision  # noqa: F401
    except Exception as e:  # torchvision is where the models come from
        print(
            f"bench/models.py: skipped: torch/torchvision not importable ({type(e).__name__}: {e}). "
            "See bench/README.md for a venv with torchvision."
        )
        return 0
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as e:
        print(f"bench/models.py: needs onnx and onnxruntime ({e})")
        return 0

    torch.backends.quantized.engine = "x86"
    batches = calibration_batches()
    evals = images(EVAL_IMAGES, seed=99)
    rows, notes, profiles = [], [], {}
    tmp = tempfile.mkdtemp(prefix="npq-models-")
    for name in args.models:
        try:
            fm = build_float(name)
        except Exception as e:
            notes.append(f"{name}: torchvision cannot build it ({type(e).__name__}: {e})")
            continue
        onnx_bytes = export_onnx(fm)
        with open(os.path.join(tmp, name + ".onnx"), "wb") as f:
            f.write(onnx_bytes)
        with torch.no_grad():
            ref = fm(torch.from_numpy(evals)).numpy()
        impls, agree, err = {"torch fp32": lambda x: fm(torch.from_numpy(x))}, {}, {}

        def score(key, out):
            agree[key], err[key] = top1_agreement(out, ref), rel_error(out, ref)

        try:
            tq = torch_int8(name, batches)
            impls["torch int8"] = lambda x, tq=tq: tq(torch.from_numpy(x))
            with torch.no_grad():
                score("torch int8", tq(torch.from_numpy(evals)).numpy())
        except Exception as e:
            notes.append(f"{name}: torch int8 failed ({type(e).__name__}: {str(e)[:150]})")
        sessions = {}
        try:
            sd = os.path.join(tmp, name)
            os.makedirs(sd, exist_ok=True)
            for t in args.threads:
                sessions[t] = (
                    ort_int8(onnx_bytes, batches, t, sd)
                    if t == args.threads[0]
                    else ort_session(os.path.join(sd, "q.onnx"), t)
                )
            s0 = sessions[args.threads[0]]
            score("ORT int8", s0.run(None, {"x": evals})[0])
        except Exception as e:
            notes.append(f"{name}: ORT int8 failed ({type(e).__name__}: {str(e)[:150]})")
        state = {k: v.detach().numpy() for k, v in fm.state_dict().items()}
        np.savez(os.path.join(tmp, name + ".npz"), **state)
        try:
            qt = quantize_twin(name, state, batches)
            impls["npquant int8"] = qt
            score("npquant int8", qt(evals))
        except Exception as e:
            notes.append(f"{name}: npquant.models twin failed ({type(e).__name__}: {str(e)[:200]})")
        if "npquant int8" in impls:
            try:  # recorded per input shape on first use (in time_ms's warm-up)
                frozen = npquant.freeze(impls["npquant int8"], evals)
                if not np.array_equal(frozen(evals), impls["npquant int8"](evals)):
                    raise AssertionError("frozen and eager results differ")
                impls["npquant int8 frozen"] = frozen
            except Exception as e:
                notes.append(f"{name}: npquant.freeze failed ({type(e).__name__}: {str(e)[:200]})")
        try:
            net = npquant.onnx.load(fold_constant_identities(onnx.load_from_string(onnx_bytes)))
            impls["npquant fp32"] = net
            impls["npquant int8 onnx"] = quantize_npquant(net, batches)
        except Exception as e:
            notes.append(f"{name}: npquant cannot import or quantize it ({type(e).__name__}: {str(e)[:200]})")
        for threads in args.threads:
            torch.set_num_threads(threads)
            npquant.set_num_threads(threads)
            for b in args.batch:
                x = images(b, seed=7)
                r = {"model": name, "batch": b, "threads": threads, "ms": {}, "agree": agree, "err": err}
                with torch.no_grad():
                    for k, fn in impls.items():
                        if k == "npquant fp32":  # NumPy float convs: seconds per batch; for scale only
                            if b == min(args.batch) and threads == args.threads[0]:
                                r["ms"][k] = time_ms(lambda: fn(x), 1, warmup=0)
                            continue
                        r["ms"][k] = time_ms(lambda: fn(x), args.repeat)
                    if threads in sessions:
                        r["ms"]["ORT int8"] = time_ms(lambda: sessions[threads].run(None, {"x": x}), args.repeat)
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k not in ("agree", "err")}), flush=True)
        if "npquant int8" in impls and args.profile:
            npquant.set_num_threads(args.threads[0])
            b = max(args.batch)
            profiles[name] = npquant.profile(impls["npquant int8"], images(b, seed=7), repeat=3)
    if args.isa:
        env = dict(os.environ, NPQUANT_ISA=args.isa)
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--npquant-only",
            tmp,
            "--models",
            *args.models,
            "--batch",
            *map(str, args.batch),
            "--threads",
            *map(str, args.threads),
            "--repeat",
            str(args.repeat),
        ]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode == 0:
            child = json.loads(res.stdout.strip().splitlines()[-1])
            for cr in child["rows"]:
                for r in rows:
                    if (r["model"], r["batch"], r["threads"]) == (cr["model"], cr["batch"], cr["threads"]):
                        r["ms"][f"npquant int8 {args.isa}"] = tuple(cr["ms"])
        else:
            notes.append(f"NPQUANT_ISA={args.isa} run failed: {res.stderr.strip()[-300:]}")
    report = [
        environment(),
        "",
        "ms per batch: min / median of "
        f"{args.repeat}; top-1 agreement (centered logits) and relative L2 error against torch fp32 "
        f"on {EVAL_IMAGES} images.",
        "",
        table(rows, args.batch, args.threads),
    ]
    if notes:
        report += ["", "Notes:"] + [f"- {n}" for n in notes]
    if profiles:
        slow = max(profiles, key=lambda n: profiles[n].total_ms)
        p = profiles[slow]
        report += [
            "",
            f"npquant.profile, {slow} int8, batch {max(args.batch)}, {args.threads[0]} thread(s), top rows:",
            "```",
            "\n".join(str(p).splitlines()[:14]),
            "```",
        ]
    text = "\n".join(report)
    print(text)
    if args.results:
        with open(args.results, "a") as f:
            f.write("\n\n## Whole models (bench/models.py, " + time.strftime("%Y-%m-%d") + ")\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
