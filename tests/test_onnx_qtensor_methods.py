"""ONNX export of QTensor methods called in forward (transpose, permute, chunk, split,
reshape, mean): Transpose / Split / Reshape of the codes, and mean as integer sums with
npquant's rounding, so ONNX Runtime equals npquant bit for bit in both formats; and a
converted ShuffleNetV2 (chunk, cat, channel shuffle) exports in the integer format with
identical outputs."""

from __future__ import annotations

import numpy as np
import pytest

import npquant
import npquant.models
from npquant import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_onnx import LEVELS, assert_exact, run_ort  # noqa: E402


class Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.cat = nn.quantized.QFunctional()
        self.cat.scale, self.cat.zero_point = 0.03, 117

    def forward(self, x):
        a, b = x.chunk(2, 1)
        c, d, e = x.split([1, 2, 1], dim=1)
        t = x.transpose(2, 3)
        p = x.permute(0, 2, 3, 1)
        q = x.permute((3, 1, 0, 2))
        r = self.cat.cat([b, a], 1).reshape(x.shape[0], -1)
        return a, b, c, d, e, t, p, q, r


class Means(nn.Module):
    def forward(self, x):
        return (
            x.mean([2, 3]),
            x.mean((-1, -2), keepdim=True),
            x.mean(1),
            x.mean(3, keepdim=True),
            x.mean([1, 3]),
            x.mean(),
        )


@pytest.mark.parametrize("fmt", ["qdq", "integer"])
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("shape, zp", [((2, 16, 7, 5), 3), ((3, 24, 4, 6), 0), ((1, 40, 9, 12), 200)])
def test_mean_exact(fmt, nhwc, shape, zp, rng, tmp_path):
    """QTensor.mean over (2, 3) is npquant's AdaptiveAvgPool2d(1) (per storage order), over
    other dims the float64 mean rounded half to even: the same codes from ONNX Runtime,
    also at exact .5 means (the first channel is a checkerboard of codes 0 and 1, whose
    mean over an even count is a tie)."""
    x = npquant.quantize_per_tensor(rng.standard_normal(shape).astype(np.float32), 0.05, zp, npquant.quint8)
    codes = x.int_repr()
    codes[:, 0] = np.indices(shape[2:]).sum(0) % 2
    x = npquant.QTensor(codes, 0.05, zp)
    if nhwc:
        x = npquant.QTensor.from_nhwc(np.ascontiguousarray(x.nhwc()), 0.05, zp)
    m = Means()
    path = str(tmp_path / "means.onnx")
    proto = npquant.onnx.export(m, x, path, format=fmt, dynamic_batch=False)
    assert {"ReduceSum", "Round"} <= {n.op_type for n in proto.graph.node}
    for level in LEVELS:
        for i, (got, want) in enumerate(zip(run_ort(path, x, level=level), m(x))):
            assert_exact(got, want, f"output {i}")


@pytest.mark.parametrize("fmt", ["qdq", "integer"])
def test_methods_exact(fmt, rng, tmp_path):
    x = npquant.quantize_per_tensor(rng.standard_normal((2, 4, 3, 5)).astype(np.float32), 0.03, 117, npquant.quint8)
    m = Ops()
    path = str(tmp_path / "ops.onnx")
    proto = npquant.onnx.export(m, x, path, format=fmt, dynamic_batch=False)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Split", "Transpose"} <= ops
    for level in LEVELS:
        for i, (got, want) in enumerate(zip(run_ort(path, x, level=level), m(x))):
            assert_exact(got, want, f"output {i}")


def test_shufflenet_int8_exports_exact(rng, tmp_path):
    model = npquant.models.shufflenet_v2_x1_0()
    model.fuse_model()
    model.qconfig = npquant.QConfig(
        activation=npquant.observers.MinMaxObserver, weight=npquant.observers.default_per_channel_weight_observer
    )
    prepared = npquant.prepare(model)
    prepared(rng.standard_normal((2, 3, 48, 48)).astype(np.float32))
    q = npquant.convert(prepared)
    x = rng.standard_normal((1, 3, 48, 48)).astype(np.float32)
    path = str(tmp_path / "shufflenet.onnx")
    npquant.onnx.export(q, x, path, format="integer")
    np.testing.assert_array_equal(run_ort(path, x), np.ascontiguousarray(q(x)))
