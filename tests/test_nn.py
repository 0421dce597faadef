"""npquant.nn float modules and npquant.nn.quantized non-GEMM ops, against torch
(where installed) and on their own: module system, state dicts, clear errors."""

import copy

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.backends.quantized.engine = "x86"
    return t


def _t(torch, x):
    return torch.from_numpy(np.ascontiguousarray(x))


# ------------------------------------------------------------------ float modules vs torch
POOLS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=2, ceil_mode=True),
]


def test_float_modules_match_torch(torch, rng):
    x = (rng.standard_normal((2, 5, 9, 11)) * 3).astype(np.float32)
    tx = _t(torch, x)
    tn = torch.nn
    pairs = [
        (nn.ReLU(), tn.ReLU()),
        (nn.ReLU6(), tn.ReLU6()),
        (nn.Hardswish(), tn.Hardswish()),
        (nn.Identity(), tn.Identity()),
        (nn.Dropout(0.3).eval(), tn.Dropout(0.3).eval()),
        (nn.Flatten(), tn.Flatten()),
        (nn.Flatten(0, 2), tn.Flatten(0, 2)),
        (nn.MaxPool2d(3, 1, 1, dilation=2), tn.MaxPool2d(3, 1, 1, dilation=2)),
    ]
    for kw in POOLS:
        pairs.append((nn.MaxPool2d(**kw), tn.MaxPool2d(**kw)))
        for cip in (True, False):
            pairs.append((nn.AvgPool2d(**kw, count_include_pad=cip), tn.AvgPool2d(**kw, count_include_pad=cip)))
    pairs.append((nn.AvgPool2d(3, 2, 1, divisor_override=4), tn.AvgPool2d(3, 2, 1, divisor_override=4)))
    for os_ in [1, (1, 1), (3, 4), (4, 5), (2, None), (9, 11), (5, 7)]:
        pairs.append((nn.AdaptiveAvgPool2d(os_), tn.AdaptiveAvgPool2d(os_)))
    for ours, theirs in pairs:
        y = ours(x)
        ty = theirs(tx).detach().numpy()
        assert y.dtype == np.float32 and y.shape == ty.shape, (ours, y.shape, ty.shape)
        np.testing.assert_allclose(y, ty, rtol=1e-5, atol=1e-6, err_msg=repr(ours))


def test_batchnorm_matches_torch_and_keys(torch, rng):
    for ours, theirs, shape in (
        (nn.BatchNorm2d(6), torch.nn.BatchNorm2d(6), (3, 6, 5, 4)),
        (nn.BatchNorm1d(6), torch.nn.BatchNorm1d(6), (7, 6)),
    ):
        with torch.no_grad():
            theirs.running_mean.uniform_(-1, 1)
            theirs.running_var.uniform_(0.2, 3)
            theirs.weight.uniform_(0.5, 2)
            theirs.bias.uniform_(-1, 1)
        theirs.num_batches_tracked += 7
        theirs.eval()
        sd = {k: v.numpy() for k, v in theirs.state_dict().items()}
        ours.load_state_dict(sd)
        assert list(ours.state_dict()) == list(sd)
        assert int(ours.num_batches_tracked) == 7
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(ours(x), theirs(_t(torch, x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_float_functional_matches_torch(torch, rng):
    a, b = rng.standard_normal((2, 3, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    f, tf = nn.FloatFunctional(), torch.ao.nn.quantized.FloatFunctional()
    ta, tb = _t(torch, a), _t(torch, b)
    np.testing.assert_array_equal(f.add(a, b), tf.add(ta, tb).numpy())
    np.testing.assert_array_equal(f.add_relu(a, b), tf.add_relu(ta, tb).numpy())
    np.testing.assert_array_equal(f.mul(a, b), tf.mul(ta, tb).numpy())
    np.testing.assert_array_equal(f.cat([a, b], 1), tf.cat([ta, tb], 1).numpy())
    np.testing.assert_allclose(f.add_scalar(a, 0.5), tf.add_scalar(ta, 0.5).numpy())
    np.testing.assert_allclose(f.mul_scalar(a, -2.0), tf.mul_scalar(ta, -2.0).numpy())


# ------------------------------------------------------------------ quantized ops vs torch
def _quantized_pair(torch, x, scale, zp, nhwc):
    t = torch.quantize_per_tensor(_t(torch, x), scale, zp, torch.quint8)
    q = npquant.quantize_per_tensor(x, scale, zp, npquant.quint8)
    if nhwc:  # the storage order quantized conv produces, in both libraries
        t = t.contiguous(memory_format=torch.channels_last)
        q = npquant.QTensor.from_nhwc(np.ascontiguousarray(q.int_repr().transpose(0, 2, 3, 1)), scale, zp)
    return t, q


def _diff(t, q):
    a, b = t.int_repr().numpy().astype(int), q.int_repr().astype(int)
    assert a.shape == b.shape
    assert np.float32(t.q_scale()) == np.float32(q.q_scale()) and t.q_zero_point() == q.q_zero_point()
    return np.abs(a - b)


def _quantized_cases(torch):
    tnq = torch.ao.nn.quantized
    tn = torch.nn
    cases = [
        ("relu", nnq.ReLU(), torch.relu),
        ("relu6", nnq.ReLU6(), torch.ops.quantized.relu6),
        ("hardswish", nnq.Hardswish(0.02, 30), tnq.Hardswish(0.02, 30)),
        ("flatten", nnq.Flatten(), lambda t: torch.flatten(t, 1)),
        ("dropout", nnq.Dropout(0.5), tnq.Dropout(0.5)),
        ("maxpool dilated", nnq.MaxPool2d(3, 1, 1, dilation=2), tn.MaxPool2d(3, 1, 1, dilation=2)),
    ]
    for kw in POOLS:
        cases.append((f"maxpool {kw}", nnq.MaxPool2d(**kw), tn.MaxPool2d(**kw)))
        for cip in (True, False):
            cases.append(
                (
                    f"avgpool {kw} {cip}",
                    nnq.AvgPool2d(**kw, count_include_pad=cip),
                    tn.AvgPool2d(**kw, count_include_pad=cip),
                )
            )
    for os_ in [1, (3, 4), (4, 5), (2, None)]:
        cases.append((f"adaptive {os_}", nnq.AdaptiveAvgPool2d(os_), tn.AdaptiveAvgPool2d(os_)))
    return cases


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("nhwc", [False, True])
def test_quantized_unary_ops_match_torch(torch, rng, nhwc):
    """Exact for every op in both storage orders when C is a multiple of 16; with
    other C, PyTorch's channels-last kernels round their last C % 16 channels (the
    scalar remainder of the vector loop) differently: there npquant may differ by
    one code, in those channels only."""
    for C in (16, 64, 3, 70):
        x = (rng.standard_normal((2, C, 9, 11)) * 2).astype(np.float32)
        t, q = _quantized_pair(torch, x, 0.037, 121, nhwc)
        for name, ours, theirs in _quantized_cases(torch):
            out = ours(q)
            assert out.is_nhwc == (nhwc and name not in ("flatten",)), name
            d = _diff(theirs(t), out)
            if C % 16 == 0 or not nhwc or "avgpool" not in name:
                assert d.max() == 0 or (name == "hardswish" and d.max() == 1 and d.sum() <= 2), (name, C, d.sum())
            else:
                assert d.max() <= 1 and not d[:, : C // 16 * 16].any(), (name, C)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("nhwc", [False, True])
def test_qfunctional_matches_torch(torch, rng, nhwc):
    """add/add_relu/mul/cat/add_scalar/mul_scalar with PyTorch's requantization: equal
    codes and qparams (PyTorch's scalar loop tail may round a value by one code)."""
    for C in (64, 3, 70):
        x = (rng.standard_normal((2, C, 9, 11)) * 2).astype(np.float32)
        y = (rng.standard_normal((2, C, 9, 11)) * 3).astype(np.float32)
        (tx, qx), (ty, qy) = _quantized_pair(torch, x, 0.037, 121, nhwc), _quantized_pair(torch, y, 0.05, 100, nhwc)
        f, tf = nnq.QFunctional(), torch.ao.nn.quantized.QFunctional()
        f.scale, f.zero_point = tf.scale, tf.zero_point = 0.06, 110
        results = [("add", f.add(qx, qy), tf.add(tx, ty)), ("add_relu", f.add_relu(qx, qy), tf.add_relu(tx, ty))]
        f.scale = tf.scale = 0.2
        results += [
            ("mul", f.mul(qx, qy), tf.mul(tx, ty)),
            ("cat0", f.cat([qx, qy], 0), tf.cat([tx, ty], 0)),
            ("cat1", f.cat([qx, qy], 1), tf.cat([tx, ty], 1)),
        ]
        for c in (0.3, -0.4, 9.0, -9.0):
            results.append((f"add_scalar {c}", f.add_scalar(qx, c), tf.add_scalar(tx, c)))
        for c in (0.3, -0.4, 0.0):
            results.append((f"mul_scalar {c}", f.mul_scalar(qx, c), tf.mul_scalar(tx, c)))
        for name, ours, theirs in results:
            d = _diff(theirs, ours)
            assert d.max() <= 1 and d.mean() < 0.03, (name, C, nhwc, d.sum())
            if C == 64 and name != "cat1":
                assert d.max() == 0 or d.sum() <= 2, (name, C, nhwc, d.sum())


def test_quantized_batchnorm_close_to_torch(torch, rng):
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    tq = torch.ao.nn.quantized.BatchNorm2d(8)
    tq.weight, tq.bias = bn.weight, bn.bias
    tq.running_mean, tq.running_var = bn.running_mean, bn.running_var
    tq.scale, tq.zero_point = torch.tensor(0.05), torch.tensor(120)
    ours = nnq.BatchNorm2d(8)
    ours.weight, ours.bias = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    ours.running_mean, ours.running_var = bn.running_mean.numpy(), bn.running_var.numpy()
    ours.scale, ours.zero_point = 0.05, 120
    x = rng.standard_normal((2, 8, 5, 5)).astype(np.float32)
    t, q = _quantized_pair(torch, x, 0.03, 128, True)
    d = _diff(tq(t), ours(q))
    assert d.max() <= 1 and d.mean() < 0.01


# ------------------------------------------------------------------ module system
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.seq = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        return self.seq(self.fc(x))


def test_module_system():
    m = Block()
    names = [n for n, _ in m.named_modules()]
    assert names == ["", "fc", "seq", "seq.0", "seq.1"]
    assert list(m.state_dict()) == ["fc.weight", "fc.bias", "seq.1.weight", "seq.1.bias"]
    assert m.get_submodule("seq.1") is m.seq[1] and len(m.seq) == 2 and m.seq[-1] is m.seq[1]
    assert isinstance(m.seq[0:1], nn.Sequential) and len(m.seq[0:1]) == 1
    m.eval()
    assert not any(x.training for x in m.modules())
    x = np.ones((5, 4), np.float32)
    calls = []
    h = m.fc.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    pre = m.fc.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    y2 = m(x)
    h.remove()
    pre.remove()
    assert calls == [(5, 3)]
    np.testing.assert_allclose(y2, m(x * 2), rtol=1e-6)
    clone = copy.deepcopy(m)
    assert clone.fc.weight is not m.fc.weight
    np.testing.assert_array_equal(clone(x), m(x))


def test_children_stay_in_step_with_attribute_lookup():
    # submodules are mirrored in the instance __dict__ (a forward's self.fc is a plain
    # lookup); every way of changing a child must keep the two views the same
    m = Block()

    def same():
        for name, c in m._modules.items():
            assert getattr(m, name) is c
        assert [n for n, _ in m.named_children()] == [n for n, c in m._modules.items() if c is not None]

    same()
    new = nn.Linear(4, 3)
    m.fc = new
    assert m.fc is new and m._modules["fc"] is new
    same()
    m.fc = None  # a registered child set to None stays registered, as in torch
    assert m.fc is None and "fc" in m._modules
    same()
    m.fc = 5  # a plain value replaces the child
    assert m.fc == 5 and "fc" not in m._modules
    m.add_module("extra", nn.ReLU())
    assert isinstance(m.extra, nn.ReLU)
    same()
    del m.extra
    assert "extra" not in m._modules
    assert not hasattr(m, "extra")
    m.register_parameter("seq", np.ones(2, np.float32))  # a parameter of a child's name wins
    np.testing.assert_array_equal(m.seq, np.ones(2, np.float32))
    clone = copy.deepcopy(Block())
    clone.fc = nn.Linear(4, 3)
    assert clone._modules["fc"] is clone.fc


def test_identity_skips_forward_but_runs_hooks():
    m = nn.Identity()
    x = np.ones(3, np.float32)
    assert m(x) is x
    seen = []
    h = m.register_forward_hook(lambda mod, args, out: seen.append(out is x))
    assert m(x) is x and seen == [True]
    h.remove()
    pre = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    np.testing.assert_array_equal(m(x), x * 2)
    pre.remove()
    with pytest.raises(TypeError):
        m()  # no input: forward's own error, as before


def test_subclass_without_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match="super\\(\\).__init__\\(\\)"):
        Bad()


def test_load_state_dict_errors():
    m = Block()
    sd = m.state_dict()
    with pytest.raises(KeyError, match="missing keys \\['seq.1.bias'\\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "seq.1.bias"})
    bad = dict(sd, **{"fc.weight": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match="shape mismatch for 'fc.weight'"):
        m.load_state_dict(bad)


def test_float_ops_reject_qtensors():
    q = npquant.quantize_per_tensor(np.ones((1, 2, 4, 4), np.float32), 0.1, 0, npquant.quint8)
    for mod in (
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm2d(2),
        nn.Linear(4, 2),
        nn.Dropout(),
        nn.Hardswish(),
    ):
        with pytest.raises(TypeError, match="DeQuantStub"):
            mod(q)
    with pytest.raises(TypeError, match="DeQuantStub"):
        nn.FloatFunctional().add(q, q)


def test_quantized_ops_reject_floats():
    x = np.ones((1, 2, 4, 4), np.float32)
    for mod in (
        nnq.ReLU(),
        nnq.MaxPool2d(2),
        nnq.AdaptiveAvgPool2d(1),
        nnq.Flatten(),
        nnq.Hardswish(),
        nnq.DeQuantize(),
    ):
        with pytest.raises(TypeError, match="QuantStub|quantize"):
            mod(x)
    with pytest.raises(TypeError, match="QuantStub"):
        nnq.QFunctional().add(x, x)


def test_shape_errors():
    x = np.ones((1, 3, 8, 8), np.float32)
    q = npquant.quantize_per_tensor(x, 0.1, 0, npquant.quint8)
    with pytest.raises(ValueError, match="4-D"):
        nn.MaxPool2d(2)(np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="too small"):
        nn.MaxPool2d(5)(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="3 channels in dim 1"):
        nn.BatchNorm2d(3)(np.ones((1, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        nn.FloatFunctional().add(x, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        nnq.QFunctional().add(q, npquant.quantize_per_tensor(np.ones((2, 3), np.float32), 0.1, 0, npquant.quint8))
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2d(2, padding=2)


def test_flatten_gives_logical_order_from_nhwc():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2) / 10
    q = npquant.quantize_per_tensor(x, 0.1, 0, npquant.quint8)
    nhwc = npquant.QTensor.from_nhwc(np.ascontiguousarray(q.int_repr().transpose(0, 2, 3, 1)), 0.1, 0)
    flat = nnq.Flatten()(nhwc)
    assert flat.shape == (2, 12) and not flat.is_nhwc
    np.testing.assert_array_equal(flat.int_repr(), q.int_repr().reshape(2, 12))


def test_zero_dim_qtensors_keep_their_shape():
    """0-d QTensors stay 0-d through the quantized ops (np.ascontiguousarray would make
    them 1-d: a cat of shapes (0,) and () once returned shape (1,) instead of raising)."""
    b = npquant.QTensor(np.array(7, np.uint8), 0.1, 3)
    f = nnq.QFunctional()
    f.scale, f.zero_point = 0.05, 3
    for y in (
        f.add(b, b),
        f.add_relu(b, b),
        f.mul(b, b),
        nnq.ReLU()(b),
        nnq.ReLU6()(b),
        nnq.Hardswish(0.1, 3)(b),
        npquant.QTensor(np.array([1, 2, 3], np.uint8), 0.1, 0).mean(),
    ):
        assert y.shape == () and y.int_repr().shape == ()
    with pytest.raises(ValueError, match="zero-dimensional|same number of dimensions"):
        f.cat([npquant.QTensor(np.zeros(0, np.uint8), 1.0, 0), b], 0)
