"""npquant.observers: the same qparams as torch.ao.quantization's observers on the
same data, plus the error cases PyTorch only warns about."""

import numpy as np
import pytest

import npquant
from npquant import observers as O


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    return t


def _datasets(rng):
    normal = [rng.standard_normal((64, 100)).astype(np.float32) * (1 + i) for i in range(4)]
    outliers = [rng.standard_normal((32, 300)).astype(np.float32) for _ in range(3)]
    outliers[1][0, 0] = 40.0
    relu = [np.maximum(rng.standard_normal((16, 500)), 0).astype(np.float32) + i for i in range(3)]
    shift = [rng.uniform(lo, hi, (10, 100)).astype(np.float32) for lo, hi in ((1, 2), (-3, 0.5), (0, 5))]
    const_then_normal = [np.full((4, 10), 2.5, np.float32), rng.standard_normal((4, 50)).astype(np.float32)]
    return {"normal": normal, "outliers": outliers, "relu": relu, "shift": shift,
            "const_then_normal": const_then_normal}


def _configs(torch):
    tq = torch.ao.quantization.observer
    q8, tq8 = npquant.qint8, torch.qint8
    return [
        (O.MinMaxObserver, tq.MinMaxObserver, {}, {}),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(dtype=q8, qscheme=O.per_tensor_symmetric),
         dict(dtype=tq8, qscheme=torch.per_tensor_symmetric)),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(qscheme=O.per_tensor_symmetric),
         dict(qscheme=torch.per_tensor_symmetric)),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(reduce_range=True), dict(reduce_range=True)),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(quant_min=0, quant_max=127), dict(quant_min=0, quant_max=127)),
        (O.MovingAverageMinMaxObserver, tq.MovingAverageMinMaxObserver, dict(averaging_constant=0.1),
         dict(averaging_constant=0.1)),
        (O.PerChannelMinMaxObserver, tq.PerChannelMinMaxObserver,
         dict(dtype=q8, qscheme=O.per_channel_symmetric), dict(dtype=tq8, qscheme=torch.per_channel_symmetric)),
        (O.PerChannelMinMaxObserver, tq.PerChannelMinMaxObserver, dict(ch_axis=1), dict(ch_axis=1)),
        (O.MovingAveragePerChannelMinMaxObserver, tq.MovingAveragePerChannelMinMaxObserver, {}, {}),
        (O.HistogramObserver, tq.HistogramObserver, {}, {}),
        (O.HistogramObserver, tq.HistogramObserver, dict(qscheme=O.per_tensor_symmetric),
         dict(qscheme=torch.per_tensor_symmetric)),
        (O.HistogramObserver, tq.HistogramObserver, dict(bins=512, reduce_range=True),
         dict(bins=512, reduce_range=True)),
    ]


def test_qparams_equal_torch(torch, rng):
    """Every observer, every data set: identical float32 scales and zero points."""
    checked = 0
    for name, batches in _datasets(rng).items():
        for ncls, tcls, nkw, tkw in _configs(torch):
            if name == "const_then_normal" and "PerChannel" in ncls.__name__:
                continue  # channel counts differ between the batches
            obs, tobs = ncls(**nkw), tcls(**tkw)
            for b in batches:
                assert obs(b) is b  # observers return their input
                tobs(torch.from_numpy(b))
            scale, zp = obs.calculate_qparams()
            tscale, tzp = tobs.calculate_qparams()
            assert scale.dtype == np.float32 and zp.dtype == np.int64
            np.testing.assert_array_equal(scale, tscale.numpy(), err_msg=f"{name} {ncls.__name__} {nkw}")
            np.testing.assert_array_equal(zp, tzp.numpy(), err_msg=f"{name} {ncls.__name__} {nkw}")
            checked += 1
    assert checked == 5 * 12 - 3


def test_histogram_matches_torch_on_many_random_streams(torch, rng):
    """The L2 range search on varied distributions: scales within 1e-6, zero points equal."""
    worst = 0.0
    for trial in range(20):
        obs, tobs = O.HistogramObserver(), torch.ao.quantization.HistogramObserver()
        for _ in range(int(rng.integers(1, 5))):
            kind = rng.integers(0, 3)
            shape = (int(rng.integers(1, 50)), int(rng.integers(1, 200)))
            x = {0: rng.standard_normal(shape), 1: rng.laplace(size=shape),
                 2: rng.exponential(size=shape)}[int(kind)] * rng.uniform(0.01, 10) + rng.uniform(-1, 1)
            x = x.astype(np.float32)
            obs(x)
            tobs(torch.from_numpy(x))
        s, z = obs.calculate_qparams()
        ts, tz = tobs.calculate_qparams()
        worst = max(worst, float(abs(s[0] - ts[0]) / ts[0]))
        assert z[0] == tz[0], trial
    assert worst <= 1e-6


def test_with_args_and_factories():
    f = O.MinMaxObserver.with_args(dtype=npquant.qint8, qscheme=O.per_tensor_symmetric)
    a, b = f(), f()
    assert a is not b and a.dtype is npquant.qint8 and a.quant_min == -128
    g = f.with_args(reduce_range=True)
    assert g().quant_min == -64 and g().quant_max == 63
    assert "MinMaxObserver.with_args" in repr(f)


def test_default_is_full_range():
    assert (O.MinMaxObserver().quant_min, O.MinMaxObserver().quant_max) == (0, 255)
    assert O.HistogramObserver().reduce_range is False


def test_no_data_raises():
    for cls in (O.MinMaxObserver, O.MovingAverageMinMaxObserver, O.PerChannelMinMaxObserver,
                O.HistogramObserver, O.PercentileObserver):
        obs = cls() if "PerChannel" not in cls.__name__ else cls(dtype=npquant.qint8, qscheme=O.per_channel_symmetric)
        with pytest.raises(RuntimeError, match="seen no data"):
            obs.calculate_qparams()
        obs(np.zeros((0, 3), np.float32))  # empty input is ignored, as in torch
        with pytest.raises(RuntimeError, match="seen no data"):
            obs.calculate_qparams()


def test_bad_input():
    obs = O.MinMaxObserver()
    with pytest.raises(ValueError, match="NaN or Inf"):
        obs(np.array([1.0, np.nan], np.float32))
    with pytest.raises(TypeError, match="QTensor"):
        obs(npquant.quantize_per_tensor(np.ones(3, np.float32), 0.1, 0, npquant.quint8))
    with pytest.raises(TypeError, match="float arrays"):
        obs(np.arange(3))
    with pytest.raises(ValueError, match="qscheme"):
        O.MinMaxObserver(qscheme="per_tensor_weird")
    with pytest.raises(ValueError, match="PerChannelMinMaxObserver"):
        O.MinMaxObserver(qscheme=O.per_channel_symmetric)
    with pytest.raises(ValueError, match="must contain 0"):
        O.MinMaxObserver(quant_min=1, quant_max=200)
    pc = O.PerChannelMinMaxObserver()
    pc(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        pc(np.ones((5, 3), np.float32))


def test_percentile_clips_outliers(rng):
    x = rng.standard_normal(200_000).astype(np.float32)
    x[:3] = [80.0, -60.0, 70.0]
    mm, pct = O.MinMaxObserver(), O.PercentileObserver(percentile=99.99)
    mm(x)
    pct(x)
    s_mm, s_pct = mm.calculate_qparams()[0][0], pct.calculate_qparams()[0][0]
    # the 99.99th percentile of a standard normal is about 3.7: the range shrinks ~20x
    assert s_pct < s_mm / 10
    lo_hi = pct._search_range()
    assert -4.5 < lo_hi[0] < -3.0 and 3.0 < lo_hi[1] < 4.5
    full = O.PercentileObserver(percentile=100.0)
    full(x)
    assert full.calculate_qparams()[0][0] == pytest.approx(s_mm, rel=1e-6)


def test_placeholder():
    p = O.PlaceholderObserver(dtype=npquant.quint8, is_dynamic=True)
    x = np.ones(3, np.float32)
    assert p(x) is x
    with pytest.raises(RuntimeError, match="no qparams"):
        p.calculate_qparams()


def test_observer_state_dict_keys():
    obs = O.MinMaxObserver()
    obs(np.array([-1.0, 2.0], np.float32))
    sd = obs.state_dict()
    assert list(sd) == ["min_val", "max_val"] and sd["min_val"] == -1.0 and sd["max_val"] == 2.0
