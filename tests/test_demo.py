"""The bundled digits model and data, `npquant demo`, and the `npquant` command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npquant
from npquant.data import data_path, load_digits, upscale_digits

from conftest import LAUNCHER

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------- bundled files


def test_bundled_files_are_small_and_pickle_free():
    total = 0
    for name in ("digits.npz", "digits_cnn.npz"):
        path = data_path(name)
        total += os.path.getsize(path)
        with np.load(path, allow_pickle=False) as f:
            for k in f.files:
                assert f[k].dtype != object
    assert total < 2 * 1024 * 1024


def test_digits_split():
    d = load_digits()
    assert d["test_x"].shape == (540, 1, 32, 32) and d["test_x"].dtype == np.float32
    assert d["calib_x"].shape == (256, 1, 32, 32)
    assert 0.0 <= d["test_x"].min() and d["test_x"].max() <= 1.0
    assert np.bincount(d["test_y"], minlength=10).min() >= 50  # stratified: every class present
    with np.load(data_path("digits.npz"), allow_pickle=False) as f:
        test, calib = f["test_images"], f["calib_images"]
    # calibration images come from the training split, never from the test set
    test_rows = {t.tobytes() for t in test}
    assert sum(c.tobytes() in test_rows for c in calib) <= 2  # (the dataset has a few exact duplicates)


def _bilinear_naive(img: np.ndarray, out: int) -> np.ndarray:
    n = img.shape[0]
    res = np.zeros((out, out))
    src = [min(max((i + 0.5) * n / out - 0.5, 0.0), n - 1.0) for i in range(out)]
    for i, sy in enumerate(src):
        for j, sx in enumerate(src):
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, n - 1), min(x0 + 1, n - 1)
            fy, fx = sy - y0, sx - x0
            res[i, j] = (1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1]) + fy * (
                (1 - fx) * img[y1, x0] + fx * img[y1, x1]
            )
    return res


def test_upscale_is_bilinear_with_half_pixel_centres():
    img = np.random.default_rng(0).integers(0, 17, (3, 8, 8)).astype(np.uint8)
    up = upscale_digits(img)
    assert up.shape == (3, 1, 32, 32) and up.dtype == np.float32
    for k in range(3):
        assert np.array_equal(up[k, 0], _bilinear_naive(img[k] / 16.0, 32).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, 8, 8\)"):
        upscale_digits(np.zeros((2, 8, 9)))


def test_upscale_matches_pytorch_interpolate():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(1).integers(0, 17, (4, 8, 8)).astype(np.uint8)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img[:, None] / 16.0), size=(32, 32), mode="bilinear", align_corners=False
    ).numpy()
    assert np.allclose(upscale_digits(img), ref, atol=1e-7)


# ------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def float_model():
    from npquant.models import digits_cnn

    return digits_cnn()


@pytest.fixture(scope="module")
def int8_model(float_model, digits):
    from npquant.demo import quantize_digits

    return quantize_digits(float_model, digits["calib_x"], show_progress=False)


def test_fp32_accuracy(float_model, digits):
    from npquant.demo import accuracy

    assert accuracy(float_model, digits["test_x"], digits["test_y"]) >= 0.97


def test_fp32_matches_pytorch(float_model, digits):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(REPO, "examples"))
    try:
        from train_digits import DigitsCNN as TorchDigits
    finally:
        sys.path.pop(0)
    tm = TorchDigits()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in float_model.state_dict().items()}, strict=False)
    x = digits["test_x"][:64]
    with torch.no_grad():
        ref = tm.eval()(torch.from_numpy(x)).numpy()
    got = float_model(x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5


def test_int8_accuracy_within_one_point(float_model, int8_model, digits):
    from npquant.demo import accuracy

    fp32 = accuracy(float_model, digits["test_x"], digits["test_y"])
    int8 = accuracy(int8_model, digits["test_x"], digits["test_y"])
    assert int8 >= fp32 - 0.01, (fp32, int8)


def test_int8_model_is_all_quantized(int8_model):
    kinds = {
        type(m).__module__.split(".")[2] if type(m).__module__.count(".") >= 2 else ""
        for _, m in int8_model.named_modules()
        if not any(True for _ in m.children())
    }
    names = {n: type(m).__name__ for n, m in int8_model.named_modules()}
    assert names["conv1"] == "ConvReLU2d" and names["fc1"] == "LinearReLU" and names["quant"] == "Quantize"
    assert "quantized" in kinds


def test_int8_model_save_load_roundtrip(int8_model, digits, tmp_path):
    path = tmp_path / "digits_int8.npq"
    npquant.save(int8_model, path)
    back = npquant.load(path)
    x = digits["test_x"][:100]
    assert np.array_equal(int8_model(x).view(np.uint32), back(x).view(np.uint32))


@pytest.mark.parametrize("isa", npquant.cpu_info()["runnable_isas"])
def test_int8_model_loads_bit_identical_under_each_isa(int8_model, digits, tmp_path, isa):
    path, xpath, out = tmp_path / "m.npq", tmp_path / "x.npy", tmp_path / "y.npy"
    npquant.save(int8_model, path)
    x = digits["test_x"][:50]
    np.save(xpath, x)
    code = (
        "import sys, numpy as np, npquant; m = npquant.load(sys.argv[1]); "
        "np.save(sys.argv[3], m(np.load(sys.argv[2]))); print(npquant.cpu_info()['isa'])"
    )
    r = subprocess.run(
        [*LAUNCHER, sys.executable, "-c", code, str(path), str(xpath), str(out)],
        env=dict(os.environ, NPQUANT_ISA=isa),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa
    assert np.array_equal(np.load(out).view(np.uint32), int8_model(x).view(np.uint32))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_int8_model_semantic_fuzz(int8_model):
    from test_serialization import _saved_bytes, semantic_mutations

    raised = 0
    for blob in semantic_mutations(_saved_bytes(int8_model), 200, seed=5):
        try:
            npquant.load(io.BytesIO(blob))
        except npquant.ModelFileError:
            raised += 1
    assert raised > 20


def test_compare_reports_every_layer(float_model, int8_model, digits):
    rep = npquant.compare(float_model, int8_model, digits["test_x"][:64])
    names = [r.name for r in rep]
    assert names[0] == "quant" and names[-1] == "dequant"
    for fused in ("conv1+bn1+relu1", "conv2+bn2+relu2", "conv3+bn3+relu3", "fc1+relu4"):
        assert fused in names
    assert {"pool1", "pool2", "pool3", "flatten", "fc2"} <= set(names)
    for r in rep:
        assert r.sqnr_db > 15 and r.cosine > 0.99, r
    assert rep.output.sqnr_db > 15


# ------------------------------------------------------------------- the demo and the command


@pytest.mark.slow
def test_run_demo_quick():
    from npquant.demo import format_demo, run_demo

    r = run_demo(quick=True, show_progress=False)
    assert r["isa"] == npquant.cpu_info()["isa"]
    assert r["test_images"] == 128 and r["int8_accuracy"] >= r["fp32_accuracy"] - 0.02
    assert [t["batch"] for t in r["latency"]] == [1, 256]
    assert all(t["fp32_ms"] > 0 and t["int8_ms"] > 0 for t in r["latency"])
    # the fused digits CNN freezes (npquant.freeze) and replays the eager model's bits
    assert all(t["frozen_ms"] > 0 and t["frozen_bit_identical"] for t in r["latency"]), r["notes"]
    assert r["reload_bit_identical"] and r["int8_bytes"] < r["fp32_bytes"]
    others = npquant.cpu_info()["runnable_isas"]
    assert sorted(o["isa"] for o in r["other_isas"]) == sorted(i for i in others if i != r["isa"])
    assert all(o["bit_identical"] for o in r["other_isas"]), r["other_isas"]
    text = format_demo(r)
    for needle in ("accuracy", "SQNR", "speedup", "frozen ms", r["isa"], "conv2+bn2+relu2"):
        assert needle in text


def _cli(*args, **kw):
    return subprocess.run(
        [*LAUNCHER, sys.executable, "-m", "npquant", *args], capture_output=True, text=True, timeout=600, **kw
    )


def test_cli_info():
    r = _cli("info")
    assert r.returncode == 0, r.stderr
    info = npquant.cpu_info()
    assert f"chosen ISA   {info['isa']}" in r.stdout and "kernels" in r.stdout
    r = _cli("info", "--json")
    assert json.loads(r.stdout)["isa"] == info["isa"]


def test_cli_demo_quick(tmp_path):
    out = tmp_path / "demo.json"
    saved = tmp_path / "digits_int8.npq"
    r = _cli("demo", "--quick", "--no-progress", "--no-isas", "--json", str(out), "--save", str(saved))
    assert r.returncode == 0, r.stderr
    assert type(npquant.load(saved).conv1).__name__ == "ConvReLU2d"
    assert "int8" in r.stdout and "speedup" in r.stdout
    result = json.loads(out.read_text())
    assert result["reload_bit_identical"] is True and result["other_isas"] == []


def test_cli_usage_errors():
    r = _cli()
    assert r.returncode == 2 and "demo" in r.stderr
    r = _cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="console_scripts") if e.name == "npquant"]
    assert eps and eps[0].value == "npquant.cli:main"


def _peers_installed() -> list:
    import importlib.util

    return [m for m in ("torch", "onnxruntime") if importlib.util.find_spec(m) is not None]


@pytest.mark.slow
def test_cli_bench_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png, js = tmp_path / "bench.png", tmp_path / "bench.json"
    r = _cli(
        "bench",
        "--quick",
        "--no-conv",
        "--no-peak",
        "--no-progress",
        "--linear-shapes",
        "4,64,32",
        "--plot",
        str(png),
        "--json",
        str(js),
    )
    assert r.returncode == 0, r.stderr
    assert "| 4,64,32 |" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    [row] = json.loads(js.read_text())["linear"]
    columns = set(row["gmacs"])
    assert {"NumPy fp32", "npquant dyn", "npquant static"} <= columns
    if "torch" in _peers_installed():
        assert {"PyTorch dyn", "PyTorch static"} <= columns
    if "onnxruntime" in _peers_installed():
        assert {"ORT dyn", "ORT QLinearMatMul"} <= columns


def test_bench_compare_script_is_the_same_benchmark():
    r = subprocess.run(
        [*LAUNCHER, sys.executable, os.path.join(REPO, "bench", "compare.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "--plot" in r.stdout
    r = _cli("bench", "--help")
    assert r.returncode == 0 and "usage: npquant bench" in r.stdout


def test_package_never_imports_torch():
    code = (
        "import sys, npquant, npquant.cli, npquant.demo, npquant.benchmark, npquant.models, "
        "npquant.report, npquant.serialization; print(sorted(m for m in ('torch', 'onnxruntime', "
        "'sklearn', 'matplotlib') if m in sys.modules))"
    )
    r = subprocess.run([*LAUNCHER, sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
