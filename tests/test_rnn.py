"""Recurrent layers: npquant.nn.LSTM / GRU / RNN and cells against torch fp32, their
dynamic int8 and float16 versions against torch.ao.nn.quantized.dynamic, packed
sequences, save/load, and bad input."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import npquant
from npquant.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
)

from conftest import run_python, runnable_isas

torch = pytest.importorskip("torch")

# fp32 agreement: 1e-5 relative. The absolute floor is for outputs near zero, where
# the two float32 summation orders (OpenBLAS vs torch's MKL/oneDNN) differ by a few
# ulps of the *inputs* (measured max absolute difference 2e-7 on these shapes).
RTOL, ATOL = 1e-5, 1e-6

FLOAT = {
    "LSTM": (torch.nn.LSTM, npquant.nn.LSTM),
    "GRU": (torch.nn.GRU, npquant.nn.GRU),
    "RNN": (torch.nn.RNN, npquant.nn.RNN),
}
CELLS = {
    "LSTMCell": (torch.nn.LSTMCell, npquant.nn.LSTMCell),
    "GRUCell": (torch.nn.GRUCell, npquant.nn.GRUCell),
    "RNNCell": (torch.nn.RNNCell, npquant.nn.RNNCell),
}


def _np(t):
    if isinstance(t, tuple):
        return tuple(_np(x) for x in t)
    return t.detach().numpy()


def _torch(a):
    if a is None:
        return None
    if isinstance(a, tuple):
        return tuple(torch.from_numpy(x) for x in a)
    return torch.from_numpy(a)


def _twin(kind: str, table: dict, seed: int, *args, **kw):
    torch.manual_seed(seed)
    tm = table[kind][0](*args, **kw).eval()
    nm = table[kind][1](*args, **kw)
    nm.load_state_dict(tm.state_dict())
    return tm, nm


def _close(a, b) -> None:
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
        return
    assert a.shape == b.shape and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def _hidden(kind, layers, batch, hidden, proj, rng, unbatched=False):
    shape = (layers, hidden) if unbatched else (layers, batch, hidden)
    h = rng.standard_normal(shape[:-1] + (proj or hidden,)).astype(np.float32)
    if kind == "LSTM":
        return h, rng.standard_normal(shape).astype(np.float32)
    return h


CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=3, bidirectional=True, batch_first=True),
    dict(bias=False, batch_first=True),
]


# ------------------------------------------------------------------ float vs torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("cfg", range(len(CONFIGS)))
@pytest.mark.parametrize("with_h0", [False, True])
def test_float_matches_torch(kind, cfg, with_h0, rng):
    kw = CONFIGS[cfg]
    tm, nm = _twin(kind, FLOAT, cfg, 7, 12, **kw)
    assert list(nm.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((3, 6, 7) if kw.get("batch_first") else (6, 3, 7)).astype(np.float32)
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    hx = _hidden(kind, layers, 3, 12, 0, rng) if with_h0 else None
    with torch.no_grad():
        want = tm(_torch(x), _torch(hx))
    got = nm(x, hx)
    _close(got[0], _np(want[0]))
    _close(got[1], _np(want[1]))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_nonlinearity(nonlinearity, rng):
    tm, nm = _twin("RNN", FLOAT, 3, 5, 9, num_layers=2, nonlinearity=nonlinearity)
    assert nm.nonlinearity == nonlinearity
    x = rng.standard_normal((8, 2, 5)).astype(np.float32)
    with torch.no_grad():
        want = tm(_torch(x))
    _close(nm(x), _np(want))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("with_h0", [False, True])
def test_unbatched_matches_torch(kind, with_h0, rng):
    tm, nm = _twin(kind, FLOAT, 5, 4, 6, num_layers=2, bidirectional=True, batch_first=True)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    hx = _hidden(kind, 4, 1, 6, 0, rng, unbatched=True) if with_h0 else None
    with torch.no_grad():
        want = tm(_torch(x), _torch(hx))
    got = nm(x, hx)
    assert got[0].shape == (5, 12)
    _close(got, _np(want))


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("with_h0", [False, True])
def test_lstm_proj_size_matches_torch(with_h0, rng):
    tm, nm = _twin("LSTM", FLOAT, 9, 6, 10, num_layers=2, bidirectional=True, proj_size=4)
    assert list(nm.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    hx = (
        (rng.standard_normal((4, 3, 4)).astype(np.float32), rng.standard_normal((4, 3, 10)).astype(np.float32))
        if with_h0
        else None
    )
    with torch.no_grad():
        want = tm(_torch(x), _torch(hx))
    got = nm(x, hx)
    assert got[0].shape == (5, 3, 8) and got[1][0].shape == (4, 3, 4) and got[1][1].shape == (4, 3, 10)
    _close(got, _np(want))


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_h", [False, True])
def test_cells_match_torch(kind, unbatched, with_h, rng):
    tm, nm = _twin(kind, CELLS, 2, 7, 11)
    assert list(nm.state_dict()) == list(tm.state_dict())
    shape = (11,) if unbatched else (4, 11)
    x = rng.standard_normal(shape[:-1] + (7,)).astype(np.float32)
    hx = None
    if with_h:
        h = rng.standard_normal(shape).astype(np.float32)
        hx = (h, rng.standard_normal(shape).astype(np.float32)) if kind == "LSTMCell" else h
    with torch.no_grad():
        want = tm(_torch(x), _torch(hx))
    _close(nm(x, hx), _np(want))


def test_dropout_is_ignored_in_inference(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about dropout on its last layer
        tm, nm = _twin("LSTM", FLOAT, 1, 4, 5, num_layers=2, dropout=0.5)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    with torch.no_grad():
        want = tm(_torch(x))
    _close(nm(x), _np(want))


# ------------------------------------------------------------------ packed sequences
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_packed_matches_torch(kind, batch_first, with_h0, rng):
    from torch.nn.utils.rnn import pack_padded_sequence as t_pack
    from torch.nn.utils.rnn import pad_packed_sequence as t_pad

    tm, nm = _twin(kind, FLOAT, 4, 5, 8, num_layers=2, bidirectional=True, batch_first=batch_first)
    lengths = [3, 7, 1, 7, 5]
    x = rng.standard_normal((5, 7, 5) if batch_first else (7, 5, 5)).astype(np.float32)
    hx = _hidden(kind, 4, 5, 8, 0, rng) if with_h0 else None
    tp = t_pack(_torch(x), torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    npk = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    np.testing.assert_array_equal(npk.data, _np(tp.data))
    np.testing.assert_array_equal(npk.batch_sizes, _np(tp.batch_sizes))
    np.testing.assert_array_equal(npk.sorted_indices, _np(tp.sorted_indices))
    with torch.no_grad():
        t_out, t_h = tm(tp, _torch(hx))
    n_out, n_h = nm(npk, hx)
    assert isinstance(n_out, PackedSequence)
    _close(n_out.data, _np(t_out.data))
    _close(n_h, _np(t_h))
    padded, lens = pad_packed_sequence(n_out, batch_first=batch_first, total_length=8)
    t_padded, t_lens = t_pad(t_out, batch_first=batch_first, total_length=8)
    _close(padded, _np(t_padded))
    np.testing.assert_array_equal(lens, _np(t_lens))


def test_packed_sorted_equals_unpacked_for_full_lengths(rng):
    nm = npquant.nn.GRU(3, 4, bidirectional=True, rng=rng)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out, h = nm(pack_padded_sequence(x, [5, 5]))
    ref_out, ref_h = nm(x)
    np.testing.assert_array_equal(pad_packed_sequence(out)[0], ref_out)
    np.testing.assert_array_equal(h, ref_h)


def test_pack_errors():
    x = np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match="decreasing order"):
        pack_padded_sequence(x, [2, 4, 1])
    with pytest.raises(ValueError, match="between 1 and the padded length 4"):
        pack_padded_sequence(x, [5, 4, 1])
    with pytest.raises(ValueError, match="one per batch entry"):
        pack_padded_sequence(x, [4, 1])
    with pytest.raises(TypeError, match="integers"):
        pack_padded_sequence(x, [4.0, 2.0, 1.0])
    bad = PackedSequence(np.zeros((5, 2), np.float32), np.array([3, 3]))
    with pytest.raises(ValueError, match="batch_sizes sum to 6"):
        npquant.nn.LSTM(2, 3)(bad)
    with pytest.raises(ValueError, match="non-increasing"):
        npquant.nn.LSTM(2, 3)(PackedSequence(np.zeros((5, 2), np.float32), np.array([2, 3])))
    with pytest.raises(ValueError, match=r"permutation of range\(2\)"):
        npquant.nn.GRU(2, 3)(PackedSequence(np.zeros((4, 2), np.float32), np.array([2, 2]), np.array([0, 0])))
    with pytest.raises(ValueError, match=r"data of shape \(N, 2\)"):
        npquant.nn.GRU(2, 3)(PackedSequence(np.zeros((4, 3), np.float32), np.array([2, 2])))


# ------------------------------------------------------------------ dynamic int8 vs torch
def _torch_dynamic(tm, types, dtype):
    wrapper = torch.nn.Module()
    wrapper.m = tm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(wrapper, types, dtype=dtype).m


def _rel(a, ref) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def _outputs(y):
    """The arrays of a layer's result, flattened into one vector for error norms."""
    if isinstance(y, tuple):
        return np.concatenate([_outputs(v) for v in y])
    return y.reshape(-1)


# Measured on this file's shapes (torch 2.13, Zen 4 with AVX-512 VNNI; 3 seeds for the
# layers, one per cell): npquant's relative L2 error to fp32 is 0.53-0.58x torch's
# dynamic error (per-channel weights and full 8-bit activations vs torch's per-tensor
# weights and 7-bit reduce_range activations). Asserting <= 1.0x torch's (the issue's
# "no further from fp32") leaves a 1.7x margin over the worst measured ratio, for
# CPUs where torch takes another path.
NO_WORSE_THAN_TORCH = 1.0
# And absolutely: measured 0.44-1.01% relative error on these shapes; 3% bound.
MAX_REL_ERROR = 0.03


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize(
    "kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)], ids=["1layer", "2layer-bidir-bf"]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dynamic_int8_no_further_from_fp32_than_torch(kind, kw, seed):
    tm, nm = _twin(kind, FLOAT, seed, 48, 64, **kw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 24, 48) if kw.get("batch_first") else (24, 4, 48)).astype(np.float32)
    with torch.no_grad():
        ref = _outputs(_np(tm(_torch(x))))
        t_q = _outputs(_np(_torch_dynamic(tm, {FLOAT[kind][0]}, torch.qint8)(_torch(x))))
    qm = npquant.quantize_dynamic(nm, {FLOAT[kind][1]})
    assert type(qm) is getattr(npquant.nn.quantized.dynamic, kind)
    n_q = _outputs(qm(x))
    err_np, err_torch = _rel(n_q, ref), _rel(t_q, ref)
    assert err_np <= NO_WORSE_THAN_TORCH * err_torch, (err_np, err_torch)
    assert err_np < MAX_REL_ERROR
    assert err_np > 0  # it really ran the int8 path


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_dynamic_cells_no_further_from_fp32_than_torch(kind, rng):
    tm, nm = _twin(kind, CELLS, 5, 40, 56)
    x = rng.standard_normal((8, 40)).astype(np.float32)
    h = rng.standard_normal((8, 56)).astype(np.float32)
    hx = (h, rng.standard_normal((8, 56)).astype(np.float32)) if kind == "LSTMCell" else h
    with torch.no_grad():
        ref = _outputs(_np(tm(_torch(x), _torch(hx))))
        t_q = _outputs(_np(_torch_dynamic(tm, {CELLS[kind][0]}, torch.qint8)(_torch(x), _torch(hx))))
    qm = npquant.quantize_dynamic(nm, {CELLS[kind][1]})
    assert type(qm) is getattr(npquant.nn.quantized.dynamic, kind)
    err_np, err_torch = _rel(_outputs(qm(x, hx)), ref), _rel(t_q, ref)
    assert err_np <= NO_WORSE_THAN_TORCH * err_torch, (err_np, err_torch)
    assert 0 < err_np < MAX_REL_ERROR


def test_dynamic_projections_are_npquants_dynamic_linear(rng):
    """The recurrence around the int8 GEMM is the float one: a dynamic LSTM cell equals
    the float gate math applied to npquant.nn.quantized.dynamic.Linear outputs."""
    cell = npquant.quantize_dynamic(npquant.nn.LSTMCell(6, 5, rng=rng), {npquant.nn.LSTMCell})
    x = rng.standard_normal((3, 6)).astype(np.float32)
    h, c = rng.standard_normal((2, 3, 5)).astype(np.float32)
    g = cell.ih(x) + cell.hh(h)
    sig = 1 / (1 + np.exp(-g))
    c1 = sig[:, 5:10] * c + sig[:, :5] * np.tanh(g[:, 10:15])
    h1 = sig[:, 15:] * np.tanh(c1)
    got = cell(x, (h, c))
    np.testing.assert_allclose(got[0], h1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[1], c1, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("isa", runnable_isas())
def test_dynamic_lstm_bit_identical_under_every_isa(isa):
    """The int8 GEMM and the native gate kernels give the same bits under every ISA,
    for the dynamic LSTM and GRU and for the float LSTM's gates (its float32 products
    are NumPy's, the same in both processes)."""
    code = """
import numpy as np, npquant
rng = np.random.default_rng(3)
outs = []
for cls in (npquant.nn.LSTM, npquant.nn.GRU):
    m = cls(20, 24, num_layers=2, bidirectional=True, rng=rng)
    x = rng.standard_normal((9, 3, 20)).astype(np.float32)
    for model in (npquant.quantize_dynamic(m, {cls}), m):
        y, hc = model(x)
        outs += [y.ravel()] + [a.ravel() for a in (hc if isinstance(hc, tuple) else (hc,))]
print(np.concatenate(outs).view(np.uint32).sum(dtype=np.uint64))
"""
    runs = [run_python(code, env) for env in ({"NPQUANT_ISA": isa}, {"NPQUANT_ISA": "scalar"})]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stdout == runs[1].stdout


def _step_by_step(model):
    """The model with its C++ time loop switched off (the Python loop, one call per step)."""
    model._native_hidden = lambda layer, direction: None
    return model


@pytest.mark.parametrize(
    "kind, kw",
    [
        ("LSTM", {}),
        ("GRU", {}),
        ("LSTM", {"proj_size": 7}),
        ("LSTM", {"num_layers": 2, "bidirectional": True}),
        ("GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ],
)
def test_dynamic_time_loop_in_cpp_equals_the_python_loop(kind, kw, rng):
    """_C.rnn_sequence_dynamic runs the same projections and cell kernels as the step by
    step loop: the same bits, for padded and packed input (sequences ending at different
    steps, both directions) and given initial states."""
    m = getattr(npquant.nn, kind)(20, 24, rng=rng, **kw)
    q = npquant.quantize_dynamic(m, {type(m)})
    assert q._native_hidden(0, 0) is not None
    slow = _step_by_step(npquant.quantize_dynamic(m, {type(m)}))
    x = rng.standard_normal((3, 9, 20) if kw.get("batch_first") else (9, 3, 20)).astype(np.float32)
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    hx = _hidden(kind, layers, 3, 24, kw.get("proj_size", 0), rng)
    packed = pack_padded_sequence(x, [5, 9, 2], batch_first=kw.get("batch_first", False), enforce_sorted=False)
    for args in ((x,), (x, hx), (packed,), (packed, hx)):
        got, want = q(*args), slow(*args)
        if isinstance(got[0], PackedSequence):
            got, want = (got[0].data, got[1]), (want[0].data, want[1])
        np.testing.assert_array_equal(_outputs(got).view(np.uint32), _outputs(want).view(np.uint32))


def test_dynamic_time_loop_bad_input(rng):
    q = npquant.quantize_dynamic(npquant.nn.LSTM(6, 8, rng=rng), {npquant.nn.LSTM})
    hh = q.hh_l0._packed_params.packed
    gi = np.zeros((4, 2, 32), np.float32)
    h0, c0 = np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32)
    run = npquant._C.rnn_sequence_dynamic
    assert run("LSTM", gi, h0, c0, None, False, hh)[0].shape == (4, 2, 8)
    with pytest.raises(ValueError, match="mode"):
        run("RNN", gi, h0, c0, None, False, hh)
    with pytest.raises(ValueError, match="gate values"):
        run("LSTM", gi[:, :, :24].copy(), h0, c0, None, False, hh)
    with pytest.raises(ValueError, match="h_0"):
        run("LSTM", gi, np.zeros((3, 8), np.float32), c0, None, False, hh)
    with pytest.raises(ValueError, match="c_0"):
        run("LSTM", gi, h0, np.zeros((2, 7), np.float32), None, False, hh)
    with pytest.raises(ValueError, match="c_0"):
        run("LSTM", gi, h0, None, None, False, hh)
    gru_hh = npquant.quantize_dynamic(npquant.nn.GRU(6, 8, rng=rng), {npquant.nn.GRU}).hh_l0._packed_params.packed
    assert run("GRU", np.zeros((4, 2, 24), np.float32), h0, None, None, True, gru_hh)[2] is None
    with pytest.raises(ValueError, match="no cell state"):
        run("GRU", np.zeros((4, 2, 24), np.float32), h0, c0, None, False, gru_hh)
    with pytest.raises(ValueError, match="hidden projection"):
        run("GRU", np.zeros((4, 2, 24), np.float32), h0, None, None, False, hh)
    with pytest.raises(ValueError, match="batch_sizes"):
        run("LSTM", gi, h0, c0, np.array([2, 2, 1], np.int64), False, hh)
    with pytest.raises(ValueError, match="non-increasing"):
        run("LSTM", gi, h0, c0, np.array([1, 2, 2, 1], np.int64), False, hh)
    with pytest.raises(ValueError, match="non-increasing"):
        run("LSTM", gi, h0, c0, np.array([3, 2, 2, 1], np.int64), False, hh)
    with pytest.raises(ValueError, match="output projection"):
        run("LSTM", gi, h0, c0, None, False, hh, hh)
    with pytest.raises(TypeError, match="float32"):
        run("LSTM", gi.astype(np.float64), h0, c0, None, False, hh)
    with pytest.raises(ValueError, match="NaN"):
        run("LSTM", gi, np.full((2, 8), np.nan, np.float32), c0, None, False, hh)


# ------------------------------------------------------------------ float16 dynamic
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_float16_matches_torch_float16_dynamic(kind, rng):
    tm, nm = _twin(kind, FLOAT, 8, 16, 32, num_layers=2, bidirectional=True)
    x = rng.standard_normal((10, 3, 16)).astype(np.float32)
    with torch.no_grad():
        want = _np(_torch_dynamic(tm, {FLOAT[kind][0]}, torch.float16)(_torch(x)))
        ref = _np(tm(_torch(x)))
    qm = npquant.quantize_dynamic(nm, {FLOAT[kind][1]}, dtype=npquant.float16)
    assert qm.dtype is npquant.float16 and qm.ih_l0.weight().dtype == np.float16
    got = qm(x)
    # same float16-rounded weights, float32 math: only the summation order differs
    np.testing.assert_allclose(_outputs(got), _outputs(want), rtol=1e-5, atol=1e-6)
    assert _rel(_outputs(got), _outputs(ref)) > 0  # the weights really were rounded


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_float16_cells_match_torch(kind, rng):
    tm, nm = _twin(kind, CELLS, 4, 12, 20)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    with torch.no_grad():
        want = _np(_torch_dynamic(tm, {CELLS[kind][0]}, torch.float16)(_torch(x)))
    got = npquant.quantize_dynamic(nm, {CELLS[kind][1]}, dtype=npquant.float16)(x)
    np.testing.assert_allclose(_outputs(got), _outputs(want), rtol=1e-5, atol=1e-6)


def test_float16_linear_matches_torch(rng):
    torch.manual_seed(0)
    tl = torch.nn.Linear(33, 17)
    nl = npquant.nn.Linear(33, 17)
    nl.load_state_dict(tl.state_dict())
    x = rng.standard_normal((6, 33)).astype(np.float32)
    with torch.no_grad():
        want = _np(_torch_dynamic(tl, {torch.nn.Linear}, torch.float16)(_torch(x)))
    q = npquant.quantize_dynamic(nl, dtype=npquant.float16)
    assert isinstance(q, npquant.nn.quantized.dynamic.LinearFP16)
    np.testing.assert_allclose(q(x), want, rtol=1e-5, atol=1e-6)


def test_float16_refuses_weights_beyond_its_range():
    lin = npquant.nn.Linear(2, 2)
    lin.weight = np.array([[1e6, 0], [0, 1]], np.float32)
    with pytest.raises(ValueError, match="beyond float16's range"):
        npquant.quantize_dynamic(lin, dtype=npquant.float16)


def test_quantize_dynamic_dtype_errors():
    m = npquant.nn.LSTM(2, 3)
    with pytest.raises(TypeError, match="use dtype=npquant.float16"):
        npquant.quantize_dynamic(m, dtype=torch.float16)
    with pytest.raises(TypeError, match="npquant.qint8 .* npquant.float16 .* npquant.quint4x2"):
        npquant.quantize_dynamic(m, dtype=npquant.qint32)
    # quint8 is weight-only embeddings (as in torch): an LSTM stays float.
    assert type(npquant.quantize_dynamic(m, dtype=npquant.quint8)) is npquant.nn.LSTM


def test_quantize_dynamic_default_set_includes_recurrent_layers(rng):
    class LM(npquant.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = npquant.nn.LSTM(4, 6, rng=rng)
            self.cell = npquant.nn.GRUCell(4, 6, rng=rng)
            self.rnn2 = npquant.nn.RNN(4, 6, rng=rng)  # not in torch's default set
            self.dec = npquant.nn.Linear(6, 3, rng=rng)

    q = npquant.quantize_dynamic(LM())
    dyn = npquant.nn.quantized.dynamic
    assert (type(q.rnn), type(q.cell), type(q.rnn2), type(q.dec)) == (dyn.LSTM, dyn.GRUCell, npquant.nn.RNN, dyn.Linear)
    q2 = npquant.quantize_dynamic(LM(), {npquant.nn.RNN})
    assert type(q2.rnn2) is dyn.RNN and type(q2.rnn) is npquant.nn.LSTM


# ------------------------------------------------------------------ state dict, save / load
@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_dynamic_lstm_save_load_and_state_dict_round_trip(dtype, tmp_path, rng):
    m = npquant.nn.LSTM(5, 7, num_layers=2, bidirectional=True, proj_size=3, rng=rng)
    q = npquant.quantize_dynamic(m, {npquant.nn.LSTM}, dtype=getattr(npquant, dtype))
    x = rng.standard_normal((6, 2, 5)).astype(np.float32)
    want = q(x)
    path = tmp_path / "lstm.npq"
    npquant.save(q, path)
    back = npquant.load(path)
    assert type(back) is type(q) and back.dtype is q.dtype
    got = back(x)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][0], want[1][0])
    fresh = npquant.nn.quantized.dynamic.LSTM(
        5, 7, num_layers=2, bidirectional=True, proj_size=3, dtype=getattr(npquant, dtype)
    )
    fresh.load_state_dict(q.state_dict())
    np.testing.assert_array_equal(fresh(x)[0], want[0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_float_save_load(kind, rng):
    m = getattr(npquant.nn, kind)(3, 4, rng=rng)
    buf = io.BytesIO()
    npquant.save(m, buf)
    buf.seek(0)
    back = npquant.load(buf)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_outputs(back(x)), _outputs(m(x)))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("dynamic", [False, True])
def test_bad_input_gets_clear_errors(dynamic, rng):
    m = npquant.nn.LSTM(4, 5, num_layers=2, rng=rng)
    name = "LSTM"
    if dynamic:
        m = npquant.quantize_dynamic(m, {npquant.nn.LSTM})
        name = "dynamic quantized LSTM"
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    h = np.zeros((2, 2, 5), np.float32)
    with pytest.raises(ValueError, match=rf"{name} expects input of shape \(T, B, 4\)"):
        m(np.zeros((3, 2, 5), np.float32))
    with pytest.raises(ValueError, match="expects input of shape"):
        m(np.zeros((1, 3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="expects input of shape"):
        m(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="empty input"):
        m(np.zeros((0, 2, 4), np.float32))
    with pytest.raises(TypeError, match="float array"):
        m(np.zeros((3, 2, 4), np.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        m(torch.zeros(3, 2, 4))
    with pytest.raises(TypeError, match=r"hx = \(h_0, c_0\)"):
        m(x, h)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 2, 5\), got \(1, 2, 5\)"):
        m(x, (h[:1], h))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(2, 2, 5\), got \(2, 3, 5\)"):
        m(x, (h, np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 5\)"):  # unbatched input, batched h
        m(x[:, 0], (h, h))
    with pytest.raises(TypeError, match="float array"):
        m(x, (h.astype(np.int32), h))
    if dynamic:
        with pytest.raises(ValueError, match="NaN|Inf|finite"):
            m(np.full((3, 2, 4), np.nan, np.float32))


def test_bad_hidden_for_gru_and_cells(rng):
    gru = npquant.nn.GRU(3, 4, rng=rng)
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(TypeError, match="one array"):
        gru(x, (np.zeros((1, 1, 4), np.float32),) * 2)
    cell = npquant.nn.LSTMCell(3, 4, rng=rng)
    with pytest.raises(ValueError, match=r"LSTMCell expects input of shape \(B, 3\)"):
        cell(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"c must have shape \(2, 4\)"):
        cell(np.zeros((2, 3), np.float32), (np.zeros((2, 4), np.float32), np.zeros((4,), np.float32)))
    with pytest.raises(TypeError, match="QTensor"):
        cell(npquant.quantize_per_tensor(np.zeros((2, 3), np.float32), 0.1, 0, npquant.quint8))


def test_constructor_errors():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        npquant.nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="proj_size is only supported by LSTM"):
        npquant.nn.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        npquant.nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="npquant.qint8 or npquant.float16"):
        npquant.nn.quantized.dynamic.GRU(3, 4, dtype=npquant.quint8)
    with pytest.raises(TypeError, match="expects an npquant.nn.LSTM"):
        npquant.nn.quantized.dynamic.LSTM.from_float(npquant.nn.GRU(3, 4))


# ------------------------------------------------------------------ the LSTM LM example
def test_lstm_lm_example_small():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "lstm_lm.py")
    spec = importlib.util.spec_from_file_location("lstm_lm_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    r = example.main(
        ["--embed", "16", "--hidden", "32", "--steps", "40", "--seq", "24", "--eval", "16", "--repeat", "2"]
    )
    assert r["loss"][1] < r["loss"][0]  # it trained
    # npquant fp32 is torch fp32 (measured max |diff| 1e-6 on logits of magnitude ~5)
    assert r["npquant fp32"]["agreement"] == 1.0 and r["npquant fp32"]["max_abs"] < 1e-4
    # int8: measured agreement 1.0, cosine 0.999998, max |diff| 0.014 vs torch's 0.025-0.033
    q, tq = r["npquant int8"], r["torch int8"]
    assert q["agreement"] >= 0.95 and q["cosine"] > 0.9995
    assert 0 < q["max_abs"] <= tq["max_abs"]
    # float16: the same rounded weights as torch's float16 dynamic
    assert abs(r["npquant float16"]["max_abs"] - r["torch float16"]["max_abs"]) < 1e-4
    for b in (1, 8):
        lat = r[f"latency_b{b}"]
        assert all(lat[k] > 0 for k in ("torch fp32", "torch int8", "npquant fp32", "npquant int8"))


@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_dynamic_models_pickle_and_deepcopy(dtype, rng):
    import copy
    import pickle

    q = npquant.quantize_dynamic(
        npquant.nn.GRU(3, 5, num_layers=2, rng=rng), {npquant.nn.GRU}, dtype=getattr(npquant, dtype)
    )
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    want = q(x)[0]
    for back in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        np.testing.assert_array_equal(back(x)[0], want)


def test_compare_and_profile_show_recurrent_layers(rng):
    class LM(npquant.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = npquant.nn.LSTM(8, 16, num_layers=2, rng=rng)
            self.dec = npquant.nn.Linear(16, 5, rng=rng)

        def forward(self, x):
            return self.dec(self.rnn(x)[0])

    m = LM()
    q = npquant.quantize_dynamic(m, {npquant.nn.LSTM, npquant.nn.Linear})
    x = rng.standard_normal((6, 2, 8)).astype(np.float32)
    report = npquant.compare(m, q, x)
    row = report["rnn"]  # the LSTM as one layer: its output and final states
    assert row.quantized_type.endswith("dynamic.LSTM") and row.numel == 6 * 2 * 16 + 2 * (2 * 2 * 16)
    assert 30 < row.sqnr_db < 80
    names = [r.name for r in report]
    assert names == ["rnn", "dec"]
    prof = npquant.profile(q, x, repeat=2)
    assert "rnn " in str(prof) and "ih_l0" not in str(prof)
    lone = npquant.profile(q.rnn, x, repeat=2)  # a recurrent layer as the whole model
    assert "ih_l0" not in str(lone) and "LSTM" in str(lone)


def test_weight_qscheme_follows_the_qconfig(rng):
    m = npquant.nn.LSTM(6, 8, bidirectional=True, rng=rng)
    per_tensor = npquant.quantize_dynamic(m, {npquant.nn.LSTM})  # default_dynamic_qconfig, as torch
    per_channel = npquant.quantize_dynamic(m, {npquant.nn.LSTM: npquant.per_channel_dynamic_qconfig})
    direct = npquant.nn.quantized.dynamic.LSTM.from_float(m)  # no qconfig: per channel
    for q, scheme in (
        (per_tensor, "per_tensor_affine"),
        (per_channel, "per_channel_affine"),
        (direct, "per_channel_affine"),
    ):
        for child in ("ih_l0", "hh_l0", "ih_l0_reverse", "hh_l0_reverse"):
            assert getattr(q, child).weight().qscheme() == scheme
    np.testing.assert_array_equal(per_channel.ih_l0.weight().int_repr(), direct.ih_l0.weight().int_repr())
    x = rng.standard_normal((7, 3, 6)).astype(np.float32)
    ref = m(x)[0]
    err = {k: _rel(q(x)[0], ref) for k, q in (("tensor", per_tensor), ("channel", per_channel))}
    assert 0 < err["channel"] < 0.02 and 0 < err["tensor"] < 0.03


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dynamic_weights_equal_torchs(kind):
    """Same qconfig, same int8 weights and scales as torch's quantize_dynamic: the
    output difference is the activations' quantization (torch: 7-bit reduce_range)."""
    tm, nm = _twin(kind, FLOAT, 11, 13, 20, num_layers=2, bidirectional=True)
    tq = _torch_dynamic(tm, {FLOAT[kind][0]}, torch.qint8)
    nq = npquant.quantize_dynamic(nm, {FLOAT[kind][1]})
    torch_weights = tq._weight_bias()["weight"]
    assert len(torch_weights) == 8
    for name, tw in torch_weights.items():
        qw = getattr(nq, name.replace("weight_", "")).weight()
        np.testing.assert_array_equal(qw.int_repr(), tw.int_repr().numpy())
        assert qw.q_scale() == tw.q_scale() and qw.q_zero_point() == tw.q_zero_point() == 0
    for name, tb in tq._weight_bias()["bias"].items():
        np.testing.assert_array_equal(getattr(nq, name.replace("bias_", "")).bias(), tb.detach().numpy())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_torch_dynamic_state_dict_loads(kind, dtype, rng, tmp_path):
    """torch's own dynamic LSTM / GRU state dict (TorchScript CellParamsBase objects)
    loads into npquant's dynamic layer: the same weights, outputs as close to fp32 as
    torch's (float16: equal to torch's to float32 rounding); also through the flat NumPy
    form, saved and loaded without torch."""
    tm, _ = _twin(kind, FLOAT, 12, 10, 16, num_layers=2, bidirectional=True)
    tq = _torch_dynamic(tm, {FLOAT[kind][0]}, getattr(torch, dtype))
    sd = tq.state_dict()
    assert all(type(v).__name__ == "ScriptObject" for v in sd.values())
    nq = getattr(npquant.nn.quantized.dynamic, kind)(10, 16, num_layers=2, bidirectional=True, dtype=dtype)
    nq.load_state_dict(sd)
    x = rng.standard_normal((6, 3, 10)).astype(np.float32)
    with torch.no_grad():
        want, ref = _np(tq(_torch(x))), _np(tm(_torch(x)))
    got = nq(x)
    if dtype == "float16":
        np.testing.assert_allclose(_outputs(got), _outputs(want), rtol=1e-5, atol=1e-6)
    else:
        for name, tw in tq._weight_bias()["weight"].items():
            qw = getattr(nq, name.replace("weight_", "")).weight()
            np.testing.assert_array_equal(qw.int_repr(), tw.int_repr().numpy())
            assert qw.q_scale() == tw.q_scale()
        assert 0 < _rel(_outputs(got), _outputs(ref)) <= NO_WORSE_THAN_TORCH * _rel(_outputs(want), _outputs(ref))
    np.savez(tmp_path / "sd.npz", **npquant.interop.state_dict_to_numpy(sd))
    again = getattr(npquant.nn.quantized.dynamic, kind)(10, 16, num_layers=2, bidirectional=True, dtype=dtype)
    again.load_state_dict(np.load(tmp_path / "sd.npz"))
    np.testing.assert_array_equal(_outputs(again(x)), _outputs(got))


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_torch_dynamic_cell_state_dict_loads(kind, rng):
    tm, _ = _twin(kind, CELLS, 5, 6, 9)
    tq = _torch_dynamic(tm, {CELLS[kind][0]}, torch.qint8)
    nq = getattr(npquant.nn.quantized.dynamic, kind)(6, 9)
    nq.load_state_dict(tq.state_dict())
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        want, ref = _np(tq(_torch(x))), _np(tm(_torch(x)))
    assert 0 < _rel(_outputs(nq(x)), _outputs(ref)) <= NO_WORSE_THAN_TORCH * _rel(_outputs(want), _outputs(ref))


def test_torch_dynamic_state_dict_errors():
    tm, _ = _twin("LSTM", FLOAT, 1, 4, 5)
    sd8 = _torch_dynamic(tm, {torch.nn.LSTM}, torch.qint8).state_dict()
    sd16 = _torch_dynamic(tm, {torch.nn.LSTM}, torch.float16).state_dict()
    with pytest.raises(ValueError, match="dtype=npquant.qint8"):
        npquant.nn.quantized.dynamic.LSTM(4, 5, dtype=npquant.float16).load_state_dict(sd8)
    with pytest.raises(ValueError, match="dtype=npquant.float16"):
        npquant.nn.quantized.dynamic.LSTM(4, 5).load_state_dict(sd16)
    with pytest.raises(KeyError, match="missing"):  # torch's one layer into a 2-layer model
        npquant.nn.quantized.dynamic.LSTM(4, 5, num_layers=2).load_state_dict(sd8)
    cell = _torch_dynamic(_twin("LSTMCell", CELLS, 1, 4, 5)[0], {torch.nn.LSTMCell}, torch.qint8)
    with pytest.raises(ValueError, match="dtype=npquant.qint8"):
        npquant.nn.quantized.dynamic.LSTMCell(4, 5, dtype=npquant.float16).load_state_dict(cell.state_dict())
    # a TorchScript object npquant does not read: a clear TypeError, not a crash
    script = torch.jit.script(torch.nn.Linear(2, 2))._c
    with pytest.raises(TypeError, match="cannot read"):
        npquant.nn.quantized.dynamic.LSTM(4, 5).load_state_dict({"_all_weight_values.0.param": script})


def test_float16_spellings_and_unsupported_mapping(rng):
    lin = npquant.nn.Linear(3, 2, rng=rng)
    for spelling in (npquant.float16, np.float16, np.dtype(np.float16), "float16"):
        assert isinstance(npquant.quantize_dynamic(lin, dtype=spelling), npquant.nn.quantized.dynamic.LinearFP16)
    with pytest.raises(TypeError, match="has no from_float\\(mod, dtype=...\\)"):
        npquant.quantize_dynamic(
            npquant.nn.ReLU(),
            {npquant.nn.ReLU},
            dtype=npquant.float16,
            mapping={npquant.nn.ReLU: npquant.nn.quantized.ReLU},
        )


@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_pack_sequence_and_friends_match_torch(enforce_sorted, rng):
    from torch.nn.utils import rnn as trnn

    lens = [5, 4, 2] if enforce_sorted else [2, 5, 4]
    seqs = [rng.standard_normal((n, 3)).astype(np.float32) for n in lens]
    tp = trnn.pack_sequence([torch.from_numpy(a) for a in seqs], enforce_sorted=enforce_sorted)
    npk = pack_sequence(seqs, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(npk.data, _np(tp.data))
    np.testing.assert_array_equal(npk.batch_sizes, _np(tp.batch_sizes))
    for a, b in zip(unpack_sequence(npk), trnn.unpack_sequence(tp)):
        np.testing.assert_array_equal(a, _np(b))
    np.testing.assert_array_equal(
        pad_sequence(seqs, batch_first=True, padding_value=-1.0),
        _np(trnn.pad_sequence([torch.from_numpy(a) for a in seqs], batch_first=True, padding_value=-1.0)),
    )
    with pytest.raises(ValueError, match="every sequence must have shape"):
        pad_sequence([np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])
