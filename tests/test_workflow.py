"""The eager-mode workflow: PyTorch's two documentation examples run with torch
replaced by npquant, models matching torch's fp32 and converted int8 outputs,
fusion, qconfig handling, clear errors, and no observer leaks."""

import copy
import pickle

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq
from npquant.observers import ObserverBase

import peers


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.backends.quantized.engine = "x86"
    return t


# ------------------------------------------------------------------ the docs' examples, verbatim
def test_docs_dynamic_example():
    # define a floating point model
    class M(npquant.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = npquant.nn.Linear(4, 4)

        def forward(self, x):
            x = self.fc(x)
            return x

    # create a model instance
    model_fp32 = M()
    # create a quantized model instance
    model_int8 = npquant.ao.quantization.quantize_dynamic(
        model_fp32,  # the original model
        {npquant.nn.Linear},  # a set of layers to dynamically quantize
        dtype=npquant.qint8,
    )  # the target dtype for quantized weights

    # run the model
    input_fp32 = np.random.randn(4, 4, 4, 4)
    res = model_int8(input_fp32)

    assert isinstance(model_int8.fc, nnq.dynamic.Linear) and isinstance(model_fp32.fc, nn.Linear)
    assert res.shape == (4, 4, 4, 4) and res.dtype == np.float32
    ref = model_fp32(input_fp32)
    assert np.linalg.norm(res - ref) / np.linalg.norm(ref) < 0.02


def test_docs_static_example():
    # define a floating point model where some layers could be statically quantized
    class M(npquant.nn.Module):
        def __init__(self):
            super().__init__()
            # QuantStub converts tensors from floating point to quantized
            self.quant = npquant.ao.quantization.QuantStub()
            self.conv = npquant.nn.Conv2d(1, 1, 1)
            self.relu = npquant.nn.ReLU()
            # DeQuantStub converts tensors from quantized to floating point
            self.dequant = npquant.ao.quantization.DeQuantStub()

        def forward(self, x):
            # manually specify where tensors will be converted from floating
            # point to quantized in the quantized model
            x = self.quant(x)
            x = self.conv(x)
            x = self.relu(x)
            # manually specify where tensors will be converted from quantized
            # to floating point in the quantized model
            x = self.dequant(x)
            return x

    # create a model instance
    model_fp32 = M()

    # model must be set to eval mode for static quantization logic to work
    model_fp32.eval()

    # attach a global qconfig, which contains information about what kind
    # of observers to attach. Use 'x86' for server inference and 'qnnpack'
    # for mobile inference. Other quantization configurations such as selecting
    # symmetric or asymmetric quantization and MinMax or L2Norm calibration techniques
    # can be specified here.
    # Note: the old 'fbgemm' is still available but 'x86' is the recommended default
    # for server inference.
    # model_fp32.qconfig = npquant.ao.quantization.get_default_qconfig('fbgemm')
    model_fp32.qconfig = npquant.ao.quantization.get_default_qconfig("x86")

    # Fuse the activations to preceding layers, where applicable.
    # This needs to be done manually depending on the model architecture.
    # Common fusions include `conv + relu` and `conv + batchnorm + relu`
    model_fp32_fused = npquant.ao.quantization.fuse_modules(model_fp32, [["conv", "relu"]])

    # Prepare the model for static quantization. This inserts observers in
    # the model that will observe activation tensors during calibration.
    model_fp32_prepared = npquant.ao.quantization.prepare(model_fp32_fused)

    # calibrate the prepared model to determine quantization parameters for activations
    # in a real world setting, the calibration would be done with a representative dataset
    input_fp32 = np.random.randn(4, 1, 4, 4)
    model_fp32_prepared(input_fp32)

    # Convert the observed model to a quantized model. This does several things:
    # quantizes the weights, computes and stores the scale and bias value to be
    # used with each activation tensor, and replaces key operators with quantized
    # implementations.
    model_int8 = npquant.ao.quantization.convert(model_fp32_prepared)

    # run the model, relevant calculations will happen in int8
    res = model_int8(input_fp32)

    assert isinstance(model_int8.quant, nnq.Quantize) and isinstance(model_int8.conv, nnq.ConvReLU2d)
    assert isinstance(model_int8.relu, nn.Identity) and isinstance(model_int8.dequant, nnq.DeQuantize)
    ref = model_fp32(input_fp32)
    assert res.shape == ref.shape == (4, 1, 4, 4)
    # loose on purpose: unseeded random weights, one batch of 64 values, and the
    # histogram observer may clip a lone large output (ref may also be all 0)
    assert np.abs(res - ref).max() <= 0.25 * np.abs(ref).max() + 1e-6


# ------------------------------------------------------------------ models against torch
def _mlp_classes(torch):
    def make(tnn, stubs):
        class MLP(tnn.Module):
            def __init__(self):
                super().__init__()
                self.quant = stubs.QuantStub()
                self.fc1 = tnn.Linear(32, 64)
                self.bn = tnn.BatchNorm1d(64)
                self.relu1 = tnn.ReLU()
                self.fc2 = tnn.Linear(64, 48)
                self.relu2 = tnn.ReLU()
                self.drop = tnn.Dropout(0.1)
                self.fc3 = tnn.Linear(48, 10)
                self.dequant = stubs.DeQuantStub()

            def forward(self, x):
                x = self.relu1(self.bn(self.fc1(self.quant(x))))
                x = self.relu2(self.fc2(x))
                return self.dequant(self.fc3(self.drop(x)))

        return MLP

    return make(torch.nn, torch.ao.quantization), make(nn, npquant.quantization)


def _resnet_classes(torch):
    def make(tnn, stubs, FF):
        class Block(tnn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(cout)
                self.relu1 = tnn.ReLU()
                self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(cout)
                self.down = None
                if stride != 1 or cin != cout:
                    self.down = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                self.skip = FF()
                self.relu2 = tnn.ReLU()

            def forward(self, x):
                y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
                idn = x if self.down is None else self.down(x)
                return self.relu2(self.skip.add(y, idn))

        class ResNet(tnn.Module):
            def __init__(self):
                super().__init__()
                self.quant = stubs.QuantStub()
                self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(16)
                self.relu = tnn.ReLU()
                self.pool = tnn.MaxPool2d(3, 2, 1)
                self.layer1 = Block(16, 16, 1)
                self.layer2 = Block(16, 32, 2)
                self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
                self.flatten = tnn.Flatten()
                self.fc = tnn.Linear(32, 10)
                self.dequant = stubs.DeQuantStub()

            def forward(self, x):
                x = self.pool(self.relu(self.bn1(self.conv1(self.quant(x)))))
                x = self.layer2(self.layer1(x))
                return self.dequant(self.fc(self.flatten(self.avgpool(x))))

        return ResNet

    fuse = [["conv1", "bn1", "relu"]]
    for layer in ("layer1", "layer2"):
        fuse += [[f"{layer}.conv1", f"{layer}.bn1", f"{layer}.relu1"], [f"{layer}.conv2", f"{layer}.bn2"]]
    fuse.append(["layer2.down.0", "layer2.down.1"])
    return (
        make(torch.nn, torch.ao.quantization, torch.ao.nn.quantized.FloatFunctional),
        make(nn, npquant.quantization, nn.FloatFunctional),
        fuse,
    )


def _compare(torch, TModel, NModel, fuse, shape, rng, calib_batches=4):
    torch.manual_seed(int(rng.integers(1 << 30)))
    tm = TModel()
    peers.randomize_bn(torch, tm)
    tm.eval()
    nm = NModel()
    nm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    nm.eval()
    x = rng.standard_normal((8,) + shape).astype(np.float32)
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
    yn = nm(x)
    fp32_rel = np.abs(yn - yt).max() / np.abs(yt).max()

    tm.qconfig = peers.torch_x86_qconfig(torch)
    tp = torch.ao.quantization.prepare(torch.ao.quantization.fuse_modules(tm, fuse))
    nm.qconfig = npquant.get_default_qconfig("x86")
    float_state = copy.deepcopy(nm.state_dict())
    np_ = npquant.prepare(npquant.fuse_modules(nm, fuse))
    with torch.no_grad():
        for _ in range(calib_batches):
            c = rng.standard_normal((16,) + shape).astype(np.float32)
            tp(torch.from_numpy(c))
            np_(c)
    tc = torch.ao.quantization.convert(tp)
    nc = npquant.convert(np_)
    qt = tc(torch.from_numpy(x)).numpy()
    qn = nc(x)
    # Where torch saturates on this CPU, compare with npquant's model computing torch's
    # saturating arithmetic in its GEMM layers (peers.emulate_torch); the rest is identical.
    emulated, counts = peers.emulate_torch(nc, "torch workflow models (layers)")
    assert set(counts) == {peers.TORCH_LINEAR_MODE}, counts
    int8_rel = np.linalg.norm(emulated(x) - qt) / np.linalg.norm(qt)
    # the float model is untouched and nothing of the calibration is left behind
    assert all(np.array_equal(v, nm.state_dict()[k]) for k, v in float_state.items())
    assert not any(isinstance(m, ObserverBase) for m in list(nm.modules()) + list(nc.modules()))
    assert not any(m._forward_hooks for m in nc.modules()) and not any(m._forward_hooks for m in nm.modules())
    assert not any("qconfig" in m.__dict__ for m in nc.modules())
    return fp32_rel, int8_rel, nc, qn


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
def test_mlp_matches_torch(torch, rng, mode):
    TMLP, NMLP = _mlp_classes(torch)
    fp32_rel, int8_rel, nc, _ = _compare(torch, TMLP, NMLP, [["fc1", "bn"], ["fc2", "relu2"]], (32,), rng)
    print(f"MLP: fp32 max rel {fp32_rel:.2e}, int8 rel L2 vs torch {int8_rel:.2e}")
    assert fp32_rel < 1e-4
    assert int8_rel < 0.01
    assert isinstance(nc.fc2, nnq.LinearReLU) and isinstance(nc.drop, nnq.Dropout)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
def test_resnet_matches_torch(torch, rng, mode):
    TRes, NRes, fuse = _resnet_classes(torch)
    fp32_rel, int8_rel, nc, qn = _compare(torch, TRes, NRes, fuse, (3, 16, 16), rng)
    print(f"ResNet: fp32 max rel {fp32_rel:.2e}, int8 rel L2 vs torch {int8_rel:.2e}")
    assert fp32_rel < 1e-4
    assert int8_rel < 0.01
    assert isinstance(nc.layer1.conv1, nnq.ConvReLU2d) and isinstance(nc.layer1.skip, nnq.QFunctional)
    assert isinstance(nc.pool, nnq.MaxPool2d) and isinstance(nc.flatten, nnq.Flatten)
    # a converted model survives deepcopy (weights are re-packed)
    z = np.zeros((1, 3, 16, 16), np.float32)
    np.testing.assert_array_equal(copy.deepcopy(nc)(z), nc(z))


# ------------------------------------------------------------------ fusion
def test_fuse_linear_bn_equals_torch(torch, rng):
    lin, bn = torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5)
    peers.randomize_bn(torch, bn)
    lin.eval()
    bn.eval()
    fused_t = torch.nn.utils.fusion.fuse_linear_bn_eval(lin, bn)
    nlin, nbn = nn.Linear(6, 5), nn.BatchNorm1d(5)
    nlin.load_state_dict({k: v.detach().numpy() for k, v in lin.state_dict().items()})
    nbn.load_state_dict({k: v.detach().numpy() for k, v in bn.state_dict().items()})
    fused = npquant.quantization.fuse_linear_bn_eval(nlin, nbn)
    np.testing.assert_array_equal(fused.weight, fused_t.weight.detach().numpy())
    np.testing.assert_array_equal(fused.bias, fused_t.bias.detach().numpy())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        rng = np.random.default_rng(0)  # fixed weights: the error bound below is data-dependent
        self.fc1 = nn.Linear(8, 16, rng=rng)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 4, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc2(self.relu1(self.fc1(self.quant(x)))))


def test_fuse_modules_structure_and_inplace():
    m = Net()
    fused = npquant.fuse_modules(m, [["fc1", "relu1"]])
    assert isinstance(fused.fc1, nn.intrinsic.LinearReLU) and isinstance(fused.relu1, nn.Identity)
    assert isinstance(m.fc1, nn.Linear) and isinstance(m.relu1, nn.ReLU)  # not inplace
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(fused(x), m(x))
    same = npquant.fuse_modules(m, ["fc1", "relu1"], inplace=True)
    assert same is m and isinstance(m.fc1, nn.intrinsic.LinearReLU)


def test_fuse_errors():
    m = Net()
    with pytest.raises(NotImplementedError, match=r"cannot fuse \(Linear, Linear\).*supports"):
        npquant.fuse_modules(m, [["fc1", "fc2"]])
    with pytest.raises(NotImplementedError, match=r"\(ReLU, Linear\)"):
        npquant.fuse_modules(m, [["relu1", "fc2"]])
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        npquant.fuse_modules(m, [["fc1", "nope"]])
    with pytest.raises(ValueError, match="cannot fold BatchNorm1d\\(5\\) into Linear with 16"):
        seq = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(5))
        npquant.fuse_modules(seq, [["0", "1"]])


# ------------------------------------------------------------------ workflow behaviour
def _calibrated(model, rng, n=8):
    model.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(model)
    for _ in range(n):
        p(rng.standard_normal((64, 8)).astype(np.float32))
    return p


def test_prepare_convert_structure_and_no_leaks(rng):
    m = Net()
    p = _calibrated(m, rng)
    assert p is not m and not any(isinstance(x, ObserverBase) for x in m.modules())
    assert isinstance(p.fc1.activation_post_process, npquant.observers.HistogramObserver)
    assert "activation_post_process" not in p.relu1._modules  # relu keeps its input's qparams
    q = npquant.convert(p)
    assert q is not p and isinstance(p.fc1, nn.Linear)  # the prepared model is untouched too
    assert [type(x).__name__ for x in q.children()] == ["Quantize", "Linear", "ReLU", "Linear", "DeQuantize"]
    assert isinstance(q.fc1, nnq.Linear) and isinstance(q.relu1, nnq.ReLU)
    assert not any(isinstance(x, ObserverBase) or x._forward_hooks for x in q.modules())
    x = rng.standard_normal((5, 8)).astype(np.float32)
    y, ref = q(x), m(x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.05
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(q))(x), y)  # weights re-packed on load
    inplace = npquant.convert(p, inplace=True)
    assert inplace is p and isinstance(p.fc1, nnq.Linear)


def test_user_hooks_survive_convert(rng):
    m = Net()
    seen = []
    m.fc2.register_forward_hook(lambda mod, args, out: seen.append(type(mod).__name__))
    q = npquant.convert(_calibrated(m, rng))
    q(np.ones((1, 8), np.float32))
    assert seen[-1] == "Linear" and isinstance(q.fc2, nnq.Linear)


def test_qconfig_none_keeps_float(rng):
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = nn.QuantStub()
            self.fc1 = nn.Linear(8, 16)
            self.dequant = nn.DeQuantStub()
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(self.dequant(self.fc1(self.quant(x))))

    m = Partial()
    m.fc2.qconfig = None
    q = npquant.convert(_calibrated(m, rng))
    assert isinstance(q.fc1, nnq.Linear) and type(q.fc2) is nn.Linear
    assert q(np.ones((2, 8), np.float32)).shape == (2, 4)


def test_convert_without_calibration_names_modules(rng):
    m = Net()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    with pytest.raises(RuntimeError, match=r"'quant', 'fc1', 'fc2' saw no data.*prepared\(x\)"):
        npquant.convert(p)


def test_missing_quantstub_is_a_clear_error(rng):
    class NoStub(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x)

    m = NoStub()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    p(rng.standard_normal((2, 8)).astype(np.float32))
    q = npquant.convert(p)
    with pytest.raises(TypeError, match="QuantStub"):
        q(np.ones((2, 8), np.float32))


def test_prepare_without_qconfig():
    with pytest.raises(ValueError, match="no module has a qconfig.*get_default_qconfig"):
        npquant.prepare(Net())


def test_quantize_with_run_fn(rng):
    m = Net()
    m.qconfig = npquant.default_qconfig
    data = [rng.standard_normal((4, 8)).astype(np.float32) for _ in range(3)]

    def calibrate(model, batches):
        for b in batches:
            model(b)

    q = npquant.quantize(m, calibrate, [data])
    assert isinstance(q.fc1, nnq.Linear) and isinstance(m.fc1, nn.Linear)
    assert q.fc1.weight().qscheme() == "per_tensor_affine"  # default_qconfig: per-tensor weights


def test_quantize_dynamic_variants(rng):
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4)))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    q = npquant.quantize_dynamic(m)
    assert isinstance(q[0], nnq.dynamic.Linear) and isinstance(q[2][0], nnq.dynamic.Linear)
    assert q[0].weight().qscheme() == "per_tensor_affine"
    qc = npquant.quantize_dynamic(m, {"2.0": npquant.per_channel_dynamic_qconfig})
    assert type(qc[0]) is nn.Linear and qc[2][0].weight().qscheme() == "per_channel_affine"
    assert np.linalg.norm(q(x) - m(x)) / np.linalg.norm(m(x)) < 0.02
    with pytest.raises(TypeError, match="int8"):
        npquant.quantize_dynamic(m, {nn.Linear}, dtype=npquant.quint8)
    lone = npquant.quantize_dynamic(nn.Linear(8, 2))
    assert isinstance(lone, nnq.dynamic.Linear)


def test_qconfig_api():
    for backend in ("x86", "fbgemm", "qnnpack", "native"):
        qc = npquant.get_default_qconfig(backend)
        act, w = qc.activation(), qc.weight()
        assert act.reduce_range is False and act.quant_max == 255
        assert w.dtype is npquant.qint8
    assert npquant.get_default_qconfig("qnnpack").weight().qscheme == "per_tensor_symmetric"
    assert npquant.get_default_qconfig("x86").weight().qscheme == "per_channel_symmetric"
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        npquant.get_default_qconfig("tpu")
    with pytest.raises(TypeError, match="observer instance"):
        npquant.QConfig(activation=npquant.observers.MinMaxObserver(), weight=None)


def test_float_functional_and_pools_convert(rng):
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = nn.QuantStub()
            self.fc1 = nn.Linear(8, 8, rng=rng)
            self.fc2 = nn.Linear(8, 8, rng=rng)
            self.add = nn.FloatFunctional()
            self.cat = nn.FloatFunctional()
            self.hs = nn.Hardswish()
            self.dequant = nn.DeQuantStub()

        def forward(self, x):
            x = self.quant(x)
            y = self.add.add_relu(self.fc1(x), self.fc2(x))
            return self.dequant(self.cat.cat([self.hs(y), x], 1))

    m = Res()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    for _ in range(8):
        p(rng.standard_normal((64, 8)).astype(np.float32))
    q = npquant.convert(p)
    assert isinstance(q.add, nnq.QFunctional) and isinstance(q.hs, nnq.Hardswish)
    assert q.add.scale == pytest.approx(float(p.add.activation_post_process.calculate_qparams()[0][0]))
    x = rng.standard_normal((4, 8)).astype(np.float32)
    ref, y = m(x), q(x)
    assert y.shape == (4, 16) and np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.05


def test_floatfunctional_used_only_for_scalar_ops_converts(rng):
    """add_scalar / mul_scalar are not observed (as in PyTorch); convert must not call
    such a FloatFunctional uncalibrated, and its unobserved ops say why when called."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.ff = nn.QuantStub(), nn.FloatFunctional()
            self.fc, self.dequant = nn.Linear(4, 4, rng=np.random.default_rng(1)), nn.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.fc(self.ff.mul_scalar(self.ff.add_scalar(self.quant(x), 1.0), 0.5)))

    m = M().eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    p(rng.standard_normal((16, 4)).astype(np.float32))
    q = npquant.convert(p)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    ref = m(x)
    assert np.linalg.norm(q(x) - ref) / np.linalg.norm(ref) < 0.05
    with pytest.raises(RuntimeError, match="only add_scalar/mul_scalar"):
        q.ff.add(q.quant(x), q.quant(x))
