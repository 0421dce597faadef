"""Mistakes get clear Python exceptions (never a crash), or a correct result."""

import numpy as np
import pytest

import npquant
from npquant import _C


@pytest.fixture
def dyn():
    return npquant.nn.quantized.dynamic.Linear.from_float(npquant.nn.Linear(16, 8))


@pytest.fixture
def static():
    q = npquant.nn.quantized.Linear(16, 8)
    q.set_weight_bias(
        npquant.nn.quantized._packed.quantize_weight_symmetric(
            np.random.default_rng(0).normal(0, 1, (8, 16)).astype(np.float32)
        ),
        None,
    )
    q.scale, q.zero_point = 0.1, 10
    return q


def test_dynamic_wrong_dtype(dyn):
    with pytest.raises(TypeError, match="float"):
        dyn(np.zeros((2, 16), np.int32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        dyn([[0.0] * 16])


def test_dynamic_float64_is_accepted(dyn):
    x = np.random.default_rng(0).normal(0, 1, (3, 16))
    assert np.array_equal(dyn(x), dyn(x.astype(np.float32)))


def test_dynamic_wrong_shape(dyn):
    with pytest.raises(ValueError, match="last dimension 16"):
        dyn(np.zeros((2, 15), np.float32))
    with pytest.raises(ValueError, match="last dimension 16"):
        dyn(np.array(1.0, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dynamic_nonfinite(dyn, bad):
    x = np.zeros((4, 16), np.float32)
    x[2, 5] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        dyn(x)


@pytest.mark.parametrize("per_row", [False, True])
def test_dynamic_nonfinite_per_row(per_row):
    bad = np.nan
    q = npquant.nn.quantized.dynamic.Linear.from_float(npquant.nn.Linear(16, 8), per_row=per_row)
    x = np.ones((70, 16), np.float32)
    x[69, 15] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        q(x)


def test_dynamic_non_contiguous_gives_correct_result(dyn):
    x = np.random.default_rng(1).normal(0, 1, (16, 6)).astype(np.float32).T  # (6,16) strided
    assert not x.flags.c_contiguous
    assert np.array_equal(dyn(x), dyn(np.ascontiguousarray(x)))


def test_empty_batch(dyn, static):
    assert dyn(np.zeros((0, 16), np.float32)).shape == (0, 8)
    xq = npquant.quantize_per_tensor(np.zeros((0, 16), np.float32), 0.1, 0, npquant.quint8)
    assert static(xq).shape == (0, 8)


def test_batched_leading_dims(dyn):
    x = np.random.default_rng(2).normal(0, 1, (2, 3, 16)).astype(np.float32)
    assert dyn(x).shape == (2, 3, 8)


def test_static_needs_qtensor(static):
    with pytest.raises(TypeError, match="QTensor"):
        static(np.zeros((2, 16), np.float32))


def test_static_wrong_qdtype(static):
    xq = npquant.quantize_per_tensor(np.zeros((2, 16), np.float32), 0.1, 0, npquant.qint8)
    with pytest.raises(TypeError, match="quint8"):
        static(xq)


def test_static_bad_output_qparams(static):
    xq = npquant.quantize_per_tensor(np.zeros((2, 16), np.float32), 0.1, 0, npquant.quint8)
    static.scale = 0.0
    with pytest.raises(ValueError, match="scale"):
        static(xq)
    static.scale, static.zero_point = 0.1, 300
    with pytest.raises(ValueError, match="zero_point"):
        static(xq)


def test_k_beyond_exact_bound():
    k = _C.MAX_K + 1
    w = npquant.QTensor(np.zeros((1, k), np.int8), 0.1, 0, npquant.qint8)
    q = npquant.nn.quantized.dynamic.Linear(4, 1)
    with pytest.raises(ValueError, match="accumulation bound"):
        q.set_weight_bias(w, None)
    with pytest.raises(ValueError, match="accumulation bound"):
        _C.PackedLinearWeight(np.zeros((1, k), np.int8), np.ones(1, np.float32))


def test_weight_needs_symmetric_int8():
    q = npquant.nn.quantized.Linear(4, 2)
    w = npquant.quantize_per_tensor(np.ones((2, 4), np.float32), 0.1, 3, npquant.qint8)
    with pytest.raises(ValueError, match="symmetric"):
        q.set_weight_bias(w, None)
    with pytest.raises(TypeError, match="QTensor"):
        q.set_weight_bias(np.ones((2, 4), np.int8), None)
    w = npquant.quantize_per_tensor(np.ones((2, 4), np.float32), 0.1, 0, npquant.qint8)
    with pytest.raises(ValueError, match="bias must have shape"):
        q.set_weight_bias(w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        q.set_weight_bias(w, np.array([0, np.nan], np.float32))


def test_quantize_per_tensor_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="scale"):
        npquant.quantize_per_tensor(x, -1.0, 0, npquant.quint8)
    with pytest.raises(ValueError, match="scale"):
        npquant.quantize_per_tensor(x, float("nan"), 0, npquant.quint8)
    with pytest.raises(ValueError, match="zero_point"):
        npquant.quantize_per_tensor(x, 0.1, 256, npquant.quint8)
    with pytest.raises(TypeError, match="npquant.quint8"):
        npquant.quantize_per_tensor(x, 0.1, 0, np.uint8)
    with pytest.raises(ValueError, match="NaN or Inf"):
        npquant.quantize_per_tensor(np.array([np.nan], np.float32), 0.1, 0, npquant.quint8)
    with pytest.raises(ValueError, match="NaN or Inf"):
        npquant.quantize_per_tensor(np.array([np.inf], np.float32), 0.1, 0, npquant.qint8)
    # large arrays are checked chunk by chunk (64K floats): a bad value in any chunk raises
    big = np.zeros(200_001, np.float32)
    for i in (0, 65_535, 65_536, 131_100, 200_000):
        for bad in (np.nan, np.inf, -np.inf):
            y = big.copy()
            y[i] = bad
            with pytest.raises(ValueError, match="NaN or Inf"):
                npquant.quantize_per_tensor(y, 0.1, 0, npquant.quint8)
    with pytest.raises(TypeError, match="float"):
        npquant.quantize_per_tensor(np.ones(4, np.int64), 0.1, 0, npquant.quint8)
    assert npquant.quantize_per_tensor(np.zeros((0, 3), np.float32), 0.1, 0, npquant.quint8).shape == (0, 3)


def test_quantize_per_channel_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="need 3 scales"):
        npquant.quantize_per_channel(x, [0.1, 0.1], [0, 0], 0, npquant.qint8)
    with pytest.raises(ValueError, match="axis"):
        npquant.quantize_per_channel(x, [0.1] * 3, [0] * 3, 5, npquant.qint8)


def test_qtensor_is_not_silently_a_float_array():
    q = npquant.quantize_per_tensor(np.ones(4, np.float32), 0.1, 0, npquant.quint8)
    with pytest.raises(TypeError, match="dequantize"):
        np.asarray(q)


def test_native_layer_rejects_bad_arrays():
    ws = np.ones(4, np.float32)
    w = np.zeros((4, 8), np.int8)
    p = _C.PackedLinearWeight(w, ws)
    with pytest.raises(TypeError, match="uint8"):
        _C.linear_static(np.zeros((2, 8), np.int8), p, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.linear_static(np.zeros((8, 2), np.uint8).T, p, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="features"):
        _C.linear_static(np.zeros((2, 7), np.uint8), p, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="zero_point"):
        _C.linear_static(np.zeros((2, 8), np.uint8), p, 0.1, 256, 0.1, 0)
    with pytest.raises(ValueError, match="4 elements"):
        _C.PackedLinearWeight(w, ws[:3])
    with pytest.raises(ValueError, match="scale"):
        _C.PackedLinearWeight(w, ws * 0)
    with pytest.raises(ValueError, match="bias must be finite"):
        _C.PackedLinearWeight(w, ws, np.full(4, np.inf, np.float32))
    with pytest.raises(TypeError, match="float32"):
        _C.PackedLinearWeight(w, ws.astype(np.float64))
    # Constants that overflow float32 are caught per (input scale, output scale) pair.
    tiny = _C.PackedLinearWeight(w, ws * 1e-30, np.full(4, 1e30, np.float32))
    with pytest.raises(ValueError, match="finite"):
        _C.linear_static(np.zeros((2, 8), np.uint8), tiny, 1e-30, 0, 0.1, 0)
    with pytest.raises(TypeError, match="ndarray"):
        _C.linear_dynamic([1, 2], p)
