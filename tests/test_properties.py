"""Property tests (hypothesis): random shapes, dtypes, strides, qparams, NaN/Inf and
empty arrays give either the contract's exact result or a clean exception."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npquant
from npquant import _C

import npref
from conftest import max_examples

SETTINGS = dict(max_examples=max_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
KERNELS = [k["name"] for k in _C.runnable_gemm_kernels()]


@st.composite
def static_problem(draw):
    m = draw(st.integers(0, 40))
    k = draw(st.integers(1, 300))
    n = draw(st.integers(1, 70))
    x = draw(hnp.arrays(np.uint8, (m, k)))
    w = draw(hnp.arrays(np.int8, (n, k)))
    xs = draw(st.floats(9.999999747378752e-05, 1.0, width=32))
    ws = draw(hnp.arrays(np.float32, (n,), elements=st.floats(9.999999747378752e-06, 0.10000000149011612, width=32)))
    bias = draw(st.none() | hnp.arrays(np.float32, (n,), elements=st.floats(-100.0, 100.0, width=32)))
    ys = draw(st.floats(0.0010000000474974513, 10.0, width=32))
    xz, yz = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    relu = draw(st.booleans())
    kernel = draw(st.sampled_from(KERNELS))
    return x, w, xs, ws, bias, ys, xz, yz, relu, kernel


@pytest.mark.slow
@settings(**SETTINGS)
@given(static_problem())
def test_static_kernel_equals_contract(p):
    x, w, xs, ws, bias, ys, xz, yz, relu, kernel = p
    packed = _C.PackedLinearWeight(w, ws, bias, kernel=kernel)
    y = _C.linear_static(x, packed, xs, xz, ys, yz, relu)
    assert np.array_equal(y, npref.linear_static(x, xs, xz, w, ws, bias, ys, yz, relu))


@pytest.mark.slow
@settings(**SETTINGS)
@given(m=st.integers(0, 20), k=st.integers(1, 200), n=st.integers(1, 50), data=st.data(), per_row=st.booleans())
def test_dynamic_kernel_equals_contract(m, k, n, data, per_row):
    x = data.draw(hnp.arrays(np.float32, (m, k), elements=st.floats(-1000000.0, 1000000.0, width=32)))
    w = data.draw(hnp.arrays(np.int8, (n, k)))
    ws = data.draw(
        hnp.arrays(np.float32, (n,), elements=st.floats(9.999999747378752e-06, 0.10000000149011612, width=32))
    )
    kernel = data.draw(st.sampled_from(KERNELS))
    packed = _C.PackedLinearWeight(w, ws, kernel=kernel)
    y = _C.linear_dynamic(x, packed, per_row)
    assert np.array_equal(y, npref.linear_dynamic(x, w, ws, None, per_row))


ANY_DTYPE = st.sampled_from(
    [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_, np.complex64]
)


@settings(**SETTINGS)
@given(data=st.data(), dtype=ANY_DTYPE, transpose=st.booleans())
def test_dynamic_linear_any_array_is_exact_or_clean_error(data, dtype, transpose):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9))
    x = data.draw(hnp.arrays(dtype, shape))
    if transpose:
        x = x.T
    layer = _dynamic_layer(8, 5)
    try:
        y = layer(x)
    except (TypeError, ValueError) as e:
        assert str(e)  # a message, not a bare exception
        return
    # Accepted only when it is a float array ending in 8 features with finite values.
    assert x.dtype.kind == "f" and x.shape[-1] == 8 and np.all(np.isfinite(x))
    assert y.shape == x.shape[:-1] + (5,)
    x2 = np.ascontiguousarray(x.reshape(-1, 8), dtype=np.float32)
    qw = layer.weight()
    expect = npref.linear_dynamic(x2, qw.int_repr(), qw.q_per_channel_scales(), layer.bias())
    assert np.array_equal(y.reshape(-1, 5), expect)


@settings(**SETTINGS)
@given(
    data=st.data(),
    scale=st.floats(allow_nan=True, allow_infinity=True, width=32),
    zp=st.integers(-300, 300),
    signed=st.booleans(),
)
def test_quantize_per_tensor_exact_or_clean_error(data, scale, zp, signed):
    x = data.draw(
        hnp.arrays(
            np.float32,
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
            elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
        )
    )
    dtype = npquant.qint8 if signed else npquant.quint8
    try:
        q = npquant.quantize_per_tensor(x, scale, zp, dtype)
    except ValueError as e:
        assert str(e)
        ok_scale = np.isfinite(scale) and scale > 0 and np.isfinite(np.float32(1) / np.float32(scale))
        ok_zp = dtype.qmin <= zp <= dtype.qmax
        assert not (ok_scale and ok_zp and np.all(np.isfinite(x)))
        return
    expect = npref.quantize(x, np.float32(scale), zp, dtype.qmin, dtype.qmax)
    assert np.array_equal(q.int_repr().astype(np.int64), expect)


_LAYERS = {}


def _dynamic_layer(k, n):
    if (k, n) not in _LAYERS:
        lin = npquant.nn.Linear(k, n, rng=np.random.default_rng(0))
        _LAYERS[(k, n)] = npquant.nn.quantized.dynamic.Linear.from_float(lin)
    return _LAYERS[(k, n)]
