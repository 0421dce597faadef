"""Long runs and threads: no memory growth, set_num_threads safe during calls."""

import os
import threading

import numpy as np
import pytest

import npquant


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_100k_calls_do_not_grow_memory():
    rng = np.random.default_rng(0)
    lin = npquant.nn.Linear(32, 16, rng=rng)
    dyn = npquant.nn.quantized.dynamic.Linear.from_float(lin)
    st = npquant.nn.quantized.Linear(32, 16)
    st.set_weight_bias(dyn.weight(), lin.bias)
    st.scale, st.zero_point = 0.05, 128
    x = rng.normal(0, 1, (4, 32)).astype(np.float32)
    xq = npquant.quantize_per_tensor(x, 0.02, 128, npquant.quint8)
    # Warm up allocators and caches until the RSS holds still for 100,000 calls (at most
    # 600,000): after test_conv.py the heap has freed pages that the first calls touch
    # again (6.8 MB, then 1.4 MB, then nothing, per 100,000 calls). A leak never settles,
    # and the measurement below still sees it.
    for _ in range(6):
        start = _rss_bytes()
        for _ in range(50_000):
            dyn(x), st(xq)
        if _rss_bytes() - start < 64 * 1024:
            break
    before = _rss_bytes()
    for _ in range(50_000):
        dyn(x)
        st(xq)
    grown = _rss_bytes() - before
    assert grown < 1 << 20, f"RSS grew by {grown} bytes over 100,000 calls"


def test_set_num_threads_while_other_threads_compute():
    rng = np.random.default_rng(1)
    dyn = npquant.nn.quantized.dynamic.Linear.from_float(npquant.nn.Linear(300, 500, rng=rng))
    x = rng.normal(0, 1, (200, 300)).astype(np.float32)
    expect = dyn(x)
    errors = []
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            if not np.array_equal(dyn(x), expect):
                errors.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    old = npquant.get_num_threads()
    for t in threads:
        t.start()
    try:
        for i in range(60):
            npquant.set_num_threads(1 + i % 3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        npquant.set_num_threads(old)
    assert not errors
