"""NumPy float modules mirroring torch.nn, plus the quantized ones (npquant.nn.quantized)."""

from . import (
    intrinsic,  # noqa: E402  (fused float modules made by fuse_modules)
    quantized,  # noqa: E402  (npquant.nn.quantized, npquant.nn.quantized.dynamic)
)
from .activation import (
    ELU,
    GELU,
    Dropout,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Identity,
    LeakyReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import Sequential
from .conv import Conv2d
from .linear import Linear
from .module import Module
from .normalization import LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .rnn import RNNBase as RNNBase  # importable (as torch.nn.RNNBase), not in __all__
from .rnn import RNNCellBase as RNNCellBase
from .sparse import Embedding, EmbeddingBag
from .stubs import DeQuantStub, FloatFunctional, QuantStub
from .transformer import MultiheadAttention, NonDynamicallyQuantizableLinear, TransformerEncoderLayer

__all__ = [
    "Module",
    "Sequential",
    "Linear",
    "Conv2d",
    "BatchNorm1d",
    "BatchNorm2d",
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
    "Identity",
    "Dropout",
    "Flatten",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "QuantStub",
    "DeQuantStub",
    "FloatFunctional",
    "intrinsic",
    "quantized",
    "Softmax",
    "LayerNorm",
    "Embedding",
    "EmbeddingBag",
    "MultiheadAttention",
    "NonDynamicallyQuantizableLinear",
    "TransformerEncoderLayer",
]
__all__ += ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "utils"]  # RNNBase: importable, not saved

from . import utils  # noqa: E402  (npquant.nn.utils.rnn: pack_padded_sequence, pad_packed_sequence)
from .conv import Conv1d  # noqa: E402

__all__ += ["Conv1d"]
from .upsampling import ChannelShuffle, Upsample, UpsamplingBilinear2d, UpsamplingNearest2d, interpolate  # noqa: E402

__all__ += ["Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "ChannelShuffle", "interpolate"]
from .conv_transpose import ConvTranspose2d  # noqa: E402

__all__ += ["ConvTranspose2d"]
