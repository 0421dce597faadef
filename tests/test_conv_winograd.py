"""The exact int8 Winograd F(2x2, 3x3) conv path (csrc/npquant/ops/winograd.h): bit for
bit equal to the reference on random 3x3 stride-1 convs, on each ISA that has a Winograd
kernel; its exactness bound on both sides; which layers it takes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import npquant
from npquant import _C

from conftest import run_python

RUNNABLE_ISAS = _C.cpu_info()["runnable_isas"]


def has_winograd(isa: str) -> bool:
    w = np.zeros((16, 16, 3, 3), np.int8)
    return _C.PackedConv2dWeight(w, padding=(1, 1, 1, 1), isa=isa, winograd=True).path == "winograd"


WINO_ISAS = [isa for isa in RUNNABLE_ISAS if has_winograd(isa)]


def random_case(rng):
    """A 3x3 stride-1 conv: channels around the kernels' 16-channel steps and column
    panels, images smaller than a 2x2 tile and odd sizes, asymmetric padding 0..2."""
    cin = int(rng.choice([int(rng.integers(1, 40)), int(rng.integers(1, 300))]))
    cout = int(rng.choice([int(rng.integers(1, 50)), int(rng.integers(1, 200))]))
    n = int(rng.choice([1, 1, 2, int(rng.integers(1, 9))]))
    pad = tuple(int(v) for v in rng.integers(0, 3, 4))
    h_min, w_min = max(1, 3 - pad[0] - pad[2]), max(1, 3 - pad[1] - pad[3])
    h, w = (int(v) for v in rng.integers(1, 18, 2))
    h, w = max(h, h_min), max(w, w_min)
    while n * (h + pad[0] + pad[2] - 2) * (w + pad[1] + pad[3] - 2) * cin * cout * 9 > 4_000_000:
        if (n, h, w) == (1, h_min, w_min):
            break
        n, h, w = max(1, n // 2), max(h_min, h * 3 // 4), max(w_min, w * 3 // 4)
    return dict(n=n, h=h, w=w, cin=cin, cout=cout, pad=pad)


def random_data(rng, c):
    x = rng.integers(0, 256, (c["n"], c["h"], c["w"], c["cin"]), dtype=np.uint8)
    wt = rng.integers(-128, 128, (c["cout"], c["cin"], 3, 3), dtype=np.int8)
    if rng.random() < 0.2:  # extremes: every weight -128 or 127, inputs 0 or 255
        wt = np.where(rng.random(wt.shape) < 0.5, -128, 127).astype(np.int8)
        x = np.where(rng.random(x.shape) < 0.5, 0, 255).astype(np.uint8)
    xz = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    yz = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    xs = np.float32(rng.uniform(0.005, 0.1))
    ys = np.float32(xs * 0.01 * np.sqrt(9 * c["cin"]) * 128 * rng.uniform(0.2, 3))
    if rng.random() < 0.5:  # per-channel weight scales, else one per tensor
        ws = rng.uniform(0.005, 0.015, c["cout"]).astype(np.float32)
    else:
        ws = np.full(c["cout"], rng.uniform(0.005, 0.015), np.float32)
    bias = rng.normal(0, 1, c["cout"]).astype(np.float32) if rng.random() < 0.7 else None
    relu = bool(rng.random() < 0.3)
    return x, wt, xs, xz, ws, bias, ys, yz, relu


def reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu):
    return _C.reference.conv2d_static(x, xz, wt, (1, 1), c["pad"], (1, 1), 1, xs, ws, bias, ys, yz, relu)


def test_some_isa_has_winograd():
    # The scalar kernel is built everywhere.
    assert "scalar" in WINO_ISAS


@pytest.mark.parametrize("isa", WINO_ISAS)
def test_winograd_bit_exact_with_reference(isa):
    """150 random 3x3 stride-1 convs, Winograd forced wherever exact: every output equals
    the reference bit for bit."""
    rng = np.random.default_rng(1200 + RUNNABLE_ISAS.index(isa))
    for _ in range(150):
        c = random_case(rng)
        x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
        p = _C.PackedConv2dWeight(wt, (1, 1), c["pad"], (1, 1), 1, isa=isa, winograd=True)
        # C <= 300 keeps every weight draw within the bound; 1 -> 1 channel is depthwise.
        assert p.path == ("dwconv" if c["cin"] == c["cout"] == 1 else "winograd"), (c, p.path)
        y = _C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu)
        ref = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        if not np.array_equal(y, ref):
            bad = tuple(np.argwhere(y != ref)[0])
            pytest.fail(f"{isa} {p.kernel} differs for {c} at {bad}: {y[bad]} vs {ref[bad]}")


@pytest.mark.parametrize("isa", WINO_ISAS)
@pytest.mark.parametrize("cin", [1827, 1828])
def test_winograd_exactness_bound(isa, cin):
    """Every weight -128 and every input 255 steps from its zero point: |acc| = 255 * 128 *
    9 * C. C = 1,827 is the largest with |acc| < 2^29, where the shift recovers acc (the
    Winograd path runs); at 1,828 the layer must go to another path. The output scale maps
    the accumulators to +-100 steps around 128, so a wrong accumulator would show."""
    cout = 9
    wt = np.full((cout, cin, 3, 3), -128, np.int8)
    ws = np.full(cout, 1e-7, np.float32)
    acc_max = 255 * 128 * 9 * cin
    ys = np.float32(0.5 * 1e-7 * acc_max / 100)
    p = _C.PackedConv2dWeight(wt, (1, 1), (0, 0, 1, 1), (1, 1), 1, isa=isa, winograd=True)
    assert (p.path == "winograd") == (cin == 1827), p.path
    for x_val, xz in [(0, 255), (255, 0)]:
        x = np.full((1, 3, 4, cin), x_val, np.uint8)
        y = _C.conv2d_static(x, p, 0.5, xz, ws, None, ys, 128)
        ref = _C.reference.conv2d_static(x, xz, wt, (1, 1), (0, 0, 1, 1), (1, 1), 1, 0.5, ws, None, ys, 128)
        assert np.array_equal(y, ref), (isa, p.path, x_val)
        assert abs(int(ref[0, 0, 0, 0]) - 128) >= 99  # the full-size accumulator, not clamped


@pytest.mark.parametrize("isa", WINO_ISAS)
def test_winograd_takes_only_its_geometry(isa):
    """Forced, it runs on 3x3 stride-1 dilation-1 one-group convs only; by default on
    those with enough channels; never with winograd=False."""
    rng = np.random.default_rng(5)
    w33 = rng.integers(-128, 128, (32, 32, 3, 3), dtype=np.int8)

    def path(wt, stride=(1, 1), dil=(1, 1), groups=1, winograd=True):
        return _C.PackedConv2dWeight(wt, stride, (1, 1, 1, 1), dil, groups, isa=isa, winograd=winograd).path

    assert path(w33) == "winograd"
    assert path(w33, winograd=None) == "winograd"
    assert path(w33, winograd=False) != "winograd"
    assert path(w33, stride=(1, 2)) != "winograd"
    assert path(w33, dil=(2, 1)) != "winograd"
    assert path(np.ascontiguousarray(w33[:, :16]), groups=2) != "winograd"
    assert path(rng.integers(-128, 128, (32, 32, 3, 5), dtype=np.int8)) != "winograd"
    assert path(rng.integers(-128, 128, (32, 32, 5, 5), dtype=np.int8)) != "winograd"
    # Few channels: forced it runs, by default the direct path does.
    w_few = rng.integers(-128, 128, (32, 3, 3, 3), dtype=np.int8)
    assert path(w_few) == "winograd"
    assert path(w_few, winograd=None) != "winograd"


def test_winograd_threads_give_identical_results():
    rng = np.random.default_rng(11)
    before = npquant.get_num_threads()
    isa = WINO_ISAS[-1]
    try:
        for _ in range(8):
            c = random_case(rng)
            x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
            p = _C.PackedConv2dWeight(wt, (1, 1), c["pad"], (1, 1), 1, isa=isa, winograd=True)
            outs = []
            for t in (1, 2, 3):
                npquant.set_num_threads(t)
                outs.append(_C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu))
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
            assert np.array_equal(outs[0], reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu))
    finally:
        npquant.set_num_threads(before)


@pytest.mark.parametrize("isa", WINO_ISAS)
def test_default_dispatch_under_npquant_isa(isa):
    """NPQUANT_ISA=<isa> in a fresh process: the conv kernels name the ISA's Winograd
    kernel, and random 3x3 stride-1 convs packed with the defaults take the Winograd path
    when C >= 8 and equal the reference bit for bit."""
    code = f"""
import numpy as np
from npquant import _C
from test_conv_winograd import random_case, random_data, reference
assert _C.conv_kernels()["winograd"].endswith("__{isa}"), _C.conv_kernels()
rng = np.random.default_rng(8)
paths = set()
for _ in range(40):
    c = random_case(rng)
    x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
    p = _C.PackedConv2dWeight(wt, (1, 1), c["pad"], (1, 1), 1)
    assert (p.path == "winograd") == (c["cin"] >= 8), (c, p.path)
    paths.add(p.path)
    y = _C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu)
    assert np.array_equal(y, reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)), (c, p.path, p.kernel)
assert "winograd" in paths and len(paths) > 1, paths
print("ok")
"""
    r = run_python(f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n" + code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.parametrize("isa", WINO_ISAS)
def test_module_runs_winograd(isa):
    """A quantized Conv2d module (3x3, padding 1, 32 channels) in a process capped at
    the ISA: its packed weights take the Winograd path and its output equals the
    reference's."""
    code = """
import numpy as np, npquant
from npquant import _C
from npquant.nn import quantized as nnq
rng = np.random.default_rng(0)
m = nnq.Conv2d(32, 48, 3, padding=1)
w = npquant.quantize_per_channel(rng.normal(0, 0.1, (48, 32, 3, 3)).astype(np.float32),
                                 np.full(48, 0.002, np.float32), np.zeros(48, np.int64), 0, npquant.qint8)
m.set_weight_bias(w, rng.normal(0, 0.1, 48).astype(np.float32))
m.scale, m.zero_point = 0.05, 120
x = npquant.quantize_per_tensor(rng.normal(0, 1, (2, 32, 9, 11)).astype(np.float32), 0.03, 130, npquant.quint8)
assert m._packed_params.packed.path == "winograd", m._packed_params.packed.path
y = m(x)
xq = np.ascontiguousarray(x.int_repr().transpose(0, 2, 3, 1))
ref = _C.reference.conv2d_static(xq, 130, w.int_repr(), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.03,
                                 np.full(48, 0.002, np.float32), m.bias(), 0.05, 120)
assert np.array_equal(np.ascontiguousarray(y.int_repr().transpose(0, 2, 3, 1)), ref)
print("ok")
"""
    r = run_python(code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
