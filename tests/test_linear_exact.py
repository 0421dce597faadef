"""Static and dynamic Linear: bit-exact with the C++ reference and the NumPy
restatement of the contract, for every GEMM kernel this CPU can run."""

import numpy as np
import pytest

import npquant
from npquant import _C

import npref
from conftest import run_python, runnable_isas

KERNELS = [k["name"] for k in _C.runnable_gemm_kernels()]


def random_shape(rng, budget=4e6):
    """M 1..600, K 1..5000, N 1..3000, log-uniform, with M*K*N bounded to keep the
    scalar kernel's share of the suite short."""
    while True:
        m = int(np.exp(rng.uniform(0, np.log(600))))
        k = int(np.exp(rng.uniform(0, np.log(5000))))
        n = int(np.exp(rng.uniform(0, np.log(3000))))
        if m * k * n <= budget:
            return m, k, n


def random_zp(rng):
    return int(rng.choice([0, 1, 127, 128, 254, 255, int(rng.integers(0, 256))]))


def random_problem(rng, m, k, n):
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    if rng.random() < 0.2:  # the extremes
        x[:] = rng.choice([0, 255])
        w[:] = rng.choice([-128, 127])
    xs = np.float32(rng.uniform(1e-3, 0.1))
    ws = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    bias = rng.normal(0, 2, n).astype(np.float32) if rng.random() < 0.7 else None
    # Output scale around the natural spread of the result so clamps bind sometimes.
    ys = np.float32(xs * float(ws.mean()) * np.sqrt(k) * 128 * rng.uniform(0.05, 2) + 1e-6)
    return x, w, xs, ws, bias, ys


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
def test_static_linear_2000_shapes(kernel, rng):
    ref_checked = 0
    for i in range(2000):
        m, k, n = random_shape(rng)
        x, w, xs, ws, bias, ys = random_problem(rng, m, k, n)
        xz, yz, relu = random_zp(rng), random_zp(rng), bool(rng.random() < 0.3)
        p = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
        y = _C.linear_static(x, p, xs, xz, ys, yz, relu)
        expect = npref.linear_static(x, xs, xz, w, ws, bias, ys, yz, relu)
        assert np.array_equal(y, expect), f"{kernel} shape {(m, k, n)} case {i}: {np.sum(y != expect)} differ"
        if m * k * n <= 2e5:  # the C++ oracle too, where it is quick
            r = _C.reference.linear_static(x, xz, w, xs, ws, bias, ys, yz, relu)
            assert np.array_equal(y, r)
            ref_checked += 1
    assert ref_checked > 300


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("per_row", [False, True])
def test_dynamic_linear_2000_shapes(kernel, per_row, rng):
    for i in range(2000 if not per_row else 500):
        m, k, n = random_shape(rng, budget=2e6)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        ws = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
        bias = rng.normal(0, 2, n).astype(np.float32) if rng.random() < 0.7 else None
        scale = np.exp(rng.uniform(-8, 8))
        shift = rng.choice([0.0, scale * 3, -scale * 3])
        x = (rng.normal(shift, scale, (m, k))).astype(np.float32)
        if rng.random() < 0.1:
            x[:] = np.abs(x) if rng.random() < 0.5 else -np.abs(x)  # one-sided ranges
        p = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
        y = _C.linear_dynamic(x, p, per_row)
        expect = npref.linear_dynamic(x, w, ws, bias, per_row)
        assert np.array_equal(y, expect), f"{kernel} shape {(m, k, n)} case {i}"


@pytest.mark.slow
@pytest.mark.parametrize("isa", runnable_isas())
def test_public_api_exact_under_forced_isa(isa):
    """The public modules, in a process whose dispatch is capped by NPQUANT_ISA."""
    code = f"""
import numpy as np, npquant, sys
sys.path.insert(0, {repr(__import__("os").path.dirname(__file__))})
import npref
assert npquant.cpu_info()['isa'] == {isa!r}
rng = np.random.default_rng(7)
for i in range(150):
    m, k, n = int(rng.integers(1, 300)), int(rng.integers(1, 700)), int(rng.integers(1, 300))
    fl = npquant.nn.Linear(k, n)
    qd = npquant.nn.quantized.dynamic.Linear.from_float(fl)
    x = rng.normal(0, 1, (m, k)).astype(np.float32)
    qw = qd.weight()
    ws = qw.q_per_channel_scales()
    assert np.array_equal(qd(x), npref.linear_dynamic(x, qw.int_repr(), ws, fl.bias))
    qs = npquant.nn.quantized.Linear(k, n)
    qs.set_weight_bias(qw, fl.bias)
    qs.scale, qs.zero_point = float(rng.uniform(0.01, 0.5)), int(rng.integers(0, 256))
    xq = npquant.quantize_per_tensor(x, 0.02, int(rng.integers(0, 256)), npquant.quint8)
    y = qs(xq)
    e = npref.linear_static(xq.int_repr(), 0.02, xq.q_zero_point(), qw.int_repr(), ws, fl.bias,
                            qs.scale, qs.zero_point)
    assert np.array_equal(y.int_repr(), e), i
print('ok')
"""
    r = run_python(code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_edge_tiles_every_kernel():
    """Small exhaustive grid around each kernel's tile sizes, against the C++ oracle."""
    rng = np.random.default_rng(1)
    for kinfo in _C.runnable_gemm_kernels():
        checked = 0
        mr, nr, kr = kinfo["mr"], kinfo["nr"], kinfo["kr"]
        ks = sorted({1, max(1, kr - 1), kr, kr + 1, 7, 13, 61, 127, 257})
        for m in range(1, max(2 * mr + 2, 5)):  # at least 4 rows (one-row GEMV kernels too)
            for n in sorted({1, nr - 1, nr, nr + 1, 2 * nr + 1, 3 * nr} - {0}):
                for k in ks:
                    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
                    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
                    w.flat[0] = -128
                    ws = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
                    p = _C.PackedLinearWeight(w, ws, kernel=kinfo["name"])
                    for xz, yz in ((0, 255), (128, 128), (255, 0)):
                        y = _C.linear_static(x, p, 0.05, xz, 0.01, yz, yz == 128)
                        r = _C.reference.linear_static(x, xz, w, 0.05, ws, None, 0.01, yz, yz == 128)
                        assert np.array_equal(y, r), (kinfo["name"], m, n, k, xz)
                        checked += 1
        assert checked > 500, kinfo["name"]


def test_threads_give_identical_results(rng):
    x = rng.integers(0, 256, (300, 500), dtype=np.uint8)
    w = rng.integers(-128, 128, (700, 500), dtype=np.int8)
    ws = rng.uniform(1e-3, 1e-2, 700).astype(np.float32)
    p = _C.PackedLinearWeight(w, ws)
    old = npquant.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            npquant.set_num_threads(t)
            outs.append(_C.linear_static(x, p, 0.02, 3, 0.3, 100, False))
        assert all(np.array_equal(outs[0], o) for o in outs[1:])
    finally:
        npquant.set_num_threads(old)


def test_concurrent_python_threads(rng):
    from concurrent.futures import ThreadPoolExecutor

    lin = npquant.nn.Linear(256, 384)
    q = npquant.nn.quantized.dynamic.Linear.from_float(lin)
    xs = [rng.normal(0, 1, (int(rng.integers(1, 80)), 256)).astype(np.float32) for _ in range(64)]
    serial = [q(x) for x in xs]
    with ThreadPoolExecutor(8) as ex:
        par = list(ex.map(q, xs))
    assert all(np.array_equal(a, b) for a, b in zip(serial, par))


# ---- kernels that take weights in [-127, 127] (the AVX2 sign trick, layout w127)

W127_KERNELS = [k["name"] for k in _C.runnable_gemm_kernels() if k.get("w127")]
FIX_CAPACITY = 31  # -128 weights one panel may hold (params.h kW127FixWords - 1)


def sparse_min_weights(rng, n, k, per_panel, nr):
    """Weights in [-127, 127] plus `per_panel` weights of -128 in every panel of nr
    columns (as many as fit), placed at random."""
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    for c0 in range(0, n, nr):
        cols = min(nr, n - c0)
        cells = rng.choice(cols * k, size=min(per_panel, cols * k), replace=False)
        w[c0 + cells // k, cells % k] = -128
    return w


@pytest.mark.slow
@pytest.mark.parametrize("kernel", W127_KERNELS)
def test_w127_kernel_runs_and_is_exact(kernel, rng):
    """Layers whose panels hold at most FIX_CAPACITY weights of -128 run on the w127
    kernel itself (the -128s through the panel's fix table); both Linear paths exact,
    activations at 0/128/255 included (|x - 128| = 128 with weights +-127)."""
    nr = next(k["nr"] for k in _C.runnable_gemm_kernels() if k["name"] == kernel)
    for i in range(300):
        m, k, n = random_shape(rng, budget=2e6)
        w = sparse_min_weights(rng, n, k, int(rng.choice([0, 1, 2, FIX_CAPACITY])), nr)
        if i % 5 == 0:
            w = np.where(rng.random(w.shape) < 0.5, -127, 127).astype(np.int8)
        x = rng.integers(0, 256, (m, k), dtype=np.uint8)
        if i % 4 == 0:
            x = rng.choice(np.array([0, 128, 255], np.uint8), (m, k))
        ws = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
        bias = rng.normal(0, 2, n).astype(np.float32) if i % 3 else None
        p = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
        assert p.kernel == kernel, (m, k, n)
        xs, xz, yz = np.float32(0.02), random_zp(rng), random_zp(rng)
        ys = np.float32(xs * float(ws.mean()) * np.sqrt(k) * 128 * rng.uniform(0.05, 2) + 1e-6)
        y = _C.linear_static(x, p, xs, xz, ys, yz, bool(i % 2))
        assert np.array_equal(y, npref.linear_static(x, xs, xz, w, ws, bias, ys, yz, bool(i % 2))), (m, k, n)
        xf = rng.normal(0, 1, (m, k)).astype(np.float32)
        assert np.array_equal(
            _C.linear_dynamic(xf, p, bool(i % 2)), npref.linear_dynamic(xf, w, ws, bias, bool(i % 2))
        ), (m, k, n)


@pytest.mark.parametrize("kernel", W127_KERNELS)
def test_w127_kernel_falls_back_per_layer(kernel, rng):
    """One weight of -128 more than a panel's fix table holds sends that layer (only)
    to the full-range kernel of the same ISA, and the result stays exact."""
    info = {k["name"]: k for k in _C.runnable_gemm_kernels()}
    nr = info[kernel]["nr"]
    k, n, m = 300, 3 * nr + 5, 37
    ok = sparse_min_weights(rng, n, k, FIX_CAPACITY, nr)
    over = ok.copy()  # panel 1: capacity + 1
    over_cells = np.argwhere(over[nr : 2 * nr] != -128)[0]
    over[nr + over_cells[0], over_cells[1]] = -128
    assert np.count_nonzero(over[nr : 2 * nr] == -128) == FIX_CAPACITY + 1
    ws = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    for w, fell_back in ((ok, False), (over, True)):
        p = _C.PackedLinearWeight(w, ws, kernel=kernel)
        assert (p.kernel != kernel) == fell_back
        assert info[p.kernel]["isa"] == info[kernel]["isa"] and not (fell_back and info[p.kernel]["w127"])
        for xz in (0, 128, 255):
            y = _C.linear_static(x, p, 0.05, xz, 0.02, 3, False)
            assert np.array_equal(y, _C.reference.linear_static(x, xz, w, 0.05, ws, None, 0.02, 3, False))
        xf = rng.normal(0, 1, (m, k)).astype(np.float32)
        assert np.array_equal(_C.linear_dynamic(xf, p, False), npref.linear_dynamic(xf, w, ws, None, False))


@pytest.mark.slow
def test_avx2_kernels_stay_exact_with_weights_of_minus_128():
    """Under NPQUANT_ISA=avx2 Linear runs the sign-trick 3x16c8 kernel (its layout gives
    M = 1 the faster GEMV) and falls back per layer to the full-range 6x16c2 kernel when a
    panel holds too many -128 weights (PyTorch-style symmetric per-channel quantization
    produces them); convolutions run the full-range 6x16c2 GEMM and igemm, -128 weights or
    not. Every path stays exact through Linear (static, dynamic) and 1x1 / 3x3 Conv2d."""
    if "avx2" not in runnable_isas():
        pytest.skip("no AVX2 here")
    code = f"""
import numpy as np, npquant, sys
sys.path.insert(0, {repr(__import__("os").path.dirname(__file__))})
import npref
from npquant import _C
info = npquant.cpu_info()
assert info['isa'] == 'avx2', info['isa']
assert info['kernels']['gemm']['name'] == 'qu8_gemm_3x16c8__avx2_sign', info['kernels']['gemm']
rng = np.random.default_rng(11)
seen = set()
for i in range(60):
    m, k, n = int(rng.integers(1, 200)), int(rng.integers(1, 900)), int(rng.integers(1, 200))
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    many = i % 3 == 0
    w.flat[rng.choice(w.size, size=min(w.size, 40 * (n // 16 + 1) if many else n // 8), replace=False)] = -128
    ws = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    p = _C.PackedLinearWeight(w, ws)
    seen.add(p.kernel)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    for xz in (0, 128, 255):
        assert np.array_equal(_C.linear_static(x, p, 0.02, xz, 0.05, 7, False),
                              npref.linear_static(x, 0.02, xz, w, ws, None, 0.05, 7, False)), (i, p.kernel)
    xf = rng.normal(0, 1, (m, k)).astype(np.float32)
    assert np.array_equal(_C.linear_dynamic(xf, p, False), npref.linear_dynamic(xf, w, ws, None, False))
assert seen == {{'qu8_gemm_3x16c8__avx2_sign', 'qu8_gemm_6x16c2__avx2'}}, seen
conv_seen = set()
for i, (kh, cin, cout) in enumerate([(1, 64, 48), (1, 40, 33), (3, 24, 40), (3, 16, 16)] * 2):
    wt = rng.integers(-127, 128, (cout, cin, kh, kh), dtype=np.int8)
    if i >= 4:
        wt[:, :, 0, 0] = -128  # cin weights of -128 per column: over the fix table
    else:
        wt[0, 0, 0, 0] = -128
    x = rng.integers(0, 256, (2, 9, 11, cin), dtype=np.uint8)
    ws = rng.uniform(0.005, 0.015, cout).astype(np.float32)
    # 3x3: the default (Winograd) and the direct paths it replaces.
    for wino in (None, False) if kh == 3 else (None,):
        p = _C.PackedConv2dWeight(wt, (1, 1), (kh // 2,) * 4, (1, 1), 1, winograd=wino)
        conv_seen.add((p.path, p.kernel))
        for xz in (0, 255):
            y = _C.conv2d_static(x, p, 0.03, xz, ws, None, 0.4, 9, False)
            r = _C.reference.conv2d_static(x, xz, wt, (1, 1), (kh // 2,) * 4, (1, 1), 1, 0.03, ws, None, 0.4, 9, False)
            assert np.array_equal(y, r), (i, p.path, p.kernel)
# 1x1: the GEMM; 3x3: Winograd, and without it the igemm, -128 weights or not.
assert conv_seen == {{('gemm', 'qu8_gemm_6x16c2__avx2'), ('igemm', 'qu8_igemm_6x16c2__avx2'),
                     ('winograd', 'qu8_winograd_6x16c2__avx2')}}, conv_seen
print('ok')
"""
    r = run_python(code, {"NPQUANT_ISA": "avx2"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
