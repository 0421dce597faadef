"""Models bundled with npquant (definitions in npquant.nn, weights in npquant/data), and
torchvision's quantizable architectures with torchvision's state-dict keys (docs/models.md).

The architectures' building blocks are exported under unique names too, so that
``npquant.save`` / ``npquant.load`` know every module of these models."""

from .digits import FUSE_GROUPS as DIGITS_FUSE_GROUPS
from .digits import DigitsCNN, digits_cnn
from .googlenet import BasicConv2d as GoogLeNetBasicConv2d
from .googlenet import GoogLeNet, googlenet
from .googlenet import Inception as GoogLeNetInception
from .googlenet import InceptionAux as GoogLeNetInceptionAux
from .inception import Inception3, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, inception_v3
from .inception import InceptionAux as Inception3Aux
from .mobilenetv2 import InvertedResidual as MobileNetV2InvertedResidual
from .mobilenetv2 import MobileNetV2, mobilenet_v2
from .mobilenetv3 import InvertedResidual as MobileNetV3InvertedResidual
from .mobilenetv3 import MobileNetV3, SqueezeExcitation, mobilenet_v3_large
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from .shufflenetv2 import InvertedResidual as ShuffleNetV2InvertedResidual
from .shufflenetv2 import ShuffleNetV2, shufflenet_v2_x1_0

__all__ = [
    "DigitsCNN",
    "digits_cnn",
    "DIGITS_FUSE_GROUPS",
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "googlenet",
    "inception_v3",
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "MobileNetV2",
    "MobileNetV2InvertedResidual",
    "MobileNetV3",
    "MobileNetV3InvertedResidual",
    "SqueezeExcitation",
    "ShuffleNetV2",
    "ShuffleNetV2InvertedResidual",
    "GoogLeNet",
    "GoogLeNetBasicConv2d",
    "GoogLeNetInception",
    "GoogLeNetInceptionAux",
    "Inception3",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "Inception3Aux",
]
