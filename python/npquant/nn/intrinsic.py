"""Fused float modules produced by ``fuse_modules`` (like torch.ao.nn.intrinsic).

Each is a Sequential of the fused layers, so it runs in float exactly as the
unfused layers did; ``convert`` swaps the whole block for one quantized module.
"""

from __future__ import annotations

from .activation import ReLU
from .batchnorm import BatchNorm2d
from .container import Sequential
from .linear import Linear

__all__ = ["ConvReLU1d", "ConvReLU2d", "LinearReLU", "BNReLU2d"]


class _Fused(Sequential):
    _TYPES: tuple = ()

    def __init__(self, *mods):
        for m, t in zip(mods, self._types()):
            if not isinstance(m, t):
                raise TypeError(
                    f"{type(self).__name__} fuses {' + '.join(x.__name__ for x in self._types())}, "
                    f"got {' + '.join(type(x).__name__ for x in mods)}"
                )
        super().__init__(*mods)

    @classmethod
    def _types(cls) -> tuple:
        return cls._TYPES


class ConvReLU2d(_Fused):
    @classmethod
    def _types(cls):
        from .conv import Conv2d

        return (Conv2d, ReLU)


class ConvReLU1d(_Fused):
    @classmethod
    def _types(cls):
        from .conv import Conv1d

        return (Conv1d, ReLU)


class LinearReLU(_Fused):
    _TYPES = (Linear, ReLU)


class BNReLU2d(_Fused):
    _TYPES = (BatchNorm2d, ReLU)
