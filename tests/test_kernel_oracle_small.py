"""Every runnable GEMM kernel, through the drivers (packing, A padding, tiling,
threads, the fused dynamic quantization), against the C++ oracle on small random
shapes. Cheap enough to run on an emulated CPU (tests/arm/python_qemu.sh), where the
NumPy restatement in test_linear_exact.py is too slow."""

import numpy as np
import pytest

from npquant import _C

KERNELS = [k["name"] for k in _C.runnable_gemm_kernels()]


def small_shape(rng):
    return int(rng.integers(1, 40)), int(rng.integers(1, 300)), int(rng.integers(1, 70))


def zero_point(rng):
    return int(rng.choice([0, 128, 255, int(rng.integers(0, 256))]))


def oracle_dynamic(x, w, ws, bias, per_row):
    """Dynamic Linear from the C++ oracle's pieces: minmax, choose_qparams, quantize,
    then the dequantizing GEMM with per-row qparams."""
    rows = list(x) if per_row else [x] * x.shape[0]
    qps = [_C.choose_qparams(*_C.minmax(r)) for r in rows]
    scales = np.array([s for s, _ in qps], np.float32)
    zps = np.array([z for _, z in qps], np.int32)
    q = np.stack([_C.reference.quantize(x[i], scales[i], int(zps[i])) for i in range(x.shape[0])])
    return _C.reference.linear_dequant(q.astype(np.uint8), zps, scales, w, ws, bias)


@pytest.mark.parametrize("kernel", KERNELS)
def test_static_linear_vs_oracle(kernel, rng):
    for i in range(150):
        m, k, n = small_shape(rng)
        x = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        w.flat[int(rng.integers(0, w.size))] = -128
        ws = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
        bias = rng.normal(0, 2, n).astype(np.float32) if i % 3 else None
        xz, yz, relu = zero_point(rng), zero_point(rng), bool(i % 4 == 0)
        xs = np.float32(0.02)
        ys = np.float32(xs * ws.mean() * np.sqrt(k) * 128 * rng.uniform(0.05, 1))
        p = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
        y = _C.linear_static(x, p, xs, xz, ys, yz, relu)
        r = _C.reference.linear_static(x, xz, w, xs, ws, bias, ys, yz, relu)
        assert np.array_equal(y, r), (kernel, m, k, n, i)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("per_row", [False, True])
def test_dynamic_linear_vs_oracle(kernel, per_row, rng):
    for i in range(80):
        m, k, n = small_shape(rng)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        ws = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
        bias = rng.normal(0, 2, n).astype(np.float32) if i % 3 else None
        x = rng.normal(rng.choice([0.0, 3.0, -3.0]), np.exp(rng.uniform(-6, 6)), (m, k))
        x = x.astype(np.float32)
        p = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
        y = _C.linear_dynamic(x, p, per_row)
        assert np.array_equal(y, oracle_dynamic(x, w, ws, bias, per_row)), (kernel, m, k, n, i)
