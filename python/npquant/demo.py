"""``npquant demo``: the bundled digits CNN, fp32 against int8, in one report.

Loads the model and the held-out test set shipped in the package, quantizes the
model the way PyTorch's eager workflow does (fuse conv-bn-relu, qconfig, prepare,
calibrate, convert), and reports accuracy, per-layer error, latency and which
kernels ran. ``run_demo`` returns the numbers as a dict; the CLI prints them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time

import numpy as np

__all__ = ["run_demo", "quantize_digits", "accuracy", "progress"]


def progress(iterable, desc: str, total: int | None = None, enabled: bool = True):
    """tqdm's progress bar when tqdm is installed and enabled; the iterable otherwise."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return iterable
        return tqdm(iterable, desc=desc, total=total, leave=False)
    return iterable


def _batches(x: np.ndarray, size: int):
    return [x[i : i + size] for i in range(0, len(x), size)]


def predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([np.asarray(model(b)).argmax(1) for b in _batches(x, batch)])


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x) == y).mean())


def quantize_digits(
    float_model, calib_x: np.ndarray, backend: str = "x86", show_progress: bool = True, batch: int = 32
):
    """Static int8 version of the digits CNN: fuse, qconfig, prepare, calibrate, convert."""
    import npquant

    from .models.digits import FUSE_GROUPS

    m = npquant.fuse_modules(copy.deepcopy(float_model).eval(), FUSE_GROUPS)
    m.qconfig = npquant.get_default_qconfig(backend)
    npquant.prepare(m, inplace=True)
    chunks = _batches(calib_x, batch)
    for b in progress(chunks, "calibrating", len(chunks), show_progress):
        m(b)
    return npquant.convert(m)


@contextlib.contextmanager
def _threads(n: int | None, notes: list):
    """n threads for npquant's kernels and NumPy's BLAS alike (BLAS through
    threadpoolctl, when installed), so fp32 and int8 are timed on equal terms."""
    import npquant

    if not n:
        yield
        return
    before = npquant.get_num_threads()
    npquant.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            import os

            if os.environ.get("OPENBLAS_NUM_THREADS") != str(n):
                notes.append("threadpoolctl is not installed: NumPy's BLAS threads were not limited")
            yield
            return
        with threadpool_limits(limits=n):
            yield
    finally:
        npquant.set_num_threads(before)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm up (first-call allocations, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _latency(float_model, q_model, frozen, x: np.ndarray, repeats: int) -> dict:
    fp32 = _median_ms(lambda: float_model(x), repeats)
    int8 = _median_ms(lambda: q_model(x), repeats)
    row = {"batch": len(x), "fp32_ms": fp32, "int8_ms": int8, "speedup": fp32 / int8, "repeats": repeats}
    if frozen is not None:  # (its first call at a new batch size records it: _median_ms warms up)
        out = frozen(x)
        row["frozen_ms"] = _median_ms(lambda: frozen(x), repeats)
        row["frozen_bit_identical"] = bool(np.array_equal(out, q_model(x)))
    return row


def _frozen(q_model, x: np.ndarray, notes: list):
    """npquant.freeze of the int8 model (docs/freeze.md), or None with a note saying why."""
    import npquant

    try:
        return npquant.freeze(q_model, x)
    except npquant.FreezeError as e:
        notes.append(f"npquant.freeze: {e}")
        return None


# Runs in a child process with NPQUANT_ISA set (the ISA is fixed at import):
# loads the saved int8 model, runs it, saves outputs and the median latency.
_ISA_CHILD = """
import sys, time, statistics, numpy as np, npquant
npquant.set_num_threads(int(sys.argv[5]))
model, x = npquant.load(sys.argv[1]), np.load(sys.argv[2])
y = model(x)
times = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter(); model(x); times.append(time.perf_counter() - t0)
np.save(sys.argv[3], y)
print(npquant.cpu_info()["isa"], 1e3 * statistics.median(times))
"""


def _other_isas(q_model, x: np.ndarray, repeats: int) -> list:
    """The int8 model under every other ISA this CPU runs: are the outputs the same
    bits, and how fast is it there? One child process per ISA."""
    import os
    import subprocess
    import sys
    import tempfile

    import npquant

    here = npquant.cpu_info()
    expect = q_model(x)
    out = []
    with tempfile.TemporaryDirectory() as d:
        mpath, xpath = os.path.join(d, "m.npq"), os.path.join(d, "x.npy")
        npquant.save(q_model, mpath)
        np.save(xpath, x)
        for isa in here["runnable_isas"]:
            if isa == here["isa"]:
                continue
            ypath = os.path.join(d, f"y-{isa}.npy")
            r = subprocess.run(
                [sys.executable, "-c", _ISA_CHILD, mpath, xpath, ypath, str(repeats), str(npquant.get_num_threads())],
                env=dict(os.environ, NPQUANT_ISA=isa),
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                out.append({"isa": isa, "error": r.stderr.strip().splitlines()[-1:]})
                continue
            ran, ms = r.stdout.split()
            y = np.load(ypath)
            out.append(
                {
                    "isa": ran,
                    "int8_ms": float(ms),
                    "bit_identical": bool(np.array_equal(y.view(np.uint32), expect.view(np.uint32))),
                }
            )
    return out


def _model_bytes(model) -> int:
    import npquant

    buf = io.BytesIO()
    npquant.save(model, buf)
    return len(buf.getvalue())


def run_demo(
    quick: bool = False,
    show_progress: bool = True,
    backend: str = "x86",
    other_isas: bool = True,
    threads: int | None = None,
    save: str | None = None,
) -> dict:
    """Everything ``npquant demo`` reports, as plain data. ``quick`` trims the data and
    timing repeats (for tests); the numbers are then rougher. ``other_isas``: also run
    the int8 model under every other ISA this CPU has (child processes) and check
    that its outputs are the same bits. ``threads``: kernel and BLAS threads (default:
    each library's own default, all cores). ``save``: a path to write the int8 model to."""
    notes: list = []
    with _threads(threads, notes):
        result = _run(quick, show_progress, backend, other_isas, save)
    result["notes"] = notes + result["notes"]
    return result


def _run(quick: bool, show_progress: bool, backend: str, other_isas: bool, save: str | None) -> dict:
    import npquant

    from .data import load_digits
    from .models.digits import digits_cnn

    data = load_digits()
    test_x, test_y, calib_x = data["test_x"], data["test_y"], data["calib_x"]
    if quick:
        test_x, test_y, calib_x = test_x[:128], test_y[:128], calib_x[:64]
    float_model = digits_cnn()
    q_model = quantize_digits(float_model, calib_x, backend, show_progress)

    pred_f, pred_q = predict(float_model, test_x), predict(q_model, test_x)
    report = npquant.compare(float_model, q_model, test_x[:256])

    # The saved file reloads into a model with bit-identical outputs.
    if save:
        npquant.save(q_model, save)
    buf = io.BytesIO()
    npquant.save(q_model, buf)
    buf.seek(0)
    reloaded = npquant.load(buf)
    probe = test_x[:64]
    same = bool(np.array_equal(q_model(probe), reloaded(probe)))

    big = np.resize(test_x, (256,) + test_x.shape[1:])  # batch 256 even in quick mode
    notes: list[str] = []
    frozen = _frozen(q_model, test_x[:1], notes)
    timings = [
        _latency(float_model, q_model, frozen, test_x[:1], 5 if quick else 200),
        _latency(float_model, q_model, frozen, big, 2 if quick else 20),
    ]
    isa_rows = _other_isas(q_model, big, 2 if quick else 10) if other_isas else []
    info = npquant.cpu_info()
    return {
        "isa": info["isa"],
        "kernels": {fam: k["name"] for fam, k in info.get("kernels", {}).items() if isinstance(k, dict)},
        "threads": npquant.get_num_threads(),
        "test_images": int(len(test_y)),
        "calibration_images": int(len(calib_x)),
        "fp32_accuracy": float((pred_f == test_y).mean()),
        "int8_accuracy": float((pred_q == test_y).mean()),
        "agreement": float((pred_f == pred_q).mean()),
        "layers": [r._asdict() for r in report],
        "output_sqnr_db": report.output.sqnr_db,
        "report": str(report),
        "latency": timings,
        "fp32_bytes": _model_bytes(float_model),
        "int8_bytes": buf.getbuffer().nbytes,
        "reload_bit_identical": same,
        "other_isas": isa_rows,
        "notes": notes,
    }


def format_demo(r: dict) -> str:
    """The human-readable report of run_demo's result."""
    seen, shown = set(), []
    for fam, name in r["kernels"].items():  # gemm_small_m is often the gemm kernel itself
        if name not in seen:
            seen.add(name)
            shown.append(f"{fam} {name}")
    kernels = ", ".join(shown)
    lines = [
        "npquant demo: a CNN for handwritten digits (scikit-learn's 8x8 digits upscaled to 32x32)",
        f"ISA {r['isa']} (kernels: {kernels}), {r['threads']} thread(s)",
        "",
        f"accuracy on {r['test_images']} held-out test images "
        f"(int8 calibrated on {r['calibration_images']} training images):",
        f"  fp32  {100 * r['fp32_accuracy']:6.2f}%",
        f"  int8  {100 * r['int8_accuracy']:6.2f}%   "
        f"({100 * (r['int8_accuracy'] - r['fp32_accuracy']):+.2f} points; same prediction as fp32 "
        f"on {100 * r['agreement']:.1f}% of images)",
        "",
        "per-layer error of the int8 model (SQNR: higher is better; 'alone': that layer fed fp32 inputs):",
        "  " + r["report"].replace("\n", "\n  "),
        "",
        "latency (median; fp32 = npquant.nn float layers on NumPy, int8 = npquant kernels, frozen = the",
        "int8 model through npquant.freeze: its native calls replayed without the Python between them):",
        f"  {'batch':>5}  {'fp32 ms':>9}  {'int8 ms':>9}  {'speedup':>7}  {'frozen ms':>9}",
    ]
    for t in r["latency"]:
        frozen = ""
        if "frozen_ms" in t:
            same = "" if t["frozen_bit_identical"] else "  outputs DIFFER (bug: please report)"
            frozen = f"  {t['frozen_ms']:9.3f}{same}"
        lines.append(f"  {t['batch']:>5}  {t['fp32_ms']:9.3f}  {t['int8_ms']:9.3f}  {t['speedup']:6.2f}x{frozen}")
    if r["other_isas"]:
        lines += ["", f"the same int8 model under the other ISAs of this CPU (batch {r['latency'][-1]['batch']}):"]
        for o in r["other_isas"]:
            if "error" in o:
                lines.append(f"  {o['isa']:<11} failed: {' '.join(o['error'])}")
                continue
            same = "bit-identical outputs" if o["bit_identical"] else "outputs DIFFER (bug: please report)"
            lines.append(f"  {o['isa']:<11} {o['int8_ms']:9.3f} ms   {same}")
    lines += [
        "",
        f"model file (npquant.save): fp32 {r['fp32_bytes'] / 1024:.0f} KiB, int8 {r['int8_bytes'] / 1024:.0f} KiB; "
        f"reloaded int8 outputs {'bit-identical' if r['reload_bit_identical'] else 'DIFFER (bug)'}",
    ]
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)
