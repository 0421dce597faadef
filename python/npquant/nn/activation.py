"""Float elementwise and shape modules: ReLU, ReLU6, Hardswish, Hardsigmoid, Sigmoid, Tanh,
LeakyReLU, ELU, SiLU, GELU, Softmax, Identity, Dropout, Flatten."""

from __future__ import annotations

import math

import numpy as np

from .. import _C
from .linear import _float_input
from .module import Module

__all__ = [
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
    "Softmax",
    "Identity",
    "Dropout",
    "Flatten",
]


class ReLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return np.maximum(_float_input(x, "ReLU"), np.float32(0))


class ReLU6(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return np.clip(_float_input(x, "ReLU6"), np.float32(0), np.float32(6))


class Hardswish(Module):
    """x * relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = _float_input(x, "Hardswish")
        return x * np.clip(x + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)


# The functions, on float32 arrays (the quantized modules evaluate them on the 256
# dequantized codes, so float and quantized layers share one definition).
def hardsigmoid(x):
    return np.clip(x + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)


def sigmoid(x):
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88: the result is 0
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def tanh(x):
    return np.tanh(x)


def leaky_relu(x, negative_slope: float):
    return np.where(x > 0, x, x * np.float32(negative_slope)).astype(np.float32)


def elu(x, alpha: float):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, np.float32(alpha) * np.expm1(np.minimum(x, np.float32(0)))).astype(np.float32)


def silu(x):
    return (x * sigmoid(x)).astype(np.float32)


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x, approximate: str = "none"):
    """0.5 x (1 + erf(x / sqrt 2)), erf in float64 (NumPy has none) rounded once; or
    torch's tanh form 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, np.float32)
    if approximate == "tanh":
        inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
        return (np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))).astype(np.float32)
    e = _erf(x.astype(np.float64) * (1 / math.sqrt(2))).astype(np.float64).astype(np.float32)
    return (np.float32(0.5) * x * (np.float32(1) + e)).astype(np.float32)


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0: Chebyshev-fitted coefficients
# (Numerical Recipes' erfcc), fractional error below 1.2e-7 for every z.
_ERFC = tuple(
    np.float32(c)
    for c in (
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    )
)


def gelu_fast(x: np.ndarray) -> np.ndarray:
    """The erf GELU in float32 ufuncs (what the float GELU module runs): within ~1e-6
    absolute of ``gelu`` (float64 erf) and of torch, many times faster on large arrays
    (in-place passes, no np.where). ``gelu`` stays the definition the quantized GELU's
    256-entry tables use."""
    x = np.asarray(x, np.float32)
    z = np.abs(x)
    z *= np.float32(1 / math.sqrt(2))
    t = np.float32(0.5) * z
    t += np.float32(1)
    np.reciprocal(t, out=t)
    p = np.full_like(t, _ERFC[-1])
    for c in _ERFC[-2:0:-1]:
        p *= t
        p += c
    p *= t
    p += _ERFC[0]
    z *= z
    p -= z
    with np.errstate(under="ignore"):
        np.exp(p, out=p)
    p *= t  # erfc(|x| / sqrt 2)
    np.subtract(np.float32(1), p, out=p)
    np.copysign(p, x, out=p)  # erf(x / sqrt 2)
    p += np.float32(1)
    p *= x
    p *= np.float32(0.5)
    return p


def _check_gelu(approximate: str) -> str:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


class Hardsigmoid(Module):
    """relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return hardsigmoid(_float_input(x, "Hardsigmoid"))


class Sigmoid(Module):
    def forward(self, x):
        return sigmoid(_float_input(x, "Sigmoid"))


class Tanh(Module):
    def forward(self, x):
        return tanh(_float_input(x, "Tanh"))


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x):
        return leaky_relu(_float_input(x, "LeakyReLU"), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x):
        return elu(_float_input(x, "ELU"), self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SiLU(Module):
    """x * sigmoid(x)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return silu(_float_input(x, "SiLU"))


def gelu_float(x: np.ndarray, approximate: str) -> np.ndarray:
    """The float GELU module's function: the native kernel (``_C.gelu_f32``: a rational
    erf or tanh, the same bits on every ISA, within ~1e-6 of torch) for C-contiguous
    float32 arrays; otherwise ``gelu_fast`` (erf form) or ``gelu`` (tanh form) in NumPy."""
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return _C.gelu_f32(x, approximate)
    return gelu_fast(x) if approximate == "none" else gelu(x, approximate)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = _check_gelu(approximate)

    def forward(self, x):
        return gelu_float(_float_input(x, "GELU"), self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def softmax(x: np.ndarray, dim: int) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along dim, in float32, by the native kernel
    (``_C.softmax_f32``: the same bits on every ISA; a row with a NaN, or of -inf only,
    gives NaN, as in torch). Another dim than the last is moved there and back."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        return _C.softmax_f32(x.reshape(1)).reshape(())
    last = dim in (-1, x.ndim - 1)
    rows = np.ascontiguousarray(x if last else np.moveaxis(x, dim, -1))
    y = _C.softmax_f32(rows)
    return y if last else np.moveaxis(y, -1, dim)


class Softmax(Module):
    """Softmax along ``dim`` (required: torch's implicit-dim rule is deprecated)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is None:
            raise ValueError("Softmax needs dim (e.g. Softmax(dim=-1)); torch's implicit choice is deprecated")
        self.dim = int(dim)

    def forward(self, x):
        x = _float_input(x, "Softmax")
        if not -x.ndim <= self.dim < max(x.ndim, 1):
            raise ValueError(f"Softmax dim {self.dim} is out of range for an input of shape {x.shape}")
        return softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Identity(Module):
    """Returns its input; accepts and ignores constructor arguments, like torch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, *args, **kwargs):
        # fusion leaves one or two of these after every conv (the folded BatchNorm and
        # ReLU), and a forward still calls them: skip the forward() frame unless hooked
        if len(args) == 1 and not (kwargs or self._forward_pre_hooks or self._forward_hooks):
            return args[0]
        return super().__call__(*args, **kwargs)

    def forward(self, x):
        return x


class Dropout(Module):
    """Inference only: the identity (npquant does not train)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, x):
        return _float_input(x, "Dropout")

    def extra_repr(self) -> str:
        return f"p={self.p}"


def flat_shape(shape: tuple, start_dim: int, end_dim: int) -> tuple:
    nd = len(shape)
    s, e = start_dim % nd if nd else 0, end_dim % nd if nd else 0
    if s > e:
        raise ValueError(f"Flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}")
    # math.prod, not np.prod: NumPy's reduction wrapper took 60 us inside a model (cold)
    return shape[:s] + (math.prod(shape[s : e + 1]),) + shape[e + 1 :]


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        x = _float_input(x, "Flatten")
        return x.reshape(flat_shape(x.shape, self.start_dim, self.end_dim))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
