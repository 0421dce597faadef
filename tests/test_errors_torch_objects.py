"""Errors at the earliest point, saying what to do: torch objects where npquant's are
expected, torch-style custom observers (accepted), activation dtypes npquant's static
layers cannot take, and fuse_modules in training mode."""

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.observers import MinMaxObserver, ProtocolObserver, default_weight_observer
from npquant.qparams import calculate_qparams


def mlp():
    rng = np.random.default_rng(0)
    return nn.Sequential(
        nn.QuantStub(), nn.Linear(8, 6, rng=rng), nn.ReLU(), nn.Linear(6, 4, rng=rng), nn.DeQuantStub()
    ).eval()


def _x(n=16):
    return np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)


def calibrated(qconfig):
    m = mlp()
    m.qconfig = qconfig
    p = npquant.prepare(m)
    p(_x())
    return npquant.convert(p)


# ------------------------------------------------------------------ torch objects
@pytest.fixture(scope="module")
def torch():
    t = pytest.importorskip("torch")
    import warnings

    warnings.filterwarnings("ignore", message=".*deprecated.*")
    return t


def test_torch_qconfig_is_refused_when_assigned(torch):
    tq = torch.ao.quantization
    m = mlp()
    with pytest.raises(TypeError, match=r"torch QConfig.*npquant.get_default_qconfig\('x86'\)"):
        m.qconfig = tq.get_default_qconfig("x86")
    with pytest.raises(TypeError, match="torch QConfig"):
        nn.QuantStub(qconfig=tq.default_qconfig)
    with pytest.raises(TypeError, match="torch QConfig"):
        npquant.propagate_qconfig_(mlp(), {"1": tq.default_qconfig})
    with pytest.raises(TypeError, match="torch QConfig"):
        npquant.quantize_dynamic(mlp(), {nn.Linear: tq.default_dynamic_qconfig})


def test_torch_observers_are_refused_naming_npquants(torch):
    tq = torch.ao.quantization
    for f, name in (
        (tq.MinMaxObserver.with_args(dtype=torch.quint8), "MinMaxObserver"),
        (tq.HistogramObserver, "HistogramObserver"),
        (tq.default_per_channel_weight_observer, "PerChannelMinMaxObserver"),
    ):
        with pytest.raises(TypeError, match=rf"torch's {name}.*npquant.observers.{name}.with_args"):
            npquant.QConfig(activation=f, weight=default_weight_observer)
    # a factory of ours that makes torch observers: refused at prepare
    m = mlp()
    m.qconfig = npquant.QConfig(activation=lambda: tq.MinMaxObserver(), weight=default_weight_observer)
    with pytest.raises(TypeError, match="torch's MinMaxObserver.*npquant.observers.MinMaxObserver"):
        npquant.prepare(m)
    with pytest.raises(TypeError, match=r"torch.quint8 -> npquant.quint8"):
        MinMaxObserver(dtype=torch.quint8)


def test_torch_models_types_and_tensors_are_refused(torch):
    tm = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    for fn in (npquant.prepare, npquant.convert, npquant.quantize_dynamic, npquant.propagate_qconfig_):
        with pytest.raises(TypeError, match=r"npquant.nn.Module, got torch's Sequential.*load_state_dict"):
            fn(tm)
    with pytest.raises(TypeError, match="npquant.nn.Module, got torch's Sequential"):
        npquant.fuse_modules(tm, ["0", "1"])
    with pytest.raises(TypeError, match="npquant.nn.Module, got torch's Sequential"):
        npquant.quantize(tm, lambda m: None, ())
    with pytest.raises(TypeError, match="qconfig_spec names torch.nn.*Linear.*use npquant.nn.Linear"):
        npquant.quantize_dynamic(mlp(), {torch.nn.Linear})
    with pytest.raises(TypeError, match="mapping names torch"):
        npquant.quantize_dynamic(mlp(), {nn.Linear}, mapping={torch.nn.Linear: npquant.nn.quantized.dynamic.Linear})
    with pytest.raises(TypeError, match="torch.qint8 -> |npquant.qint8"):
        npquant.quantize_dynamic(mlp(), {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(TypeError, match=r"torch.Tensor: pass x.detach\(\).numpy\(\)"):
        mlp()[1](torch.randn(2, 8))


def test_torch_state_dict_with_unreadable_objects_is_refused(torch):
    with pytest.raises(TypeError, match="'x' is a torch"):
        mlp().load_state_dict({"x": torch.nn.Linear(2, 2)})


# ------------------------------------------------------------------ torch-style observers
class MinMaxLike:
    """A custom observer in torch's style: forward + calculate_qparams only."""

    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf

    def forward(self, x):
        self.lo, self.hi = min(self.lo, x.min()), max(self.hi, x.max())
        return x

    def calculate_qparams(self):
        return calculate_qparams(np.float32(self.lo), np.float32(self.hi), 0, 255, symmetric=False)


class SymmetricPerChannelWeights:
    dtype = npquant.qint8
    qscheme = "per_channel_symmetric"
    ch_axis = 0

    def __call__(self, w):
        self.amax = np.abs(w).max(axis=1)
        return w

    def calculate_qparams(self):
        return calculate_qparams(-self.amax, self.amax, -128, 127, symmetric=True)


def test_torch_style_observers_give_the_same_model_as_npquants():
    ours = calibrated(npquant.QConfig(activation=MinMaxObserver, weight=default_weight_observer))
    theirs = calibrated(npquant.QConfig(activation=MinMaxLike, weight=default_weight_observer))
    assert np.array_equal(ours(_x(5)), theirs(_x(5)))
    per_channel = calibrated(npquant.QConfig(activation=MinMaxLike, weight=SymmetricPerChannelWeights))
    ref = calibrated(
        npquant.QConfig(activation=MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer)
    )
    assert per_channel[1].weight().qscheme() == "per_channel_affine"
    assert np.array_equal(per_channel(_x(5)), ref(_x(5)))


def test_torch_style_observer_errors_are_clear():
    class NoData(MinMaxLike):
        has_data = False

    m = mlp()
    m.qconfig = npquant.QConfig(activation=NoData, weight=default_weight_observer)
    p = npquant.prepare(m)
    assert isinstance(p[0].activation_post_process, ProtocolObserver)
    p(_x())
    with pytest.raises(RuntimeError, match="saw no data"):
        npquant.convert(p)

    def bad(result):
        class Bad(MinMaxLike):
            def calculate_qparams(self):
                return result

        return Bad

    for result, exc, match in (
        (None, TypeError, r"must return \(scale, zero_point\)"),
        ((np.array([-1.0]), np.array([0])), ValueError, "positive and finite"),
        ((np.array([0.1]), np.array([300])), ValueError, "zero points outside"),
        ((np.array(["a"]), np.array([0])), TypeError, "float scales"),
        ((np.array([0.1, 0.2]), np.array([0, 0])), ValueError, "per-channel"),
    ):
        m = mlp()
        m.qconfig = npquant.QConfig(activation=bad(result), weight=default_weight_observer)
        p = npquant.prepare(m)
        p(_x())
        with pytest.raises(exc, match=match):
            npquant.convert(p)

    class NotAnObserver:
        def forward(self, x):
            return x

    m = mlp()
    m.qconfig = npquant.QConfig(activation=NotAnObserver, weight=default_weight_observer)
    with pytest.raises(TypeError, match=r"'0'.*not an observer.*calculate_qparams\(\)"):
        npquant.prepare(m)


# ------------------------------------------------------------------ activation dtypes
def test_qint8_activations_are_refused_at_prepare():
    m = mlp()
    m.qconfig = npquant.QConfig(
        activation=MinMaxObserver.with_args(dtype=npquant.qint8), weight=default_weight_observer
    )
    with pytest.raises(TypeError, match=r"'0' \(QuantStub\) has dtype npquant.qint8.*dtype=npquant.quint8"):
        npquant.prepare(m)

    class Signed(MinMaxLike):
        dtype = npquant.qint8

    m.qconfig = npquant.QConfig(activation=Signed, weight=default_weight_observer)
    with pytest.raises(TypeError, match="quint8"):
        npquant.prepare(m)


def test_dynamic_qconfig_is_refused_at_prepare():
    m = mlp()
    m.qconfig = npquant.default_dynamic_qconfig
    with pytest.raises(ValueError, match="quantize_dynamic"):
        npquant.prepare(m)


def test_non_qconfigs_are_refused_when_assigned():
    m = mlp()
    for bad in ("x86", 3, MinMaxObserver):
        with pytest.raises(TypeError, match="must be an npquant.QConfig"):
            m.qconfig = bad


# ------------------------------------------------------------------ fuse_modules in training mode
def test_fuse_modules_refuses_to_fold_batchnorm_in_training_mode():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
    for group in (["0", "1", "2"], ["0", "1"]):
        with pytest.raises(RuntimeError, match=r"training mode.*model.eval\(\) before fuse_modules"):
            npquant.fuse_modules(m, group)
    assert type(m[0]) is nn.Conv2d  # unchanged
    m2 = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(RuntimeError, match="training mode"):
        npquant.fuse_modules(m2, ["0", "1"])
    # fusions that fold nothing are fine in training mode, as in torch
    npquant.fuse_modules(m, [["3", "4"]])
    npquant.fuse_modules(nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()), ["0", "1"])
    fused = npquant.fuse_modules(m.eval(), ["0", "1", "2"])
    assert isinstance(fused[0], nn.intrinsic.ConvReLU2d)
    with pytest.raises(TypeError, match="module names are strings"):
        npquant.fuse_modules(m, [["0", 1]])
