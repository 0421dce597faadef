import os
import shlex
import subprocess
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng(request):
    # A seed per test, fixed by the test id (crc32: str hash() is salted per process, which
    # made every run draw different data).
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# Words put before sys.executable to start a child interpreter, e.g.
# "qemu-aarch64 -cpu max -L ROOT" when this is an arm64 Python under qemu-user
# without binfmt_misc (tests/arm/python_qemu.sh).
LAUNCHER = shlex.split(os.environ.get("NPQUANT_TEST_LAUNCHER", ""))


def run_python(code: str, env_extra: dict | None = None, timeout: int = 600):
    """Runs code in a fresh interpreter (e.g. under another NPQUANT_ISA)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([*LAUNCHER, sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


def runnable_isas():
    import npquant

    return npquant.cpu_info()["runnable_isas"]
