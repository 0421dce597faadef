"""ShuffleNetV2 x1.0 as torchvision.models.quantization builds it: chunk, FloatFunctional.cat
and channel shuffle on quantized tensors, torchvision's state-dict keys, ``fuse_model()``."""

from __future__ import annotations

from typing import Any

from .. import nn
from ._common import Weights, conv_bn_act, fuse_inplace, load_weights

__all__ = ["ShuffleNetV2", "InvertedResidual", "shufflenet_v2_x1_0"]


def _dw_bn(c: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c)]


def _pw_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*_dw_bn(cin, stride), *_pw_bn_relu(cin, half))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            *_pw_bn_relu(cin if stride > 1 else half, half), *_dw_bn(half, stride), *_pw_bn_relu(half, half)
        )
        self.cat = nn.FloatFunctional()
        self.shuffle = nn.ChannelShuffle(2)  # torchvision calls its channel_shuffle function: no state

    def forward(self, x: Any) -> Any:
        if self.stride == 1:
            x1, x2 = x.chunk(2, 1) if hasattr(x, "chunk") else (x[:, : x.shape[1] // 2], x[:, x.shape[1] // 2 :])
            out = self.cat.cat([x1, self.branch2(x2)], 1)
        else:
            out = self.cat.cat([self.branch1(x), self.branch2(x)], 1)
        return self.shuffle(out)

    def fuse_model(self) -> None:
        if len(self.branch1) > 0:
            fuse_inplace(self.branch1, [["0", "1"], ["2", "3", "4"]])
        fuse_inplace(self.branch2, [["0", "1", "2"], ["3", "4"], ["5", "6", "7"]])


class ShuffleNetV2(nn.Module):
    """(N, 3, H, W) float32 -> (N, num_classes) logits."""

    def __init__(
        self, repeats: tuple = (4, 8, 4), channels: tuple = (24, 116, 232, 464, 1024), num_classes: int = 1000
    ):
        super().__init__()
        self.quant = nn.QuantStub()
        self.conv1 = conv_bn_act(3, channels[0], 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = channels[0]
        for i, (n, cout) in enumerate(zip(repeats, channels[1:4]), start=2):
            stage = [InvertedResidual(cin, cout, 2)] + [InvertedResidual(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*stage))
            cin = cout
        self.conv5 = conv_bn_act(cin, channels[-1], 1)
        # torchvision's x.mean([2, 3]): on QTensors that is quantized AdaptiveAvgPool2d(1) (what
        # PyTorch runs), and as modules it exports to ONNX
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[-1], num_classes)
        self.dequant = nn.DeQuantStub()

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.conv1(self.quant(x)))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.dequant(self.fc(self.flatten(self.avgpool(x))))

    def fuse_model(self) -> None:
        """Conv+BN(+ReLU) everywhere, in place, as torchvision does."""
        fuse_inplace(self.conv1, [["0", "1", "2"]])
        fuse_inplace(self.conv5, [["0", "1", "2"]])
        for m in list(self.modules()):
            if isinstance(m, InvertedResidual):
                m.fuse_model()


def shufflenet_v2_x1_0(weights: Weights = None, num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 x1.0 in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz path)."""
    return load_weights(ShuffleNetV2(num_classes=num_classes), weights)
