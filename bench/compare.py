#!/usr/bin/env python3
"""npquant against NumPy fp32, PyTorch and ONNX Runtime: same shapes, same threads, one run.

The benchmark is the npquant.bench package (python/npquant/bench/), so that the installed
`npquant bench` command runs it; this script runs the same from a checkout:

    python bench/compare.py [options]      # == npquant bench [options]; --help lists them

Unlike the installed command, it knows where the checkout is: unless NPQUANT_BENCH_BIN is
set, it points it at this checkout's newest build/*/bench/npquant_bench (for the peak
probes), if one is built.
"""

import os
import sys
from pathlib import Path

from npquant.bench import BENCH_BIN_ENV, main


def _checkout_bench_binary():
    repo = Path(__file__).resolve().parents[1]
    found = sorted(repo.glob("build/*/bench/npquant_bench"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


if __name__ == "__main__":
    if not os.environ.get(BENCH_BIN_ENV):
        binary = _checkout_bench_binary()
        if binary is not None:
            os.environ[BENCH_BIN_ENV] = str(binary)
    sys.exit(main())
