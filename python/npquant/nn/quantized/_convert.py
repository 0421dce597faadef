"""What from_float needs from a prepared float module: its calibrated qparams and
its quantized weights."""

from __future__ import annotations

import numpy as np

from ..._dtypes import qint8
from ...qtensor import QTensor, quantize_per_channel, quantize_per_tensor
from ..container import Sequential


def observer_of(mod):
    obs = getattr(mod, "activation_post_process", None)
    if obs is None or not hasattr(obs, "calculate_qparams"):
        raise RuntimeError(
            f"{type(mod).__name__} has no activation observer: call npquant.prepare(model) "
            "(with a qconfig set on the model) and run calibration data through it before convert"
        )
    return obs


def activation_qparams(mod) -> tuple[float, int]:
    """(scale, zero_point) as Python float and int, from the module's observer."""
    scale, zp = observer_of(mod).calculate_qparams()
    return float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zp).reshape(-1)[0])


def quantize_weight(weight: np.ndarray, observer) -> QTensor:
    """int8 weights with the qconfig's weight observer (per tensor, or per channel
    along the observer's ch_axis)."""
    observer(weight)
    if getattr(observer, "dtype", qint8) is not qint8:
        raise TypeError(f"weights are quantized to npquant.qint8; the weight observer asks for {observer.dtype}")
    scale, zp = observer.calculate_qparams()
    if getattr(observer, "ch_axis", None) is None:
        return quantize_per_tensor(
            weight, float(np.asarray(scale).reshape(-1)[0]), int(np.asarray(zp).reshape(-1)[0]), qint8
        )
    return quantize_per_channel(weight, scale, zp, observer.ch_axis, qint8)


def weight_observer(mod):
    qconfig = getattr(mod, "qconfig", None)
    if qconfig is None or getattr(qconfig, "weight", None) is None:
        raise RuntimeError(
            f"{type(mod).__name__} has no qconfig with a weight observer; set "
            "model.qconfig = npquant.get_default_qconfig('x86') before prepare"
        )
    from ...observers import make_observer

    return make_observer(qconfig.weight, "weight", f"the weight observer of {type(mod).__name__}'s qconfig")


def conv_from_float(cls, mod):
    """A quantized Conv2d / ConvReLU2d (class ``cls``) from a prepared, calibrated float
    Conv2d or fused ConvReLU2d, through the torch-style constructor and set_weight_bias."""
    conv = mod[0] if isinstance(mod, Sequential) else mod
    qweight = quantize_weight(conv.weight, weight_observer(mod))
    q = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    q.set_weight_bias(qweight, conv.bias)
    q.scale, q.zero_point = activation_qparams(mod)
    return q


def from_float(qcls, mod):
    """``qcls.from_float(mod)``; quantized convolutions without one are built by conv_from_float."""
    make = getattr(qcls, "from_float", None)
    return make(mod) if make is not None else conv_from_float(qcls, mod)
