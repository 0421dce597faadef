"""npquant against PyTorch 2.13 (engine x86): quantize_per_tensor bit-identical; static
Linear bit-identical given the same qparams where torch is exact on this CPU, and equal to
torch's own saturating arithmetic (peers.py) where it is not; dynamic Linear at least as
close to fp32 as torch's quantize_dynamic on the same weights."""

import numpy as np
import pytest

import npquant

import npref
import peers

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def x86_engine():
    torch.backends.quantized.engine = "x86"
    torch.set_num_threads(1)


def test_quantize_per_tensor_bit_identical(rng):
    diffs = total = 0
    for _ in range(200):
        scale = float(np.float32(np.exp(rng.uniform(-9, 3))))
        x = rng.normal(0, scale * rng.uniform(1, 200), 5000).astype(np.float32)
        # ties: values whose x/scale lands exactly on .5
        x[:100] = ((rng.integers(-300, 300, 100) + 0.5) * scale).astype(np.float32)
        for dtype, tdt, zp in (
            (npquant.quint8, torch.quint8, int(rng.integers(0, 256))),
            (npquant.qint8, torch.qint8, int(rng.integers(-128, 128))),
        ):
            a = npquant.quantize_per_tensor(x, scale, zp, dtype).int_repr()
            b = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, tdt).int_repr().numpy()
            diffs += int(np.sum(a != b))
            total += a.size
    assert total == 2_000_000 and diffs == 0


def _torch_qlinear(x_q, xs, xz, w_q, ws, bias, ys, yz, relu):
    tx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), xs, xz)
    tw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(w_q), torch.from_numpy(ws.astype(np.float64)), torch.zeros(len(ws), dtype=torch.long), 0
    )
    tb = None if bias is None else torch.from_numpy(bias)
    packed = torch.ops.quantized.linear_prepack(tw, tb)
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    return op(tx, packed, ys, yz).int_repr().numpy()


@pytest.mark.parametrize("mode", [peers.TORCH_LINEAR_MODE])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_static_linear_bit_identical(with_bias, relu, mode, rng):
    """Full-range random codes. mode 'exact' (AVX-512 VNNI): npquant's codes are torch's.
    mode 'saturating': torch's are FBGEMM's saturating pairs (peers.fbgemm_pairs_acc), and
    npquant's are the exact contract (npref), so the difference is torch's alone."""
    diffs = total = 0
    for _ in range(60):
        m, k, n = int(rng.integers(1, 200)), int(rng.integers(1, 1500)), int(rng.integers(1, 400))
        w_f = rng.normal(0, 0.05, (n, k)).astype(np.float32)
        qw = npquant.nn.quantized._packed.quantize_weight_symmetric(w_f)
        ws = qw.q_per_channel_scales()
        bias = rng.normal(0, 1, n).astype(np.float32) if with_bias else None
        x = rng.normal(0, 1, (m, k)).astype(np.float32)
        xs, xz = float(np.float32(rng.uniform(0.005, 0.05))), int(rng.integers(0, 256))
        xq = npquant.quantize_per_tensor(x, xs, xz, npquant.quint8)
        ys = float(np.float32(rng.uniform(0.01, 0.3) * np.sqrt(k) * 0.05))
        yz = int(rng.integers(0, 256))
        layer = (npquant.nn.quantized.LinearReLU if relu else npquant.nn.quantized.Linear)(k, n)
        layer.set_weight_bias(qw, bias)
        layer.scale, layer.zero_point = ys, yz
        ours = layer(xq).int_repr()
        theirs = _torch_qlinear(xq.int_repr(), xs, xz, qw.int_repr(), ws, bias, ys, yz, relu)
        if mode == peers.SATURATING:
            np.testing.assert_array_equal(
                ours, npref.linear_static(xq.int_repr(), xs, xz, qw.int_repr(), ws, bias, ys, yz, relu)
            )
            ours = peers.requantize(
                peers.fbgemm_pairs_acc(xq.int_repr(), xz, qw.int_repr()), xs, ws, bias, ys, yz, relu
            )
        diffs += int(np.sum(ours != theirs))
        total += ours.size
    peers.record("torch static Linear", mode, 60)
    assert total > 100_000 and diffs == 0


def test_dynamic_linear_at_least_as_close_to_fp32_as_torch(rng):
    worse = 0
    for _ in range(20):
        m, k, n = int(rng.integers(1, 64)), int(rng.integers(16, 1024)), int(rng.integers(8, 512))
        tlin = torch.nn.Linear(k, n)
        x = (rng.normal(0, 1, (m, k)) * rng.uniform(0.1, 10)).astype(np.float32)
        tq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(tlin), {torch.nn.Linear}, dtype=torch.qint8)
        with torch.no_grad():
            ref = tlin(torch.from_numpy(x)).numpy()
            theirs = tq(torch.from_numpy(x)).numpy()
        tw = tq[0].weight()  # the same int8 weights torch uses
        qw = npquant.QTensor(tw.int_repr().numpy(), tw.q_scale(), tw.q_zero_point(), npquant.qint8)
        ours_layer = npquant.nn.quantized.dynamic.Linear(k, n)
        ours_layer.set_weight_bias(qw, tlin.bias.detach().numpy())
        ours = ours_layer(x)
        e_ours = np.linalg.norm(ours - ref)
        e_theirs = np.linalg.norm(theirs - ref)
        worse += e_ours > e_theirs
    assert worse == 0
