"""Quantized modules (QTensor in, QTensor out), mirroring torch.ao.nn.quantized."""

from . import dynamic
from .activation import ELU, GELU, Dropout, Flatten, Hardsigmoid, Hardswish, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Tanh
from .batchnorm import BatchNorm2d, BNReLU2d
from .conv import Conv2d, ConvReLU2d
from .embedding_ops import Embedding, EmbeddingBag, EmbeddingPackedParams
from .functional_modules import QFunctional
from .linear import Linear, LinearReLU
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .stubs import DeQuantize, Quantize

__all__ = [
    "Linear",
    "LinearReLU",
    "Conv2d",
    "ConvReLU2d",
    "ReLU",
    "ReLU6",
    "Hardswish",
    "Hardsigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "ELU",
    "SiLU",
    "GELU",
    "Dropout",
    "Flatten",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm2d",
    "BNReLU2d",
    "QFunctional",
    "Quantize",
    "DeQuantize",
    "dynamic",
    "Embedding",
    "EmbeddingBag",
    "EmbeddingPackedParams",
]

from .conv import Conv1d, ConvReLU1d  # noqa: E402

__all__ += ["Conv1d", "ConvReLU1d"]
from .conv_transpose import ConvTranspose2d  # noqa: E402

__all__ += ["ConvTranspose2d"]
