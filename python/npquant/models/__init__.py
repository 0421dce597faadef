"""Models bundled with npquant (definitions in npquant.nn, weights in npquant/data), and
torchvision's quantizable architectures with torchvision's state-dict keys (docs/models.md)."""

from .digits import FUSE_GROUPS as DIGITS_FUSE_GROUPS
from .digits import DigitsCNN, digits_cnn
from .googlenet import GoogLeNet, googlenet
from .inception import Inception3, inception_v3
from .mobilenetv2 import MobileNetV2, mobilenet_v2
from .mobilenetv3 import MobileNetV3, mobilenet_v3_large
from .resnet import ResNet, resnet18, resnet50
from .shufflenetv2 import ShuffleNetV2, shufflenet_v2_x1_0

__all__ = ["DigitsCNN", "digits_cnn", "DIGITS_FUSE_GROUPS", "ResNet", "resnet18", "resnet50", "MobileNetV2",
           "mobilenet_v2", "MobileNetV3", "mobilenet_v3_large", "ShuffleNetV2", "shufflenet_v2_x1_0",
           "GoogLeNet", "googlenet", "Inception3", "inception_v3"]
