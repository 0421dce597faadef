"""MobileNetV3-Large as torchvision.models.quantization builds it: squeeze-excitation
blocks with Hardsigmoid and FloatFunctional.mul, Hardswish, FloatFunctional.add for
the residuals, torchvision's state-dict keys, ``fuse_model()``."""

from __future__ import annotations

from functools import partial
from typing import Any

from .. import nn
from ._common import Weights, conv_bn_act, fuse_inplace, load_weights, make_divisible

__all__ = ["MobileNetV3", "SqueezeExcitation", "InvertedResidual", "mobilenet_v3_large"]

_BN_EPS = 0.001
# input channels, kernel, expanded channels, output channels, squeeze-excitation, activation, stride
_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()
        self.skip_mul = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return self.skip_mul.mul(scale, x)

    def fuse_model(self) -> None:
        fuse_inplace(self, [["fc1", "activation"]])


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool, act: str, stride: int):
        super().__init__()
        activation = nn.Hardswish if act == "HS" else nn.ReLU
        block = partial(conv_bn_act, bn_eps=_BN_EPS)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(block(cin, expanded, 1, activation=activation))
        layers.append(block(expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(block(expanded, cout, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout
        self.skip_add = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        return self.skip_add.add(x, self.block(x)) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    """(N, 3, H, W) float32 -> (N, num_classes) logits (the Large configuration)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        feats: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, activation=nn.Hardswish, bn_eps=_BN_EPS)]
        feats += [InvertedResidual(*cfg) for cfg in _LARGE]
        feats.append(conv_bn_act(160, 960, 1, activation=nn.Hardswish, bn_eps=_BN_EPS))
        self.features = nn.Sequential(*feats)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()  # torchvision calls torch.flatten: no state
        self.classifier = nn.Sequential(
            nn.Linear(960, 1280), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(1280, num_classes)
        )
        self.quant = nn.QuantStub()
        self.dequant = nn.DeQuantStub()

    def forward(self, x: Any) -> Any:
        x = self.avgpool(self.features(self.quant(x)))
        return self.dequant(self.classifier(self.flatten(x)))

    def fuse_model(self) -> None:
        """Conv+BN (+ReLU) blocks and the squeeze-excitation fc1+ReLU, in place, as
        torchvision does (Hardswish stays a separate quantized module)."""
        for m in list(self.modules()):
            if (
                isinstance(m, nn.Sequential)
                and len(m) in (2, 3)
                and isinstance(m[0], nn.Conv2d)
                and isinstance(m[1], nn.BatchNorm2d)
            ):
                names = ["0", "1"] + (["2"] if len(m) == 3 and isinstance(m[2], nn.ReLU) else [])
                fuse_inplace(m, [names])
            elif isinstance(m, SqueezeExcitation):
                m.fuse_model()


def mobilenet_v3_large(weights: Weights = None, num_classes: int = 1000) -> MobileNetV3:
    """MobileNetV3-Large in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz path)."""
    return load_weights(MobileNetV3(num_classes), weights)
