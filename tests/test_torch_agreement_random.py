"""Agreement with PyTorch 2.13 (engine x86) on random seeds, beyond the fixed-qparams
checks of test_nn.py / test_torch_agreement_linear.py / test_workflow.py:
random qparams, shapes and storage orders for the quantized non-GEMM ops,
per-tensor weights and N-D inputs for Linear, and whole converted models compared
layer by layer (qparams) and code by code. Skips without torch."""

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq

import npref
import peers

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

SEEDS = range(6)


@pytest.fixture(autouse=True)
def x86_engine():
    torch.backends.quantized.engine = "x86"


def qpair(x, scale, zp, nhwc):
    """The same quint8 tensor in torch and npquant, in the given storage order."""
    t = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8)
    q = npquant.quantize_per_tensor(x, scale, zp, npquant.quint8)
    if nhwc:
        t = t.contiguous(memory_format=torch.channels_last)
        q = npquant.QTensor.from_nhwc(np.ascontiguousarray(q.int_repr().transpose(0, 2, 3, 1)), scale, zp)
    return t, q


def codes_diff(t, q):
    assert np.float32(t.q_scale()) == np.float32(q.q_scale()), (t.q_scale(), q.q_scale())
    assert t.q_zero_point() == q.q_zero_point()
    return np.abs(t.int_repr().numpy().astype(np.int64) - q.int_repr().astype(np.int64))


def random_qparams(rng):
    return float(np.float32(np.exp(rng.uniform(-6, 0)))), int(rng.integers(0, 256))


def random_pool(rng):
    k = int(rng.integers(1, 5))
    s = int(rng.integers(1, 4))
    p = int(rng.integers(0, k // 2 + 1))
    return dict(kernel_size=k, stride=s, padding=p, ceil_mode=bool(rng.integers(2)))


# Channels per vector step of PyTorch's quantized kernels on this CPU (None: no vector code).
TORCH_VECTOR_WIDTH = {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability())


@pytest.mark.parametrize("seed", SEEDS)
def test_quantized_unary_ops_random_qparams(seed):
    """ReLU, ReLU6, MaxPool, AvgPool, AdaptiveAvgPool, Flatten with random scale/zero point,
    shapes, pooling geometry and storage order: PyTorch's codes exactly. (PyTorch's
    channels-last average pools round their last C % 16 channels in a scalar loop when it
    runs its AVX-512 code, C % 8 with AVX2, all of them without vector code; npquant
    reproduces the AVX-512 split on every CPU, so elsewhere the channels between differ by
    one code at most.)"""
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(8):
        c, h, w = int(rng.integers(1, 40)), int(rng.integers(4, 14)), int(rng.integers(4, 14))
        scale, zp = random_qparams(rng)
        x = (rng.standard_normal((2, c, h, w)) * scale * rng.uniform(5, 150)).astype(np.float32)
        nhwc = bool(rng.integers(2))
        t, q = qpair(x, scale, zp, nhwc)
        pool = random_pool(rng)
        dil = int(rng.integers(1, 3))
        cip = bool(rng.integers(2))
        osz = (int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1)))
        cases = [
            ("relu", nnq.ReLU(), torch.relu),
            ("relu6", nnq.ReLU6(), torch.ops.quantized.relu6),
            ("flatten", nnq.Flatten(), lambda v: torch.flatten(v, 1)),
            ("maxpool", nnq.MaxPool2d(**pool, dilation=dil), torch.nn.MaxPool2d(**pool, dilation=dil)),
            (
                "avgpool",
                nnq.AvgPool2d(**pool, count_include_pad=cip),
                torch.nn.AvgPool2d(**pool, count_include_pad=cip),
            ),
            ("adaptive", nnq.AdaptiveAvgPool2d(osz), torch.nn.AdaptiveAvgPool2d(osz)),
        ]
        for name, ours, theirs in cases:
            try:
                expect = theirs(t)
            except RuntimeError:  # geometry torch rejects (output size < 1): npquant must too
                with pytest.raises(ValueError):
                    ours(q)
                continue
            d = codes_diff(expect, ours(q))
            if name in ("avgpool", "adaptive") and nhwc and TORCH_VECTOR_WIDTH != 16:
                split = c // TORCH_VECTOR_WIDTH * TORCH_VECTOR_WIDTH if TORCH_VECTOR_WIDTH else 0
                lo, hi = min(split, c // 16 * 16), max(split, c // 16 * 16)
                assert d.max() <= 1 and not d[:, :lo].any() and not d[:, hi:].any(), (name, pool, c)
            else:
                assert d.max() == 0, (name, pool, nhwc, c, int(d.sum()))
            checked += d.size
    assert checked > 10_000


@pytest.mark.parametrize("seed", SEEDS)
def test_qfunctional_random_qparams(seed):
    """add / add_relu / mul / cat with random input and output qparams and broadcasting."""
    rng = np.random.default_rng(seed)
    for _ in range(6):
        c = int(rng.integers(1, 70))
        nhwc = bool(rng.integers(2))
        (s1, z1), (s2, z2), (so, zo) = random_qparams(rng), random_qparams(rng), random_qparams(rng)
        x = (rng.standard_normal((2, c, 5, 7)) * s1 * 60).astype(np.float32)
        y = (rng.standard_normal((2, c, 5, 7)) * s2 * 60).astype(np.float32)
        (tx, qx), (ty, qy) = qpair(x, s1, z1, nhwc), qpair(y, s2, z2, nhwc)
        f, tf = nnq.QFunctional(), torch.ao.nn.quantized.QFunctional()
        f.scale, f.zero_point = tf.scale, tf.zero_point = so, zo
        for name, ours, theirs in [
            ("add", f.add(qx, qy), tf.add(tx, ty)),
            ("add_relu", f.add_relu(qx, qy), tf.add_relu(tx, ty)),
            ("mul", f.mul(qx, qy), tf.mul(tx, ty)),
            ("cat", f.cat([qx, qy], 1), tf.cat([tx, ty], 1)),
        ]:
            d = codes_diff(theirs, ours)
            # PyTorch's vector loop and its scalar tail round differently; npquant follows the
            # vector loop everywhere, so a few codes of the tail may differ by one
            assert d.max() <= 1 and d.mean() < 0.05, (name, c, nhwc, int(d.sum()))


def _torch_linear(xq, w: npquant.QTensor, bias, scale, zp, relu):
    tx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq.int_repr()), xq.q_scale(), xq.q_zero_point())
    if w.qscheme() == "per_tensor_affine":
        tw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w.int_repr()), w.q_scale(), 0)
    else:
        tw = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(w.int_repr()),
            torch.from_numpy(w.q_per_channel_scales().astype(np.float64)),
            torch.zeros(w.shape[0], dtype=torch.long),
            0,
        )
    packed = torch.ops.quantized.linear_prepack(tw, None if bias is None else torch.from_numpy(bias))
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    return op(tx, packed, scale, zp).int_repr().numpy()


@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
@pytest.mark.parametrize("seed", SEEDS)
def test_static_linear_per_tensor_weights_and_nd_inputs(seed, mode):
    """torch's codes where it is exact; where it saturates, torch's codes are its saturating
    arithmetic's and npquant's the exact contract's."""
    rng = np.random.default_rng(seed)
    for _ in range(5):
        lead = tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4))))
        k, n = int(rng.integers(1, 300)), int(rng.integers(1, 100))
        wf = rng.normal(0, 0.05, (n, k)).astype(np.float32)
        wscale = float(np.float32(np.abs(wf).max() / 127))
        w = npquant.quantize_per_tensor(wf, wscale, 0, npquant.qint8)
        bias = rng.normal(0, 0.5, n).astype(np.float32) if rng.integers(2) else None
        xs, xz = random_qparams(rng)
        xq = npquant.quantize_per_tensor(rng.normal(0, xs * 40, lead + (k,)).astype(np.float32), xs, xz, npquant.quint8)
        ys, yz = float(np.float32(xs * wscale * np.sqrt(k) * 60)), int(rng.integers(0, 256))
        relu = bool(rng.integers(2))
        layer = (nnq.LinearReLU if relu else nnq.Linear)(k, n, bias is not None)
        layer.set_weight_bias(w, bias)
        layer.scale, layer.zero_point = ys, yz
        ours = layer(xq).int_repr()
        assert ours.shape == lead + (n,)
        if mode == peers.SATURATING:
            x2, ws = xq.int_repr().reshape(-1, k), np.full(n, wscale, np.float32)
            exact = npref.linear_static(x2, xs, xz, w.int_repr(), ws, bias, ys, yz, relu)
            np.testing.assert_array_equal(ours, exact.reshape(ours.shape))
            ours = peers.requantize(peers.fbgemm_pairs_acc(x2, xz, w.int_repr()), xs, ws, bias, ys, yz, relu).reshape(
                ours.shape
            )
        np.testing.assert_array_equal(ours, _torch_linear(xq, w, bias, ys, yz, relu))
    peers.record("torch static Linear", mode, 5)


# ------------------------------------------------------------------ whole converted models
def _mlp_pair(rng, act: str, join: str):
    """The same MLP in torch and npquant (weights copied), for eager quantization."""

    def make(tnn, stubs, FF):
        class M(tnn.Module):
            def __init__(self):
                super().__init__()
                self.quant, self.dequant = stubs.QuantStub(), stubs.DeQuantStub()
                self.fc1, self.relu1 = tnn.Linear(16, 32), tnn.ReLU()
                self.fc2 = tnn.Linear(32, 32)
                self.act = {"relu": tnn.ReLU(), "relu6": tnn.ReLU6(), "dropout": tnn.Dropout()}[act]
                self.fc3 = tnn.Linear(32, 32, bias=False)
                self.skip = FF()
                self.fc4 = tnn.Linear(64 if join == "cat" else 32, 5)

            def forward(self, x):
                x = self.relu1(self.fc1(self.quant(x)))
                h = self.act(self.fc2(x))
                r = self.fc3(h)
                h = self.skip.cat([h, r], 1) if join == "cat" else getattr(self.skip, join)(h, r)
                return self.dequant(self.fc4(h))

        return M

    TM = make(torch.nn, torch.ao.quantization, torch.ao.nn.quantized.FloatFunctional)
    NM = make(nn, npquant.quantization, nn.FloatFunctional)
    torch.manual_seed(int(rng.integers(1 << 30)))
    tm = TM().eval()
    nm = NM()
    nm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    return tm, nm.eval()


def _qconfigs(observer: str):
    """(torch QConfig, npquant QConfig) with the same observers."""
    obs, O = torch.ao.quantization.observer, npquant.observers
    tact = obs.HistogramObserver if observer == "histogram" else obs.MinMaxObserver
    nact = O.HistogramObserver if observer == "histogram" else O.MinMaxObserver
    tq = torch.ao.quantization.QConfig(
        activation=tact.with_args(reduce_range=False),
        weight=obs.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    nq = npquant.QConfig(
        activation=nact.with_args(reduce_range=False),
        weight=O.PerChannelMinMaxObserver.with_args(dtype=npquant.qint8, qscheme=O.per_channel_symmetric),
    )
    return tq, nq


def _convert_both(tm, nm, fuse, batches, observer):
    tm.qconfig, nm.qconfig = _qconfigs(observer)
    tp = torch.ao.quantization.prepare(torch.ao.quantization.fuse_modules(tm, fuse))
    np_ = npquant.prepare(npquant.fuse_modules(nm, fuse))
    with torch.no_grad():
        for b in batches:
            tp(torch.from_numpy(b))
            np_(b)
    return torch.ao.quantization.convert(tp), npquant.convert(np_)


@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("observer", ["minmax", "histogram"])
@pytest.mark.parametrize("act,join", [("relu", "add"), ("relu6", "add_relu"), ("dropout", "mul"), ("relu", "cat")])
def test_converted_mlp_same_qparams_and_codes(seed, observer, act, join, mode):
    """prepare / calibrate / convert in both libraries: every layer gets the same (scale,
    zero point) up to the last bits of the float activations the observers saw (NumPy's
    and torch's float matmuls round differently), and the outputs agree within one code.
    mode 'saturating': torch's model is compared with npquant's model whose Linear layers
    compute torch's saturating arithmetic (peers.emulate_torch)."""
    rng = np.random.default_rng(seed)
    tm, nm = _mlp_pair(rng, act, join)
    batches = [rng.normal(0, 1, (32, 16)).astype(np.float32) for _ in range(3)]
    tc, nc = _convert_both(tm, nm, [["fc1", "relu1"]], batches, observer)
    for name in ("quant", "fc1", "fc2", "fc3", "skip", "fc4"):
        tmod, nmod = dict(tc.named_modules())[name], dict(nc.named_modules())[name]
        ts, ns = np.float32(float(tmod.scale)), np.float32(nmod.scale)
        if name == "quant" and observer == "minmax":  # observes the input itself: identical
            assert ts == ns and int(tmod.zero_point) == nmod.zero_point
        else:  # observes float activations, which NumPy and torch round differently in the last bit
            assert abs(ts - ns) <= 1e-5 * ts, (name, ts, ns)
            assert abs(int(tmod.zero_point) - nmod.zero_point) <= 1, name
    x = rng.normal(0, 1.2, (64, 16)).astype(np.float32)
    with torch.no_grad():
        yt = tc(torch.from_numpy(x)).numpy()
    emulated, counts = peers.emulate_torch(nc, "torch converted MLP (layers)")
    assert counts[mode] == 4
    yn = emulated(x)
    steps = np.abs(yt - yn) / nc.fc4.scale
    assert steps.max() <= 1 + 1e-4 and np.mean(steps > 0.5) < 0.01, (steps.max(), np.mean(steps > 0.5))


# ------------------------------------------------------------------ convolution
def _random_conv(rng):
    groups = int(rng.choice([1, 1, 2, 0]))
    cin = int(rng.integers(1, 24))
    if groups == 0:  # depthwise, with a channel multiplier
        groups, cout = cin, cin * int(rng.integers(1, 3))
    else:
        cin, cout = cin * groups, int(rng.integers(1, 20)) * groups
    k = int(rng.integers(1, 6))
    return dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=k,
        stride=int(rng.integers(1, 4)),
        padding=int(rng.integers(0, 3)),
        dilation=int(rng.integers(1, 3)),
        groups=groups,
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_quantized_conv_random_configs(seed):
    """Conv2d / ConvReLU2d, random geometry (depthwise included), per-channel weights, random
    qparams, with and without bias: PyTorch's codes where torch is exact for the config on
    this CPU; where it saturates, torch's codes are its saturating arithmetic's
    (peers.fbgemm_conv_acc) and npquant's the exact reference's. Where torch is broken
    (peers.BROKEN) torch is not called; npquant must still equal the reference."""
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(10):
        cfg = _random_conv(rng)
        h = w = int(rng.integers(cfg["dilation"] * (cfg["kernel_size"] - 1) + 1, 16))
        x = rng.normal(0, 1, (int(rng.integers(1, 3)), cfg["in_channels"], h, w)).astype(np.float32)
        xs, xz = random_qparams(rng)
        x = (x * xs * 40).astype(np.float32)
        tconv = torch.nn.Conv2d(**cfg, bias=bool(rng.integers(2)))
        wf = tconv.weight.detach()
        ws = (wf.abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-8).double()
        tw = torch.quantize_per_channel(wf, ws, torch.zeros(len(ws), dtype=torch.long), 0, torch.qint8)
        bias = None if tconv.bias is None else tconv.bias.detach()
        relu = bool(rng.integers(2))
        ys = float(
            np.float32(
                xs * float(ws.mean()) * np.sqrt(cfg["in_channels"] // cfg["groups"] * cfg["kernel_size"] ** 2) * 50
            )
        )
        yz = int(rng.integers(0, 256))
        ours = (nnq.ConvReLU2d if relu else nnq.Conv2d)(**cfg)
        qw = npquant.QTensor(
            tw.int_repr().numpy(),
            tw.q_per_channel_scales().numpy().astype(np.float32),
            np.zeros(len(ws), np.int64),
            npquant.qint8,
            axis=0,
        )
        ours.set_weight_bias(qw, None if bias is None else bias.numpy())
        ours.scale, ours.zero_point = ys, yz
        t, q = qpair(x, xs, xz, False)
        y = ours(q)
        k, s, p, d = ((cfg[a],) * 2 for a in ("kernel_size", "stride", "padding", "dilation"))
        mode = peers.torch_conv_mode(cfg["in_channels"], cfg["out_channels"], cfg["groups"], k, s, p, d)
        peers.record("torch static Conv2d", mode)
        onednn = mode == peers.EXACT and peers.torch_conv_is_onednn(cfg["groups"])
        if mode != peers.EXACT or onednn:
            # torch saturates, or runs oneDNN's requantization order: npquant must equal the
            # contract, torch its own arithmetic restated (peers.py, docs/peers.md).
            args = (np.ascontiguousarray(q.nhwc()), xz, qw.int_repr(), s, p + p, d, cfg["groups"])
            wsc = qw.q_per_channel_scales()
            b = None if bias is None else bias.numpy()
            exact = npquant._C.reference.conv2d_static(*args, np.float32(xs), wsc, b, np.float32(ys), yz, relu)
            np.testing.assert_array_equal(y.nhwc(), exact)
            if mode == peers.BROKEN:
                continue
            if onednn:
                emulated = peers.onednn_requantize(
                    peers.fbgemm_conv_acc(*args, pairs=peers.exact_pairs_acc), xs, wsc, b, ys, yz, relu
                )
            else:
                emulated = peers.requantize(peers.fbgemm_conv_acc(*args), xs, wsc, b, ys, yz, relu)
            y = npquant.QTensor.from_nhwc(emulated, y.q_scale(), yz)
        tq = (torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d)(**cfg)
        tq.set_weight_bias(tw, bias)
        tq.scale, tq.zero_point = ys, yz
        d = codes_diff(tq(t), y)
        assert d.max() == 0, (cfg, relu, mode, int(d.sum()))
        checked += d.size
    assert checked > 0
