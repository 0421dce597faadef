"""ONNX export of ChannelShuffle and Upsample (nearest, bilinear): ONNX Runtime equals
npquant bit for bit, on float arrays and on QTensors, in every format."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
from npquant import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_onnx import LEVELS, assert_exact, run_ort  # noqa: E402

MODULES = {
    "shuffle": lambda: nn.ChannelShuffle(2),
    "nearest2x": lambda: nn.Upsample(scale_factor=2),
    "nearest": lambda: nn.UpsamplingNearest2d(size=(11, 7)),
    "bilinear": lambda: nn.Upsample(size=(13, 9), mode="bilinear"),
    "bilinear_ac": lambda: nn.UpsamplingBilinear2d(scale_factor=1.7),
}


@pytest.mark.parametrize("fmt", ["qdq", "integer"])
@pytest.mark.parametrize("name", list(MODULES))
def test_exact_on_floats_and_qtensors(name, fmt, rng, tmp_path):
    m = MODULES[name]()
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    xq = npquant.quantize_per_tensor(x, 0.03, 117, npquant.quint8)
    for inp in (x, xq):
        path = str(tmp_path / f"{name}.onnx")
        npquant.onnx.export(m, inp, path, format=fmt)
        for level in LEVELS:
            got = run_ort(path, inp, level=level)
            want = m(inp)
            if isinstance(want, npquant.QTensor):
                assert_exact(got, want, name)
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)


def test_in_a_quantized_model(rng, tmp_path):
    m = nn.Sequential(
        nn.QuantStub(),
        nn.Conv2d(3, 4, 3, padding=1, rng=rng),
        nn.Upsample(scale_factor=2),
        nn.ChannelShuffle(2),
        nn.Upsample(size=(15, 13), mode="bilinear"),
        nn.DeQuantStub(),
    ).eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    p(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    q = npquant.convert(p)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    path = str(tmp_path / "q.onnx")
    npquant.onnx.export(q, x, path, format="integer")
    np.testing.assert_array_equal(run_ort(path, x), np.ascontiguousarray(q(x)))
