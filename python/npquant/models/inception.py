"""Inception v3 as torchvision.models.quantization builds it: BasicConv2d blocks,
FloatFunctional.cat (``myop``) joining the branches, torchvision's state-dict keys (with
or without ``AuxLogits``) and ``fuse_model()``. Inputs need H, W >= 75."""

from __future__ import annotations

from typing import Any

from .. import nn
from ._common import Weights, load_weights
from .googlenet import BasicConv2d, _has_aux, transform_input

__all__ = ["Inception3", "inception_v3"]


def _avg3() -> nn.Module:  # torchvision's F.avg_pool2d(x, 3, 1, 1): stateless
    return nn.AvgPool2d(3, 1, 1)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.pool = _avg3()
        self.branch_pool = BasicConv2d(cin, pool_features, 1)
        self.myop = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return self.myop.cat([self.branch1x1(x), b5, b3, self.branch_pool(self.pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2)
        self.myop = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return self.myop.cat([self.branch3x3(x), b3, self.pool(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.pool = _avg3()
        self.branch_pool = BasicConv2d(cin, 192, 1)
        self.myop = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(d))))
        return self.myop.cat([self.branch1x1(x), b7, d, self.branch_pool(self.pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2)
        self.myop = nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return self.myop.cat([b3, b7, self.pool(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.pool = _avg3()
        self.branch_pool = BasicConv2d(cin, 192, 1)
        self.myop1, self.myop2, self.myop3 = nn.FloatFunctional(), nn.FloatFunctional(), nn.FloatFunctional()

    def forward(self, x: Any) -> Any:
        b3 = self.branch3x3_1(x)
        b3 = self.myop1.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = self.myop2.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return self.myop3.cat([self.branch1x1(x), b3, d, self.branch_pool(self.pool(x))], 1)


class InceptionAux(nn.Module):
    """The auxiliary classifier (training only; kept so torchvision's state dicts load)."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, 3)
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Any) -> Any:
        return self.fc(self.flatten(self.avgpool(self.conv1(self.conv0(self.pool(x))))))


class Inception3(nn.Module):
    """(N, 3, H, W) float32, H, W >= 75 -> (N, num_classes) logits (eval: AuxLogits unused)."""

    def __init__(
        self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False, dropout: float = 0.5
    ):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.quant = nn.QuantStub()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, 2)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        if aux_logits:
            self.AuxLogits = InceptionAux(768, num_classes)
            self.AuxLogits.qconfig = None  # inference never runs it: it stays float
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.flatten = nn.Flatten()  # torchvision calls torch.flatten: no state
        self.fc = nn.Linear(2048, num_classes)
        self.dequant = nn.DeQuantStub()

    def forward(self, x: Any) -> Any:
        if self.transform_input:
            x = transform_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(self.quant(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x))))
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return self.dequant(self.fc(self.flatten(self.dropout(self.avgpool(x)))))

    def fuse_model(self) -> None:
        """Every BasicConv2d's conv+bn+relu, in place, as torchvision does."""
        for m in list(self.modules()):
            if isinstance(m, BasicConv2d):
                m.fuse_model()


def inception_v3(
    weights: Weights = None, num_classes: int = 1000, aux_logits: bool | None = None, transform_input: bool = False
) -> Inception3:
    """Inception v3 in eval mode; ``weights``: a torchvision state dict (dict of arrays or
    .npz path). ``aux_logits`` defaults to whether the weights hold ``AuxLogits``;
    torchvision's pretrained Inception v3 wants ``transform_input=True``."""
    aux = _has_aux(weights, "AuxLogits.") if aux_logits is None else aux_logits
    return load_weights(Inception3(num_classes, aux, transform_input), weights)
