import os
import shlex
import subprocess
import sys
import zlib

import numpy as np
import pytest

try:  # hypothesis is absent from the arm64 Python used under qemu (tests/arm/python_qemu.sh)
    from hypothesis import settings
except ImportError:
    settings = None

if settings is not None:
    # HYPOTHESIS_PROFILE=sanitize (tests/native/run_sanitizers.sh): few examples, as every
    # call is several times slower under AddressSanitizer.
    settings.register_profile("sanitize", max_examples=25, deadline=None)
    # CI (CI=true, set by .ci/run): a fixed sequence of examples, so a merge is never
    # blocked by a case drawn for the first time; developers' runs keep exploring.
    settings.register_profile("ci", derandomize=True, deadline=None)
    profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else None)
    if profile:
        settings.load_profile(profile)


def max_examples(n: int) -> int:
    """n, or the profile's cap when one is loaded (explicit settings override profiles)."""
    return min(n, 25) if os.environ.get("HYPOTHESIS_PROFILE") == "sanitize" else n

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
