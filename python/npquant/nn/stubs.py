"""QuantStub / DeQuantStub and FloatFunctional: the markers eager-mode quantization needs."""

from __future__ import annotations

import numpy as np

from .activation import Identity
from .linear import _float_input
from .module import Module

__all__ = ["QuantStub", "DeQuantStub", "FloatFunctional"]


class QuantStub(Module):
    """Where float data enters the quantized region. Identity until ``convert``
    replaces it with ``npquant.nn.quantized.Quantize`` (qparams from its observer)."""

    def __init__(self, qconfig=None):
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x):
        return _float_input(x, "QuantStub")


class DeQuantStub(Module):
    """Where quantized data leaves the quantized region; becomes ``DeQuantize`` at convert."""

    def __init__(self, qconfig=None):
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x):
        return _float_input(x, "DeQuantStub")


class FloatFunctional(Module):
    """Float add/mul/cat as a module, so ``prepare`` can observe their outputs and
    ``convert`` can swap in ``npquant.nn.quantized.QFunctional``. Use its methods
    (``self.skip_add.add(a, b)``), not ``forward``."""

    def __init__(self):
        super().__init__()
        self.activation_post_process = Identity()

    def forward(self, x):
        raise RuntimeError(
            "FloatFunctional is not called directly: use its methods (add, add_relu, mul, cat, add_scalar, mul_scalar)"
        )

    def _pair(self, x, y, op):
        x, y = _float_input(x, f"FloatFunctional.{op}"), _float_input(y, f"FloatFunctional.{op}")
        try:
            np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            raise ValueError(f"FloatFunctional.{op}: shapes {x.shape} and {y.shape} do not broadcast") from None
        return x, y

    def add(self, x, y):
        x, y = self._pair(x, y, "add")
        return self.activation_post_process(x + y)

    def add_relu(self, x, y):
        x, y = self._pair(x, y, "add_relu")
        return self.activation_post_process(np.maximum(x + y, np.float32(0)))

    def mul(self, x, y):
        x, y = self._pair(x, y, "mul")
        return self.activation_post_process(x * y)

    # Not observed: the quantized versions derive their output qparams from the input's.
    def add_scalar(self, x, c: float):
        return _float_input(x, "FloatFunctional.add_scalar") + np.float32(c)

    def mul_scalar(self, x, c: float):
        return _float_input(x, "FloatFunctional.mul_scalar") * np.float32(c)

    def cat(self, xs, dim: int = 0):
        xs = [_float_input(x, "FloatFunctional.cat") for x in xs]
        try:
            r = np.concatenate(xs, axis=dim)
        except ValueError as e:
            raise ValueError(f"FloatFunctional.cat along dim {dim}: {e}") from None
        return self.activation_post_process(r)
