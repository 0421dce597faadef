"""The benchmark's columns: npquant, NumPy, PyTorch and ONNX Runtime adapters (Impl).

Each adapter builds one layer of a case with one library and returns (run, to_float); peers
are imported only when an adapter is built, and a missing peer raises Skip with a note.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cases import ConvCase, LinearCase, PerChannel, Skip, dequantize_u8, elementwise_inputs

# ----------------------------------------------------------------------------- implementations


@dataclass
class Impl:
    """One column: `build(case)` returns (run, to_float); run() computes the layer once,
    to_float(run()) gives its result as an fp32/float64 NumPy array for the check."""

    name: str
    kind: str  # "fp32" | "dynamic" | "static"
    family: str  # "numpy" | "npquant" | "torch" | "ort"
    build: Callable[[Any], tuple]


@contextlib.contextmanager
def quiet():
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


def import_npquant():
    return _import("npquant", "npquant")


def _npquant_dynamic(case: LinearCase):
    npq = import_npquant()
    lin = npq.nn.Linear(case.k, case.n)
    lin.weight, lin.bias = case.w, case.b
    q = npq.nn.quantized.dynamic.Linear.from_float(lin)
    x = case.x
    return (lambda: q(x)), (lambda y: y)


def _npquant_qweight(npq, wq: PerChannel):
    return npq.QTensor(wq.q, wq.scales, np.zeros(len(wq.scales), np.int64), npq.qint8, axis=0)


def _npquant_qinput(npq, case):
    return npq.QTensor(case.x_u8, case.xq.scale, case.xq.zero_point, npq.quint8)


def _npquant_static_linear(case: LinearCase):
    npq = import_npquant()
    q = npq.nn.quantized.Linear(case.k, case.n)
    q.set_weight_bias(_npquant_qweight(npq, case.wq), case.b)
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    qx = _npquant_qinput(npq, case)
    return (lambda: q(qx)), (lambda y: y.dequantize())


def _npquant_static_conv(case: ConvCase):
    npq = import_npquant()
    q = npq.nn.quantized.Conv2d(case.c, case.cout, case.ksize, stride=case.stride, padding=case.pad, groups=case.groups)
    q.set_weight_bias(_npquant_qweight(npq, case.wq), case.b)
    q.scale, q.zero_point = case.yq.scale, case.yq.zero_point
    # NHWC storage is how quantized activations flow between npquant's layers (like
    # PyTorch's channels_last below): no layout conversion per call.
    qx = npq.QTensor.from_nhwc(
        np.ascontiguousarray(case.x_u8.transpose(0, 2, 3, 1)), case.xq.scale, case.xq.zero_point, npq.quint8
    )
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
    q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.from_numpy(case.x)
    return _no_grad(torch, lambda: q(x)), (lambda y: y.numpy())


def _torch_qweight(torch, wq: PerChannel):
    scales = torch.from_numpy(wq.scales.astype(np.float64))
    return torch._make_per_channel_quantized_tensor(
        torch.from_numpy(wq.q), scales, torch.zeros(len(wq.scales), dtype=torch.int64), 0
    )


def _torch_qinput(torch, case, channels_last: bool = False):
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(case.x_u8), case.xq.scale, case.xq.zero_point)
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
    q = torch.ao.nn.quantized.Conv2d(
        case.c, case.cout, case.ksize, stride=case.stride, padding=case.pad, groups=case.groups
    )
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
        [node, *extra_nodes],
        "bench",
        [h.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [h.make_tensor_value_info(n, t, s) for n, (t, s) in outputs.items()],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes too
    return model


def _ort_dynamic(case: LinearCase):
    onnx = _onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    f32 = onnx.TensorProto.FLOAT
    model = _onnx_model(
        onnx,
        onnx.helper.make_node("MatMul", ["x", "wt"], ["xw"]),
        {"x": (f32, [case.m, case.k])},
        {"y": (f32, [case.m, case.n])},
        {"wt": np.ascontiguousarray(case.w.T), "b": case.b},
        extra_nodes=[onnx.helper.make_node("Add", ["xw", "b"], ["y"])],
    )
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d, "f32.onnx"), Path(d, "int8.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)  # ORT's defaults otherwise
        sess = _ort_session(dst.read_bytes())
    return _ort_runner(sess, {"x": case.x}), (lambda y: y)


def _qlinear_inits(case, w_q: np.ndarray) -> dict:
    """Scales and zero points of the QLinear* ops: per-tensor u8 in/out, per-channel s8 w."""
    return {
        "xs": np.float32(case.xq.scale),
        "xz": np.uint8(case.xq.zero_point),
        "w": w_q,
        "ws": case.wq.scales,
        "wz": np.zeros(len(case.wq.scales), np.int8),
        "ys": np.float32(case.yq.scale),
        "yz": np.uint8(case.yq.zero_point),
    }


def _ort_qlinear_matmul(case: LinearCase):
    onnx = _onnx()
    u8 = onnx.TensorProto.UINT8
    node = onnx.helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    model = _onnx_model(
        onnx,
        node,
        {"xq": (u8, [case.m, case.k])},
        {"y": (u8, [case.m, case.n])},
        _qlinear_inits(case, np.ascontiguousarray(case.wq.q.T)),
    )
    # QLinearMatMul has no bias input: the check adds the bias after dequantizing.
    return (_ort_runner(_ort_session(model), {"xq": case.x_u8}), (lambda y: dequantize_u8(y, case.yq) + case.b))


def _ort_qlinear_conv(case: ConvCase):
    onnx = _onnx()
    u8 = onnx.TensorProto.UINT8
    k, p = case.ksize, case.pad
    node = onnx.helper.make_node(
        "QLinearConv",
        ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
        ["y"],
        kernel_shape=[k, k],
        pads=[p, p, p, p],
        strides=[case.stride, case.stride],
        group=case.groups,
    )
    inits = _qlinear_inits(case, case.wq.q)
    inits["b"] = np.rint(case.b / (case.xq.scale * case.wq.scales)).astype(np.int32)
    model = _onnx_model(onnx, node, {"xq": (u8, list(case.x.shape))}, {"y": (u8, list(case.y_ref.shape))}, inits)
    return (_ort_runner(_ort_session(model), {"xq": case.x_u8}), (lambda y: dequantize_u8(y, case.yq)))


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


def elementwise_runners(op: str, a_shape, b_shape, seed: int = 0) -> dict:
    """{impl: (run, int_repr in NCHW)}: npquant (native), its NumPy path, PyTorch."""
    npq = import_npquant()
    xa, xb, qa, qb, qo = elementwise_inputs(a_shape, b_shape, seed)

    def qt(x, qp):
        q = npq.quantize_per_tensor(x, qp.scale, qp.zero_point, npq.quint8)
        return npq.QTensor.from_nhwc(np.ascontiguousarray(q.int_repr().transpose(0, 2, 3, 1)), qp.scale, qp.zero_point)

    f = npq.nn.quantized.QFunctional()
    f.scale, f.zero_point = qo.scale, qo.zero_point
    a, b = qt(xa, qa), qt(xb, qb)
    args = ([a, b], 1) if op == "cat" else (a, b)
    numpy_path = {
        "add": lambda: f._add_numpy(a, b, False, "add"),
        "add_relu": lambda: f._add_numpy(a, b, True, "add_relu"),
        "mul": lambda: f._mul_numpy(a, b),
        "cat": lambda: f._cat_numpy([a, b], 1),
    }[op]
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


# ----------------------------------------------------------------------------- threads


@contextlib.contextmanager
def limited_threads(n: int, notes: list):
    """Runs every library with n intra-op threads: npquant, torch, ORT (per session) and
    NumPy's BLAS (through threadpoolctl when installed)."""
    global _ORT_THREADS
    _ORT_THREADS = n
    with contextlib.suppress(Skip):
        import_npquant().set_num_threads(n)
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


def select(impls: list, only: str) -> list:
    """The implementations of the families in `only` (a comma list; empty: all)."""
    fams = {s.strip() for s in only.split(",") if s.strip()}
    return [i for i in impls if not fams or i.family in fams]
