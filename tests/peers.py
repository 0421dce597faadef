"""What PyTorch's and ONNX Runtime's int8 kernels compute on this CPU, for the
agreement tests (docs/peers.md explains the arithmetic).

Both peers multiply uint8 activations by int8 weights. Where the CPU has AVX-512 VNNI
they use vpdpbusd, which sums four u8*s8 products into int32 exactly. Elsewhere (every
AVX2-only CPU, and AVX-512 CPUs without VNNI) they use vpmaddubsw, which adds two
adjacent products in *saturating* int16 before widening: 211*71 + 171*107 = 33,278
becomes 32,767. npquant is exact on every CPU, so on those CPUs the peers differ from
npquant wherever a pair saturates.

An agreement test therefore asks this module, from the CPU's features (never from the
result), whether the peer is exact for the layer at hand:
- exact: npquant's output must equal the peer's bit for bit;
- saturating: the peer's output must equal `emulate_torch` / `fbgemm_*_acc` below (its
  own saturating arithmetic, restated in NumPy), and npquant must equal the exact
  contract, so the test proves that the whole difference is the peer's.

`record(family, mode, n)` counts the cases each test family ran in each mode; the
pytest summary prints the table (conftest.py).
"""

from __future__ import annotations

import collections
import copy
import types

import numpy as np

import npquant
from npquant.qtensor import QTensor

FEATURES = frozenset(npquant.cpu_info()["features"])
X86 = npquant.cpu_info()["arch"] == "x86_64"

# PyTorch's x86 engine: FBGEMM's GEMM uses vpdpbusd iff cpuinfo reports AVX-512 VNNI
# (fbgemmHasAvx512VnniSupport; AVX-VNNI alone does not count); its convolutions run on
# oneDNN when that holds and groups <= 100 (onednn_utils::should_use_onednn_quant),
# otherwise on FBGEMM, whose depthwise kernels use vpmaddubsw on every CPU.
TORCH_VNNI = "avx512_vnni" in FEATURES
# ONNX Runtime's MLAS u8 x s8 kernels on x86: vpdpbusd with AVX-512 VNNI or AVX-VNNI,
# vpmaddubsw otherwise (its ARM kernels are exact). Its u8 x u8 kernels widen to int16
# (vpmaddwd): exact everywhere, hence npquant's uint8-weight ONNX export (docs/onnx.md).
ORT_U8S8_EXACT = not X86 or bool(FEATURES & {"avx512_vnni", "avx_vnni"})
ORT_U8S8_MODE = "exact" if ORT_U8S8_EXACT else "saturating"

EXACT, SATURATING = "exact", "saturating"
# Configurations where torch's output is not an arithmetic at all: tests must not call it.
BROKEN = "torch broken"
TORCH_LINEAR_MODE = EXACT if TORCH_VNNI else SATURATING

COUNTS: collections.Counter = collections.Counter()


def record(family: str, mode: str, n: int = 1) -> None:
    """Counts n cases of an agreement test family run in this mode (printed at the end)."""
    COUNTS[(family, mode)] += n


# ------------------------------------------------------------------ which path torch takes
def _fbgemm_depthwise_fast_path(cin, cout, groups, k, stride, pad, dil):
    """FBGEMM's takeDepthWiseFastPath (src/FbgemmConv.cc), for 2-D convolutions."""
    kh, kw = k
    return (
        groups == cin
        and cout in (groups, 2 * groups)
        and groups % 8 == 0
        and all(s in (1, 2) for s in stride)
        and kh == kw
        and kh in (3, 5, 7)
        and tuple(dil) == (1, 1)
        and tuple(pad) == ((kh - 1) // 2, (kw - 1) // 2)
    )


def _fbgemm_groupwise_fast_path(cin, cout, groups, k, stride, pad, dil):
    """FBGEMM's fbgemmOptimizedGConv (src/Fbgemm.cc), for 2-D convolutions."""
    cg = cin // groups
    return (
        cg == cout // groups
        and cg in (2, 4, 8, 16)
        and tuple(k) == (3, 3)
        and tuple(pad) == (1, 1)
        and tuple(dil) == (1, 1)
        and stride[0] == stride[1]
        and stride[0] in (1, 2)
        and groups >= _fbgemm_groups_together(cg)
    )


def _fbgemm_groups_together(cg):
    """PackWeightMatrixForGConv::numOfGroupsTogether: groups per vector register."""
    width = 64 if "avx512f" in FEATURES else 32
    return max(width // cg // max(cg, 4), 1)


def torch_conv_is_onednn(groups: int) -> bool:
    """Whether torch's x86 Conv2d runs in oneDNN here (exact sums, but its own requantization
    order: onednn_requantize, docs/peers.md), rather than FBGEMM (the contract's order)."""
    return TORCH_VNNI and groups <= 100


def torch_conv_mode(cin, cout, groups, k, stride, pad, dil) -> str:
    """EXACT, SATURATING or BROKEN: what torch's x86 engine computes for this
    (non-transposed, symmetric-weight) 2-D convolution on this CPU. pad is (top, left),
    symmetric.

    BROKEN: FBGEMM's groupwise kernel when groups is not a multiple of the groups it packs
    per register. Measured with torch 2.13: on AVX2 (qemu Haswell) wrong outputs even with
    weights too small to saturate (125 of 432 codes for 12 channels in 3 groups); on
    AVX-512 (Zen 4, groups > 100, so FBGEMM runs it) wrong outputs for groups 102 and heap
    corruption ('double free', the process aborts) for groups 101. docs/peers.md."""
    if torch_conv_is_onednn(groups):
        return EXACT  # oneDNN, vpdpbusd (requantized in its own order: onednn_requantize)
    if _fbgemm_groupwise_fast_path(cin, cout, groups, k, stride, pad, dil) and groups % _fbgemm_groups_together(
        cin // groups
    ):
        return BROKEN
    if TORCH_VNNI:  # FBGEMM: its GEMM and groupwise kernels use VNNI, its depthwise ones do not
        return SATURATING if _fbgemm_depthwise_fast_path(cin, cout, groups, k, stride, pad, dil) else EXACT
    return SATURATING


# ------------------------------------------------------------------ the saturating arithmetic
def _sat16(v):
    return np.clip(v, -32768, 32767)


def fbgemm_pairs_acc(a_u8: np.ndarray, xz, w_s8: np.ndarray) -> np.ndarray:
    """FBGEMM's u8 x s8 accumulator with vpmaddubsw: A (M, K) raw uint8 codes, W (N, K).

    vpmaddubsw adds the products of k = 2p and 2p + 1 in saturating int16; vpmaddwd with
    ones and vpaddd sum those exactly in int32; the zero point enters afterwards as the
    exact int32 column offset xz * sum_k w[n, k] (FBGEMM's epilogue). Exact int64 here."""
    a = a_u8.astype(np.int64)
    w = w_s8.astype(np.int64)
    m, k = a.shape
    if k % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 0), (0, 1)))
    n = w.shape[0]
    acc = np.empty((m, n), np.int64)
    rows = max(1, 4_000_000 // max(1, n * (k // 2 + 1)))  # bounds the (rows, N, K/2) temporaries
    for r in range(0, m, rows):
        ae, ao = a[r : r + rows, None, 0::2], a[r : r + rows, None, 1::2]
        acc[r : r + rows] = _sat16(ae * w[None, :, 0::2] + ao * w[None, :, 1::2]).sum(-1)
    return acc - np.int64(xz) * w.sum(1)[None, :]


def exact_pairs_acc(a_u8: np.ndarray, xz, w_s8: np.ndarray) -> np.ndarray:
    """The exact int32 accumulator sum_k (a - xz) * w (int64), as the contract and oneDNN's
    vpdpbusd compute it: A (M, K) raw uint8 codes, W (N, K)."""
    return (a_u8.astype(np.int64) - np.int64(xz)) @ w_s8.astype(np.int64).T


def fbgemm_conv_acc(
    x_nhwc: np.ndarray, xz: int, w: np.ndarray, stride, pad4, dil, groups, pairs=fbgemm_pairs_acc
) -> np.ndarray:
    """The accumulator of FBGEMM's convolutions with vpmaddubsw, (N, OH, OW, Cout);
    pairs=exact_pairs_acc gives the exact accumulator of the same convolution.

    Every FBGEMM conv path pairs adjacent elements of one group's K vector in the order
    (kh, kw, c) with c fastest: im2col + GEMM and pointwise (the GEMM's pairs), groupwise
    (channel pairs within one tap; C/G is even there) and depthwise (C/G = 1: pairs of
    adjacent taps). Padding reads the zero point, as in FBGEMM's im2col.
    x_nhwc: uint8 codes; w: int8 (Cout, Cin/groups, kh, kw); pad4: (top, left, bottom, right)."""
    n, h, wd, cin = x_nhwc.shape
    cout, cg, kh, kw = w.shape
    og = cout // groups
    t, l, b, r = pad4
    xp = np.full((n, h + t + b, wd + l + r, cin), xz, np.int64)
    xp[:, t : t + h, l : l + wd] = x_nhwc
    oh = (h + t + b - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + l + r - dil[1] * (kw - 1) - 1) // stride[1] + 1
    taps = [
        xp[
            :,
            i * dil[0] : i * dil[0] + (oh - 1) * stride[0] + 1 : stride[0],
            j * dil[1] : j * dil[1] + (ow - 1) * stride[1] + 1 : stride[1],
        ]
        for i in range(kh)
        for j in range(kw)
    ]
    cols = np.stack(taps, axis=3)  # (n, oh, ow, kh*kw, cin)
    out = np.empty((n * oh * ow, cout), np.int64)
    for g in range(groups):
        a = cols[..., g * cg : (g + 1) * cg].reshape(n * oh * ow, kh * kw * cg)
        wg = w[g * og : (g + 1) * og].transpose(0, 2, 3, 1).reshape(og, kh * kw * cg)
        out[:, g * og : (g + 1) * og] = pairs(a, xz, wg)
    return out.reshape(n, oh, ow, cout)


def requantize(acc, xs, ws, bias, ys, yz, relu) -> np.ndarray:
    """The contract's (and FBGEMM's) float requantization of an int32 accumulator."""
    s = (np.float32(xs) * np.asarray(ws, np.float32)).astype(np.float32)
    mult = (s / np.float32(ys)).astype(np.float32)
    v = acc.astype(np.float32)
    if bias is not None:
        v = (v + (np.asarray(bias, np.float32) / s).astype(np.float32)).astype(np.float32)
    v = (v * mult).astype(np.float32)
    q = np.rint(v).astype(np.int64) + int(yz)
    return np.clip(q, int(yz) if relu else 0, 255).astype(np.uint8)


def onednn_requantize(acc, xs, ws, bias, ys, yz, relu) -> np.ndarray:
    """PyTorch 2.13's x86 quantized Conv2d requantization when oneDNN runs it
    (torch_conv_mode: AVX-512 VNNI and groups <= 100), found by measurement (docs/peers.md).

    It differs from `requantize` (the contract's and FBGEMM's) in three ways:
    - the input scale is a reciprocal round trip, fl(1 / fl(1 / xs)): PyTorch hands ideep
      1 / xs (the old reciprocal convention) and ideep inverts it again for oneDNN 3;
    - the bias is added after scaling: fl(fl(fl(float(acc) * xs') * ws[n]) + bias[n]);
    - the output scale is a multiply by fl(1 / ys), and the zero point is added in fp32
      before rounding: q = nearbyint(fl(fl(v * fl(1 / ys)) + float(yz))), so near a tie
      the ulp of (v + yz) decides (up to 2^-16 for yz = 255)."""
    one = np.float32(1)
    xs_rt = (one / np.float32(one / np.float32(xs))).astype(np.float32)
    v = (acc.astype(np.float32) * xs_rt).astype(np.float32)
    v = (v * np.asarray(ws, np.float32)).astype(np.float32)
    if bias is not None:
        v = (v + np.asarray(bias, np.float32)).astype(np.float32)
    v = (v * np.float32(one / np.float32(ys))).astype(np.float32)
    v = (v + np.float32(yz)).astype(np.float32)
    return np.clip(np.rint(v).astype(np.int64), int(yz) if relu else 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ torch's float mean
# ATen's float sum kernel is registered for its AVX2 and default capabilities only: on an
# AVX512 CPU torch runs the AVX2 one, so it works in vectors of 8 floats on every x86 CPU
# (measured: torch_mean_hw with 8 equals torch 2.13 under ATEN_CPU_CAPABILITY avx512 and
# avx2; with 16 it does not).
TORCH_SUM_LANES = 8


def _torch_cascade_sum(v: np.ndarray) -> np.ndarray:
    """ATen's multi_row_sum (SumKernel.cpp) down axis 0 of float32 rows, restated: chunks of
    2^p rows (p = max(4, ceil(log2(n)) / 4)) run into accumulator 0, each full chunk is
    carried up a ladder of 4 accumulators, the ladder is added back into accumulator 0."""
    size = v.shape[0]
    power = max(4, (int(size - 1).bit_length() if size > 1 else 0) // 4)
    step = 1 << power
    acc = [np.zeros(v.shape[1:], np.float32) for _ in range(4)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = (acc[0] + v[i]).astype(np.float32)
            i += 1
        for j in range(1, 4):
            acc[j] = (acc[j] + acc[j - 1]).astype(np.float32)
            acc[j - 1] = np.zeros_like(acc[j - 1])
            if i & ((step - 1) << (j * power)):
                break
    for k in range(i, size):
        acc[0] = (acc[0] + v[k]).astype(np.float32)
    for j in range(1, 4):
        acc[0] = (acc[0] + acc[j]).astype(np.float32)
    return acc[0]


def _torch_row_sum(v: np.ndarray) -> np.ndarray:
    """ATen's row_sum down axis 0: four interleaved partial sums (rows 4i + k, each by
    _torch_cascade_sum), the leftover rows added to the first, then the four added in order."""
    size = v.shape[0]
    whole = size // 4 * 4
    parts = _torch_cascade_sum(v[:whole].reshape((size // 4, 4) + v.shape[1:]))
    first = parts[0]
    for k in range(whole, size):
        first = (first + v[k]).astype(np.float32)
    for k in range(1, 4):
        first = (first + parts[k]).astype(np.float32)
    return first


def torch_float_sum_hw(d: np.ndarray, lanes: int = TORCH_SUM_LANES) -> np.ndarray:
    """torch.sum over dims (2, 3) of a channels-last float32 tensor, given as (N, H*W, C):
    ATen's cascade_sum. With at least one vector of channels (vectorized_outer_sum) they run
    in blocks of 4 vectors (one sequential cascade per channel), then single vectors and
    single channels (row_sum: 4 partial sums each); with fewer (scalar_outer_sum), in
    blocks of 4 channels, then single ones."""
    n, size, c = d.shape
    rows = np.moveaxis(d, 1, 0)  # (H*W, N, C)
    block = 4 * lanes if c >= lanes else 4
    blocked = c // block * block
    out = np.empty((n, c), np.float32)
    if blocked:
        out[:, :blocked] = _torch_cascade_sum(rows[:, :, :blocked])
    if blocked < c:
        out[:, blocked:] = _torch_row_sum(rows[:, :, blocked:])
    return out


def torch_mean_hw(x: QTensor, lanes: int = TORCH_SUM_LANES) -> QTensor:
    """What torch 2.13's Tensor.mean([2, 3]) gives for a channels-last quantized tensor (every
    quantized conv output on x86; torchvision's ShuffleNetV2 pools so), as (N, C).

    PyTorch runs its integer mean kernel only for NCHW-contiguous tensors; otherwise
    (ReduceOps.cpp) it dequantizes, takes the float mean and quantizes with the input's
    qparams: fl(scale * (q - zp)), summed in ATen's order (torch_float_sum_hw),
    fl(sum / (H*W)), then quantize_per_tensor (npquant's equals torch's). Near a .5 the
    float error decides the rounding. npquant's QTensor.mean and
    AdaptiveAvgPool2d(1) compute what torch's integer kernels (its mean of NCHW tensors, its
    adaptive_avg_pool2d) do: the exact integer sum, scaled once."""
    q = x.nhwc()
    n, h, w, c = q.shape
    s, zp = np.float32(x.q_scale()), x.q_zero_point()
    d = (s * (q.astype(np.int32) - zp).astype(np.float32)).astype(np.float32)
    total = torch_float_sum_hw(d.reshape(n, h * w, c), lanes)
    mean = (total / np.float32(h * w)).astype(np.float32)
    return npquant.quantize_per_tensor(mean, float(s), zp, npquant.quint8)


# ------------------------------------------------------------------ whole models
def _emulated_linear(self, x):
    q = x.int_repr()
    scale, zp, fscale = self._output_qparams()
    p = self._packed_params
    acc = fbgemm_pairs_acc(q.reshape(-1, q.shape[-1]), x.q_zero_point(), p.qweight.int_repr())
    y = requantize(acc, x.q_scale(), p.w_scale, p.bias, scale, zp, self._FUSED_RELU)
    return QTensor._trusted(y.reshape(q.shape[:-1] + (y.shape[-1],)), fscale, zp)


def _conv_emulation(pairs, requant):
    """A Conv2d forward that sums with `pairs` and requantizes with `requant`."""

    def forward(self, x):
        scale, zp, fscale = self._output_qparams()
        p = self._packed_params
        stride, pad4, dil, groups = p.geometry
        acc = fbgemm_conv_acc(x.nhwc(), x.q_zero_point(), p.qweight.int_repr(), stride, pad4, dil, groups, pairs)
        y = requant(acc, x.q_scale(), p.w_scale, p.bias, scale, zp, self._FUSED_RELU)
        return QTensor._trusted(np.ascontiguousarray(y), fscale, zp, nhwc=True)

    return forward


_emulated_conv = _conv_emulation(fbgemm_pairs_acc, requantize)  # FBGEMM: saturating pairs
_emulated_onednn_conv = _conv_emulation(exact_pairs_acc, onednn_requantize)  # oneDNN: exact, its own order


def randomize_bn(torch, model) -> None:
    """BatchNorm statistics and affine parameters of a torch model away from their init
    (identity), so that fusing them into the layers before changes weights and biases."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def torch_x86_qconfig(torch):
    """The qconfig npquant.get_default_qconfig('x86') stands for, in torch's terms: histogram
    activations with the full 8-bit range, per-channel symmetric int8 weights."""
    obs = torch.ao.quantization.observer
    return torch.ao.quantization.QConfig(
        activation=obs.HistogramObserver.with_args(reduce_range=False),
        weight=obs.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )


def _emulated_mean(self, x):
    n, c = x.shape[:2]
    return torch_mean_hw(x).reshape(n, c, 1, 1)


def emulate_torch(model, family: str | None = None, torch_mean: tuple = ()):
    """(model, counts): `model` itself where torch computes the contract's arithmetic for all
    of its GEMM layers on this CPU; otherwise a deep copy whose Linear / Conv2d layers compute
    what torch's converted twin of `model` computes: FBGEMM's saturating arithmetic where it
    saturates, oneDNN's requantization order where oneDNN runs a conv (exact sums).
    torch_mean: names of global-average-pooling modules (AdaptiveAvgPool2d(1)) where torch's
    twin calls Tensor.mean([2, 3]) instead (torch_mean_hw; e.g. torchvision's ShuffleNetV2).
    counts: {EXACT: layers, SATURATING: layers}; with `family`, they are recorded."""
    import npquant.nn.quantized as nnq

    modules = dict(model.named_modules())
    for name in torch_mean:
        if not isinstance(modules.get(name), nnq.AdaptiveAvgPool2d):
            raise ValueError(f"torch_mean: {name!r} is not a quantized AdaptiveAvgPool2d of this model")

    modes = {}
    for name, m in model.named_modules():
        if isinstance(m, nnq.Linear):
            modes[name] = TORCH_LINEAR_MODE
        elif isinstance(m, nnq.Conv2d):
            stride, pad4, dil, groups = m._packed_params.geometry
            modes[name] = torch_conv_mode(m.in_channels, m.out_channels, groups, m.kernel_size, stride, pad4[:2], dil)
    broken = [name for name, mode in modes.items() if mode == BROKEN]
    if broken:
        raise ValueError(f"torch's x86 engine is broken for layers {broken} on this CPU (torch_conv_mode)")
    counts = collections.Counter(modes.values())
    if family:
        for mode, n in counts.items():
            record(family, mode, n)

    def emulation(name, m):
        if name in torch_mean:
            return _emulated_mean
        if modes.get(name) == SATURATING:
            return _emulated_conv if isinstance(m, nnq.Conv2d) else _emulated_linear
        if isinstance(m, nnq.Conv2d) and torch_conv_is_onednn(m._packed_params.geometry[3]):
            return _emulated_onednn_conv
        return None

    if not any(emulation(name, m) for name, m in model.named_modules()):
        return model, counts
    twin = copy.deepcopy(model)
    for name, m in twin.named_modules():
        fn = emulation(name, m)
        if fn is not None:
            m.forward = types.MethodType(fn, m)
    return twin, counts
