"""The native channels-last pooling (npquant._C.max_pool2d_nhwc / avg_pool2d_nhwc, used
for NHWC QTensors such as quantized conv outputs) against the NumPy implementation of the
same arithmetic (the modules' _forward_numpy), bit for bit; PyTorch agreement of both is
in test_torch_agreement_random.py."""

import numpy as np
import pytest

import npquant
import npquant.nn.quantized as nnq
from npquant import _C


def random_case(rng):
    k = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
    d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dt = npquant.quint8 if rng.integers(2) else npquant.qint8
    c, h, w = int(rng.integers(1, 50)), int(rng.integers(1, 13)), int(rng.integers(1, 13))
    codes = rng.integers(dt.qmin, dt.qmax + 1, (int(rng.integers(1, 3)), h, w, c)).astype(dt.storage)
    x = npquant.QTensor.from_nhwc(codes, 0.1, int(rng.integers(dt.qmin, dt.qmax + 1)), dt)
    div = None if rng.random() < 0.8 else int(rng.integers(1, 30))
    ceil, cip = bool(rng.integers(2)), bool(rng.integers(2))
    return x, [nnq.MaxPool2d(k, s, p, d, ceil_mode=ceil), nnq.AvgPool2d(k, s, p, ceil, cip, div)]


@pytest.mark.parametrize("seed", range(4))
def test_native_pooling_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    compared = refused = 0
    for _ in range(500):
        x, modules = random_case(rng)
        for m in modules:
            try:
                want = m._forward_numpy(x)
            except ValueError:
                with pytest.raises(ValueError):
                    m(x)
                refused += 1
                continue
            got = m(x)
            assert got.is_nhwc and got.dtype is x.dtype
            assert (got.q_scale(), got.q_zero_point()) == (x.q_scale(), x.q_zero_point())
            assert np.array_equal(got.int_repr(), want.int_repr()), (m, x.shape, x.dtype)
            compared += 1
    assert compared > 700 and refused > 0


def test_avgpool_constants_follow_the_input_size(rng):
    """One module, inputs of several sizes and tails (the per-size constants are cached)."""
    m = nnq.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
    for h, w, c in [(7, 9, 20), (7, 9, 20), (5, 5, 33), (12, 4, 16), (7, 9, 20)]:
        x = npquant.QTensor.from_nhwc(rng.integers(0, 256, (2, h, w, c)).astype(np.uint8), 0.05, 7)
        assert np.array_equal(m(x).int_repr(), m._forward_numpy(x).int_repr())


def test_native_pooling_rejects_bad_arguments():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8 or int8"):
        _C.max_pool2d_nhwc(x.astype(np.int16), (2, 2), (2, 2), (2, 2), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.max_pool2d_nhwc(
            np.zeros((1, 4, 3, 4), np.uint8).transpose(0, 1, 3, 2), (2, 2), (2, 2), (2, 2), (0, 0), (1, 1)
        )
    with pytest.raises(ValueError, match="output size too large"):
        _C.max_pool2d_nhwc(x, (9, 2), (2, 2), (2, 2), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="stride"):
        _C.max_pool2d_nhwc(x, (2, 2), (2, 2), (0, 2), (0, 0), (1, 1))
    ones = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="per-position"):
        _C.avg_pool2d_nhwc(x, (2, 2), (2, 2), (2, 2), (0, 0), ones[:1], ones, np.ones((2, 2), np.int32), 0, 0)
    with pytest.raises(ValueError, match="zero_point"):
        _C.avg_pool2d_nhwc(x, (2, 2), (2, 2), (2, 2), (0, 0), ones, ones, np.ones((2, 2), np.int32), 300, 0)


def random_adaptive_case(rng):
    dt = npquant.quint8 if rng.integers(2) else npquant.qint8
    c, h, w = int(rng.integers(1, 70)), int(rng.integers(1, 15)), int(rng.integers(1, 15))
    codes = rng.integers(dt.qmin, dt.qmax + 1, (int(rng.integers(1, 4)), h, w, c)).astype(dt.storage)
    zp = int(rng.choice([dt.qmin, dt.qmax, rng.integers(dt.qmin, dt.qmax + 1)]))
    scale = float(rng.choice([0.1, 1e-3, 7.3, rng.uniform(1e-4, 10)]))
    x = npquant.QTensor.from_nhwc(codes, scale, zp, dt)
    pick = lambda n: None if rng.random() < 0.15 else int(rng.integers(1, 2 * n + 2))  # noqa: E731
    r = rng.random()
    size = 1 if r < 0.3 else (pick(h), pick(w)) if r < 0.9 else int(rng.integers(1, 9))
    return x, nnq.AdaptiveAvgPool2d(size)


@pytest.mark.parametrize("seed", range(4))
def test_native_adaptive_avg_pooling_equals_numpy(seed):
    """Global (1x1) and adaptive bins (overlapping, larger than the input, None = keep)."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(1000):
        x, m = random_adaptive_case(rng)
        want = m._forward_numpy(x)
        got = m(x)
        assert got.is_nhwc and got.dtype is x.dtype and got.shape == want.shape
        assert (got.q_scale(), got.q_zero_point()) == (x.q_scale(), x.q_zero_point())
        assert np.array_equal(got.int_repr(), want.int_repr()), (m.output_size, x.shape, x.dtype)


def test_native_adaptive_pooling_large_and_cached(rng):
    """ResNet-like global pools (threaded above the work threshold) and changing sizes."""
    m = nnq.AdaptiveAvgPool2d((1, 1))
    for n, h, w, c in [(8, 7, 7, 2048), (8, 7, 7, 2048), (2, 14, 14, 512), (1, 56, 56, 64), (3, 1, 1, 17)]:
        x = npquant.QTensor.from_nhwc(rng.integers(0, 256, (n, h, w, c)).astype(np.uint8), 0.05, 3)
        assert np.array_equal(m(x).int_repr(), m._forward_numpy(x).int_repr())


def test_native_adaptive_pooling_rejects_bad_bins():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    b = lambda *v: np.array(v, np.int32)  # noqa: E731
    one = np.ones((1, 1), np.float32)
    with pytest.raises(ValueError, match="inside the input"):
        _C.adaptive_avg_pool2d_nhwc(x, b(0), b(5), b(0), b(4), one, 0)
    with pytest.raises(ValueError, match="non-empty"):
        _C.adaptive_avg_pool2d_nhwc(x, b(2), b(2), b(0), b(4), one, 0)
    with pytest.raises(ValueError, match="per-position"):
        _C.adaptive_avg_pool2d_nhwc(x, b(0), b(4), b(0, 2), b(2, 4), one, 0)
    with pytest.raises(ValueError, match="zero_point"):
        _C.adaptive_avg_pool2d_nhwc(x, b(0), b(4), b(0), b(4), one, 256)
