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
    return {
        "normal": normal,
        "outliers": outliers,
        "relu": relu,
        "shift": shift,
        "const_then_normal": const_then_normal,
    }


def _configs(torch):
    tq = torch.ao.quantization.observer
    q8, tq8 = npquant.qint8, torch.qint8
    return [
        (O.MinMaxObserver, tq.MinMaxObserver, {}, {}),
        (
            O.MinMaxObserver,
            tq.MinMaxObserver,
            dict(dtype=q8, qscheme=O.per_tensor_symmetric),
            dict(dtype=tq8, qscheme=torch.per_tensor_symmetric),
        ),
        (
            O.MinMaxObserver,
            tq.MinMaxObserver,
            dict(qscheme=O.per_tensor_symmetric),
            dict(qscheme=torch.per_tensor_symmetric),
        ),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(reduce_range=True), dict(reduce_range=True)),
        (O.MinMaxObserver, tq.MinMaxObserver, dict(quant_min=0, quant_max=127), dict(quant_min=0, quant_max=127)),
        (
            O.MovingAverageMinMaxObserver,
            tq.MovingAverageMinMaxObserver,
            dict(averaging_constant=0.1),
            dict(averaging_constant=0.1),
        ),
        (
            O.PerChannelMinMaxObserver,
            tq.PerChannelMinMaxObserver,
            dict(dtype=q8, qscheme=O.per_channel_symmetric),
            dict(dtype=tq8, qscheme=torch.per_channel_symmetric),
        ),
        (O.PerChannelMinMaxObserver, tq.PerChannelMinMaxObserver, dict(ch_axis=1), dict(ch_axis=1)),
        (O.MovingAveragePerChannelMinMaxObserver, tq.MovingAveragePerChannelMinMaxObserver, {}, {}),
        (O.HistogramObserver, tq.HistogramObserver, {}, {}),
        (
            O.HistogramObserver,
            tq.HistogramObserver,
            dict(qscheme=O.per_tensor_symmetric),
            dict(qscheme=torch.per_tensor_symmetric),
        ),
        (
            O.HistogramObserver,
            tq.HistogramObserver,
            dict(bins=512, reduce_range=True),
            dict(bins=512, reduce_range=True),
        ),
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


def _growing_stream(rng):
    """A calibration sequence as a network's activations give it: 2-7 batches of
    varied sizes and distributions whose range grows, shrinks and shifts."""
    out, scale = [], 1.0
    for _ in range(int(rng.integers(2, 8))):
        scale *= float(rng.uniform(0.7, 2.5))
        shape = (3, 4, int(rng.integers(2, 2000)))  # channel counts fixed on axes 0 and 1
        kind = int(rng.integers(0, 4))
        if kind == 0:
            x = rng.standard_normal(shape) * scale
        elif kind == 1:  # post-ReLU with an offset
            x = np.maximum(rng.standard_normal(shape), 0) * scale + rng.normal()
        elif kind == 2:
            x = rng.laplace(size=shape) * scale
        else:
            x = rng.uniform(-scale * rng.random(), scale, shape)
        out.append(x.astype(np.float32))
    return out


def _every_config(torch):
    """(npquant class, torch class, npquant kwargs, torch kwargs) for every observer and
    qscheme/dtype torch supports for it."""
    tq = torch.ao.quantization.observer
    q8, tq8 = npquant.qint8, torch.qint8
    sym, tsym = O.per_tensor_symmetric, torch.per_tensor_symmetric
    csym, ctsym = O.per_channel_symmetric, torch.per_channel_symmetric
    per_tensor = [
        ({}, {}),
        (dict(dtype=q8), dict(dtype=tq8)),
        (dict(qscheme=sym), dict(qscheme=tsym)),
        (dict(dtype=q8, qscheme=sym), dict(dtype=tq8, qscheme=tsym)),
        (dict(reduce_range=True), dict(reduce_range=True)),
        (dict(quant_min=0, quant_max=127), dict(quant_min=0, quant_max=127)),
    ]
    per_channel = [
        ({}, {}),
        (dict(dtype=q8, qscheme=csym), dict(dtype=tq8, qscheme=ctsym)),
        (dict(ch_axis=1), dict(ch_axis=1)),
        (dict(ch_axis=-2, dtype=q8), dict(ch_axis=-2, dtype=tq8)),
    ]
    out = []
    for nk, tk in per_tensor:
        out.append((O.MinMaxObserver, tq.MinMaxObserver, nk, tk))
        out.append(
            (
                O.MovingAverageMinMaxObserver,
                tq.MovingAverageMinMaxObserver,
                dict(nk, averaging_constant=0.3),
                dict(tk, averaging_constant=0.3),
            )
        )
        out.append((O.HistogramObserver, tq.HistogramObserver, nk, tk))
    out.append((O.HistogramObserver, tq.HistogramObserver, dict(bins=512), dict(bins=512)))
    for nk, tk in per_channel:
        out.append((O.PerChannelMinMaxObserver, tq.PerChannelMinMaxObserver, nk, tk))
        out.append((O.MovingAveragePerChannelMinMaxObserver, tq.MovingAveragePerChannelMinMaxObserver, nk, tk))
    return out


@pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max")
def test_every_observer_bit_identical_on_growing_streams(torch, rng):
    """Fed the same float32 batches, every observer gives torch's qparams bit for bit,
    and the histogram observers hold torch's histogram bit for bit, however the range
    grows (the re-binning uses torch.linspace's FMA rounding, the range search
    torch.sum's order)."""
    configs = _every_config(torch)
    checked = 0
    for _ in range(4):
        stream = _growing_stream(rng)
        for ncls, tcls, nkw, tkw in configs:
            obs, tobs = ncls(**nkw), tcls(**tkw)
            for b in stream:
                obs(b)
                tobs(torch.from_numpy(b))
            what = f"{ncls.__name__} {nkw}"
            if hasattr(tobs, "histogram"):
                np.testing.assert_array_equal(obs.histogram, tobs.histogram.numpy(), err_msg=what)
            scale, zp = obs.calculate_qparams()
            tscale, tzp = tobs.calculate_qparams()
            np.testing.assert_array_equal(scale, tscale.numpy(), err_msg=what)
            np.testing.assert_array_equal(zp, tzp.numpy(), err_msg=what)
            checked += 1
    assert checked == 4 * len(configs) == 4 * 27


def test_histogram_matches_torch_on_many_random_streams(torch, rng):
    """The L2 range search on varied distributions: identical scales and zero points."""
    for trial in range(20):
        obs, tobs = O.HistogramObserver(), torch.ao.quantization.HistogramObserver()
        for _ in range(int(rng.integers(1, 5))):
            kind = rng.integers(0, 3)
            shape = (int(rng.integers(1, 50)), int(rng.integers(1, 200)))
            x = {0: rng.standard_normal(shape), 1: rng.laplace(size=shape), 2: rng.exponential(size=shape)}[
                int(kind)
            ] * rng.uniform(0.01, 10) + rng.uniform(-1, 1)
            x = x.astype(np.float32)
            obs(x)
            tobs(torch.from_numpy(x))
        s, z = obs.calculate_qparams()
        ts, tz = tobs.calculate_qparams()
        assert s[0] == ts[0] and z[0] == tz[0], trial


def test_linspace32_is_torch_linspace(torch, rng):
    """npquant._f32.linspace32: torch.linspace's float32 points bit for bit (the old
    start + step*i without FMA differed in about 20% of them)."""
    from npquant._f32 import linspace32

    for _ in range(100):
        a = np.float32(rng.normal() * rng.choice([1e-3, 1, 100]))
        b = np.float32(a + abs(rng.normal()) * rng.choice([1e-3, 1, 100]) + 1e-3)
        for n in (1, 2, 3, 100, 257, 2049, 32769):
            want = torch.linspace(torch.tensor(a), torch.tensor(b), n).numpy()
            np.testing.assert_array_equal(linspace32(a, b, n), want, err_msg=f"{a} {b} {n}")


def test_sum32_is_torch_sum(torch, rng):
    """npquant._f32.sum32: torch.sum's float32 result bit for bit, every length class
    (scalar path, tails, one cascade level and several)."""
    from npquant._f32 import sum32

    lengths = list(range(0, 70)) + [127, 128, 129, 255, 256, 1000, 2048, 2049, 4096, 8191, 32768]
    for n in lengths:
        for k in range(3):
            x = (rng.standard_normal(n) * rng.choice([1, 1e3, 1e6])).astype(np.float32)
            x = np.abs(x) if k == 2 else x
            assert sum32(x) == np.float32(torch.from_numpy(x).sum().item()), (n, k)
    with pytest.raises(ValueError, match="at most 32768"):
        sum32(np.zeros(32769, np.float32))


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
    for cls in (
        O.MinMaxObserver,
        O.MovingAverageMinMaxObserver,
        O.PerChannelMinMaxObserver,
        O.HistogramObserver,
        O.PercentileObserver,
    ):
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
