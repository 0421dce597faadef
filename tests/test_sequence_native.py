"""The native float32 kernels of sequence models (ukernels/f32-vsoftmax-*, f32-layernorm-*,
f32-vlstm-*, f32-vgru-*; ``_C.softmax_f32``, ``layer_norm_f32``, ``lstm_cell_f32``,
``gru_cell_f32``): the same bits on every ISA (each forced through NPQUANT_ISA against the
scalar kernels), within float32 rounding of torch's fp32 ops, special values as torch,
and clear errors for bad input."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

import npquant
from npquant import _C

from conftest import run_python

FAMILIES = ("softmax", "layernorm", "lstm", "gru", "fgemm")
KERNEL_ISAS = ("scalar", "avx2", "avx512vnni", "neon")  # the ISAs with registered kernels of these families
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-40, 1e30, -1e30, 88.0, -90.0], np.float32)


def _values(rng: np.random.Generator, shape: tuple[int, ...], specials: bool = False) -> np.ndarray:
    """Normal values at several scales, with a sprinkle of special values if asked."""
    x = rng.standard_normal(shape).astype(np.float32) * rng.choice(np.float32([0.1, 3, 30]), shape)
    if specials:
        where = rng.random(shape) < 0.05
        x[where] = rng.choice(SPECIAL, int(where.sum()))
    return x


class _Hash:
    """sha256 of float32 arrays with every NaN as one pattern: the kernels promise the
    same bits for every number and NaN in the same places, not the NaNs' sign bit (x86
    makes -NaN for inf - inf, and which NaN operand an add passes on depends on the
    compiler's operand order)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def update(self, a: np.ndarray) -> None:
        self.h.update(np.where(np.isnan(a), np.float32(np.nan), a).astype(np.float32))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def digest() -> str:
    """Hash of every family's outputs on rows of every length 1..70 and some long ones,
    random and special values, with and without the optional operands; run under each
    NPQUANT_ISA."""
    rng = np.random.default_rng(11)
    h = _Hash()
    for n in [*range(1, 71), 127, 128, 129, 256, 768, 1000]:
        for specials in (False, True):
            x = _values(rng, (3, n), specials)
            bias = np.where(rng.random((3, n)) < 0.2, np.float32(-np.inf), rng.standard_normal((3, n)))
            h.update(_C.softmax_f32(x))
            h.update(_C.softmax_f32(x, bias.astype(np.float32)))
            w, b = rng.standard_normal((2, n)).astype(np.float32)
            h.update(_C.layer_norm_f32(x, n, w, b, 1e-5))
            h.update(_C.layer_norm_f32(x + np.float32(1e3), n, None, None, 1e-12))
            gi, gh = _values(rng, (2, 3, 4 * n), specials)
            c = _values(rng, (3, n), specials)
            for out in _C.lstm_cell_f32(gi, gh, c):
                h.update(out)
            h.update(_C.gru_cell_f32(gi[:, : 3 * n].copy(), gh[:, : 3 * n].copy(), c))
    for m, k, n in ((1, 1, 1), (7, 13, 33), (37, 64, 100), (9, 300, 70)):  # the GEMM tiles' edges
        x, w = _values(rng, (m, k)), _values(rng, (n, k))
        h.update(_C.linear_f32(x, w, rng.standard_normal(n).astype(np.float32)))
    qkv = _values(rng, (2, 9, 3 * 24))
    mask = np.where(rng.random((2, 1, 1, 9)) < 0.3, np.float32(-np.inf), np.float32(0))
    for out in _C.attention_f32(qkv[..., :24], qkv[..., 24:48], qkv[..., 48:], 3, np.float32(0.4), mask, True):
        h.update(out)
    return h.hexdigest()


def _digest_under(isa: str) -> str:
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_sequence_native as t; "
        "from npquant import _C; k = _C.cpu_info()['kernels']; "
        f"print(' '.join(k[f]['name'] for f in {FAMILIES!r}), t.digest())"
    )
    r = run_python(code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr[-2000:]
    *names, h = r.stdout.split()
    want = isa if isa in KERNEL_ISAS else None
    for name in names:  # each family runs its kernel for this ISA (others: a lower ISA's)
        assert want is None or name.endswith("__" + want), (isa, names)
    assert len(names) == len(FAMILIES)
    return h


@pytest.fixture(scope="module")
def scalar_digest() -> str:
    return _digest_under("scalar")


@pytest.mark.parametrize("isa", [i for i in npquant.cpu_info()["runnable_isas"] if i != "scalar"])
def test_every_isa_gives_the_scalar_bits(isa: str, scalar_digest: str) -> None:
    assert _digest_under(isa) == scalar_digest


def test_the_digest_sees_a_changed_bit() -> None:
    y = _C.softmax_f32(np.linspace(-3, 3, 64, dtype=np.float32))
    z = y.copy()
    z.view(np.uint32)[30] ^= 1
    hashes = [_Hash(), _Hash()]
    for h, a in zip(hashes, (y, z)):
        h.update(a)
    assert hashes[0].hexdigest() != hashes[1].hexdigest()


# ------------------------------------------------------------------ against torch fp32
def test_softmax_close_to_torch(rng: np.random.Generator) -> None:
    x = _values(rng, (40, 257))
    bias = np.where(rng.random((1, 257)) < 0.3, np.float32(-np.inf), np.float32(0))
    want = torch.softmax(torch.from_numpy(x + bias), -1).numpy()
    got = _C.softmax_f32(x, bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
    assert np.all(got[:, bias[0] == -np.inf] == 0)  # masked positions are exactly 0
    np.testing.assert_allclose(got.sum(-1, dtype=np.float64), 1, rtol=1e-6)


def test_softmax_specials_as_torch() -> None:
    rows = np.array(
        [[1, 2, np.nan, 3], [-np.inf] * 4, [np.inf, 1, 2, 3], [0, -np.inf, 0, -np.inf], [-0.0, 0.0, -0.0, 0.0]],
        np.float32,
    )
    got = _C.softmax_f32(rows)
    want = torch.softmax(torch.from_numpy(rows), -1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # NaN rows as torch
    np.testing.assert_array_equal(got[3:], want[3:])


def test_layer_norm_close_to_torch(rng: np.random.Generator) -> None:
    for n, offset in ((256, 0.0), (31, 0.0), (768, 1e3)):
        x = _values(rng, (17, n)) + np.float32(offset)
        w, b = rng.standard_normal((2, n)).astype(np.float32)
        want = torch.nn.functional.layer_norm(
            torch.from_numpy(x), (n,), torch.from_numpy(w), torch.from_numpy(b), 1e-5
        ).numpy()
        got = _C.layer_norm_f32(x, n, w, b, 1e-5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _torch_lstm(gi: np.ndarray, gh: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, f, g, o = (torch.from_numpy(gi) + torch.from_numpy(gh)).chunk(4, 1)
    c1 = torch.sigmoid(f) * torch.from_numpy(c) + torch.sigmoid(i) * torch.tanh(g)
    return (torch.sigmoid(o) * torch.tanh(c1)).numpy(), c1.numpy()


def test_lstm_cell_close_to_torch(rng: np.random.Generator) -> None:
    gi, gh = (rng.standard_normal((2, 5, 4 * 70)) * 4).astype(np.float32)
    c = rng.standard_normal((5, 70)).astype(np.float32)
    h1, c1 = _C.lstm_cell_f32(gi, gh, c)
    th, tc = _torch_lstm(gi, gh, c)
    np.testing.assert_allclose(h1, th, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1, tc, rtol=1e-5, atol=1e-6)


def test_lstm_cell_gate_functions_across_their_range() -> None:
    """With gh = 0 and c = 0 every gate sees the same x: c' = sigmoid(x) tanh(x) and
    h' = sigmoid(x) tanh(c'), over a dense grid of [-20, 20] against float64."""
    x = np.linspace(-20, 20, 200_001, dtype=np.float32)
    gi = np.tile(x, 4)[None]
    h1, c1 = _C.lstm_cell_f32(gi, np.zeros_like(gi), np.zeros((1, x.size), np.float32))
    t = torch.from_numpy(x).double()
    want_c = torch.sigmoid(t) * torch.tanh(t)
    want_h = torch.sigmoid(t) * torch.tanh(torch.from_numpy(c1[0]).double())
    np.testing.assert_allclose(c1[0], want_c.numpy(), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(h1[0], want_h.numpy(), rtol=1e-6, atol=1e-30)


def test_gru_cell_close_to_torch(rng: np.random.Generator) -> None:
    gi, gh = (rng.standard_normal((2, 4, 3 * 33)) * 4).astype(np.float32)
    h = rng.standard_normal((4, 33)).astype(np.float32)
    ti, th = torch.from_numpy(gi).chunk(3, 1), torch.from_numpy(gh).chunk(3, 1)
    r, z = torch.sigmoid(ti[0] + th[0]), torch.sigmoid(ti[1] + th[1])
    m = torch.tanh(ti[2] + r * th[2])
    want = ((torch.from_numpy(h) - m) * z + m).numpy()
    np.testing.assert_allclose(_C.gru_cell_f32(gi, gh, h), want, rtol=1e-5, atol=1e-6)


def test_cells_special_values() -> None:
    n = SPECIAL.size
    gi = np.tile(SPECIAL, 4)[None]
    zeros = np.zeros_like(gi)
    h1, c1 = _C.lstm_cell_f32(gi, zeros, np.zeros((1, n), np.float32))
    th, tc = _torch_lstm(gi, zeros, np.zeros((1, n), np.float32))
    np.testing.assert_array_equal(np.isnan(c1), np.isnan(tc))
    np.testing.assert_array_equal(np.isnan(h1), np.isnan(th))
    ok = ~np.isnan(tc)
    np.testing.assert_allclose(c1[ok], tc[ok], rtol=1e-6, atol=1e-30)


def test_in_place_outputs(rng: np.random.Generator) -> None:
    x = _values(rng, (6, 50))
    y = x.copy()
    assert _C.softmax_f32(y, None, y) is not None
    np.testing.assert_array_equal(y, _C.softmax_f32(x))
    y = x.copy()
    _C.layer_norm_f32(y, 50, None, None, 1e-5, y)
    np.testing.assert_array_equal(y, _C.layer_norm_f32(x, 50))


def test_softmax_bias_broadcasts(rng: np.random.Generator) -> None:
    x = _values(rng, (2, 3, 4, 9))
    for shape in ((2, 1, 1, 9), (1, 1, 4, 9), (2, 3, 4, 9), (1, 3, 1, 9)):
        b = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(_C.softmax_f32(x, b), _C.softmax_f32(np.ascontiguousarray(x + b)))


def test_linear_f32_close_to_float64_and_torch(rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((2, 70, 300)).astype(np.float32)
    b = rng.standard_normal(70).astype(np.float32)
    y = _C.linear_f32(x, w, b)
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + b
    bound = 300 * 2.0**-24 * (np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64) + np.abs(b))
    assert np.all(np.abs(y - exact) <= bound)  # an fma chain's error bound
    want = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    assert np.all(np.abs(y - want) <= 2 * bound)  # torch's sum (another order) within the same bound
    np.testing.assert_array_equal(_C.linear_f32(x, w), _C.linear_f32(x, w, np.zeros(70, np.float32)))
    assert _C.linear_f32(np.zeros((0, 300), np.float32), w).shape == (0, 70)


def test_attention_close_to_torch(rng: np.random.Generator) -> None:
    n, heads, d, tgt = 3, 4, 16, 11
    e = heads * d
    qkv = rng.standard_normal((n, tgt, 3 * e)).astype(np.float32)
    q, k, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]  # read in place: strided thirds
    pad = np.zeros((n, 1, 1, tgt), np.float32)
    pad[0, ..., 7:] = -np.inf  # padded keys of the first sentence
    out, w = _C.attention_f32(q, k, v, heads, np.float32(1 / np.sqrt(d)), pad, True)
    th = [torch.from_numpy(np.ascontiguousarray(a)).view(n, tgt, heads, d).transpose(1, 2) for a in (q, k, v)]
    want = torch.nn.functional.scaled_dot_product_attention(*th, attn_mask=torch.from_numpy(pad))
    np.testing.assert_allclose(out, want.transpose(1, 2).reshape(n, tgt, e).numpy(), rtol=1e-5, atol=1e-5)
    assert w.shape == (n, heads, tgt, tgt) and np.all(w[0, ..., 7:] == 0)
    np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-6)
    contiguous = [np.ascontiguousarray(a) for a in (q, k, v)]
    np.testing.assert_array_equal(_C.attention_f32(*contiguous, heads, np.float32(1 / np.sqrt(d)), pad)[0], out)


# ------------------------------------------------------------------ bad input
def test_bad_input() -> None:
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(TypeError, match="float32"):
        _C.softmax_f32(x.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.softmax_f32(np.zeros((4, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="broadcast"):
        _C.softmax_f32(x, np.zeros((4, 1), np.float32))  # the last dimension must be equal
    with pytest.raises(ValueError, match="broadcast"):
        _C.softmax_f32(x, np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        _C.softmax_f32(x, None, np.zeros((4, 7), np.float32))
    with pytest.raises(ValueError, match="rows of 3"):
        _C.layer_norm_f32(x, 3)
    with pytest.raises(ValueError, match="eps"):
        _C.layer_norm_f32(x, 8, None, None, -1.0)
    with pytest.raises(ValueError, match="8 elements"):
        _C.layer_norm_f32(x, 8, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="normalized_size"):
        _C.layer_norm_f32(x, 0)
    with pytest.raises(ValueError, match="projections must have shape"):
        _C.lstm_cell_f32(np.zeros((4, 16), np.float32), np.zeros((4, 12), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="projections must have shape"):
        _C.gru_cell_f32(np.zeros((3, 12), np.float32), np.zeros((3, 12), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        _C.lstm_cell_f32(np.zeros(16, np.float32), np.zeros(16, np.float32), np.zeros(4, np.float32))
    assert _C.softmax_f32(np.zeros((0, 5), np.float32)).shape == (0, 5)
    with pytest.raises(ValueError, match="features"):
        _C.linear_f32(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="4 elements"):
        _C.linear_f32(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros(3, np.float32))
    q = np.zeros((2, 5, 8), np.float32)
    with pytest.raises(ValueError, match="contiguous last axis"):
        _C.attention_f32(np.zeros((2, 5, 16), np.float32)[..., ::2], q, q, 2, 1.0)
    with pytest.raises(TypeError, match="float32"):
        _C.attention_f32(q.astype(np.float64), q, q, 2, 1.0)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        _C.attention_f32(q, q, q, 3, 1.0)
    with pytest.raises(ValueError, match="same S"):
        _C.attention_f32(q, q, np.zeros((2, 4, 8), np.float32), 2, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        _C.attention_f32(q, q, q, 2, 1.0, np.zeros((2, 1, 1, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        _C.attention_f32(q, q, q, 2, float("inf"))
    with pytest.raises(ValueError, match="3-D"):
        _C.attention_f32(q[0], q, q, 2, 1.0)


# ------------------------------------------------------------------ the modules use them
def test_modules_use_the_kernels(rng: np.random.Generator) -> None:
    x = _values(rng, (3, 5, 12))
    np.testing.assert_array_equal(npquant.nn.Softmax(dim=-1)(x), _C.softmax_f32(x))
    moved = np.moveaxis(_C.softmax_f32(np.ascontiguousarray(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_array_equal(npquant.nn.Softmax(dim=1)(x), moved)
    ln = npquant.nn.LayerNorm((5, 12), eps=1e-6)
    ln.weight, ln.bias = rng.standard_normal((2, 5, 12)).astype(np.float32)
    want = _C.layer_norm_f32(x, 60, ln.weight, ln.bias, 1e-6)
    np.testing.assert_array_equal(ln(x), want)
    np.testing.assert_array_equal(ln(np.asfortranarray(x)), want)  # any layout: copied first
    np.testing.assert_array_equal(ln(x.astype(np.float64)), want)


def test_linear_and_attention_modules_use_the_gemm(rng: np.random.Generator) -> None:
    lin = npquant.nn.Linear(12, 7, rng=rng)
    x = _values(rng, (2, 3, 12))
    np.testing.assert_array_equal(lin(x), _C.linear_f32(x.reshape(6, 12), lin.weight, lin.bias).reshape(2, 3, 7))
    mha = npquant.nn.MultiheadAttention(16, 4, batch_first=True, rng=rng)
    mha.in_proj_bias = rng.standard_normal(48).astype(np.float32)
    q = _values(rng, (2, 5, 16))
    mask = np.array([[False] * 5, [False, False, False, True, True]])
    out, w = mha(q, q, q, key_padding_mask=mask, average_attn_weights=False)
    qkv = _C.linear_f32(q.reshape(10, 16), mha.in_proj_weight, mha.in_proj_bias).reshape(2, 5, 48)
    bias = np.where(mask, np.float32(-np.inf), np.float32(0)).reshape(2, 1, 1, 5)
    ctx, probs = _C.attention_f32(qkv[..., :16], qkv[..., 16:32], qkv[..., 32:], 4, np.float32(0.5), bias, True)
    want = mha.out_proj(ctx.reshape(10, 16)).reshape(2, 5, 16)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(w, probs)


def test_attention_skips_masked_keys_without_changing_a_bit(rng: np.random.Generator) -> None:
    """Keys masked in every query row get probability exactly 0: attention_f32 skips
    them only when that changes nothing. Scaling the masked keys past the overflow bound
    (1e30) forces the full computation: the same bits. Infinite masked values cannot be
    skipped (0 * inf is NaN in the full product): NaN, as computed in full."""
    n, heads, d, s = 2, 2, 8, 13
    q, k, v = _values(rng, (3, n, s, heads * d))
    mask = np.zeros((n, 1, 1, s), np.float32)
    mask[:, ..., 9:] = -np.inf
    skipped = _C.attention_f32(q, k, v, heads, np.float32(0.35), mask, True)
    k_big = k.copy()
    k_big[:, 9:] *= np.float32(1e30)
    full = _C.attention_f32(q, k_big, v, heads, np.float32(0.35), mask, True)
    for a, b in zip(skipped, full):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    assert np.all(skipped[1][..., 9:] == 0) and np.all(np.isfinite(skipped[0]))
    v_inf = v.copy()
    v_inf[:, 10] = np.inf
    assert np.all(np.isnan(_C.attention_f32(q, k, v_inf, heads, np.float32(0.35), mask)[0]))
