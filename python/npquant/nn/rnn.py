"""Float recurrent layers (NumPy), mirroring torch.nn.LSTM / GRU / RNN and their cells.

The recurrence itself (``_RecurrentBase`` and ``_CellBase``) does not know how the
input and hidden projections are computed: each layer supplies them through
``_projections``. The float layers here use float32 matrix products; the dynamic
quantized ones (npquant.nn.quantized.dynamic) use npquant's int8 GEMM, or float16
weights, for exactly the same recurrence.

Like torch on CPU, a layer's input projection is computed once for the whole
sequence, then one hidden projection per time step. Packed sequences
(``PackedSequence``, ``pack_padded_sequence``) run each sequence for its own length.

The LSTM and GRU gates run the native cell kernels (``_C.lstm_cell_f32``,
``_C.gru_cell_f32``: the same bits on every ISA). A layer whose hidden projections are
packed int8 weights (``_native_hidden``) runs its whole time loop in C++
(``_C.rnn_sequence_dynamic``), with the same projections and kernels as the loop here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional, Union

import numpy as np

from .. import _C
from ..qtensor import QTensor
from .module import Module

__all__ = [
    "RNNBase",
    "LSTM",
    "GRU",
    "RNN",
    "RNNCellBase",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "pack_sequence",
    "unpack_sequence",
]

Proj = Callable[[np.ndarray], np.ndarray]
# (input projection, hidden projection, LSTM output projection or None) of one layer and direction
Projections = tuple[Proj, Proj, Optional[Proj]]
Hidden = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


# ---------------------------------------------------------------- packed sequences
class PackedSequence(NamedTuple):
    """torch.nn.utils.rnn.PackedSequence: ``data`` holds the time steps' rows one after
    another (step t has ``batch_sizes[t]`` rows, sequences sorted longest first);
    ``sorted_indices`` maps sorted position to original batch index."""

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: np.ndarray | None = None
    unsorted_indices: np.ndarray | None = None


def _lengths_array(lengths: object, batch: int) -> np.ndarray:
    arr = np.asarray(lengths.detach().numpy() if hasattr(lengths, "detach") else lengths)
    if arr.ndim != 1 or arr.shape[0] != batch:
        raise ValueError(
            f"lengths must be a 1-D sequence of {batch} integers (one per batch entry), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def pack_padded_sequence(
    input: np.ndarray, lengths: object, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Packs a padded (T, B, *) (or (B, T, *) with batch_first) array, as torch does."""
    x = _float_array(input, "pack_padded_sequence")
    if x.ndim < 2:
        raise ValueError(f"pack_padded_sequence expects (T, B, *) or (B, T, *) input, got shape {x.shape}")
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    steps, batch = x.shape[0], x.shape[1]
    lens = _lengths_array(lengths, batch)
    if batch == 0 or np.any(lens < 1) or np.any(lens > steps):
        raise ValueError(f"every length must be between 1 and the padded length {steps}, got {lens.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise ValueError(
                f"lengths must be sorted in decreasing order with enforce_sorted=True, got "
                f"{lens.tolist()}; sort the batch or pass enforce_sorted=False"
            )
        sorted_idx: np.ndarray | None = None
        unsorted_idx: np.ndarray | None = None
    else:
        sorted_idx = np.argsort(-lens, kind="stable")
        unsorted_idx = np.argsort(sorted_idx, kind="stable")
        x, lens = x[:, sorted_idx], lens[sorted_idx]
    batch_sizes = (lens[None, :] > np.arange(int(lens[0]))[:, None]).sum(axis=1).astype(np.int64)
    data = np.concatenate([x[t, :bs] for t, bs in enumerate(batch_sizes)], axis=0)
    return PackedSequence(np.ascontiguousarray(data), batch_sizes, sorted_idx, unsorted_idx)


def pad_sequence(sequences: Sequence[np.ndarray], batch_first: bool = False, padding_value: float = 0.0) -> np.ndarray:
    """Stacks arrays of shape (L_i, *) into (max L, B, *) (or (B, max L, *)), as torch's."""
    arrays = [_float_array(a, "pad_sequence") for a in sequences]
    if not arrays:
        raise ValueError("pad_sequence needs at least one sequence")
    tail = arrays[0].shape[1:]
    if any(a.ndim == 0 or a.shape[1:] != tail for a in arrays):
        raise ValueError(f"pad_sequence: every sequence must have shape (L, *{tail}), got {[a.shape for a in arrays]}")
    out = np.full((max(a.shape[0] for a in arrays), len(arrays)) + tail, padding_value, np.float32)
    for i, a in enumerate(arrays):
        out[: a.shape[0], i] = a
    return np.ascontiguousarray(np.swapaxes(out, 0, 1)) if batch_first else out


def pack_sequence(sequences: Sequence[np.ndarray], enforce_sorted: bool = True) -> PackedSequence:
    """Packs a list of (L_i, *) arrays, as torch.nn.utils.rnn.pack_sequence."""
    lengths = [int(np.shape(a)[0]) if np.ndim(a) else 0 for a in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed: PackedSequence) -> list:
    """The list of (L_i, *) arrays a PackedSequence holds, in the original batch order."""
    padded, lengths = pad_packed_sequence(packed)
    return [padded[:n, i].copy() for i, n in enumerate(lengths)]


def pad_packed_sequence(
    sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0, total_length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(padded array, lengths): the inverse of pack_padded_sequence, as torch's."""
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"pad_packed_sequence expects a PackedSequence, got {type(sequence).__name__}")
    padded, lens = _unpack(sequence, padding_value)
    if total_length is not None:
        if total_length < padded.shape[0]:
            raise ValueError(f"total_length={total_length} is shorter than the longest sequence ({padded.shape[0]})")
        extra = np.full((total_length - padded.shape[0],) + padded.shape[1:], padding_value, np.float32)
        padded = np.concatenate([padded, extra], axis=0)
    if sequence.unsorted_indices is not None:
        padded, lens = padded[:, sequence.unsorted_indices], lens[sequence.unsorted_indices]
    return (np.ascontiguousarray(np.swapaxes(padded, 0, 1)) if batch_first else padded), lens


def _check_batch_sizes(seq: PackedSequence) -> np.ndarray:
    bs = np.asarray(seq.batch_sizes)
    if bs.ndim != 1 or bs.size == 0 or bs.dtype.kind not in "iu" or np.any(bs < 1) or np.any(np.diff(bs) > 0):
        raise ValueError(
            "PackedSequence.batch_sizes must be a non-empty 1-D array of positive, "
            "non-increasing integers (make it with pack_padded_sequence)"
        )
    if seq.data.shape[0] != int(bs.sum()):
        raise ValueError(f"PackedSequence.data has {seq.data.shape[0]} rows but batch_sizes sum to {int(bs.sum())}")
    return bs.astype(np.int64)


def _unpack(seq: PackedSequence, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Time-major padded (T, B, *) array in sorted batch order, and the sorted lengths."""
    bs = _check_batch_sizes(seq)
    out = np.full((bs.size, int(bs[0])) + seq.data.shape[1:], fill, np.float32)
    start = 0
    for t, n in enumerate(bs):
        out[t, :n] = seq.data[start : start + n]
        start += int(n)
    lens = (bs[None, :] > np.arange(int(bs[0]))[:, None]).sum(axis=1).astype(np.int64)
    return out, lens


def _permutation(idx: np.ndarray | None, batch: int) -> np.ndarray | None:
    """A PackedSequence's sorted_indices / unsorted_indices, checked to be a permutation."""
    if idx is None:
        return None
    p = np.asarray(idx)
    if p.shape != (batch,) or p.dtype.kind not in "iu" or not np.array_equal(np.sort(p), np.arange(batch)):
        raise ValueError(f"PackedSequence indices must be a permutation of range({batch}), got {p!r}")
    return p.astype(np.int64)


def _pack_rows(padded: np.ndarray, batch_sizes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([padded[t, :n] for t, n in enumerate(batch_sizes)], axis=0))


# ---------------------------------------------------------------- input checks
def _float_array(x: object, layer: str) -> np.ndarray:
    if isinstance(x, QTensor):
        raise TypeError(f"{layer} takes float arrays, got a QTensor; dequantize it first")
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach") and type(x).__module__.startswith("torch"):
            raise TypeError(f"{layer} expects a numpy.ndarray, got a torch.Tensor: pass x.detach().numpy()")
        raise TypeError(f"{layer} expects a numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer} expects a float array (float32), got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def _state(x: object, shape: tuple[int, ...], what: str, layer: str) -> np.ndarray:
    a = _float_array(x, f"{layer} {what}")
    if a.shape != shape:
        raise ValueError(f"{layer}: {what} must have shape {shape}, got {a.shape}")
    return np.array(a, np.float32, order="C")  # a copy: the recurrence updates it in place


# ---------------------------------------------------------------- one time step
def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _step(
    mode: str, gi: np.ndarray, gh: np.ndarray, h: np.ndarray, c: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One cell update from the input and hidden projections (biases included), with
    torch's gate order: LSTM (i, f, g, o), GRU (r, z, n). LSTM and GRU run the native
    kernels (ukernels/f32-vlstm-*, f32-vgru-*: the same bits on every ISA)."""
    if mode == "LSTM":
        assert c is not None
        h_new, c_new = _C.lstm_cell_f32(_f32(gi), _f32(gh), _f32(c))
        return h_new, c_new
    if mode == "GRU":
        return _C.gru_cell_f32(_f32(gi), _f32(gh), _f32(h)), None
    pre = gi + gh
    return (np.tanh(pre, out=pre) if mode == "RNN_TANH" else np.maximum(pre, np.float32(0), out=pre)), None


def _run_direction(
    mode: str,
    gi: np.ndarray,
    h: np.ndarray,
    c: np.ndarray | None,
    batch_sizes: np.ndarray | None,
    reverse: bool,
    hh: Proj,
    hr: Proj | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Runs one layer in one direction over gi (T, B, gates), the precomputed input
    projection; h and c (B, *) are the initial states, updated in place for the rows
    of packed sequences that have ended."""
    steps, batch = gi.shape[0], gi.shape[1]
    out = np.zeros((steps, batch, h.shape[1]), np.float32)
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        bs = batch if batch_sizes is None else int(batch_sizes[t])
        if bs == batch:
            h_new, c_new = _step(mode, gi[t], hh(h), h, c)
            h = h_new if hr is None else hr(h_new)
            c = c_new
            out[t] = h
            continue
        h_new, c_new = _step(mode, gi[t, :bs], hh(h[:bs]), h[:bs], None if c is None else c[:bs])
        if hr is not None:
            h_new = hr(h_new)
        if h.base is not None or not h.flags.writeable:
            h = h.copy()
        h[:bs] = h_new
        if c is not None and c_new is not None:
            c = c.copy() if c.base is not None else c
            c[:bs] = c_new
        out[t, :bs] = h_new
    return out, h, c


# ---------------------------------------------------------------- whole layers
class _RecurrentBase(Module):
    """What the float and the dynamic quantized LSTM / GRU / RNN share: argument
    checks, layers and directions, packed sequences. Subclasses define _projections."""

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int

    def _init_config(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int,
    ) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size is only supported by LSTM, as in torch")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout, self.proj_size = float(dropout), int(proj_size)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        return self.proj_size or self.hidden_size

    def _layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self._out_size * self.num_directions

    def _projections(self, layer: int, direction: int) -> Projections:
        raise NotImplementedError

    def _native_hidden(self, layer: int, direction: int) -> tuple[_C.PackedLinearWeight, object] | None:
        """(hidden projection, LSTM output projection or None) as packed dynamic int8
        Linear weights when this layer's whole time loop can run in C++
        (_C.rnn_sequence_dynamic), else None (the loop runs here, step by step)."""
        return None

    def _name(self) -> str:
        return type(self).__name__

    # ---- forward
    def forward(
        self, input: np.ndarray | PackedSequence, hx: Hidden | None = None
    ) -> tuple[np.ndarray | PackedSequence, Hidden]:
        """(output, h_n) for GRU / RNN, (output, (h_n, c_n)) for LSTM; a PackedSequence
        input gives a PackedSequence output."""
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        name = self._name()
        x = _float_array(input, name)
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name} expects input of shape ({'B, T' if self.batch_first else 'T, B'}, "
                f"{self.input_size}) or unbatched (T, {self.input_size}), got {x.shape}"
            )
        if x.size == 0:
            raise ValueError(
                f"{name} got an empty input of shape {x.shape}; sequences need at least one "
                "step and the batch at least one entry"
            )
        unbatched = x.ndim == 2
        x = x[:, None, :] if unbatched else (np.swapaxes(x, 0, 1) if self.batch_first else x)
        h, c = self._initial_state(hx, x.shape[1], unbatched)
        out, h_n, c_n = self._run(np.ascontiguousarray(x), h, c, None)
        if unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        elif self.batch_first:
            out = np.ascontiguousarray(np.swapaxes(out, 0, 1))
        return out, ((h_n, c_n) if c_n is not None else h_n)

    def _forward_packed(self, seq: PackedSequence, hx: Hidden | None) -> tuple[PackedSequence, Hidden]:
        name = self._name()
        data = _float_array(seq.data, name)
        if data.ndim != 2 or data.shape[1] != self.input_size:
            raise ValueError(f"{name} expects PackedSequence data of shape (N, {self.input_size}), got {data.shape}")
        batch_sizes = _check_batch_sizes(seq)
        x, _ = _unpack(PackedSequence(data, batch_sizes))
        batch = x.shape[1]
        order, unorder = _permutation(seq.sorted_indices, batch), _permutation(seq.unsorted_indices, batch)
        h, c = self._initial_state(hx, batch, False)
        if order is not None:
            h, c = h[:, order], (None if c is None else c[:, order])
        out, h_n, c_n = self._run(x, h, c, batch_sizes)
        if unorder is not None:
            h_n, c_n = h_n[:, unorder], (None if c_n is None else c_n[:, unorder])
        packed = PackedSequence(_pack_rows(out, batch_sizes), seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices)
        return packed, ((h_n, c_n) if c_n is not None else h_n)

    def _initial_state(self, hx: Hidden | None, batch: int, unbatched: bool) -> tuple[np.ndarray, np.ndarray | None]:
        name, layers = self._name(), self.num_layers * self.num_directions
        h_shape = (layers, batch, self._out_size)
        c_shape = (layers, batch, self.hidden_size)
        lstm = self.mode == "LSTM"
        if hx is None:
            return np.zeros(h_shape, np.float32), (np.zeros(c_shape, np.float32) if lstm else None)
        if lstm and not (isinstance(hx, tuple) and len(hx) == 2):
            raise TypeError(f"{name} expects hx = (h_0, c_0), a tuple of two arrays, got {type(hx).__name__}")
        if not lstm and isinstance(hx, tuple):
            raise TypeError(f"{name} expects hx = h_0, one array (a tuple is for LSTM)")
        pairs = [(hx[0], h_shape, "h_0"), (hx[1], c_shape, "c_0")] if lstm else [(hx, h_shape, "h_0")]
        states = []
        for value, shape, what in pairs:
            want = (shape[0], shape[2]) if unbatched else shape
            states.append(_state(value, want, what, name))
            if unbatched:
                states[-1] = states[-1][:, None, :]
        return states[0], (states[1] if lstm else None)

    def _run(
        self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None, batch_sizes: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        steps, batch = x.shape[0], x.shape[1]
        h_n, c_n = np.empty_like(h0), (None if c0 is None else np.empty_like(c0))
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                ih, hh, hr = self._projections(layer, d)
                gi = ih(layer_in.reshape(steps * batch, -1)).reshape(steps, batch, -1)
                c0k = None if c0 is None else c0[k]
                native = self._native_hidden(layer, d)
                if native is not None:
                    out, h, c = _C.rnn_sequence_dynamic(
                        self.mode,
                        _f32(gi),
                        _f32(h0[k]),
                        None if c0k is None else _f32(c0k),
                        batch_sizes,
                        d == 1,
                        native[0],
                        native[1],
                    )
                else:
                    out, h, c = _run_direction(self.mode, gi, h0[k], c0k, batch_sizes, d == 1, hh, hr)
                h_n[k] = h
                if c_n is not None and c is not None:
                    c_n[k] = c
                outs.append(out)
            layer_in = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
        return layer_in, h_n, c_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity=relu"
        return s


def _float_linear(w: np.ndarray, b: np.ndarray | None) -> Proj:
    wt = w.T
    if b is None:
        return lambda x: x @ wt
    return lambda x: np.add(x @ wt, b, dtype=np.float32)


def _uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-bound, bound, shape).astype(np.float32)


class RNNBase(_RecurrentBase):
    """torch.nn.RNNBase: float32 parameters under torch's names (weight_ih_l0,
    weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0 with proj_size, and *_reverse
    for the backward direction). Dropout between layers is a training-time
    feature: npquant runs inference, so it is accepted and ignored."""

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
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"mode must be one of {sorted(GATES)}, got {mode!r}")
        if dtype is not None and np.dtype(dtype) != np.float32:  # type: ignore[call-overload]
            raise TypeError(f"npquant's float recurrent layers are float32, got dtype={dtype!r}")
        self._init_config(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size
        )
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(self.hidden_size)  # torch's init range
        gates = GATES[mode] * self.hidden_size
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                self.register_parameter("weight_ih" + sfx, _uniform(rng, bound, (gates, self._layer_input_size(layer))))
                self.register_parameter("weight_hh" + sfx, _uniform(rng, bound, (gates, self._out_size)))
                if self.bias:
                    self.register_parameter("bias_ih" + sfx, _uniform(rng, bound, (gates,)))
                    self.register_parameter("bias_hh" + sfx, _uniform(rng, bound, (gates,)))
                if self.proj_size:
                    self.register_parameter("weight_hr" + sfx, _uniform(rng, bound, (self.proj_size, self.hidden_size)))

    def layer_weights(
        self, layer: int, direction: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) of one layer and direction."""
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        p = self._parameters
        return (
            p["weight_ih" + sfx],
            p["weight_hh" + sfx],
            p.get("bias_ih" + sfx),
            p.get("bias_hh" + sfx),
            p.get("weight_hr" + sfx),
        )

    def _projections(self, layer: int, direction: int) -> Projections:
        w_ih, w_hh, b_ih, b_hh, w_hr = self.layer_weights(layer, direction)
        return (
            _float_linear(w_ih, b_ih),
            _float_linear(w_hh, b_hh),
            None if w_hr is None else _float_linear(w_hr, None),
        )


class LSTM(RNNBase):
    """torch.nn.LSTM: ``output, (h_n, c_n) = lstm(input, (h_0, c_0))``."""

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
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            rng,
        )


class GRU(RNNBase):
    """torch.nn.GRU: ``output, h_n = gru(input, h_0)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype, rng
        )


def _rnn_mode(nonlinearity: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


class RNN(RNNBase):
    """torch.nn.RNN (Elman): ``output, h_n = rnn(input, h_0)``, nonlinearity 'tanh' or 'relu'."""

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
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(
            _rnn_mode(nonlinearity),
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
            rng,
        )

    @property
    def nonlinearity(self) -> str:
        return "tanh" if self.mode == "RNN_TANH" else "relu"


# ---------------------------------------------------------------- cells
class _CellBase(Module):
    """What the float and dynamic quantized cells share; subclasses define _projections."""

    mode: str
    input_size: int
    hidden_size: int
    bias: bool

    def _init_config(self, mode: str, input_size: int, hidden_size: int, bias: bool) -> None:
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.mode, self.input_size, self.hidden_size, self.bias = mode, int(input_size), int(hidden_size), bool(bias)

    def _projections(self) -> tuple[Proj, Proj]:
        raise NotImplementedError

    def forward(self, input: np.ndarray, hx: Hidden | None = None) -> Hidden:
        name = type(self).__name__
        x = _float_array(input, name)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size or x.size == 0:
            raise ValueError(
                f"{name} expects input of shape (B, {self.input_size}) or unbatched ({self.input_size},), got {x.shape}"
            )
        unbatched = x.ndim == 1
        x2 = np.ascontiguousarray(x[None] if unbatched else x)
        shape = (self.hidden_size,) if unbatched else (x2.shape[0], self.hidden_size)
        lstm = self.mode == "LSTM"
        if hx is None:
            h, c = np.zeros(shape, np.float32), (np.zeros(shape, np.float32) if lstm else None)
        elif lstm:
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise TypeError(f"{name} expects hx = (h, c), a tuple of two arrays, got {type(hx).__name__}")
            h, c = _state(hx[0], shape, "h", name), _state(hx[1], shape, "c", name)
        else:
            if isinstance(hx, tuple):
                raise TypeError(f"{name} expects hx = h, one array (a tuple is for LSTMCell)")
            h, c = _state(hx, shape, "hx", name), None
        if unbatched:
            h, c = h[None], (None if c is None else c[None])
        ih, hh = self._projections()
        h_new, c_new = _step(self.mode, ih(x2), hh(np.ascontiguousarray(h)), h, c)
        if unbatched:
            h_new, c_new = h_new[0], (None if c_new is None else c_new[0])
        return (h_new, c_new) if c_new is not None else h_new

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        return s + (", nonlinearity=relu" if self.mode == "RNN_RELU" else "")


class RNNCellBase(_CellBase):
    """torch.nn.RNNCellBase: weight_ih (gates*H, I), weight_hh (gates*H, H), bias_ih, bias_hh."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"mode must be one of {sorted(GATES)}, got {mode!r}")
        if dtype is not None and np.dtype(dtype) != np.float32:  # type: ignore[call-overload]
            raise TypeError(f"npquant's float recurrent cells are float32, got dtype={dtype!r}")
        self._init_config(mode, input_size, hidden_size, bias)
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(self.hidden_size)
        gates = GATES[mode] * self.hidden_size
        self.register_parameter("weight_ih", _uniform(rng, bound, (gates, self.input_size)))
        self.register_parameter("weight_hh", _uniform(rng, bound, (gates, self.hidden_size)))
        self.register_parameter("bias_ih", _uniform(rng, bound, (gates,)) if self.bias else None)
        self.register_parameter("bias_hh", _uniform(rng, bound, (gates,)) if self.bias else None)

    def _projections(self) -> tuple[Proj, Proj]:
        return _float_linear(self.weight_ih, self.bias_ih), _float_linear(self.weight_hh, self.bias_hh)


class LSTMCell(RNNCellBase):
    """torch.nn.LSTMCell: ``h_1, c_1 = cell(input, (h_0, c_0))``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype, rng)


class GRUCell(RNNCellBase):
    """torch.nn.GRUCell: ``h_1 = cell(input, h_0)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype, rng)


class RNNCell(RNNCellBase):
    """torch.nn.RNNCell: ``h_1 = cell(input, h_0)``, nonlinearity 'tanh' or 'relu'."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: object = None,
        dtype: object = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(_rnn_mode(nonlinearity), input_size, hidden_size, bias, device, dtype, rng)

    @property
    def nonlinearity(self) -> str:
        return "tanh" if self.mode == "RNN_TANH" else "relu"
