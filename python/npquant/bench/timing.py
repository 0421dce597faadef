"""Timing: interleaved samples of built implementations, in this process (LocalRunner)
or in an NPQUANT_ISA worker process (IsaWorker, RemoteRunner), and the native peak probes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cases import (
    ELEMENTWISE_CASES,
    ELEMENTWISE_TORCH_MAX_STEP,
    TOLERANCE,
    ConvCase,
    LinearCase,
    Skip,
    make_conv_case,
    make_linear_case,
    relative_error,
)
from .peers import Impl, conv_impls, elementwise_runners, import_npquant, limited_threads, linear_impls, quiet


def _progress(total: int, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
        except ImportError:
            pass
    return None


class LocalRunner:
    """Times one built implementation in this process."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def calibrate(self, warmup: int, min_sample: float) -> int:
        """Runs the warmup calls; returns how many calls make a sample of ~min_sample s."""
        for _ in range(warmup):
            self.fn()
        t0 = time.perf_counter()
        self.fn()
        return max(1, int(min_sample / max(time.perf_counter() - t0, 1e-9)))

    def sample(self, number: int) -> tuple:
        """(wall, CPU) seconds per call, over `number` back-to-back calls. CPU time is
        this process's (all its threads), which preemption by other processes does not
        inflate."""
        fn = self.fn
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
        t1, c1 = time.perf_counter(), time.process_time()
        return (t1 - t0) / number, (c1 - c0) / number


CLOCKS = ("wall", "cpu")
STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "min": min}


def time_interleaved(
    runners: dict, repeat: int, warmup: int, min_sample: float, bar=None, clock: str = "wall", stat: str = "median"
) -> dict:
    """Seconds per call of each runner (the median, or min, of `repeat` samples on the
    wall or CPU clock), sampled round robin.

    Round r starts at runner r (mod count), so none always runs right after the same
    neighbour; runners in --isa worker processes take their turns like local ones."""
    number = {name: r.calibrate(warmup, min_sample) for name, r in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            samples[name].append(runners[name].sample(number[name])[CLOCKS.index(clock)])
        if bar is not None:
            bar.update(1)
    return {name: STATS[stat](s) for name, s in samples.items()}


def build_checked(impl: Impl, case):
    """(run, relative error, note): builds impl on case and checks its output against the
    float64 reference. run is None (and note says why) if it is skipped, fails or is wrong."""
    try:
        with quiet():
            run, to_float = impl.build(case)
            err = relative_error(to_float(run()), case.y_ref)
    except Skip as e:
        return None, None, str(e)
    except Exception as e:  # a peer that fails to build or run: report, go on
        return None, None, f"failed: {type(e).__name__}: {e}"
    if not err <= TOLERANCE[impl.kind]:
        return None, err, f"wrong result (relative error {err:.3g} > {TOLERANCE[impl.kind]}): not timed"
    return run, err, None


@dataclass
class Row:
    """One shape: GMAC/s per implementation, or the note saying why there is none."""

    shape: str
    macs: int
    gmacs: dict = field(default_factory=dict)  # impl name -> GMAC/s
    error: dict = field(default_factory=dict)  # impl name -> relative L2 error
    notes: dict = field(default_factory=dict)  # impl name -> why skipped / failed


class IsaWorker:
    """A child process running npquant under NPQUANT_ISA=isa (the ISA is fixed at import),
    driven by JSON lines over its stdin/stdout. It builds the same cases (same seeds) and
    times samples on request, so its samples interleave with this process's: the child
    waits on its pipe while others run."""

    def __init__(self, isa: str, threads: int):
        self.isa = isa
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "npquant.bench", "--worker", "--threads", str(threads)],
            env=dict(os.environ, NPQUANT_ISA=isa),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        hello = self.request({"cmd": "hello"})
        self.npquant_isa, self.kernel = hello["npquant_isa"], hello["kernel"]

    def request(self, msg: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None  # PIPEs (__init__)
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self._stderr.seek(0)
            raise RuntimeError(f"NPQUANT_ISA={self.isa} worker died: {self._stderr.read().strip()[-1500:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"NPQUANT_ISA={self.isa} worker: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.request({"cmd": "quit"})
        self.proc.wait(timeout=60)
        self._stderr.close()


class RemoteRunner:
    """An implementation built inside an IsaWorker."""

    def __init__(self, worker: IsaWorker, name: str):
        self.worker, self.name = worker, name

    def calibrate(self, warmup: int, min_sample: float) -> int:
        return self.worker.request({"cmd": "calibrate", "name": self.name, "warmup": warmup, "min_sample": min_sample})[
            "number"
        ]

    def sample(self, number: int) -> tuple:
        return tuple(self.worker.request({"cmd": "sample", "name": self.name, "number": number})["seconds"])


def _isa_name(name: str, isa: str) -> str:
    return f"{name} [{isa}]"


def bench_cases(
    cases: list,
    impls: list,
    repeat: int = 7,
    warmup: int = 2,
    min_sample: float = 0.02,
    progress: bool = True,
    desc: str = "",
    workers: tuple = (),
    clock: str = "wall",
    stat: str = "median",
) -> list:
    """Builds, checks and times every implementation on every case; returns Rows.
    Each IsaWorker in `workers` adds the npquant implementations as '<name> [isa]'.
    GMAC/s come from the `stat` ("median" or "min") of the samples on the `clock`
    ("wall", or "cpu": this process's CPU time, for single-threaded runs on a busy machine)."""
    rows = []
    bar = _progress(len(cases) * repeat, desc, progress)
    npq_names = [i.name for i in impls if i.family == "npquant"]
    for case in cases:
        row = Row(case.label, case.macs)
        runners: dict[str, LocalRunner | RemoteRunner] = {}
        for impl in impls:
            run, err, note = build_checked(impl, case)
            if err is not None:
                row.error[impl.name] = err
            if note:
                row.notes[impl.name] = note
            else:
                runners[impl.name] = LocalRunner(run)
        for w in workers if npq_names else ():
            try:
                built = w.request({"cmd": "build", "kind": case.kind, "spec": list(case.spec), "impls": npq_names})
            except RuntimeError as e:
                for name in npq_names:
                    row.notes[_isa_name(name, w.isa)] = str(e)
                continue
            for name in npq_names:
                full = _isa_name(name, w.isa)
                if name in built["errors"]:
                    row.error[full] = built["errors"][name]
                if name in built["notes"]:
                    row.notes[full] = built["notes"][name]
                else:
                    runners[full] = RemoteRunner(w, name)
        if runners:
            times = time_interleaved(runners, repeat, warmup, min_sample, bar, clock, stat)
            for name, sec in times.items():
                row.gmacs[name] = case.macs / sec * 1e-9
        elif bar is not None:
            bar.update(repeat)
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def worker_main(threads: int) -> int:
    """The --worker loop (see IsaWorker): one JSON request per line in, one reply out."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    runners: dict = {}

    def handle(msg: dict) -> dict:
        cmd = msg["cmd"]
        if cmd == "hello":
            info = import_npquant().cpu_info()
            return {"npquant_isa": info["isa"], "kernel": info["kernels"]["gemm"]["name"]}
        if cmd == "build":
            runners.clear()
            case: LinearCase | ConvCase
            if msg["kind"] == "linear":
                case, impls = make_linear_case(*msg["spec"]), linear_impls()
            else:
                case, impls = make_conv_case(tuple(msg["spec"])), conv_impls()
            reply: dict[str, dict[str, Any]] = {"errors": {}, "notes": {}}  # relative errors; "error" means failure
            for impl in (i for i in impls if i.name in msg["impls"]):
                run, err, note = build_checked(impl, case)
                if err is not None:
                    reply["errors"][impl.name] = err
                if note:
                    reply["notes"][impl.name] = note
                else:
                    runners[impl.name] = LocalRunner(run)
            return reply
        if cmd == "calibrate":
            return {"number": runners[msg["name"]].calibrate(msg["warmup"], msg["min_sample"])}
        if cmd == "sample":
            return {"seconds": runners[msg["name"]].sample(msg["number"])}
        if cmd == "quit":
            return {}
        raise ValueError(f"unknown command {cmd!r}")

    with limited_threads(threads, []):
        for line in sys.stdin:
            msg = json.loads(line)
            try:
                reply = handle(msg)
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            proto.write(json.dumps(reply) + "\n")
            proto.flush()
            if msg["cmd"] == "quit":
                break
    return 0


@dataclass
class ElementwiseRow:
    case: str
    ms: dict = field(default_factory=dict)  # impl -> ms per call
    notes: dict = field(default_factory=dict)  # impl -> why not timed


def bench_elementwise(
    cases=ELEMENTWISE_CASES,
    repeat: int = 7,
    warmup: int = 2,
    min_sample: float = 0.02,
    clock: str = "wall",
    stat: str = "median",
) -> list:
    """Times QFunctional's native ops, its NumPy path and PyTorch's on the same codes,
    after checking them: npquant's two paths equal, PyTorch within one step."""
    rows = []
    for op, a_shape, b_shape in cases:
        label = f"{op} {a_shape}" + ("" if a_shape == b_shape else f" x {b_shape}")
        row = ElementwiseRow(label)
        runners = {}
        with quiet():
            fns = elementwise_runners(op, a_shape, b_shape)
            codes = {
                name: np.asarray(fn().int_repr().numpy() if name == "PyTorch" else fn().int_repr())
                for name, fn in fns.items()
            }
        for name, fn in fns.items():
            ref = codes["npquant NumPy path"]
            tol = ELEMENTWISE_TORCH_MAX_STEP if name == "PyTorch" else 0
            diff = np.abs(codes[name].astype(np.int64) - ref) if codes[name].shape == ref.shape else None
            if diff is None or diff.max() > tol:
                row.notes[name] = "differs from the NumPy path: not timed"
                continue
            runners[name] = LocalRunner(fn)
        for name, sec in time_interleaved(runners, repeat, warmup, min_sample, None, clock, stat).items():
            row.ms[name] = sec * 1e3
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- peak

BENCH_BIN_ENV = "NPQUANT_BENCH_BIN"


def find_bench_binary(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The native npquant_bench to probe peaks with, or None: `path` if given, else the file
    named by the NPQUANT_BENCH_BIN environment variable, else `npquant_bench` on PATH.

    The wheel does not contain the native bench (it is built with cmake
    -DNPQUANT_BUILD_BENCH=ON, bench/README.md), and the installed package never searches the
    working directory for a checkout: bench/compare.py, run from a checkout, points
    NPQUANT_BENCH_BIN at that checkout's newest build."""
    if path is None:
        path = os.environ.get(BENCH_BIN_ENV) or None
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    found = shutil.which("npquant_bench")
    return Path(found) if found else None


def measure_peak(binary: Path, threads: int) -> dict:
    """Runs the native probes; returns {isa: (GMAC/s, probe name)} for the probes that are
    an ISA's peak (label "peak of <isa>"); stand-in encodings are left out."""
    out = subprocess.run(
        [
            str(binary),
            "--benchmark_filter=^probe/",
            "--benchmark_format=json",
            f"--threads={threads}",
            "--benchmark_min_time=0.2",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    peaks = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        label = b.get("label", "")
        if label.startswith("peak of ") and "stand-in" not in label:
            isa = label[len("peak of ") :]
            peaks[isa] = (b["GMAC/s"], b["name"].split("/")[2])
    return peaks
