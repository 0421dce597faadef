"""state_dict / load_state_dict of quantized models: torch's keys and layouts, strict
loading with clear errors, bit-identical round trips, the flat NumPy (.npz) form, and
torch-converted models loaded into npquant's converted twins (docs/interop.md)."""

import copy

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.interop import state_dict_from_numpy, state_dict_to_numpy, torch_state_dict_to_numpy
from npquant.nn import quantized as nnq

import peers


# ------------------------------------------------------------------ models (npquant; torch twins below)
class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.ff = nn.FloatFunctional()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(10, 5, bias=False)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(x)))
        x = self.ff.add(x, self.conv2(x))
        x = self.flat(self.pool(x))
        return self.dequant(self.fc2(self.relu2(self.fc(x))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        self.fc1 = nn.Linear(16, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 8)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


CNN_FUSE = [["conv", "bn", "relu"], ["fc", "relu2"]]
MLP_FUSE = [["fc1", "relu"]]
CNN_SHAPE, MLP_SHAPE = (4, 3, 8, 8), (4, 16)


class Extras(nn.Module):
    """The quantized modules with state that the CNN lacks: BatchNorm2d, Hardswish,
    a QFunctional used only for mul_scalar (no output qparams)."""

    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        self.bn = nn.BatchNorm2d(3)
        self.hs = nn.Hardswish()
        self.ff = nn.FloatFunctional()
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.ff.mul_scalar(self.hs(self.bn(self.quant(x))), 2.0))


def converted(cls, fuse, shape, seed, qconfig=None):
    rng = np.random.default_rng(seed)
    m = cls().eval()
    for _name, p in list(m.named_parameters()):  # weights differ between seeds
        p[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean[...] = rng.standard_normal(mod.num_features) * 0.1
            mod.running_var[...] = rng.uniform(0.5, 2, mod.num_features)
    m.qconfig = qconfig or npquant.get_default_qconfig("x86")
    if fuse:
        m = npquant.fuse_modules(m, fuse)
    p = npquant.prepare(m)
    for _ in range(3):
        p(rng.standard_normal(shape).astype(np.float32))
    return npquant.convert(p)


def _x(shape, seed=7):
    return np.random.default_rng(seed).standard_normal((16,) + shape[1:]).astype(np.float32)


# ------------------------------------------------------------------ keys and layouts
def test_converted_cnn_state_dict_has_torchs_keys_and_layouts():
    sd = converted(CNN, CNN_FUSE, CNN_SHAPE, 0).state_dict()
    assert list(sd) == [
        "quant.scale",
        "quant.zero_point",
        "conv.weight",
        "conv.bias",
        "conv.scale",
        "conv.zero_point",
        "conv2.weight",
        "conv2.bias",
        "conv2.scale",
        "conv2.zero_point",
        "ff.scale",
        "ff.zero_point",
        "fc.scale",
        "fc.zero_point",
        "fc._packed_params.dtype",
        "fc._packed_params._packed_params",
        "fc2.scale",
        "fc2.zero_point",
        "fc2._packed_params.dtype",
        "fc2._packed_params._packed_params",
    ]
    assert sd["quant.scale"].shape == (1,) and sd["quant.scale"].dtype == np.float32
    assert sd["quant.zero_point"].shape == (1,) and sd["quant.zero_point"].dtype == np.int64
    assert sd["conv.scale"].shape == () and sd["conv.zero_point"].dtype == np.int64
    w = sd["conv.weight"]
    assert isinstance(w, npquant.QTensor) and w.dtype is npquant.qint8 and w.shape == (8, 3, 3, 3)
    assert w.q_per_channel_axis() == 0
    assert sd["conv2.bias"] is None and sd["fc._packed_params.dtype"] is npquant.qint8
    wq, b = sd["fc._packed_params._packed_params"]
    assert wq.shape == (10, 128) and b.shape == (10,) and b.dtype == np.float32
    assert sd["fc2._packed_params._packed_params"][1] is None


def test_other_quantized_modules_have_torchs_keys():
    sd = converted(Extras, None, CNN_SHAPE, 0).state_dict()
    assert list(sd) == [
        "quant.scale",
        "quant.zero_point",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "bn.scale",
        "bn.zero_point",
        "hs.scale",
        "hs.zero_point",
        "ff.scale",
        "ff.zero_point",
    ]
    assert np.isnan(sd["ff.scale"])  # only mul_scalar ran: no output qparams
    dyn = npquant.quantize_dynamic(nn.Sequential(nn.Linear(6, 3)), {nn.Linear})
    assert list(dyn.state_dict()) == [
        "0.scale",
        "0.zero_point",
        "0._packed_params.dtype",
        "0._packed_params._packed_params",
    ]


def test_state_dict_arrays_are_read_only_views():
    q = converted(MLP, MLP_FUSE, MLP_SHAPE, 0)
    w, b = q.state_dict()["fc2._packed_params._packed_params"]
    with pytest.raises(ValueError, match="read-only"):
        b[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        w.int_repr()[0, 0] = 1


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize(
    "cls, fuse, shape", [(CNN, CNN_FUSE, CNN_SHAPE), (MLP, MLP_FUSE, MLP_SHAPE), (Extras, None, CNN_SHAPE)]
)
def test_round_trip_into_a_twin_is_bit_identical(cls, fuse, shape, tmp_path):
    q = converted(cls, fuse, shape, 0)
    x = _x(shape)
    ref = q(x)
    twin = converted(cls, fuse, shape, 1)  # other weights and qparams
    assert not np.array_equal(twin(x), ref)
    assert twin.load_state_dict(q.state_dict()) == ([], [])
    assert np.array_equal(twin(x), ref)
    # the flat NumPy form, in memory and through an .npz file (no pickle)
    flat = state_dict_to_numpy(q.state_dict())
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in flat.values())
    path = tmp_path / "q.npz"
    np.savez(path, **flat)
    for source in (flat, np.load(path)):
        t = converted(cls, fuse, shape, 2)
        t.load_state_dict(source)
        assert np.array_equal(t(x), ref)


def test_flat_form_round_trips_to_npquants_form():
    sd = converted(CNN, CNN_FUSE, CNN_SHAPE, 0).state_dict()
    back = state_dict_from_numpy(state_dict_to_numpy(sd))
    assert set(back) == {k for k, v in sd.items() if v is not None}
    w, w2 = sd["conv.weight"], back["conv.weight"]
    assert np.array_equal(w.int_repr(), w2.int_repr())
    assert np.array_equal(w.q_per_channel_scales(), w2.q_per_channel_scales())
    assert back["fc._packed_params.dtype"] == "qint8"
    assert back["fc2._packed_params._packed_params"] == (back["fc2._packed_params._packed_params"][0],)
    flat = state_dict_to_numpy(sd)
    assert flat["fc._packed_params.dtype"].dtype.kind == "U"
    assert flat["conv.weight"].dtype == np.int8 and "conv.weight.q_per_channel_scales" in flat
    assert "conv2.bias" not in flat and "fc2._packed_params._packed_params.1" not in flat


def test_single_layer_load_is_not_all_zero():
    """The report: nnq.Linear(8, 4).load_state_dict(...) loaded nothing and kept zero weights."""
    q = converted(MLP, MLP_FUSE, MLP_SHAPE, 0)
    lin = nnq.Linear(32, 8)
    lin.load_state_dict(q.fc2.state_dict())
    assert np.array_equal(lin.weight().int_repr(), q.fc2.weight().int_repr())
    assert np.any(lin.weight().int_repr() != 0)
    assert (lin.scale, lin.zero_point) == (q.fc2.scale, q.fc2.zero_point)
    x = npquant.quantize_per_tensor(_x((1, 32)), 0.05, 128, npquant.quint8)
    assert np.array_equal(lin(x).int_repr(), q.fc2(x).int_repr())


def test_dynamic_and_per_tensor_weights_round_trip():
    def dyn(seed):
        rng = np.random.default_rng(seed)
        m = nn.Sequential(nn.Linear(16, 32, rng=rng), nn.ReLU(), nn.Linear(32, 4, bias=False, rng=rng))
        return npquant.quantize_dynamic(m, {nn.Linear})

    a, b = dyn(0), dyn(1)
    x = _x((1, 16))
    b.load_state_dict(state_dict_to_numpy(a.state_dict()))
    assert np.array_equal(a(x), b(x))
    qn = npquant.get_default_qconfig("qnnpack")  # per-tensor weights
    a, b = (converted(MLP, MLP_FUSE, MLP_SHAPE, s, qn) for s in (0, 1))
    assert a.state_dict()["fc2._packed_params._packed_params"][0].qscheme() == "per_tensor_affine"
    b.load_state_dict(state_dict_to_numpy(a.state_dict()))
    assert np.array_equal(a(_x(MLP_SHAPE)), b(_x(MLP_SHAPE)))


def test_prepared_model_with_per_channel_observers_round_trips():
    m = MLP().eval()
    m.qconfig = npquant.QConfig(
        activation=npquant.observers.MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer
    )
    p = npquant.prepare(m)
    p(_x(MLP_SHAPE))
    fresh = npquant.prepare(m)  # observers not calibrated yet
    fresh.load_state_dict(p.state_dict())
    assert np.array_equal(npquant.convert(fresh)(_x(MLP_SHAPE)), npquant.convert(p)(_x(MLP_SHAPE)))


# ------------------------------------------------------------------ strictness and errors
def _outputs(q, shape=MLP_SHAPE):
    return q(_x(shape))


def test_missing_and_unexpected_keys_are_named():
    q = converted(MLP, MLP_FUSE, MLP_SHAPE, 0)
    sd = q.state_dict()
    t = converted(MLP, MLP_FUSE, MLP_SHAPE, 1)
    before = _outputs(t)
    with pytest.raises(KeyError, match=r"missing keys \['fc2.scale'\]"):
        t.load_state_dict({k: v for k, v in sd.items() if k != "fc2.scale"})
    with pytest.raises(KeyError, match=r"unexpected keys \['fc3.scale'\]"):
        t.load_state_dict(dict(sd, **{"fc3.scale": np.float32(1)}))
    flat = state_dict_to_numpy(sd)
    del flat["fc1._packed_params._packed_params.0"]
    with pytest.raises(KeyError, match="no quantized codes under 'fc1._packed_params._packed_params.0'"):
        t.load_state_dict(flat)
    flat = state_dict_to_numpy(sd)
    del flat["fc1._packed_params._packed_params.0.q_per_channel_axis"]
    with pytest.raises(KeyError, match="q_per_channel_axis"):
        t.load_state_dict(flat)
    assert np.array_equal(_outputs(t), before)  # failed loads change nothing
    res = t.load_state_dict({k: v for k, v in sd.items() if k != "fc2.scale"}, strict=False)
    assert res.missing_keys == ["fc2.scale"] and res.unexpected_keys == []
    assert np.array_equal(t.fc1.weight().int_repr(), q.fc1.weight().int_repr())


def _bad(sd, key, value):
    out = dict(sd)
    out[key] = value
    return out


def test_bad_values_raise_naming_the_key_and_change_nothing():
    q = converted(CNN, CNN_FUSE, CNN_SHAPE, 0)
    sd = q.state_dict()
    t = converted(CNN, CNN_FUSE, CNN_SHAPE, 1)
    before = t(_x(CNN_SHAPE))
    w, b = sd["fc._packed_params._packed_params"]
    f = np.zeros((10, 128), np.float32)
    cases = [
        (
            _bad(
                sd,
                "fc._packed_params._packed_params",
                (
                    npquant.quantize_per_channel(
                        np.zeros((10, 64), np.float32), np.ones(10), np.zeros(10), 0, npquant.qint8
                    ),
                    b,
                ),
            ),
            ValueError,
            r"shape mismatch for 'fc._packed_params._packed_params.0'.*\(10, 128\).*\(10, 64\)",
        ),
        (_bad(sd, "fc._packed_params._packed_params", (w, None)), ValueError, "has no bias but the module"),
        (_bad(sd, "fc._packed_params._packed_params", (w, b[:3])), ValueError, "shape mismatch"),
        (_bad(sd, "fc._packed_params._packed_params", (f, b)), TypeError, "must be a quantized weight"),
        (
            _bad(sd, "fc._packed_params._packed_params", (npquant.quantize_per_tensor(f, 0.1, 3, npquant.qint8), b)),
            ValueError,
            "symmetric",
        ),
        (
            _bad(sd, "fc._packed_params._packed_params", (npquant.quantize_per_tensor(f, 0.1, 0, npquant.quint8), b)),
            TypeError,
            "qint8",
        ),
        (_bad(sd, "fc._packed_params._packed_params", w), ValueError, "has no bias"),
        (_bad(sd, "fc._packed_params._packed_params", "nope"), TypeError, r"\(weight, bias\) tuple"),
        (_bad(sd, "fc._packed_params.dtype", "float16"), ValueError, "float16"),
        (_bad(sd, "conv.weight", np.zeros((8, 3, 3, 3), np.int8)), TypeError, "q_per_channel_scales"),
        (_bad(sd, "conv.weight", sd["conv2.weight"]), ValueError, "shape mismatch for 'conv.weight'"),
        (_bad(sd, "conv.bias", np.zeros(3, np.float32)), ValueError, "shape mismatch for 'conv.bias'"),
        (_bad(sd, "conv.bias", np.full(8, np.nan, np.float32)), ValueError, "NaN"),
        (_bad(sd, "conv.bias", np.zeros(8, np.int64)), TypeError, "float"),
        (_bad(sd, "conv.scale", np.float32(0)), ValueError, "'conv.scale'"),
        (_bad(sd, "conv.scale", np.float32(np.inf)), ValueError, "'conv.scale'"),
        (_bad(sd, "conv.scale", np.zeros(2, np.float32)), ValueError, "one number"),
        (_bad(sd, "conv.scale", np.array(3)), TypeError, "float"),
        (_bad(sd, "conv.zero_point", np.array(300)), ValueError, "'conv.zero_point'"),
        (_bad(sd, "conv.zero_point", np.array(1.5)), ValueError, "'conv.zero_point'"),
        (_bad(sd, "quant.zero_point", np.array([-1])), ValueError, "'quant.zero_point'"),
        (_bad(sd, "ff.scale", np.array("x")), TypeError, "'ff.scale'"),
        (_bad(sd, "fc.scale", [1.0]), TypeError, "'fc.scale'"),
        (_bad(sd, "fc.scale", {"a": 1}), TypeError, "'fc.scale'"),
        (_bad(sd, "fc.scale", object()), TypeError, "'fc.scale'"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            t.load_state_dict(bad)
        assert np.array_equal(t(_x(CNN_SHAPE)), before)
    for notadict in (None, [1, 2], "model.npz", np.zeros(3)):
        with pytest.raises(TypeError, match="dict"):
            t.load_state_dict(notadict)


@pytest.mark.filterwarnings("error")  # no silent casts of NaN or huge values either
def test_every_entry_corrupted_gives_a_clear_error_never_a_crash():
    """Each flat entry replaced by arrays of other dtypes and shapes: the load either
    succeeds (a harmless value) or raises KeyError / ValueError / TypeError."""
    q = converted(CNN, CNN_FUSE, CNN_SHAPE, 0)
    flat = state_dict_to_numpy(q.state_dict())
    t = converted(CNN, CNN_FUSE, CNN_SHAPE, 1)
    junk = [
        np.array(np.nan, np.float32),
        np.array(-1),
        np.zeros(0, np.float32),
        np.zeros((2, 2), np.int8),
        np.array("qint8"),
        np.array(True),
        np.full(3, 1e30),
        np.array([2**40]),
    ]
    n = 0
    for key in flat:
        for j in junk:
            bad = dict(flat)
            bad[key] = j
            try:
                t.load_state_dict(bad)
            except (KeyError, ValueError, TypeError) as e:
                assert str(e)
            n += 1
    assert n == len(flat) * len(junk)


def test_qfunctional_without_qparams_round_trips():
    q = converted(Extras, None, CNN_SHAPE, 0)
    assert q.ff.scale is None
    t = converted(Extras, None, CNN_SHAPE, 1)
    t.ff.scale, t.ff.zero_point = 0.5, 3
    t.load_state_dict(state_dict_to_numpy(q.state_dict()))
    assert t.ff.scale is None and t.ff.zero_point is None


# ------------------------------------------------------------------ torch-converted models
@pytest.fixture(scope="module")
def torch_x86():
    torch = pytest.importorskip("torch")
    import warnings

    warnings.filterwarnings("ignore", message=".*deprecated.*")
    torch.backends.quantized.engine = "x86"
    return torch


def torch_twin(torch, cls):
    """The torch model with the same attribute names as the npquant one."""
    tnn, tq = torch.nn, torch.ao.quantization

    class TCNN(tnn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.conv, self.bn, self.relu = tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU()
            self.conv2 = tnn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.ff = tnn.quantized.FloatFunctional()
            self.pool, self.flat = tnn.MaxPool2d(2), tnn.Flatten()
            self.fc, self.relu2, self.fc2 = tnn.Linear(128, 10), tnn.ReLU(), tnn.Linear(10, 5, bias=False)

        def forward(self, x):
            x = self.quant(x)
            x = self.relu(self.bn(self.conv(x)))
            x = self.ff.add(x, self.conv2(x))
            x = self.flat(self.pool(x))
            return self.dequant(self.fc2(self.relu2(self.fc(x))))

    class TMLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.fc1, self.relu, self.fc2 = tnn.Linear(16, 32), tnn.ReLU(), tnn.Linear(32, 8)

        def forward(self, x):
            return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))

    return {CNN: TCNN, MLP: TMLP}[cls]()


def torch_converted(torch, cls, fuse, shape):
    tq = torch.ao.quantization
    torch.manual_seed(0)
    m = torch_twin(torch, cls).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2)
    m.qconfig = tq.get_default_qconfig("x86")
    m = tq.prepare(tq.fuse_modules(m, fuse))
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        m(torch.randn(*shape, generator=g) * 2)
    return tq.convert(m)


@pytest.mark.parametrize("cls, fuse, shape", [(CNN, CNN_FUSE, CNN_SHAPE), (MLP, MLP_FUSE, MLP_SHAPE)])
def test_torch_converted_model_loads_and_agrees(torch_x86, cls, fuse, shape, tmp_path):
    """torch's converted (PTQ, x86) state dict, loaded into npquant's converted twin
    from torch's own dict, from plain NumPy arrays and from an .npz file: npquant's
    outputs equal torch's where torch is exact on this CPU, and otherwise equal
    torch's own saturating arithmetic (peers.emulate_torch) -- never a tolerance."""
    torch = torch_x86
    tqm = torch_converted(torch, cls, fuse, shape)
    tsd = tqm.state_dict()
    x = _x(shape) * 2
    with torch.no_grad():
        ref = tqm(torch.from_numpy(x)).numpy()
    path = tmp_path / "torch_model.npz"
    np.savez(path, **torch_state_dict_to_numpy(tsd))
    for source in (tsd, torch_state_dict_to_numpy(tsd), np.load(path)):
        q = converted(cls, fuse, shape, 3)
        assert list(q.state_dict()) == list(tsd)  # the same keys, in the same order
        assert q.load_state_dict(source) == ([], [])
        twin, counts = peers.emulate_torch(q, family="torch-converted state dict (layers)")
        out = twin(x)
        assert out.dtype == np.float32 and np.array_equal(out, ref)
        if not counts[peers.SATURATING]:
            assert np.array_equal(q(x), ref)
        peers.record("torch-converted state dict (outputs)", peers.TORCH_LINEAR_MODE, out.size)


def test_torch_dynamic_state_dict_loads(torch_x86):
    torch = torch_x86
    tm = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4, bias=False))
    tq = torch.ao.quantization.quantize_dynamic(tm, {torch.nn.Linear}, dtype=torch.qint8)
    m = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4, bias=False))
    q = npquant.quantize_dynamic(m, {nn.Linear})
    q.load_state_dict(torch_state_dict_to_numpy(tq.state_dict()))
    tw, tb = tq[0]._packed_params._weight_bias()
    assert np.array_equal(q[0].weight().int_repr(), tw.int_repr().numpy())
    assert np.array_equal(q[0].bias(), tb.detach().numpy())
    assert q[2].bias() is None
    fp16 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tm), {torch.nn.Linear}, dtype=torch.float16)
    with pytest.raises((ValueError, TypeError), match="float16|ScriptObject|cannot read"):
        q.load_state_dict(fp16.state_dict())


def test_torch_state_dict_of_the_wrong_model_is_refused(torch_x86):
    tsd = torch_converted(torch_x86, MLP, MLP_FUSE, MLP_SHAPE).state_dict()
    q = converted(CNN, CNN_FUSE, CNN_SHAPE, 0)
    with pytest.raises(KeyError, match="missing keys.*conv.weight.*unexpected keys.*fc1.scale"):
        q.load_state_dict(tsd)
