"""npquant.save / npquant.load: round trips, other ISAs, damaged and hostile files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.serialization import FORMAT_VERSION, ModelFileError

from conftest import LAUNCHER


class MLP(nn.Module):
    """A user-defined float model (saved by class name, loaded with custom_modules)."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.fc1 = nn.Linear(24, 32, rng=rng)
        self.fc2 = nn.Linear(32, 5, bias=False, rng=rng)
        self.gain = np.float32(1.5)
        self.sizes = (24, 32, 5)

    def forward(self, x):
        return self.fc2(np.maximum(self.fc1(x), 0) * self.gain)


class QuantMLP(nn.Module):
    """Static int8: quantize input, Linear+ReLU, Linear, dequantize."""

    def __init__(self):
        super().__init__()
        self.in_scale, self.in_zp = 0.05, 120
        self.fc1 = _static(nn.quantized.LinearReLU, 24, 32, 0.08, 0, per_channel=True, seed=1)
        self.fc2 = _static(nn.quantized.Linear, 32, 5, 0.2, 131, per_channel=False, seed=2)

    def forward(self, x):
        q = npquant.quantize_per_tensor(x, self.in_scale, self.in_zp, npquant.quint8)
        return self.fc2(self.fc1(q)).dequantize()


def _static(cls, k, n, scale, zp, per_channel, seed, bias=True):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.3
    if per_channel:
        qw = npquant.quantize_per_channel(w, np.abs(w).max(1) / 127, np.zeros(n, np.int64), 0, npquant.qint8)
    else:
        qw = npquant.quantize_per_tensor(w, float(np.abs(w).max() / 127), 0, npquant.qint8)
    m = cls(k, n, bias)
    m.set_weight_bias(qw, rng.standard_normal(n).astype(np.float32) if bias else None)
    m.scale, m.zero_point = scale, zp
    return m


def _dynamic(per_row=False, bias=True):
    f = nn.Linear(40, 17, bias=bias, rng=np.random.default_rng(3))
    return nn.quantized.dynamic.Linear.from_float(f, per_row=per_row)


def _x(shape=(7, 24), seed=4):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CUSTOM = {"MLP": MLP, "QuantMLP": QuantMLP}


def _roundtrip(model, tmp_path):
    path = tmp_path / "m.npq"
    npquant.save(model, path)
    return npquant.load(path, custom_modules=CUSTOM)


def test_float_model_roundtrip(tmp_path):
    m = MLP().eval()
    m2 = _roundtrip(m, tmp_path)
    assert type(m2) is MLP and not m2.training
    assert list(m2.state_dict()) == list(m.state_dict())
    for k, v in m.state_dict().items():
        assert np.array_equal(m2.state_dict()[k], v) and m2.state_dict()[k].dtype == v.dtype
    assert m2.fc2.bias is None
    assert type(m2.gain) is np.float32 and m2.sizes == (24, 32, 5)
    x = _x()
    assert np.array_equal(m(x), m2(x))


def test_static_quantized_roundtrip_bit_identical(tmp_path):
    m = QuantMLP()
    m2 = _roundtrip(m, tmp_path)
    assert type(m2.fc1) is nn.quantized.LinearReLU and type(m2.fc2) is nn.quantized.Linear
    x = _x((33, 24))
    assert np.array_equal(m(x).view(np.uint32), m2(x).view(np.uint32))
    assert m2.fc2.weight().qscheme() == "per_tensor_affine"
    assert np.array_equal(m2.fc1.weight().int_repr(), m.fc1.weight().int_repr())
    assert np.array_equal(m2.fc1.weight().q_per_channel_scales(), m.fc1.weight().q_per_channel_scales())


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_dynamic_linear_roundtrip_bit_identical(tmp_path, per_row, bias):
    m = _dynamic(per_row, bias)
    m2 = _roundtrip(m, tmp_path)
    assert m2.per_row == per_row and (m2.bias() is None) == (not bias)
    x = _x((9, 40))
    assert np.array_equal(m(x).view(np.uint32), m2(x).view(np.uint32))


def test_file_holds_plain_int8_weights_and_a_manifest(tmp_path):
    m = _dynamic()
    path = tmp_path / "m.npq"
    npquant.save(m, path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        arrays = {n: np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in zf.namelist() if n.endswith(".npy")}
    assert manifest["format"] == "npquant-model" and manifest["version"] == FORMAT_VERSION
    assert manifest["root"]["type"] == "nn.quantized.dynamic.Linear"
    ref = manifest["root"]["weight_bias"]["weight"]["int_repr"]["$array"]
    w = arrays[f"arrays/{ref}.npy"]
    assert w.dtype == np.int8 and np.array_equal(w, m.weight().int_repr())


def test_save_accepts_file_objects(tmp_path):
    m = _dynamic()
    buf = io.BytesIO()
    npquant.save(m, buf)
    buf.seek(0)
    x = _x((3, 40))
    assert np.array_equal(npquant.load(buf)(x), m(x))


# ------------------------------------------------------------------- other ISAs

_ISA_SCRIPT = """
import sys, numpy as np, npquant
kind, path, xpath, out = sys.argv[1:]
m = npquant.load(path)
x = np.load(xpath)
if kind == "static":
    x = npquant.QTensor(x, 0.05, 120, npquant.quint8)
    y = m(x).int_repr()
else:
    y = m(x)
np.save(out, y)
print(npquant.cpu_info()["isa"])
"""


@pytest.mark.parametrize("isa", npquant.cpu_info()["runnable_isas"])
@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_load_under_each_isa_gives_identical_outputs(tmp_path, isa, kind):
    if kind == "static":
        m = _static(nn.quantized.LinearReLU, 300, 70, 0.3, 7, per_channel=True, seed=5)
        x = np.random.default_rng(6).integers(0, 256, (37, 300), dtype=np.uint8)
        expect = m(npquant.QTensor(x, 0.05, 120, npquant.quint8)).int_repr()
    else:
        m = _dynamic()
        x = _x((37, 40))
        expect = m(x)
    path, xpath, out = tmp_path / "m.npq", tmp_path / "x.npy", tmp_path / "y.npy"
    npquant.save(m, path)
    np.save(xpath, x)
    env = dict(os.environ, NPQUANT_ISA=isa)
    r = subprocess.run(
        [*LAUNCHER, sys.executable, "-c", _ISA_SCRIPT, kind, str(path), str(xpath), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa
    y = np.load(out)
    assert y.dtype == expect.dtype and np.array_equal(y.view(np.uint8), expect.view(np.uint8))


# ------------------------------------------------------------------- errors at save


def test_save_rejects_unsavable_values(tmp_path):
    m = MLP()
    m.callback = print
    with pytest.raises(ModelFileError, match=r"<root>\.callback.*builtin_function_or_method"):
        npquant.save(m, tmp_path / "m.npq")
    assert not (tmp_path / "m.npq").exists() and os.listdir(tmp_path) == []


def test_save_rejects_shared_submodules(tmp_path):
    m = MLP()
    m.fc3 = m.fc1
    with pytest.raises(ModelFileError, match="same object"):
        npquant.save(m, tmp_path / "m.npq")


def test_save_rejects_non_modules(tmp_path):
    with pytest.raises(TypeError, match="npquant.nn.Module"):
        npquant.save({"w": np.zeros(3)}, tmp_path / "m.npq")


# ------------------------------------------------------------------- damaged / hostile files


def _saved_bytes(model) -> bytes:
    buf = io.BytesIO()
    npquant.save(model, buf)
    return buf.getvalue()


def _entries(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)
    return buf.getvalue()


def _with_manifest(data: bytes, edit) -> bytes:
    e = _entries(data)
    man = json.loads(e["manifest.json"])
    edit(man)
    e["manifest.json"] = json.dumps(man).encode()
    return _zip(e)


def _load_bytes(data: bytes):
    return npquant.load(io.BytesIO(data), custom_modules=CUSTOM)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        npquant.load(tmp_path / "nope.npq")


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.npq"
    p.write_bytes(b"this is not a model")
    with pytest.raises(ModelFileError, match="not a valid npquant model file"):
        npquant.load(p)


def test_every_truncation_raises():
    data = _saved_bytes(QuantMLP())
    for n in range(0, len(data), max(1, len(data) // 300)):
        with pytest.raises(ModelFileError):
            _load_bytes(data[:n])


def test_random_byte_corruption_raises_or_loads_never_crashes():
    data = _saved_bytes(QuantMLP())
    rng = np.random.default_rng(7)
    raised = 0
    x = _x((2, 24))
    for _ in range(400):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), rng.integers(1, 4)):
            b[pos] = rng.integers(0, 256)
        try:
            m = _load_bytes(bytes(b))
        except ModelFileError:
            raised += 1
            continue
        try:  # a flip in zip metadata can leave the model intact; running it must not crash
            m(x)
        except Exception:
            pass
    assert raised > 300  # the CRC-checked entries catch nearly every flip


def test_wrong_format_and_version():
    data = _saved_bytes(_dynamic())
    newer = _with_manifest(data, lambda m: m.update(version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=r"newer npquant.*upgrade"):
        _load_bytes(newer)
    for bad in ({"version": 0}, {"version": "1"}, {"version": None}):
        with pytest.raises(ModelFileError, match="version"):
            _load_bytes(_with_manifest(data, lambda m: m.update(bad)))
    with pytest.raises(ModelFileError, match="format"):
        _load_bytes(_with_manifest(data, lambda m: m.update(format="keras")))
    e = _entries(data)
    del e["manifest.json"]
    with pytest.raises(ModelFileError, match="manifest.json"):
        _load_bytes(_zip(e))
    e = _entries(data)
    e["manifest.json"] = b"{not json"
    with pytest.raises(ModelFileError):
        _load_bytes(_zip(e))
    e["manifest.json"] = b"[" * 100000 + b"]" * 100000
    with pytest.raises(ModelFileError):
        _load_bytes(_zip(e))


def test_unknown_and_custom_module_types():
    data = _saved_bytes(_dynamic())
    with pytest.raises(ModelFileError, match=r"module type 'os.system'.*supported: .*nn.Linear"):
        _load_bytes(_with_manifest(data, lambda m: m["root"].update(type="os.system")))
    mlp = _saved_bytes(MLP())
    with pytest.raises(ModelFileError, match=r"custom_modules=\{'MLP': MLP\}"):
        npquant.load(io.BytesIO(mlp))
    with pytest.raises(TypeError, match="Module subclass"):
        npquant.load(io.BytesIO(mlp), custom_modules={"MLP": dict})


def test_hostile_attributes_and_references():
    data = _saved_bytes(QuantMLP())

    def child(man, i=0):
        return man["root"]["children"][i][1]

    edits = {
        "dunder attribute": lambda m: m["root"]["attributes"].update({"__class__": 1}),
        "machinery attribute": lambda m: m["root"]["attributes"].update({"_modules": 1}),
        "array out of range": lambda m: child(m)["weight_bias"]["weight"].update(int_repr={"$array": 999}),
        "negative array": lambda m: child(m)["weight_bias"]["weight"].update(int_repr={"$array": -1}),
        "unknown tag": lambda m: m["root"]["attributes"].update(in_scale={"$pickle": "x"}),
        "object outside npquant.nn": lambda m: m["root"]["attributes"].update(
            in_scale={"$object": "os.path.join", "state": {}}
        ),
        "object that is a Module": lambda m: m["root"]["attributes"].update(
            in_scale={"$object": "npquant.nn.linear.Linear", "state": {}}
        ),
        "object with a dunder in its state": lambda m: m["root"]["attributes"].update(
            in_scale={"$object": "npquant.nn.linear.Linear", "state": {"__class__": 1}}
        ),
        "bad scalar dtype": lambda m: m["root"]["attributes"].update(in_scale={"$scalar": "|O", "value": 1}),
        "bad qdtype": lambda m: child(m)["weight_bias"]["weight"].update({"$qtensor": "float"}),
        "weight of wrong dtype": lambda m: child(m)["weight_bias"]["weight"].update({"$qtensor": "quint8"}),
        "shape mismatch": lambda m: child(m)["attributes"].update(in_features=25),
        "weight_bias on a float module": lambda m: m["root"].update(weight_bias={}),
        "children not a list": lambda m: m["root"].update(children={}),
        "child without type": lambda m: m["root"]["children"][0].__setitem__(1, {}),
        "bad zero point": lambda m: child(m, 1)["weight_bias"]["weight"].update(zero_point=3),
    }
    for what, edit in edits.items():
        with pytest.raises(ModelFileError):
            _load_bytes(_with_manifest(data, edit))
            pytest.fail(f"{what} loaded")


def test_decompression_bomb_is_refused():
    data = _saved_bytes(_dynamic())
    e = _entries(data)
    man = json.loads(e["manifest.json"])
    ref = man["root"]["weight_bias"]["weight"]["int_repr"]["$array"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, b in e.items():
            if n == f"arrays/{ref}.npy":
                b = _npy(np.zeros((64, 1 << 20), np.int8))  # 64 MiB of zeros deflate ~1000x
            zf.writestr(n, b)
    with pytest.raises(ModelFileError, match="decompression bomb"):
        _load_bytes(buf.getvalue())


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=True)
    return buf.getvalue()


def test_hostile_arrays():
    data = _saved_bytes(_dynamic())
    e = _entries(data)
    man = json.loads(e["manifest.json"])
    ref = man["root"]["weight_bias"]["weight"]["int_repr"]["$array"]
    name = f"arrays/{ref}.npy"
    good = e[name]
    cases = {
        "object array (pickle)": _npy(np.array([{"a": 1}, None], dtype=object)),
        "structured dtype": _npy(np.zeros(3, dtype=[("a", "i1"), ("b", "f4")])),
        "float16": _npy(np.zeros((17, 40), np.float16)),
        "short data": good[:-5],
        "long data": good + b"\0" * 8,
        "huge shape": good.replace(b"(17, 40)", b"(1700000000000, 40)"),
        "not npy": b"PK\x03\x04 garbage",
    }
    for what, blob in cases.items():
        e2 = dict(e)
        e2[name] = blob
        with pytest.raises(ModelFileError):
            _load_bytes(_zip(e2))
            pytest.fail(f"{what} loaded")


# ------------------------------------------------------------------- the workflow's modules


class PoolNet(nn.Module):
    """Stubs, BatchNorm2d, both poolings, a residual add, adaptive pooling, flatten, Linear."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(8)
        self.quant = nn.QuantStub()
        self.bn = nn.BatchNorm2d(3)
        self.bn.running_mean = rng.standard_normal(3).astype(np.float32)
        self.bn.running_var = rng.uniform(0.5, 2, 3).astype(np.float32)
        self.maxpool, self.avgpool = nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True)
        self.add = nn.FloatFunctional()
        self.relu = nn.ReLU()
        self.adapt = nn.AdaptiveAvgPool2d((2, 3))
        self.flatten = nn.Flatten()
        self.seq = nn.Sequential(nn.Linear(18, 12, rng=rng), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 4, rng=rng))
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.bn(self.quant(x))
        x = self.relu(self.add.add(self.maxpool(x), self.avgpool(x)))
        return self.dequant(self.seq(self.flatten(self.adapt(x))))


CUSTOM["PoolNet"] = PoolNet


def _poolnet_int8():
    m = PoolNet().eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    m = npquant.fuse_modules(m, [["seq.0", "seq.1"]])
    return npquant.quantize(m, lambda mm, xs: [mm(x) for x in xs], [[_x((8, 3, 10, 12), s) for s in range(3)]])


def test_workflow_float_model_roundtrip(tmp_path):
    m = PoolNet().eval()
    back = _roundtrip(m, tmp_path)
    x = _x((5, 3, 10, 12))
    assert np.array_equal(m(x), back(x))
    assert back.avgpool.ceil_mode and type(back.maxpool.geometry) is type(m.maxpool.geometry)


def test_workflow_quantized_model_roundtrip(tmp_path):
    q = _poolnet_int8()
    assert type(q.add).__name__ == "QFunctional" and type(q.seq[0]).__name__ == "LinearReLU"
    back = npquant.load(_save(q, tmp_path), custom_modules={"PoolNet": PoolNet})
    x = _x((5, 3, 10, 12), 11)
    assert np.array_equal(q(x).view(np.uint32), back(x).view(np.uint32))
    for name, mod in q.named_modules():
        other = back.get_submodule(name)
        assert type(other) is type(mod)
        for attr in ("scale", "zero_point"):
            if hasattr(mod, attr):
                assert getattr(other, attr) == getattr(mod, attr), (name, attr)


def test_prepared_model_is_refused(tmp_path):
    m = PoolNet().eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    with pytest.raises(ModelFileError, match="convert"):
        npquant.save(p, tmp_path / "p.npq")


def _save(m, tmp_path):
    path = tmp_path / "m.npq"
    npquant.save(m, path)
    return path


# ------------------------------------------------------------------- semantic fuzzing

_FUZZ_VALUES = [
    0,
    -1,
    1,
    7,
    2**31,
    -(2**40),
    1e308,
    -0.0,
    3.5,
    "x",
    None,
    True,
    [],
    {},
    [1, 2],
    {"$array": 0},
    {"$tuple": [1]},
    {"$tuple": [0, 0]},
    {"$qdtype": "qint32"},
]


def _leaf_paths(o, path=()):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _leaf_paths(v, path + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _leaf_paths(v, path + (i,))
    else:
        yield path


def semantic_mutations(data: bytes, n: int, seed: int):
    """Files whose manifest has one leaf replaced by an odd value (wrong type, zero,
    negative, huge, a dangling reference...)."""
    entries = _entries(data)
    manifest = json.loads(entries["manifest.json"])
    paths = list(_leaf_paths(manifest))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        man = json.loads(entries["manifest.json"])
        path = paths[rng.integers(len(paths))]
        node = man
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = _FUZZ_VALUES[rng.integers(len(_FUZZ_VALUES))]
        yield _zip({**entries, "manifest.json": json.dumps(man).encode()})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # e.g. a scale of 1e308 overflowing float32
@pytest.mark.parametrize("make", [QuantMLP, _poolnet_int8, MLP], ids=["linear", "poolnet", "float"])
def test_semantic_fuzz_loads_or_raises_model_file_error(make):
    """Every mutated file either loads or raises ModelFileError (never another
    exception, never a crash). A loaded model may still reject inputs when run."""
    outcomes = {"loaded": 0, "raised": 0}
    for blob in semantic_mutations(_saved_bytes(make()), 300, seed=3):
        try:
            _load_bytes(blob)
            outcomes["loaded"] += 1
        except ModelFileError:
            outcomes["raised"] += 1
    assert outcomes["raised"] > 30 and outcomes["loaded"] > 30, outcomes


# ------------------------------------------------------------------- every registered type


class Zoo(nn.Module):
    """One of every float layer type, in one forward pass."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(12)
        self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1, rng=rng), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2 = (
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False, rng=rng),
            nn.BatchNorm2d(8),
        )
        self.relu6, self.hswish = nn.ReLU6(), nn.Hardswish()
        self.bn3 = nn.BatchNorm2d(8)
        self.bn4, self.relu4 = nn.BatchNorm2d(8), nn.ReLU()
        self.hsig, self.sigmoid, self.tanh = nn.Hardsigmoid(), nn.Sigmoid(), nn.Tanh()
        self.leaky, self.elu, self.silu, self.gelu = nn.LeakyReLU(0.1), nn.ELU(), nn.SiLU(), nn.GELU("tanh")
        for bn in (self.bn1, self.bn2, self.bn3, self.bn4):
            bn.running_mean = rng.standard_normal(8).astype(np.float32) * 0.1
            bn.running_var = rng.uniform(0.5, 2, 8).astype(np.float32)
        self.maxpool, self.avgpool = nn.MaxPool2d(2), nn.AvgPool2d(3, stride=2, padding=1)
        self.skip = nn.FloatFunctional()
        self.adapt, self.dropout, self.flatten = nn.AdaptiveAvgPool2d((2, 2)), nn.Dropout(0.1), nn.Flatten()
        self.seq = nn.Sequential(nn.Linear(32, 16, rng=rng), nn.BatchNorm1d(16), nn.ReLU())
        self.fc2, self.relu5 = nn.Linear(16, 8, rng=rng), nn.ReLU()
        self.fc3, self.identity = nn.Linear(8, 4, rng=rng), nn.Identity()
        self.unused = nn.Module()

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(self.quant(x))))
        x = self.hswish(self.relu6(self.bn2(self.conv2(x))))
        x = self.relu4(self.bn4(self.bn3(x)))
        x = self.gelu(self.silu(self.elu(self.leaky(self.tanh(self.sigmoid(self.hsig(x)))))))
        x = self.skip.add(self.maxpool(x), self.avgpool(x))
        x = self.seq(self.flatten(self.dropout(self.adapt(x))))
        return self.dequant(self.identity(self.fc3(self.relu5(self.fc2(x)))))


class Recurrent(nn.Module):
    """Every recurrent layer and cell once (float, or dynamic after quantize_dynamic)."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(5)
        self.lstm = nn.LSTM(24, 8, num_layers=2, bidirectional=True, proj_size=4, rng=rng)
        self.gru, self.rnn = nn.GRU(8, 6, batch_first=True, rng=rng), nn.RNN(6, 5, nonlinearity="relu", rng=rng)
        self.lstm_cell, self.gru_cell = nn.LSTMCell(5, 4, rng=rng), nn.GRUCell(4, 4, rng=rng)
        self.rnn_cell, self.fc = nn.RNNCell(4, 3, rng=rng), nn.Linear(3, 2, rng=rng)

    def forward(self, x):
        y, _ = self.lstm(np.stack([x, x[::-1]]))  # (3, 24) -> (2, 3, 8)
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        h, _ = self.lstm_cell(y[0])
        return self.fc(self.rnn_cell(self.gru_cell(h)))


CUSTOM["Recurrent"] = Recurrent
RECURRENT_TYPES = {nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell, nn.Linear}


ZOO_FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["bn4", "relu4"], ["seq.0", "seq.1"], ["fc2", "relu5"]]
CUSTOM["Zoo"] = Zoo


class TextZoo(nn.Module):
    """The sequence layers: embeddings, LayerNorm, Softmax, attention, an encoder layer."""

    def __init__(self):
        super().__init__()
        self.emb, self.bag = nn.Embedding(20, 8, padding_idx=0), nn.EmbeddingBag(20, 8, mode="sum")
        self.norm, self.softmax = nn.LayerNorm(8), nn.Softmax(-1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", batch_first=True)

    def forward(self, ids):
        x = self.norm(self.emb(ids))
        x = self.enc(self.attn(x, x, x)[0])
        return self.softmax(x + self.bag(ids)[:, None])


CUSTOM["TextZoo"] = TextZoo


def _text_int8():
    spec = {
        nn.Linear: npquant.default_dynamic_qconfig,
        nn.MultiheadAttention: npquant.default_dynamic_qconfig,
        nn.Embedding: npquant.float_qparams_weight_only_qconfig,
        nn.EmbeddingBag: npquant.float_qparams_weight_only_qconfig_4bit,
    }
    return npquant.quantize_dynamic(TextZoo().eval(), spec)


def _zoo_models():
    """{label: model} covering every registered module type."""
    from npquant.models import digits_cnn

    zoo = Zoo().eval()
    fused = npquant.fuse_modules(zoo, ZOO_FUSE)
    fused.qconfig = npquant.get_default_qconfig("x86")
    calib = [_x((4, 3, 12, 12), s) for s in range(3)]
    run = lambda m, xs: [m(x) for x in xs]
    conv1d = nn.Sequential(
        nn.QuantStub(),
        nn.Conv1d(4, 6, 3, padding=1),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Conv1d(6, 5, 3, stride=2),
        nn.DeQuantStub(),
    ).eval()
    conv1d_fused = npquant.fuse_modules(conv1d, [["1", "2", "3"]])
    conv1d_fused.qconfig = npquant.get_default_qconfig("x86")
    resample = nn.Sequential(
        nn.QuantStub(),
        nn.Conv2d(3, 4, 1),
        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1),
        nn.Upsample(scale_factor=2),
        nn.UpsamplingNearest2d(size=(30, 26)),
        nn.UpsamplingBilinear2d(scale_factor=1.5),
        nn.Upsample(size=(20, 21), mode="bilinear"),
        nn.ChannelShuffle(2),
        nn.DeQuantStub(),
    ).eval()
    resample.qconfig = npquant.get_default_qconfig("x86")
    return {
        "float": zoo,
        "fused": fused,
        "int8": npquant.quantize(fused, run, [calib]),
        "int8 keep_float": npquant.quantize(fused, run, [calib], keep_float=["fc3"]),
        "dynamic": npquant.quantize_dynamic(MLP().eval(), {nn.Linear}, dtype=npquant.qint8),
        "digits": digits_cnn(),
        "recurrent": Recurrent(),
        "recurrent int8": npquant.quantize_dynamic(Recurrent(), RECURRENT_TYPES),
        "recurrent float16": npquant.quantize_dynamic(Recurrent(), RECURRENT_TYPES, dtype=npquant.float16),
        "text": TextZoo().eval(),
        "text int8": _text_int8(),
        "conv1d": conv1d,
        "conv1d fused": conv1d_fused,
        "resample": resample,
        "resample int8": npquant.quantize(resample, run, [calib]),
        "conv1d int8": npquant.quantize(conv1d_fused, run, [[_x((4, 4, 20), s) for s in range(2)]]),
    }


def test_every_registered_type_round_trips(tmp_path):
    registry = npquant.serialization.supported_module_types()
    # the torchvision architectures (npquant.models.<family>) round-trip, int8 and whole, in
    # tests/test_models_vision.py::test_load_fuse_quantize: too large for this zoo
    registry = {
        k: c
        for k, c in registry.items()
        if not (c.__module__.startswith("npquant.models.") and c.__module__ != "npquant.models.digits")
    }
    models = _zoo_models()
    covered = {
        name for name, cls in registry.items() for m in models.values() for mod in m.modules() if type(mod) is cls
    }
    assert covered == set(registry), f"no round-trip test for {sorted(set(registry) - covered)}"
    x = _x((2, 3, 12, 12), 21)
    for label, m in models.items():
        back = npquant.load(_save(m, tmp_path), custom_modules=CUSTOM)
        assert [type(a) for a in m.modules()] == [type(b) for b in back.modules()], label
        ids = np.random.default_rng(5).integers(0, 20, (2, 6))
        inp = {
            "dynamic": _x((3, 24)),
            "digits": _x((2, 1, 32, 32)),
            "text": ids,
            "text int8": ids,
            "conv1d": _x((2, 4, 20)),
            "conv1d fused": _x((2, 4, 20)),
            "conv1d int8": _x((2, 4, 20)),
        }.get(label, x)
        inp = _x((3, 24)) if label.startswith("recurrent") else inp
        assert np.array_equal(m(inp).view(np.uint32), back(inp).view(np.uint32)), label
