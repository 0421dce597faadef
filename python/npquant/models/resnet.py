"""ResNet-18 / ResNet-50 as torchvision.models.quantization builds them: torchvision's
state-dict keys, QuantStub/DeQuantStub around the network, FloatFunctional.add_relu
for the residual sums, and ``fuse_model()``."""

from __future__ import annotations

from typing import Any

from .. import nn
from ._common import Weights, fuse_inplace, load_weights

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet50"]


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.add_relu = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.add_relu.add_relu(out, identity)

    def fuse_model(self) -> None:
        fuse_inplace(self, [["conv1", "bn1", "relu"], ["conv2", "bn2"]])
        if self.downsample is not None:
            fuse_inplace(self.downsample, [["0", "1"]])


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.downsample = downsample
        self.skip_add_relu = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.skip_add_relu.add_relu(out, identity)

    def fuse_model(self) -> None:
        fuse_inplace(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]])
        if self.downsample is not None:
            fuse_inplace(self.downsample, [["0", "1"]])


class ResNet(nn.Module):
    """(N, 3, H, W) float32 -> (N, num_classes) logits."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.quant = nn.QuantStub()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()  # torchvision calls torch.flatten: no state
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.dequant = nn.DeQuantStub()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        down = None
        if stride != 1 or self._cin != planes * block.expansion:
            down = _downsample(self._cin, planes * block.expansion, stride)
        mods = [block(self._cin, planes, stride, down)]
        self._cin = planes * block.expansion
        mods += [block(self._cin, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.quant(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.dequant(self.fc(self.flatten(self.avgpool(x))))

    def fuse_model(self) -> None:
        """Fold every BatchNorm (and following ReLU) into its conv, in place, as
        torchvision's QuantizableResNet.fuse_model does. Call model.eval() first."""
        fuse_inplace(self, [["conv1", "bn1", "relu"]])
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                m.fuse_model()


def resnet18(weights: Weights = None, num_classes: int = 1000) -> ResNet:
    """ResNet-18 in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz path)."""
    return load_weights(ResNet(BasicBlock, [2, 2, 2, 2], num_classes), weights)


def resnet50(weights: Weights = None, num_classes: int = 1000) -> ResNet:
    """ResNet-50 in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz path)."""
    return load_weights(ResNet(Bottleneck, [3, 4, 6, 3], num_classes), weights)
