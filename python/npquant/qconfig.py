"""QConfig: which observers a module's activations and weights get (torch.ao.quantization.qconfig)."""

from __future__ import annotations

from collections import namedtuple

from .observers import (HistogramObserver, ObserverBase, default_dynamic_quant_observer, default_observer,
                        default_per_channel_weight_observer, default_weight_observer)

__all__ = ["QConfig", "get_default_qconfig", "default_qconfig", "default_per_channel_qconfig",
           "default_dynamic_qconfig", "per_channel_dynamic_qconfig"]


class QConfig(namedtuple("QConfig", ["activation", "weight"])):
    """``QConfig(activation=factory, weight=factory)``: observer classes or
    ``Observer.with_args(...)`` factories (not observer instances), one fresh
    observer per module."""

    def __new__(cls, activation, weight):
        for role, f in (("activation", activation), ("weight", weight)):
            if isinstance(f, ObserverBase):
                raise TypeError(f"QConfig {role} got an observer instance; pass the class or a factory, "
                                f"e.g. {type(f).__name__}.with_args(...)")
            if f is not None and not callable(f):
                raise TypeError(f"QConfig {role} must be an observer class or factory, got {f!r}")
        return super().__new__(cls, activation, weight)


default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
default_per_channel_qconfig = QConfig(activation=default_observer, weight=default_per_channel_weight_observer)
default_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer, weight=default_weight_observer)
per_channel_dynamic_qconfig = QConfig(activation=default_dynamic_quant_observer,
                                      weight=default_per_channel_weight_observer)

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
