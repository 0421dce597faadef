"""npquant.compare: per-layer SQNR / max error / cosine, matched by module name."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.report import cosine, sqnr_db


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.fc1 = nn.Linear(64, 48, rng=rng)
        self.fc2 = nn.Linear(48, 48, rng=rng)
        self.fc3 = nn.Linear(48, 10, rng=rng)

    def forward(self, x):
        return self.fc3(np.maximum(self.fc2(np.maximum(self.fc1(x), 0)), 0))


def _dynamic(model, names):
    q = copy.deepcopy(model)
    for n in names:
        setattr(q, n, nn.quantized.dynamic.Linear.from_float(getattr(model, n)))
    return q


def _x(n=64, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)


def test_metrics():
    a = np.array([3.0, 4.0])
    assert sqnr_db(a, a) == math.inf
    assert sqnr_db(a, a * 0.9) == pytest.approx(20.0)  # noise = 0.1 * signal in amplitude
    assert sqnr_db(np.zeros(2), a) == -math.inf
    assert cosine(a, 2 * a) == pytest.approx(1.0) and cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(np.zeros(2), np.zeros(2)) == 1.0 and cosine(np.zeros(2), a) == 0.0


def test_compare_dynamic_layers():
    f = Net()
    q = _dynamic(f, ["fc1", "fc2", "fc3"])
    rep = npquant.compare(f, q, _x())
    assert [r.name for r in rep] == ["fc1", "fc2", "fc3"]
    for r in rep:
        assert r.float_type == "Linear" and r.quantized_type == "quantized.dynamic.Linear"
        assert 25 < r.layer_sqnr_db < 60 and 20 < r.sqnr_db < 60 and 0.99 < r.cosine <= 1.0
        assert r.max_abs_error > 0
    # errors accumulate: end-to-end SQNR at the last layer is below its SQNR alone
    assert rep["fc3"].sqnr_db < rep["fc3"].layer_sqnr_db
    assert rep["fc1"].sqnr_db == pytest.approx(rep["fc1"].layer_sqnr_db)
    expect = sqnr_db(f(_x()), q(_x()))
    assert rep.output.sqnr_db == pytest.approx(expect)
    text = str(rep)
    assert "fc2" in text and "SQNR dB" in text and "(model output)" in text


def test_compare_finds_the_layer_that_loses_accuracy():
    f = Net()
    q = _dynamic(f, ["fc1", "fc2", "fc3"])
    # a badly calibrated fc2: a weight scale 16x too coarse leaves ~4 bits
    coarse = float(np.abs(f.fc2.weight).max()) / 127 * 16
    q.fc2.set_weight_bias(npquant.quantize_per_tensor(f.fc2.weight, coarse, 0, npquant.qint8), f.fc2.bias)
    rep = npquant.compare(f, q, [_x(32, 1), _x(32, 2)])
    worst = min(rep, key=lambda r: r.layer_sqnr_db)
    assert worst.name == "fc2" and worst.layer_sqnr_db < rep["fc1"].layer_sqnr_db - 10
    assert rep["fc1"].numel == 64 * 48


def test_compare_leaves_models_untouched_and_skips_float_layers():
    f = Net()
    q = _dynamic(f, ["fc1", "fc3"])
    x = _x()
    before = q(x)
    rep = npquant.compare(f, q, x)
    assert rep["fc2"].sqnr_db > 20 and rep["fc2"].quantized_type == "Linear"
    assert rep["fc1"].quantized_type == "quantized.dynamic.Linear"
    assert "forward" not in f.fc1.__dict__ and "forward" not in q.fc1.__dict__
    assert np.array_equal(q(x), before)


def test_compare_input_errors():
    f = Net()
    with pytest.raises(TypeError, match="numpy array"):
        npquant.compare(f, f, [])
    with pytest.raises(TypeError, match="npquant.nn.Module"):
        npquant.compare(f, lambda x: x, _x())


# ------------------------------------------------------------------- static models, keep_float


class StaticMLP(nn.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.quant = nn.QuantStub()
        self.fc1, self.relu1 = nn.Linear(64, 96, rng=rng), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(96, 96, rng=rng), nn.ReLU()
        self.fc3 = nn.Linear(96, 10, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.relu1(self.fc1(self.quant(x)))
        return self.dequant(self.fc3(self.relu2(self.fc2(x))))


def _calibrate(model, batches):
    for b in batches:
        model(b)


def _fused():
    m = npquant.fuse_modules(StaticMLP().eval(), [["fc1", "relu1"], ["fc2", "relu2"]])
    m.qconfig = npquant.get_default_qconfig("x86")
    return m


def test_compare_labels_fused_groups():
    f = StaticMLP().eval()
    q = npquant.quantize(_fused(), _calibrate, [[_x(32, s) for s in range(4)]])
    rep = npquant.compare(f, q, _x(64, 9))
    assert [r.name for r in rep] == ["quant", "fc1+relu1", "fc2+relu2", "fc3", "dequant"]
    assert rep["fc1"].quantized_type == "quantized.LinearReLU" and rep["fc1"].float_type == "Linear"
    assert all(r.sqnr_db > 25 for r in rep) and rep.output.sqnr_db > 25


def test_keep_float_leaves_named_layers_in_float(tmp_path):
    from npquant.report import FloatIsland

    data = [[_x(32, s) for s in range(4)]]
    fused = _fused()
    q = npquant.quantize(fused, _calibrate, data, keep_float=["fc2"])
    assert isinstance(q.fc2, FloatIsland) and type(q.fc2.module).__name__ == "LinearReLU"
    assert type(q.fc2.module[0]) is nn.Linear  # still the float layer
    assert type(q.fc1).__name__ == "LinearReLU" and type(q.fc1) is not type(fused.fc1)
    assert type(fused.fc2) is not FloatIsland  # the input model is untouched
    x = _x(64, 9)
    full = npquant.quantize(fused, _calibrate, data)
    f = StaticMLP().eval()
    assert sqnr_db(f(x), q(x)) > 25
    assert npquant.compare(f, q, x)["fc2"].quantized_type == "report.FloatIsland"
    path = tmp_path / "kept.npq"
    npquant.save(q, path)
    back = npquant.load(path, custom_modules={"StaticMLP": StaticMLP})
    assert isinstance(back.fc2, FloatIsland) and np.array_equal(back(x), q(x))
    assert not np.array_equal(full(x), q(x))


def test_min_sqnr_keeps_every_weak_layer_in_float():
    from npquant.report import FloatIsland

    data = [[_x(32, s) for s in range(4)]]
    x = _x(64, 9)
    f = StaticMLP().eval()
    full = npquant.quantize(_fused(), _calibrate, data)
    alone = {r.name.split("+")[0]: r.layer_sqnr_db for r in npquant.compare(f, full, x) if r.name.startswith("fc")}
    ranked = sorted(alone, key=alone.get)
    threshold = (alone[ranked[0]] + alone[ranked[1]]) / 2  # only the weakest layer is below
    q = npquant.quantize(_fused(), _calibrate, data, min_sqnr_db=threshold, eval_inputs=x)
    kept = {n for n in ("fc1", "fc2", "fc3") if isinstance(getattr(q, n), FloatIsland)}
    assert kept == {ranked[0]}
    assert not isinstance(q.quant, FloatIsland)  # stubs are never "kept in float"


def test_keep_float_errors():

    with pytest.raises(KeyError, match="no submodule 'fc9'"):
        npquant.quantize(_fused(), _calibrate, [[_x()]], keep_float=["fc9"])
    with pytest.raises(ValueError, match="eval_inputs"):
        npquant.quantize(_fused(), _calibrate, [[_x()]], min_sqnr_db=30)
