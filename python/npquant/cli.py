"""The ``npquant`` command: ``npquant demo``, ``npquant info``, ``npquant bench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _cmd_info(args: argparse.Namespace) -> int:
    import npquant

    info = npquant.cpu_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(format_info(info, npquant.__version__))
    return 0


def format_info(info: dict[str, Any], version: str) -> str:
    lines = [
        f"npquant {version}",
        f"cpu          {info.get('brand', '?')} ({info.get('vendor', '?')}, {info.get('arch', '?')})",
        f"features     {' '.join(info.get('features', [])) or '-'}",
        f"built ISAs   {' '.join(info.get('built_isas', []))}",
        f"runnable     {' '.join(info.get('runnable_isas', []))}",
        f"chosen ISA   {info.get('isa')}   (cap it with NPQUANT_ISA=<isa>)",
        f"threads      {info.get('num_threads', '?')}   (npquant.set_num_threads)",
        "kernels",
    ]
    for family, k in info.get("kernels", {}).items():
        if not isinstance(k, dict):
            lines.append(f"  {family:<14} {k}")
            continue
        if k.get("name") is None:  # e.g. no indirect GEMM for this ISA: conv gathers rows
            lines.append(f"  {family:<14} none")
            continue
        tile = ", ".join(f"{key} {k[key]}" for key in ("mr", "nr", "kr") if key in k)
        extra = "  (stand-in)" if k.get("standin") else ""
        lines.append(f"  {family:<14} {k.get('name')}  [{k.get('isa')}{'; ' + tile if tile else ''}]{extra}")
    known = {"brand", "vendor", "arch", "features", "built_isas", "runnable_isas", "isa", "num_threads", "kernels"}
    for key, v in info.items():
        if key not in known:
            lines.append(f"{key:<12} {v}")
    return "\n".join(lines)


_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _limit_blas_threads_by_reexec(threads: int) -> None:
    """Without threadpoolctl, NumPy's BLAS thread count is fixed when NumPy loads
    (already done: npquant imports it), so the demo restarts itself once with the
    BLAS environment variables set. Otherwise multi-threaded BLAS on a busy machine
    can make fp32 look 10x slower than it is."""
    import importlib.util
    import os

    if not threads or importlib.util.find_spec("threadpoolctl") is not None:
        return
    if all(os.environ.get(v) == str(threads) for v in _BLAS_THREAD_VARS):
        return
    env = dict(os.environ, **{v: str(threads) for v in _BLAS_THREAD_VARS})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "npquant", *sys.argv[1:]], env)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import format_demo, run_demo

    if args.threads < 0:
        raise SystemExit("npquant demo: --threads must be >= 0")
    if args.argv_is_process:
        _limit_blas_threads_by_reexec(args.threads)
    result = run_demo(
        quick=args.quick,
        show_progress=not args.no_progress,
        other_isas=not args.no_isas,
        threads=args.threads or None,
        save=args.save,
    )
    print(format_demo(result))
    if args.save:
        print(f"\nint8 model saved to {args.save}: npquant.load({args.save!r}) runs it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from .bench.cli import main as bench_main

    return bench_main(argv, prog="npquant bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npquant", description="Exact int8 inference for NumPy.")
    sub = p.add_subparsers(dest="command", metavar="{demo,info,bench}")
    sub.required = True

    d = sub.add_parser("demo", help="quantize the bundled digits CNN; accuracy, per-layer error, speed")
    d.add_argument("--quick", action="store_true", help="fewer images and timing repeats (seconds, rougher)")
    d.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for npquant's kernels and NumPy's BLAS alike (default 1, the most "
        "repeatable comparison; 0: each library's default, all cores)",
    )
    d.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--save", metavar="PATH", help="also save the int8 model (npquant.save) to PATH")
    d.add_argument(
        "--no-isas", action="store_true", help="skip re-running the int8 model under the other ISAs of this CPU"
    )
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser("info", help="CPU features, built ISAs and the kernels chosen")
    i.add_argument("--json", action="store_true", help="print the raw dict as JSON")
    i.set_defaults(func=_cmd_info)

    # `npquant bench ARGS` is handed to npquant.bench's own parser (see main).
    sub.add_parser(
        "bench",
        help="npquant against NumPy, PyTorch, ONNX Runtime (those installed); npquant bench --help for its options",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Only a process's own command line may be re-run (see _limit_blas_threads_by_reexec).
    argv_is_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv_is_process = argv_is_process
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
