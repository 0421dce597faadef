import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng(request):
    # A seed per test, printed on failure by pytest's -ra summary through the test id.
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2**32))


def run_python(code: str, env_extra: dict | None = None, timeout: int = 600):
    """Runs code in a fresh interpreter (e.g. under another NPQUANT_ISA)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)


def runnable_isas():
    import npquant

    return npquant.cpu_info()["runnable_isas"]
