"""ONNX export of the activations (Hardsigmoid, Sigmoid, Tanh, LeakyReLU, ELU, SiLU,
GELU): float models run in ONNX Runtime within 1e-5 of npquant and load back with
npquant.onnx.load; in the integer format the quantized activations are lookup tables
equal to npquant bit for bit; in QDQ within one output step."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
from npquant import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_onnx import LEVELS, assert_exact, run_ort  # noqa: E402

ACTS = {
    "hardsigmoid": lambda: nn.Hardsigmoid(),
    "sigmoid": lambda: nn.Sigmoid(),
    "tanh": lambda: nn.Tanh(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": lambda: nn.ELU(0.7),
    "silu": lambda: nn.SiLU(),
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
}


@pytest.mark.parametrize("name", list(ACTS))
def test_float_export_runs_and_loads_back(name, rng, tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), ACTS[name]()).eval()
    x = (rng.standard_normal((2, 3, 6, 6)) * 3).astype(np.float32)
    path = tmp_path / f"{name}.onnx"
    npquant.onnx.export(m, x, path)
    np.testing.assert_allclose(run_ort(str(path), x), m(x), rtol=1e-5, atol=1e-5)
    if name.startswith("gelu"):  # npquant.onnx.load does not import the Erf / Tanh GELU patterns yet
        return
    back = npquant.onnx.load(str(path))
    np.testing.assert_allclose(back(x), m(x), rtol=1e-5, atol=1e-5)


def _quantized(name, rng):
    m = nn.Sequential(nn.QuantStub(), nn.Conv2d(3, 4, 3, padding=1, rng=rng), ACTS[name](), nn.DeQuantStub()).eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    for _ in range(2):
        p((rng.standard_normal((2, 3, 6, 6)) * 3).astype(np.float32))
    return npquant.convert(p)


@pytest.mark.parametrize("name", list(ACTS))
def test_integer_format_exact(name, rng, tmp_path):
    q = _quantized(name, rng)
    x = (rng.standard_normal((2, 3, 6, 6)) * 3).astype(np.float32)
    path = tmp_path / f"{name}_int.onnx"
    npquant.onnx.export(q, x, path, format="integer")
    for level in LEVELS:
        assert_exact(run_ort(str(path), x, level=level), np.ascontiguousarray(q(x)), name)


@pytest.mark.parametrize("name", list(ACTS))
def test_qdq_format_within_a_step(name, rng, tmp_path):
    """The quantized activation alone on a QTensor: DequantizeLinear, the float op,
    QuantizeLinear in ONNX Runtime, at most one output step from npquant's table."""
    act = _quantized(name, rng)[2]
    xq = npquant.quantize_per_tensor(
        (rng.standard_normal((2, 4, 6, 6)) * 3).astype(np.float32), 0.05, 120, npquant.quint8
    )
    path = tmp_path / f"{name}_qdq.onnx"
    proto = npquant.onnx.export(act, xq, path, format="qdq")
    assert "QuantizeLinear" in [n.op_type for n in proto.graph.node]
    want = act(xq)
    got = run_ort(str(path), xq).astype(np.int64)
    assert np.abs(got - want.int_repr().astype(np.int64)).max() <= 1, name
