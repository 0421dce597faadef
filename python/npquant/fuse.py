"""fuse_modules: fold BatchNorm into the preceding Conv2d/Linear and pair layers
with a following ReLU, as torch.ao.quantization.fuse_modules does (eval mode)."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from . import nn
from .nn import intrinsic as nni
from .quantize import check_model

__all__ = ["fuse_modules", "fuse_known_modules", "fuse_conv_bn_eval", "fuse_linear_bn_eval"]


def _bn_terms(bn):
    """(rsqrt(var + eps), weight, bias) in float32, weight/bias defaulting to 1/0."""
    n = bn.num_features
    rsqrt = np.float32(1) / np.sqrt(bn.running_var.astype(np.float32) + np.float32(bn.eps))
    w = np.ones(n, np.float32) if bn.weight is None else bn.weight
    b = np.zeros(n, np.float32) if bn.bias is None else bn.bias
    return rsqrt.astype(np.float32), w, b


def _check_channels(layer, n_out: int, bn) -> None:
    if n_out != bn.num_features:
        raise ValueError(
            f"cannot fold {type(bn).__name__}({bn.num_features}) into {type(layer).__name__} "
            f"with {n_out} output channels"
        )


def fuse_conv_bn_eval(conv, bn):
    """A copy of conv with bn folded in (the float32 arithmetic of torch's fuse_conv_bn_weights)."""
    _check_channels(conv, conv.weight.shape[0], bn)
    fused = copy.deepcopy(conv)
    rsqrt, w, b = _bn_terms(bn)
    conv_b = np.zeros(bn.num_features, np.float32) if conv.bias is None else conv.bias
    fused.weight = conv.weight * (w * rsqrt).reshape((-1,) + (1,) * (conv.weight.ndim - 1))
    fused.register_parameter("bias", (conv_b - bn.running_mean) * rsqrt * w + b)
    return fused


def fuse_linear_bn_eval(linear, bn):
    """A copy of linear with bn (BatchNorm1d) folded in (torch's fuse_linear_bn_weights)."""
    _check_channels(linear, linear.out_features, bn)
    fused = copy.deepcopy(linear)
    rsqrt, w, b = _bn_terms(bn)
    scale = w * rsqrt
    lin_b = np.zeros(bn.num_features, np.float32) if linear.bias is None else linear.bias
    fused.weight = linear.weight * scale[:, None]
    fused.register_parameter("bias", (lin_b - bn.running_mean) * scale + b)
    return fused


def _patterns() -> dict:
    table: dict[tuple[type, ...], Callable[..., nn.Module]] = {
        (nn.Linear, nn.ReLU): lambda lin, relu: nni.LinearReLU(lin, relu),
        (nn.Linear, nn.BatchNorm1d): fuse_linear_bn_eval,
        (nn.BatchNorm2d, nn.ReLU): lambda bn, relu: nni.BNReLU2d(bn, relu),
        (nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn_eval,
        (nn.Conv2d, nn.BatchNorm2d, nn.ReLU): lambda c, bn, r: nni.ConvReLU2d(fuse_conv_bn_eval(c, bn), r),
        (nn.Conv2d, nn.ReLU): lambda conv, relu: nni.ConvReLU2d(conv, relu),
        (nn.Conv1d, nn.BatchNorm1d): fuse_conv_bn_eval,
        (nn.Conv1d, nn.BatchNorm1d, nn.ReLU): lambda c, bn, r: nni.ConvReLU1d(fuse_conv_bn_eval(c, bn), r),
        (nn.Conv1d, nn.ReLU): lambda conv, relu: nni.ConvReLU1d(conv, relu),
    }
    return table


def fuse_known_modules(mod_list) -> list:
    """The fused module for mod_list, then Identity for each other position."""
    types = tuple(type(m) for m in mod_list)
    fuser = _patterns().get(types)
    if fuser is None:
        supported = ", ".join("(" + ", ".join(t.__name__ for t in k) + ")" for k in _patterns())
        raise NotImplementedError(
            f"cannot fuse ({', '.join(t.__name__ for t in types)}); fuse_modules supports {supported}"
        )
    return [fuser(*mod_list)] + [nn.Identity() for _ in mod_list[1:]]


def _set_submodule(model, name: str, module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, module)


def _check_eval(names, mods) -> None:
    """Folding BatchNorm uses its running statistics: inference only. Refuse in
    training mode rather than fold silently (torch would make QAT modules, which
    npquant does not have)."""
    if not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in mods) or (
        len(mods) == 2 and isinstance(mods[0], nn.BatchNorm2d)
    ):  # bn + relu folds nothing
        return
    training = [n for n, m in zip(names, mods) if m.training]
    if training:
        raise RuntimeError(
            f"fuse_modules: {training} {'is' if len(training) == 1 else 'are'} in training mode, but fusing "
            f"{names} folds BatchNorm with its running statistics, which is for inference only; call "
            "model.eval() before fuse_modules (npquant has no quantization-aware training)"
        )


def _fuse_one(model, names) -> None:
    if len(names) < 2:
        raise ValueError(f"a fuse list needs at least two module names, got {names!r}")
    mods = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"fuse_modules: module names are strings (dotted paths), got {name!r}")
        try:
            mods.append(model.get_submodule(name))
        except AttributeError as e:
            raise AttributeError(f"fuse_modules: {e}") from None
    fused = fuse_known_modules(mods)  # unsupported patterns and channel mismatches first
    _check_eval(names, mods)
    for name, m in zip(names, fused):
        _set_submodule(model, name, m)


def fuse_modules(model, modules_to_fuse, inplace: bool = False, fuser_func=None, fuse_custom_config_dict=None):
    """``fuse_modules(model, [['conv', 'bn', 'relu'], ['fc', 'relu2']])``: each list
    names consecutive modules (dotted paths); the first becomes the fused module,
    the others Identity. Returns a fused copy unless ``inplace=True``.

    Supported: conv-bn, conv-bn-relu, conv-relu (Conv1d and Conv2d), linear-relu, linear-bn(1d),
    bn-relu. BatchNorm is folded with its running statistics (inference), so the
    modules folded must be in eval mode: call ``model.eval()`` first (npquant has no
    quantization-aware training, hence no ``fuse_modules_qat``)."""
    if fuser_func is not None or fuse_custom_config_dict is not None:
        raise NotImplementedError("custom fusers are not supported by npquant")
    check_model(model, "fuse_modules")
    if not inplace:
        model = copy.deepcopy(model)
    groups = modules_to_fuse
    if groups and all(isinstance(n, str) for n in groups):
        groups = [groups]
    for names in groups:
        _fuse_one(model, list(names))
    return model
