"""QConfig: which observers a module's activations and weights get (torch.ao.quantization.qconfig)."""

from __future__ import annotations

from typing import Any, NamedTuple

from . import observers
from ._dtypes import quint8
from .interop import is_torch_object
from .observers import (
    HistogramObserver,
    ObserverBase,
    PlaceholderObserver,
    default_dynamic_quant_observer,
    default_float_qparams_observer,
    default_float_qparams_observer_4bit,
    default_observer,
    default_per_channel_weight_observer,
    default_placeholder_observer,
    default_weight_observer,
    per_channel_affine,
)

__all__ = [
    "QConfig",
    "get_default_qconfig",
    "default_qconfig",
    "default_per_channel_qconfig",
    "default_dynamic_qconfig",
    "per_channel_dynamic_qconfig",
    "per_token_dynamic_qconfig",
    "float_qparams_weight_only_qconfig",
    "float_qparams_weight_only_qconfig_4bit",
    "reduce_range_dynamic_qconfig",
]


def _torch_observer_name(f: object) -> str:
    """The observer class a torch factory makes (``MinMaxObserver`` for
    ``MinMaxObserver.with_args(...)``), or the object's type name."""
    obj = f
    for attr in ("p", "func"):  # torch's _PartialWrapper holds a functools.partial
        obj = getattr(obj, attr, obj)
    return obj.__name__ if isinstance(obj, type) else type(f).__name__


def torch_observer_error(f: object, where: str) -> TypeError:
    """The TypeError for a torch observer (class, factory or instance) given to npquant."""
    name = _torch_observer_name(f)
    fix = (
        f"npquant.observers.{name}.with_args(...) (same arguments; dtypes npquant.quint8 / npquant.qint8)"
        if isinstance(getattr(observers, name, None), type)
        else "an npquant observer (npquant.observers.*), or your own class with forward(x) and calculate_qparams()"
    )
    return TypeError(
        f"{where} is torch's {name}, which observes torch tensors; npquant observes NumPy arrays: use {fix}"
    )


def check_qconfig(qconfig: object, where: str = "qconfig") -> None:
    """Raises a TypeError naming the npquant equivalent when qconfig is torch's, or is
    not a QConfig-like pair of observer factories."""
    if qconfig is None:
        return
    if is_torch_object(qconfig):
        raise TypeError(
            f"{where} is a torch {type(qconfig).__name__}; npquant's models take npquant's: "
            "npquant.get_default_qconfig('x86') (torch's x86 default with the full 8-bit range), "
            "or npquant.QConfig(activation=npquant.observers.HistogramObserver.with_args(...), "
            "weight=npquant.observers.default_per_channel_weight_observer)"
        )
    if not (hasattr(qconfig, "activation") or hasattr(qconfig, "weight")):
        raise TypeError(f"{where} must be an npquant.QConfig (or None), got {type(qconfig).__name__}")
    for role in ("activation", "weight"):
        f = getattr(qconfig, role, None)
        if f is not None and is_torch_object(f):
            raise torch_observer_error(f, f"{where}.{role}")


class _QConfigFields(NamedTuple):
    activation: Any
    weight: Any


class QConfig(_QConfigFields):
    """``QConfig(activation=factory, weight=factory)``: observer classes or
    ``Observer.with_args(...)`` factories (not observer instances), one fresh
    observer per module. A factory may also make any object with ``forward(x)``
    (observe a float array, return it) and ``calculate_qparams()`` (return scales
    and zero points), as torch's custom observers do."""

    def __new__(cls, activation: Any, weight: Any) -> QConfig:
        for role, f in (("activation", activation), ("weight", weight)):
            if f is not None and is_torch_object(f):
                raise torch_observer_error(f, f"QConfig {role}")
            if isinstance(f, ObserverBase):
                raise TypeError(
                    f"QConfig {role} got an observer instance; pass the class or a factory, "
                    f"e.g. {type(f).__name__}.with_args(...)"
                )
            if f is not None and not callable(f):
                raise TypeError(f"QConfig {role} must be an observer class or factory, got {f!r}")
        return super().__new__(cls, activation, weight)


default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
default_per_channel_qconfig = QConfig(activation=default_observer, weight=default_per_channel_weight_observer)
default_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer, weight=default_weight_observer)
per_channel_dynamic_qconfig = QConfig(
    activation=default_dynamic_quant_observer, weight=default_per_channel_weight_observer
)
# PyTorch's x86/fbgemm dynamic Linear: activations quantized to [0, 127] (reduce_range),
# weights per tensor as torch's default_dynamic_qconfig: quantize_dynamic with it gives
# torch's activation qparams and int32 sums; the float epilogue still rounds twice where
# torch uses one fused multiply-add, so outputs can differ by 1-2 ulps (docs/interop.md).
reduce_range_dynamic_qconfig = QConfig(
    activation=PlaceholderObserver.with_args(dtype=quint8, quant_min=0, quant_max=127, is_dynamic=True),
    weight=default_weight_observer,
)

# Per-token dynamic activations: one scale and zero point per row of the activation
# (per token in a transformer) instead of per tensor, with per-channel int8 weights.
# The activation placeholder's qscheme per_channel_affine is what selects it: dynamic
# Linear layers built from this qconfig run with per_row=True.
per_token_dynamic_activation = PlaceholderObserver.with_args(
    dtype=quint8, quant_min=0, quant_max=255, is_dynamic=True, qscheme=per_channel_affine
)
per_token_dynamic_qconfig = QConfig(activation=per_token_dynamic_activation, weight=default_per_channel_weight_observer)
# Weight-only 8-bit / 4-bit row-wise embeddings (torch's qconfigs of the same names).
float_qparams_weight_only_qconfig = QConfig(
    activation=default_placeholder_observer, weight=default_float_qparams_observer
)
float_qparams_weight_only_qconfig_4bit = QConfig(
    activation=default_placeholder_observer, weight=default_float_qparams_observer_4bit
)

_BACKENDS = ("x86", "fbgemm", "qnnpack", "native")


def get_default_qconfig(backend: str = "x86", version: int = 0) -> QConfig:
    """PyTorch's default static qconfig for ``backend``, with full 8-bit activations.

    x86 / fbgemm / native: HistogramObserver activations, per-channel symmetric
    int8 weights. qnnpack: HistogramObserver activations, per-tensor symmetric
    int8 weights. PyTorch uses ``reduce_range=True`` for x86/fbgemm because its
    AVX2 kernels can saturate; npquant's kernels are exact, so the full range is
    kept (pass an explicit QConfig with reduce_range=True to reproduce PyTorch's).
    """
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; npquant knows {', '.join(map(repr, _BACKENDS))}")
    activation = HistogramObserver.with_args(reduce_range=False)
    weight = default_weight_observer if backend == "qnnpack" else default_per_channel_weight_observer
    return QConfig(activation=activation, weight=weight)
