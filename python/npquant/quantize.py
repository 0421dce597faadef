"""Eager-mode quantization: propagate_qconfig_, prepare, convert, quantize, quantize_dynamic.

The workflow of torch.ao.quantization, for npquant.nn models:

    model.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(model)        # observers on the layers to quantize
    prepared(calibration_batch)              # ... collect activation ranges
    qmodel = npquant.convert(prepared)       # layers swapped for npquant.nn.quantized ones

``prepare`` and ``convert`` return new models unless ``inplace=True``; the
converted model holds no observers and no observer hooks.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import numpy as np

from . import nn
from ._dtypes import as_qdtype, float16, qint8, quint4x2, quint8
from .interop import is_torch_object
from .nn import intrinsic as nni
from .nn import quantized as nnq
from .nn.intrinsic import _Fused
from .nn.quantized._convert import from_float
from .observers import ObserverBase, PlaceholderObserver, make_observer
from .qconfig import (
    QConfig,
    default_dynamic_qconfig,
    float_qparams_weight_only_qconfig,
    float_qparams_weight_only_qconfig_4bit,
)
from .report import FloatIsland, compare

__all__ = [
    "propagate_qconfig_",
    "prepare",
    "convert",
    "quantize",
    "quantize_dynamic",
    "get_default_static_quant_module_mappings",
    "get_default_dynamic_quant_module_mappings",
]

# float module type -> quantized module class; qconfig_dict: type or name -> QConfig (or None).
# float class -> quantized class (or any object with from_float(mod), as _Float16FromFloat)
ModuleMapping = dict[type, Any]
QConfigDict = dict[Any, Any]


def get_default_static_quant_module_mappings() -> ModuleMapping:
    """float module type -> quantized module class (built by its ``from_float``)."""
    mapping: ModuleMapping = {
        nn.QuantStub: nnq.Quantize,
        nn.DeQuantStub: nnq.DeQuantize,
        nn.Linear: nnq.Linear,
        nni.LinearReLU: nnq.LinearReLU,
        nn.BatchNorm2d: nnq.BatchNorm2d,
        nni.BNReLU2d: nnq.BNReLU2d,
        nn.ReLU: nnq.ReLU,
        nn.ReLU6: nnq.ReLU6,
        nn.Hardswish: nnq.Hardswish,
        nn.Hardsigmoid: nnq.Hardsigmoid,
        nn.Sigmoid: nnq.Sigmoid,
        nn.Tanh: nnq.Tanh,
        nn.LeakyReLU: nnq.LeakyReLU,
        nn.ELU: nnq.ELU,
        nn.SiLU: nnq.SiLU,
        nn.GELU: nnq.GELU,
        nn.MaxPool2d: nnq.MaxPool2d,
        nn.AvgPool2d: nnq.AvgPool2d,
        nn.AdaptiveAvgPool2d: nnq.AdaptiveAvgPool2d,
        nn.Flatten: nnq.Flatten,
        nn.Dropout: nnq.Dropout,
        nn.FloatFunctional: nnq.QFunctional,
        nn.Embedding: nnq.Embedding,
        nn.EmbeddingBag: nnq.EmbeddingBag,
        nn.Conv2d: nnq.Conv2d,
        nni.ConvReLU2d: nnq.ConvReLU2d,
        nn.Conv1d: nnq.Conv1d,
        nni.ConvReLU1d: nnq.ConvReLU1d,
        nn.ConvTranspose2d: nnq.ConvTranspose2d,
    }
    return mapping


def get_default_dynamic_quant_module_mappings() -> ModuleMapping:
    # MultiheadAttention is swapped only when the qconfig_spec names it (its out_proj
    # is a NonDynamicallyQuantizableLinear, which {nn.Linear} does not reach, as in torch).
    return {
        nn.Linear: nnq.dynamic.Linear,
        nn.LSTM: nnq.dynamic.LSTM,
        nn.GRU: nnq.dynamic.GRU,
        nn.RNN: nnq.dynamic.RNN,
        nn.LSTMCell: nnq.dynamic.LSTMCell,
        nn.GRUCell: nnq.dynamic.GRUCell,
        nn.RNNCell: nnq.dynamic.RNNCell,
        nn.Embedding: nnq.Embedding,
        nn.EmbeddingBag: nnq.EmbeddingBag,
        nn.MultiheadAttention: nnq.dynamic.MultiheadAttention,
    }


class _Float16FromFloat:
    """A mapping value for quantize_dynamic(dtype=npquant.float16): builds the module
    with float16 weights (dynamic Linear -> LinearFP16; recurrent layers dtype=float16)."""

    def __init__(self, qcls: Any) -> None:
        self.qcls = qcls

    def from_float(self, mod: nn.Module) -> nn.Module:
        if self.qcls is nnq.dynamic.Linear or self.qcls is nnq.dynamic.LinearFP16:
            if not isinstance(mod, nn.Linear):
                raise TypeError(f"quantize_dynamic(dtype=npquant.float16): a Linear mapping got {type(mod).__name__}")
            return nnq.dynamic.LinearFP16.from_float(mod)
        make = getattr(self.qcls, "from_float", None)
        if make is None or "dtype" not in inspect.signature(make).parameters:
            raise TypeError(
                f"quantize_dynamic(dtype=npquant.float16): {getattr(self.qcls, '__name__', self.qcls)} "
                "has no from_float(mod, dtype=...); float16 applies to Linear and the recurrent layers"
            )
        made: nn.Module = make(mod, dtype=float16)
        return made


def _dynamic_dtype(dtype: object) -> object:
    """qint8, float16, quint8 or quint4x2 from what the user passed, or a TypeError naming both."""
    if dtype is float16 or (isinstance(dtype, (str, np.dtype)) and dtype == "float16"):
        return float16
    if is_torch_object(dtype) or "torch." in repr(dtype):
        name = repr(dtype).replace("torch.", "")
        raise TypeError(
            f"quantize_dynamic takes npquant's dtypes: use dtype=npquant.{name}, got {dtype!r}"
            if name in ("qint8", "float16")
            else f"quantize_dynamic: dtype must be npquant.qint8 or npquant.float16, got {dtype!r}"
        )
    try:
        q = as_qdtype(dtype)
    except TypeError:
        q = None
    if q not in (qint8, quint8, quint4x2):
        raise TypeError(
            f"quantize_dynamic: dtype must be npquant.qint8 (int8 weights, activations quantized "
            f"per call), npquant.float16 (float16 weights, float32 math) or npquant.quint8 / "
            f"npquant.quint4x2 (weight-only Embedding/EmbeddingBag), got {dtype!r}"
        )
    return q


# Layers whose output qparams come from an observer. The others in the static
# mapping (ReLU, pooling, Flatten, Dropout, GELU, DeQuantStub) keep their input's qparams;
# Sigmoid, Hardsigmoid and Tanh have PyTorch's fixed output qparams.
def _observed_types() -> tuple[type, ...]:
    return (
        nn.QuantStub,
        nn.Linear,
        nn.BatchNorm2d,
        nn.Hardswish,
        nn.LeakyReLU,
        nn.ELU,
        nn.SiLU,
        nni.LinearReLU,
        nni.BNReLU2d,
        nn.Conv2d,
        nni.ConvReLU2d,
        nn.Conv1d,
        nni.ConvReLU1d,
        nn.ConvTranspose2d,
    )


# ------------------------------------------------------------------ arguments
_FROM_TORCH = (
    "build the same model with npquant.nn (same attribute names) and load the weights with "
    "model.load_state_dict(torch_model.state_dict()); a torch-converted model's state dict "
    "loads into npquant's converted twin (docs/interop.md)"
)


def check_model(model: object, fn: str) -> None:
    """TypeError unless model is an npquant.nn.Module, saying what to do with torch's."""
    if isinstance(model, nn.Module):
        return
    if is_torch_object(model):
        raise TypeError(f"{fn} expects an npquant.nn.Module, got torch's {type(model).__name__}: {_FROM_TORCH}")
    raise TypeError(f"{fn} expects an npquant.nn.Module, got {type(model).__name__}")


def _check_type_keys(table: Iterable[Any], fn: str, what: str) -> None:
    """Torch module types as keys (or values) of a mapping / qconfig_spec: TypeError naming npquant's."""
    for k in table:
        for t in (k, table[k]) if isinstance(table, dict) else (k,):
            if isinstance(t, type) and is_torch_object(t):
                name = t.__name__
                eq = f"npquant.nn.{name}" if hasattr(nn, name) else "the npquant.nn class"
                raise TypeError(
                    f"{fn}: {what} names {t.__module__}.{name}; npquant models are made of npquant classes: use {eq}"
                )


# ------------------------------------------------------------------ qconfig
def propagate_qconfig_(module: nn.Module, qconfig_dict: QConfigDict | None = None) -> None:
    """Gives every submodule a ``qconfig``: its own if set (None included), else
    ``qconfig_dict[name]``, else ``qconfig_dict[type]``, else its parent's."""
    check_model(module, "propagate_qconfig_")
    if qconfig_dict:
        _check_type_keys(qconfig_dict, "propagate_qconfig_", "qconfig_dict")
    _propagate(module, qconfig_dict or {}, None, "")


def _propagate(module: nn.Module, qconfig_dict: QConfigDict, parent: Any, prefix: str) -> None:
    qconfig = qconfig_dict.get(type(module), parent)
    qconfig = qconfig_dict.get(prefix, qconfig)
    qconfig = module.__dict__.get("qconfig", qconfig)
    module.qconfig = qconfig
    for name, child in module.named_children():
        _propagate(child, qconfig_dict, qconfig, f"{prefix}.{name}" if prefix else name)


def _remove_qconfig(module: nn.Module) -> None:
    for m in module.modules():
        m.__dict__.pop("qconfig", None)


# ------------------------------------------------------------------ prepare
def _observe_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """The forward hook prepare installs: feeds the module's output to its observer."""
    return module.activation_post_process(output)


def _activation_observer(module: nn.Module, name: str) -> ObserverBase:
    """A fresh observer from module.qconfig.activation, checked now rather than at
    convert or inference: static layers need quint8 activations with qparams."""
    where = f"the activation observer of '{name or '<root>'}' ({type(module).__name__})"
    obs = make_observer(module.qconfig.activation, "activation", where)
    if isinstance(obs, PlaceholderObserver) or obs.is_dynamic:
        raise ValueError(
            f"{where} is a dynamic qconfig's placeholder ({type(obs).__name__}): prepare and "
            "convert quantize statically and need calibrated activation observers; for dynamic "
            "quantization call npquant.quantize_dynamic(model) instead"
        )
    if obs.dtype is not quint8:
        raise TypeError(
            f"{where} has dtype {obs.dtype}, but npquant's static quantized layers take quint8 "
            "activations (as torch's x86 and fbgemm engines do); give the activation observer "
            "dtype=npquant.quint8, e.g. model.qconfig = npquant.get_default_qconfig('x86')"
        )
    return obs


def _add_observer(module: nn.Module, name: str = "") -> None:
    module.activation_post_process = _activation_observer(module, name)
    module.register_forward_hook(_observe_output)


def _needs_observer(m: nn.Module) -> bool:
    return m.qconfig is not None and getattr(m.qconfig, "activation", None) is not None


def _observed_leaf(m: nn.Module, observed: tuple[type, ...]) -> bool:
    return isinstance(m, observed) and not list(m.children())


def _add_observers(module: nn.Module, observed: tuple[type, ...], prefix: str = "") -> None:
    for cname, child in module.named_children():
        name = f"{prefix}.{cname}" if prefix else cname
        if isinstance(child, nn.FloatFunctional):
            if _needs_observer(child):  # FloatFunctional calls its observer itself
                # (setattr: nn.stubs declares the attribute as the Identity it starts as)
                setattr(child, "activation_post_process", _activation_observer(child, name))  # noqa: B010
        elif isinstance(child, _Fused) or _observed_leaf(child, observed):
            if _needs_observer(child):
                _add_observer(child, name)
        elif not isinstance(child, ObserverBase):
            _add_observers(child, observed, name)


def prepare(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Attaches an activation observer (``activation_post_process``) to each layer
    whose qconfig is set and whose output needs qparams: QuantStub, Linear, Conv2d,
    BatchNorm2d, Hardswish, fused layers, FloatFunctional. Run calibration data
    through the returned model, then call ``convert``."""
    check_model(model, "prepare")
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model)
    if not any(m.qconfig is not None for m in model.modules()):
        raise ValueError(
            "prepare: no module has a qconfig, so nothing would be quantized; set "
            "model.qconfig = npquant.get_default_qconfig('x86') first"
        )
    observed = _observed_types()
    if _observed_leaf(model, observed) and _needs_observer(model):
        _add_observer(model)
    else:
        _add_observers(model, observed)
    return model


# ------------------------------------------------------------------ convert
def _uncalibrated(model: nn.Module, mapping: ModuleMapping) -> list[str]:
    """Names of modules convert would swap whose observer saw no data."""
    names = []
    for name, m in model.named_modules():
        obs = m._modules.get("activation_post_process")
        # A FloatFunctional used only for add_scalar / mul_scalar is never observed
        # (as in PyTorch): its quantized ops take their qparams from the input.
        if (
            isinstance(obs, ObserverBase)
            and not isinstance(obs, PlaceholderObserver)
            and getattr(m, "qconfig", None) is not None
            and type(m) in mapping
            and not obs.has_data
            and not isinstance(m, nn.FloatFunctional)
        ):
            names.append(name or "<root>")
    return names


def _swap(mod: nn.Module, mapping: ModuleMapping) -> nn.Module:
    if getattr(mod, "qconfig", None) is None or type(mod) not in mapping:
        return mod
    new: nn.Module = from_float(mapping[type(mod)], mod)
    # keep the user's hooks, drop the observer hook
    for hook in mod._forward_pre_hooks.values():
        new.register_forward_pre_hook(hook)
    for hook in mod._forward_hooks.values():
        if hook is not _observe_output:
            new.register_forward_hook(hook)
    return new


def _convert(module: nn.Module, mapping: ModuleMapping) -> None:
    for name, child in list(module.named_children()):
        if not isinstance(child, _Fused):
            _convert(child, mapping)
        setattr(module, name, _swap(child, mapping))


def _strip_observers(model: nn.Module) -> None:
    """Removes observers and observer hooks left on modules that were not swapped."""
    for m in model.modules():
        if isinstance(m._modules.get("activation_post_process"), ObserverBase):
            if isinstance(m, nn.FloatFunctional):
                m.activation_post_process = nn.Identity()
            else:
                delattr(m, "activation_post_process")
        for key in [k for k, h in m._forward_hooks.items() if h is _observe_output]:
            del m._forward_hooks[key]


def convert(
    module: nn.Module, mapping: ModuleMapping | None = None, inplace: bool = False, remove_qconfig: bool = True
) -> nn.Module:
    """Swaps each prepared, calibrated layer for its ``npquant.nn.quantized``
    counterpart (``mapping``: float type -> quantized class). Returns a new model
    unless ``inplace=True``; raises, naming them, if some observers saw no data."""
    check_model(module, "convert")
    if mapping is None:
        mapping = get_default_static_quant_module_mappings()
    else:
        _check_type_keys(mapping, "convert", "mapping")
    missing = _uncalibrated(module, mapping)
    if missing:
        raise RuntimeError(
            f"convert: the observers of {', '.join(repr(n) for n in missing)} saw no data. Run "
            "representative inputs through the prepared model (prepared(x)) before convert; a layer "
            "that forward never reaches should get qconfig = None before prepare"
        )
    if not inplace:
        module = copy.deepcopy(module)
    _convert(module, mapping)
    module = _swap(module, mapping)  # a bare layer as the whole model
    _strip_observers(module)
    if remove_qconfig:
        _remove_qconfig(module)
    return module


def quantize(
    model: nn.Module,
    run_fn: Callable[..., object],
    run_args: Sequence[object],
    mapping: ModuleMapping | None = None,
    inplace: bool = False,
    *,
    keep_float: Iterable[str] = (),
    min_sqnr_db: float | None = None,
    eval_inputs: object = None,
) -> nn.Module:
    """prepare, ``run_fn(model, *run_args)`` to calibrate, convert.

    ``keep_float=[names]`` leaves those submodules in float (input dequantized,
    output quantized again); ``min_sqnr_db`` also leaves in float every layer whose
    SQNR alone on ``eval_inputs`` is below it (see npquant.compare)."""
    if keep_float or min_sqnr_db is not None:
        return quantize_keeping_float(
            model,
            run_fn,
            run_args,
            mapping,
            inplace,
            keep_float=keep_float,
            min_sqnr_db=min_sqnr_db,
            eval_inputs=eval_inputs,
        )
    check_model(model, "quantize")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    prepare(model, inplace=True)
    run_fn(model, *run_args)
    return convert(model, mapping, inplace=True)


# ------------------------------------------------------------------ keep_float
def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _keep_in_float(model: nn.Module, names: Iterable[str]) -> None:
    for name in names:
        m = _submodule(model, name)
        if m is None or not name:
            raise KeyError(f"keep_float: the model has no submodule {name!r}")
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        m.qconfig = None
        island = FloatIsland(m)
        island.qconfig = getattr(parent, "qconfig", None) or getattr(model, "qconfig", None)
        setattr(parent, leaf, island)


def _quantize_once(
    model: nn.Module,
    run_fn: Callable[..., object],
    run_args: Sequence[object],
    mapping: ModuleMapping | None,
    keep: Iterable[str],
) -> nn.Module:
    work = copy.deepcopy(model)
    work.eval()
    _keep_in_float(work, keep)
    prepare(work, inplace=True)
    run_fn(work, *run_args)
    return convert(work, mapping=mapping, inplace=True)


def quantize_keeping_float(
    model: nn.Module,
    run_fn: Callable[..., object],
    run_args: Sequence[object],
    mapping: ModuleMapping | None = None,
    inplace: bool = False,
    *,
    keep_float: Iterable[str] = (),
    min_sqnr_db: float | None = None,
    eval_inputs: object = None,
) -> nn.Module:
    """``npquant.quantize`` with layers left in float (it calls this when given
    ``keep_float`` or ``min_sqnr_db``): copy, prepare, ``run_fn(model, *run_args)``
    to calibrate, convert.

    ``keep_float``: names of submodules to leave in float; each is wrapped in a
    FloatIsland (npquant.report), which dequantizes its input and quantizes its output
    again. ``min_sqnr_db``: also keep in float every layer whose SQNR alone (see
    ``npquant.compare``) on ``eval_inputs`` is below this many dB; the model is then
    calibrated and converted a second time with those layers in float.
    """
    keep = list(keep_float)
    q = _quantize_once(model, run_fn, run_args, mapping, keep)
    if min_sqnr_db is not None:
        if eval_inputs is None:
            raise ValueError("min_sqnr_db needs eval_inputs: a batch (or list of batches) to measure SQNR on")
        report = compare(model, q, eval_inputs)
        weak = [
            r.name.split("+")[0]
            for r in report
            if r.layer_sqnr_db < min_sqnr_db
            and r.name.split("+")[0] not in keep
            and not isinstance(_submodule(model, r.name.split("+")[0]), (nn.QuantStub, nn.DeQuantStub))
        ]
        if weak:
            keep += weak
            q = _quantize_once(model, run_fn, run_args, mapping, keep)
    if inplace:
        model.__dict__.clear()
        model.__dict__.update(q.__dict__)
        return model
    return q


def quantize_dynamic(
    model: nn.Module,
    qconfig_spec: Any = None,
    dtype: object = qint8,
    mapping: ModuleMapping | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Weights to int8 now, activations quantized per call: ``quantize_dynamic(model,
    {npquant.nn.Linear, npquant.nn.LSTM}, dtype=npquant.qint8)``. ``qconfig_spec``: a set of
    types / names (default dynamic qconfig), or a dict {type or name: QConfig}; None is
    torch's default set (Linear, LSTM, GRU and the three cells).

    As torch: ``dtype=npquant.float16`` stores Linear and recurrent weights as float16 and
    computes in float32; ``dtype=npquant.quint8`` (``quint4x2``) makes Embedding /
    EmbeddingBag weight-only 8-bit (4-bit) row-wise; a dict mixes them, e.g. {nn.Linear:
    default_dynamic_qconfig, nn.Embedding: float_qparams_weight_only_qconfig}.
    ``nn.MultiheadAttention`` in the spec quantizes attention's projections too;
    ``per_token_dynamic_qconfig`` gives per-row activation scales (docs/encoder.md)."""
    check_model(model, "quantize_dynamic")
    dtype = _dynamic_dtype(dtype)
    torch_default = {nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.RNNCell, nn.GRUCell}
    defaults: dict[object, tuple[set[type], QConfig]] = {
        qint8: (torch_default, default_dynamic_qconfig),
        float16: (torch_default, default_dynamic_qconfig),
        quint8: ({nn.Embedding, nn.EmbeddingBag}, float_qparams_weight_only_qconfig),
        quint4x2: ({nn.EmbeddingBag}, float_qparams_weight_only_qconfig_4bit),
    }
    default_types, default_qconfig = defaults[dtype]
    if qconfig_spec is None:
        qconfig_spec = dict.fromkeys(default_types, default_qconfig)
    elif isinstance(qconfig_spec, (set, frozenset, list, tuple)):
        qconfig_spec = dict.fromkeys(qconfig_spec, default_qconfig)
    _check_type_keys(qconfig_spec, "quantize_dynamic", "qconfig_spec")
    if mapping is None:
        mapping = get_default_dynamic_quant_module_mappings()
    else:
        _check_type_keys(mapping, "quantize_dynamic", "mapping")
    if dtype is float16:
        mapping = {k: _Float16FromFloat(v) for k, v in mapping.items()}
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    propagate_qconfig_(model, qconfig_spec)
    _convert(model, mapping)
    model = _swap(model, mapping)
    _remove_qconfig(model)
    return model
