#!/usr/bin/env python3
"""npquant against NumPy fp32, PyTorch and ONNX Runtime: same shapes, same threads, one run.

The benchmark is npquant.benchmark (python/npquant/benchmark.py), so that the installed
`npquant bench` command runs it; this script runs the same from a checkout:

    python bench/compare.py [options]      # == npquant bench [options]; --help lists them
"""

import sys

from npquant.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
