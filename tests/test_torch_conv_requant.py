"""PyTorch 2.13's two x86 requantizations, restated in NumPy and checked code by code.

Where oneDNN runs torch's quantized Conv2d (peers.torch_conv_mode: AVX-512 VNNI and
groups <= 100, decided from CPUID), its codes equal peers.onednn_requantize of the exact
int32 accumulator, which is not npquant's contract (peers.requantize): the two differ by
one code at rare near-ties (docs/peers.md, "PyTorch's oneDNN conv requantization").
torch's quantized Linear (FBGEMM) equals the contract exactly. Skips without torch or
where the peer is not exact / not oneDNN on this CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import peers

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

F32 = np.float32


@pytest.fixture(autouse=True)
def x86_engine() -> None:
    torch.backends.quantized.engine = "x86"


def exact_conv_acc(xq: np.ndarray, xz: int, wq: np.ndarray, pad: int, groups: int) -> np.ndarray:
    """sum (x - xz) * w in int64, (N*OH*OW, Cout), stride 1, padding reads real zero."""
    n, cin, h, w = xq.shape
    cout, cg, k, _ = wq.shape
    xp = np.zeros((n, cin, h + 2 * pad, w + 2 * pad), np.int64)
    xp[:, :, pad : pad + h, pad : pad + w] = xq.astype(np.int64) - xz
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    og = cout // groups
    out = np.zeros((n, oh, ow, cout), np.int64)
    for i in range(k):
        for j in range(k):
            tap = xp[:, :, i : i + oh, j : j + ow]  # (n, cin, oh, ow)
            for g in range(groups):
                xg = tap[:, g * cg : (g + 1) * cg]
                wg = wq[g * og : (g + 1) * og, :, i, j].astype(np.int64)  # (og, cg)
                out[..., g * og : (g + 1) * og] += np.einsum("nchw,oc->nhwo", xg, wg)
    return out.reshape(-1, cout)


def random_conv(rng: np.random.Generator, near_ties: bool) -> dict[str, Any]:
    groups = int(rng.choice([1, 1, 2, 3, 4]))
    cg, og, k = int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
    h, w = int(rng.integers(k, 20)), int(rng.integers(k, 20))
    c: dict[str, Any] = dict(
        groups=groups, k=k, pad=k // 2, cin=cg * groups, cout=og * groups, relu=bool(rng.integers(2)),
        xs=F32(np.exp(rng.uniform(-6, 0))), xz=int(rng.integers(0, 256)),
        ws=np.exp(rng.uniform(-8, -2, og * groups)).astype(F32),
        ys=F32(np.exp(rng.uniform(-4, 1))), yz=int(rng.integers(0, 256)),
    )  # fmt: skip
    c["xq"] = rng.integers(0, 256, (1, c["cin"], h, w)).astype(np.uint8)
    c["wq"] = rng.integers(-128, 128, (c["cout"], cg, k, k)).astype(np.int8)
    c["acc"] = exact_conv_acc(c["xq"], c["xz"], c["wq"], c["pad"], groups)
    s = (c["xs"] * c["ws"]).astype(F32)
    c["bias"] = (rng.standard_normal(c["cout"]) * rng.uniform(0, 300) * s).astype(F32)
    if near_ties:  # per channel, put one output point within a few ulps of a .5 tie
        r0 = rng.integers(0, c["acc"].shape[0], c["cout"])
        t = c["acc"][r0, np.arange(c["cout"])] * np.float64(c["xs"]) * c["ws"]
        half = rng.integers(-100, 100, c["cout"]) + 0.5
        b = (half * np.float64(c["ys"]) - t).astype(F32)
        c["bias"] = (b.view(np.int32) + rng.integers(-3, 4, c["cout"]).astype(np.int32)).view(F32)
    return c


def torch_conv_codes(c: dict[str, Any]) -> np.ndarray:
    import torch.ao.nn.intrinsic.quantized as tnniq
    import torch.ao.nn.quantized as tnnq

    cls = tnniq.ConvReLU2d if c["relu"] else tnnq.Conv2d
    m = cls(c["cin"], c["cout"], c["k"], padding=c["pad"], groups=c["groups"])
    scales = torch.from_numpy(c["ws"].astype(np.float64))
    qw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(c["wq"]), scales, torch.zeros(c["cout"], dtype=torch.long), 0
    )
    m.set_weight_bias(qw, torch.from_numpy(c["bias"]))
    m.scale, m.zero_point = float(c["ys"]), c["yz"]
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(c["xq"]), float(c["xs"]), c["xz"])
    y = m(x).int_repr().numpy()
    return y.transpose(0, 2, 3, 1).reshape(-1, c["cout"])


def conv_is_onednn_exact(c: dict[str, Any]) -> bool:
    k, p = (c["k"], c["k"]), (c["pad"], c["pad"])
    mode = peers.torch_conv_mode(c["cin"], c["cout"], c["groups"], k, (1, 1), p, (1, 1))
    return mode == peers.EXACT and peers.TORCH_VNNI and c["groups"] <= 100


@pytest.mark.parametrize("seed", range(4))
def test_onednn_conv_codes_equal_numpy_formula(seed: int) -> None:
    """torch's oneDNN conv codes == peers.onednn_requantize(exact acc), every code, with
    and without ReLU, groups, random and engineered near-tie biases. Also checks that
    the contract's formula (peers.requantize) does differ somewhere across the seeds'
    near-tie cases, i.e. that the cases can tell the two formulas apart."""
    rng = np.random.default_rng(1000 + seed)
    checked = contract_diff = 0
    for i in range(60):
        c = random_conv(rng, near_ties=bool(i % 2))
        if not conv_is_onednn_exact(c):
            continue
        got = torch_conv_codes(c).astype(np.int64)
        args = (c["acc"], c["xs"], c["ws"], c["bias"], c["ys"], c["yz"], c["relu"])
        want = peers.onednn_requantize(*args).astype(np.int64)
        bad = np.argwhere(got != want)
        assert bad.size == 0, (i, bad[:5], got[tuple(bad[0])], want[tuple(bad[0])])
        contract_diff += int((peers.requantize(*args).astype(np.int64) != got).sum())
        checked += got.size
    if not checked:
        pytest.skip("torch's Conv2d is not oneDNN-exact on this CPU (peers.torch_conv_mode)")
    peers.record("conv requant oneDNN formula", peers.EXACT, checked)
    assert contract_diff > 0, "the near-tie cases no longer separate oneDNN's formula from the contract"


@pytest.mark.parametrize("seed", range(3))
def test_fbgemm_linear_codes_equal_contract(seed: int) -> None:
    """torch's quantized Linear (FBGEMM, exact with VNNI) == peers.requantize, the
    contract, on random and near-tie cases; oneDNN's conv formula is not what it does."""
    if peers.TORCH_LINEAR_MODE != peers.EXACT:
        pytest.skip("torch's Linear saturates on this CPU (peers.TORCH_LINEAR_MODE)")
    import torch.ao.nn.intrinsic.quantized as tnniq
    import torch.ao.nn.quantized as tnnq

    rng = np.random.default_rng(2000 + seed)
    checked = onednn_diff = 0
    for i in range(60):
        m_, k_, n_ = int(rng.integers(1, 300)), int(rng.integers(1, 200)), int(rng.integers(1, 40))
        xs, xz = F32(np.exp(rng.uniform(-6, 0))), int(rng.integers(0, 256))
        ws = np.exp(rng.uniform(-8, -2, n_)).astype(F32)
        ys, yz, relu = F32(np.exp(rng.uniform(-4, 1))), int(rng.integers(0, 256)), bool(rng.integers(2))
        xq = rng.integers(0, 256, (m_, k_)).astype(np.uint8)
        wq = rng.integers(-128, 128, (n_, k_)).astype(np.int8)
        acc = (xq.astype(np.int64) - xz) @ wq.astype(np.int64).T
        bias = (rng.standard_normal(n_) * rng.uniform(0, 300) * xs * ws).astype(F32)
        if i % 2:  # near-tie biases, in the contract's own arithmetic
            r0 = rng.integers(0, m_, n_)
            s = (xs * ws).astype(np.float64)
            half = rng.integers(-100, 100, n_) + 0.5
            bias = ((half * np.float64(ys) / s - acc[r0, np.arange(n_)]) * s).astype(F32)
            bias = (bias.view(np.int32) + rng.integers(-3, 4, n_).astype(np.int32)).view(F32)
        lin = (tnniq.LinearReLU if relu else tnnq.Linear)(k_, n_)
        qw = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(wq), torch.from_numpy(ws.astype(np.float64)), torch.zeros(n_, dtype=torch.long), 0
        )
        lin.set_weight_bias(qw, torch.from_numpy(bias))
        lin.scale, lin.zero_point = float(ys), yz
        got = lin(torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq), float(xs), xz)).int_repr().numpy()
        want = peers.requantize(acc, xs, ws, bias, ys, yz, relu)
        bad = np.argwhere(got != want)
        assert bad.size == 0, (i, bad[:5])
        onednn_diff += int((peers.onednn_requantize(acc, xs, ws, bias, ys, yz, relu) != got).sum())
        checked += got.size
    peers.record("linear requant contract", peers.EXACT, checked)
    assert onednn_diff > 0, "the near-tie cases no longer separate the contract from oneDNN's formula"
