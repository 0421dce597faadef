"""torchvision's quantizable models as the peer of npquant.models: importing torchvision
beside a CPU torch, and one comparison per model that tests/test_models_torchvision.py
asserts on and bench/vision_models.py prints as the issue-13 table.

The comparison (`compare`), for one of the seven architectures:
- torchvision's model (weights=None, quantize=False, seeded, BatchNorm statistics
  randomized) and its state dict loaded into npquant.models.<name>: fp32 outputs;
- torch's eager static quantization (fuse_model, HistogramObserver with the full 8-bit
  range, per-channel symmetric weights: the qconfig npquant's 'x86' one stands for),
  calibrated while every activation observer's input is recorded;
- npquant's observers of the same names fed those very float32 arrays: their qparams
  against torch's, observer by observer;
- npquant converted from those observers: its int8 output against torch's, directly and
  through peers.emulate_torch (what torch computes on this CPU: oneDNN's requantization
  order, FBGEMM's saturating pairs);
- optionally npquant's own calibration (its own float activations), for the table.
"""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np

import peers

MODELS = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "googlenet",
    "inception_v3",
)
# Inception v3's stem and pools need at least 75x75 inputs; ShuffleNetV2 at least 33x33,
# as torch 2.13's quantized mean raises 'required rank 4 tensor to use channels_last format'
# on the 1x1 conv output smaller inputs leave (strides fit both memory formats there).
MIN_SIZE = {"inception_v3": 75, "shufflenet_v2_x1_0": 33}
# Where npquant.models pools with a module (AdaptiveAvgPool2d(1), which exports to ONNX) and
# torchvision calls Tensor.mean([2, 3]), whose quantized float route torch's twin runs
# (peers.torch_mean_hw)
TORCH_MEAN = {"shufflenet_v2_x1_0": ("avgpool",)}

# Kept alive for the process: the operator definitions live as long as this Library object.
_STAND_INS: list = []
_MISSING_OP = re.compile(r"operator torchvision::(\w+) does not exist")


def import_torchvision():
    """`import torchvision`, also where its C extension cannot load.

    PyPI's torchvision wheels for Linux are CUDA builds: beside a CPU torch their
    extension (0.28: _C.so) needs libtorch_cuda.so and fails to load. torchvision
    tolerates that (extension._has_ops() is then False, and the ops that need the
    extension raise when called), except for one thing: _meta_registrations registers
    fake kernels for torchvision::nms and ::qnms unconditionally, and torch refuses a fake
    kernel for an operator that does not exist ("operator torchvision::nms does not
    exist"), so the import fails. Only when it fails so, this defines those operators'
    schemas (as its C++ library declares them; no kernel: calling them raises torch's
    'could not run' error, and nothing in the classification models calls them), drops
    the half-imported modules and imports again. Where the extension loads (a torchvision
    built for this torch), nothing is defined.

    Returns the torchvision module; raises ImportError when torchvision is not installed
    or fails to import otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. its image extension failing to load: not used here
            import torchvision
        return torchvision
    except RuntimeError as e:
        missing = _MISSING_OP.search(str(e))
        if not missing or missing.group(1) not in ("nms", "qnms") or _STAND_INS:
            raise ImportError(f"torchvision does not import beside torch here: {e}") from e
    import torch

    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _STAND_INS.append(lib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchvision
    return torchvision


def sqnr(ref: np.ndarray, y: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - y) ** 2))
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(err, 1e-30)))


def _observers(model, cls) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, cls) and "weight_fake" not in n}


def _qparams_differ(prepared, torch_qparams: dict) -> list:
    """Names of the activation observers whose qparams differ from torch's (or are absent)."""
    from npquant.observers import ObserverBase

    mine = _observers(prepared, ObserverBase)
    return [
        n
        for n, qp in torch_qparams.items()
        if n not in mine or not all(np.array_equal(a, b) for a, b in zip(mine[n].calculate_qparams(), qp))
    ]


def _record_outputs(model, quantized) -> tuple:
    """Hooks on every submodule that keep its quantized outputs, as (codes, scale, zero
    point) per call; returns (the dict they fill, the handles to remove)."""
    seen: dict = {}

    def hook(mod, args, out, name):
        if quantized(out):
            seen.setdefault(name, []).append(out)

    handles = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n)) for n, m in model.named_modules()]
    return seen, handles


def _codes(t) -> tuple:
    """(int codes in logical NCHW order, float32 scale, zero point) of a torch or npquant
    quantized tensor."""
    codes = t.int_repr()
    return np.asarray(codes.numpy() if hasattr(codes, "numpy") else codes), np.float32(t.q_scale()), t.q_zero_point()


def _layer_differences(torch_outs: dict, npq_outs: dict) -> tuple:
    """(module outputs compared, codes compared, {name: differing codes}) over the submodules
    both models have."""
    outputs, total, differ = 0, 0, {}
    for name, touts in torch_outs.items():
        nouts = npq_outs.get(name)
        if nouts is None:
            continue
        bad = 0
        for t, n in zip(touts, nouts, strict=True):
            (tc, ts, tz), (nc, ns, nz) = _codes(t), _codes(n)
            outputs += 1
            total += tc.size
            if tc.shape != nc.shape or (ts, tz) != (ns, nz):
                bad += tc.size
            else:
                bad += int(np.count_nonzero(tc != nc))
        if bad:
            differ[name] = bad
    return outputs, total, differ


def compare(name: str, size: int = 64, batch: int = 2, calib: int = 4, calib_batch: int = 4, seed: int = 0, own=False):
    """The comparison of the module docstring, on `batch` images of size x size after `calib`
    calibration batches of `calib_batch`; returns a dict:
    fp32_rel: max |npquant fp32 - torch fp32| / max |torch fp32| of the logits;
    observers, qparams_differ: how many activation observers torch called, and the names of
    those where npquant's, fed the same arrays, give other qparams;
    layers_compared, codes_compared, layers_differ: the quantized outputs of every submodule
    both converted models have, torch's against npquant's run through peers.emulate_torch
    (modes: its layer counts; emulated: whether any layer needed torch's arithmetic): how
    many outputs, how many codes, {name: differing codes};
    identical, identical_emulated: the fraction of output logits equal to torch int8's, for
    npquant's model and for its emulation of torch;
    sqnr_*: against torch fp32 (dB); with own=True also own_qparams_differ and sqnr_npq for
    npquant calibrated on its own float activations."""
    import torch

    import npquant
    import npquant.models as nm
    from npquant.observers import ObserverBase
    from npquant.qtensor import QTensor

    tvq = import_torchvision().models.quantization
    torch.backends.quantized.engine = "x86"
    size = max(size, MIN_SIZE.get(name, 0))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # GoogLeNet and Inception v3 draw their default weights from a truncated normal (slow,
    # and a FutureWarning when not asked for): torch's default init is as good here
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    tm = getattr(tvq, name)(weights=None, quantize=False, **kwargs)
    peers.randomize_bn(torch, tm)
    tm.eval()
    model = getattr(nm, name)(weights={k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
    yn = model(x)

    tm.fuse_model()
    tm.qconfig = peers.torch_x86_qconfig(torch)
    tp = torch.ao.quantization.prepare(tm, inplace=True)  # no copies: tm is not needed again
    seen: dict = {}
    for n, o in _observers(tp, torch.ao.quantization.ObserverBase).items():
        o.register_forward_pre_hook(
            lambda mod, args, n=n: seen.setdefault(n, []).append(args[0].detach().numpy().copy())
        )
    batches = [rng.standard_normal((calib_batch, 3, size, size)).astype(np.float32) for _ in range(calib)]
    with torch.no_grad():
        for b in batches:
            tp(torch.from_numpy(b))
    # observers torch attached but never called (a FloatFunctional of a block without a
    # residual) are left out: they have nothing to compare
    torch_qparams = {
        n: tuple(t.numpy() for t in o.calculate_qparams())
        for n, o in _observers(tp, torch.ao.quantization.ObserverBase).items()
        if n in seen
    }
    tq = torch.ao.quantization.convert(tp, inplace=True)
    torch_outs, handles = _record_outputs(tq, lambda o: isinstance(o, torch.Tensor) and o.is_quantized)
    with torch.no_grad():
        qt = tq(torch.from_numpy(x)).numpy()
    for h in handles:
        h.remove()

    model.fuse_model()
    model.qconfig = npquant.get_default_qconfig("x86")
    fed = npquant.prepare(model)
    fed_observers = _observers(fed, ObserverBase)
    for n, arrays in seen.items():
        if n in fed_observers:
            for a in arrays:
                fed_observers[n](a)
    qparams_differ = _qparams_differ(fed, torch_qparams)
    qmodel = npquant.convert(fed)
    qn = qmodel(x)
    twin, modes = peers.emulate_torch(qmodel, torch_mean=TORCH_MEAN.get(name, ()))
    npq_outs, handles = _record_outputs(twin, lambda o: isinstance(o, QTensor))
    qe = twin(x)
    for h in handles:
        h.remove()
    layers_compared, codes_compared, layers_differ = _layer_differences(torch_outs, npq_outs)

    out = dict(
        model=name,
        size=size,
        yt=yt,
        yn=yn,
        fp32_rel=float(np.abs(yn - yt).max() / np.abs(yt).max()),
        observers=len(torch_qparams),
        qparams_differ=qparams_differ,
        qt=qt,
        qn=qn,
        qe=qe,
        modes=dict(modes),
        emulated=twin is not qmodel,
        layers_compared=layers_compared,
        codes_compared=codes_compared,
        layers_differ=layers_differ,
        identical=float(np.mean(qn == qt)),
        identical_emulated=float(np.mean(qe == qt)),
        sqnr_torch=sqnr(yt, qt),
        sqnr_npq_torchq=sqnr(yt, qn),
    )
    if own:  # npquant's own calibration, on its own float activations
        prepared = npquant.prepare(model)
        for b in batches:
            prepared(b)
        out["own_qparams_differ"] = _qparams_differ(prepared, torch_qparams)
        out["sqnr_npq"] = sqnr(yt, npquant.convert(prepared)(x))
    return out


def torchvision_float(name: str, seed: int = 0, **kwargs):
    """torchvision's quantizable `name` as a float model (weights=None, quantize=False, seeded,
    BatchNorm statistics randomized, eval mode): what a user exports to ONNX."""
    import torch

    tvq = import_torchvision().models.quantization
    torch.manual_seed(seed)
    if name in ("googlenet", "inception_v3"):  # torch's default init: see compare()
        kwargs.setdefault("init_weights", False)
    model = getattr(tvq, name)(weights=None, quantize=False, **kwargs)
    peers.randomize_bn(torch, model)
    return model.eval()


def onnx_route(
    name: str, exporter: str, dynamic: bool, size: int = 32, optimize: bool = True, seed: int = 0, **model_kwargs
):
    """torchvision's `name` (torchvision_float, with model_kwargs such as transform_input=True
    for googlenet / inception_v3) through torch.onnx.export (tests/torch_onnx.py:
    exporter 'torchscript' or 'dynamo', batch static or dynamic), npquant.onnx.load, and
    npquant's eager static quantization of the loaded model; returns a dict:
    export_s, load_s: seconds for the two steps;
    batches: the batch sizes run (2; also 1 and 3 for a dynamic batch);
    fp32_rel: the largest over those batches of max |npquant - torch| / max |torch|;
    quantized_convs, float_convs: the converted model's quantized and float Conv2d modules;
    sqnr_int8: npquant int8 (x86 qconfig, calibrated on two batches of 2) against torch fp32,
    in dB, at batch 2;
    int8_shapes_ok: whether the int8 model gives torch's output shape for every batch.
    Raises what npquant.onnx.load raises (UnsupportedOnnxError naming the node)."""
    import time

    import torch

    import npquant
    import npquant.onnx
    import torch_onnx
    from npquant.nn import quantized as nnq

    size = max(size, MIN_SIZE.get(name, 0))
    model = torchvision_float(name, seed, **model_kwargs)
    rng = np.random.default_rng(seed)
    image = lambda n: rng.standard_normal((n, 3, size, size)).astype(np.float32)  # noqa: E731
    t0 = time.perf_counter()
    data = torch_onnx.export(model, torch.from_numpy(image(2)), exporter, dynamic, optimize=optimize)
    t1 = time.perf_counter()
    loaded = npquant.onnx.load(data)
    t2 = time.perf_counter()
    batches = (2, 1, 3) if dynamic else (2,)
    xs = {n: image(n) for n in batches}
    with torch.no_grad():
        refs = {n: model(torch.from_numpy(x)).numpy() for n, x in xs.items()}
    fp32_rel = max(float(np.abs(loaded(xs[n]) - refs[n]).max() / np.abs(refs[n]).max()) for n in batches)
    loaded.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(loaded)
    for _ in range(2):
        prepared(image(2))
    qmodel = npquant.convert(prepared)
    kinds = [type(m) for m in qmodel.modules()]
    return dict(
        model=name,
        size=size,
        exporter=exporter,
        dynamic=dynamic,
        export_s=t1 - t0,
        load_s=t2 - t1,
        batches=batches,
        fp32_rel=fp32_rel,
        quantized_convs=sum(issubclass(k, nnq.Conv2d) for k in kinds),
        float_convs=sum(issubclass(k, npquant.nn.Conv2d) and not issubclass(k, nnq.Conv2d) for k in kinds),
        sqnr_int8=sqnr(refs[2], qmodel(xs[2])),
        int8_shapes_ok=all(qmodel(xs[n]).shape == refs[n].shape for n in batches),
    )
