"""QFunctional: quantized add / add_relu / mul / cat / add_scalar / mul_scalar.

quint8 add and add_relu of same-shape tensors, mul (also by a (N,C,1,1) operand
over NHWC codes) and the channel cat of NHWC codes run in dispatched SIMD kernels
(cpu_info()['kernels']['add'] / ['mul'], AVX2 / AVX-512); the add kernel's fmaf
dequantize equals the NumPy path's float64 one exactly (docs/quantization.md).
Otherwise the ops run natively as lookups: with the qparams fixed, the output
code is a function of the two input codes, so a 65,536-entry table computed by
the NumPy arithmetic below (``add_codes`` / ``mul_codes``, applied to every pair of
codes) and a gather in C++ (``_C.lookup2``) give the NumPy path's codes exactly, on
every CPU. The tables are cached per module and qparams (a model's are fixed).
cat maps each operand through a 256-entry table (or copies it) the same way. The
``_*_numpy`` methods are the NumPy path: small tensors with new qparams use it
(building a table costs more), and the tests use it as the oracle.
"""

from __future__ import annotations

import numpy as np

from ... import _C
from ..._dtypes import QDType, quint8
from ...qtensor import QTensor, quantize_per_tensor
from ..module import Module
from ._ops import dequant, out_qparams, q_input, quant, reciprocal, requant_int, storage, u8_view, wrap

__all__ = ["QFunctional"]

# Below this many output elements a table is built only if cached already: the
# NumPy path is cheaper than building one (~1 ms) for a single call.
NATIVE_MIN_ELEMENTS = 1 << 14
_TABLES_PER_MODULE = 16


def _checked_operands(x, y, op: str):
    x, y = q_input(x, f"QFunctional.{op}"), q_input(y, f"QFunctional.{op}")
    if x.dtype is not y.dtype:
        raise TypeError(f"QFunctional.{op}: operands have dtypes {x.dtype} and {y.dtype}")
    try:
        shape = np.broadcast_shapes(tuple(x.shape), tuple(y.shape))
    except ValueError:
        raise ValueError(f"QFunctional.{op}: shapes {tuple(x.shape)} and {tuple(y.shape)} do not broadcast") from None
    return x, y, shape


def _operands(x, y, op: str):
    """Storage arrays of two QTensors in a common order, and whether that is NHWC."""
    x, y, _ = _checked_operands(x, y, op)
    if x.is_nhwc and y.is_nhwc and x.shape == y.shape:
        return x, y, x.nhwc(), y.nhwc(), True
    return x, y, x.int_repr(), y.int_repr(), False


def mul_multiplier(x_scale, y_scale, out_scale) -> np.float32:
    """mul's requantization multiplier fl(fl(x_scale * y_scale) * fl(1 / out_scale))."""
    return np.float32(x_scale) * np.float32(y_scale) * reciprocal(out_scale)


def add_codes(a, b, xq, yq, s, zp, dtype: QDType, relu: bool) -> np.ndarray:
    """add / add_relu of code arrays a, b (qparams xq, yq) to codes at (s, zp)."""
    v = dequant(a, *xq) + dequant(b, *yq)
    if relu:
        v = np.maximum(v, np.float32(0))
    return quant(v, s, zp, dtype)


def mul_codes(a, b, xq, yq, s, zp, dtype: QDType) -> np.ndarray:
    """Integer product of the centred codes, requantized by fl(fl(sx * sy) * fl(1 / s))."""
    acc = (a.astype(np.int32) - xq[1]) * (b.astype(np.int32) - yq[1])
    return requant_int(acc, mul_multiplier(xq[0], yq[0], s), zp, dtype)


def byte_codes(dtype: QDType) -> np.ndarray:
    """The 256 codes of an 8-bit dtype in the order of their bit patterns (table index)."""
    return np.arange(256, dtype=np.uint8).view(dtype.storage)


def binary_table(op: str, xq, yq, s, zp, dtype: QDType) -> np.ndarray:
    """The 65,536 output codes of op for every (a, b) pair, as bytes, index a << 8 | b."""
    codes = byte_codes(dtype)
    a, b = codes[:, None], codes[None, :]
    with np.errstate(over="ignore", invalid="ignore"):  # extreme scales: inf, saturated by quant
        out = (
            mul_codes(a, b, xq, yq, s, zp, dtype)
            if op == "mul"
            else add_codes(a, b, xq, yq, s, zp, dtype, op == "add_relu")
        )
    return np.ascontiguousarray(out).view(np.uint8).reshape(-1)


_KERNELS: dict[str, str | None] = {}


def _kernel(op: str):
    """The dispatched quint8 kernel's name for op, 'add' or 'mul'
    (cpu_info()['kernels'][op]), or None (lookup tables then)."""
    if op not in _KERNELS:
        _KERNELS[op] = _C.cpu_info()["kernels"][op]["name"]
    return _KERNELS[op]


def _nhwc_quint8(t) -> bool:
    """t is an NHWC-stored, C-contiguous, per-tensor quint8 QTensor: the layers' outputs."""
    return type(t) is QTensor and t._nhwc and t._dtype is quint8 and t._axis is None and t._q.flags.c_contiguous


def _channel_codes(big, small) -> np.ndarray | None:
    """small's codes as (N, C) when big is an NHWC quint8 activation (N, H, W, C) and small
    a per-tensor quint8 QTensor of logical shape (N, C, 1, 1) in either storage order (a
    squeeze-excitation block's scale); else None."""
    if not (_nhwc_quint8(big) and type(small) is QTensor and small._dtype is quint8 and small._axis is None):
        return None
    n, _, _, c = big._q.shape
    q = small._q
    if q.shape == ((n, 1, 1, c) if small._nhwc else (n, c, 1, 1)):
        return q.reshape(n, c)
    return None


def _per_channel(t: QTensor, big: QTensor) -> bool:
    """t is (N or 1, C, 1, 1) against big's (N, C, H, W): one code per (batch, channel)."""
    n, c, h, w = big.shape
    return t.shape in ((n, c, 1, 1), (1, c, 1, 1))


class QFunctional(Module):
    """Output qparams ``scale`` / ``zero_point`` come from the FloatFunctional's
    observer at convert (add_scalar / mul_scalar derive theirs from the input)."""

    # None when calibration ran only add_scalar / mul_scalar (see from_float).
    scale: float | None
    zero_point: int | None

    def __init__(self):
        super().__init__()
        self.scale = 1.0
        self.zero_point = 0

    def forward(self, x):
        raise RuntimeError(
            "QFunctional is not called directly: use its methods (add, add_relu, mul, cat, add_scalar, mul_scalar)"
        )

    def _out(self, dtype):
        """(scale, zero_point) of the output, validated once per value (.scale and
        .zero_point may be set freely, as in PyTorch)."""
        key = (self.scale, self.zero_point, dtype)
        cached = self.__dict__.get("_cache_out")
        if cached is not None and cached[0] == key:
            return cached[1]
        if self.scale is None:
            raise RuntimeError(
                "this QFunctional has no output qparams: during calibration its FloatFunctional ran "
                "only add_scalar/mul_scalar (which are not observed). Call add/mul/cat on the float "
                "model during calibration, or set .scale and .zero_point"
            )
        qparams = out_qparams(self.scale, self.zero_point, dtype)
        self.__dict__["_cache_out"] = (key, qparams)
        return qparams

    def _table(self, op: str, xq, yq, s, zp, dtype: QDType, n: int):
        """The cached lookup table of op at these qparams; None when n is too small to
        pay for building one."""
        key = (op, xq, yq, s, zp, dtype.name)
        tables = self.__dict__.setdefault("_cache_tables", {})
        table = tables.get(key)
        if table is None and n >= NATIVE_MIN_ELEMENTS:
            if len(tables) >= _TABLES_PER_MODULE:
                tables.clear()
            table = tables[key] = binary_table(op, xq, yq, s, zp, dtype)
        return table

    def _native(self, x, y, op: str):
        """op through a lookup table (exactly the NumPy path's codes; both operations
        are commutative, so the full operand goes first), or None for the NumPy path."""
        x, y, shape = _checked_operands(x, y, op)
        dtype = x.dtype
        s, zp = self._out(dtype)
        if x.shape == y.shape:
            big, small, channel = x, y, False
        elif x.ndim == y.ndim == 4 and tuple(shape) == tuple(x.shape) and _per_channel(y, x):
            big, small, channel = x, y, True
        elif x.ndim == y.ndim == 4 and tuple(shape) == tuple(y.shape) and _per_channel(x, y):
            big, small, channel = y, x, True
        else:
            return None
        if op == "mul" and dtype is quint8 and _kernel("mul") and (not channel or big.is_nhwc):
            # the dispatched SIMD kernel: the same integer product and fp32 multiply
            if channel:
                nb, c = big.shape[:2]
                b = np.broadcast_to(small.int_repr().reshape(small.shape[0], c), (nb, c))
                a, nhwc = big.nhwc(), True
            else:
                nhwc = x.ndim == 4 and (x.is_nhwc or y.is_nhwc)
                a, b = (x.nhwc(), y.nhwc()) if nhwc else (x.int_repr(), y.int_repr())
            out = _C.qmul_u8(
                u8_view(a),
                u8_view(b),
                big.q_scale(),
                big.q_zero_point(),
                small.q_scale(),
                small.q_zero_point(),
                s,
                zp,
                channel,
            )
            self.__dict__["_last_kernel"] = _kernel("mul")
            return QTensor._trusted(out, s, zp, dtype, nhwc)
        if not channel and op != "mul" and dtype is quint8 and _kernel("add"):
            # add / add_relu of quint8 codes: the dispatched SIMD kernel computes the
            # same arithmetic directly (fmaf is the float64 dequantize exactly)
            nhwc = x.ndim == 4 and (x.is_nhwc or y.is_nhwc)
            a, b = (x.nhwc(), y.nhwc()) if nhwc else (x.int_repr(), y.int_repr())
            out = _C.qadd_u8(
                u8_view(a),
                u8_view(b),
                x.q_scale(),
                x.q_zero_point(),
                y.q_scale(),
                y.q_zero_point(),
                s,
                zp,
                op == "add_relu",
            )
            self.__dict__["_last_kernel"] = _kernel("add")
            return QTensor._trusted(out, s, zp, dtype, nhwc)
        n = int(np.prod(shape))
        table = self._table(
            op, (big.q_scale(), big.q_zero_point()), (small.q_scale(), small.q_zero_point()), s, zp, dtype, n
        )
        if table is None:
            return None
        self.__dict__["_last_kernel"] = "lookup table"
        if channel:
            nb, c = big.shape[:2]
            b = np.broadcast_to(small.int_repr().reshape(small.shape[0], c), (nb, c))
            a = big.nhwc() if big.is_nhwc else big.int_repr()
            out = _C.lookup2_channel(u8_view(a), u8_view(b), table, big.is_nhwc)
            nhwc = big.is_nhwc
        else:
            nhwc = x.ndim == 4 and (x.is_nhwc or y.is_nhwc)
            a, b = (x.nhwc(), y.nhwc()) if nhwc else (x.int_repr(), y.int_repr())
            out = _C.lookup2(u8_view(a), u8_view(b), table)
        return QTensor._trusted(out.view(dtype.storage), s, zp, dtype, nhwc)

    def _add(self, x, y, relu: bool, op: str):
        if _nhwc_quint8(x) and _nhwc_quint8(y) and x._q.shape == y._q.shape and _kernel("add"):
            # a network's common case, without _native's general checks (microseconds
            # per call, which matter at batch 1): the same kernel and arguments
            s, zp = self._out(quint8)
            out = _C.qadd_u8(x._q, y._q, x._scale, x._zp, y._scale, y._zp, s, zp, relu)
            self.__dict__["_last_kernel"] = _kernel("add")
            return QTensor._trusted(out, s, zp, quint8, True)
        out = self._native(x, y, op)
        return self._add_numpy(x, y, relu, op) if out is None else out

    def _add_numpy(self, x, y, relu: bool, op: str):
        self.__dict__["_last_kernel"] = "numpy"
        x, y, a, b, nhwc = _operands(x, y, op)
        s, zp = self._out(x.dtype)
        out = add_codes(a, b, (x.q_scale(), x.q_zero_point()), (y.q_scale(), y.q_zero_point()), s, zp, x.dtype, relu)
        return wrap(out, s, zp, x.dtype, nhwc)

    def add(self, x, y):
        return self._add(x, y, False, "add")

    def add_relu(self, x, y):
        return self._add(x, y, True, "add_relu")

    def mul(self, x, y):
        """Integer product of the centred codes, requantized by fl(fl(sx * sy) * fl(1 / s))."""
        if _kernel("mul"):
            # an SE block's mul: _native's kernel and arguments without its general
            # checks (tens of microseconds per call at batch 1); the product commutes
            b = _channel_codes(x, y)
            big, small = (x, y) if b is not None else (y, x)
            b = b if b is not None else _channel_codes(y, x)
            if b is not None:
                s, zp = self._out(quint8)
                out = _C.qmul_u8(big._q, b, big._scale, big._zp, small._scale, small._zp, s, zp, True)
                self.__dict__["_last_kernel"] = _kernel("mul")
                return QTensor._trusted(out, s, zp, quint8, True)
        out = self._native(x, y, "mul")
        return self._mul_numpy(x, y) if out is None else out

    def _mul_numpy(self, x, y):
        self.__dict__["_last_kernel"] = "numpy"
        x, y, a, b, nhwc = _operands(x, y, "mul")
        s, zp = self._out(x.dtype)
        out = mul_codes(a, b, (x.q_scale(), x.q_zero_point()), (y.q_scale(), y.q_zero_point()), s, zp, x.dtype)
        return wrap(out, s, zp, x.dtype, nhwc)

    def cat(self, xs, dim: int = 0):
        """Dequantize, concatenate, quantize to (scale, zero_point); inputs already
        at those qparams are copied unchanged. Natively: each operand through a
        256-entry table of the same arithmetic (NHWC along channels: in one pass)."""
        if dim in (1, -3) and _kernel("add") and xs and all(_nhwc_quint8(x) for x in xs):
            # channels of NHWC quint8 tensors (Inception, ShuffleNet): cat_channels checks the
            # other dimensions agree; the same call as below, without the general checks
            s, zp = self._out(quint8)
            requant = [None if self._at_output(x, s, zp) else (x._scale, x._zp) for x in xs]
            out = _C.cat_channels([x._q for x in xs], [None] * len(xs), requant, s, zp)
            self.__dict__["_last_kernel"] = _kernel("add")
            return QTensor._trusted(out, s, zp, quint8, True)
        xs, dtype, s, zp, dim, nhwc = self._cat_args(xs, dim)
        same_nhw = nhwc and len({x.shape[:1] + x.shape[2:] for x in xs}) == 1
        if same_nhw and dtype is quint8 and _kernel("add"):
            # requantized by the add kernel with no second operand: quant(dequant(q))
            requant = [None if self._at_output(x, s, zp) else (x.q_scale(), x.q_zero_point()) for x in xs]
            out = _C.cat_channels([u8_view(x.nhwc()) for x in xs], [None] * len(xs), requant, s, zp)
            self.__dict__["_last_kernel"] = _kernel("add")
            return QTensor._trusted(out, s, zp, dtype, True)
        try:
            tables = [self._cat_table(x, s, zp, dtype, nhwc) for x in xs]
        except ValueError:  # a code's value overflows float32 (extreme scale): NumPy says
            return self._cat_numpy(xs, dim)  # whether this input's codes reach it
        self.__dict__["_last_kernel"] = "lookup table"
        if same_nhw:
            out = _C.cat_channels([u8_view(x.nhwc()) for x in xs], tables)
            return QTensor._trusted(out.view(dtype.storage), s, zp, dtype, True)
        parts = []
        for x, table in zip(xs, tables):
            q = x.nhwc() if nhwc else x.int_repr()
            parts.append(q if table is None else _C.lookup(u8_view(q), table).view(dtype.storage))
        return self._concatenate(parts, s, zp, dtype, dim, nhwc)

    def _cat_args(self, xs, dim):
        xs = [q_input(x, "QFunctional.cat") for x in xs]
        if not xs:
            raise ValueError("QFunctional.cat needs at least one QTensor")
        dtype = xs[0].dtype
        s, zp = self._out(dtype)
        for x in xs:
            if x.dtype is not dtype:
                raise TypeError(f"QFunctional.cat: mixed dtypes {dtype} and {x.dtype}")
        nd = xs[0].ndim
        dim = dim % nd if nd else 0
        nhwc = all(x.is_nhwc for x in xs) and dim == 1
        return xs, dtype, s, zp, dim, nhwc

    @staticmethod
    def _requant_codes(q, x, s, zp, dtype, nhwc):
        """An operand's codes at (s, zp), as the NumPy path computes them."""
        if nhwc:  # PyTorch's channels-last cat kernel: vectorized requantization
            return quant(dequant(q, x.q_scale(), x.q_zero_point()), s, zp, dtype)
        # PyTorch's general path: dequantize, then quantize_per_tensor
        return quantize_per_tensor(
            QTensor(q, x.q_scale(), x.q_zero_point(), dtype).dequantize(), s, zp, dtype
        ).int_repr()

    @staticmethod
    def _at_output(x, s, zp) -> bool:
        """x is at the output qparams already (cat copies it)."""
        return np.float32(x.q_scale()) == np.float32(s) and x.q_zero_point() == zp

    @classmethod
    def _cat_table(cls, x, s, zp, dtype, nhwc):
        """None (copy) when x is at (s, zp) already, else its 256 output codes as bytes."""
        if cls._at_output(x, s, zp):
            return None
        return np.ascontiguousarray(cls._requant_codes(byte_codes(dtype), x, s, zp, dtype, nhwc)).view(np.uint8)

    @staticmethod
    def _concatenate(parts, s, zp, dtype, dim, nhwc):
        try:
            out = np.concatenate(parts, axis=3 if nhwc else dim)
        except ValueError as e:
            raise ValueError(f"QFunctional.cat along dim {dim}: {e}") from None
        return wrap(out, s, zp, dtype, nhwc)

    def _cat_numpy(self, xs, dim: int = 0):
        self.__dict__["_last_kernel"] = "numpy"
        xs, dtype, s, zp, dim, nhwc = self._cat_args(xs, dim)
        parts = []
        for x in xs:
            q = x.nhwc() if nhwc else x.int_repr()
            if self._at_output(x, s, zp):
                parts.append(q)
            else:
                parts.append(self._requant_codes(q, x, s, zp, dtype, nhwc))
        return self._concatenate(parts, s, zp, dtype, dim, nhwc)

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
