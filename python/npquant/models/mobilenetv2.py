"""MobileNetV2 as torchvision.models.quantization builds it: ReLU in place of ReLU6,
FloatFunctional.add for the residuals, torchvision's state-dict keys, ``fuse_model()``."""

from __future__ import annotations

from typing import Any

from .. import nn
from ._common import Weights, conv_bn_act, fuse_inplace, load_weights, make_divisible

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenet_v2"]

# expansion t, output channels c, repeats n, first stride s
_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout
        self.skip_add = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        return self.skip_add.add(x, self.conv(x)) if self.use_res_connect else self.conv(x)

    def fuse_model(self) -> None:
        for i, m in enumerate(list(self.conv.children())):
            if isinstance(m, nn.Conv2d):
                fuse_inplace(self.conv, [[str(i), str(i + 1)]])


class MobileNetV2(nn.Module):
    """(N, 3, H, W) float32 -> (N, num_classes) logits."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        feats: list[nn.Module] = [conv_bn_act(3, cin, 3, 2)]
        for t, c, n, s in _SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(conv_bn_act(cin, self.last_channel, 1))
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))  # torchvision calls the functional forms: no state
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        self.quant = nn.QuantStub()
        self.dequant = nn.DeQuantStub()

    def forward(self, x: Any) -> Any:
        x = self.features(self.quant(x))
        return self.dequant(self.classifier(self.flatten(self.pool(x))))

    def fuse_model(self) -> None:
        """Fold BatchNorm (and ReLU) into the convs, in place, as torchvision does."""
        for m in list(self.modules()):
            if (
                isinstance(m, nn.Sequential)
                and len(m) == 3
                and isinstance(m[0], nn.Conv2d)
                and isinstance(m[2], nn.ReLU)
            ):
                fuse_inplace(m, [["0", "1", "2"]])
            elif isinstance(m, InvertedResidual):
                m.fuse_model()


def mobilenet_v2(weights: Weights = None, num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz path)."""
    return load_weights(MobileNetV2(num_classes), weights)
