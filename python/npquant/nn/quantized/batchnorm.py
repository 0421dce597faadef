"""Quantized BatchNorm2d / BNReLU2d (per-channel affine on the codes, requantized)."""

from __future__ import annotations

import numpy as np

from ..module import Module
from ._ops import out_qparams, q_input, storage, wrap
from ._state import load_qparams, load_vector, readonly, save_qparams

__all__ = ["BatchNorm2d", "BNReLU2d"]


class BatchNorm2d(Module):
    """y = alpha[c] * (q - zp_in) + beta[c], alpha = w / sqrt(var + eps) * s_in / s_out,
    beta = (b - mean * w / sqrt(var + eps)) / s_out; out = clamp(nearbyint(y) + zp_out)."""

    _RELU = False

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.weight = np.ones(num_features, np.float32)
        self.bias = np.zeros(num_features, np.float32)
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)
        self.scale, self.zero_point = 1.0, 0

    def forward(self, x):
        name = type(self).__name__
        x = q_input(x, name)
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"quantized {name}({self.num_features}) expects a 4-D QTensor with "
                f"{self.num_features} channels, got shape {x.shape}"
            )
        q, _, nhwc = storage(x)
        s, zp = out_qparams(self.scale, self.zero_point, x.dtype)
        alpha, beta = self.affine(x.q_scale(), s)
        shape = (1, 1, 1, -1) if nhwc else (1, -1, 1, 1)
        y = (q.astype(np.float32) - np.float32(x.q_zero_point())) * alpha.reshape(shape) + beta.reshape(shape)
        lo = zp if self._RELU else x.dtype.qmin
        out = np.clip(np.rint(y).astype(np.int64) + zp, lo, x.dtype.qmax).astype(x.dtype.storage)
        return wrap(out, s, zp, x.dtype, nhwc)

    def affine(self, in_scale: float, out_scale: float):
        """(alpha, beta), float32 per channel, for input scale in_scale and output scale out_scale."""
        inv_sigma = (np.float32(1) / np.sqrt(self.running_var + np.float32(self.eps))).astype(np.float32)
        wv = inv_sigma * self.weight
        alpha = (wv * np.float32(in_scale / out_scale)).astype(np.float32)
        beta = ((self.bias - self.running_mean * wv) / np.float32(out_scale)).astype(np.float32)
        return alpha, beta

    # state dict: torch's keys (weight, bias, running_mean, running_var,
    # num_batches_tracked, scale, zero_point); num_batches_tracked is read and ignored
    _VECTORS = ("weight", "bias", "running_mean", "running_var")

    def _save_to_state_dict(self, dest, prefix):
        super()._save_to_state_dict(dest, prefix)
        for name in self._VECTORS:
            dest[prefix + name] = readonly(getattr(self, name))
        dest[prefix + "num_batches_tracked"] = np.array(0, np.int64)
        save_qparams(dest, prefix, self.scale, self.zero_point)

    def _load_from_state_dict(self, sd, prefix):
        new = {}
        for name in self._VECTORS:
            v = load_vector(sd, prefix + name, self.num_features)
            if v is not None:
                new[name] = v
        if "running_var" in new and np.any(new["running_var"] < 0):
            raise ValueError(f"state dict entry '{prefix}running_var' has negative variances")
        new.update(load_qparams(sd, prefix, None))
        return lambda: self.__dict__.update(new)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams

        bn = mod[0] if cls._RELU else mod
        q = cls(bn.num_features, bn.eps, bn.momentum)
        ones, zeros = np.ones(bn.num_features, np.float32), np.zeros(bn.num_features, np.float32)
        q.weight = ones if bn.weight is None else bn.weight.copy()
        q.bias = zeros if bn.bias is None else bn.bias.copy()
        q.running_mean, q.running_var = bn.running_mean.copy(), bn.running_var.copy()
        q.scale, q.zero_point = activation_qparams(mod)
        return q

    def extra_repr(self) -> str:
        return f"{self.num_features}, scale={self.scale}, zero_point={self.zero_point}"


class BNReLU2d(BatchNorm2d):
    _RELU = True
