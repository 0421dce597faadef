"""Conv2d: native paths vs the reference on every ISA, the reference and modules vs
PyTorch, the float module, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import npquant
from npquant import _C

import peers
from conftest import LAUNCHER

RUNNABLE_ISAS = _C.cpu_info()["runnable_isas"]

# Random configurations per ISA in test_every_path_bit_exact_with_reference. An
# emulated CPU (tests/arm/python_qemu.sh) runs fewer; the native aarch64 tests
# cover the ARM conv kernels' edge grid in full.
CONFIGS_PER_ISA = int(os.environ.get("NPQUANT_TEST_CONV_CONFIGS", "1000"))

# The conv kernels each ISA runs: its own indirect GEMM if it has one, and the best
# depthwise kernel not above it (avxvnni and amx have none of their own; neoni8mm's
# is the SDOT one).
EXPECTED_IGEMM = {"avx2": "avx2", "avx512vnni": "avx512vnni", "neondot": "neondot", "neoni8mm": "neoni8mm"}
# The Winograd F(2x2, 3x3) kernels (3x3 stride-1 layers; test_conv_winograd.py): the
# portable one and AVX2's. On VNNI CPUs the direct kernels are as fast (docs/conv.md).
EXPECTED_WINOGRAD = {"scalar": "scalar", "avx2": "avx2"}
EXPECTED_DWCONV = {
    "scalar": "scalar",
    "avx2": "avx2",
    "avxvnni": "avx2",
    "avx512vnni": "avx512vnni",
    "amx": "avx512vnni",
    "neon": "neon",
    "neondot": "neondot",
    "neoni8mm": "neondot",
}


def random_config(rng, max_macs=3_000_000):
    """A random conv problem: mostly small, sometimes wide or deep (sizes shrink until
    the reference's MAC count fits max_macs)."""
    kind = rng.choice(["dense", "grouped", "depthwise", "pointwise"], p=[0.4, 0.15, 0.3, 0.15])
    if kind == "depthwise":
        groups = int(rng.integers(1, 300))
        cg, og = 1, int(rng.choice([1, 1, 1, 2, 3]))
    elif kind == "grouped":
        groups = int(rng.integers(2, 9))
        cg, og = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    else:
        groups = 1
        cg = int(rng.choice([int(rng.integers(1, 17)), int(rng.integers(1, 301))]))
        og = int(rng.choice([int(rng.integers(1, 17)), int(rng.integers(1, 301))]))
    cin, cout = cg * groups, og * groups
    while cin > 300 or cout > 300:  # keep C <= 300
        groups = max(1, groups // 2)
        cin, cout = cg * groups, og * groups
    if kind == "pointwise":
        kh = kw = 1
        stride, pad, dil = (1, 1), (0, 0, 0, 0), (1, 1)
    else:
        kh, kw = (int(v) for v in rng.integers(1, 8, 2))
        if rng.random() < 0.5:
            kw = kh
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        pad = tuple(int(v) for v in rng.integers(0, 4, 4))
        if rng.random() < 0.6:
            pad = (pad[0], pad[1], pad[0], pad[1])
        dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    n = int(rng.choice([1, 1, 2, int(rng.integers(1, 9))]))
    h, w = (int(v) for v in rng.integers(1, 65, 2))
    if rng.random() < 0.7:
        h, w = (int(v) for v in rng.integers(1, 17, 2))
    # The (dilated) kernel must fit the padded input.
    h = max(h, dil[0] * (kh - 1) + 1 - pad[0] - pad[2])
    w = max(w, dil[1] * (kw - 1) + 1 - pad[1] - pad[3])

    def macs():
        oh = (h + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        return n * oh * ow * cout * cg * kh * kw

    while macs() > max_macs:
        before = (n, h, w)
        n, h, w = max(1, n // 2), max(1, h * 3 // 4), max(1, w * 3 // 4)
        h = max(h, dil[0] * (kh - 1) + 1 - pad[0] - pad[2])
        w = max(w, dil[1] * (kw - 1) + 1 - pad[1] - pad[3])
        if (n, h, w) == before:  # the kernel needs this much input
            break
    return dict(n=n, h=h, w=w, cin=cin, cout=cout, groups=groups, k=(kh, kw), stride=stride, pad=pad, dil=dil)


def random_data(rng, c):
    x = rng.integers(0, 256, (c["n"], c["h"], c["w"], c["cin"]), dtype=np.uint8)
    wt = rng.integers(-128, 128, (c["cout"], c["cin"] // c["groups"], *c["k"]), dtype=np.int8)
    if rng.random() < 0.2:  # extremes: every weight -128 or 127, inputs 0 or 255
        wt = np.where(rng.random(wt.shape) < 0.5, -128, 127).astype(np.int8)
        x = np.where(rng.random(x.shape) < 0.5, 0, 255).astype(np.uint8)
    xz = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    yz = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    xs = np.float32(rng.uniform(0.005, 0.1))
    # Output scale near the accumulator's spread, so outputs are mostly inside [0, 255].
    k = wt[0].size
    ys = np.float32(xs * 0.01 * np.sqrt(k) * 128 * rng.uniform(0.2, 3))
    ws = rng.uniform(0.005, 0.015, c["cout"]).astype(np.float32)
    bias = rng.normal(0, 1, c["cout"]).astype(np.float32) if rng.random() < 0.7 else None
    relu = bool(rng.random() < 0.3)
    return x, wt, xs, xz, ws, bias, ys, yz, relu


def reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu):
    return _C.reference.conv2d_static(
        x, xz, wt, c["stride"], c["pad"], c["dil"], c["groups"], xs, ws, bias, ys, yz, relu
    )


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_every_path_bit_exact_with_reference(isa):
    """1000 random configs per ISA (CONFIGS_PER_ISA); where the ISA has an indirect GEMM,
    the gathered path runs too. Every output must equal the reference bit for bit."""
    rng = np.random.default_rng(1000 + RUNNABLE_ISAS.index(isa))
    paths = {}
    for _ in range(CONFIGS_PER_ISA):
        c = random_config(rng)
        x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
        ref = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        for igemm in (True, False):
            p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"], isa=isa, igemm=igemm)
            y = _C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu)
            if not np.array_equal(y, ref):
                bad = np.argwhere(y != ref)[0]
                pytest.fail(
                    f"{isa} {p.path} {p.kernel} differs from the reference for {c} at {tuple(bad)}: "
                    f"{y[tuple(bad)]} vs {ref[tuple(bad)]} ({np.count_nonzero(y != ref)} outputs)"
                )
            paths[p.path] = paths.get(p.path, 0) + 1
            if p.path not in ("igemm", "gather"):
                break  # igemm=False changes nothing on the other paths
    # Every path of this ISA was exercised.
    expected = {"gemm", "gather", "dwconv"} | (
        {"igemm"} if _C.PackedConv2dWeight(np.zeros((8, 8, 3, 3), np.int8), isa=isa).path == "igemm" else set()
    )
    assert expected <= set(paths), paths


def edge_configs(rng):
    """Convs with 1..3 input channels per group (kernels 1/3/5/7, strides, padding,
    dilation, groups; the gathered path's short runs) and depthwise convs with every
    channel count 1..65 (two 32-channel blocks and one more), odd and even kernels."""
    for cg in (1, 2, 3):
        for k in (1, 3, 5, 7):
            for groups in (1, 2):
                kw = k if rng.random() < 0.7 else int(rng.choice([1, 3, 5, 7]))
                stride = tuple(int(v) for v in rng.integers(1, 4, 2))
                dil = tuple(int(v) for v in rng.choice([1, 1, 2], 2))
                pad = tuple(int(v) for v in rng.integers(0, 4, 4))
                h = max(int(rng.integers(1, 24)), dil[0] * (k - 1) + 1 - pad[0] - pad[2])
                w = max(int(rng.integers(1, 24)), dil[1] * (kw - 1) + 1 - pad[1] - pad[3])
                cout = groups * (20 if groups > 1 else int(rng.choice([1, 16, 17, 33])))
                yield dict(
                    n=int(rng.integers(1, 3)),
                    h=h,
                    w=w,
                    cin=cg * groups,
                    cout=cout,
                    groups=groups,
                    k=(k, kw),
                    stride=stride,
                    pad=pad,
                    dil=dil,
                )
    for ch in range(1, 66):
        kh, kw = (int(v) for v in rng.choice([1, 2, 3, 3, 4, 5, 7], 2))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
        dil = tuple(int(v) for v in rng.choice([1, 1, 2], 2))
        pad = (kh // 2, kw // 2, kh // 2, kw // 2)
        h = max(int(rng.integers(1, 12)), dil[0] * (kh - 1) + 1 - 2 * (kh // 2))
        w = max(int(rng.integers(1, 24)), dil[1] * (kw - 1) + 1 - 2 * (kw // 2))
        yield dict(
            n=1,
            h=h,
            w=w,
            cin=ch,
            cout=ch * int(rng.choice([1, 1, 2])),
            groups=ch,
            k=(kh, kw),
            stride=stride,
            pad=pad,
            dil=dil,
        )


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_small_channel_and_depthwise_edges_bit_exact(isa):
    rng = np.random.default_rng(2000 + RUNNABLE_ISAS.index(isa))
    paths = set()
    for c in edge_configs(rng):
        x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
        ref = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"], isa=isa)
        y = _C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu)
        paths.add(p.path)
        assert np.array_equal(y, ref), (isa, p.path, p.kernel, c, np.count_nonzero(y != ref))
    assert {"gather", "dwconv"} <= paths, paths


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_stem_and_nchw_input_bit_exact(isa):
    """The vision models' 3-channel first layers (3x3 stride 2, 7x7 stride 2) and random
    few-channel convs: the input given NHWC and NCHW (nchw=True: the stem path reads it
    in its canvas, the other paths transpose it), on the routed and the gathered path,
    equal the reference, and which ISAs route the 3x3 stem to the stem path."""
    rng = np.random.default_rng(3000 + RUNNABLE_ISAS.index(isa))
    stems = [
        dict(n=2, h=29, w=30, cin=3, cout=32, groups=1, k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=1, h=40, w=37, cin=3, cout=64, groups=1, k=(7, 7), stride=(2, 2), pad=(3, 3, 3, 3), dil=(1, 1)),
        dict(n=3, h=17, w=16, cin=3, cout=16, groups=1, k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), dil=(1, 1)),
    ]
    for _ in range(40):
        k = tuple(int(v) for v in rng.choice([1, 2, 3, 5, 7], 2))
        pad = tuple(int(v) for v in rng.integers(0, 4, 4))
        dil = (int(rng.choice([1, 2])), 1)
        h = max(int(rng.integers(1, 24)), dil[0] * (k[0] - 1) + 1 - pad[0] - pad[2])
        w = max(int(rng.integers(1, 24)), k[1] - pad[1] - pad[3])
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        cin, cout = int(rng.choice([1, 2, 3, 5, 6])), int(rng.choice([8, 16, 24, 33, 64]))
        n = int(rng.integers(1, 3))
        stems.append(dict(n=n, h=h, w=w, cin=cin, cout=cout, groups=1, k=k, stride=stride, pad=pad, dil=dil))
    paths = set()
    for c in stems:
        x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
        ref = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        for igemm in (True, False):
            p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"], isa=isa, igemm=igemm)
            paths.add(p.path)
            for arr, nchw in ((x, False), (x_nchw, True)):
                y = _C.conv2d_static(arr, p, xs, xz, ws, bias, ys, yz, relu, nchw)
                assert np.array_equal(y, ref), (isa, p.path, p.kernel, nchw, c, np.count_nonzero(y != ref))
    # ISAs with a full-range indirect GEMM run the 3x3 3-channel stem on it; the others
    # (no indirect GEMM) gather. (neoni8mm's K groups of 8 take only wider kernel rows.)
    stem_isa = isa in ("avx2", "avx512vnni", "neondot")
    if isa != "neoni8mm":
        assert ("stem" in paths) == stem_isa, (isa, paths)
    p = _C.PackedConv2dWeight(np.ones((32, 3, 3, 3), np.int8), (2, 2), (1, 1, 1, 1), isa=isa)
    assert p.path == ("stem" if stem_isa else "gather"), (isa, p.path)
    with pytest.raises(ValueError, match="channels in its second dimension"):
        x2 = np.ascontiguousarray(x_nchw[:, :2])
        _C.conv2d_static(x2, p, 0.1, 0, np.ones(32, np.float32), None, 0.1, 0, False, True)


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_dispatch_under_npquant_isa(isa):
    """NPQUANT_ISA=<isa> in a fresh process: the default conv kernels are that ISA's,
    and the default path equals the reference."""
    code = textwrap.dedent("""
        import sys, numpy as np
        sys.path[:0] = [p for p in sys.argv[1:] if p]
        from test_conv import random_config, random_data, reference
        from npquant import _C
        rng = np.random.default_rng(7)
        for _ in range(60):
            c = random_config(rng, 500_000)
            x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
            p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"])
            y = _C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu)
            assert np.array_equal(y, reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)), (c, p.kernel)
        k = _C.conv_kernels()
        print(k["gemm"], k["igemm"], k["dwconv"], k["winograd"])
    """)
    env = dict(os.environ, NPQUANT_ISA=isa)
    r = subprocess.run(
        [*LAUNCHER, sys.executable, "-c", code, os.path.dirname(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    gemm, igemm, dw, wino = r.stdout.split()
    assert gemm.split("__")[1].startswith(isa)
    assert (None if igemm == "None" else igemm.split("__")[1]) == EXPECTED_IGEMM.get(isa)
    assert dw.split("__")[1] == EXPECTED_DWCONV[isa]
    assert (None if wino == "None" else wino.split("__")[1]) == EXPECTED_WINOGRAD.get(isa)


def test_packed_weights_reused_across_input_sizes():
    """One packed layer called with varying batch, height and width (its cached
    indirection table must follow the input size)."""
    rng = np.random.default_rng(4)
    for cin, cout, k, groups in [(16, 32, 3, 1), (8, 8, 5, 8), (12, 24, 3, 3), (16, 16, 1, 1)]:
        wt = rng.integers(-128, 128, (cout, cin // groups, k, k), dtype=np.int8)
        ws = rng.uniform(0.005, 0.015, cout).astype(np.float32)
        for isa in RUNNABLE_ISAS:
            p = _C.PackedConv2dWeight(wt, (1, 2), (1, 2, 2, 1), (1, 1), groups, isa=isa)
            for n, h, w in [(1, 9, 9), (2, 9, 9), (1, 30, 7), (3, 5, 40), (1, 9, 9)]:
                x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
                y = _C.conv2d_static(x, p, 0.02, 77, ws, None, 0.5, 100)
                ref = _C.reference.conv2d_static(
                    x, 77, wt, (1, 2), (1, 2, 2, 1), (1, 1), groups, 0.02, ws, None, 0.5, 100
                )
                assert np.array_equal(y, ref), (isa, p.path, cin, cout, k, groups, n, h, w)


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_largest_reduction_is_exact(isa):
    """K = in_channels/groups * kh * kw = 65,536 (the documented bound) with the
    extremes that push int32 furthest: every path's accumulator must not saturate."""
    for cin, k, groups in [(4096, 4, 1), (16384, 2, 1), (65536, 1, 1)]:
        for x_val, xz, w_val in [(255, 0, -128), (0, 255, -128), (255, 0, 127)]:
            x = np.full((1, 4, 4, cin), x_val, np.uint8)
            wt = np.full((16, cin // groups, k, k), w_val, np.int8)
            wt[1::2] = 127 if w_val == -128 else -128  # the other extreme in odd channels
            ws = np.full(16, 1e-7, np.float32)  # |v| <= ~110: outputs inside 0..255
            p = _C.PackedConv2dWeight(wt, isa=isa)
            y = _C.conv2d_static(x, p, 0.5, xz, ws, None, 1.0, 128)
            ref = _C.reference.conv2d_static(x, xz, wt, (1, 1), (0, 0, 0, 0), (1, 1), groups, 0.5, ws, None, 1.0, 128)
            assert np.array_equal(y, ref), (isa, p.path, cin, k)
            assert len(np.unique(ref)) > 1  # the extremes really are far apart


def test_threads_give_identical_results():
    rng = np.random.default_rng(3)
    before = npquant.get_num_threads()
    try:
        for _ in range(20):
            c = random_config(rng)
            x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
            p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"])
            outs = []
            for t in (1, 2, 3):
                npquant.set_num_threads(t)
                outs.append(_C.conv2d_static(x, p, xs, xz, ws, bias, ys, yz, relu))
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    finally:
        npquant.set_num_threads(before)


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_few_strips_split_channels_across_threads(isa):
    """Batch 1 at 7x7 and 14x14 has one to four strips of output pixels, so the indirect
    and gathered paths also cut the output channels among threads (chunks of 64, the
    last one short), the stem path's tasks fill the canvas rows they read, and depthwise
    layers split into bands from 256K MACs. Every thread count must give the
    reference's bytes."""
    rng = np.random.default_rng(11)
    before = npquant.get_num_threads()
    configs = [
        dict(n=1, h=7, w=7, cin=64, cout=200, groups=1, k=(3, 3), stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=1, h=14, w=14, cin=96, cout=130, groups=1, k=(3, 3), stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=1, h=14, w=14, cin=64, cout=260, groups=2, k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=2, h=9, w=9, cin=32, cout=520, groups=1, k=(3, 3), stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1)),
        # depthwise from 256K MACs: one band of rows per thread on small images
        dict(n=1, h=14, w=14, cin=384, cout=384, groups=384, k=(3, 3), stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=1, h=29, w=27, cin=144, cout=144, groups=144, k=(5, 5), stride=(2, 2), pad=(2, 2, 2, 2), dil=(1, 1)),
        # 3-channel stems: each task a band of output rows filling the canvas rows it
        # reads (a band of one output row at h = 5, odd band sizes at h = 13).
        dict(n=1, h=64, w=61, cin=3, cout=64, groups=1, k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), dil=(1, 1)),
        dict(n=1, h=5, w=200, cin=3, cout=64, groups=1, k=(7, 7), stride=(2, 2), pad=(3, 3, 3, 3), dil=(1, 1)),
        dict(n=2, h=13, w=90, cin=3, cout=32, groups=1, k=(3, 3), stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1)),
    ]
    try:
        for c in configs:
            x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
            ref = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
            inputs = (
                [(x, False)] if c["cin"] != 3 else [(x, False), (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), True)]
            )
            for igemm in (True, False):
                p = _C.PackedConv2dWeight(wt, c["stride"], c["pad"], c["dil"], c["groups"], isa=isa, igemm=igemm)
                for t in (1, 2, 3, 4):
                    npquant.set_num_threads(t)
                    for arr, nchw in inputs:
                        y = _C.conv2d_static(arr, p, xs, xz, ws, bias, ys, yz, relu, nchw)
                        assert np.array_equal(y, ref), (isa, p.path, t, nchw, c)
    finally:
        npquant.set_num_threads(before)


# ---------------------------------------------------------------- PyTorch agreement
@pytest.fixture(scope="module")
def torch_x86():
    torch = pytest.importorskip("torch")
    import warnings

    warnings.filterwarnings("ignore", message=".*deprecated.*")
    torch.backends.quantized.engine = "x86"
    return torch


def torch_qconv(torch, cls, c, wq, ws, bias, ys, yz):
    m = cls(c["cin"], c["cout"], c["k"], c["stride"], (c["pad"][0], c["pad"][1]), c["dil"], c["groups"])
    tw = torch._make_per_channel_quantized_tensor(
        torch.from_numpy(wq), torch.from_numpy(ws.astype(np.float64)), torch.zeros(c["cout"], dtype=torch.long), 0
    )
    m.set_weight_bias(tw, None if bias is None else torch.from_numpy(bias))
    m.scale, m.zero_point = float(ys), yz
    return m


def _torch_mode(c):
    return peers.torch_conv_mode(c["cin"], c["cout"], c["groups"], c["k"], c["stride"], c["pad"][:2], c["dil"])


def _emulated(c, x, wt, xs, xz, ws, bias, ys, yz, relu):
    """What torch computes where it saturates (peers.fbgemm_conv_acc), NHWC."""
    acc = peers.fbgemm_conv_acc(x, xz, wt, c["stride"], c["pad"], c["dil"], c["groups"])
    return peers.requantize(acc, xs, ws, bias, ys, yz, relu)


def test_reference_within_one_step_of_pytorch(torch_x86):
    """Random configs and full-range data: torch's codes against the reference where torch
    is exact for the config on this CPU, against its own saturating arithmetic where it is
    not (the reference is npquant's: test_every_path_bit_exact_with_reference), and torch
    not called where it is broken (peers.BROKEN)."""
    torch = torch_x86
    rng = np.random.default_rng(11)
    total = differ = 0
    for _ in range(150):
        c = random_config(rng, 400_000)
        c["pad"] = (c["pad"][0], c["pad"][1], c["pad"][0], c["pad"][1])  # torch pads symmetrically
        h_min = c["dil"][0] * (c["k"][0] - 1) + 1 - 2 * c["pad"][0]
        w_min = c["dil"][1] * (c["k"][1] - 1) + 1 - 2 * c["pad"][1]
        c["h"], c["w"] = max(c["h"], h_min), max(c["w"], w_min)
        x, wt, xs, xz, ws, bias, ys, yz, relu = random_data(rng, c)
        mode = _torch_mode(c)
        peers.record("torch Conv2d vs reference", mode)
        if mode == peers.BROKEN:
            continue
        cls = torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d
        m = torch_qconv(torch, cls, c, wt, ws, bias, ys, yz)
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), float(xs), xz)
        yt = m(qx).int_repr().numpy().transpose(0, 2, 3, 1)
        if mode == peers.EXACT:
            expect = reference(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        else:
            expect = _emulated(c, x, wt, xs, xz, ws, bias, ys, yz, relu)
        d = np.abs(yt.astype(np.int32) - expect)
        assert d.max() <= 1, (c, mode, d.max())
        total += d.size
        differ += np.count_nonzero(d)
    # Measured with torch 2.13: 0 of these differ; allow rare ties rounded the other way.
    assert total > 0 and differ <= total // 10000, (differ, total)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_module_matches_pytorch(torch_x86, relu, per_channel):
    """Fixed configs (depthwise among them): torch's codes within one step where torch is
    exact for the config on this CPU; where it saturates, torch's codes are its saturating
    arithmetic's and npquant's the reference's."""
    torch = torch_x86
    rng = np.random.default_rng(5 + relu + 2 * per_channel)
    for cin, cout, k, s, p, d, g in [
        (3, 16, 3, 1, 1, 1, 1),
        (16, 16, 3, 2, 1, 1, 16),
        (32, 64, 1, 1, 0, 1, 1),
        (8, 12, (3, 5), (2, 1), (1, 2), (1, 2), 2),
        (24, 24, 5, 1, 2, 1, 24),
    ]:
        fm = npquant.nn.Conv2d(cin, cout, k, s, p, d, g, rng=rng)
        w = fm.weight
        if per_channel:
            wsc = np.abs(w.reshape(cout, -1)).max(1).astype(np.float32) / 127
            qw = npquant.quantize_per_channel(w, wsc, np.zeros(cout, np.int64), 0, npquant.qint8)
            tw = torch.quantize_per_channel(
                torch.from_numpy(w),
                torch.from_numpy(wsc.astype(np.float64)),
                torch.zeros(cout, dtype=torch.long),
                0,
                torch.qint8,
            )
        else:
            wsc = float(np.abs(w).max() / 127)
            qw = npquant.quantize_per_tensor(w, wsc, 0, npquant.qint8)
            tw = torch.quantize_per_tensor(torch.from_numpy(w), wsc, 0, torch.qint8)
        cls = npquant.nn.quantized.ConvReLU2d if relu else npquant.nn.quantized.Conv2d
        qm = cls.from_float(fm, qw, output_scale=0.04, output_zero_point=90)
        tcls = torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d
        tm = tcls(cin, cout, k, s, p, d, g)
        tm.set_weight_bias(tw, torch.from_numpy(fm.bias))
        tm.scale, tm.zero_point = 0.04, 90
        xf = rng.standard_normal((2, cin, 17, 19)).astype(np.float32)
        qx = npquant.quantize_per_tensor(xf, 0.02, 130, npquant.quint8)
        tx = torch.quantize_per_tensor(torch.from_numpy(xf), 0.02, 130, torch.quint8)
        assert np.array_equal(qx.int_repr(), tx.int_repr().numpy())
        y = qm(qx)
        yt = tm(tx)
        assert y.shape == tuple(yt.shape) and y.is_nhwc
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
        c = dict(cin=cin, cout=cout, groups=g, k=pair(k), stride=pair(s), pad=pair(p) + pair(p), dil=pair(d))
        mode = _torch_mode(c)
        peers.record("torch Conv2d modules", mode)
        assert mode != peers.BROKEN
        expect = y.int_repr()
        if mode == peers.SATURATING:
            args = (
                c,
                np.ascontiguousarray(qx.nhwc()),
                qw.int_repr(),
                0.02,
                130,
                qm._packed_params.w_scale,
                fm.bias,
                0.04,
                90,
                relu,
            )
            np.testing.assert_array_equal(y.nhwc(), reference(*args))
            expect = _emulated(*args).transpose(0, 3, 1, 2)
        assert np.abs(expect.astype(np.int32) - yt.int_repr().numpy()).max() <= 1
        if mode == peers.EXACT:
            assert np.allclose(y.dequantize(), yt.dequantize().numpy(), atol=0.04 + 1e-6)
        # An NHWC-stored input (the previous layer's output) gives the same result.
        qx_nhwc = npquant.QTensor.from_nhwc(np.ascontiguousarray(qx.nhwc()), 0.02, 130)
        assert np.array_equal(qm(qx_nhwc).int_repr(), y.int_repr())


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_float_conv_matches_pytorch(torch_x86):
    torch = torch_x86
    rng = np.random.default_rng(2)
    cases = [
        (3, 8, 3, 1, 1, 1, 1, "zeros"),
        (8, 8, 3, 2, 0, 2, 4, "zeros"),
        (6, 12, (3, 5), (2, 1), (1, 2), 1, 3, "zeros"),
        (4, 4, 3, 1, "same", 2, 2, "zeros"),
        (4, 6, 4, 1, "same", 1, 1, "zeros"),
        (4, 4, 3, 1, "valid", 1, 1, "zeros"),
        (5, 5, 3, 1, 2, 1, 5, "reflect"),
        (5, 5, 3, 2, 1, 1, 1, "replicate"),
        (5, 5, 3, 1, 1, 1, 1, "circular"),
    ]
    for cin, cout, k, s, p, d, g, mode in cases:
        m = npquant.nn.Conv2d(cin, cout, k, s, p, d, g, padding_mode=mode, rng=rng)
        t = torch.nn.Conv2d(cin, cout, k, s, p, d, g, padding_mode=mode)
        missing, unexpected = m.load_state_dict(t.state_dict())
        assert not missing and not unexpected
        x = rng.standard_normal((2, cin, 11, 13)).astype(np.float32)
        with torch.no_grad():
            ref = t(torch.from_numpy(x)).numpy()
        assert m(x).shape == ref.shape
        np.testing.assert_allclose(m(x), ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m(x[0]), ref[0], rtol=1e-4, atol=1e-5)  # unbatched


# ---------------------------------------------------------------- modules without torch
def test_module_api_and_nhwc_chain():
    rng = np.random.default_rng(9)
    conv1 = npquant.nn.Conv2d(3, 8, 3, padding=1, rng=rng)
    conv2 = npquant.nn.Conv2d(8, 8, 3, padding=1, groups=8, rng=rng)
    q1 = npquant.nn.quantized.ConvReLU2d.from_float(conv1, output_scale=0.05, output_zero_point=0)
    q2 = npquant.nn.quantized.Conv2d.from_float(conv2, output_scale=0.05, output_zero_point=128)
    assert q1.weight().q_per_channel_scales().shape == (8,) and q1.bias().shape == (8,)
    x = npquant.quantize_per_tensor(rng.standard_normal((2, 3, 10, 12)).astype(np.float32), 0.03, 128, npquant.quint8)
    y1 = q1(x)
    y2 = q2(y1)
    assert y1.is_nhwc and y2.is_nhwc and y2.shape == (2, 8, 10, 12)
    # The chain equals the reference applied layer by layer (exact).
    r1 = _C.reference.conv2d_static(
        np.ascontiguousarray(x.nhwc()),
        128,
        q1.weight().int_repr(),
        (1, 1),
        (1, 1, 1, 1),
        (1, 1),
        1,
        x.q_scale(),
        q1.weight().q_per_channel_scales().astype(np.float32),
        q1.bias(),
        np.float32(0.05),
        0,
        True,
    )
    r2 = _C.reference.conv2d_static(
        r1,
        0,
        q2.weight().int_repr(),
        (1, 1),
        (1, 1, 1, 1),
        (1, 1),
        8,
        np.float32(0.05),
        q2.weight().q_per_channel_scales().astype(np.float32),
        q2.bias(),
        np.float32(0.05),
        128,
        False,
    )
    assert np.array_equal(y2.nhwc(), r2)
    # ReLU fused: nothing below the zero point.
    assert y1.int_repr().min() >= 0 and np.all(y1.dequantize() >= 0)
    # Close to float (a few quantization steps).
    assert np.abs(y2.dequantize() - conv2(np.maximum(conv1(x.dequantize()), 0))).max() < 0.3
    # set_weight_bias with a per-tensor weight and no bias.
    w = npquant.quantize_per_tensor(conv2.weight, 0.01, 0, npquant.qint8)
    q2.set_weight_bias(w, None)
    assert q2.bias() is None and q2(y1).shape == (2, 8, 10, 12)


def test_pickle_and_deepcopy_repack():
    import copy
    import pickle

    rng = np.random.default_rng(12)
    q = npquant.nn.quantized.ConvReLU2d.from_float(
        npquant.nn.Conv2d(6, 9, 3, stride=2, padding=1, groups=3, rng=rng), output_scale=0.02, output_zero_point=7
    )
    x = npquant.quantize_per_tensor(rng.standard_normal((2, 6, 9, 11)).astype(np.float32), 0.05, 128, npquant.quint8)
    for clone in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        assert clone._packed_params.packed is not q._packed_params.packed
        assert np.array_equal(clone(x).int_repr(), q(x).int_repr())
        assert (clone.scale, clone.zero_point) == (q.scale, q.zero_point)


def test_from_float_with_observers():
    class Obs:
        def __init__(self, scale, zp, per_channel=False):
            self.scale, self.zp, self.ch_axis = scale, zp, 0 if per_channel else None
            self.seen = None

        def __call__(self, x):
            self.seen = x
            return x

        def calculate_qparams(self):
            return np.float32(self.scale), np.int64(self.zp)

    class QConfig:
        weight = staticmethod(lambda: Obs(0.01, 0))

    conv = npquant.nn.Conv2d(4, 4, 3)
    conv.activation_post_process = Obs(0.07, 33)
    conv.qconfig = QConfig()
    q = npquant.nn.quantized.Conv2d.from_float(conv)
    assert (q.scale, q.zero_point) == (pytest.approx(0.07), 33)
    assert q.weight().qscheme() == "per_tensor_affine" and q.weight().q_scale() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="output_scale"):
        npquant.nn.quantized.Conv2d.from_float(npquant.nn.Conv2d(4, 4, 3))
    with pytest.raises(TypeError, match="npquant.nn.Conv2d"):
        npquant.nn.quantized.Conv2d.from_float(npquant.nn.Linear(4, 4), output_scale=1.0, output_zero_point=0)


# ---------------------------------------------------------------- bad input
def test_bad_geometry_raises_clear_errors():
    w = np.zeros((8, 4, 3, 3), np.int8)
    with pytest.raises(ValueError, match="larger than the padded input"):
        _C.conv2d_static(
            np.zeros((1, 2, 2, 4), np.uint8), _C.PackedConv2dWeight(w), 1.0, 0, np.ones(8, np.float32), None, 1.0, 0
        )
    with pytest.raises(ValueError, match="divisible by groups"):
        _C.PackedConv2dWeight(np.zeros((6, 4, 3, 3), np.int8), groups=4)
    with pytest.raises(ValueError, match="divisible by groups"):
        npquant.nn.quantized.Conv2d(6, 8, 3, groups=4)
    with pytest.raises(ValueError, match="divisible by groups"):
        npquant.nn.Conv2d(6, 8, 3, groups=4)
    with pytest.raises(ValueError, match="NHWC"):  # an NCHW array given to the native NHWC op
        _C.conv2d_static(
            np.zeros((1, 4, 9, 9), np.uint8), _C.PackedConv2dWeight(w), 1.0, 0, np.ones(8, np.float32), None, 1.0, 0
        )
    with pytest.raises(ValueError, match="4-D"):
        _C.conv2d_static(
            np.zeros((4, 9, 9), np.uint8), _C.PackedConv2dWeight(w), 1.0, 0, np.ones(8, np.float32), None, 1.0, 0
        )
    with pytest.raises(TypeError, match="uint8"):
        _C.conv2d_static(
            np.zeros((1, 9, 9, 4), np.float32), _C.PackedConv2dWeight(w), 1.0, 0, np.ones(8, np.float32), None, 1.0, 0
        )
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.conv2d_static(
            np.zeros((1, 9, 9, 8), np.uint8)[..., ::2],
            _C.PackedConv2dWeight(w),
            1.0,
            0,
            np.ones(8, np.float32),
            None,
            1.0,
            0,
        )
    with pytest.raises(ValueError, match="stride must be >= 1"):
        _C.PackedConv2dWeight(w, stride=(0, 1))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        _C.PackedConv2dWeight(w, padding=(-1, 0, 0, 0))
    with pytest.raises(ValueError, match="accumulation bound"):
        _C.PackedConv2dWeight(np.zeros((1, 8192, 3, 3), np.int8))
    with pytest.raises(ValueError, match="weight scales must have 8"):
        _C.conv2d_static(
            np.zeros((1, 9, 9, 4), np.uint8), _C.PackedConv2dWeight(w), 1.0, 0, np.ones(7, np.float32), None, 1.0, 0
        )
    with pytest.raises(ValueError, match="zero_point"):
        _C.conv2d_static(
            np.zeros((1, 9, 9, 4), np.uint8), _C.PackedConv2dWeight(w), 1.0, 300, np.ones(8, np.float32), None, 1.0, 0
        )
    with pytest.raises(ValueError, match="larger than the padded input"):
        npquant.nn.Conv2d(3, 3, 5)(np.zeros((1, 3, 4, 4), np.float32))


def test_bad_module_input_raises_clear_errors():
    q = npquant.nn.quantized.Conv2d(4, 8, 3)
    xf = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(TypeError, match="QTensor"):
        q(xf)
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        q(npquant.quantize_per_tensor(np.zeros((1, 3, 8, 8), np.float32), 0.1, 0, npquant.quint8))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        q(npquant.quantize_per_tensor(np.zeros((4, 8, 8), np.float32), 0.1, 0, npquant.quint8))
    with pytest.raises(TypeError, match="quint8"):
        q(npquant.quantize_per_tensor(xf, 0.1, 0, npquant.qint8))
    w = np.ones((8, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="symmetric"):
        q.set_weight_bias(npquant.quantize_per_tensor(w, 0.1, 3, npquant.qint8), None)
    with pytest.raises(ValueError, match="axis 0"):
        q.set_weight_bias(npquant.quantize_per_channel(w, np.ones(4), np.zeros(4), 1, npquant.qint8), None)
    with pytest.raises(TypeError, match="qint8"):
        q.set_weight_bias(npquant.quantize_per_tensor(w, 0.1, 0, npquant.quint8), None)
    with pytest.raises(ValueError, match="does not match"):
        q.set_weight_bias(npquant.quantize_per_tensor(np.ones((8, 4, 5, 5), np.float32), 0.1, 0, npquant.qint8), None)
    with pytest.raises(ValueError, match="bias must have shape"):
        q.set_weight_bias(npquant.quantize_per_tensor(w, 0.1, 0, npquant.qint8), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        npquant.nn.quantized.Conv2d(4, 8, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        npquant.nn.Conv2d(4, 8, 3, stride=2, padding="same")
    with pytest.raises(TypeError, match="kernel_size"):
        npquant.nn.Conv2d(4, 8, (3, 3, 3))
    q.scale = 0.0
    with pytest.raises(ValueError, match="scale"):
        q(npquant.quantize_per_tensor(xf, 0.1, 0, npquant.quint8))
