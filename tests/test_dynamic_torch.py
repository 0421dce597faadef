"""PyTorch's dynamic Linear (quantize_dynamic, x86 engine) in npquant: its state dict
loads into npquant.nn.quantized.dynamic.Linear, and with reduce_range=True (torch's
7-bit activations; npquant.reduce_range_dynamic_qconfig) npquant chooses torch's
activation qparams and computes torch's int32 accumulators. The outputs are not bit
identical: torch's epilogue is one fused multiply-add, fma(float(acc), fl(xs * ws), b)
(measured on Zen 4), npquant's contract two roundings, fl(fl(float(acc) * s) + b)
(docs/interop.md); they differ by at most a couple of float32 ulps."""

import warnings

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.interop import torch_state_dict_to_numpy
from npquant.onnx import ExportError

import peers

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_dynamic():
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    torch.backends.quantized.engine = "x86"
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 8))
    return tm, torch.ao.quantization.quantize_dynamic(tm, {torch.nn.Linear}, dtype=torch.qint8)


def npquant_twin(qconfig):
    return npquant.quantize_dynamic(nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8)), {nn.Linear: qconfig})


def contract(x, w_codes, w_scale, bias, xs, xz):
    """npquant's dynamic contract in NumPy: y = fl(fl(float(acc) * fl(xs * ws)) + b)."""
    q = torch.quantize_per_tensor(torch.from_numpy(x), float(xs), int(xz), torch.quint8).int_repr().numpy()
    acc = (q.astype(np.int64) - xz) @ w_codes.astype(np.int64).T
    s = np.float32(np.float32(xs) * np.float32(w_scale))
    return ((acc.astype(np.float32) * s).astype(np.float32) + bias).astype(np.float32), acc, s


def test_reduce_range_gives_torchs_qparams_and_accumulators(torch_dynamic):
    tm, tq = torch_dynamic
    x = (np.random.default_rng(3).standard_normal((40, 64)) * 3).astype(np.float32)
    q = npquant_twin(npquant.reduce_range_dynamic_qconfig)
    assert q[0].reduce_range and q[2].reduce_range
    assert q.load_state_dict(torch_state_dict_to_numpy(tq.state_dict())) == ([], [])
    layer, tlayer = q[0], tq[0]
    w, b = tlayer._packed_params._weight_bias()
    xs, xz = torch._choose_qparams_per_tensor(torch.from_numpy(x), reduce_range=True)
    assert xz <= 127 and np.float32(xs) == np.float32((max(x.max(), 0) - min(x.min(), 0)) / 127)
    expect, acc, s = contract(x, w.int_repr().numpy(), w.q_scale(), b.detach().numpy(), xs, xz)
    got = layer(x)
    assert np.array_equal(got, expect)  # npquant's arithmetic on torch's 7-bit activations
    ref = tlayer(torch.from_numpy(x)).numpy()
    fused = (acc.astype(np.float64) * np.float64(s) + b.detach().numpy().astype(np.float64)).astype(np.float32)
    differing = int(np.count_nonzero(got != ref))
    # one rounding more or less: at most an ulp of the larger term (acc * s or b), which
    # can be many ulps of an output near zero
    term = np.maximum(np.abs((acc.astype(np.float32) * s).astype(np.float32)), np.abs(b.detach().numpy()))
    ulps = np.abs(got.astype(np.float64) - ref) / np.spacing(term)
    peers.record("torch dynamic Linear, reduce_range (outputs differing)", "measured", differing)
    peers.record(
        "torch dynamic Linear: torch == fma(acc, s, b) (outputs)", "measured", int(np.count_nonzero(fused == ref))
    )
    assert ulps.max() <= 2
    assert np.array_equal(fused, ref) or not peers.TORCH_VNNI  # measured on Zen 4
    without = npquant_twin(npquant.default_dynamic_qconfig)
    without.load_state_dict(torch_state_dict_to_numpy(tq.state_dict()))
    # 8-bit activations: other qparams, differences of whole activation steps
    assert np.abs(without[0](x) - ref).max() > 100 * np.abs(got - ref).max()


def test_reduce_range_qconfig_quantizes_like_torch_from_float(torch_dynamic):
    tm, tq = torch_dynamic
    m = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8))
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    q = npquant.quantize_dynamic(m, {nn.Linear: npquant.reduce_range_dynamic_qconfig})
    for mine, theirs in ((q[0], tq[0]), (q[2], tq[2])):
        w, _ = theirs._packed_params._weight_bias()
        assert np.array_equal(mine.weight().int_repr(), w.int_repr().numpy())
        assert np.float32(mine.weight().q_scale()) == np.float32(w.q_scale())


def test_reduce_range_round_trips_and_refuses_onnx(torch_dynamic, tmp_path):
    q = npquant_twin(npquant.reduce_range_dynamic_qconfig)
    npquant.save(q, tmp_path / "m.npq")
    back = npquant.load(tmp_path / "m.npq")
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    assert back[0].reduce_range and np.array_equal(back(x), q(x))
    assert "reduce_range=True" in repr(q[0])
    pytest.importorskip("onnx")
    with pytest.raises(ExportError, match="reduce_range=True"):
        npquant.onnx.export(q, x, tmp_path / "m.onnx")


def test_other_activation_ranges_are_refused():
    qc = npquant.QConfig(
        activation=npquant.observers.PlaceholderObserver.with_args(
            dtype=npquant.quint8, quant_min=0, quant_max=63, is_dynamic=True
        ),
        weight=npquant.observers.default_weight_observer,
    )
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        npquant_twin(qc)
