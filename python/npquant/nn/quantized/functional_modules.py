"""QFunctional: quantized add / add_relu / mul / cat / add_scalar / mul_scalar."""

from __future__ import annotations

import numpy as np

from ...qtensor import quantize_per_tensor
from ..module import Module
from ._ops import dequant, out_qparams, q_input, quant, reciprocal, requant_int, storage, wrap

__all__ = ["QFunctional"]


def _operands(x, y, op: str):
    """Storage arrays of two QTensors in a common order, and whether that is NHWC."""
    x, y = q_input(x, f"QFunctional.{op}"), q_input(y, f"QFunctional.{op}")
    if x.dtype is not y.dtype:
        raise TypeError(f"QFunctional.{op}: operands have dtypes {x.dtype} and {y.dtype}")
    try:
        np.broadcast_shapes(tuple(x.shape), tuple(y.shape))
    except ValueError:
        raise ValueError(f"QFunctional.{op}: shapes {tuple(x.shape)} and {tuple(y.shape)} do not broadcast") from None
    if x.is_nhwc and y.is_nhwc and x.shape == y.shape:
        return x, y, x.nhwc(), y.nhwc(), True
    return x, y, x.int_repr(), y.int_repr(), False


def mul_multiplier(x_scale, y_scale, out_scale) -> np.float32:
    """mul's requantization multiplier fl(fl(x_scale * y_scale) * fl(1 / out_scale))."""
    return np.float32(x_scale) * np.float32(y_scale) * reciprocal(out_scale)


class QFunctional(Module):
    """Output qparams ``scale`` / ``zero_point`` come from the FloatFunctional's
    observer at convert (add_scalar / mul_scalar derive theirs from the input)."""

    def __init__(self):
        super().__init__()
        self.scale = 1.0
        self.zero_point = 0

    def forward(self, x):
        raise RuntimeError("QFunctional is not called directly: use its methods "
                           "(add, add_relu, mul, cat, add_scalar, mul_scalar)")

    def _out(self, dtype):
        if self.scale is None:
            raise RuntimeError(
                "this QFunctional has no output qparams: during calibration its FloatFunctional ran "
                "only add_scalar/mul_scalar (which are not observed). Call add/mul/cat on the float "
                "model during calibration, or set .scale and .zero_point")
        return out_qparams(self.scale, self.zero_point, dtype)

    def _add(self, x, y, relu: bool, op: str):
        x, y, a, b, nhwc = _operands(x, y, op)
        s, zp = self._out(x.dtype)
        v = dequant(a, x.q_scale(), x.q_zero_point()) + dequant(b, y.q_scale(), y.q_zero_point())
        if relu:
            v = np.maximum(v, np.float32(0))
        return wrap(quant(v, s, zp, x.dtype), s, zp, x.dtype, nhwc)

    def add(self, x, y):
        return self._add(x, y, False, "add")

    def add_relu(self, x, y):
        return self._add(x, y, True, "add_relu")

    def mul(self, x, y):
        """Integer product of the centred codes, requantized by fl(fl(sx * sy) * fl(1 / s))."""
        x, y, a, b, nhwc = _operands(x, y, "mul")
        s, zp = self._out(x.dtype)
        acc = (a.astype(np.int32) - x.q_zero_point()) * (b.astype(np.int32) - y.q_zero_point())
        mult = mul_multiplier(x.q_scale(), y.q_scale(), s)
        return wrap(requant_int(acc, mult, zp, x.dtype), s, zp, x.dtype, nhwc)

    def cat(self, xs, dim: int = 0):
        """Dequantize, concatenate, quantize to (scale, zero_point); inputs already
        at those qparams are copied unchanged."""
        xs = [q_input(x, "QFunctional.cat") for x in xs]
        if not xs:
            raise ValueError("QFunctional.cat needs at least one QTensor")
        dtype = xs[0].dtype
        s, zp = self._out(dtype)
        nd = xs[0].ndim
        dim = dim % nd if nd else 0
        nhwc = all(x.is_nhwc for x in xs) and dim == 1
        parts = []
        for x in xs:
            if x.dtype is not dtype:
                raise TypeError(f"QFunctional.cat: mixed dtypes {dtype} and {x.dtype}")
            q = x.nhwc() if nhwc else x.int_repr()
            if np.float32(x.q_scale()) == np.float32(s) and x.q_zero_point() == zp:
                parts.append(q)
            elif nhwc:  # PyTorch's channels-last cat kernel: vectorized requantization
                parts.append(quant(dequant(q, x.q_scale(), x.q_zero_point()), s, zp, dtype))
            else:       # PyTorch's general path: dequantize, then quantize_per_tensor
                parts.append(quantize_per_tensor(x.dequantize(), s, zp, dtype).int_repr())
        try:
            out = np.concatenate(parts, axis=3 if nhwc else dim)
        except ValueError as e:
            raise ValueError(f"QFunctional.cat along dim {dim}: {e}") from None
        return wrap(out, s, zp, dtype, nhwc)

    def add_scalar(self, x, c: float):
        """PyTorch's rule: c becomes the integer c_q = nearbyint(c / s) added in the
        zero point; when that leaves the dtype's range, the scale grows so the
        shifted code range fits, and the codes are requantized."""
        x = q_input(x, "QFunctional.add_scalar")
        q, _, nhwc = storage(x)
        s, zp, dt = x.q_scale(), x.q_zero_point(), x.dtype
        c_q = int(np.rint(float(c) / s))
        if dt.qmin <= zp - c_q <= dt.qmax:
            return wrap(q.copy(), s, zp - c_q, dt, nhwc)
        span = dt.qmax - dt.qmin
        if zp - c_q < dt.qmin:
            out_s, out_zp = (dt.qmax - (zp - c_q)) / span * s, dt.qmin
        else:
            out_s, out_zp = (zp - c_q - dt.qmin) / span * s, dt.qmax
        out_s, _ = out_qparams(out_s, out_zp, dt)
        mult = np.float32(s) * reciprocal(out_s)
        acc = q.astype(np.int32) - zp + c_q
        return wrap(requant_int(acc, mult, out_zp, dt), out_s, out_zp, dt, nhwc)

    def mul_scalar(self, x, c: float):
        """PyTorch's rule: multiplies the scale by |c|; codes are kept for c > 0,
        reflected (qmax + qmin - q) for c < 0, and all 0 (scale 1, zero point 0) for c == 0."""
        x = q_input(x, "QFunctional.mul_scalar")
        q, _, nhwc = storage(x)
        s, zp, dt = x.q_scale(), x.q_zero_point(), x.dtype
        c = float(c)
        if c == 0.0:
            return wrap(np.zeros_like(q), 1.0, 0, dt, nhwc)
        if c > 0:
            return wrap(q.copy(), s * c, zp, dt, nhwc)
        flipped = (dt.qmax + dt.qmin - q.astype(np.int32)).astype(dt.storage)
        return wrap(flipped, s * -c, dt.qmax + dt.qmin - zp, dt, nhwc)

    # state dict: torch's keys scale / zero_point (0-d); a QFunctional without output
    # qparams (only add_scalar / mul_scalar ran in calibration) writes scale NaN.
    def _save_to_state_dict(self, dest, prefix):
        from ._state import save_qparams

        super()._save_to_state_dict(dest, prefix)
        none = self.scale is None
        save_qparams(dest, prefix, np.nan if none else self.scale, 0 if none else self.zero_point)

    def _load_from_state_dict(self, sd, prefix):
        from ._state import load_qparams

        qparams = load_qparams(sd, prefix, None, allow_none=True)
        return lambda: self.__dict__.update(qparams)

    @classmethod
    def from_float(cls, mod):
        from ._convert import activation_qparams

        q = cls()
        obs = mod._modules.get("activation_post_process")
        if obs is not None and not getattr(obs, "has_data", True):
            # Only add_scalar / mul_scalar ran during calibration (they are not
            # observed): the other ops have no output qparams and say so when called.
            q.scale = q.zero_point = None
            return q
        q.scale, q.zero_point = activation_qparams(mod)
        return q

    def extra_repr(self) -> str:
        return f"scale={self.scale}, zero_point={self.zero_point}"
