"""Issue 15's acceptance test: a CNN quantization-aware trained in PyTorch (a few SGD
steps of torch.ao.quantization's eager QAT on random data, then convert) runs in
npquant from its state dict and from its QDQ ONNX export.

- From the state dict: npquant's output equals torch's converted model bit for bit
  where torch is exact on this CPU (peers.TORCH_LINEAR_MODE / torch_conv_mode), else
  torch's own saturating arithmetic (peers.emulate_torch) -- never a tolerance.
- From the ONNX file (torch.onnx.export, dynamo=False): the file holds each bias as
  int32 round(b / s), which the loaded model adds; torch's model given those same
  biases gives npquant's output bit for bit (or its emulation); with torch's own float
  biases the outputs differ only where that rounding crosses a tie (counted).
"""

import io

import numpy as np
import pytest

import npquant
from npquant.interop import torch_state_dict_to_numpy
from npquant.nn import quantized as nnq
from test_state_dict import CNN, CNN_FUSE, CNN_SHAPE, converted, torch_twin

import peers

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def qat_model():
    """torch's QAT CNN: fuse_modules_qat, prepare_qat, 8 SGD steps, convert (x86)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*deprecated.*")
    torch.backends.quantized.engine = "x86"
    tq = torch.ao.quantization
    torch.manual_seed(0)
    m = torch_twin(torch, CNN).train()
    m.qconfig = tq.get_default_qat_qconfig("x86")
    m = tq.prepare_qat(tq.fuse_modules_qat(m, CNN_FUSE))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        x = torch.randn(16, *CNN_SHAPE[1:], generator=g) * 2
        target = torch.randint(0, 5, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(m(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    return tq.convert(m)


def x_batch():
    return np.random.default_rng(11).standard_normal((32,) + CNN_SHAPE[1:]).astype(np.float32) * 2


def torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def agree_with_torch(q, ref, x, family):
    """npquant model q equals torch's output ref: bit for bit where torch is exact,
    else via torch's saturating arithmetic restated (peers.emulate_torch)."""
    twin, counts = peers.emulate_torch(q, family=f"{family} (layers)")
    out = twin(x)
    assert out.dtype == np.float32 and np.array_equal(out, ref)
    if not counts[peers.SATURATING]:
        assert np.array_equal(q(x), ref)
    peers.record(f"{family} (outputs)", peers.TORCH_LINEAR_MODE, out.size)


def test_qat_model_from_its_state_dict(qat_model, tmp_path):
    x = x_batch()
    ref = torch_out(qat_model, x)
    path = tmp_path / "qat.npz"
    np.savez(path, **torch_state_dict_to_numpy(qat_model.state_dict()))
    q = converted(CNN, CNN_FUSE, CNN_SHAPE, 5)
    assert q.load_state_dict(np.load(path)) == ([], [])
    agree_with_torch(q, ref, x, "QAT CNN from state dict")


def exported(model):
    """torch's TorchScript exporter (dynamo=False: the dynamo exporter does not take
    eager-quantized modules); it warns that it is the legacy one, and about tracing."""
    import warnings

    f = io.BytesIO()
    x = torch.from_numpy(x_batch()[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "n"}},
        )
    return f.getvalue()


def gemm_layers(model):
    return [m for _, m in model.named_modules() if isinstance(m, (nnq.Linear, nnq.Conv2d))]


def test_qat_model_from_its_qdq_onnx_export(qat_model):
    import copy

    x = x_batch()
    q = npquant.onnx.load(exported(qat_model))
    layers = gemm_layers(q)
    tlayers = [
        m
        for _, m in qat_model.named_modules()
        if isinstance(m, (torch.ao.nn.quantized.Linear, torch.ao.nn.quantized.Conv2d))
    ]
    assert len(layers) == len(tlayers) == 4
    # torch's model with the biases the file holds (int32 round(b / s), as npquant adds them)
    tq = copy.deepcopy(qat_model)
    tlayers = [
        m for _, m in tq.named_modules() if isinstance(m, (torch.ao.nn.quantized.Linear, torch.ao.nn.quantized.Conv2d))
    ]
    for mine, theirs in zip(layers, tlayers):
        w, b = theirs.weight(), theirs.bias()
        assert np.array_equal(mine.weight().int_repr(), w.int_repr().numpy())
        assert (np.float32(mine.scale), mine.zero_point) == (np.float32(theirs.scale), theirs.zero_point)
        if b is None:  # torch's exporter writes a zero int32 bias for a layer without one
            assert mine.bias() is None or not np.any(mine.bias())
        else:
            theirs.set_weight_bias(w, torch.from_numpy(mine.bias().copy()))
    agree_with_torch(q, torch_out(tq, x), x, "QAT CNN from QDQ ONNX (file's biases)")
    differing = int(np.count_nonzero(q(x) != torch_out(qat_model, x)))
    peers.record("QAT CNN from QDQ ONNX vs torch's float biases (outputs differing)", "measured", differing)
    assert differing <= x.shape[0] * 5 // 4
