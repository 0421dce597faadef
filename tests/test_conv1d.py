"""Conv1d: float against torch.nn.Conv1d, fusion conv1d-bn(-relu), and the quantized
Conv1d / ConvReLU1d (the Conv2d kernels on a height-1 image) against npquant's
contract restated in NumPy and against torch's quantized Conv1d."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.nn import quantized as nnq


def _contract(xq, xs, xz, wq, ws, bias, ys, yz, stride, pad, dil, groups, relu):
    """npquant's static requantization (docs/quantization.md) of an exact int64 conv1d."""
    f32 = np.float32
    x = np.pad(xq.astype(np.int64) - xz, ((0, 0), (0, 0), (pad, pad)))
    n, c, length = x.shape
    o, cg, k = wq.shape
    lo = (length - dil * (k - 1) - 1) // stride + 1
    og = o // groups
    acc = np.zeros((n, o, lo), np.int64)
    for g in range(groups):
        for j in range(k):
            xs_ = x[:, g * cg : (g + 1) * cg, j * dil : j * dil + stride * (lo - 1) + 1 : stride]
            acc[:, g * og : (g + 1) * og] += np.einsum(
                "ncl,oc->nol", xs_, wq[g * og : (g + 1) * og, :, j].astype(np.int64)
            )
    s = (f32(xs) * ws.astype(f32)).astype(f32)
    m = (s / f32(ys)).astype(f32)
    a = acc.astype(f32)
    if bias is not None:
        a = (a + (bias.astype(f32) / s).astype(f32)[None, :, None]).astype(f32)
    v = (a * m[None, :, None]).astype(f32)
    return np.clip(np.rint(v) + yz, yz if relu else 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "stride, pad, dil, groups, bias", [(1, 0, 1, 1, True), (2, 1, 1, 1, False), (1, 2, 2, 2, True), (3, 1, 1, 6, True)]
)
@pytest.mark.parametrize("relu", [False, True])
def test_quantized_conv1d_is_the_contract(rng, stride, pad, dil, groups, bias, relu):
    cin, cout, k = 6, 12, 3
    wq = rng.integers(-128, 128, (cout, cin // groups, k)).astype(np.int8)
    ws = rng.uniform(0.001, 0.02, cout).astype(np.float32)
    w = npquant.QTensor(wq, ws, np.zeros(cout, np.int64), npquant.qint8, axis=0)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    cls = nnq.ConvReLU1d if relu else nnq.Conv1d
    q = cls(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
    q.set_weight_bias(w, b)
    q.scale, q.zero_point = 0.05, 100
    xq = rng.integers(0, 256, (3, cin, 29)).astype(np.uint8)
    x = npquant.QTensor(xq, 0.03, 120, npquant.quint8)
    y = q(x)
    assert y.shape == (3, cout, (29 + 2 * pad - dil * (k - 1) - 1) // stride + 1)
    want = _contract(xq, 0.03, 120, wq, ws, b, 0.05, 100, stride, pad, dil, groups, relu)
    np.testing.assert_array_equal(y.int_repr(), want)
    # the state dict has torch's keys and shapes and round-trips
    sd = q.state_dict()
    assert set(sd) == {"weight", "bias", "scale", "zero_point"} and tuple(sd["weight"].shape) == (
        cout,
        cin // groups,
        k,
    )
    q2 = cls(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
    q2.load_state_dict(sd)
    np.testing.assert_array_equal(q2(x).int_repr(), want)


def test_float_conv1d_and_fusion_match_torch(rng):
    torch = pytest.importorskip("torch")
    tconv, tbn = torch.nn.Conv1d(4, 8, 5, stride=2, padding=2, groups=2), torch.nn.BatchNorm1d(8)
    with torch.no_grad():
        tbn.running_mean.uniform_(-0.3, 0.3)
        tbn.running_var.uniform_(0.5, 2.0)
    tconv.eval(), tbn.eval()
    conv, bn = nn.Conv1d(4, 8, 5, stride=2, padding=2, groups=2), nn.BatchNorm1d(8)
    conv.load_state_dict({k: v.detach().numpy() for k, v in tconv.state_dict().items()})
    bn.load_state_dict({k: v.detach().numpy() for k, v in tbn.state_dict().items()})
    x = rng.standard_normal((3, 4, 40)).astype(np.float32)
    with torch.no_grad():
        want = torch.relu(tbn(tconv(torch.from_numpy(x)))).numpy()
    model = nn.Sequential(conv, bn, nn.ReLU()).eval()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)
    fused = npquant.fuse_modules(model, [["0", "1", "2"]])
    assert isinstance(fused[0], nn.intrinsic.ConvReLU1d) and isinstance(fused[1], nn.Identity)
    np.testing.assert_allclose(fused(x), want, rtol=1e-5, atol=1e-5)
    tfused = torch.nn.utils.fusion.fuse_conv_bn_eval(tconv, tbn)
    np.testing.assert_array_equal(fused[0][0].weight, tfused.weight.detach().numpy())
    np.testing.assert_array_equal(fused[0][0].bias, tfused.bias.detach().numpy())


def test_workflow_conv1d_against_torch(rng):
    """prepare / calibrate / convert of QuantStub-Conv1d-BN-ReLU-DeQuantStub: npquant's
    codes equal torch's quantized Conv1d except at requantization ties (at most one
    step; torch's oneDNN adds the bias after scaling, docs/models.md)."""
    torch = pytest.importorskip("torch")
    tq = torch.ao.quantization

    def make(mod, stubs):
        return mod.Sequential(
            stubs.QuantStub(), mod.Conv1d(8, 16, 3, padding=1), mod.BatchNorm1d(16), mod.ReLU(), stubs.DeQuantStub()
        )

    tm = make(torch.nn, tq).eval()
    nm = make(nn, npquant.quantization).eval()
    nm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    tm = tq.fuse_modules(tm, [["1", "2", "3"]])
    nm = npquant.fuse_modules(nm, [["1", "2", "3"]])
    tm.qconfig = tq.QConfig(
        activation=tq.MinMaxObserver.with_args(reduce_range=False), weight=tq.default_per_channel_weight_observer
    )
    nm.qconfig = npquant.QConfig(
        activation=npquant.observers.MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer
    )
    tp, npp = tq.prepare(tm), npquant.prepare(nm)
    for _ in range(3):
        c = rng.standard_normal((4, 8, 50)).astype(np.float32)
        tp(torch.from_numpy(c))
        npp(c)
    tc, nc = tq.convert(tp), npquant.convert(npp)
    assert isinstance(nc[1], nnq.ConvReLU1d)
    x = rng.standard_normal((4, 8, 50)).astype(np.float32)
    qt = tc[:4](torch.from_numpy(x)).int_repr().numpy().astype(int)
    qn = nc[:4](x).int_repr().astype(int)
    assert np.abs(qt - qn).max() <= 1
    assert np.mean(qt == qn) > 0.999
