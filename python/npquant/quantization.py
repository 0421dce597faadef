"""``npquant.quantization``: the eager-mode API in one namespace, as ``torch.quantization``.

from npquant.quantization import QuantStub, DeQuantStub, get_default_qconfig, prepare, convert
"""

from .fuse import fuse_conv_bn_eval, fuse_known_modules, fuse_linear_bn_eval, fuse_modules
from .nn import DeQuantStub, QuantStub
from .observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    ObserverBase,
    PercentileObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
    default_dynamic_quant_observer,
    default_histogram_observer,
    default_observer,
    default_per_channel_weight_observer,
    default_placeholder_observer,
    default_weight_observer,
)
from .qconfig import (
    QConfig,
    default_dynamic_qconfig,
    default_per_channel_qconfig,
    default_qconfig,
    float_qparams_weight_only_qconfig,
    float_qparams_weight_only_qconfig_4bit,
    get_default_qconfig,
    per_channel_dynamic_qconfig,
    per_token_dynamic_qconfig,
    reduce_range_dynamic_qconfig,
)
from .quantize import (
    convert,
    get_default_dynamic_quant_module_mappings,
    get_default_static_quant_module_mappings,
    prepare,
    propagate_qconfig_,
    quantize,
    quantize_dynamic,
)

__all__ = [
    "QuantStub",
    "DeQuantStub",
    "QConfig",
    "get_default_qconfig",
    "default_qconfig",
    "default_per_channel_qconfig",
    "default_dynamic_qconfig",
    "per_channel_dynamic_qconfig",
    "per_token_dynamic_qconfig",
    "float_qparams_weight_only_qconfig",
    "float_qparams_weight_only_qconfig_4bit",
    "reduce_range_dynamic_qconfig",
    "fuse_modules",
    "fuse_known_modules",
    "fuse_conv_bn_eval",
    "fuse_linear_bn_eval",
    "prepare",
    "convert",
    "quantize",
    "quantize_dynamic",
    "propagate_qconfig_",
    "get_default_static_quant_module_mappings",
    "get_default_dynamic_quant_module_mappings",
    "ObserverBase",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
    "PercentileObserver",
    "PlaceholderObserver",
    "default_observer",
    "default_weight_observer",
    "default_per_channel_weight_observer",
    "default_histogram_observer",
    "default_dynamic_quant_observer",
    "default_placeholder_observer",
]
