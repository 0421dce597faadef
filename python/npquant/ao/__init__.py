"""``npquant.ao``: so code written against ``torch.ao.quantization`` / ``torch.ao.nn``
runs with ``torch`` replaced by ``npquant``. The same objects as npquant.quantization / npquant.nn."""

import sys

from .. import nn, quantization

# `from npquant.ao.quantization import ...` works too (npquant.ao.nn is attribute access only)
sys.modules[__name__ + ".quantization"] = quantization

__all__ = ["quantization", "nn"]
