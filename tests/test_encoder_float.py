"""Float Embedding, EmbeddingBag, LayerNorm, Softmax, MultiheadAttention and
TransformerEncoderLayer against torch.nn (fp32, 1e-5 relative), loading torch's state dicts."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import npquant
import npquant.nn as nn

torch = pytest.importorskip("torch")

RTOL = 1e-5


def _close(y: np.ndarray, r: Any, atol: float = 1e-6) -> None:
    r = r.detach().numpy() if hasattr(r, "detach") else r
    assert y.dtype == np.float32 and y.shape == r.shape
    np.testing.assert_allclose(y, r, rtol=RTOL, atol=atol)


def _load(ours: nn.Module, theirs: Any) -> None:
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())


# ---------------------------------------------------------------- Embedding
@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
def test_embedding_matches_torch(padding_idx):
    torch.manual_seed(0)
    t = torch.nn.Embedding(20, 7, padding_idx=padding_idx).eval()
    m = nn.Embedding(20, 7, padding_idx=padding_idx)
    assert m.padding_idx == t.padding_idx
    assert np.all(m.weight[m.padding_idx] == 0) if padding_idx is not None else True
    _load(m, t)
    idx = np.random.default_rng(1).integers(0, 20, (3, 5))
    _close(m(idx), t(torch.from_numpy(idx)), atol=0)
    _close(m(idx.astype(np.int32)), t(torch.from_numpy(idx)), atol=0)


def test_embedding_from_pretrained():
    w = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    m = nn.Embedding.from_pretrained(w, padding_idx=2)
    t = torch.nn.Embedding.from_pretrained(torch.from_numpy(w), padding_idx=2)
    idx = np.array([0, 2, 5, 2])
    _close(m(idx), t(torch.from_numpy(idx)), atol=0)
    assert m.padding_idx == 2 and m.num_embeddings == 6 and m.embedding_dim == 4


BAG_CASES = list(itertools.product(["sum", "mean", "max"], [False, True], [None, 1]))


@pytest.mark.parametrize("mode,include_last,padding_idx", BAG_CASES)
def test_embedding_bag_offsets_matches_torch(mode, include_last, padding_idx):
    torch.manual_seed(0)
    t = torch.nn.EmbeddingBag(30, 9, mode=mode, include_last_offset=include_last, padding_idx=padding_idx)
    m = nn.EmbeddingBag(30, 9, mode=mode, include_last_offset=include_last, padding_idx=padding_idx)
    _load(m, t)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 30, 40)
    idx[[3, 7, 8]] = 1  # padding entries when padding_idx=1
    off = np.array([0, 5, 5, 17, 18, 40] if include_last else [0, 5, 5, 17, 18])  # with an empty bag
    r = t(torch.from_numpy(idx), torch.from_numpy(off))
    _close(m(idx, off), r)


def test_embedding_bag_2d_and_per_sample_weights():
    torch.manual_seed(0)
    t = torch.nn.EmbeddingBag(15, 6, mode="sum")
    m = nn.EmbeddingBag(15, 6, mode="sum")
    _load(m, t)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 15, (4, 5))
    w = rng.standard_normal((4, 5)).astype(np.float32)
    _close(m(idx), t(torch.from_numpy(idx)))
    _close(m(idx, per_sample_weights=w), t(torch.from_numpy(idx), per_sample_weights=torch.from_numpy(w)))
    flat, off = idx.reshape(-1), np.array([0, 3, 11])
    wf = w.reshape(-1)
    _close(m(flat, off, wf), t(torch.from_numpy(flat), torch.from_numpy(off), torch.from_numpy(wf)))


# ---------------------------------------------------------------- LayerNorm, Softmax
@pytest.mark.parametrize(
    "shape,affine,eps,bias",
    [((16,), True, 1e-5, True), ((3, 8), True, 1e-6, True), ((16,), False, 1e-5, True), ((16,), True, 1e-12, False)],
)
def test_layer_norm_matches_torch(shape, affine, eps, bias):
    torch.manual_seed(0)
    t = torch.nn.LayerNorm(shape, eps=eps, elementwise_affine=affine, bias=bias)
    if affine:
        with torch.no_grad():
            t.weight.normal_()
            if bias:
                t.bias.normal_()
    m = nn.LayerNorm(shape, eps=eps, elementwise_affine=affine, bias=bias)
    _load(m, t)
    x = (np.random.default_rng(4).standard_normal((5, 2) + shape) * 3 + 1).astype(np.float32)
    _close(m(x), t(torch.from_numpy(x)), atol=2e-6)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch(dim):
    x = (np.random.default_rng(5).standard_normal((4, 6, 7)) * 5).astype(np.float32)
    _close(nn.Softmax(dim)(x), torch.nn.Softmax(dim)(torch.from_numpy(x)), atol=1e-7)


# ---------------------------------------------------------------- attention
MHA_CASES = [(16, 4, False, True), (16, 2, True, True), (24, 3, True, False), (8, 1, False, True)]


def _mha_pair(e, h, batch_first, bias, seed=0):
    torch.manual_seed(seed)
    t = torch.nn.MultiheadAttention(e, h, bias=bias, batch_first=batch_first).eval()
    if bias:
        with torch.no_grad():
            t.in_proj_bias.normal_(0, 0.1)
            t.out_proj.bias.normal_(0, 0.1)
    m = nn.MultiheadAttention(e, h, bias=bias, batch_first=batch_first)
    _load(m, t)
    return m, t


def _t(x):
    return None if x is None else torch.from_numpy(x)


@pytest.mark.parametrize("e,h,batch_first,bias", MHA_CASES)
def test_mha_self_attention_matches_torch(e, h, batch_first, bias):
    m, t = _mha_pair(e, h, batch_first, bias)
    rng = np.random.default_rng(6)
    n, length = 3, 5
    x = rng.standard_normal((n, length, e) if batch_first else (length, n, e)).astype(np.float32)
    kpm = np.zeros((n, length), bool)
    kpm[1, 3:] = True
    am = np.triu(np.ones((length, length), bool), 1)
    for masks in ({}, {"key_padding_mask": kpm}, {"attn_mask": am}, {"key_padding_mask": kpm, "attn_mask": am}):
        tm = {k: _t(v) for k, v in masks.items()}
        with torch.no_grad():
            for need, avg in ((True, True), (True, False), (False, True)):
                y, w = m(x, x, x, need_weights=need, average_attn_weights=avg, **masks)
                ry, rw = t(*(torch.from_numpy(x),) * 3, need_weights=need, average_attn_weights=avg, **tm)
                _close(y, ry, atol=2e-6)
                if need:
                    _close(w, rw, atol=1e-6)
                else:
                    assert w is None and rw is None


def test_mha_cross_attention_float_masks_and_unbatched():
    m, t = _mha_pair(12, 3, False, True)
    rng = np.random.default_rng(7)
    q = rng.standard_normal((4, 2, 12)).astype(np.float32)
    kv = rng.standard_normal((6, 2, 12)).astype(np.float32)
    v = rng.standard_normal((6, 2, 12)).astype(np.float32)
    am = rng.standard_normal((2 * 3, 4, 6)).astype(np.float32)
    with torch.no_grad():
        y, w = m(q, kv, v, attn_mask=am)
        ry, rw = t(_t(q), _t(kv), _t(v), attn_mask=_t(am))
    _close(y, ry, atol=2e-6)
    _close(w, rw)
    with torch.no_grad():
        y, w = m(q[:, 0], kv[:, 0], v[:, 0])
        ry, rw = t(_t(q[:, 0]), _t(kv[:, 0]), _t(v[:, 0]))
    _close(y, ry, atol=2e-6)
    _close(w, rw)


ENC_CASES = [("relu", False, False), ("gelu", True, False), ("gelu", False, True), ("relu", True, True)]


@pytest.mark.parametrize("activation,norm_first,batch_first", ENC_CASES)
def test_encoder_layer_matches_torch(activation, norm_first, batch_first):
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoderLayer(
        32, 4, 64, activation=activation, norm_first=norm_first, batch_first=batch_first
    ).eval()
    with torch.no_grad():
        for p in (t.norm1.weight, t.norm2.weight):
            p.normal_(1, 0.2)
        for p in (t.norm1.bias, t.norm2.bias, t.self_attn.in_proj_bias):
            p.normal_(0, 0.2)
    m = nn.TransformerEncoderLayer(32, 4, 64, activation=activation, norm_first=norm_first, batch_first=batch_first)
    _load(m, t)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 7, 32) if batch_first else (7, 2, 32)).astype(np.float32)
    kpm = np.zeros((2, 7), bool)
    kpm[0, 5:] = True
    with torch.no_grad():
        _close(m(x), t(_t(x)), atol=1e-5)
        _close(m(x, src_key_padding_mask=kpm), t(_t(x), src_key_padding_mask=_t(kpm)), atol=1e-5)


def test_new_modules_round_trip_save_load(tmp_path):
    rng = np.random.default_rng(9)
    mods = [
        nn.Embedding(10, 4, padding_idx=0),
        nn.EmbeddingBag(10, 4, mode="max"),
        nn.LayerNorm((2, 4)),
        nn.Softmax(-1),
        nn.MultiheadAttention(8, 2),
        nn.TransformerEncoderLayer(8, 2, 16, activation="gelu"),
    ]
    inputs = [
        np.array([1, 0, 9]),
        np.array([[1, 2], [3, 3]]),
        rng.standard_normal((3, 2, 4)).astype(np.float32),
        rng.standard_normal((3, 5)).astype(np.float32),
        None,
        rng.standard_normal((5, 2, 8)).astype(np.float32),
    ]
    for i, (m, x) in enumerate(zip(mods, inputs)):
        path = tmp_path / f"m{i}.npq"
        npquant.save(m, path)
        back = npquant.load(path)
        assert type(back) is type(m)
        if x is None:
            x = rng.standard_normal((4, 1, 8)).astype(np.float32)
            np.testing.assert_array_equal(back(x, x, x)[0], m(x, x, x)[0])
        else:
            np.testing.assert_array_equal(back(x), m(x))


# ---------------------------------------------------------------- bad input
def test_bad_indices_and_offsets():
    e, b = nn.Embedding(5, 3), nn.EmbeddingBag(5, 3)
    with pytest.raises(IndexError, match="out of range"):
        e(np.array([0, 5]))
    with pytest.raises(IndexError, match="out of range"):
        b(np.array([-1, 2]), np.array([0]))
    with pytest.raises(TypeError, match="integer indices"):
        e(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer offsets"):
        b(np.array([0, 1]), np.array([0.0]))
    with pytest.raises(ValueError, match="start at 0"):
        b(np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="must not decrease"):
        b(np.array([0, 1, 2]), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="past the end"):
        b(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="needs offsets"):
        b(np.array([0, 1]))
    with pytest.raises(ValueError, match="per_sample_weights are only"):
        b(np.array([[0, 1]]), per_sample_weights=np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="last offset"):
        nn.EmbeddingBag(5, 3, include_last_offset=True)(np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        e(torch.tensor([1]))


def test_bad_attention_input():
    m = nn.MultiheadAttention(8, 2)
    x = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        m(x, x, x, key_padding_mask=np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        m(x, x, x, attn_mask=np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="embed_dim"):
        m(np.zeros((4, 2, 6), np.float32), x, x)
    with pytest.raises(TypeError, match="bool or float"):
        m(x, x, x, attn_mask=np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="LayerNorm"):
        nn.LayerNorm(8)(np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        m(np.full((4, 2, 8), np.nan, np.float32), x, x)
    with pytest.raises(ValueError, match="empty"):
        m(np.zeros((0, 2, 8), np.float32), x, x)
