"""GoogLeNet as torchvision.models.quantization builds it: BasicConv2d (conv, bn, relu)
blocks, FloatFunctional.cat joining the Inception branches, torchvision's state-dict
keys (with or without the auxiliary heads) and ``fuse_model()``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ._common import Weights, fuse_inplace, load_weights

__all__ = ["GoogLeNet", "BasicConv2d", "Inception", "InceptionAux", "googlenet", "transform_input"]


class BasicConv2d(nn.Module):
    """Conv2d (no bias) + BatchNorm2d (eps 0.001) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: Any, stride: Any = 1, padding: Any = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: Any) -> Any:
        return self.relu(self.bn(self.conv(x)))

    def fuse_model(self) -> None:
        fuse_inplace(self, [["conv", "bn", "relu"]])


class Inception(nn.Module):
    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        # torchvision's 5x5 branch uses a 3x3 kernel (a known quirk kept for its weights)
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(cin, pool_proj, 1))
        self.cat = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        return self.cat.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """The auxiliary classifier (training only; kept so torchvision's state dicts load)."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(cin, 128, 1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU()

    def forward(self, x: Any) -> Any:
        x = self.flatten(self.conv(self.pool(x)))
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


def transform_input(x: np.ndarray) -> np.ndarray:
    """torchvision's transform_input: ImageNet-normalized input to the [-1, 1] scaling
    the original weights were trained on, in float32 as torch computes it."""
    x = np.asarray(x, np.float32)
    chans = [
        x[:, i : i + 1] * np.float32(s / 0.5) + np.float32((m - 0.5) / 0.5)
        for i, (s, m) in enumerate(((0.229, 0.485), (0.224, 0.456), (0.225, 0.406)))
    ]
    return np.concatenate(chans, axis=1).astype(np.float32)


class GoogLeNet(nn.Module):
    """(N, 3, H, W) float32 -> (N, num_classes) logits (eval: the auxiliary heads are unused)."""

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.quant = nn.QuantStub()
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux)
            # inference never runs the auxiliary heads: they stay float (no observers to feed)
            self.aux1.qconfig = self.aux2.qconfig = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()  # torchvision calls torch.flatten: no state
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.dequant = nn.DeQuantStub()

    def forward(self, x: Any) -> Any:
        if self.transform_input:
            x = transform_input(x)
        x = self.maxpool1(self.conv1(self.quant(x)))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return self.dequant(self.fc(self.dropout(self.flatten(self.avgpool(x)))))

    def fuse_model(self) -> None:
        """Every BasicConv2d's conv+bn+relu, in place, as torchvision does."""
        for m in list(self.modules()):
            if isinstance(m, BasicConv2d):
                m.fuse_model()


def _has_aux(weights: Weights, prefix: str) -> bool:
    """Whether a state dict (or .npz) holds the auxiliary heads (torchvision drops them
    from pretrained models; a freshly built one has them)."""
    if weights is None:
        return True
    if isinstance(weights, dict) or hasattr(weights, "keys"):
        return any(k.startswith(prefix) for k in weights.keys())
    with np.load(weights, allow_pickle=False) as f:
        return any(k.startswith(prefix) for k in f.files)


def googlenet(
    weights: Weights = None, num_classes: int = 1000, aux_logits: bool | None = None, transform_input: bool = False
) -> GoogLeNet:
    """GoogLeNet in eval mode; ``weights``: a torchvision state dict (dict of arrays or .npz
    path). ``aux_logits`` defaults to whether the weights hold the auxiliary heads;
    torchvision's pretrained GoogLeNet wants ``transform_input=True``."""
    aux = _has_aux(weights, "aux1.") if aux_logits is None else aux_logits
    return load_weights(GoogLeNet(num_classes, aux, transform_input), weights)
