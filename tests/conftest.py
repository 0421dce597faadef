from __future__ import annotations  # 'dict | None' below on Python 3.9 (requires-python)

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
    return subprocess.run(
        [*LAUNCHER, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )


def runnable_isas():
    import npquant

    return npquant.cpu_info()["runnable_isas"]


def pytest_terminal_summary(terminalreporter):
    """The agreement tests' cases per family and mode (tests/peers.py): which peer
    arithmetic each comparison asserted on this CPU."""
    peers = sys.modules.get("peers")
    if peers is None or not peers.COUNTS:
        return
    tr = terminalreporter
    tr.section("peer agreement: cases per mode on this CPU")
    features = ", ".join(sorted(f for f in peers.FEATURES if "vnni" in f)) or "no VNNI"
    tr.write_line(
        f"CPU: {features}; torch GEMM {peers.TORCH_LINEAR_MODE}; ORT u8s8 "
        f"{'exact' if peers.ORT_U8S8_EXACT else 'saturating'}"
    )
    families = sorted({f for f, _ in peers.COUNTS})
    modes = sorted({m for _, m in peers.COUNTS})
    tr.write_line(f"{'family':<36}" + "".join(f"{m:>14}" for m in modes))
    for fam in families:
        tr.write_line(f"{fam:<36}" + "".join(f"{peers.COUNTS[(fam, m)]:>14}" for m in modes))
