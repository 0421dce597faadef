"""Batch inference with Dask (examples/dask_batch_inference.py): the quantized model
goes to the workers as npquant.save bytes (no pickle, no code), partitions are mapped
on a 2-process local cluster, and the outputs equal a single-process run bit for bit."""

import io
import os
import sys
import zipfile

import numpy as np
import pytest

import npquant
from npquant import nn
from npquant.interop import model_from_bytes, model_to_bytes, run_model_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_quantized_model(seed=0):
    rng = np.random.default_rng(seed)
    m = nn.Sequential(
        nn.QuantStub(),
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
        nn.DeQuantStub(),
    ).eval()
    m.qconfig = npquant.get_default_qconfig("x86")
    p = npquant.prepare(m)
    p(rng.standard_normal((32, 1, 8, 8)).astype(np.float32))
    return npquant.convert(p)


def test_model_bytes_are_arrays_and_json_only():
    """What crosses the wire: a zip of a JSON manifest and .npy arrays that load with
    allow_pickle=False, no pickle stream anywhere."""
    blob = model_to_bytes(small_quantized_model())
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert "manifest.json" in names
        arrays = [n for n in names if n != "manifest.json"]
        assert arrays and all(n.endswith(".npy") for n in arrays)
        for n in arrays:
            np.load(io.BytesIO(zf.read(n)), allow_pickle=False)
        assert not any(zf.read(n).startswith(b"\x80") for n in names)  # pickle protocol 2+ header


def test_run_model_bytes_loads_once_and_equals_the_model():
    q = small_quantized_model()
    blob = model_to_bytes(q)
    x = np.random.default_rng(1).standard_normal((20, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(run_model_bytes(x, blob), q(x))
    assert np.array_equal(run_model_bytes(x[:3], bytearray(blob)), q(x[:3]))
    assert np.array_equal(model_from_bytes(blob)(x), q(x))
    with pytest.raises(TypeError, match="model_to_bytes"):
        run_model_bytes(x, q)
    with pytest.raises(TypeError, match="model_to_bytes"):
        model_from_bytes("model.npq")
    with pytest.raises(npquant.ModelFileError):
        model_from_bytes(b"not a model")


def test_dask_local_cluster_equals_single_process():
    """examples/dask_batch_inference.py on 2 worker processes (1 thread each), partitions of
    100 images (the last one shorter): every output equals the single-process run."""
    pytest.importorskip("dask.distributed")
    sys.path.insert(0, os.path.join(REPO, "examples"))
    try:
        import dask_batch_inference as example
    finally:
        sys.path.pop(0)
    r = example.run(n_workers=2, chunk=100, processes=True)
    assert r["dask"].shape == r["single"].shape == (r["images"], 10)
    assert r["images"] % 100 != 0  # a short last partition
    assert r["dask"].dtype == np.float32 and r["identical"] and np.array_equal(r["dask"], r["single"])
    assert r["accuracy"] > 0.95  # the demo model's accuracy: the right model ran
