"""npquant against NumPy fp32, PyTorch and ONNX Runtime: same shapes, same threads, one run.

    npquant bench                      # 1 thread, Linear and Conv tables
    npquant bench --threads 2 --json out.json
    npquant bench --isa avx2           # adds npquant columns run under NPQUANT_ISA=avx2
                                       # (in a worker process, samples interleaved)
    npquant bench --quick --no-conv    # fewer repeats, Linear only
    npquant bench --plot bench.png     # also a bar chart (matplotlib)

(``python bench/compare.py`` in a checkout runs the same.) It lives in the package so
that the installed ``npquant`` command has it; peers are imported only when benchmarked.

Every implementation computes the same layer on the same data; before timing, each output is
checked against a float64 reference (relative L2 error), so a broken peer setup shows up as
a failed check instead of a fast number. Timings are medians of repeated samples after warmup,
with the implementations interleaved (round robin, rotating order) so that a noisy machine
slows all of them alike. Peers that are not installed are skipped with a note.

The functions here (linear_impls, conv_impls, make_linear_case, make_conv_case, bench_cases,
resolve_peaks, markdown_table, plot, run) take and return plain data, so that a command-line
front end (`npquant bench`) can reuse them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .cases import CONV_SHAPES, LINEAR_SHAPES, Skip, make_conv_case, make_linear_case
from .peers import conv_impls, import_npquant, limited_threads, linear_impls, select
from .report import plot, report, versions
from .timing import (
    CLOCKS,
    STATS,
    IsaWorker,
    bench_cases,
    bench_elementwise,
    find_bench_binary,
    measure_peak,
    worker_main,
)


def _shape_list(arity: int):
    def parse(text: str) -> list:
        shapes = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]
        if not shapes or any(len(s) != arity or min(s) < 1 for s in shapes):
            raise argparse.ArgumentTypeError(
                f"expected ';'-separated groups of {arity} positive integers, got {text!r}"
            )
        return shapes

    return parse


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every library")
    p.add_argument("--repeat", type=int, default=7, help="timed samples per implementation")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument(
        "--min-sample", type=float, default=0.02, help="seconds per sample (fast calls are repeated within a sample)"
    )
    p.add_argument("--quick", action="store_true", help="--repeat 3 --warmup 1")
    p.add_argument(
        "--stat",
        choices=sorted(STATS),
        default="median",
        help="statistic of the samples (min: the least disturbed, on a busy machine)",
    )
    p.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="wall time, or the process's CPU time (not inflated by other processes; meaningful with --threads 1 only)",
    )
    p.add_argument(
        "--isa", action="append", default=[], help="also run npquant under NPQUANT_ISA=X (repeatable, or comma list)"
    )
    p.add_argument("--only", default="", help="comma list of families to run: numpy, npquant, torch, ort")
    p.add_argument("--no-linear", action="store_true")
    p.add_argument("--no-conv", action="store_true")
    p.add_argument("--no-elementwise", action="store_true", help="skip the QFunctional add/add_relu/mul/cat table")
    p.add_argument(
        "--linear-shapes",
        type=_shape_list(3),
        default=LINEAR_SHAPES,
        metavar="M,K,N;...",
        help="Linear shapes (default: the issue's)",
    )
    p.add_argument(
        "--conv-shapes",
        type=_shape_list(8),
        default=CONV_SHAPES,
        metavar="N,C,H,W,Cout,k,stride,groups;...",
        help="Conv2d shapes",
    )
    p.add_argument(
        "--peak",
        default=None,
        help="peak GMAC/s of npquant's ISA, or the path of npquant_bench to probe it "
        "(default: a built npquant_bench, if any)",
    )
    p.add_argument("--no-peak", action="store_true", help="do not run the peak probe")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--plot", default=None, help="also draw a bar chart here (PNG, matplotlib)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # see IsaWorker
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.quick:
        args.repeat, args.warmup = 3, 1
    args.isa = [s for a in args.isa for s in a.split(",") if s]
    return args


def resolve_peaks(args, isa: str | None, threads: int):
    """({isa: GMAC/s}, where they come from): the probe peaks of every ISA the native bench
    can probe here, or the one --peak number for the ISA npquant runs."""
    if args.no_peak:
        return {}, "not measured (--no-peak)"
    binary: Path | None
    if args.peak:
        try:
            return {isa: float(args.peak)}, "given with --peak"
        except ValueError:
            binary = Path(args.peak)
    else:
        binary = find_bench_binary()
    if binary is None:
        return {}, ("not measured: build the native bench (cmake -DNPQUANT_BUILD_BENCH=ON) or pass --peak GMACS")
    try:
        found = measure_peak(binary, threads)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        return {}, f"probe failed ({binary}): {e}"
    probes = ", ".join(f"{i} {g:.0f} ({p})" for i, (g, p) in sorted(found.items()))
    return ({i: g for i, (g, _) in found.items()}, f"npquant_bench probes, {threads} thread(s): {probes or 'none'}")


@contextlib.contextmanager
def _isa_workers(isas: list, threads: int, meta: dict):
    """One IsaWorker per --isa; a worker that cannot start is a note, not a crash."""
    workers = []
    meta["isa_workers"] = {}
    try:
        for isa in isas:
            try:
                w = IsaWorker(isa, threads)
            except (RuntimeError, OSError) as e:
                meta["notes"].append(str(e))
                continue
            workers.append(w)
            meta["isa_workers"][isa] = f"{w.npquant_isa} ({w.kernel})"
        yield tuple(workers)
    finally:
        for w in workers:
            w.close()


def _loadavg() -> float | None:
    """The 1-minute load average (how busy the machine was), where the OS tells it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run(args) -> dict:
    """Everything main() prints, as data: {'meta', 'linear', 'conv'} (rows as dicts)."""
    notes: list = []
    meta: dict = {
        "threads": args.threads,
        "versions": versions(),
        "notes": notes,
        "timing": f"{args.stat} of {args.repeat} interleaved samples, {args.clock} clock",
        "load_before": _loadavg(),
    }
    try:
        info = import_npquant().cpu_info()
        meta["npquant_isa"] = info["isa"]
        meta["npquant_kernel"] = info["kernels"]["gemm"]["name"]
        small = info["kernels"]["gemm_small_m"]["name"]
        if small != meta["npquant_kernel"]:
            meta["npquant_kernel"] += f"; {small} for M < {info['small_m']}"
        meta["cpu"] = f"{info.get('vendor', '')} {info.get('brand', '')}".strip()
        meta["cpu_features"] = info["features"]
    except Skip as e:
        meta["npquant_isa"] = None
        notes.append(str(e))
    result = {"meta": meta, "linear": [], "conv": []}
    progress = not args.no_progress
    with limited_threads(args.threads, notes), _isa_workers(args.isa, args.threads, meta) as ws:
        common = dict(
            repeat=args.repeat,
            warmup=args.warmup,
            min_sample=args.min_sample,
            progress=progress,
            workers=ws,
            clock=args.clock,
            stat=args.stat,
        )
        if not args.no_linear:
            cases = [make_linear_case(*s) for s in args.linear_shapes]
            result["linear"] = bench_cases(cases, select(linear_impls(), args.only), desc="linear", **common)
        if not args.no_conv:
            conv_cases = [make_conv_case(s) for s in args.conv_shapes]
            result["conv"] = bench_cases(conv_cases, select(conv_impls(), args.only), desc="conv", **common)
        if not args.no_elementwise:
            result["elementwise"] = [
                r.__dict__
                for r in bench_elementwise(
                    repeat=args.repeat, warmup=args.warmup, min_sample=args.min_sample, clock=args.clock, stat=args.stat
                )
            ]
    meta["load_after"] = _loadavg()
    meta["peaks"], meta["peak_source"] = resolve_peaks(args, meta.get("npquant_isa"), args.threads)
    result["linear"] = [r.__dict__ for r in result["linear"]]
    result["conv"] = [r.__dict__ for r in result["conv"]]
    return result


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    if args.worker:
        return worker_main(args.threads)
    result = run(args)
    print(report(result, args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    if args.plot:
        try:
            plot(result, args.plot)
        except ImportError:
            print("\n--plot needs matplotlib (pip install matplotlib); no plot written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
