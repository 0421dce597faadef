"""QFunctional's native paths (lookup tables in C++) against its NumPy path, the oracle:
the same codes, qparams, shape and dtype on thousands of random configurations (random
qparams including extreme scales and zero points, shapes, NHWC/NCHW storage, per-channel
broadcasting, quint8 and qint8), and the table lookups' argument checks."""

import os

import numpy as np
import pytest

import npquant
import npquant.nn.quantized as nnq
from npquant import _C
from npquant.nn.quantized import functional_modules as fm

from conftest import run_python

DTYPES = [npquant.quint8, npquant.qint8]
F32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture
def always_native(monkeypatch):
    """The native path even for the small tensors these tests use."""
    monkeypatch.setattr(fm, "NATIVE_MIN_ELEMENTS", 0)


def random_scale(rng):
    r = rng.random()
    if r < 0.7:  # typical activations
        return float(np.float32(np.exp(rng.uniform(-9, 2))))
    if r < 0.9:  # anything with a finite reciprocal, log-uniform
        return float(np.float32(10.0 ** rng.uniform(-38.5, 38.5)))
    return float(rng.choice([3e-39, 1.2e-38, 1e-30, 1.0, 1e30, 1.3e36, 1e37, F32_MAX]))


def random_zp(rng, dtype):
    if rng.random() < 0.3:
        return int(rng.choice([dtype.qmin, dtype.qmax, (dtype.qmin + dtype.qmax + 1) // 2]))
    return int(rng.integers(dtype.qmin, dtype.qmax + 1))


def random_qtensor(rng, shape, dtype, nhwc):
    q = rng.integers(dtype.qmin, dtype.qmax + 1, shape).astype(dtype.storage)
    s, zp = random_scale(rng), random_zp(rng, dtype)
    if nhwc and len(shape) == 4:
        return npquant.QTensor.from_nhwc(np.ascontiguousarray(q.transpose(0, 2, 3, 1)), s, zp, dtype)
    return npquant.QTensor(q, s, zp, dtype)


def random_operand_shapes(rng):
    """Two shapes: equal (1-4-D), or 4-D with one (N or 1, C, 1, 1) operand either side."""
    nd = int(rng.integers(1, 5))
    if nd == 4 and rng.random() < 0.5:
        n, c, h, w = (int(v) for v in rng.integers(1, 6, 4))
        c = int(rng.integers(1, 70))
        small = (n if rng.random() < 0.7 else 1, c, 1, 1)
        big = (n, c, h, w)
        return (big, small) if rng.random() < 0.5 else (small, big)
    shape = tuple(int(v) for v in rng.integers(1, 9, nd))
    return shape, shape


def same(ours, ref):
    assert type(ours) is npquant.QTensor
    assert ours.dtype is ref.dtype and ours.shape == ref.shape
    assert np.float32(ours.q_scale()) == np.float32(ref.q_scale()) and ours.q_zero_point() == ref.q_zero_point()
    return int(np.count_nonzero(ours.int_repr() != ref.int_repr()))


def check_binary(seed: int, configs: int):
    """(cases, differing codes, elements, native paths that ran) of add / add_relu / mul
    against the NumPy path on random configurations."""
    fm.NATIVE_MIN_ELEMENTS = 0
    rng = np.random.default_rng(seed)
    cases = differing = elements = 0
    paths = set()
    for _ in range(configs):
        dtype = DTYPES[int(rng.integers(2))]
        sx, sy = random_operand_shapes(rng)
        x = random_qtensor(rng, sx, dtype, bool(rng.integers(2)))
        y = random_qtensor(rng, sy, dtype, bool(rng.integers(2)))
        f = nnq.QFunctional()
        f.scale, f.zero_point = random_scale(rng), random_zp(rng, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            refs = {
                "add": f._add_numpy(x, y, False, "add"),
                "add_relu": f._add_numpy(x, y, True, "add_relu"),
                "mul": f._mul_numpy(x, y),
            }
        for op, ref in refs.items():
            out = getattr(f, op)(x, y)
            paths.add(f.__dict__.pop("_last_kernel"))  # a native path ran
            differing += same(out, ref)
            cases += 1
            elements += ref.numel()
    return cases, differing, elements, paths


@pytest.mark.parametrize("seed", range(5))
def test_binary_ops_equal_numpy_path(seed, always_native):
    cases, differing, elements, paths = check_binary(seed, 400)
    assert cases == 1200 and differing == 0 and elements > 100_000
    kernels = npquant.cpu_info()["kernels"]
    simd = {kernels[op]["name"] for op in ("add", "mul")} - {None}
    assert paths == {"lookup table"} | simd


@pytest.mark.parametrize("isa", [i for i in ("scalar", "avx2", "neon") if i in npquant.cpu_info()["runnable_isas"]])
def test_binary_ops_under_forced_isa(isa):
    """The add kernel each ISA dispatches (none under scalar: tables) on the same grid, for
    the ISAs of this CPU among scalar, avx2 and neon."""
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_elementwise_native as t; "
        "c, d, e, p = t.check_binary(11, 300); print(c, d, sorted(p))"
    )
    r = run_python(code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr[-2000:]
    cases, differing, paths = r.stdout.split(" ", 2)
    assert int(cases) == 900 and int(differing) == 0, r.stdout
    assert ("avx2" in paths) == (isa == "avx2"), paths


@pytest.mark.parametrize("seed", range(3))
def test_cat_equals_numpy_path(seed):
    rng = np.random.default_rng(100 + seed)
    cases = differing = 0
    paths = set()
    for _ in range(300):
        dtype = DTYPES[int(rng.integers(2))]
        n, h, w = (int(v) for v in rng.integers(1, 6, 3))
        nd = 4 if rng.random() < 0.8 else 2
        f = nnq.QFunctional()
        f.scale, f.zero_point = random_scale(rng), random_zp(rng, dtype)
        dim = int(rng.integers(-nd, nd)) if rng.random() < 0.4 else 1
        all_nhwc = rng.random() < 0.7
        xs = []
        for _ in range(int(rng.integers(1, 5))):
            c = int(rng.integers(1, 40))
            shape = [n, c, h, w][:nd]
            if dim % nd != 1:
                shape[1] = 3
                shape[dim % nd] = c
            x = random_qtensor(rng, tuple(shape), dtype, all_nhwc or bool(rng.integers(2)))
            if rng.random() < 0.3:  # already at the output qparams: copied
                x = (
                    npquant.QTensor(x.int_repr().copy(), f.scale, f.zero_point, dtype)
                    if not x.is_nhwc
                    else npquant.QTensor.from_nhwc(x.nhwc().copy(), f.scale, f.zero_point, dtype)
                )
            xs.append(x)
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                ref = f._cat_numpy(xs, dim)
            except ValueError as e:  # a dequantized value overflows float32 (extreme scale)
                with pytest.raises(ValueError, match=str(e)[:30]):
                    f.cat(xs, dim)
                continue
            out = f.cat(xs, dim)
        paths.add(f.__dict__.pop("_last_kernel"))
        differing += same(out, ref)
        cases += 1
    assert cases > 250 and differing == 0
    add = npquant.cpu_info()["kernels"]["add"]["name"]
    native = {"lookup table", add} - {None}
    assert native <= paths <= native | {"numpy"}  # numpy: a value overflows float32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nhwc", [True, False])
def test_resnet_shapes_threads_and_first_call(dtype, nhwc):
    """A large tensor takes the native path on its first call (no cached table), with
    1 and 2 threads, and keeps the storage order (NHWC stays NHWC)."""
    rng = np.random.default_rng(7)
    x = random_qtensor(rng, (2, 64, 56, 56), dtype, nhwc)
    y = random_qtensor(rng, (2, 64, 56, 56), dtype, nhwc)
    se = random_qtensor(rng, (2, 64, 1, 1), dtype, nhwc)
    old = npquant.get_num_threads()
    try:
        for threads in (1, 2):
            npquant.set_num_threads(threads)
            f = nnq.QFunctional()
            f.scale, f.zero_point = 0.05, random_zp(rng, dtype)
            out = f.add_relu(x, y)
            assert out.is_nhwc == nhwc and f._last_kernel
            assert same(out, f._add_numpy(x, y, True, "add_relu")) == 0
            assert same(f.mul(x, se), f._mul_numpy(x, se)) == 0
            assert same(f.cat([x, y], 1), f._cat_numpy([x, y], 1)) == 0
    finally:
        npquant.set_num_threads(old)


@pytest.mark.parametrize("se_nhwc", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_se_mul_fast_path_equals_numpy(se_nhwc, batch):
    """An SE block's mul (NHWC activation times an (N, C, 1, 1) scale stored either way),
    in both operand orders, takes the kernel directly and gives the NumPy path's codes;
    a (1, C, 1, 1) scale against batch 2 (a broadcast) still does, through _native."""
    rng = np.random.default_rng(11)
    x = random_qtensor(rng, (batch, 40, 7, 9), npquant.quint8, True)
    f = nnq.QFunctional()
    f.scale, f.zero_point = 0.02, 131
    for se_batch in {batch, 1}:
        se = random_qtensor(rng, (se_batch, 40, 1, 1), npquant.quint8, se_nhwc)
        for a, b in ((x, se), (se, x)):
            out = f.mul(a, b)
            kernel = npquant.cpu_info()["kernels"]["mul"]["name"]
            if kernel:  # else (scalar) NumPy or a table
                assert f._last_kernel == kernel and out.is_nhwc
            assert out.shape == x.shape
            assert same(out, f._mul_numpy(x, se)) == 0


def test_small_tensors_use_numpy_until_a_table_is_cached():
    """(qint8 mul: no SIMD kernel, a table.)"""
    rng = np.random.default_rng(3)
    x, y = (random_qtensor(rng, (1, 4, 3, 3), npquant.qint8, True) for _ in range(2))
    f = nnq.QFunctional()
    f.scale, f.zero_point = 0.1, 5
    f.mul(x, y)
    assert not f.__dict__.get("_cache_tables")
    big = random_qtensor(rng, (1, 4, 64, 64), npquant.qint8, True)
    big = npquant.QTensor.from_nhwc(big.nhwc(), x.q_scale(), x.q_zero_point(), npquant.qint8)
    f.mul(big, big)
    f.mul(x, npquant.QTensor.from_nhwc(x.nhwc(), x.q_scale(), x.q_zero_point(), npquant.qint8))  # cached now
    assert len(f._cache_tables) == 1


def test_extreme_scales_saturate_instead_of_wrapping():
    """Values beyond int64 (here -2e20) clamp to qmin; the NumPy path used to convert them
    to INT64_MIN and wrap to qmax when adding a negative zero point."""
    x = npquant.QTensor(np.array([0, -100, 100], np.int8), 1.0, 0, npquant.qint8)
    f = nnq.QFunctional()
    f.scale, f.zero_point = 1e-20, -100
    assert f._add_numpy(x, x, False, "add").int_repr().tolist() == [-100, -128, 127]
    assert f._mul_numpy(x, x).int_repr().tolist() == [-100, 127, 127]


def test_hardswish_table_native():
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        q = rng.integers(dtype.qmin, dtype.qmax + 1, (2, 9, 9, 8)).astype(dtype.storage)
        x = npquant.QTensor.from_nhwc(q, 0.03, random_zp(rng, dtype), dtype)
        hs = nnq.Hardswish(0.02, random_zp(rng, dtype))
        from npquant.nn.quantized._ops import unary_table
        from npquant.nn.quantized.activation import _hardswish

        table = unary_table(_hardswish, x.q_scale(), x.q_zero_point(), dtype, hs.scale, hs.zero_point)
        expect = table[x.nhwc().astype(np.int64) - dtype.qmin]
        out = hs(x)
        assert out.is_nhwc and np.array_equal(out.nhwc(), expect)


@pytest.mark.parametrize("shape", [(0, 4), (7,), (3, 17), (2, 9, 11, 35), (1, 64, 64, 64)])
def test_clamp_equals_numpy(shape, rng):
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    for lo, hi in ((0, 255), (0, 0), (255, 255), (17, 200), (128, 128), (3, 250)):
        y = _C.clamp_u8(x, lo, hi)
        assert y.dtype == np.uint8 and y.shape == x.shape
        np.testing.assert_array_equal(y, np.clip(x, lo, hi))


def test_clamp_argument_checks():
    a = np.zeros((2, 3), np.uint8)
    for lo, hi in ((-1, 3), (0, 256), (5, 4)):
        with pytest.raises(ValueError, match="0 <= lo <= hi <= 255"):
            _C.clamp_u8(a, lo, hi)
    with pytest.raises(TypeError, match="uint8"):
        _C.clamp_u8(a.astype(np.int8), 0, 3)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.clamp_u8(a.T, 0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_relu6_match_the_numpy_clamp(dtype, rng):
    """Quantized ReLU / ReLU6 (native clamp for quint8) against np.clip of the codes, NCHW and
    NHWC storage, and ReLU6's code of 6.0 against quantize_per_tensor's for many qparams."""
    from npquant.nn.quantized.activation import _quantize_six

    u8 = dtype is npquant.quint8
    for s, zp in ((0.05, 3 if u8 else -3), (0.01, 0), (0.7, 200 if u8 else 100)):
        x = npquant.quantize_per_tensor(rng.normal(0, 3, (2, 5, 6, 7)).astype(np.float32), s, zp, dtype)
        six = int(npquant.quantize_per_tensor(np.array([6.0], np.float32), s, zp, dtype).int_repr()[0])
        assert _quantize_six(s, zp, dtype) == six
        nhwc = npquant.QTensor.from_nhwc(np.ascontiguousarray(x.int_repr().transpose(0, 2, 3, 1)), s, zp, dtype)
        for t in (x, nhwc):
            r, r6 = nnq.ReLU()(t), nnq.ReLU6()(t)
            assert r.is_nhwc == t.is_nhwc and r6.is_nhwc == t.is_nhwc
            np.testing.assert_array_equal(r.int_repr(), np.maximum(x.int_repr(), zp))
            np.testing.assert_array_equal(r6.int_repr(), np.clip(x.int_repr(), zp, six))
            assert (r.q_scale(), r.q_zero_point()) == (r6.q_scale(), r6.q_zero_point()) == (x.q_scale(), zp)
    # a strided view a user wrapped in a QTensor takes the NumPy path, with the same codes
    a = rng.integers(0, 256, (2, 8, 5, 6), dtype=np.uint8)
    for view in (a[:, ::2], a.transpose(0, 1, 3, 2)):
        v = npquant.QTensor(view, 0.1, 3)
        np.testing.assert_array_equal(nnq.ReLU()(v).int_repr(), np.maximum(view, 3))
        six = _quantize_six(0.1, 3, npquant.quint8)
        np.testing.assert_array_equal(nnq.ReLU6()(v).int_repr(), np.clip(view, 3, six))
    scales = np.float32(10 ** rng.uniform(-4, 1.5, 3000))
    scales[::3] = np.float32(6.0) / (rng.integers(1, 300, 1000) + np.float32(0.5))  # 6 / s near a tie
    for s, zp in zip(scales.tolist(), rng.integers(0, 256, scales.size).tolist()):
        want = npquant.quantize_per_tensor(np.array([6.0], np.float32), s, zp, npquant.quint8).int_repr()[0]
        assert _quantize_six(s, zp, npquant.quint8) == want, (s, zp)


def test_lookup_argument_checks():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="65536 entries"):
        _C.lookup2(a, a, np.zeros(256, np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        _C.lookup2(a, np.zeros((3, 2), np.uint8), np.zeros(65536, np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        _C.lookup(a.astype(np.int8), np.zeros(256, np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.lookup(a.T, np.zeros(256, np.uint8))
    with pytest.raises(ValueError, match="batch, channels"):
        _C.lookup2_channel(
            np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 2), np.uint8), np.zeros(65536, np.uint8), True
        )
    with pytest.raises(ValueError, match="every dimension but channels"):
        _C.cat_channels([np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 2, 3, 3), np.uint8)], [None, None])
    assert _C.lookup(np.zeros((0, 4), np.uint8), np.arange(256, dtype=np.uint8)).shape == (0, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nhwc_copy_equals_numpy_transpose(dtype):
    """QTensor.nhwc() of an NCHW-stored tensor is the native transpose (16 x 16 SIMD tiles
    plus portable tails): every shape class of tiles and tails, and both thread counts."""
    rng = np.random.default_rng(5)
    shapes = [(1, 3, 224, 224), (2, 1, 5, 7), (1, 16, 4, 4), (3, 17, 9, 11), (1, 33, 16, 17), (2, 64, 7, 7)]
    shapes += [(1, 48, 1, 1), (1, 5, 0, 3), (0, 8, 2, 2), (1, 130, 13, 5), (2, 64, 56, 56)]  # last: parallel
    before = npquant.get_num_threads()
    for threads in (1, 2):
        npquant.set_num_threads(threads)
        try:
            for shape in shapes:
                codes = rng.integers(dtype.qmin, dtype.qmax + 1, shape).astype(dtype.storage)
                q = npquant.QTensor(codes, 0.1, dtype.qmin + 3, dtype)
                got = q.nhwc()
                assert got.dtype == codes.dtype and got.flags.c_contiguous, shape
                np.testing.assert_array_equal(got, codes.transpose(0, 2, 3, 1), err_msg=str(shape))
        finally:
            npquant.set_num_threads(before)


@pytest.mark.parametrize("groups", [2, 3])
def test_channel_shuffle_nhwc_equals_numpy(groups):
    """The native shuffle against NumPy's reshape-transpose, for channel counts around the
    16-byte vector width (tails, whole vectors, ShuffleNet's 58/116/232) and 1 and 2 threads."""
    rng = np.random.default_rng(5)
    old = npquant.get_num_threads()
    try:
        for threads in (1, 2):
            npquant.set_num_threads(threads)
            for per_group in (1, 15, 16, 17, 33, 58, 116, 232):
                x = rng.integers(0, 256, (3, 5, 7, groups * per_group), dtype=np.uint8)
                ref = x.reshape(3, 5, 7, groups, per_group).swapaxes(3, 4).reshape(x.shape)
                np.testing.assert_array_equal(_C.channel_shuffle_nhwc(x, groups), ref)
    finally:
        npquant.set_num_threads(old)


@pytest.mark.parametrize("seed", range(6))
def test_native_dequantize_equals_numpy_formula(seed):
    # QTensor.dequantize of a per-tensor quint8 tensor runs _C.dequantize_u8: the same
    # float32 product as the NumPy formula (the qint8 / per-channel path), bit for bit
    rng = np.random.default_rng(seed)
    for shape in [(), (0,), (7,), (3, 5), (2, 3, 4, 5), (1, 1000), (2, 0, 3, 4)]:
        codes = rng.integers(0, 256, shape, dtype=np.uint8)
        scale = float(np.float32(random_scale(rng)))
        zp = int(rng.integers(0, 256))
        for nhwc in (False, True) if len(shape) == 4 else (False,):
            t = npquant.QTensor.from_nhwc(codes, scale, zp) if nhwc else npquant.QTensor(codes, scale, zp)
            want = np.float32(scale) * (t.int_repr().astype(np.int32) - zp).astype(np.float32)
            got = t.dequantize()
            assert got.dtype == np.float32 and got.shape == want.shape == t.shape
            np.testing.assert_array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.dequantize_u8(np.zeros((4, 4), np.uint8)[:, ::2], 0.5, 3)
    with pytest.raises(ValueError, match="4-D"):
        _C.dequantize_u8(np.zeros((4, 4), np.uint8), 0.5, 3, True)
    with pytest.raises(TypeError):
        _C.dequantize_u8(np.zeros(4, np.int8), 0.5, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nhwc_flatten_and_narrow_equal_numpy(dtype, rng):
    # QTensor.reshape of NHWC codes (a Flatten) transposes natively (_C.nhwc_to_nchw_u8), and
    # narrow / chunk along the channels copies natively (_C.channel_range_u8): the same
    # codes as slicing int_repr() in NumPy
    for shape in [(2, 5, 3, 7), (1, 1, 1, 9), (3, 4, 4, 1), (1, 2, 2, 64), (2, 0, 3, 4)]:
        t = random_qtensor(rng, shape, dtype, nhwc=True)
        logical = t.int_repr()
        flat = t.reshape(shape[0], -1)
        np.testing.assert_array_equal(flat.int_repr(), logical.reshape(shape[0], -1))
        assert flat.int_repr().flags.c_contiguous and flat.q_scale() == t.q_scale()
        for dim in range(4):
            n = logical.shape[dim]
            for start, length in [(0, n), (0, n // 2), (n // 2, n - n // 2), (min(1, n), max(0, n - 2))]:
                part = t.narrow(dim, start, length)
                want = np.take(logical, np.arange(start, start + length), axis=dim)
                np.testing.assert_array_equal(part.int_repr(), want)
                assert part.is_nhwc and part.nhwc().flags.c_contiguous
    codes = np.zeros((2, 3, 4, 8), np.uint8)
    with pytest.raises(ValueError, match="outside"):
        _C.channel_range_u8(codes, 6, 3)
    with pytest.raises(ValueError, match="outside"):
        _C.channel_range_u8(codes, -1, 2)
    with pytest.raises(ValueError, match="4-D"):
        _C.nhwc_to_nchw_u8(codes[0])
