"""Upsample / interpolate (nearest, bilinear) and ChannelShuffle on float arrays and
QTensors, against torch: float within 1e-5; quantized codes identical to torch's
quantized kernels (bilinear: torch's NCHW-contiguous kernel; its channels_last kernel
rounds differently from its own NCHW one, so there is no single torch answer there)."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
from npquant import nn


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _cases(rng, n=30):
    for t in range(n):
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))  # torch's quantized nearest misreads 1x1 inputs
        if t % 2:
            kw = dict(size=(int(rng.integers(1, 20)), int(rng.integers(1, 20))))
        else:
            kw = dict(scale_factor=float(rng.choice([1.5, 2.0, 2.5, 3.0, 1.7])))
        yield rng.standard_normal((2, 5, h, w)).astype(np.float32), kw


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_interpolate_matches_torch(torch, rng, mode, align_corners):
    F = torch.nn.functional
    for x, kw in _cases(rng):
        tx = torch.from_numpy(x)
        want = F.interpolate(tx, mode=mode, align_corners=align_corners, **kw).numpy()
        got = nn.interpolate(x, mode=mode, align_corners=align_corners, **kw)
        assert got.shape == want.shape, kw
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(kw))
        tq = torch.quantize_per_tensor(tx, 0.02, 100, torch.quint8)
        qx = npquant.QTensor(tq.int_repr().numpy(), 0.02, 100, npquant.quint8)
        qt = F.interpolate(tq, mode=mode, align_corners=align_corners, **kw)
        qn = nn.interpolate(qx, mode=mode, align_corners=align_corners, **kw)
        assert qn.q_scale() == np.float32(qt.q_scale()) and qn.q_zero_point() == qt.q_zero_point()
        np.testing.assert_array_equal(qn.int_repr(), qt.int_repr().numpy(), err_msg=str(kw))


def test_upsample_modules_and_nhwc_input(torch, rng):
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    for ours, theirs in (
        (nn.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
        (nn.UpsamplingNearest2d(size=(7, 9)), torch.nn.UpsamplingNearest2d(size=(7, 9))),
        (nn.UpsamplingBilinear2d(scale_factor=2), torch.nn.UpsamplingBilinear2d(scale_factor=2)),
    ):
        np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    # a QTensor stored NHWC (a quantized conv's output) gives the same codes as NCHW
    q = npquant.quantize_per_tensor(x, 0.05, 128, npquant.quint8)
    conv = npquant.nn.quantized.Conv2d(4, 4, 1)
    conv.set_weight_bias(
        npquant.quantize_per_channel(
            np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1),
            np.full(4, 1 / 127, np.float32),
            np.zeros(4, np.int64),
            0,
            npquant.qint8,
        ),
        None,
    )
    conv.scale, conv.zero_point = 0.05, 128
    y = conv(q)
    flat = npquant.QTensor(np.ascontiguousarray(y.int_repr()), 0.05, 128, npquant.quint8)
    for m in (nn.Upsample(scale_factor=2), nn.Upsample(size=(8, 11), mode="bilinear")):
        np.testing.assert_array_equal(m(y).int_repr(), m(flat).int_repr())


def test_channel_shuffle_module(torch, rng):
    x = rng.standard_normal((2, 12, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(nn.ChannelShuffle(3)(x), torch.nn.ChannelShuffle(3)(torch.from_numpy(x)).numpy())
    tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.03, 90, torch.quint8)
    q = npquant.QTensor(tq.int_repr().numpy(), 0.03, 90, npquant.quint8)
    np.testing.assert_array_equal(nn.ChannelShuffle(4)(q).int_repr(), torch.nn.ChannelShuffle(4)(tq).int_repr().numpy())
    with pytest.raises(ValueError, match="divisible"):
        nn.ChannelShuffle(5)(x)
    with pytest.raises(ValueError, match="positive"):
        nn.ChannelShuffle(0)


def test_interpolate_bad_input():
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="exactly one"):
        nn.interpolate(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="mode"):
        nn.interpolate(x, size=4, mode="bicubic")
    with pytest.raises(ValueError, match="4-D"):
        nn.interpolate(np.zeros((2, 3, 3), np.float32), size=4)
    with pytest.raises(ValueError, match="align_corners"):
        nn.interpolate(x, size=4, align_corners=True)
    with pytest.raises(ValueError, match="positive"):
        nn.interpolate(x, scale_factor=0.1)
    with pytest.raises(TypeError):
        nn.interpolate(np.zeros((1, 2, 3, 3), np.int32), size=4)
