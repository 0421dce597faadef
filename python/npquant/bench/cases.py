"""The benchmark's cases: layer shapes, their data and qparams, and a float64 reference.

Every implementation computes the same layer on the same data (a LinearCase or ConvCase);
its output is checked against the float64 reference (relative_error) before it is timed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (M, K, N): transformer layers at batch 1 and small batches, and a large square.
LINEAR_SHAPES = [
    (1, 768, 768),
    (32, 768, 3072),
    (128, 768, 768),
    (128, 3072, 768),
    (512, 1024, 1024),
    (1, 4096, 4096),
    (1024, 1024, 1024),
]
# (N, C, H, W, Cout, k, stride, groups); padding k // 2.
CONV_SHAPES = [
    (1, 64, 56, 56, 64, 3, 1, 1),
    (1, 256, 56, 56, 64, 1, 1, 1),
    (1, 256, 14, 14, 256, 3, 1, 1),
    (1, 32, 112, 112, 32, 3, 1, 32),
    (8, 128, 28, 28, 128, 3, 1, 1),
]

# Largest relative L2 error against the float64 reference for a result to count: int8
# layers on these inputs land near 0.01 (dynamic) and 0.02 (static, with output
# quantization); a wrong transpose, scale or zero point lands near 1.
TOLERANCE = {"fp32": 1e-4, "dynamic": 0.05, "static": 0.08}


class Skip(Exception):
    """An implementation that cannot run here; the message says why."""


# ----------------------------------------------------------------------------- cases


@dataclass
class LinearCase:
    """y = x @ w.T + b, with the qparams a calibrated static model would have. The static
    implementations all get the same uint8 input (x_u8) and int8 weights (wq.q)."""

    m: int
    k: int
    n: int
    x: np.ndarray  # (m, k) fp32
    w: np.ndarray  # (n, k) fp32
    b: np.ndarray  # (n,) fp32
    y_ref: np.ndarray  # float64 reference
    xq: QParams
    wq: PerChannel
    yq: QParams

    kind = "linear"

    @property
    def spec(self) -> tuple[int, ...]:  # make_linear_case(*spec) rebuilds it (in --isa workers)
        return (self.m, self.k, self.n)

    @property
    def x_u8(self) -> np.ndarray:
        return quantize_u8(self.x, self.xq)

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n

    @property
    def label(self) -> str:
        return f"{self.m},{self.k},{self.n}"


@dataclass
class ConvCase:
    shape: tuple[int, ...]  # (N, C, H, W, Cout, k, stride, groups)
    x: np.ndarray  # NCHW fp32
    w: np.ndarray  # (Cout, C/groups, k, k) fp32
    b: np.ndarray
    y_ref: np.ndarray
    xq: QParams
    wq: PerChannel
    yq: QParams

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def c(self) -> int:
        return self.shape[1]

    @property
    def cout(self) -> int:
        return self.shape[4]

    @property
    def ksize(self) -> int:
        return self.shape[5]

    @property
    def stride(self) -> int:
        return self.shape[6]

    @property
    def groups(self) -> int:
        return self.shape[7]

    @property
    def pad(self) -> int:
        return self.shape[5] // 2

    kind = "conv"

    @property
    def spec(self) -> tuple[int, ...]:  # make_conv_case(spec) rebuilds it
        return self.shape

    @property
    def x_u8(self) -> np.ndarray:
        return quantize_u8(self.x, self.xq)

    @property
    def macs(self) -> int:
        n, c, _, _, cout, k, _, g = self.shape
        ho, wo = self.y_ref.shape[2:]
        return int(n * cout * ho * wo * (c // g) * k * k)

    @property
    def label(self) -> str:
        return ",".join(map(str, self.shape))


@dataclass
class QParams:
    """Per-tensor affine uint8 qparams (MinMax observer rule over [min(x,0), max(x,0)])."""

    scale: float
    zero_point: int

    @classmethod
    def of(cls, a: np.ndarray) -> QParams:
        lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        return cls(float(np.float32(scale)), int(np.clip(round(-lo / scale), 0, 255)))


@dataclass
class PerChannel:
    """Symmetric int8 per-output-channel weights (PyTorch's per_channel_symmetric)."""

    scales: np.ndarray  # float32 (Cout,)
    q: np.ndarray  # int8, same shape as the weights

    @classmethod
    def of(cls, w: np.ndarray) -> PerChannel:
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scales = np.maximum(amax / 127.5, 1e-8).astype(np.float32)
        s = scales.reshape((-1,) + (1,) * (w.ndim - 1))
        return cls(scales, np.clip(np.rint(w / s), -128, 127).astype(np.int8))


def make_linear_case(m: int, k: int, n: int, seed: int = 0) -> LinearCase:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((n, k), dtype=np.float32) / math.sqrt(k)).astype(np.float32)
    b = (0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
    y = x.astype(np.float64) @ w.T.astype(np.float64) + b
    return LinearCase(m, k, n, x, w, b, y, QParams.of(x), PerChannel.of(w), QParams.of(y))


def conv2d_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    """Direct conv in float64 (NCHW), for checking every implementation."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c = x.shape[:2]
    cout, cg, kh, kw = w.shape
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2:4]
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    wg = w.astype(np.float64).reshape(groups, cout // groups, cg, kh, kw)
    y = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, cout, ho, wo)
    out: np.ndarray = y + b.astype(np.float64)[None, :, None, None]
    return out


def make_conv_case(shape: tuple[int, ...], seed: int = 0) -> ConvCase:
    n, c, h, wd, cout, k, stride, groups = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    fan_in = (c // groups) * k * k
    w = rng.standard_normal((cout, c // groups, k, k), dtype=np.float32) / math.sqrt(fan_in)
    w = w.astype(np.float32)
    b = (0.1 * rng.standard_normal(cout, dtype=np.float32)).astype(np.float32)
    y = conv2d_reference(x, w, b, stride, k // 2, groups)
    return ConvCase(tuple(shape), x, w, b, y, QParams.of(x), PerChannel.of(w), QParams.of(y))


def quantize_u8(x: np.ndarray, qp: QParams) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(x / qp.scale) + qp.zero_point, 0, 255).astype(np.uint8)
    return out


def dequantize_u8(q: np.ndarray, qp: QParams) -> np.ndarray:
    out: np.ndarray = (q.astype(np.float64) - qp.zero_point) * qp.scale
    return out


# ----------------------------------------------------------------------------- elementwise

# (op, first operand shape, second operand shape): QFunctional ops between the layers of
# ResNet (add_relu after each block), MobileNetV3 (SE scaling: mul by a (N,C,1,1) tensor)
# and Inception/DenseNet-style cat; NHWC storage (channels_last in torch), as quantized
# conv outputs are in both libraries.
ELEMENTWISE_CASES = [
    ("add_relu", (8, 256, 56, 56), (8, 256, 56, 56)),
    ("add_relu", (1, 64, 56, 56), (1, 64, 56, 56)),
    ("add", (1, 64, 56, 56), (1, 64, 56, 56)),
    ("mul", (1, 64, 56, 56), (1, 64, 56, 56)),
    ("add_relu", (1, 2048, 7, 7), (1, 2048, 7, 7)),
    ("mul", (1, 576, 14, 14), (1, 576, 1, 1)),
    ("cat", (1, 64, 56, 56), (1, 64, 56, 56)),
]
# PyTorch rounds the last C % 16 channels of a few ops in a scalar loop (docs/quantization.md).
ELEMENTWISE_TORCH_MAX_STEP = 1


def elementwise_inputs(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, QParams, QParams, QParams]:
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal(a_shape).astype(np.float32)
    xb = (rng.standard_normal(b_shape) * 0.7 + 0.2).astype(np.float32)
    return xa, xb, QParams.of(xa), QParams.of(xb), QParams.of(np.concatenate([xa.ravel(), xb.ravel(), [4.0]]))


def relative_error(y: object, ref: np.ndarray) -> float:
    arr = np.asarray(y, dtype=np.float64)
    if arr.shape != ref.shape:
        return float("inf")
    return float(np.linalg.norm(arr - ref) / max(np.linalg.norm(ref), 1e-30))
