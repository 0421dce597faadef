"""Pieces the torchvision architectures share: weight loading and conv-bn-activation
blocks (torchvision's Conv2dNormActivation, a Sequential with keys 0, 1, 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar, Union

import numpy as np

from .. import nn
from ..fuse import fuse_modules

__all__ = ["Weights", "load_weights", "conv_bn_act", "make_divisible", "fuse_inplace"]

# A state dict as arrays, or the path of an .npz holding one (see docs/models.md)
Weights = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


M = TypeVar("M", bound=nn.Module)


def load_weights(model: M, weights: Weights) -> M:
    """Load ``weights`` (None: keep the random initialization) and return the model in eval mode."""
    if weights is not None:
        if isinstance(weights, (str, os.PathLike)):
            with np.load(os.fspath(weights), allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
        elif isinstance(weights, Mapping):
            state = dict(weights)
        else:
            raise TypeError(
                f"weights must be a state dict (a mapping of names to arrays) or the path of "
                f"an .npz file, got {type(weights).__name__}"
            )
        model.load_state_dict(state)
    return model.eval()


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Channel counts as torchvision rounds them: to a multiple of divisor, never
    more than 10% below v."""
    floor = divisor if min_value is None else min_value
    new_v = max(floor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: type | None = nn.ReLU,
    dilation: int = 1,
    bn_eps: float = 1e-5,
) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) + BatchNorm2d (+ activation): keys 0, 1 (, 2)."""
    pad = (kernel - 1) // 2 * dilation
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=bn_eps),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


def fuse_inplace(module: nn.Module, groups: list) -> None:
    """fuse_modules in place (the models' fuse_model methods)."""
    fuse_modules(module, groups, inplace=True)
