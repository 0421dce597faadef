"""npquant.onnx: export in both formats run in ONNX Runtime, float import, and the errors.

format="integer" writes npquant's arithmetic step by step: ONNX Runtime's outputs
must EQUAL npquant's, layer by layer and through whole models.

Weights are written as uint8 codes 128 above npquant's int8 codes, zero point 128
(weight_dtype="int8" keeps int8 in QDQ): ONNX Runtime's uint8 x int8 kernels on x86
without VNNI (MLAS, vpmaddubsw) saturate int16 pair sums, its uint8 x uint8 kernels
are exact everywhere. Every test here must hold natively on VNNI CPUs and on
AVX2-only ones; the `x86_haswell` subset is the one to run under
`qemu-x86_64 -cpu Haswell` (docs/onnx.md), about 2-3 minutes there.

format="qdq" numerics. ONNX Runtime (at every optimization level above DISABLE_ALL) adds an
int32 bias rounded to the scale x_scale * w_scale[n], where npquant (as PyTorch)
adds the exact float bias / s; and QuantizeLinear divides by the scale where
npquant multiplies by its reciprocal. Each moves a result only when it sits
within a hair of a rounding tie, so each layer, given the same input codes,
agrees within one step (tested layer by layer below). Through a model those
one-step differences feed later layers and can grow; the whole-model tests
report and bound them.
"""

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.onnx import ExportError, UnsupportedOnnxError

import onnx_models as om
import peers
from onnx_models import make_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_ort(path_or_proto, *inputs, level=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    src = path_or_proto if isinstance(path_or_proto, str) else path_or_proto.SerializeToString()
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    feeds = {i.name: (x.int_repr() if isinstance(x, npquant.QTensor) else x) for i, x in zip(sess.get_inputs(), inputs)}
    outs = sess.run(None, feeds)
    return outs[0] if len(outs) == 1 else outs


LEVELS = [ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL]
FORMATS = ["qdq", "integer"]
# The subset run under qemu-x86_64 -cpu Haswell (ONNX Runtime's AVX2 kernels).
HASWELL = pytest.mark.x86_haswell


def codes(v):
    """A QTensor's integer codes, or a float array as is."""
    return v.int_repr() if isinstance(v, npquant.QTensor) else v


def assert_exact(got, expect, what=""):
    """ONNX Runtime's output equals npquant's: the same codes, or bit-identical floats."""
    got, expect = np.asarray(got), codes(expect)
    assert got.dtype == expect.dtype and got.shape == expect.shape, (what, got.dtype, got.shape, expect.shape)
    n = int(np.count_nonzero(got.view(np.uint8) != expect.view(np.uint8)))
    assert n == 0, f"{what}: {n} bytes differ from npquant"


def steps(ort_out, npq_out, scale):
    return np.abs(ort_out.astype(np.float64) - npq_out.astype(np.float64)) / scale


# ------------------------------------------------------------------ layer by layer
def layer_inputs(model, x):
    """Each leaf module's first call: (name, module, input QTensor)."""
    seen, handles = {}, []

    def hook(name):
        def record(mod, args, out):
            seen.setdefault(name, (mod, args[0]))  # returns None: the output is kept

        return record

    for name, m in model.named_modules():
        if name and not list(m.children()):
            handles.append(m.register_forward_hook(hook(name)))
    model(x)
    for h in handles:
        h.remove()
    return [(n, m, a) for n, (m, a) in seen.items() if isinstance(a, npquant.QTensor)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2, 3])
def test_every_quantized_layer_alone(fmt, seed, tmp_path):
    """Each quantized layer exported alone and fed npquant's input codes: ONNX Runtime's
    codes equal npquant's (integer) or are within one step (qdq), at both ends of ORT's
    optimization levels."""
    rng = np.random.default_rng(seed)
    models = [
        (om.quantized_mlp(rng, act=act), rng.normal(0, 1, (32, 24)).astype(np.float32))
        for act in ("relu6", "hardswish")
    ]
    models.append(
        (
            om.quantized_poolnet(rng, hw=11, ceil_mode=bool(seed % 2)),
            rng.normal(0, 2, (3, 3, 11, 11)).astype(np.float32),
        )
    )
    gemm_total = gemm_differ = 0
    for model, x in models:
        for name, layer, xq in layer_inputs(model, x):
            expect = layer(xq)
            if not isinstance(expect, npquant.QTensor):
                continue
            path = str(tmp_path / f"{name}.onnx")
            npquant.onnx.export(layer, xq, path, format=fmt)
            peers.record(f"ORT {fmt}: layers x levels", peers.ORT_U8S8_MODE, len(LEVELS))
            for level in LEVELS:
                got = run_ort(path, xq, level=level)
                if fmt == "integer":
                    assert_exact(got, expect, f"{type(layer).__name__} '{name}'")
                    continue
                d = np.abs(got.astype(np.int64) - expect.int_repr().astype(np.int64))
                assert d.max() <= 1, f"{type(layer).__name__} '{name}': {d.max()} steps"
                if isinstance(layer, npquant.nn.quantized.Linear):
                    gemm_total, gemm_differ = gemm_total + d.size, gemm_differ + int(np.count_nonzero(d))
    if fmt == "integer":
        return
    # Linear differs only through the int32 bias rounding, at near-ties: rare. (Average
    # pooling differs at exact ties, often: PyTorch rounds after adding the zero point,
    # ONNX before; those are one step too.)
    assert gemm_total > 5_000
    assert gemm_differ / gemm_total < 0.01, f"{gemm_differ} of {gemm_total} Linear codes differ by one step"


@HASWELL
@pytest.mark.parametrize("op", ["add", "add_relu", "mul", "cat"])
def test_qfunctional_alone_within_one_step(op, rng, tmp_path):
    class Join(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = npquant.nn.quantized.QFunctional()
            self.f.scale, self.f.zero_point = 0.07, 90

        def forward(self, a, b):
            return self.f.cat([a, b], 1) if op == "cat" else getattr(self.f, op)(a, b)

    m = Join()
    a = npquant.quantize_per_tensor(rng.normal(0, 2, (16, 30)).astype(np.float32), 0.03, 120, npquant.quint8)
    b = npquant.quantize_per_tensor(rng.normal(1, 2, (16, 30)).astype(np.float32), 0.05, 60, npquant.quint8)
    npquant.onnx.export(m, (a, b), tmp_path / "j.onnx")
    got = run_ort(str(tmp_path / "j.onnx"), a, b)
    d = np.abs(got.astype(int) - m(a, b).int_repr().astype(int))
    assert d.max() <= 1


# ------------------------------------------------------------------ whole models
def check_model(q, x, out_scale, tmp_path, max_steps=3, max_frac=0.02, fmt="qdq"):
    """ONNX Runtime against npquant on a whole model: equal in the integer format; in QDQ
    at most max_steps output steps apart, on at most max_frac of the outputs."""
    path = str(tmp_path / "model.onnx")
    npquant.onnx.export(q, x[:2], path, format=fmt)  # a smaller batch: the batch dimension is symbolic
    y = q(x)
    # mode: this CPU's ORT u8 x s8 kernels (the export's uint8 weights avoid them)
    peers.record(f"ORT {fmt}: whole models x levels", peers.ORT_U8S8_MODE, len(LEVELS))
    for level in LEVELS:
        if fmt == "integer":
            assert_exact(run_ort(path, x, level=level), y, str(level))
            continue
        s = steps(run_ort(path, x, level=level), y, out_scale)
        assert s.max() <= max_steps + 1e-3, f"{s.max()} steps"
        assert np.mean(s > 0.5) <= max_frac, f"{np.mean(s > 0.5):.2%} of outputs differ"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
@pytest.mark.parametrize(
    "act,join,rank3",
    [("relu", "add", False), ("relu6", "add_relu", True), ("hardswish", "mul", False), ("dropout", "cat", True)],
)
def test_quantized_mlp_in_onnxruntime(fmt, seed, act, join, rank3, tmp_path):
    rng = np.random.default_rng(seed)
    shape = (6, 5, 24) if rank3 else (40, 24)  # rank 3 exports MatMul(Integer) instead of Gemm
    q = om.quantized_mlp(rng, act=act, join=join, in_shape=shape)
    x = rng.normal(0, 1, shape).astype(np.float32)
    # QDQ measured: at most 1 step over 10 seeds, on VNNI and AVX2-only CPUs alike
    check_model(q, x, q.fc4.scale, tmp_path, max_steps=2, fmt=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [pytest.param(0, marks=HASWELL), 1, 2])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_quantized_pooling_model_in_onnxruntime(fmt, seed, ceil_mode, tmp_path):
    rng = np.random.default_rng(seed)
    q = om.quantized_poolnet(rng, hw=13, ceil_mode=ceil_mode)
    x = rng.normal(0, 2, (5, 3, 13, 13)).astype(np.float32)
    # QDQ: pooling's ties round differently (see test_every_quantized_layer_alone), so many
    # outputs move by a step; the bound is on the size of the move (measured: 3 over 10 seeds
    # at ORT_DISABLE_ALL, 0 at ORT_ENABLE_ALL, on VNNI and AVX2-only CPUs alike)
    check_model(q, x, q.fc.scale, tmp_path, max_frac=1.0, fmt=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_qtensor_reshape_in_forward(fmt, rng, tmp_path):
    model = om.ReshapeNet(rng)
    q = om.calibrated(model, [rng.normal(0, 1, (8, 3, 8, 8)).astype(np.float32)])
    x = rng.normal(0, 1, (7, 3, 8, 8)).astype(np.float32)
    proto = npquant.onnx.export(q, x[:1], tmp_path / "r.onnx", format=fmt)
    assert "Flatten" in [n.op_type for n in proto.graph.node]
    check_model(q, x, q.fc.scale, tmp_path, max_steps=1, max_frac=1.0, fmt=fmt)


@pytest.mark.parametrize("seed", range(3))
def test_integer_qfunctional_and_activations_exact(seed, tmp_path):
    """Every QFunctional method (add_scalar inside and outside the code range, mul_scalar
    of each sign, cat with and without requantization, broadcasting) and the unary
    activations, on quint8 and qint8 codes: equal to npquant in ONNX Runtime."""
    rng = np.random.default_rng(seed)
    nnq = npquant.nn.quantized

    class Ops(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nnq.QFunctional()
            self.f.scale, self.f.zero_point = 0.07, 90
            self.hs, self.relu, self.relu6 = nnq.Hardswish(0.02, 40), nnq.ReLU(), nnq.ReLU6()

        def forward(self, a, b, c):
            return (
                self.f.add(a, b),
                self.f.add_relu(a, c),
                self.f.mul(a, b),
                self.f.cat([a, b, a], 1),
                self.f.add_scalar(a, 0.4),
                self.f.add_scalar(b, -300.0),
                self.f.mul_scalar(a, 1.5),
                self.f.mul_scalar(b, -0.7),
                self.f.mul_scalar(a, 0.0),
                self.hs(b),
                self.relu(a),
                self.relu6(c),
            )

    m = Ops()
    for dtype, zps in ((npquant.quint8, (120, 60, 3)), (npquant.qint8, (-8, 30, 0))):
        a, b = (
            npquant.quantize_per_tensor(rng.normal(mu, 2, (16, 30)).astype(np.float32), s, z, dtype)
            for mu, s, z in ((0, 0.03, zps[0]), (1, 0.05, zps[1]))
        )
        c = npquant.quantize_per_tensor(rng.normal(0, 3, (1, 30)).astype(np.float32), 0.04, zps[2], dtype)
        npquant.onnx.export(m, (a, b, c), tmp_path / "ops.onnx", format="integer", dynamic_batch=False)
        for level in LEVELS:
            for i, (got, expect) in enumerate(
                zip(run_ort(str(tmp_path / "ops.onnx"), a, b, c, level=level), m(a, b, c))
            ):
                assert_exact(got, expect, f"{dtype} output {i}")


@pytest.mark.parametrize("dtype", [npquant.quint8, npquant.qint8])
def test_integer_quantize_exact_at_every_threshold(dtype, rng, tmp_path):
    """npquant quantizes with an fma ONNX does not have; the integer format's thresholds make
    ONNX Runtime agree on every float, including each code's boundary and its neighbours."""
    from npquant.onnx._integer import quantize_thresholds

    for scale, zp in ((0.0123, 0 if dtype is npquant.qint8 else 128), (3.1e-5, 7), (0.1, dtype.qmin)):
        stub = npquant.nn.quantized.Quantize(scale, zp, dtype)
        t = quantize_thresholds(scale, zp, dtype)[1:-1]
        x = np.concatenate(
            [
                t,
                np.nextafter(t, -np.inf),
                np.nextafter(t, np.inf),
                [0.0, -0.0, 3e38, -3e38],
                rng.normal(0, 300 * scale, 5000),
            ]
        ).astype(np.float32)
        npquant.onnx.export(stub, x, tmp_path / "q.onnx", format="integer")
        for level in LEVELS:
            assert_exact(run_ort(str(tmp_path / "q.onnx"), x, level=level), stub(x), f"scale {scale} zp {zp}")


def test_integer_avgpool_divisor_override_and_dynamic_warning(rng, tmp_path):
    pool = npquant.nn.quantized.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=5)
    xq = npquant.quantize_per_tensor(rng.normal(0, 1, (2, 3, 9, 9)).astype(np.float32), 0.02, 77, npquant.quint8)
    npquant.onnx.export(pool, xq, tmp_path / "p.onnx", format="integer")
    assert_exact(run_ort(str(tmp_path / "p.onnx"), xq), pool(xq))
    lin = npquant.nn.quantized.dynamic.Linear.from_float(nn.Linear(8, 4, rng=rng))
    with pytest.warns(UserWarning, match="dynamic Linear .* not bit-exact"):
        npquant.onnx.export(lin, np.ones((2, 8), np.float32), tmp_path / "d.onnx", format="integer")


def test_unknown_format_names_the_choices(tmp_path):
    x = np.ones((1, 2), np.float32)
    with pytest.raises(ValueError, match="'qdq', 'integer'.*'int8'"):
        npquant.onnx.export(nn.Linear(2, 2), x, tmp_path / "x.onnx", format="int8")
    with pytest.raises(ValueError, match="'uint8', 'int8'.*'int4'"):
        npquant.onnx.export(nn.Linear(2, 2), x, tmp_path / "x.onnx", weight_dtype="int4")
    with pytest.raises(ValueError, match="integer.*saturate"):
        npquant.onnx.export(nn.Linear(2, 2), x, tmp_path / "x.onnx", format="integer", weight_dtype="int8")


def test_integer_structure_and_no_fusion(rng, tmp_path):
    """The integer graph holds MatMulInteger, float requantization and QuantizeLinear(scale 1),
    no DequantizeLinear; ONNX Runtime's optimizer keeps MatMulInteger (no fusion into a kernel
    with other arithmetic)."""
    q = om.quantized_mlp(rng)
    proto = npquant.onnx.export(q, rng.normal(0, 1, (2, 24)).astype(np.float32), tmp_path / "m.onnx", format="integer")
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MatMulInteger") == 4 and "DequantizeLinear" not in ops and "Gemm" not in ops
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    # uint8 x uint8: the weights 128 above npquant's int8 codes, weight zero point 128
    mm = next(n for n in proto.graph.node if n.op_type == "MatMulInteger")
    assert inits[mm.input[1]].dtype == np.uint8 and inits[mm.input[3]] == np.uint8(128)
    assert np.array_equal(inits[mm.input[1]].astype(int) - 128, q.fc1.weight().int_repr().T)
    p = q.fc1._packed_params
    bias_s, mult = npquant.qparams.requant_constants(q.quant.scale, p.w_scale, q.fc1.scale, p.bias)
    assert np.array_equal(inits["fc1_bias_s"].reshape(-1), bias_s)
    assert np.array_equal(inits["fc1_multiplier"].reshape(-1), mult)
    opt = optimized_ops(tmp_path / "m.onnx", tmp_path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert opt.count("MatMulInteger") == 4, opt


def optimized_ops(path, tmp_path, level) -> list:
    """The op types of the graph ONNX Runtime runs after its optimizations at `level`."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = level
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]


@HASWELL
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_in_and_out(fmt, rng, tmp_path):
    """A QTensor input and output become uint8 tensors carrying the codes."""
    lin = npquant.nn.quantized.LinearReLU(12, 7)
    w = npquant.quantize_per_channel(
        rng.normal(0, 0.1, (7, 12)).astype(np.float32),
        np.full(7, 0.002, np.float32),
        np.zeros(7, int),
        0,
        npquant.qint8,
    )
    lin.set_weight_bias(w, rng.normal(0, 0.1, 7).astype(np.float32))
    lin.scale, lin.zero_point = 0.01, 20
    xq = npquant.quantize_per_tensor(rng.normal(0, 1, (9, 12)).astype(np.float32), 0.02, 128, npquant.quint8)
    proto = npquant.onnx.export(lin, xq, tmp_path / "l.onnx", format=fmt)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    got = run_ort(str(tmp_path / "l.onnx"), xq)
    if fmt == "integer":
        assert_exact(got, lin(xq))
    assert np.abs(got.astype(int) - lin(xq).int_repr().astype(int)).max() <= 1


@pytest.mark.parametrize("weight_dtype", ["uint8", "int8"])
def test_qdq_structure(weight_dtype, rng, tmp_path):
    """Per-channel weights (axis 0), int32 bias, uint8 activations: the QDQ layout. The
    weights are uint8 codes 128 above npquant's, zero points 128 (default), or npquant's
    int8 codes with zero points 0."""
    q = om.quantized_mlp(rng)
    proto = npquant.onnx.export(
        q, rng.normal(0, 1, (2, 24)).astype(np.float32), tmp_path / "m.onnx", weight_dtype=weight_dtype
    )
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Gemm") == 4 and "QuantizeLinear" in ops
    w, zp = inits["fc2_weight"], inits["fc2_weight_zero_point"]
    shift = 128 if weight_dtype == "uint8" else 0
    assert w.dtype == zp.dtype == np.dtype(weight_dtype) and w.shape == (40, 40) and zp.shape == (40,)
    assert np.array_equal(w.astype(int) - shift, q.fc2.weight().int_repr())
    assert np.all(zp.astype(int) == shift)
    assert inits["fc2_bias"].dtype == np.int32
    assert inits["fc2_weight_scale"].shape == (40,)
    assert "fc3_bias" not in inits  # fc3 has no bias
    dq_w = next(n for n in proto.graph.node if n.input and n.input[0] == "fc2_weight")
    assert dq_w.op_type == "DequantizeLinear" and dq_w.attribute[0].i == 0
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


@pytest.mark.parametrize("weight_dtype", ["uint8", "int8"])
def test_ort_fuses_to_integer_kernels(weight_dtype, rng, tmp_path):
    """ONNX Runtime recognizes the QDQ units and runs integer kernels (QGemm, and for rank 3
    QLinearMatMul / MatMulIntegerToFloat) with either weight type."""
    for shape, fused in (((2, 24), {"QGemm": 4}), ((2, 5, 24), {"QLinearMatMul": 1, "MatMulIntegerToFloat": 3})):
        q = om.quantized_mlp(rng, in_shape=shape)
        npquant.onnx.export(
            q, rng.normal(0, 1, shape).astype(np.float32), tmp_path / "m.onnx", weight_dtype=weight_dtype
        )
        for level in (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
            ops = optimized_ops(tmp_path / "m.onnx", tmp_path, level)
            assert {op: ops.count(op) for op in fused} == fused, ops
            assert "Gemm" not in ops and "MatMul" not in ops


def saturating_linear(rng):
    """A quantized Linear whose products ONNX Runtime's uint8 x int8 AVX2 kernels saturate:
    input codes 255 (zero point 128) against weight rows of 127 and -128 make int16 pair
    sums of +-64770, next to random rows."""
    k, n = 32, 12
    w = rng.integers(-128, 128, (n, k))
    w[0], w[1], w[2, ::2] = 127, -128, 127
    wq = npquant.quantize_per_channel(
        (w * 0.01).astype(np.float32), np.full(n, 0.01, np.float32), np.zeros(n, int), 0, npquant.qint8
    )
    lin = npquant.nn.quantized.Linear(k, n)
    lin.set_weight_bias(wq, rng.normal(0, 1, n).astype(np.float32))
    codes = rng.integers(0, 256, (16, k)).astype(np.uint8)
    codes[:4] = 255
    lin.scale, lin.zero_point = 0.02 * 0.01 * 127 * 127 * k / 120, 128  # the largest |acc|: ~120 steps
    return lin, npquant.QTensor(codes, 0.02, 128)


@HASWELL
def test_uint8_weights_exact_where_int8_saturates(rng, tmp_path):
    """The reason weights are exported as uint8: on a layer built to saturate int16 pair
    sums, integer is exact and default QDQ within one step on every CPU; QDQ with int8
    weights is within one step at ORT_DISABLE_ALL (float ops) and, fused into QGemm, only
    on CPUs with VNNI: on AVX2-only CPUs it is tens of steps off."""
    lin, xq = saturating_linear(rng)
    peers.record("ORT saturating Linear: formats x levels", peers.ORT_U8S8_MODE, 3 * len(LEVELS))
    expect = lin(xq).int_repr().astype(int)
    assert np.abs(expect - 128).max() > 60  # the saturating rows are far from the zero point
    for fmt, wd in (("integer", "uint8"), ("qdq", "uint8"), ("qdq", "int8")):
        npquant.onnx.export(lin, xq, tmp_path / "l.onnx", format=fmt, weight_dtype=wd)
        for level in LEVELS:
            d = np.abs(run_ort(str(tmp_path / "l.onnx"), xq, level=level).astype(int) - expect)
            what = f"{fmt} {wd} {level}: {d.max()} steps"
            if fmt == "integer":
                assert d.max() == 0, what
            elif wd == "uint8" or level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL or peers.ORT_U8S8_EXACT:
                assert d.max() <= 1, what
            else:
                assert d[:4].max() > 10, what  # saturated


def test_dynamic_linear_export(rng, tmp_path):
    """DynamicQuantizeLinear + int8 weights: ORT's per-call activation qparams differ slightly
    from PyTorch's choose_qparams, so the outputs agree to the activation quantization error."""
    lin = nn.Linear(64, 32, rng=rng)
    model = npquant.quantize_dynamic(nn.Sequential(lin, nn.ReLU()), {nn.Linear})
    x = rng.normal(0, 1, (20, 64)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "d.onnx")
    got, expect = run_ort(str(tmp_path / "d.onnx"), x), model(x)
    ref = lin(x).clip(0)
    err_npq = np.abs(expect - ref).max()
    assert np.abs(got - expect).max() <= 2 * err_npq + 1e-6
    with pytest.raises(ExportError, match="per_row"):
        npquant.onnx.export(npquant.nn.quantized.dynamic.Linear.from_float(lin, per_row=True), x, tmp_path / "e.onnx")


def test_float_model_export(rng, tmp_path):
    model = om.PoolNet(rng).eval()
    x = rng.normal(0, 1, (4, 3, 12, 12)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "f.onnx")
    np.testing.assert_allclose(run_ort(str(tmp_path / "f.onnx"), x), model(x), rtol=1e-5, atol=1e-5)


def test_export_leaves_model_untouched(rng, tmp_path):
    q = om.quantized_mlp(rng)
    x = rng.normal(0, 1, (3, 24)).astype(np.float32)
    before = q(x)
    npquant.onnx.export(q, x, tmp_path / "m.onnx")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in q.modules())
    assert "add" not in q.skip.__dict__
    np.testing.assert_array_equal(q(x), before)
    assert npquant.QTensor.reshape.__name__ == "reshape" and "traced" not in repr(npquant.QTensor.reshape)


# ------------------------------------------------------------------ export errors
class Custom(nn.Module):
    def forward(self, x):
        return x * 2


class NumpyInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(x) + 1.0)


class CustomLeaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.odd = Custom()

    def forward(self, x):
        return self.odd(self.fc(x))


def test_export_errors_name_the_module(tmp_path):
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ExportError, match="'odd' \\(Custom\\)"):
        npquant.onnx.export(CustomLeaf(), x, tmp_path / "a.onnx")
    with pytest.raises(ExportError, match="input of module 'relu'"):
        npquant.onnx.export(NumpyInForward(), x, tmp_path / "b.onnx")
    m = nn.Sequential(nn.Linear(4, 4))
    m[0].register_forward_hook(lambda *a: None)
    with pytest.raises(ExportError, match="'0' \\(Linear\\) has forward hooks"):
        npquant.onnx.export(m, x, tmp_path / "c.onnx")
    with pytest.raises(ExportError, match="divisor_override"):
        npquant.onnx.export(nn.AvgPool2d(2, divisor_override=3), np.ones((1, 1, 4, 4), np.float32), tmp_path / "d.onnx")
    with pytest.raises(ExportError, match="example input 0"):
        npquant.onnx.export(nn.Linear(4, 4), np.ones((2, 4), np.int32), tmp_path / "e.onnx")


def test_npquant_imports_without_onnx():
    from conftest import run_python

    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import numpy as np, npquant\n"
        "assert 'onnx' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    npquant.onnx.export(npquant.nn.Linear(2, 2), np.ones((1, 2), np.float32), 'x.onnx')\n"
        "except ImportError as e:\n"
        "    assert 'pip install onnx' in str(e); print('ok')\n"
    )
    r = run_python(code)
    assert r.stdout.strip() == "ok", r.stderr


# ------------------------------------------------------------------ load


def test_load_handwritten_graph_equals_onnxruntime(rng):
    """Gemm(transB=0, alpha), MatMul + Add, BatchNormalization, Clip, pools, Add/Mul/Concat,
    Reshape, HardSwish: the imported model's float outputs equal ORT's on the same file."""
    from onnx import helper

    f = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)  # noqa: E731
    inits = {
        "bn_s": f(3) + 1,
        "bn_b": f(3),
        "bn_m": f(3),
        "bn_v": np.abs(f(3)) + 0.5,
        "zero": np.float32(0),
        "six": np.float32(6),
        "shape": np.array([0, -1], np.int64),
        "w1": f(75, 20),
        "b1": f(20),
        "w2": f(20, 20),
        "b2": f(20),
        "half": np.float32(0.5),
        "shape2": np.array([-1, 4, 10], np.int64),
    }
    nodes = [
        helper.make_node("BatchNormalization", ["x", "bn_s", "bn_b", "bn_m", "bn_v"], ["a"], epsilon=1e-3),
        helper.make_node("Clip", ["a", "zero", "six"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["c"], ["d"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["d"], ["g"]),
        helper.make_node("Reshape", ["d", "shape"], ["e"]),
        helper.make_node("Gemm", ["e", "w1", "b1"], ["h"], alpha=0.5),
        helper.make_node("HardSwish", ["h"], ["i"]),
        helper.make_node("MatMul", ["i", "w2"], ["j0"]),
        helper.make_node("Add", ["j0", "b2"], ["j"]),
        helper.make_node("Add", ["i", "j"], ["k"]),
        helper.make_node("Mul", ["k", "half"], ["l"]),
        helper.make_node("Relu", ["l"], ["m"]),
        helper.make_node("Concat", ["m", "j"], ["n"], axis=1),
        helper.make_node("Reshape", ["n", "shape2"], ["y"]),
    ]
    model = make_onnx(nodes, inits, ["N", 3, 8, 8])
    net = npquant.onnx.load(model)
    assert isinstance(net.j0, nn.Linear) and net.j0.bias is not None  # MatMul + Add folded
    x = rng.normal(0, 1, (5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(net(x), run_ort(model, x), rtol=1e-5, atol=1e-5)


def test_load_torch_export_matches_torch_and_quantizes(rng, tmp_path):
    torch = pytest.importorskip("torch")
    import io
    import warnings

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = torch.nn.Linear(20, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 8)

        def forward(self, x):
            y = torch.relu(self.fc1(x))
            y = y + torch.nn.functional.relu6(self.fc2(y))
            return self.fc3(y * 0.5)

    torch.manual_seed(int(rng.integers(1 << 30)))
    t = T().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(t, (torch.randn(4, 20),), buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    net = npquant.onnx.load(buf.getvalue())
    x = rng.normal(0, 1, (50, 20)).astype(np.float32)
    np.testing.assert_allclose(net(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    # the imported model quantizes with the eager workflow and exports back to ONNX
    q = om.calibrated(net, [x])
    assert isinstance(q.quant, npquant.nn.quantized.Quantize)
    rel = np.linalg.norm(q(x) - net(x)) / np.linalg.norm(net(x))
    assert rel < 0.05
    npquant.onnx.export(q, x, tmp_path / "q.onnx")
    out_scale = next(m.scale for n, m in q.named_modules() if n.startswith("fc3"))
    assert steps(run_ort(str(tmp_path / "q.onnx"), x), q(x), out_scale).max() <= 4
    check_model(q, x, out_scale, tmp_path, fmt="integer")


def test_float_round_trip(rng, tmp_path):
    model = om.MLP(rng, join="cat").eval()
    x = rng.normal(0, 1, (6, 24)).astype(np.float32)
    npquant.onnx.export(model, x, tmp_path / "m.onnx")
    back = npquant.onnx.load(str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(back(x), model(x), rtol=1e-6, atol=1e-6)


def test_load_errors_name_the_op():
    from onnx import helper

    w = np.ones((4, 4), np.float32)
    cases = [
        ([helper.make_node("Erf", ["x"], ["y"], name="act")], {}, "Erf node 'act': op Erf"),
        (
            [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
            {"lo": np.float32(-1), "hi": np.float32(1)},
            "Clip\\(-1.0, 1.0\\)",
        ),
        ([helper.make_node("Gemm", ["x", "w"], ["y"], transA=1)], {"w": w}, "transA"),
        ([helper.make_node("MatMul", ["w", "x"], ["y"])], {"w": w}, "MatMul\\(activation"),
        ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])], {}, "not symmetric"),
        ([helper.make_node("QuantizeLinear", ["x", "s"], ["y"])], {"s": np.float32(1)}, "is quantized"),
        ([helper.make_node("Add", ["x", "w"], ["y"])], {"w": w}, "constant of shape"),
    ]
    for nodes, inits, pattern in cases:
        with pytest.raises(UnsupportedOnnxError, match=pattern):
            npquant.onnx.load(make_onnx(nodes, inits, [2, 4]))


class TwoHeads(nn.Module):
    """Two inputs, a shared layer called twice, two outputs (one float, one quantized)."""

    def __init__(self, rng):
        super().__init__()
        self.qa, self.qb = nn.QuantStub(), nn.QuantStub()
        self.shared = nn.Linear(8, 8, rng=rng)
        self.cat = nn.FloatFunctional()
        self.head = nn.Linear(16, 3, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, a, b):
        ya, yb = self.shared(self.qa(a)), self.shared(self.qb(b))
        y = self.head(self.cat.cat([ya, yb], 1))
        return self.dequant(y), y


@pytest.mark.parametrize("fmt", FORMATS)
def test_multiple_inputs_outputs_and_shared_layers(fmt, rng, tmp_path):
    model = TwoHeads(rng).eval()
    model.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(model)
    a, b = (rng.normal(0, 1, (16, 8)).astype(np.float32) for _ in range(2))
    prepared(a, b)
    q = npquant.convert(prepared)
    proto = npquant.onnx.export(q, (a, b), tmp_path / "two.onnx", format=fmt)
    assert [i.name for i in proto.graph.input] == ["input_0", "input_1"]
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]
    weights = [t.name for t in proto.graph.initializer if t.dims == [8, 8]]
    assert weights == ["shared_weight"]  # the layer called twice stores its weight once
    yf, yq = q(a, b)
    of, oq = run_ort(str(tmp_path / "two.onnx"), a, b)
    if fmt == "integer":
        assert_exact(of, yf)
        assert_exact(oq, yq)
    assert steps(of, yf, q.head.scale).max() <= 1 + 1e-3
    assert np.abs(oq.astype(int) - yq.int_repr().astype(int)).max() <= 1
