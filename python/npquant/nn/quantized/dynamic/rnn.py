"""Dynamic quantized recurrent layers: LSTM, GRU, RNN and their cells.

Float in, float out, as torch.ao.nn.quantized.dynamic's. Each input projection
(x @ W_ih.T + b_ih) and hidden projection (h @ W_hh.T + b_hh) is a dynamic
quantized Linear held as a child module: qint8 weights (per output channel by
default, or the qconfig's weight observer), activations quantized per call with
PyTorch's choose_qparams rule over the full 8-bit range, npquant's exact int8 GEMM.
The input projection of a layer runs once over the whole sequence (one set of
activation qparams), the hidden projection once per time step, as torch does on
CPU. With ``dtype=npquant.float16`` the children are float16-weight Linears instead.

The gate arithmetic between the projections is the float recurrence of
npquant.nn.rnn, shared with the float layers; int8 LSTM and GRU layers run the time
loop in C++ (``_C.rnn_sequence_dynamic``) with the same projections and cell kernels.

State dict: the children's keys (``ih_l0._packed_params._packed_params``, ...).
torch's own dynamic state dicts load too: its LSTM / GRU keep each layer and
direction's weights in a TorchScript ``CellParamsBase`` at ``_all_weight_values.{k}.param``,
its cells in ``LinearPackedParamsBase`` objects at ``_packed_weight_ih`` / ``_hh``;
npquant.interop reads them through ``__getstate__`` (torch is never imported) and
``_adapt_state_dict`` files them under the children's keys.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from .... import _C
from ...._dtypes import float16, qint8
from ... import rnn as frnn
from .._convert import quantize_weight, weight_observer
from .._packed import quantize_weight_symmetric
from .linear import Linear
from .linear_fp16 import LinearFP16

__all__ = ["RNNBase", "LSTM", "GRU", "RNN", "RNNCellBase", "LSTMCell", "GRUCell", "RNNCell"]

DynLinear = Union[Linear, LinearFP16]


def _check_dtype(dtype: object) -> object:
    if dtype is qint8 or dtype == "qint8":
        return qint8
    if dtype is float16 or dtype == "float16":
        return float16
    hint = " (torch's dtypes map to npquant.qint8 / npquant.float16)" if "torch" in repr(dtype) else ""
    raise TypeError(f"dynamic recurrent layers take dtype=npquant.qint8 or npquant.float16, got {dtype!r}{hint}")


def _empty_linear(in_features: int, out_features: int, bias: bool, dtype: object) -> DynLinear:
    if dtype is float16:
        return LinearFP16(in_features, out_features, bias)
    return Linear(in_features, out_features, bias)


def _quantized_linear(
    weight: np.ndarray, bias: np.ndarray | None, dtype: object, observer_of: object, per_channel: bool
) -> DynLinear:
    """A dynamic Linear (or float16 Linear) holding these float weights."""
    out_features, in_features = weight.shape
    if dtype is float16:
        q16 = LinearFP16(in_features, out_features, bias is not None)
        q16.set_weight_bias(weight, bias)
        return q16
    if observer_of is not None:
        qw = quantize_weight(weight, weight_observer(observer_of))
    else:
        qw = quantize_weight_symmetric(weight, per_channel=per_channel)
    q = Linear(in_features, out_features, bias is not None)
    q.set_weight_bias(qw, bias)
    return q


def _projection(lin: DynLinear) -> frnn.Proj:
    """x (rows, in_features) float32 -> (rows, out_features): the child's kernel, called
    without its per-call argument checks (the recurrence already made x right)."""
    if isinstance(lin, LinearFP16):
        return lin.matmul()
    packed = lin._packed_params.packed
    return lambda x: _C.linear_dynamic(np.ascontiguousarray(x), packed, False)


def _dtype_of(mod: object, dtype: object) -> object:
    if dtype is not None:
        return _check_dtype(dtype)
    qconfig = getattr(mod, "qconfig", None)
    wdtype = getattr(getattr(qconfig, "weight", None), "dtype", None) if qconfig is not None else None
    return float16 if wdtype is float16 else qint8


def _has_weight_observer(mod: object) -> bool:
    qconfig = getattr(mod, "qconfig", None)
    return qconfig is not None and getattr(qconfig, "weight", None) is not None


def _torch_kind(dtype: object) -> str:
    return "quantized_fp16" if dtype is float16 else "quantized_dynamic"


def _file_packed(sd: dict[str, Any], key: str, child: DynLinear, prefix: str, pair: Any, dtype: object) -> None:
    """Puts torch's packed (weight, bias) of one projection under the child's keys (its
    other entries, such as the unused output qparams, are kept as they are)."""
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise TypeError(f"state dict entry {key!r} must hold a packed (weight, bias) from torch")
    w = pair[0]
    if isinstance(w, np.ndarray) != (dtype is float16):
        have = "float16" if isinstance(w, np.ndarray) else "int8"
        want = "float16" if dtype is float16 else "qint8"
        raise ValueError(
            f"state dict entry {key!r} holds torch's {have} dynamic weights but this layer is {want}: "
            f"quantize the float model with dtype=npquant.{'float16' if have == 'float16' else 'qint8'} "
            "and load again"
        )
    for k, v in child.state_dict(prefix).items():
        sd.setdefault(k, v)
    sd[prefix + "_packed_params._packed_params"] = pair


class RNNBase(frnn._RecurrentBase):
    """Dynamic quantized torch.nn.RNNBase. Children per layer and direction:
    ``ih_l{k}`` (input projection), ``hh_l{k}`` (hidden projection), ``hr_l{k}``
    (LSTM output projection with proj_size), with ``_reverse`` for the backward
    direction."""

    _report_as_leaf = True  # npquant.compare / npquant.profile show the layer, not its projections

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        dtype: object = qint8,
    ):
        super().__init__()
        if mode not in frnn.GATES:
            raise ValueError(f"mode must be one of {sorted(frnn.GATES)}, got {mode!r}")
        self._dtype_name = "float16" if _check_dtype(dtype) is float16 else "qint8"
        self._init_config(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size
        )
        gates = frnn.GATES[mode] * self.hidden_size
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                sfx = self._suffix(layer, d)
                setattr(self, "ih" + sfx, _empty_linear(self._layer_input_size(layer), gates, self.bias, self.dtype))
                setattr(self, "hh" + sfx, _empty_linear(self._out_size, gates, self.bias, self.dtype))
                if self.proj_size:
                    setattr(self, "hr" + sfx, _empty_linear(self.hidden_size, self.proj_size, False, self.dtype))

    @property
    def dtype(self) -> object:
        """npquant.qint8 or npquant.float16: how the weights are stored."""
        return float16 if self._dtype_name == "float16" else qint8

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _name(self) -> str:
        return f"dynamic quantized {type(self).__name__}"

    def _projections(self, layer: int, direction: int) -> frnn.Projections:
        sfx = self._suffix(layer, direction)
        hr = self._modules.get("hr" + sfx)
        return (
            _projection(self._modules["ih" + sfx]),
            _projection(self._modules["hh" + sfx]),
            None if hr is None else _projection(hr),
        )

    def _native_hidden(self, layer: int, direction: int) -> tuple[_C.PackedLinearWeight, object] | None:
        """int8 LSTM and GRU layers run their time loop in C++ (_C.rnn_sequence_dynamic):
        the same hidden projections (_C.linear_dynamic's) and cell kernels as the
        step-by-step loop, without a Python call per step."""
        if self.mode not in ("LSTM", "GRU"):
            return None
        sfx = self._suffix(layer, direction)
        hh, hr = self._modules["hh" + sfx], self._modules.get("hr" + sfx)
        if not isinstance(hh, Linear) or (hr is not None and not isinstance(hr, Linear)):
            return None  # float16 weights: the NumPy float32 product, step by step
        return hh._packed_params.packed, None if hr is None else hr._packed_params.packed

    def _adapt_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """torch's dynamic LSTM / GRU state dict: ``_all_weight_values.{k}.param`` (k =
        layer * directions + direction, read by npquant.interop as ``(kind, w_ih, b_ih,
        w_hh, b_hh)``) becomes the ``ih`` / ``hh`` children's entries."""
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                key = f"{prefix}_all_weight_values.{layer * self.num_directions + d}.param"
                if key not in state_dict:
                    continue
                v = state_dict.pop(key)
                if not (isinstance(v, tuple) and len(v) == 5 and isinstance(v[0], str)):
                    raise TypeError(
                        f"state dict entry {key!r} must be torch's dynamic cell parameters "
                        f"(a TorchScript CellParamsBase), got {type(v).__name__}"
                    )
                if v[0] != _torch_kind(self.dtype):
                    raise ValueError(
                        f"state dict entry {key!r} holds torch's {v[0]!r} weights but this layer is "
                        f"{self._dtype_name}: quantize the float model with dtype=npquant."
                        f"{'float16' if v[0] == 'quantized_fp16' else 'qint8'} and load again"
                    )
                sfx = self._suffix(layer, d)
                for name, pair in (("ih", (v[1], v[2])), ("hh", (v[3], v[4]))):
                    child = self._modules[name + sfx]
                    _file_packed(state_dict, key, child, f"{prefix}{name}{sfx}.", pair, self.dtype)

    @classmethod
    def from_float(cls, mod: frnn.RNNBase, dtype: object = None, per_channel: bool = True) -> RNNBase:
        """Quantizes a float npquant.nn.LSTM / GRU / RNN: weights to qint8 (the weight
        observer of ``mod.qconfig`` when set, else symmetric per output channel), or to
        float16 with ``dtype=npquant.float16``."""
        want = {LSTM: frnn.LSTM, GRU: frnn.GRU, RNN: frnn.RNN}.get(cls, frnn.RNNBase)
        if not isinstance(mod, want):
            raise TypeError(
                f"{cls.__name__}.from_float expects an npquant.nn.{want.__name__}, got {type(mod).__name__}"
            )
        dt = _dtype_of(mod, dtype)
        q = cls.__new__(cls)
        RNNBase.__init__(
            q,
            mod.mode,
            mod.input_size,
            mod.hidden_size,
            mod.num_layers,
            mod.bias,
            mod.batch_first,
            mod.dropout,
            mod.bidirectional,
            mod.proj_size,
            dt,
        )
        observer_of = mod if _has_weight_observer(mod) else None
        for layer in range(mod.num_layers):
            for d in range(mod.num_directions):
                w_ih, w_hh, b_ih, b_hh, w_hr = mod.layer_weights(layer, d)
                sfx = cls._suffix(layer, d)
                setattr(q, "ih" + sfx, _quantized_linear(w_ih, b_ih, dt, observer_of, per_channel))
                setattr(q, "hh" + sfx, _quantized_linear(w_hh, b_hh, dt, observer_of, per_channel))
                if w_hr is not None:
                    setattr(q, "hr" + sfx, _quantized_linear(w_hr, None, dt, observer_of, per_channel))
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dtype={self._dtype_name}"


class LSTM(RNNBase):
    """Dynamic quantized torch.nn.LSTM: ``output, (h_n, c_n) = lstm(input, (h_0, c_0))``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        dtype: object = qint8,
    ):
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, dtype
        )


class GRU(RNNBase):
    """Dynamic quantized torch.nn.GRU: ``output, h_n = gru(input, h_0)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: object = qint8,
    ):
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, dtype
        )


class RNN(RNNBase):
    """Dynamic quantized torch.nn.RNN (tanh or relu). torch has no dynamic RNN; npquant
    quantizes it like LSTM and GRU."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: object = qint8,
    ):
        super().__init__(
            frnn._rnn_mode(nonlinearity),
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            dtype,
        )


# ---------------------------------------------------------------- cells
class RNNCellBase(frnn._CellBase):
    """Dynamic quantized cell: children ``ih`` and ``hh`` (dynamic Linears with the biases)."""

    _report_as_leaf = True

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, dtype: object = qint8):
        super().__init__()
        if mode not in frnn.GATES:
            raise ValueError(f"mode must be one of {sorted(frnn.GATES)}, got {mode!r}")
        self._dtype_name = "float16" if _check_dtype(dtype) is float16 else "qint8"
        self._init_config(mode, input_size, hidden_size, bias)
        gates = frnn.GATES[mode] * self.hidden_size
        self.ih = _empty_linear(self.input_size, gates, self.bias, self.dtype)
        self.hh = _empty_linear(self.hidden_size, gates, self.bias, self.dtype)

    @property
    def dtype(self) -> object:
        """npquant.qint8 or npquant.float16: how the weights are stored."""
        return float16 if self._dtype_name == "float16" else qint8

    def _projections(self) -> tuple[frnn.Proj, frnn.Proj]:
        return _projection(self.ih), _projection(self.hh)

    def _adapt_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """torch's dynamic cell state dict: ``_packed_weight_ih`` / ``_packed_weight_hh``
        (TorchScript LinearPackedParamsBase, read as ``(weight, bias)``) become the
        ``ih`` / ``hh`` children's entries."""
        for name in ("ih", "hh"):
            key = f"{prefix}_packed_weight_{name}"
            if key in state_dict:
                _file_packed(state_dict, key, self._modules[name], f"{prefix}{name}.", state_dict.pop(key), self.dtype)

    @classmethod
    def from_float(cls, mod: frnn.RNNCellBase, dtype: object = None, per_channel: bool = True) -> RNNCellBase:
        want = {LSTMCell: frnn.LSTMCell, GRUCell: frnn.GRUCell, RNNCell: frnn.RNNCell}.get(cls, frnn.RNNCellBase)
        if not isinstance(mod, want):
            raise TypeError(
                f"{cls.__name__}.from_float expects an npquant.nn.{want.__name__}, got {type(mod).__name__}"
            )
        dt = _dtype_of(mod, dtype)
        q = cls.__new__(cls)
        RNNCellBase.__init__(q, mod.mode, mod.input_size, mod.hidden_size, mod.bias, dt)
        observer_of = mod if _has_weight_observer(mod) else None
        q.ih = _quantized_linear(mod.weight_ih, mod.bias_ih, dt, observer_of, per_channel)
        q.hh = _quantized_linear(mod.weight_hh, mod.bias_hh, dt, observer_of, per_channel)
        return q

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dtype={self._dtype_name}"


class LSTMCell(RNNCellBase):
    """Dynamic quantized torch.nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: object = qint8):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype)


class GRUCell(RNNCellBase):
    """Dynamic quantized torch.nn.GRUCell."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: object = qint8):
        super().__init__("GRU", input_size, hidden_size, bias, dtype)


class RNNCell(RNNCellBase):
    """Dynamic quantized torch.nn.RNNCell (tanh or relu)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", dtype: object = qint8
    ):
        super().__init__(frnn._rnn_mode(nonlinearity), input_size, hidden_size, bias, dtype)
