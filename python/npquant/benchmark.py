"""The benchmark's former single module, kept so that ``python -m npquant.benchmark`` (as
bench/RESULTS.md records the runs) and ``import npquant.benchmark`` keep working.

The code is in the :mod:`npquant.bench` package.
"""

from __future__ import annotations

import sys

from .bench import *  # noqa: F403 -- the same public names as npquant.bench
from .bench import __all__  # noqa: F401
from .bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
