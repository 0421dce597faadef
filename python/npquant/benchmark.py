"""npquant against NumPy fp32, PyTorch and ONNX Runtime: same shapes, same threads, one run.

    npquant bench                      # 1 thread, Linear and Conv tables
    npquant bench --threads 2 --json out.json
    npquant bench --isa avx2           # adds npquant columns run under NPQUANT_ISA=avx2
                                       # (in a worker process, samples interleaved)
    npquant bench --quick --no-conv    # fewer repeats, Linear only
    npquant bench --plot bench.png     # also a bar chart (matplotlib)

(``python bench/compare.py`` in a checkout runs the same.) It lives in the package so
that the installed ``npquant`` command has it; peers are imported only when benchmarked.

Every implementation computes the same layer on the same data; before timing, each output is
checked against a float64 reference (relative L2 error), so a broken peer setup shows up as
a failed check instead of a fast number. Timings are medians of repeated samples after warmup,
with the implementations interleaved (round robin, rotating order) so that a noisy machine
slows all of them alike. Peers that are not installed are skipped with a note.

The functions here (linear_impls, conv_impls, make_linear_case, make_conv_case, bench_cases,
resolve_peaks, markdown_table, plot, run) take and return plain data, so that a command-line
front end (`npquant bench`) can reuse them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

# (M, K, N): transformer layers at batch 1 and small batches, and a large square.
LINEAR_SHAPES = [(1, 768, 768), (32, 768, 3072), (128, 768, 768), (128, 3072, 768),
                 (512, 1024, 1024), (1, 4096, 4096), (1024, 1024, 1024)]
# (N, C, H, W, Cout, k, stride, groups); padding k // 2.
CONV_SHAPES = [(1, 64, 56, 56, 64, 3, 1, 1), (1, 256, 56, 56, 64, 1, 1, 1),
               (1, 256, 14, 14, 256, 3, 1, 1), (1, 32, 112, 112, 32, 3, 1, 32),
               (8, 128, 28, 28, 128, 3, 1, 1)]

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
    x: np.ndarray          # (m, k) fp32
    w: np.ndarray          # (n, k) fp32
    b: np.ndarray          # (n,) fp32
    y_ref: np.ndarray      # float64 reference
    xq: "QParams" = None
    wq: "PerChannel" = None
    yq: "QParams" = None

    kind = "linear"

    @property
    def spec(self) -> tuple:  # make_linear_case(*spec) rebuilds it (in --isa workers)
        return (self.m, self.k, self.n)

    @property
    def x_u8(self) -> np.ndarray:
        return _quantize_u8(self.x, self.xq)

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n

    @property
    def label(self) -> str:
        return f"{self.m},{self.k},{self.n}"


@dataclass
class ConvCase:
    shape: tuple           # (N, C, H, W, Cout, k, stride, groups)
    x: np.ndarray          # NCHW fp32
    w: np.ndarray          # (Cout, C/groups, k, k) fp32
    b: np.ndarray
    y_ref: np.ndarray
    xq: "QParams" = None
    wq: "PerChannel" = None
    yq: "QParams" = None

    @property
    def n(self): return self.shape[0]
    @property
    def c(self): return self.shape[1]
    @property
    def cout(self): return self.shape[4]
    @property
    def ksize(self): return self.shape[5]
    @property
    def stride(self): return self.shape[6]
    @property
    def groups(self): return self.shape[7]
    @property
    def pad(self): return self.shape[5] // 2

    kind = "conv"

    @property
    def spec(self) -> tuple:  # make_conv_case(spec) rebuilds it
        return self.shape

    @property
    def x_u8(self) -> np.ndarray:
        return _quantize_u8(self.x, self.xq)

    @property
    def macs(self) -> int:
        n, c, _, _, cout, k, _, g = self.shape
        ho, wo = self.y_ref.shape[2:]
        return n * cout * ho * wo * (c // g) * k * k

    @property
    def label(self) -> str:
        return ",".join(map(str, self.shape))


@dataclass
class QParams:
    """Per-tensor affine uint8 qparams (MinMax observer rule over [min(x,0), max(x,0)])."""
    scale: float
    zero_point: int

    @classmethod
    def of(cls, a: np.ndarray) -> "QParams":
        lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        return cls(float(np.float32(scale)), int(np.clip(round(-lo / scale), 0, 255)))


@dataclass
class PerChannel:
    """Symmetric int8 per-output-channel weights (PyTorch's per_channel_symmetric)."""
    scales: np.ndarray     # float32 (Cout,)
    q: np.ndarray          # int8, same shape as the weights

    @classmethod
    def of(cls, w: np.ndarray) -> "PerChannel":
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


def conv2d_reference(x, w, b, stride: int, pad: int, groups: int) -> np.ndarray:
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
    return y + b.astype(np.float64)[None, :, None, None]


def make_conv_case(shape: tuple, seed: int = 0) -> ConvCase:
    n, c, h, wd, cout, k, stride, groups = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    fan_in = (c // groups) * k * k
    w = (rng.standard_normal((cout, c // groups, k, k), dtype=np.float32) / math.sqrt(fan_in))
    w = w.astype(np.float32)
    b = (0.1 * rng.standard_normal(cout, dtype=np.float32)).astype(np.float32)
    y = conv2d_reference(x, w, b, stride, k // 2, groups)
    return ConvCase(tuple(shape), x, w, b, y, QParams.of(x), PerChannel.of(w), QParams.of(y))


# ----------------------------------------------------------------------------- implementations

@dataclass
class Impl:
    """One column: `build(case)` returns (run, to_float); run() computes the layer once,
    to_float(run()) gives its result as an fp32/float64 NumPy array for the check."""
    name: str
    kind: str              # "fp32" | "dynamic" | "static"
    family: str            # "numpy" | "npquant" | "torch" | "ort"
    build: Callable[[Any], tuple]


@contextlib.contextmanager
def _quiet():
    """Silences peers' deprecation warnings and advice logged while building a layer
    (torch.ao.quantization's deprecation, ORT's 'consider pre-processing')."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _import(module: str, what: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        if e.name and module.startswith(e.name):
            raise Skip(f"{what} is not installed ({e.name})") from None
        raise Skip(f"{what} could not be imported: {e}") from None


# NumPy -----------------------------------------------------------------------

def _numpy_linear(case: LinearCase):
    x, wt, b = case.x, np.ascontiguousarray(case.w.T), case.b
    return (lambda: x @ wt + b), (lambda y: y)


# npquant ---------------------------------------------------------------------

def _npquant():
    return _import("npquant", "npquant")


def _npquant_dynamic(case: LinearCase):
    npq = _npquant()
    lin = npq.nn.Linear(case.k, case.n)
    lin.weight, lin.bias = case.w, case.b
    q = npq.nn.quantized.dynamic.Linear.from_float(lin)
    x = case.x
    return (lambda: q(x)), (lambda y: y)


def _npquant_qweight(npq, wq: "PerChannel"):
    return npq.QTensor(wq.q, wq.scales, np.zeros(len(wq.scales), np.int64), npq.qint8, axis=0)


def _npquant_qinput(npq, case):
    return npq.QTensor(case.x_u8, case.xq.scale, case.xq.zero_point, npq.quint8)


def _npquant_static_linear(case: LinearCase):
    npq = _npquant()
    q = npq.nn.quantized.Linear(case.k, case.n)
    q.set_weight_bias(_npquant_qweight(npq, case.wq), case.b)
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    qx = _npquant_qinput(npq, case)
    return (lambda: q(qx)), (lambda y: y.dequantize())


def _npquant_static_conv(case: ConvCase):
    npq = _npquant()
    conv_cls = getattr(npq.nn.quantized, "Conv2d", None)
    if conv_cls is None:
        raise Skip("npquant.nn.quantized.Conv2d is not in this build yet")
    q = conv_cls(case.c, case.cout, case.ksize, stride=case.stride, padding=case.pad,
                 groups=case.groups)
    q.set_weight_bias(_npquant_qweight(npq, case.wq), case.b)
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    # NHWC storage is how quantized activations flow between npquant's layers (like
    # PyTorch's channels_last below): no layout conversion per call.
    if hasattr(npq.QTensor, "from_nhwc"):
        qx = npq.QTensor.from_nhwc(np.ascontiguousarray(case.x_u8.transpose(0, 2, 3, 1)),
                                   case.xq.scale, case.xq.zero_point, npq.quint8)
    else:
        qx = _npquant_qinput(npq, case)
    return (lambda: q(qx)), (lambda y: y.dequantize())


# PyTorch (engine x86) -----------------------------------------------------------

def _torch():
    torch = _import("torch", "PyTorch")
    if "x86" not in torch.backends.quantized.supported_engines:
        raise Skip("this PyTorch build has no x86 quantized engine")
    torch.backends.quantized.engine = "x86"
    return torch


def _no_grad(torch, fn):
    def run():
        with torch.inference_mode():
            return fn()
    return run


def _torch_dynamic(case: LinearCase):
    torch = _torch()
    lin = torch.nn.Linear(case.k, case.n)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(case.w))
        lin.bias.copy_(torch.from_numpy(case.b))
    q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                               dtype=torch.qint8)
    x = torch.from_numpy(case.x)
    return _no_grad(torch, lambda: q(x)), (lambda y: y.numpy())


def _torch_qweight(torch, wq: PerChannel):
    scales = torch.from_numpy(wq.scales.astype(np.float64))
    return torch._make_per_channel_quantized_tensor(
        torch.from_numpy(wq.q), scales, torch.zeros(len(wq.scales), dtype=torch.int64), 0)


def _torch_qinput(torch, case, channels_last: bool = False):
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(case.x_u8), case.xq.scale,
                                                 case.xq.zero_point)
    return qx.contiguous(memory_format=torch.channels_last) if channels_last else qx


def _torch_static_linear(case: LinearCase):
    torch = _torch()
    q = torch.ao.nn.quantized.Linear(case.k, case.n)
    q.set_weight_bias(_torch_qweight(torch, case.wq), torch.from_numpy(case.b))
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    qx = _torch_qinput(torch, case)
    return _no_grad(torch, lambda: q(qx)), (lambda y: y.dequantize().numpy())


def _torch_fp32_conv(case: ConvCase):
    torch = _import("torch", "PyTorch")
    x, w, b = (torch.from_numpy(a) for a in (case.x, case.w, case.b))
    f = torch.nn.functional.conv2d
    run = lambda: f(x, w, b, stride=case.stride, padding=case.pad, groups=case.groups)  # noqa: E731
    return _no_grad(torch, run), (lambda y: y.numpy())


def _torch_static_conv(case: ConvCase):
    torch = _torch()
    q = torch.ao.nn.quantized.Conv2d(case.c, case.cout, case.ksize, stride=case.stride,
                                     padding=case.pad, groups=case.groups)
    q.set_weight_bias(_torch_qweight(torch, case.wq), torch.from_numpy(case.b))
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    # channels_last (NHWC) input is PyTorch's fast path: no layout conversion per call.
    qx = _torch_qinput(torch, case, channels_last=True)
    return _no_grad(torch, lambda: q(qx)), (lambda y: y.dequantize().numpy())


# ONNX Runtime ------------------------------------------------------------------

_ORT_THREADS = 1  # set by limited_threads(); read when a session is created


def _onnx():
    """The onnx module, once both onnx (to build models) and onnxruntime are importable."""
    _import("onnxruntime", "ONNX Runtime")
    return _import("onnx", "onnx")


def _ort_session(model):
    ort = _import("onnxruntime", "ONNX Runtime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _ORT_THREADS
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _ort_runner(sess, feeds: dict):
    out = sess.get_outputs()[0].name
    return lambda: sess.run([out], feeds)[0]


def _onnx_model(onnx, node, inputs: dict, outputs: dict, inits: dict, extra_nodes=()):
    """A one-node (plus extra_nodes) ONNX model; inputs/outputs map name -> (elem type, shape),
    inits map name -> NumPy array."""
    h = onnx.helper
    graph = h.make_graph(
        [node, *extra_nodes], "bench",
        [h.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [h.make_tensor_value_info(n, t, s) for n, (t, s) in outputs.items()],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes too
    return model


def _ort_dynamic(case: LinearCase):
    onnx = _onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    f32 = onnx.TensorProto.FLOAT
    model = _onnx_model(
        onnx, onnx.helper.make_node("MatMul", ["x", "wt"], ["xw"]),
        {"x": (f32, [case.m, case.k])}, {"y": (f32, [case.m, case.n])},
        {"wt": np.ascontiguousarray(case.w.T), "b": case.b},
        extra_nodes=[onnx.helper.make_node("Add", ["xw", "b"], ["y"])])
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d, "f32.onnx"), Path(d, "int8.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)  # ORT's defaults otherwise
        sess = _ort_session(dst.read_bytes())
    return _ort_runner(sess, {"x": case.x}), (lambda y: y)


def _qlinear_inits(case, w_q: np.ndarray) -> dict:
    """Scales and zero points of the QLinear* ops: per-tensor u8 in/out, per-channel s8 w."""
    return {"xs": np.float32(case.xq.scale), "xz": np.uint8(case.xq.zero_point),
            "w": w_q, "ws": case.wq.scales, "wz": np.zeros(len(case.wq.scales), np.int8),
            "ys": np.float32(case.yq.scale), "yz": np.uint8(case.yq.zero_point)}


def _ort_qlinear_matmul(case: LinearCase):
    onnx = _onnx()
    u8 = onnx.TensorProto.UINT8
    node = onnx.helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
                                 ["y"])
    model = _onnx_model(onnx, node, {"xq": (u8, [case.m, case.k])}, {"y": (u8, [case.m, case.n])},
                        _qlinear_inits(case, np.ascontiguousarray(case.wq.q.T)))
    # QLinearMatMul has no bias input: the check adds the bias after dequantizing.
    return (_ort_runner(_ort_session(model), {"xq": case.x_u8}),
            (lambda y: _dequantize_u8(y, case.yq) + case.b))


def _ort_qlinear_conv(case: ConvCase):
    onnx = _onnx()
    u8 = onnx.TensorProto.UINT8
    k, p = case.ksize, case.pad
    node = onnx.helper.make_node(
        "QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
        kernel_shape=[k, k], pads=[p, p, p, p], strides=[case.stride, case.stride],
        group=case.groups)
    inits = _qlinear_inits(case, case.wq.q)
    inits["b"] = np.rint(case.b / (case.xq.scale * case.wq.scales)).astype(np.int32)
    model = _onnx_model(onnx, node, {"xq": (u8, list(case.x.shape))},
                        {"y": (u8, list(case.y_ref.shape))}, inits)
    return (_ort_runner(_ort_session(model), {"xq": case.x_u8}),
            (lambda y: _dequantize_u8(y, case.yq)))


def _quantize_u8(x: np.ndarray, qp: QParams) -> np.ndarray:
    return np.clip(np.rint(x / qp.scale) + qp.zero_point, 0, 255).astype(np.uint8)


def _dequantize_u8(q: np.ndarray, qp: QParams) -> np.ndarray:
    return (q.astype(np.float64) - qp.zero_point) * qp.scale


def linear_impls() -> list:
    """The Linear columns, in table order."""
    return [
        Impl("NumPy fp32", "fp32", "numpy", _numpy_linear),
        Impl("npquant dyn", "dynamic", "npquant", _npquant_dynamic),
        Impl("PyTorch dyn", "dynamic", "torch", _torch_dynamic),
        Impl("ORT dyn", "dynamic", "ort", _ort_dynamic),
        Impl("npquant static", "static", "npquant", _npquant_static_linear),
        Impl("PyTorch static", "static", "torch", _torch_static_linear),
        Impl("ORT QLinearMatMul", "static", "ort", _ort_qlinear_matmul),
    ]


def conv_impls() -> list:
    """The Conv2d columns, in table order."""
    return [
        Impl("PyTorch fp32", "fp32", "torch", _torch_fp32_conv),
        Impl("npquant static", "static", "npquant", _npquant_static_conv),
        Impl("PyTorch static", "static", "torch", _torch_static_conv),
        Impl("ORT QLinearConv", "static", "ort", _ort_qlinear_conv),
    ]


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


@dataclass
class ElementwiseRow:
    case: str
    ms: dict = field(default_factory=dict)     # impl -> ms per call
    notes: dict = field(default_factory=dict)  # impl -> why not timed


def _elementwise_inputs(a_shape, b_shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal(a_shape).astype(np.float32)
    xb = (rng.standard_normal(b_shape) * 0.7 + 0.2).astype(np.float32)
    return xa, xb, QParams.of(xa), QParams.of(xb), QParams.of(np.concatenate([xa.ravel(), xb.ravel(), [4.0]]))


def elementwise_runners(op: str, a_shape, b_shape, seed: int = 0) -> dict:
    """{impl: (run, int_repr in NCHW)}: npquant (native), its NumPy path, PyTorch."""
    npq = _npquant()
    xa, xb, qa, qb, qo = _elementwise_inputs(a_shape, b_shape, seed)

    def qt(x, qp):
        q = npq.quantize_per_tensor(x, qp.scale, qp.zero_point, npq.quint8)
        return npq.QTensor.from_nhwc(np.ascontiguousarray(q.int_repr().transpose(0, 2, 3, 1)), qp.scale,
                                     qp.zero_point)

    f = npq.nn.quantized.QFunctional()
    f.scale, f.zero_point = qo.scale, qo.zero_point
    a, b = qt(xa, qa), qt(xb, qb)
    args = ([a, b], 1) if op == "cat" else (a, b)
    numpy_path = {"add": lambda: f._add_numpy(a, b, False, "add"),
                  "add_relu": lambda: f._add_numpy(a, b, True, "add_relu"),
                  "mul": lambda: f._mul_numpy(a, b), "cat": lambda: f._cat_numpy([a, b], 1)}[op]
    out = {"npquant": (lambda: getattr(f, op)(*args)), "npquant NumPy path": numpy_path}
    try:
        torch = _torch()
        tf = torch.ao.nn.quantized.QFunctional()
        tf.scale, tf.zero_point = qo.scale, qo.zero_point

        def tq(x, qp):
            t = torch.quantize_per_tensor(torch.from_numpy(x), qp.scale, qp.zero_point, torch.quint8)
            return t.contiguous(memory_format=torch.channels_last)

        ta, tb = tq(xa, qa), tq(xb, qb)
        targs = ([ta, tb], 1) if op == "cat" else (ta, tb)
        out["PyTorch"] = lambda: getattr(tf, op)(*targs)
    except Skip:
        pass
    return out


def bench_elementwise(cases=ELEMENTWISE_CASES, repeat: int = 7, warmup: int = 2, min_sample: float = 0.02,
                      clock: str = "wall", stat: str = "median") -> list:
    """Times QFunctional's native ops, its NumPy path and PyTorch's on the same codes,
    after checking them: npquant's two paths equal, PyTorch within one step."""
    rows = []
    for op, a_shape, b_shape in cases:
        label = f"{op} {a_shape}" + ("" if a_shape == b_shape else f" x {b_shape}")
        row = ElementwiseRow(label)
        runners = {}
        with _quiet():
            fns = elementwise_runners(op, a_shape, b_shape)
            codes = {name: np.asarray(fn().int_repr().numpy() if name == "PyTorch" else fn().int_repr())
                     for name, fn in fns.items()}
        for name, fn in fns.items():
            ref = codes["npquant NumPy path"]
            tol = ELEMENTWISE_TORCH_MAX_STEP if name == "PyTorch" else 0
            diff = np.abs(codes[name].astype(np.int64) - ref) if codes[name].shape == ref.shape else None
            if diff is None or diff.max() > tol:
                row.notes[name] = "differs from the NumPy path: not timed"
                continue
            runners[name] = LocalRunner(fn)
        for name, sec in time_interleaved(runners, repeat, warmup, min_sample, None, clock, stat).items():
            row.ms[name] = sec * 1e3
        rows.append(row)
    return rows


def elementwise_table(rows: list) -> str:
    names = ["npquant", "npquant NumPy path", "PyTorch"]
    head = ["op (NHWC / channels_last)"] + [f"{n} ms" for n in names] + ["PyTorch / npquant", "NumPy path / npquant"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.case] + [f"{r.ms[n]:.3f}" if n in r.ms else r.notes.get(n, "—") for n in names]
        for other in ("PyTorch", "npquant NumPy path"):
            cells.append(f"{r.ms[other] / r.ms['npquant']:.2f}x" if other in r.ms and "npquant" in r.ms else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- threads

@contextlib.contextmanager
def limited_threads(n: int, notes: list):
    """Runs every library with n intra-op threads: npquant, torch, ORT (per session) and
    NumPy's BLAS (through threadpoolctl when installed)."""
    global _ORT_THREADS
    _ORT_THREADS = n
    with contextlib.suppress(Skip):
        _npquant().set_num_threads(n)
    with contextlib.suppress(Skip):
        _import("torch", "PyTorch").set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        notes.append("threadpoolctl is not installed: NumPy's BLAS threads are not limited")
        yield
        return
    with threadpool_limits(limits=n):
        yield


# ----------------------------------------------------------------------------- timing

def _progress(total: int, desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
        except ImportError:
            pass
    return None


class LocalRunner:
    """Times one built implementation in this process."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def calibrate(self, warmup: int, min_sample: float) -> int:
        """Runs the warmup calls; returns how many calls make a sample of ~min_sample s."""
        for _ in range(warmup):
            self.fn()
        t0 = time.perf_counter()
        self.fn()
        return max(1, int(min_sample / max(time.perf_counter() - t0, 1e-9)))

    def sample(self, number: int) -> tuple:
        """(wall, CPU) seconds per call, over `number` back-to-back calls. CPU time is
        this process's (all its threads), which preemption by other processes does not
        inflate."""
        fn = self.fn
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
        t1, c1 = time.perf_counter(), time.process_time()
        return (t1 - t0) / number, (c1 - c0) / number


CLOCKS = ("wall", "cpu")
STATS = {"median": statistics.median, "min": min}


def time_interleaved(runners: dict, repeat: int, warmup: int, min_sample: float,
                     bar=None, clock: str = "wall", stat: str = "median") -> dict:
    """Seconds per call of each runner (the median, or min, of `repeat` samples on the
    wall or CPU clock), sampled round robin.

    Round r starts at runner r (mod count), so none always runs right after the same
    neighbour; runners in --isa worker processes take their turns like local ones."""
    number = {name: r.calibrate(warmup, min_sample) for name, r in runners.items()}
    samples = {name: [] for name in runners}
    names = list(runners)
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            samples[name].append(runners[name].sample(number[name])[CLOCKS.index(clock)])
        if bar is not None:
            bar.update(1)
    return {name: STATS[stat](s) for name, s in samples.items()}


def relative_error(y, ref: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != ref.shape:
        return float("inf")
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


def build_checked(impl: Impl, case):
    """(run, relative error, note): builds impl on case and checks its output against the
    float64 reference. run is None (and note says why) if it is skipped, fails or is wrong."""
    try:
        with _quiet():
            run, to_float = impl.build(case)
            err = relative_error(to_float(run()), case.y_ref)
    except Skip as e:
        return None, None, str(e)
    except Exception as e:  # a peer that fails to build or run: report, go on
        return None, None, f"failed: {type(e).__name__}: {e}"
    if not err <= TOLERANCE[impl.kind]:
        return None, err, f"wrong result (relative error {err:.3g} > {TOLERANCE[impl.kind]}): not timed"
    return run, err, None


@dataclass
class Row:
    """One shape: GMAC/s per implementation, or the note saying why there is none."""
    shape: str
    macs: int
    gmacs: dict = field(default_factory=dict)   # impl name -> GMAC/s
    error: dict = field(default_factory=dict)   # impl name -> relative L2 error
    notes: dict = field(default_factory=dict)   # impl name -> why skipped / failed


class IsaWorker:
    """A child process running npquant under NPQUANT_ISA=isa (the ISA is fixed at import),
    driven by JSON lines over its stdin/stdout. It builds the same cases (same seeds) and
    times samples on request, so its samples interleave with this process's: the child
    waits on its pipe while others run."""

    def __init__(self, isa: str, threads: int):
        self.isa = isa
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "npquant.benchmark", "--worker", "--threads", str(threads)],
            env=dict(os.environ, NPQUANT_ISA=isa), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True)
        hello = self.request({"cmd": "hello"})
        self.npquant_isa, self.kernel = hello["npquant_isa"], hello["kernel"]

    def request(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self._stderr.seek(0)
            raise RuntimeError(f"NPQUANT_ISA={self.isa} worker died: "
                               f"{self._stderr.read().strip()[-1500:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"NPQUANT_ISA={self.isa} worker: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.request({"cmd": "quit"})
        self.proc.wait(timeout=60)
        self._stderr.close()


class RemoteRunner:
    """An implementation built inside an IsaWorker."""

    def __init__(self, worker: IsaWorker, name: str):
        self.worker, self.name = worker, name

    def calibrate(self, warmup: int, min_sample: float) -> int:
        return self.worker.request({"cmd": "calibrate", "name": self.name, "warmup": warmup,
                                    "min_sample": min_sample})["number"]

    def sample(self, number: int) -> tuple:
        return tuple(self.worker.request({"cmd": "sample", "name": self.name,
                                          "number": number})["seconds"])


def _isa_name(name: str, isa: str) -> str:
    return f"{name} [{isa}]"


def bench_cases(cases: list, impls: list, repeat: int = 7, warmup: int = 2,
                min_sample: float = 0.02, progress: bool = True, desc: str = "",
                workers: tuple = (), clock: str = "wall", stat: str = "median") -> list:
    """Builds, checks and times every implementation on every case; returns Rows.
    Each IsaWorker in `workers` adds the npquant implementations as '<name> [isa]'.
    GMAC/s come from the `stat` ("median" or "min") of the samples on the `clock`
    ("wall", or "cpu": this process's CPU time, for single-threaded runs on a busy machine)."""
    rows = []
    bar = _progress(len(cases) * repeat, desc, progress)
    npq_names = [i.name for i in impls if i.family == "npquant"]
    for case in cases:
        row = Row(case.label, case.macs)
        runners = {}
        for impl in impls:
            run, err, note = build_checked(impl, case)
            if err is not None:
                row.error[impl.name] = err
            if note:
                row.notes[impl.name] = note
            else:
                runners[impl.name] = LocalRunner(run)
        for w in workers if npq_names else ():
            try:
                built = w.request({"cmd": "build", "kind": case.kind, "spec": list(case.spec),
                                   "impls": npq_names})
            except RuntimeError as e:
                for name in npq_names:
                    row.notes[_isa_name(name, w.isa)] = str(e)
                continue
            for name in npq_names:
                full = _isa_name(name, w.isa)
                if name in built["errors"]:
                    row.error[full] = built["errors"][name]
                if name in built["notes"]:
                    row.notes[full] = built["notes"][name]
                else:
                    runners[full] = RemoteRunner(w, name)
        if runners:
            times = time_interleaved(runners, repeat, warmup, min_sample, bar, clock, stat)
            for name, sec in times.items():
                row.gmacs[name] = case.macs / sec * 1e-9
        elif bar is not None:
            bar.update(repeat)
        rows.append(row)
    if bar is not None:
        bar.close()
    return rows


def worker_main(threads: int) -> int:
    """The --worker loop (see IsaWorker): one JSON request per line in, one reply out."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    runners: dict = {}

    def handle(msg: dict) -> dict:
        cmd = msg["cmd"]
        if cmd == "hello":
            info = _npquant().cpu_info()
            return {"npquant_isa": info["isa"], "kernel": info["kernels"]["gemm"]["name"]}
        if cmd == "build":
            runners.clear()
            if msg["kind"] == "linear":
                case, impls = make_linear_case(*msg["spec"]), linear_impls()
            else:
                case, impls = make_conv_case(tuple(msg["spec"])), conv_impls()
            reply = {"errors": {}, "notes": {}}  # relative errors; "error" means failure
            for impl in (i for i in impls if i.name in msg["impls"]):
                run, err, note = build_checked(impl, case)
                if err is not None:
                    reply["errors"][impl.name] = err
                if note:
                    reply["notes"][impl.name] = note
                else:
                    runners[impl.name] = LocalRunner(run)
            return reply
        if cmd == "calibrate":
            return {"number": runners[msg["name"]].calibrate(msg["warmup"], msg["min_sample"])}
        if cmd == "sample":
            return {"seconds": runners[msg["name"]].sample(msg["number"])}
        if cmd == "quit":
            return {}
        raise ValueError(f"unknown command {cmd!r}")

    with limited_threads(threads, []):
        for line in sys.stdin:
            msg = json.loads(line)
            try:
                reply = handle(msg)
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            proto.write(json.dumps(reply) + "\n")
            proto.flush()
            if msg["cmd"] == "quit":
                break
    return 0


# ----------------------------------------------------------------------------- peak

def find_bench_binary() -> Optional[Path]:
    """The native npquant_bench, if built (NPQUANT_BENCH_BIN, or build/*/bench/ of the
    npquant checkout the current directory is in, or on PATH)."""
    env = os.environ.get("NPQUANT_BENCH_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    cwd = Path.cwd().resolve()
    repo = next((d for d in (cwd, *cwd.parents) if (d / "bench" / "bench_gemm.cc").is_file()), cwd)
    found = sorted(repo.glob("build/*/bench/npquant_bench"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else (Path(shutil.which("npquant_bench"))
                                    if shutil.which("npquant_bench") else None)


def measure_peak(binary: Path, threads: int) -> dict:
    """Runs the native probes; returns {isa: (GMAC/s, probe name)} for the probes that are
    an ISA's peak (label "peak of <isa>"); stand-in encodings are left out."""
    out = subprocess.run([str(binary), "--benchmark_filter=^probe/", "--benchmark_format=json",
                          f"--threads={threads}", "--benchmark_min_time=0.2"],
                         check=True, capture_output=True, text=True, timeout=600)
    peaks = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        label = b.get("label", "")
        if label.startswith("peak of ") and "stand-in" not in label:
            isa = label[len("peak of "):]
            peaks[isa] = (b["GMAC/s"], b["name"].split("/")[2])
    return peaks


# ----------------------------------------------------------------------------- report

def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _column_isa(name: str, default_isa: Optional[str]) -> Optional[str]:
    """'npquant dyn [avx2]' ran under avx2; unbracketed npquant columns under default_isa."""
    return name[name.rindex("[") + 1:-1] if name.endswith("]") else default_isa


def ratio_columns(rows: list, impls: list, peaks: dict, default_isa: Optional[str]) -> list:
    """(title, function of a row, unit) for each npquant column: its speed over the best
    peer of its kind, over fp32 (dynamic columns), and as % of its ISA's probe peak
    (peaks: isa -> GMAC/s)."""
    cols = []
    fp32 = [i.name for i in impls if i.kind == "fp32"]
    for npq in (i for i in impls if i.family == "npquant"):
        short = npq.name.replace("npquant ", "")
        peers = [i.name for i in impls if i.kind == npq.kind and i.family != "npquant"]

        def vs_peers(row, npq=npq.name, peers=peers):
            best = max((row.gmacs[p] for p in peers if p in row.gmacs), default=None)
            v = row.gmacs.get(npq)
            return None if v is None or best is None else v / best
        cols.append((f"{short} / best peer", vs_peers, "x"))
        if npq.kind == "dynamic" and fp32:
            def vs_fp32(row, npq=npq.name, ref=fp32[0]):
                v, r = row.gmacs.get(npq), row.gmacs.get(ref)
                return None if v is None or r is None else v / r
            cols.append((f"{short} / {fp32[0]}", vs_fp32, "x"))
        peak = peaks.get(_column_isa(npq.name, default_isa))
        if peak:
            cols.append((f"{short} % peak",
                         lambda row, npq=npq.name, peak=peak: (row.gmacs[npq] / peak * 100
                                                               if npq in row.gmacs else None),
                         "%"))
    return cols


def markdown_table(rows: list, impls: list, first: str, peaks: Optional[dict] = None,
                   default_isa: Optional[str] = None) -> str:
    """GMAC/s per implementation (— where skipped or failed), then the ratio columns."""
    names = [i.name for i in impls]
    ratios = ratio_columns(rows, impls, peaks or {}, default_isa)
    head = [first] + names + [t for t, _, _ in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.shape] + [_fmt(row.gmacs.get(n)) for n in names]
        for _, f, unit in ratios:
            v = f(row)
            cells.append("—" if v is None else f"{v:.2f}x" if unit == "x" else f"{v:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    notes = {}
    for row in rows:
        for name, note in row.notes.items():
            notes.setdefault((name, note), []).append(row.shape)
    for (name, note), shapes in notes.items():
        where = "all shapes" if len(shapes) == len(rows) else "; ".join(shapes)
        lines.append(f"\n- {name}: {note} ({where})")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Grouped bars of GMAC/s per shape and implementation (Linear and Conv2d panels),
    written to `path` (PNG). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, t) for k, t in (("linear", "Linear (M,K,N)"), ("conv", "Conv2d")) if result[k]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 4.5 * len(panels)), squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], panels):
        rows = _rows(result[key])
        names = [n for n in dict.fromkeys(n for r in rows for n in r.gmacs)]
        width = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            xs = [i + j * width for i in range(len(rows))]
            ax.bar(xs, [r.gmacs.get(name, 0.0) for r in rows], width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
        ax.set_xticklabels([r.shape for r in rows], fontsize=8)
        ax.set_ylabel("GMAC/s (higher is better)")
        meta = result["meta"]
        ax.set_title(f"{title}: npquant ISA {meta.get('npquant_isa')}, {meta['threads']} thread(s)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- main

def versions() -> dict:
    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    for mod in ("npquant", "torch", "onnxruntime", "onnx"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = None
    return v


def _shape_list(arity: int):
    def parse(text: str) -> list:
        shapes = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]
        if not shapes or any(len(s) != arity or min(s) < 1 for s in shapes):
            raise argparse.ArgumentTypeError(
                f"expected ';'-separated groups of {arity} positive integers, got {text!r}")
        return shapes
    return parse


def parse_args(argv=None, prog=None):
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every library")
    p.add_argument("--repeat", type=int, default=7, help="timed samples per implementation")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--min-sample", type=float, default=0.02,
                   help="seconds per sample (fast calls are repeated within a sample)")
    p.add_argument("--quick", action="store_true", help="--repeat 3 --warmup 1")
    p.add_argument("--stat", choices=sorted(STATS), default="median",
                   help="statistic of the samples (min: the least disturbed, on a busy machine)")
    p.add_argument("--clock", choices=CLOCKS, default="wall",
                   help="wall time, or the process's CPU time (not inflated by other "
                        "processes; meaningful with --threads 1 only)")
    p.add_argument("--isa", action="append", default=[],
                   help="also run npquant under NPQUANT_ISA=X (repeatable, or comma list)")
    p.add_argument("--only", default="",
                   help="comma list of families to run: numpy, npquant, torch, ort")
    p.add_argument("--no-linear", action="store_true")
    p.add_argument("--no-conv", action="store_true")
    p.add_argument("--no-elementwise", action="store_true",
                   help="skip the QFunctional add/add_relu/mul/cat table")
    p.add_argument("--linear-shapes", type=_shape_list(3), default=LINEAR_SHAPES,
                   metavar="M,K,N;...", help="Linear shapes (default: the issue's)")
    p.add_argument("--conv-shapes", type=_shape_list(8), default=CONV_SHAPES,
                   metavar="N,C,H,W,Cout,k,stride,groups;...", help="Conv2d shapes")
    p.add_argument("--peak", default=None,
                   help="peak GMAC/s of npquant's ISA, or the path of npquant_bench to probe it "
                        "(default: a built npquant_bench, if any)")
    p.add_argument("--no-peak", action="store_true", help="do not run the peak probe")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--plot", default=None, help="also draw a bar chart here (PNG, matplotlib)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # see IsaWorker
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.quick:
        args.repeat, args.warmup = 3, 1
    args.isa = [s for a in args.isa for s in a.split(",") if s]
    return args


def _select(impls: list, only: str) -> list:
    fams = {s.strip() for s in only.split(",") if s.strip()}
    return [i for i in impls if not fams or i.family in fams]


def resolve_peaks(args, isa: Optional[str], threads: int):
    """({isa: GMAC/s}, where they come from): the probe peaks of every ISA the native bench
    can probe here, or the one --peak number for the ISA npquant runs."""
    if args.no_peak:
        return {}, "not measured (--no-peak)"
    if args.peak:
        try:
            return {isa: float(args.peak)}, "given with --peak"
        except ValueError:
            binary = Path(args.peak)
    else:
        binary = find_bench_binary()
    if binary is None:
        return {}, ("not measured: build the native bench (cmake -DNPQUANT_BUILD_BENCH=ON) "
                    "or pass --peak GMACS")
    try:
        found = measure_peak(binary, threads)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        return {}, f"probe failed ({binary}): {e}"
    probes = ", ".join(f"{i} {g:.0f} ({p})" for i, (g, p) in sorted(found.items()))
    return ({i: g for i, (g, _) in found.items()},
            f"npquant_bench probes, {threads} thread(s): {probes or 'none'}")


@contextlib.contextmanager
def _isa_workers(isas: list, threads: int, meta: dict):
    """One IsaWorker per --isa; a worker that cannot start is a note, not a crash."""
    workers = []
    meta["isa_workers"] = {}
    try:
        for isa in isas:
            try:
                w = IsaWorker(isa, threads)
            except (RuntimeError, OSError) as e:
                meta["notes"].append(str(e))
                continue
            workers.append(w)
            meta["isa_workers"][isa] = f"{w.npquant_isa} ({w.kernel})"
        yield tuple(workers)
    finally:
        for w in workers:
            w.close()


def _loadavg() -> Optional[float]:
    """The 1-minute load average (how busy the machine was), where the OS tells it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run(args) -> dict:
    """Everything main() prints, as data: {'meta', 'linear', 'conv'} (rows as dicts)."""
    notes: list = []
    meta: dict = {"threads": args.threads, "versions": versions(), "notes": notes,
                  "timing": f"{args.stat} of {args.repeat} interleaved samples, {args.clock} clock",
                  "load_before": _loadavg()}
    try:
        info = _npquant().cpu_info()
        meta["npquant_isa"] = info["isa"]
        meta["npquant_kernel"] = info["kernels"]["gemm"]["name"]
        small = info["kernels"]["gemm_small_m"]["name"]
        if small != meta["npquant_kernel"]:
            meta["npquant_kernel"] += f"; {small} for M < {info['small_m']}"
        meta["cpu"] = f"{info.get('vendor', '')} {info.get('brand', '')}".strip()
        meta["cpu_features"] = info["features"]
    except Skip as e:
        meta["npquant_isa"] = None
        notes.append(str(e))
    result = {"meta": meta, "linear": [], "conv": []}
    progress = not args.no_progress
    with limited_threads(args.threads, notes), _isa_workers(args.isa, args.threads, meta) as ws:
        common = dict(repeat=args.repeat, warmup=args.warmup, min_sample=args.min_sample,
                      progress=progress, workers=ws, clock=args.clock, stat=args.stat)
        if not args.no_linear:
            cases = [make_linear_case(*s) for s in args.linear_shapes]
            result["linear"] = bench_cases(cases, _select(linear_impls(), args.only),
                                           desc="linear", **common)
        if not args.no_conv:
            cases = [make_conv_case(s) for s in args.conv_shapes]
            result["conv"] = bench_cases(cases, _select(conv_impls(), args.only),
                                         desc="conv", **common)
        if not args.no_elementwise:
            result["elementwise"] = [r.__dict__ for r in bench_elementwise(
                repeat=args.repeat, warmup=args.warmup, min_sample=args.min_sample,
                clock=args.clock, stat=args.stat)]
    meta["load_after"] = _loadavg()
    meta["peaks"], meta["peak_source"] = resolve_peaks(args, meta.get("npquant_isa"),
                                                       args.threads)
    result["linear"] = [r.__dict__ for r in result["linear"]]
    result["conv"] = [r.__dict__ for r in result["conv"]]
    return result


def _rows(dicts: list) -> list:
    return [Row(**d) for d in dicts]


def _with_isa_columns(impls: list, rows: list) -> list:
    """The table's columns: impls, then any '<npquant column> [isa]' found in rows."""
    extra = []
    for row in rows:
        for name in list(row.gmacs) + list(row.notes):
            if name.endswith("]") and name not in [i.name for i in extra]:
                base = next(i for i in impls if name.startswith(i.name + " ["))
                extra.append(Impl(name, base.kind, base.family, base.build))
    return impls + extra


def report(result: dict, args) -> str:
    meta = result["meta"]
    v = meta["versions"]
    out = [f"npquant {v.get('npquant')} ISA **{meta.get('npquant_isa')}** "
           f"(kernel {meta.get('npquant_kernel')}), {meta['threads']} thread(s), "
           f"CPU {meta.get('cpu', '?')}; NumPy {v['numpy']}, PyTorch {v.get('torch')}, "
           f"ONNX Runtime {v.get('onnxruntime')}. GMAC/s (higher is better), "
           f"{meta['timing']}; load average {meta['load_before']} before, "
           f"{meta['load_after']} after.",
           f"Peaks (GMAC/s): {meta.get('peak_source', '?')}."]
    for isa, ran in (meta.get("isa_workers") or {}).items():
        out.append(f"Columns '[{isa}]': npquant in a worker process under NPQUANT_ISA={isa} "
                   f"(ran {ran}), its samples interleaved with the others.")
    peaks, isa = meta.get("peaks") or {}, meta.get("npquant_isa")
    if result["linear"]:
        rows = _rows(result["linear"])
        impls = _with_isa_columns(_select(linear_impls(), args.only), rows)
        out += ["", "### Linear (M,K,N)", "", markdown_table(rows, impls, "M,K,N", peaks, isa)]
    if result["conv"]:
        rows = _rows(result["conv"])
        impls = _with_isa_columns(_select(conv_impls(), args.only), rows)
        out += ["", "### Conv2d (N,C,H,W,Cout,k,stride,groups), padding k//2", "",
                markdown_table(rows, impls, "N,C,H,W,Cout,k,s,g", peaks, isa)]
    if result.get("elementwise"):
        rows = [ElementwiseRow(**d) for d in result["elementwise"]]
        out += ["", "### Quantized elementwise (QFunctional), ms per call (lower is better)", "",
                elementwise_table(rows)]
    if meta["notes"]:
        out += [""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out)


def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    if args.worker:
        return worker_main(args.threads)
    result = run(args)
    print(report(result, args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    if args.plot:
        try:
            plot(result, args.plot)
        except ImportError:
            print("\n--plot needs matplotlib (pip install matplotlib); no plot written",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
