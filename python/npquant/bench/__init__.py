"""npquant against NumPy fp32, PyTorch and ONNX Runtime: same shapes, same threads, one run.

The code behind ``npquant bench`` (and ``python -m npquant.bench``), in five modules:

- :mod:`.cases`: layer shapes, their data and qparams, the float64 reference;
- :mod:`.peers`: one adapter per column (npquant, NumPy, PyTorch, ONNX Runtime);
- :mod:`.timing`: interleaved sampling, NPQUANT_ISA worker processes, the native peak probes;
- :mod:`.report`: markdown tables and plots;
- :mod:`.cli`: the argument parser and :func:`run` / :func:`main`.

The names below are the ones a front end or a test uses; they take and return plain data
(the report text is `npquant.bench.report.report(result, args)`).
"""

from __future__ import annotations

from .cases import (
    CONV_SHAPES,
    ELEMENTWISE_CASES,
    LINEAR_SHAPES,
    TOLERANCE,
    ConvCase,
    LinearCase,
    PerChannel,
    QParams,
    Skip,
    conv2d_reference,
    make_conv_case,
    make_linear_case,
    relative_error,
)
from .cli import main, parse_args, resolve_peaks, run
from .peers import Impl, conv_impls, limited_threads, linear_impls
from .report import elementwise_table, markdown_table, plot, versions
from .timing import (
    BENCH_BIN_ENV,
    ElementwiseRow,
    IsaWorker,
    LocalRunner,
    Row,
    bench_cases,
    bench_elementwise,
    build_checked,
    find_bench_binary,
    measure_peak,
    time_interleaved,
)

__all__ = [
    "BENCH_BIN_ENV",
    "CONV_SHAPES",
    "ELEMENTWISE_CASES",
    "LINEAR_SHAPES",
    "TOLERANCE",
    "ConvCase",
    "ElementwiseRow",
    "Impl",
    "IsaWorker",
    "LinearCase",
    "LocalRunner",
    "PerChannel",
    "QParams",
    "Row",
    "Skip",
    "bench_cases",
    "bench_elementwise",
    "build_checked",
    "conv2d_reference",
    "conv_impls",
    "elementwise_table",
    "find_bench_binary",
    "limited_threads",
    "linear_impls",
    "main",
    "make_conv_case",
    "make_linear_case",
    "markdown_table",
    "measure_peak",
    "parse_args",
    "plot",
    "relative_error",
    "resolve_peaks",
    "run",
    "time_interleaved",
    "versions",
]
