"""npquant.freeze: the replayed native calls give the eager forward's result bit for bit
(several architectures, threads, a second input shape), and a forward that cannot be
replayed, or a bad input, is a clear error that leaves npquant as it was."""

import numpy as np
import pytest

import npquant
import npquant.models as nm
from npquant import _C, nn

from onnx_models import calibrated


def quantized(model, calib):
    if hasattr(model, "fuse_model"):
        model.eval().fuse_model()
        return calibrated(model, calib)
    return calibrated(model, calib, [["stem", "relu"]] if type(model) is Mixed else None)


class Mixed(nn.Module):
    """What the vision models do, small: stem + ReLU, depthwise, add, cat, pools, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.add = nn.FloatFunctional()
        self.cat = nn.FloatFunctional()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 5)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.stem(self.quant(x)))
        y = self.add.add_relu(self.pw(self.dw(x)), x)
        z = self.cat.cat([self.pool(y), self.pool(x)], dim=1)
        return self.dequant(self.fc(self.flatten(self.gap(z))))


class Unfused(Mixed):
    """Mixed with its ReLU left unfused and a ReLU6 after the depthwise conv: the quantized
    ReLU and ReLU6 run on their own (natively for quint8 codes), as in a model a user
    quantized without fuse_modules."""

    def __init__(self):
        super().__init__()
        self.relu6 = nn.ReLU6()

    def forward(self, x):
        x = self.relu(self.stem(self.quant(x)))
        y = self.add.add_relu(self.pw(self.relu6(self.dw(x))), x)
        z = self.cat.cat([self.pool(y), self.pool(x)], dim=1)
        return self.dequant(self.fc(self.flatten(self.gap(z))))


def images(rng, n, hw=32):
    return rng.normal(0, 1, (n, 3, hw, hw)).astype(np.float32)


@pytest.mark.parametrize("arch", ["mixed", "unfused", "digits_cnn", "mobilenet_v2", "resnet18", "googlenet"])
def test_frozen_equals_eager(arch, rng):
    if arch in ("mixed", "unfused"):
        q, x = quantized(Mixed() if arch == "mixed" else Unfused(), [images(rng, 4)]), images(rng, 2)
    elif arch == "digits_cnn":
        fused = [[f"conv{i}", f"bn{i}", f"relu{i}"] for i in (1, 2, 3)] + [["fc1", "relu4"]]
        digits = npquant.fuse_modules(nm.digits_cnn().eval(), fused)
        q = quantized(digits, [rng.random((16, 1, 32, 32), dtype=np.float32)])
        x = rng.random((3, 1, 32, 32), dtype=np.float32)
    else:
        q, x = quantized(getattr(nm, arch)(num_classes=10), [images(rng, 2, 64)]), images(rng, 1, 64)
    frozen = npquant.freeze(q, x)
    before = npquant.get_num_threads()
    try:
        for threads in (1, 2):
            npquant.set_num_threads(threads)
            for _ in range(2):
                x2 = rng.normal(0, 1.5, x.shape).astype(np.float32)
                want, got = q(x2), frozen(x2)
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want)
        # another batch size: recorded on first use, then replayed
        x3 = np.concatenate([x, x[:1] * 0.5])
        np.testing.assert_array_equal(frozen(x3), q(x3))
        np.testing.assert_array_equal(frozen(x3), q(x3))
        assert len(frozen._programs) == 2
    finally:
        npquant.set_num_threads(before)


class Reuses(nn.Module):
    """A forward written around a quantized Mixed's layers (after convert)."""

    def __init__(self, q, forward):
        super().__init__()
        self.q, self._fn = q, forward
        self.eval()

    def forward(self, x):
        return self._fn(self.q, x)


def test_frozen_returns_a_qtensor_when_the_model_does(rng):
    q = Reuses(quantized(Mixed(), [images(rng, 2)]), lambda q, x: q.pool(q.stem(q.quant(x))))
    x = images(rng, 1)
    got, want = npquant.freeze(q, x)(x), q(x)
    assert isinstance(got, npquant.QTensor)
    assert (got.q_scale(), got.q_zero_point(), got.shape) == (want.q_scale(), want.q_zero_point(), want.shape)
    np.testing.assert_array_equal(got.int_repr(), want.int_repr())


def test_numpy_between_native_calls_is_a_freeze_error(rng):
    def flips_in_numpy(q, x):
        x = q.stem(q.quant(x))
        flipped = npquant.QTensor(np.ascontiguousarray(x.int_repr()[:, :, ::-1]), x.q_scale(), x.q_zero_point())
        return q.dequant(q.pool(flipped))

    q = Reuses(quantized(Mixed(), [images(rng, 2)]), flips_in_numpy)
    x = images(rng, 1)
    before = _C.quantize_u8
    with pytest.raises(npquant.FreezeError, match=r"native call \d+ \(\w+\).*made outside npquant._C"):
        npquant.freeze(q, x)
    assert _C.quantize_u8 is before  # the recording hooks are gone
    np.testing.assert_array_equal(q(x), q(x))  # the model still runs eagerly


def test_data_dependent_qparams_are_a_freeze_error(rng):
    class ScalesFromData(nn.Module):
        def forward(self, x):
            t = npquant.quantize_per_tensor(x, float(np.abs(x).max()) / 127 + 1e-6, 128, npquant.quint8)
            return t.dequantize()

    with pytest.raises(npquant.FreezeError, match="differs between two inputs"):
        npquant.freeze(ScalesFromData().eval(), images(rng, 1))


def test_a_forward_that_raises_leaves_no_hooks(rng):
    class Fails(nn.Module):
        def forward(self, x):
            npquant.quantize_per_tensor(x, 0.1, 128, npquant.quint8)
            raise RuntimeError("broken forward")

    before = _C.conv2d_static
    with pytest.raises(RuntimeError, match="broken forward"):
        npquant.freeze(Fails().eval(), images(rng, 1))
    assert _C.conv2d_static is before


def test_bad_inputs_are_clear_errors(rng):
    q = quantized(Mixed(), [images(rng, 2)])
    x = images(rng, 1)
    with pytest.raises(TypeError, match="npquant.nn.Module"):
        npquant.freeze(lambda t: t, x)
    with pytest.raises(ValueError, match="eval"):
        npquant.freeze(Mixed(), x)
    with pytest.raises(TypeError, match="float32"):
        npquant.freeze(q, x.astype(np.float64))
    with pytest.raises(ValueError, match="NaN"):
        npquant.freeze(q, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="empty"):
        npquant.freeze(q, x[:0])
    frozen = npquant.freeze(q, x)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        frozen([1.0, 2.0])
    with pytest.raises(TypeError, match="float32"):
        frozen(x.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        frozen(np.asfortranarray(images(rng, 2)))
    bad = x.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        frozen(bad)  # the native quantize's check, replayed
    with pytest.raises(npquant.FreezeError, match="no native"):
        npquant.freeze(nn.Identity().eval(), x)
    assert "recorded for input shapes (1, 3, 32, 32)" in repr(frozen)
