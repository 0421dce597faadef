"""npquant.models' torchvision architectures without torchvision: state-dict keys and
shapes equal torchvision's (tests/data/torchvision_state_dict_shapes.json, dumped from
torchvision 0.29's quantizable models), weights round-trip through .npz, fuse_model keeps
the float function and leaves no BatchNorm, and the fused model quantizes and runs.
Agreement with torchvision itself (fp32, int8 codes, observers) is bench/vision_models.py,
run by hand where torchvision imports."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import npquant
import npquant.models as nm
from npquant import nn

SHAPES = json.load(open(os.path.join(os.path.dirname(__file__), "data", "torchvision_state_dict_shapes.json")))
BUILDERS = {
    "resnet18": nm.resnet18,
    "resnet50": nm.resnet50,
    "mobilenet_v2": nm.mobilenet_v2,
    "mobilenet_v3_large": nm.mobilenet_v3_large,
    "shufflenet_v2_x1_0": nm.shufflenet_v2_x1_0,
    "googlenet": nm.googlenet,
    "inception_v3": nm.inception_v3,
}
SLOW = ("resnet50", "inception_v3")
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in BUILDERS]


def _random_state(name: str, rng) -> dict:
    """A torchvision-shaped state dict with random weights and sane BatchNorm statistics."""
    state = {}
    for k, shape in SHAPES[name].items():
        if k.endswith("num_batches_tracked"):
            state[k] = np.array(0, np.int64)
        elif k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif k.endswith("running_mean") or k.endswith("bias"):
            state[k] = rng.uniform(-0.2, 0.2, shape).astype(np.float32)
        elif len(shape) == 1:  # BatchNorm weight
            state[k] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # conv / linear weight, He-scaled
            fan_in = int(np.prod(shape[1:]))
            state[k] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return state


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_keys_and_shapes_are_torchvisions(name):
    got = {k: list(np.shape(v)) for k, v in BUILDERS[name]().state_dict().items()}
    assert list(got) == list(SHAPES[name])  # same keys in the same order
    assert got == SHAPES[name]


@pytest.mark.parametrize("name", NAMES)
def test_load_fuse_quantize(name, rng, tmp_path):
    state = _random_state(name, rng)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **state)
    model = BUILDERS[name](weights=str(path))
    from_dict = BUILDERS[name](weights=state)
    size = 80 if name == "inception_v3" else 48  # Inception v3 needs >= 75
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    y = model(x)
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))
    np.testing.assert_array_equal(from_dict(x), y)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)

    model.fuse_model()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    np.testing.assert_allclose(model(x), y, rtol=1e-4, atol=1e-4 * float(np.abs(y).max()))

    # MinMax activations keep this quick (the histogram observer's search is Python);
    # test_observers.py holds every observer to torch's
    model.qconfig = npquant.QConfig(
        activation=npquant.observers.MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer
    )
    prepared = npquant.prepare(model)
    for _ in range(2):
        prepared(rng.standard_normal((2, 3, size, size)).astype(np.float32))
    q = npquant.convert(prepared)
    yq = q(x)
    assert yq.shape == y.shape
    sqnr = 10 * np.log10(np.sum(y.astype(np.float64) ** 2) / np.sum((yq - y).astype(np.float64) ** 2))
    assert sqnr > 12, f"{name}: int8 SQNR {sqnr:.1f} dB against fp32"
    quantized = [type(m).__name__ for m in q.modules()]
    assert "BatchNorm2d" not in quantized and any(t in quantized for t in ("ConvReLU2d", "Conv2d"))

    # the int8 model saves and loads (every block class is known to npquant.save)
    npquant.save(q, str(tmp_path / "q.npq"))
    back = npquant.load(str(tmp_path / "q.npq"))
    assert [type(a) for a in back.modules()] == [type(b) for b in q.modules()]
    np.testing.assert_array_equal(back(x), yq)


@pytest.mark.parametrize("name, prefix", [("googlenet", "aux"), ("inception_v3", "AuxLogits.")])
def test_pretrained_state_dicts_without_aux_heads_load(name, prefix, rng):
    """torchvision's pretrained GoogLeNet / Inception v3 drop their auxiliary heads:
    such a state dict builds the model without them."""
    state = {k: v for k, v in _random_state(name, rng).items() if not k.startswith(prefix)}
    model = BUILDERS[name](weights=state)
    assert set(model.state_dict()) == set(state)


def test_bad_weights():
    with pytest.raises(TypeError, match="state dict"):
        nm.resnet18(weights=42)
    with pytest.raises(KeyError, match="missing keys"):
        nm.resnet18(weights={"fc.weight": np.zeros((1000, 512), np.float32)})


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large"])
def test_onnx_export_and_import(name, rng, tmp_path):
    """The float model exports and loads back (npquant.onnx.load) within 1e-5 (the ONNX
    HardSigmoid is alpha * x + beta, torch's relu6(x + 3) / 6);
    the int8 model exports in the integer format and ONNX Runtime gives npquant's output
    bit for bit."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = BUILDERS[name](weights=_random_state(name, rng))
    x = rng.standard_normal((1, 3, 48, 48)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "f.onnx")
    y = model(x)
    np.testing.assert_allclose(
        npquant.onnx.load(str(tmp_path / "f.onnx"))(x), y, rtol=1e-5, atol=1e-5 * float(np.abs(y).max())
    )
    model.fuse_model()
    model.qconfig = npquant.QConfig(
        activation=npquant.observers.MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer
    )
    prepared = npquant.prepare(model)
    prepared(rng.standard_normal((2, 3, 48, 48)).astype(np.float32))
    q = npquant.convert(prepared)
    npquant.onnx.export(q, x, tmp_path / "q.onnx", format="integer")
    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_array_equal(got, np.ascontiguousarray(q(x)))
