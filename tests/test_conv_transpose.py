"""ConvTranspose2d: float against torch.nn.ConvTranspose2d; quantized (per-tensor and
per-output-channel int8 weights) against a naive NumPy loop with npquant's
requantization, and against torch's quantized ConvTranspose2d."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.nn import quantized as nnq

GEOMETRIES = [  # cin, cout, kernel, stride, padding, output_padding, groups, dilation
    (4, 6, 3, 2, 1, 1, 1, 1),
    (4, 6, 3, 1, 0, 0, 2, 1),
    (6, 4, (2, 3), (2, 1), (0, 1), 0, 2, 2),
    (3, 5, 4, 3, 1, 2, 1, 1),
    (2, 3, 1, 1, 0, 0, 1, 1),
]


def _naive(xq, xz, wq, stride, padding, output_padding, dilation, groups):
    """Exact accumulator, one input tap at a time (the definition)."""
    n, c, h, w = xq.shape
    _, og, kh, kw = wq.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    acc = np.zeros((n, og * groups, oh, ow), np.int64)
    cg = c // groups
    for ci in range(c):
        g = ci // cg
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for b in range(kw):
                        y, x = i * sh - ph + a * dh, j * sw - pw + b * dw
                        if 0 <= y < oh and 0 <= x < ow:
                            acc[:, g * og : (g + 1) * og, y, x] += (xq[:, ci, i, j].astype(np.int64) - xz)[
                                :, None
                            ] * wq[ci, :, a, b].astype(np.int64)[None, :]
    return acc


def _pairs(g):
    as2 = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return as2(g[2]), as2(g[3]), as2(g[4]), as2(g[5]), as2(g[7])


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_float_matches_torch(geo, rng):
    torch = pytest.importorskip("torch")
    cin, cout, k, s, p, op, g, d = geo
    t = torch.nn.ConvTranspose2d(cin, cout, k, s, p, op, g, True, d)
    m = nn.ConvTranspose2d(cin, cout, k, s, p, op, g, True, d)
    m.load_state_dict({a: b.detach().numpy() for a, b in t.state_dict().items()})
    x = rng.standard_normal((2, cin, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(m(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "geo, per_channel", [(g, pc) for g in GEOMETRIES for pc in (False, True) if g[6] == 1 or not pc]
)  # per channel needs groups == 1
def test_quantized_is_exact_accumulation_then_requantization(geo, per_channel, rng):
    cin, cout, k, s, p, op, g, d = geo
    (kh, kw), stride, padding, opad, dil = _pairs(geo)
    q = nnq.ConvTranspose2d(cin, cout, k, s, p, op, g, True, d)
    wq = rng.integers(-128, 128, (cin, cout // g, kh, kw)).astype(np.int8)
    if per_channel:
        ws = rng.uniform(0.002, 0.02, cout).astype(np.float32)
        w = npquant.QTensor(wq, ws, np.zeros(cout, np.int64), npquant.qint8, axis=1)
    else:
        ws = np.full(cout, 0.01, np.float32)
        w = npquant.QTensor(wq, 0.01, 0, npquant.qint8)
    bias = rng.standard_normal(cout).astype(np.float32)
    q.set_weight_bias(w, bias)
    q.scale, q.zero_point = 0.3, 110
    xq = rng.integers(0, 256, (2, cin, 5, 6)).astype(np.uint8)
    y = q(npquant.QTensor(xq, 0.04, 125, npquant.quint8))
    acc = _naive(xq, 125, wq, stride, padding, opad, dil, g)
    f32 = np.float32
    sc = (f32(0.04) * ws).astype(f32)
    v = (
        (acc.astype(f32) + (bias / sc).astype(f32)[None, :, None, None]).astype(f32)
        * (sc / f32(0.3)).astype(f32)[None, :, None, None]
    ).astype(f32)
    np.testing.assert_array_equal(y.int_repr(), np.clip(np.rint(v) + 110, 0, 255).astype(np.uint8))
    # state dict round trip with torch's keys
    sd = q.state_dict()
    assert set(sd) == {"weight", "bias", "scale", "zero_point"}
    q2 = nnq.ConvTranspose2d(cin, cout, k, s, p, op, g, True, d)
    q2.load_state_dict(sd)
    np.testing.assert_array_equal(q2(npquant.QTensor(xq, 0.04, 125, npquant.quint8)).int_repr(), y.int_repr())


def test_quantized_matches_torch(rng):
    """torch's quantized ConvTranspose2d on the same int8 weights and qparams: equal codes
    but for requantization ties (one step)."""
    torch = pytest.importorskip("torch")
    cin, cout = 8, 6
    wq = rng.integers(-127, 128, (cin, cout, 3, 3)).astype(np.int8)
    bias = rng.standard_normal(cout).astype(np.float32)
    xq = rng.integers(0, 256, (2, cin, 6, 5)).astype(np.uint8)
    tw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(wq), 0.01, 0)
    tq = torch.ao.nn.quantized.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
    tq.set_weight_bias(tw, torch.from_numpy(bias))
    tq.scale, tq.zero_point = 0.5, 100
    tx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq), 0.05, 120)
    want = tq(tx).int_repr().numpy().astype(int)
    q = nnq.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
    q.set_weight_bias(npquant.QTensor(wq, 0.01, 0, npquant.qint8), bias)
    q.scale, q.zero_point = 0.5, 100
    got = q(npquant.QTensor(xq, 0.05, 120, npquant.quint8)).int_repr().astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99


def test_workflow_and_errors(rng):
    m = nn.Sequential(nn.QuantStub(), nn.ConvTranspose2d(4, 3, 3, stride=2, rng=rng), nn.DeQuantStub()).eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    for _ in range(8):  # 2 batches gave 22.6-39.5 dB over 20 seeds; 8 give 25.3-38.6
        p(rng.standard_normal((2, 4, 5, 5)).astype(np.float32))
    c = npquant.convert(p)
    assert isinstance(c[1], nnq.ConvTranspose2d) and c[1].weight().q_per_channel_axis() == 1
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    y, yq = m(x), c(x)
    assert 10 * np.log10(np.sum(y**2) / np.sum((y - yq) ** 2)) > 25
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="axis 1"):
        nnq.ConvTranspose2d(4, 2, 3, groups=2).set_weight_bias(
            npquant.QTensor(
                np.zeros((4, 1, 3, 3), np.int8), np.ones(4, np.float32), np.zeros(4, np.int64), npquant.qint8, axis=0
            ),
            None,
        )
    with pytest.raises(ValueError, match="expects"):
        c[1](npquant.quantize_per_tensor(np.zeros((1, 3, 4, 4), np.float32), 0.1, 0, npquant.quint8))
