"""Static quantized ConvTranspose2d (like torch.ao.nn.quantized.ConvTranspose2d):
quint8 QTensor in and out, symmetric int8 weights per tensor or per output channel.

The accumulation is exact (int64 scatter of (x_q - zp) * w_q, checked to fit int32),
then npquant's static requantization (docs/quantization.md): ``s = fl(xs * ws[o])``,
``m = fl(s / ys)``, ``v = fl(fl(float(acc) + fl(bias / s)) * m)`` (``fl(float(acc) * m)``
without bias), ``q = clamp(nearbyint(v) + yz, 0, 255)``. NumPy, not a native kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._dtypes import qint8, quint8
from ...qtensor import QTensor, _check_scale, _check_zp, quantize_per_tensor
from ..conv_transpose import conv_transpose2d, transpose_geometry
from ..module import Module
from ._convert import activation_qparams, quantize_weight, weight_observer
from ._ops import OutputQParams, quint8_input
from ._state import keyed_errors, load_bias, load_qparams, load_qweight, readonly, save_qparams

__all__ = ["ConvTranspose2d"]


def _requantize(
    acc: np.ndarray, x_scale: float, w_scales: np.ndarray, bias: np.ndarray | None, y_scale: np.float32, y_zp: int
) -> np.ndarray:
    """npquant's static requantization of an int32 (N, O, H, W) accumulator to quint8."""
    f32 = np.float32
    s = (f32(x_scale) * w_scales.astype(f32)).astype(f32)
    m = (s / f32(y_scale)).astype(f32)
    a = acc.astype(np.int32).astype(f32)
    if bias is not None:
        a = (a + (bias.astype(f32) / s).astype(f32)[None, :, None, None]).astype(f32)
    v = (a * m[None, :, None, None]).astype(f32)
    return np.clip(np.rint(v) + y_zp, 0, 255).astype(np.uint8)


class ConvTranspose2d(OutputQParams, Module):
    """int8 ConvTranspose2d. Constructed like torch's (weights start at zero; load them with
    ``set_weight_bias``), or from a calibrated float ``npquant.nn.ConvTranspose2d`` with
    ``from_float``. Weight (in, out/groups, kh, kw), qint8, zero point 0, per tensor or
    per channel along axis 1 (the output channels; groups == 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"quantized ConvTranspose2d supports padding_mode='zeros' only, got {padding_mode!r}")
        geo = transpose_geometry(
            in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, dilation
        )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.padding_mode = padding_mode
        self.__dict__.update(geo)
        self.scale, self.zero_point = 1.0, 0
        w = quantize_per_tensor(np.zeros(self._wshape(), np.float32), 1.0, 0, qint8)
        self.set_weight_bias(w, np.zeros(out_channels, np.float32) if bias else None)

    def _wshape(self) -> tuple:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def _checked(self, w: QTensor, b: Any) -> tuple:
        if not isinstance(w, QTensor) or w.dtype is not qint8:
            raise TypeError(f"weight must be a QTensor of npquant.qint8, got {w!r}")
        if tuple(w.shape) != self._wshape():
            raise ValueError(
                f"weight shape {tuple(w.shape)} does not match {self._wshape()} "
                "(in_channels, out_channels/groups, kh, kw)"
            )
        if w.qscheme() == "per_tensor_affine":
            zps, scales = np.array([w.q_zero_point()]), np.full(self.out_channels, w.q_scale(), np.float32)
        else:
            if w.q_per_channel_axis() != 1 or self.groups != 1:
                raise ValueError(
                    "per-channel ConvTranspose2d weights must be quantized along axis 1 (the output "
                    "channels) with groups == 1; use per-tensor weights otherwise"
                )
            zps, scales = w.q_per_channel_zero_points(), w.q_per_channel_scales().astype(np.float32)
        if np.any(zps != 0):
            raise ValueError("npquant needs symmetric int8 weights (zero_point 0)")
        if b is not None:
            b = np.asarray(b.detach().cpu().numpy() if hasattr(b, "detach") else b)
            if b.shape != (self.out_channels,) or not np.all(np.isfinite(b)):
                raise ValueError(f"bias must be finite with shape ({self.out_channels},), got {b.shape}")
            b = np.ascontiguousarray(b, np.float32)
        return w, b, np.ascontiguousarray(scales)

    def set_weight_bias(self, w: QTensor, b: Any) -> None:
        self._w, self._b, self._w_scales = self._checked(w, b)

    def weight(self) -> QTensor:
        return self._w

    def bias(self) -> np.ndarray | None:
        return self._b

    def _save_to_state_dict(self, dest: dict, prefix: str) -> None:
        super()._save_to_state_dict(dest, prefix)
        dest[prefix + "weight"] = readonly(self._w)
        dest[prefix + "bias"] = readonly(self._b)
        save_qparams(dest, prefix, self.scale, self.zero_point)

    def _load_from_state_dict(self, sd: dict, prefix: str) -> Any:
        w = load_qweight(sd, prefix + "weight", self._wshape())
        has_b, b = load_bias(sd, prefix + "bias", self.out_channels)
        if has_b and self._b is None:
            has_b = False
        update = load_qparams(sd, prefix)
        if w is not None or has_b:
            w2, b2, sc = keyed_errors(
                prefix + "weight", self._checked, self._w if w is None else w, b if has_b else self._b
            )
            update.update(_w=w2, _b=b2, _w_scales=sc)
        return lambda: self.__dict__.update(update)

    def forward(self, x: Any) -> QTensor:
        x = quint8_input(x, "ConvTranspose2d")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"quantized ConvTranspose2d expects a 4-D QTensor of shape (N, {self.in_channels}, "
                f"H, W), got shape {tuple(x.shape)}"
            )
        scale, zp, fscale = self._output_qparams()
        xq = x.int_repr().astype(np.int64) - x.q_zero_point()
        acc = conv_transpose2d(
            xq,
            self._w.int_repr().astype(np.int64),
            self.stride,
            self.padding,
            self.output_padding,
            self.dilation,
            self.groups,
        )
        if acc.size and np.abs(acc).max() >= 2**31:
            raise ValueError(
                "ConvTranspose2d: the int32 accumulator would overflow (too many input channels x "
                "kernel taps for 8-bit values); split the layer"
            )
        return QTensor._trusted(_requantize(acc, x.q_scale(), self._w_scales, self._b, scale, zp), fscale, zp)

    @classmethod
    def from_float(
        cls, mod: Any, weight: QTensor | None = None, output_scale: Any = None, output_zero_point: Any = None
    ) -> ConvTranspose2d:
        """The quantized twin of a calibrated float ``npquant.nn.ConvTranspose2d``. A per-channel
        weight observer of the qconfig observes the output channels (axis 1)."""
        from ..conv_transpose import ConvTranspose2d as Float

        if not isinstance(mod, Float):
            raise TypeError(
                f"{cls.__name__}.from_float expects an npquant.nn.ConvTranspose2d, got {type(mod).__name__}"
            )
        if output_scale is None or output_zero_point is None:
            if getattr(mod, "activation_post_process", None) is None:
                raise ValueError(
                    "from_float needs output_scale and output_zero_point, or a module "
                    "calibrated through npquant.prepare (with an activation_post_process)"
                )
            output_scale, output_zero_point = activation_qparams(mod)
        if weight is None:
            obs = weight_observer(mod)
            if getattr(obs, "ch_axis", None) is not None:
                if mod.groups != 1:
                    raise ValueError(
                        "per-channel weights for a grouped ConvTranspose2d are not supported; give it "
                        "a per-tensor weight observer in its qconfig"
                    )
                obs.ch_axis = 1
            weight = quantize_weight(mod.weight, obs)
        q = cls(
            mod.in_channels,
            mod.out_channels,
            mod.kernel_size,
            mod.stride,
            mod.padding,
            mod.output_padding,
            mod.groups,
            mod.bias is not None,
            mod.dilation,
        )
        q.set_weight_bias(weight, None if mod.bias is None else mod.bias.copy())
        q.scale = float(_check_scale(output_scale))
        q.zero_point = _check_zp(output_zero_point, quint8)
        return q

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"scale={self.scale}, zero_point={self.zero_point}, padding={self.padding}"
        )
