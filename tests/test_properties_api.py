"""Property tests (hypothesis) for the quantized modules' Python API: random shapes,
dtypes, strides, storage orders, qparams, NaN/Inf and empty arrays give the exact
result or a clean TypeError / ValueError with a message, never a crash or a silently
wrong answer. (Kernel-level properties: tests/test_properties.py.)

Run with ``--hypothesis-show-statistics`` to see how many cases each property tried.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq

import npref
from conftest import max_examples

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CLEAN = (TypeError, ValueError)

# qparams a user might type, good and bad
# (valid values are listed three times: one_of picks a branch uniformly, so 3 in 4 draws are valid)
_good_scale = st.floats(float(np.float32(1e-6)), 10.0, width=32)
any_scale = st.one_of(_good_scale, _good_scale, _good_scale, st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e-45, 1e38]))
any_zp = st.one_of(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.sampled_from([-1, 256, 3.5, 1e9]))


def ok_qparams(scale, zp, dtype=npquant.quint8) -> bool:
    s = np.float32(scale)
    with np.errstate(over="ignore", divide="ignore"):
        good_s = bool(np.isfinite(s) and s > 0 and np.isfinite(np.float32(1) / s))
    return good_s and float(zp) == int(zp) and dtype.qmin <= int(zp) <= dtype.qmax


def assert_clean(e: Exception):
    assert isinstance(e, CLEAN) and str(e), repr(e)


@st.composite
def qtensor(draw, shape=None, min_dims=1, max_dims=4, max_side=7, nhwc=None):
    """A quint8 QTensor with random qparams, maybe NHWC-stored, maybe from a strided view."""
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    q = draw(hnp.arrays(np.uint8, shape))
    scale = draw(st.floats(float(np.float32(1e-4)), 1.0, width=32))
    zp = draw(st.integers(0, 255))
    if len(shape) == 4 and (draw(st.booleans()) if nhwc is None else nhwc):
        event("NHWC storage")
        return npquant.QTensor.from_nhwc(np.ascontiguousarray(q.transpose(0, 2, 3, 1)), scale, zp)
    if len(shape) >= 2 and draw(st.booleans()):
        event("non-contiguous codes")
        q = np.asfortranarray(q)  # a column-major array: same values, other strides
    return npquant.QTensor(q, scale, zp)


# ------------------------------------------------------------------ static Linear
def _linear(k, n, bias, relu, seed=0):
    rng = np.random.default_rng(seed)
    layer = (nnq.LinearReLU if relu else nnq.Linear)(k, n, bias)
    w = npquant.nn.quantized._packed.quantize_weight_symmetric(rng.normal(0, 0.1, (n, k)).astype(np.float32))
    layer.set_weight_bias(w, rng.normal(0, 0.5, n).astype(np.float32) if bias else None)
    return layer


@settings(max_examples=max_examples(300), **SETTINGS)
@given(
    data=st.data(),
    k=st.integers(1, 20),
    n=st.integers(1, 12),
    bias=st.booleans(),
    relu=st.booleans(),
    scale=any_scale,
    zp=any_zp,
)
def test_static_linear_exact_or_clean(data, k, n, bias, relu, scale, zp):
    layer = _linear(k, n, bias, relu)
    layer.scale, layer.zero_point = scale, zp
    last = data.draw(st.sampled_from([k, k, k + 1, max(k - 1, 0)]))
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5))
    x = data.draw(
        st.one_of(
            qtensor(shape=lead + (last,)),
            qtensor(shape=lead + (last,)),
            qtensor(shape=lead + (last,)),
            hnp.arrays(st.sampled_from([np.float32, np.uint8]), lead + (last,)),
        )
    )
    try:
        y = layer(x)
    except Exception as e:  # noqa: BLE001 (checked below)
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        assert not (isinstance(x, npquant.QTensor) and last == k and ok_qparams(scale, zp))
        return
    assert isinstance(x, npquant.QTensor) and last == k and ok_qparams(scale, zp)
    event("computed")
    w = layer.weight()
    x2 = np.ascontiguousarray(x.int_repr().reshape(-1, k))
    expect = npref.linear_static(
        x2,
        x.q_scale(),
        x.q_zero_point(),
        w.int_repr(),
        w.q_per_channel_scales(),
        layer.bias(),
        np.float32(scale),
        int(zp),
        relu,
    )
    assert y.shape == lead + (n,)
    np.testing.assert_array_equal(y.int_repr().reshape(-1, n), expect)


@settings(max_examples=max_examples(200), **SETTINGS)
@given(data=st.data(), n=st.integers(1, 6), k=st.integers(1, 6))
def test_set_weight_bias_exact_or_clean(data, n, k):
    """Weights of any dtype / qscheme / zero point / shape and biases with NaN or the wrong
    shape: accepted only when they are valid, and then used exactly."""
    wq = data.draw(hnp.arrays(np.int8, data.draw(st.sampled_from([(n, k), (k, n), (n, k, 1), (n,)]))))
    kind = data.draw(st.sampled_from(["per_tensor", "per_channel", "per_tensor_zp", "uint8", "array"]))
    if kind == "per_tensor":
        w = npquant.QTensor(wq, 0.01, 0, npquant.qint8)
    elif kind == "per_tensor_zp":
        w = npquant.QTensor(wq, 0.01, data.draw(st.integers(-128, 127)), npquant.qint8)
    elif kind == "per_channel" and wq.ndim >= 1:
        w = npquant.QTensor(
            wq, np.full(wq.shape[0], 0.02, np.float32), np.zeros(wq.shape[0], int), npquant.qint8, axis=0
        )
    elif kind == "uint8":
        w = npquant.QTensor(wq.view(np.uint8), 0.01, 0, npquant.quint8)
    else:
        w = wq
    bias = data.draw(
        st.one_of(
            st.none(),
            hnp.arrays(
                np.float32,
                st.sampled_from([(n,), (n + 1,), (1, n)]),
                elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
            ),
        )
    )
    layer = nnq.Linear(k, n)
    try:
        layer.set_weight_bias(w, bias)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        return
    event("accepted")
    assert isinstance(w, npquant.QTensor) and w.dtype is npquant.qint8 and wq.shape == (n, k)
    assert w.qscheme() == "per_channel_affine" or w.q_zero_point() == 0
    assert bias is None or (bias.shape == (n,) and np.all(np.isfinite(bias)))
    np.testing.assert_array_equal(layer.weight().int_repr(), wq)


# ------------------------------------------------------------------ pooling
pool_geometry = st.fixed_dictionaries(
    dict(kernel_size=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2), ceil_mode=st.booleans())
)


@settings(max_examples=max_examples(300), **SETTINGS)
@given(
    x=st.one_of(qtensor(min_dims=4, max_dims=4, max_side=10), qtensor(min_dims=1, max_dims=5)),
    geom=pool_geometry,
    dilation=st.integers(1, 2),
)
def test_maxpool_exact_or_clean(x, geom, dilation):
    """Quantized max pooling is max pooling of the codes (monotone), whatever the storage."""
    codes = x.int_repr().astype(np.float32)
    try:
        q = nnq.MaxPool2d(**geom, dilation=dilation)
        f = nn.MaxPool2d(**geom, dilation=dilation)
        y = q(x)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        with pytest.raises(CLEAN):  # the float module refuses the same geometry / shape
            nn.MaxPool2d(**geom, dilation=dilation)(codes)
        return
    event("computed")
    assert y.is_nhwc == x.is_nhwc and y.q_scale() == x.q_scale() and y.q_zero_point() == x.q_zero_point()
    # a dilated window can miss the input entirely: -inf in float, the lowest code quantized
    np.testing.assert_array_equal(y.int_repr(), np.clip(f(codes), 0, 255).astype(np.uint8))


@settings(max_examples=max_examples(300), **SETTINGS)
@given(
    x=st.one_of(qtensor(min_dims=4, max_dims=4, max_side=10), qtensor(min_dims=1, max_dims=5)),
    geom=pool_geometry,
    cip=st.booleans(),
)
def test_avgpool_within_half_a_code_or_clean(x, geom, cip):
    """Quantized average pooling rounds the float average of the centred codes: within half a
    code of it (plus float rounding), in range, same shape as the float module's."""
    zp = x.q_zero_point()
    centred = x.int_repr().astype(np.float32) - np.float32(zp)
    try:
        q = nnq.AvgPool2d(**geom, count_include_pad=cip)
        f = nn.AvgPool2d(**geom, count_include_pad=cip)
        y = q(x)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        with pytest.raises(CLEAN):
            nn.AvgPool2d(**geom, count_include_pad=cip)(centred)
        return
    event("computed")
    ref = f(centred) + zp
    assert y.shape == ref.shape
    assert np.all(np.abs(y.int_repr().astype(np.float64) - np.clip(ref, 0, 255)) <= 0.5 + 1e-3)


@settings(max_examples=max_examples(200), **SETTINGS)
@given(
    x=qtensor(shape=None, min_dims=4, max_dims=4, max_side=9),
    out=st.one_of(st.integers(0, 5), st.tuples(st.integers(1, 5), st.one_of(st.none(), st.integers(1, 5)))),
)
def test_adaptive_avgpool_within_half_a_code_or_clean(x, out):
    q, f = nnq.AdaptiveAvgPool2d(out), None
    try:
        f = nn.AdaptiveAvgPool2d(out)
        y = q(x)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        return
    event("computed")
    assert x.shape[2] > 0 and x.shape[3] > 0  # empty bins must raise, not divide by zero
    zp = x.q_zero_point()
    ref = f(x.int_repr().astype(np.float32) - np.float32(zp)) + zp
    assert np.all(np.abs(y.int_repr().astype(np.float64) - np.clip(ref, 0, 255)) <= 0.5 + 1e-3)


# ------------------------------------------------------------------ QFunctional
@settings(max_examples=max_examples(300), **SETTINGS)
@given(data=st.data(), op=st.sampled_from(["add", "add_relu", "mul", "cat"]), scale=any_scale, zp=any_zp)
def test_qfunctional_close_or_clean(data, op, scale, zp):
    """add / add_relu / mul / cat of random QTensors (broadcasting, mismatched shapes, NHWC,
    mixed dtypes): within one code of quantizing the float result, or a clean error."""
    a = data.draw(qtensor(max_dims=4))
    shape_b = data.draw(st.sampled_from([a.shape, a.shape[1:], (1,) * len(a.shape), tuple(reversed(a.shape))]))
    b = data.draw(st.one_of(qtensor(shape=tuple(shape_b)), hnp.arrays(np.float32, tuple(shape_b))))
    f = nnq.QFunctional()
    f.scale, f.zero_point = scale, zp
    try:
        y = f.cat([a, b], 0) if op == "cat" else getattr(f, op)(a, b)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        return
    event("computed")
    assert isinstance(b, npquant.QTensor) and ok_qparams(scale, zp)
    fa, fb = a.dequantize(), b.dequantize()
    v = {
        "add": lambda: fa + fb,
        "add_relu": lambda: np.maximum(fa + fb, 0),
        "mul": lambda: fa * fb,
        "cat": lambda: np.concatenate([fa, fb], 0),
    }[op]()
    ref = np.clip(np.rint(v / np.float32(scale)) + int(zp), 0, 255)
    assert y.shape == ref.shape
    assert np.all(np.abs(y.int_repr().astype(np.float64) - ref) <= 1)


# ------------------------------------------------------------------ QTensor construction
@settings(max_examples=max_examples(300), **SETTINGS)
@given(
    arr=hnp.arrays(
        st.sampled_from([np.uint8, np.int8, np.int32, np.float32, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    dtype=st.sampled_from([npquant.quint8, npquant.qint8]),
    scale=any_scale,
    zp=st.integers(-300, 300),
    axis=st.one_of(st.none(), st.integers(-4, 4)),
)
def test_qtensor_constructor_validates(arr, dtype, scale, zp, axis):
    try:
        if axis is None:
            t = npquant.QTensor(arr, scale, zp, dtype)
        else:
            n = arr.shape[axis] if -arr.ndim <= axis < arr.ndim else 1
            t = npquant.QTensor(arr, np.full(n, scale, np.float32), np.full(n, zp), dtype, axis=axis)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        return
    event("accepted")
    channels = 1 if axis is None else arr.shape[axis]
    assert arr.dtype == dtype.storage and (ok_qparams(scale, zp, dtype) or channels == 0)
    np.testing.assert_array_equal(t.int_repr(), arr)
    d = t.dequantize()
    assert d.dtype == np.float32 and d.shape == arr.shape
    # finite unless scale * (q - zero_point) itself exceeds float32 (scales near 1e38)
    assert np.all(np.isfinite(d)) or float(np.float32(scale)) * 511 > np.finfo(np.float32).max


# ------------------------------------------------------------------ convolution


def _conv_acc(x_codes, xz, w, stride, padding, dilation, groups):
    """Exact int64 accumulators of a grouped conv (NCHW codes, OIHW int8 weights)."""
    n, c, h, wd = x_codes.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x_codes.astype(np.int64) - xz, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    acc = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :,
                :,
                i * dilation : i * dilation + stride * (oh - 1) + 1 : stride,
                j * dilation : j * dilation + stride * (ow - 1) + 1 : stride,
            ]
            for g in range(groups):
                acc[:, g * og : (g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og, :, i, j].astype(np.int64)
                )
    return acc


@settings(max_examples=max_examples(150), **SETTINGS)
@given(
    data=st.data(),
    groups=st.integers(1, 3),
    cg=st.integers(1, 4),
    og=st.integers(1, 4),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    relu=st.booleans(),
    scale=any_scale,
    zp=any_zp,
)
def test_static_conv_exact_or_clean(data, groups, cg, og, k, stride, padding, dilation, bias, relu, scale, zp):
    cin, cout = cg * groups, og * groups
    rng = np.random.default_rng(0)
    layer = (nnq.ConvReLU2d if relu else nnq.Conv2d)(
        cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias
    )
    wq = rng.integers(-128, 128, (cout, cg, k, k), dtype=np.int8)
    ws = rng.uniform(0.001, 0.01, cout).astype(np.float32)
    b = rng.normal(0, 1, cout).astype(np.float32) if bias else None
    layer.set_weight_bias(npquant.QTensor(wq, ws, np.zeros(cout, int), npquant.qint8, axis=0), b)
    layer.scale, layer.zero_point = scale, zp
    c_in = data.draw(st.sampled_from([cin, cin, cin + 1]))
    x = data.draw(
        qtensor(shape=(data.draw(st.integers(0, 2)), c_in, data.draw(st.integers(0, 8)), data.draw(st.integers(0, 8))))
    )
    try:
        y = layer(x)
    except Exception as e:  # noqa: BLE001
        assert_clean(e)
        event(f"clean {type(e).__name__}")
        return
    event("computed")
    assert c_in == cin and ok_qparams(scale, zp)
    acc = _conv_acc(x.int_repr(), x.q_zero_point(), wq, stride, padding, dilation, groups)
    nn_, o, oh, ow = acc.shape
    flat = acc.transpose(0, 2, 3, 1).reshape(-1, o)
    # the static Linear contract on the accumulators (npref's requantization)
    bias_s, mult = npref.requant_constants(np.float32(x.q_scale()), ws, np.float32(scale), b)
    v = ((flat.astype(np.float32) + bias_s).astype(np.float32) * mult).astype(np.float32)
    q = np.clip(np.rint(v).astype(np.float64) + int(zp), int(zp) if relu else 0, 255)
    expect = q.reshape(nn_, oh, ow, o).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(y.int_repr(), expect)
