"""Static quantized Conv2d / ConvReLU2d: quint8 QTensor in, quint8 QTensor out
(like torch.ao.nn.quantized.Conv2d and torch.ao.nn.intrinsic.quantized.ConvReLU2d).

Activations run NHWC inside: the output QTensor is stored NHWC (its public
accessors show PyTorch's NCHW), so a chain of quantized conv layers never
transposes. Weights are symmetric int8, per output channel or per tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _C
from ..._dtypes import qint8, quint8
from ...qtensor import QTensor, _check_scale, _check_zp, quantize_per_tensor
from ..conv import _init_conv_attributes
from ..module import Module
from ._convert import activation_qparams, quantize_weight, weight_observer
from ._ops import OutputQParams, quint8_input
from ._packed import quantize_weight_symmetric
from ._state import keyed_errors, load_bias, load_qparams, load_qweight, readonly, save_qparams

__all__ = ["Conv1d", "ConvReLU1d", "Conv2d", "ConvReLU2d"]


def _weight_scales(qweight: QTensor, out_channels: int) -> np.ndarray:
    """Per-output-channel float32 scales of a symmetric qint8 conv weight."""
    if not isinstance(qweight, QTensor):
        raise TypeError(
            f"weight must be a QTensor of npquant.qint8 (use npquant.quantize_per_channel "
            f"or quantize_per_tensor), got {type(qweight).__name__}"
        )
    if qweight.dtype is not qint8:
        raise TypeError(f"conv weight must be npquant.qint8, got {qweight.dtype}")
    if qweight.qscheme() == "per_tensor_affine":
        zps = np.array([qweight.q_zero_point()])
        scales = np.full(out_channels, qweight.q_scale(), dtype=np.float32)
    else:
        if qweight.q_per_channel_axis() != 0:
            raise ValueError(
                "per-channel conv weights must be quantized along axis 0 (output channels), "
                f"got axis {qweight.q_per_channel_axis()}"
            )
        zps = qweight.q_per_channel_zero_points()
        scales = qweight.q_per_channel_scales().astype(np.float32)
    if np.any(zps != 0):
        raise ValueError(
            "npquant needs symmetric int8 weights (zero_point 0): quantize them with a "
            "symmetric qscheme (per_tensor_symmetric or per_channel_symmetric)"
        )
    return np.ascontiguousarray(scales)


def _bias_array(bias, out_channels: int):
    if bias is None:
        return None
    if hasattr(bias, "detach"):
        bias = bias.detach().cpu().numpy()
    b = np.asarray(bias)
    if b.shape != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("bias contains NaN or Inf")
    return np.ascontiguousarray(b, dtype=np.float32)


class PackedConvParams:
    """int8 conv weights (kept plain, as given), their scales, bias, and the native
    packed form for this CPU's kernels. Pickled (and deep-copied) as the plain
    weights: loading packs them again for whatever CPU loads them."""

    __slots__ = ("qweight", "w_scale", "bias", "geometry", "packed")

    def __init__(self, qweight: QTensor, bias, stride, pad4, dilation, groups):
        out_channels = qweight.shape[0] if isinstance(qweight, QTensor) else 0
        self.w_scale = _weight_scales(qweight, out_channels)
        self.bias = _bias_array(bias, out_channels)
        self.qweight = qweight
        self.geometry = (tuple(stride), tuple(pad4), tuple(dilation), int(groups))
        self.packed = _C.PackedConv2dWeight(np.ascontiguousarray(qweight.int_repr()), *self.geometry)

    def __reduce__(self):
        return (PackedConvParams, (self.qweight, self.bias, *self.geometry))


class Conv2d(OutputQParams, Module):
    """int8 Conv2d with requantization: y_q = requant(conv(x_q - zp, w_q) + bias).

    Constructed like ``torch.ao.nn.quantized.Conv2d`` (weights start at zero; load
    them with ``set_weight_bias(qweight, bias)``, set ``.scale``/``.zero_point`` for
    the output), or from a float ``npquant.nn.Conv2d`` with ``from_float``.
    Called on a 4-D quint8 QTensor of logical shape (N, C, H, W), stored NCHW or
    NHWC; returns an NHWC-stored QTensor. Exact: every output equals npquant's
    reference convolution bit for bit, on every ISA.
    """

    _FUSED_RELU = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"quantized Conv2d supports padding_mode='zeros' only (as PyTorch), got {padding_mode!r}")
        _init_conv_attributes(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        )
        self.scale = 1.0
        self.zero_point = 0
        w = quantize_per_tensor(
            np.zeros((out_channels, in_channels // groups, *self.kernel_size), np.float32), 1.0, 0, qint8
        )
        self.set_weight_bias(w, np.zeros(out_channels, np.float32) if bias else None)

    # ---- weights
    def set_weight_bias(self, w: QTensor, b) -> None:
        """Sets int8 weights (out, in/groups, kh, kw) and a float bias (or None), and packs them."""
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        _weight_scales(w, self.out_channels)  # type and qscheme first: clearer errors
        if tuple(w.shape) != shape:
            raise ValueError(
                f"weight shape {tuple(w.shape)} does not match {shape} (out_channels, in_channels/groups, kh, kw)"
            )
        self._packed_params = PackedConvParams(w, b, self.stride, self._pad4, self.dilation, self.groups)

    def weight(self) -> QTensor:
        return self._packed_params.qweight

    def bias(self):
        return self._packed_params.bias

    def _weight_bias(self):
        return self.weight(), self.bias()

    # ---- state dict: torch's keys weight (qint8 QTensor), bias, scale, zero_point
    def _save_to_state_dict(self, dest, prefix):
        super()._save_to_state_dict(dest, prefix)
        dest[prefix + "weight"] = readonly(self.weight())
        dest[prefix + "bias"] = readonly(self.bias())
        save_qparams(dest, prefix, self.scale, self.zero_point)

    def _load_from_state_dict(self, sd, prefix):
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        w = load_qweight(sd, prefix + "weight", shape)
        has_b, b = load_bias(sd, prefix + "bias", self.out_channels)
        if has_b and self.bias() is None:
            has_b = False  # an unexpected key (strict loads have refused it already)
        params = None
        if w is not None or has_b:
            params = keyed_errors(
                prefix + "weight",
                PackedConvParams,
                self.weight() if w is None else w,
                b if has_b else self.bias(),
                self.stride,
                self._pad4,
                self.dilation,
                self.groups,
            )
        qparams = load_qparams(sd, prefix)
        if params is not None:
            qparams["_packed_params"] = params
        return lambda: self.__dict__.update(qparams)

    # ---- forward
    def forward(self, x) -> QTensor:
        if (  # the common case, a previous layer's output, checked in a few attribute reads
            type(x) is QTensor
            and x._nhwc
            and x._dtype is quint8
            and x._axis is None
            and x._q.shape[3] == self.in_channels
            and x._q.flags.c_contiguous
        ):
            q, nchw = x._q, False
        else:
            x = self._checked_input(x)
            # An NCHW-stored input (a QuantStub's output, the first layer's) goes to
            # the native op as it is: the stem path reads it while building its
            # padded copy, the other paths transpose it natively.
            nchw = not x._nhwc and x._q.flags.c_contiguous
            q = x._q if nchw else np.ascontiguousarray(x.nhwc())
        scale, zp, fscale = self._output_qparams()
        p = self._packed_params
        y = _C.conv2d_static(q, p.packed, x._scale, x._zp, p.w_scale, p.bias, scale, zp, self._FUSED_RELU, nchw)
        return QTensor._trusted(y, fscale, zp, nhwc=True)

    def _checked_input(self, x) -> QTensor:
        name = type(self).__name__
        x = quint8_input(x, name)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"quantized {name} expects a 4-D QTensor of shape (N, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        return x

    # ---- construction from a float module
    @classmethod
    def from_float(cls, mod, weight: QTensor | None = None, output_scale=None, output_zero_point=None):
        """The quantized twin of a float ``npquant.nn.Conv2d``.

        mod: the float Conv2d, or a fused Conv+ReLU container whose first element is
        the Conv2d (``mod[0]``).
        weight: its int8 weight as a QTensor; if None, ``mod.qconfig.weight()`` (an
        observer) quantizes ``conv.weight`` when a qconfig is set, otherwise it is
        quantized per output channel, symmetric, from its min/max.
        output_scale, output_zero_point: the output qparams; if None they come from
        ``mod.activation_post_process.calculate_qparams()`` (a calibrated observer,
        as after ``prepare`` and calibration). Raises if neither is available.
        """
        FloatConv2d = cls._float_class()
        conv = mod if isinstance(mod, FloatConv2d) else mod[0] if hasattr(mod, "__getitem__") else None
        if not isinstance(conv, FloatConv2d):
            raise TypeError(
                f"{cls.__name__}.from_float expects an npquant.nn.{FloatConv2d.__name__} (or a fused Conv+ReLU "
                f"whose first module is one), got {type(mod).__name__}"
            )
        if conv.padding_mode != "zeros":
            raise ValueError(f"quantized Conv2d supports padding_mode='zeros' only, got {conv.padding_mode!r}")
        if output_scale is None or output_zero_point is None:
            if getattr(mod, "activation_post_process", None) is None:
                raise ValueError(
                    "from_float needs output_scale and output_zero_point, or a module "
                    "calibrated through npquant.prepare (with an activation_post_process)"
                )
            output_scale, output_zero_point = activation_qparams(mod)
        if weight is None:
            if getattr(getattr(mod, "qconfig", None), "weight", None) is not None:
                weight = quantize_weight(conv.weight, weight_observer(mod))
            else:
                weight = quantize_weight_symmetric(conv.weight, per_channel=True)
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        q.set_weight_bias(weight, None if conv.bias is None else conv.bias.copy())
        q.scale = float(_check_scale(output_scale))
        q.zero_point = _check_zp(output_zero_point, quint8)
        return q

    @classmethod
    def _float_class(cls) -> type[Any]:
        from ..conv import Conv2d as FloatConv2d

        return FloatConv2d

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, scale={self.scale}, zero_point={self.zero_point}, padding={self.padding}"
        )
        if self.dilation not in ((1, 1), (1,)):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias() is None:
            s += ", bias=False"
        return s


class ConvReLU2d(Conv2d):
    """Conv2d followed by ReLU, fused into the requantization clamp (lower bound = zero_point)."""

    _FUSED_RELU = True


def _reshaped(w: QTensor, shape: tuple) -> QTensor:
    """The int8 weight w with its codes in another shape (the output-channel axis 0 kept)."""
    q = np.ascontiguousarray(w.int_repr()).reshape(shape)
    if w.qscheme() == "per_tensor_affine":
        return QTensor(q, w.q_scale(), w.q_zero_point(), qint8)
    return QTensor(q, w.q_per_channel_scales(), w.q_per_channel_zero_points(), qint8, axis=0)


class Conv1d(Conv2d):
    """int8 Conv1d (like ``torch.ao.nn.quantized.Conv1d``): (N, C, L) quint8 QTensor in
    and out, weight (out, in/groups, k) with torch's state-dict keys. It runs the
    Conv2d kernels on a height-1 image (a 1 x k kernel), so its numerics are Conv2d's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        from ..conv import init_conv1d_attributes

        super(Conv2d, self).__init__()
        if padding_mode != "zeros":
            raise ValueError(f"quantized Conv1d supports padding_mode='zeros' only (as PyTorch), got {padding_mode!r}")
        init_conv1d_attributes(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        )
        self.scale = 1.0
        self.zero_point = 0
        w = quantize_per_tensor(
            np.zeros((out_channels, in_channels // groups, self.kernel_size[0]), np.float32), 1.0, 0, qint8
        )
        self.set_weight_bias(w, np.zeros(out_channels, np.float32) if bias else None)

    def _pack(self, w: QTensor, b) -> PackedConvParams:
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size[0])
        _weight_scales(w, self.out_channels)
        if tuple(w.shape) != shape:
            raise ValueError(
                f"weight shape {tuple(w.shape)} does not match {shape} (out_channels, in_channels/groups, k)"
            )
        return PackedConvParams(
            _reshaped(w, (shape[0], shape[1], 1, shape[2])), b, self._stride2, self._pad4, self._dilation2, self.groups
        )

    def set_weight_bias(self, w: QTensor, b) -> None:
        """Sets int8 weights (out, in/groups, k) and a float bias (or None), and packs them."""
        self._packed_params = self._pack(w, b)

    def weight(self) -> QTensor:
        w = self._packed_params.qweight
        return _reshaped(w, (w.shape[0], w.shape[1], w.shape[3]))

    def _load_from_state_dict(self, sd, prefix):
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size[0])
        w = load_qweight(sd, prefix + "weight", shape)
        has_b, b = load_bias(sd, prefix + "bias", self.out_channels)
        if has_b and self.bias() is None:
            has_b = False
        params = None
        if w is not None or has_b:
            params = keyed_errors(
                prefix + "weight", self._pack, self.weight() if w is None else w, b if has_b else self.bias()
            )
        qparams = load_qparams(sd, prefix)
        if params is not None:
            qparams["_packed_params"] = params
        return lambda: self.__dict__.update(qparams)

    def forward(self, x) -> QTensor:
        name = type(self).__name__
        x = quint8_input(x, name)
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"quantized {name} expects a 3-D QTensor of shape (N, {self.in_channels}, L), "
                f"got shape {tuple(x.shape)}"
            )
        scale, zp, fscale = self._output_qparams()
        p = self._packed_params
        x4 = np.ascontiguousarray(x.int_repr().transpose(0, 2, 1)[:, None])  # NHWC, H = 1
        y = _C.conv2d_static(
            x4, p.packed, x.q_scale(), x.q_zero_point(), p.w_scale, p.bias, scale, zp, self._FUSED_RELU
        )
        return QTensor._trusted(np.ascontiguousarray(y[:, 0].transpose(0, 2, 1)), fscale, zp)

    @classmethod
    def _float_class(cls) -> type[Any]:
        from ..conv import Conv1d as FloatConv1d

        return FloatConv1d


class ConvReLU1d(Conv1d):
    """Conv1d followed by ReLU, fused into the requantization clamp (lower bound = zero_point)."""

    _FUSED_RELU = True
