"""The patterns of torchvision's mobilenet_v3_large and shufflenet_v2 (SE block with
Hardsigmoid, channel shuffle, chunk, mean, dynamic batch): QTensor shape ops against
torch's quantized tensors, and npquant.onnx.load of small torch-exported models with
those patterns (no torchvision needed)."""

import io
import warnings

import numpy as np
import pytest

import npquant
from npquant.qtensor import channel_shuffle

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")


def _pair(nhwc: bool):
    x = np.random.RandomState(0).randn(2, 6, 5, 7).astype(np.float32)
    q = npquant.quantize_per_tensor(x, 0.03, 120, npquant.quint8)
    if nhwc:
        q = npquant.QTensor.from_nhwc(np.ascontiguousarray(q.nhwc()), 0.03, 120)
    return q, torch.quantize_per_tensor(torch.from_numpy(x), 0.03, 120, torch.quint8)


def _same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        return all(_same(u, v) for u, v in zip(a, b))
    assert tuple(a.shape) == tuple(b.shape)
    assert (np.float32(a.q_scale()), a.q_zero_point()) == (np.float32(b.q_scale()), b.q_zero_point())
    np.testing.assert_array_equal(a.int_repr(), b.int_repr().numpy())
    return True


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("op", [
    lambda t: t.transpose(1, 2), lambda t: t.permute(0, 2, 3, 1), lambda t: t.chunk(2, 1),
    lambda t: t.chunk(4, 1), lambda t: t.split([1, 5], 1), lambda t: t.split(4, 3), lambda t: t.mean([2, 3]),
    lambda t: t.mean([2, 3], keepdim=True), lambda t: t.mean(1), lambda t: t.mean(3), lambda t: t.flatten(1),
    lambda t: t.view(2, 3, 2, 35).contiguous(),
])
def test_qtensor_shape_ops_match_torch(op, nhwc):
    q, tq = _pair(nhwc)
    _same(op(q), op(tq))


@pytest.mark.parametrize("nhwc", [False, True])
def test_channel_shuffle_matches_torch(nhwc):
    q, tq = _pair(nhwc)
    n, c, h, w = tq.shape
    ref = tq.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
    _same(channel_shuffle(q, 2), ref)
    _same(channel_shuffle(q, 3), torch.nn.functional.channel_shuffle(tq, 3))
