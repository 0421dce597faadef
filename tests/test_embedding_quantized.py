"""Weight-only quantized Embedding / EmbeddingBag (8-bit and 4-bit row-wise): the native
kernel against a NumPy restatement of its numerics bit for bit, the modules against
torch.ao.nn.quantized, quantize_dynamic's conversions, bad input, save/load."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq
from npquant import _C
from npquant.nn.quantized.embedding_ops import RowwiseQTensor, _KernelTable

warnings.filterwarnings("ignore", message=".*deprecated.*")


# ---------------------------------------------------------------- the NumPy restatement
def fma32(a: Any, b: Any, c: Any) -> np.ndarray:
    """fmaf(a, b, c) for float32 a, c and small integer b, exactly: a * b is exact in
    float64; the float64 sum s is corrected (TwoSum error) where it sits on a float32 tie."""
    a64, b64, c64 = (np.asarray(v, np.float64) for v in (a, b, c))
    p = a64 * b64
    s = p + c64
    bv = s - p
    err = (p - (s - bv)) + (c64 - bv)
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    other = np.nextafter(r, toward)
    mid = (r64 + other.astype(np.float64)) / 2
    fix = (s == mid) & (s != r64) & (err != 0) & (np.sign(err) == np.sign(s - r64))
    return np.where(fix, other, r).astype(np.float32)


def restated_bags(
    codes: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    idx: np.ndarray,
    off: np.ndarray,
    psw: np.ndarray | None,
    mode: str,
    pad: int,
) -> np.ndarray:
    """ops/embedding.h's numerics on unpacked codes, one bag at a time, in index order."""
    dim = codes.shape[1]
    out = np.zeros((off.size - 1, dim), np.float32)
    for b in range(off.size - 1):
        acc = np.zeros(dim, np.float32)
        used = 0
        for i in range(off[b], off[b + 1]):
            r = idx[i]
            if r == pad:
                continue
            s, bb = scale[r], bias[r]
            if mode == "max":
                v = fma32(s, codes[r], bb)
                acc = v if used == 0 else np.maximum(acc, v)
            else:
                if psw is not None:
                    s, bb = np.float32(s * psw[i]), np.float32(bb * psw[i])
                acc = fma32(s, codes[r], (acc + bb).astype(np.float32))
            used += 1
        if mode == "mean" and used:
            acc = (acc * (np.float32(1) / np.float32(used))).astype(np.float32)
        out[b] = acc
    return out


def _random_table(rng: np.random.Generator, rows: int, dim: int, dtype: Any) -> RowwiseQTensor:
    w = (rng.standard_normal((rows, dim)) * rng.uniform(0.1, 5, (rows, 1))).astype(np.float32)
    obs = (
        npquant.observers.default_float_qparams_observer
        if dtype is npquant.quint8
        else npquant.observers.default_float_qparams_observer_4bit
    )()
    obs(w)
    s, z = obs.calculate_qparams()
    from npquant.nn.quantized.embedding_ops import quantize_rowwise

    return quantize_rowwise(w, s, z, dtype)


@pytest.mark.parametrize("dtype", [npquant.quint8, npquant.quint4x2])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [1, 7, 16])
def test_kernel_matches_numpy_restatement_bit_for_bit(dtype, mode, dim):
    rng = np.random.default_rng(dim)
    w = _random_table(rng, 40, dim, dtype)
    t = _KernelTable(w)
    idx = rng.integers(0, 40, 90)
    idx[[0, 5, 6, 50]] = 3
    off = np.array([0, 0, 4, 30, 31, 31, 90])  # empty bags included
    psw = rng.standard_normal(90).astype(np.float32) if mode == "sum" else None
    for pad in (None, 3):
        got = t.bags(idx, off, psw, mode, pad)
        want = restated_bags(w.int_repr(), t.scale, t.bias, idx, off, psw, mode, -1 if pad is None else pad)
        np.testing.assert_array_equal(got, want)
    if dtype is npquant.quint4x2:  # the 4-bit kernel reads torch's rounding of scale and bias to float16
        np.testing.assert_array_equal(t.scale, w.q_per_channel_scales().astype(np.float16).astype(np.float32))


def test_fma32_is_exact_at_ties():
    # 1 + 2^-24 is a float32 tie; 2^-60 more must round up (plain float64 rounding would not)
    a, c = np.float32(2.0**-24), np.float32(1.0)
    assert fma32(a, 1, c) == np.float32(1.0)  # a tie, to even
    assert fma32(np.float32(2.0**-24 + 2.0**-47), 1, c) == np.nextafter(np.float32(1), np.float32(2))


# ---------------------------------------------------------------- against torch
torch = pytest.importorskip("torch")


def _torch_pair(kind: str, dtype_bits: int, dim: int, **kw: Any) -> tuple[Any, Any]:
    import torch.ao.nn.quantized as tq
    from torch.ao.quantization import float_qparams_weight_only_qconfig as t8
    from torch.ao.quantization import float_qparams_weight_only_qconfig_4bit as t4

    torch.manual_seed(dim)
    tf = (torch.nn.Embedding if kind == "Embedding" else torch.nn.EmbeddingBag)(60, dim, **kw)
    with torch.no_grad():
        tf.weight.mul_(torch.rand(60, 1) * 4)
    tf.qconfig = t8 if dtype_bits == 8 else t4
    tq_mod = getattr(tq, kind).from_float(tf)
    f = getattr(nn, kind)(60, dim, **kw)
    f.load_state_dict(tf.state_dict())
    f.qconfig = (
        npquant.float_qparams_weight_only_qconfig if dtype_bits == 8 else npquant.float_qparams_weight_only_qconfig_4bit
    )
    return getattr(nnq, kind).from_float(f), tq_mod


@pytest.mark.parametrize("dim", [8, 64])
def test_embedding_equals_torch(dim):
    q, t = _torch_pair("Embedding", 8, dim)
    idx = np.random.default_rng(0).integers(0, 60, (5, 7))
    np.testing.assert_array_equal(q(idx), t(torch.from_numpy(idx)).numpy())
    tw = t.weight()
    assert np.array_equal(q.weight().int_repr(), tw.int_repr().numpy())
    np.testing.assert_array_equal(q.weight().q_per_channel_scales(), tw.q_per_channel_scales().numpy())
    np.testing.assert_array_equal(q.weight().q_per_channel_zero_points(), tw.q_per_channel_zero_points().numpy())
    # the dequantized rows are torch's: the lookup of every row
    np.testing.assert_array_equal(q.weight().dequantize(), t(torch.arange(60)).numpy())


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("include_last", [False, True])
def test_embedding_bag_sum_equals_torch(bits, include_last):
    q, t = _torch_pair("EmbeddingBag", bits, 16, mode="sum", include_last_offset=include_last)
    rng = np.random.default_rng(bits)
    idx = rng.integers(0, 60, 300)
    off = np.array([0, 3, 3, 100, 299] + ([300] if include_last else []))
    w = rng.standard_normal(300).astype(np.float32)
    ti, to, tw = (torch.from_numpy(v) for v in (idx, off, w))
    # measured: bit-identical (torch's fbgemm order, fmaf(s, q, acc + b)); no rounding slack needed
    np.testing.assert_array_equal(q(idx, off), t(ti, to).numpy())
    np.testing.assert_array_equal(q(idx, off, w), t(ti, to, per_sample_weights=tw).numpy())


def test_torch_state_dict_loads_into_quantized_twin():
    for bits in (8, 4):
        q, t = _torch_pair("EmbeddingBag", bits, 16, mode="sum")
        twin = nnq.EmbeddingBag(60, 16, mode="sum", dtype=npquant.quint8 if bits == 8 else npquant.quint4x2)
        twin.load_state_dict(t.state_dict())
        idx, off = np.arange(60), np.array([0, 10, 40])
        np.testing.assert_array_equal(twin(idx, off), q(idx, off))
        assert list(twin.state_dict()) == list(t.state_dict())


def test_mean_and_padding_follow_the_float_module():
    f = nn.EmbeddingBag(30, 8, mode="mean", padding_idx=2)
    q = npquant.quantize_dynamic(nn.Sequential(f), dtype=npquant.quint8)[0]
    assert isinstance(q, nnq.EmbeddingBag) and q.padding_idx == 2 and q.mode == "mean"
    deq = nn.EmbeddingBag.from_pretrained(q.weight().dequantize(), mode="mean", padding_idx=2)
    idx, off = np.array([2, 2, 5, 7, 2, 9, 9]), np.array([0, 2, 5])
    np.testing.assert_allclose(q(idx, off), deq(idx, off), rtol=1e-6, atol=1e-7)
    assert np.all(q(idx, off)[0] == 0)  # a bag of padding only


def test_quantize_dynamic_embeddings():
    m = nn.Sequential(nn.Embedding(20, 6), nn.EmbeddingBag(20, 6, mode="sum"), nn.Linear(6, 3))
    q8 = npquant.quantize_dynamic(m, dtype=npquant.quint8)
    assert [type(c) for c in q8] == [nnq.Embedding, nnq.EmbeddingBag, nn.Linear]
    q4 = npquant.quantize_dynamic(m, dtype=npquant.quint4x2)
    assert type(q4[0]) is nn.Embedding and q4[1].dtype is npquant.quint4x2
    mixed = npquant.quantize_dynamic(
        m, {nn.Linear: npquant.default_dynamic_qconfig, nn.Embedding: npquant.float_qparams_weight_only_qconfig}
    )
    assert [type(c) for c in mixed] == [nnq.Embedding, nn.EmbeddingBag, nnq.dynamic.Linear]
    with pytest.raises(ValueError, match="float_qparams_weight_only_qconfig"):
        npquant.quantize_dynamic(m, {nn.Embedding})  # qint8's default qconfig cannot quantize rows
    err = np.abs(q8[0](np.arange(20)) - m[0](np.arange(20))).max()
    assert 0 < err <= np.ptp(m[0].weight, axis=1).max() / 255  # at most half a step, plus rounding
    with pytest.raises(TypeError, match="quint4x2"):
        npquant.quantize_dynamic(m, dtype="qint32")


# ---------------------------------------------------------------- bad input
def test_bad_input_quantized():
    q = npquant.quantize_dynamic(nn.Sequential(nn.EmbeddingBag(10, 4, mode="sum")), dtype=npquant.quint8)[0]
    with pytest.raises(IndexError, match="out of range"):
        q(np.array([0, 10]), np.array([0]))
    with pytest.raises(TypeError, match="integer offsets"):
        q(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="must not decrease"):
        q(np.array([0, 1, 2]), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="start at 0"):
        q(np.array([0, 1, 2]), np.array([1, 2]))
    with pytest.raises(ValueError, match="per_sample_weights must have"):
        q(np.array([0, 1]), np.array([0]), np.ones(3, np.float32))


def test_native_kernel_checks_before_reading():
    t = _KernelTable(_random_table(np.random.default_rng(0), 10, 4, npquant.quint8))
    call = lambda idx, off, **kw: _C.embedding_bag_rowwise(  # noqa: E731
        kw.get("codes", t.codes),
        kw.get("bits", 8),
        kw.get("dim", 4),
        t.scale,
        t.bias,
        np.asarray(idx, np.int64),
        np.asarray(off, np.int64),
    )
    for bad in (10, -1, 2**62, -(2**63)):
        with pytest.raises(IndexError, match="out of range"):
            call([0, bad], [0, 2])
    with pytest.raises(ValueError, match="must not decrease"):
        call([0, 1], [0, 2, 1, 2])
    with pytest.raises(ValueError, match="last offset"):
        call([0, 1], [0, 5])
    with pytest.raises(ValueError, match="start at 0"):
        call([0, 1], [1, 2])
    with pytest.raises(ValueError, match="bytes per row"):
        call([0], [0, 1], dim=5)
    with pytest.raises(ValueError, match="bits"):
        call([0], [0, 1], bits=3)
    with pytest.raises(TypeError, match="int64"):
        _C.embedding_bag_rowwise(t.codes, 8, 4, t.scale, t.bias, np.array([0], np.int32), np.array([0, 1]))


# ---------------------------------------------------------------- save / load
def test_quantized_embeddings_round_trip(tmp_path):
    m = nn.Sequential(nn.Embedding(12, 5), nn.EmbeddingBag(12, 6, mode="max"))
    for dtype in (npquant.quint8, npquant.quint4x2):
        spec = {
            nn.Embedding: npquant.float_qparams_weight_only_qconfig,
            nn.EmbeddingBag: npquant.float_qparams_weight_only_qconfig_4bit
            if dtype is npquant.quint4x2
            else npquant.float_qparams_weight_only_qconfig,
        }
        q = npquant.quantize_dynamic(m, spec)
        path = tmp_path / f"e{dtype.name}.npq"
        npquant.save(q, path)
        back = npquant.load(path)
        idx = np.array([[1, 2, 11], [0, 0, 3]])
        np.testing.assert_array_equal(back[0](idx), q[0](idx))
        np.testing.assert_array_equal(back[1](idx), q[1](idx))
        assert back[1].dtype is q[1].dtype
        twin = npquant.quantize_dynamic(m, spec)
        twin.load_state_dict(q.state_dict())
        np.testing.assert_array_equal(twin[1](idx), q[1](idx))


def test_convert_swaps_embeddings_as_torch():
    m = nn.Sequential(nn.Embedding(10, 4), nn.EmbeddingBag(10, 4, mode="sum"))
    m[0].qconfig = npquant.float_qparams_weight_only_qconfig
    m[1].qconfig = npquant.float_qparams_weight_only_qconfig_4bit
    q = npquant.convert(npquant.prepare(m))
    assert type(q[0]) is nnq.Embedding and q[0].dtype is npquant.quint8
    assert type(q[1]) is nnq.EmbeddingBag and q[1].dtype is npquant.quint4x2
    with pytest.raises(ValueError, match="shape"):
        q[0].set_weight(q[1].weight().__class__(np.zeros((3, 4), np.uint8), np.ones(3), np.zeros(3)))
    with pytest.raises(ValueError, match="2-D"):
        nn.Embedding.from_pretrained(np.zeros(4, np.float32))


def test_torch_odd_width_4bit_state_dict_loads():
    # torch's 4-bit tables of odd width unpack to one extra (padding) column; npquant drops it
    # and returns what torch returns in the declared columns
    for dim in (5, 7):
        q, t = _torch_pair("EmbeddingBag", 4, dim, mode="sum")
        twin = nnq.EmbeddingBag(60, dim, mode="sum", dtype=npquant.quint4x2)
        twin.load_state_dict(t.state_dict())
        idx, off = np.arange(60), np.array([0, 10, 40])
        ref = t(torch.from_numpy(idx), torch.from_numpy(off)).numpy()
        assert ref.shape == (3, dim + 1)
        np.testing.assert_array_equal(twin(idx, off), ref[:, :dim])
