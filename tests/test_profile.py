"""npquant.profile: the table's structure (leaf modules only, each once, the remainder as
'other'), kernels and GMAC/s where they apply; no assertions on timings."""

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.profile import OTHER, Profile


class Block(nn.Module):
    def __init__(self, c, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.add = nn.FloatFunctional()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.add.add_relu(self.bn2(self.conv2(y)), x)


class TinyResNet(nn.Module):
    def __init__(self, rng, c=8):
        super().__init__()
        self.quant = nn.QuantStub()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(Block(c, rng), Block(c, rng))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, 10)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.stem(self.quant(x)))
        return self.dequant(self.fc(self.flatten(self.pool(self.layer1(x)))))


def quantized_model(rng):
    m = TinyResNet(rng).eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    fused = npquant.fuse_modules(
        m,
        [["stem", "relu"]]
        + [[f"layer1.{i}.conv1", f"layer1.{i}.bn1", f"layer1.{i}.relu"] for i in range(2)]
        + [[f"layer1.{i}.conv2", f"layer1.{i}.bn2"] for i in range(2)],
    )
    p = npquant.prepare(fused)
    for _ in range(3):
        p(rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    return npquant.convert(p)


def test_profile_quantized_resnet_like(rng):
    q = quantized_model(rng)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    before = q(x)
    prof = npquant.profile(q, x, repeat=3)
    assert isinstance(prof, Profile) and prof.repeat == 3 and prof.total_ms > 0
    names = [r.name for r in prof.rows]
    assert names[-1] == OTHER and len(set(names)) == len(names)
    leaves = {n for n, m in q.named_modules() if next(iter(m.children()), None) is None}
    assert set(names[:-1]) <= leaves  # only leaves, containers never
    assert {"stem", "fc", "layer1.0.add", "layer1.1.conv1", "quant", "dequant"} <= set(names)
    rows = {r.name: r for r in prof.rows}
    assert rows["layer1.0.add"].type == "QFunctional" and rows["layer1.0.add"].calls == 1
    for name in ("stem", "layer1.0.conv1", "fc"):
        r = rows[name]
        assert r.gmacs is not None and r.gmacs > 0 and r.kernel and r.isa, r
        assert r.kernel.split(": ")[-1] in str(npquant.cpu_info()["kernels"]) or r.isa in r.kernel
    assert rows["layer1.0.add"].gmacs is None and rows["layer1.0.add"].kernel  # the path that ran
    # 'other' is the rest of the median pass: the rows add up to at least the total
    assert all(r.ms >= 0 and 0 <= r.share for r in prof.rows)
    assert sum(r.ms for r in prof.rows) >= prof.total_ms * (1 - 1e-9)
    text = str(prof)
    assert text.splitlines()[0].split()[:3] == ["module", "type", "calls"] and OTHER in text and "total" in text
    # the model is unchanged afterwards (no timers left behind) and computes the same
    assert not any("forward" in m.__dict__ or "add_relu" in m.__dict__ for m in q.modules())
    np.testing.assert_array_equal(q(x), before)


def test_profile_float_model_and_linear_gmacs(rng):
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = rng.standard_normal((5, 16)).astype(np.float32)
    prof = npquant.profile(m, x, repeat=2)
    rows = {r.name: r for r in prof.rows}
    assert set(rows) == {"0", "1", "2", OTHER}
    assert rows["0"].gmacs > 0 and rows["1"].gmacs is None
    assert rows["0"].type == "Linear" and rows["0"].calls == 1


def test_profile_counts_repeated_calls_and_single_module(rng):
    lin = nn.Linear(4, 4)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x))

    x = rng.standard_normal((3, 4)).astype(np.float32)
    rows = {r.name: r for r in npquant.profile(Twice(), x, repeat=2).rows}
    assert rows["lin"].calls == 2 and rows["lin"].ms_per_call == pytest.approx(rows["lin"].ms / 2)
    assert [r.name for r in npquant.profile(lin, x).rows] == ["Linear", OTHER]


def test_profile_bad_arguments():
    with pytest.raises(TypeError, match="npquant.nn.Module"):
        npquant.profile(lambda x: x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="repeat"):
        npquant.profile(nn.ReLU(), np.zeros(3, np.float32), repeat=0)
