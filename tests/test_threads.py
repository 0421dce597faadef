"""Concurrency: one converted model called from 8 Python threads at once gives, call for
call, the same bits as serial calls (the GIL is released inside the kernels, so the
threads really overlap), also while another thread changes npquant.set_num_threads."""

import threading

import numpy as np
import pytest

import npquant
import npquant.nn.quantized as nnq

import onnx_models as om

N_THREADS = 8


def _run_concurrently(model, inputs, expected, change_threads=False):
    """Each of N_THREADS threads calls model on every input (in its own order) and compares."""
    barrier = threading.Barrier(N_THREADS + int(change_threads))
    errors, stop = [], threading.Event()

    def worker(tid):
        order = np.random.default_rng(tid).permutation(len(inputs))
        barrier.wait()
        for i in order:
            y = model(inputs[i])
            got = y.int_repr() if isinstance(y, npquant.QTensor) else y
            if not np.array_equal(got, expected[i]):
                errors.append(f"thread {tid}, input {i}")

    def changer():
        barrier.wait()
        k = 0
        while not stop.is_set():
            npquant.set_num_threads(1 + k % 3)
            k += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
    extra = threading.Thread(target=changer) if change_threads else None
    old = npquant.get_num_threads()
    try:
        for t in threads + ([extra] if extra else []):
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.set()
        if extra:
            extra.join()
        npquant.set_num_threads(old)
    assert not errors, errors[:5]


def _serial(model, inputs):
    outs = [model(x) for x in inputs]
    return [y.int_repr().copy() if isinstance(y, npquant.QTensor) else y.copy() for y in outs]


@pytest.mark.parametrize("change_threads", [False, True])
def test_static_mlp_from_8_threads(change_threads):
    rng = np.random.default_rng(0)
    model = om.quantized_mlp(rng, k=24, hidden=256, out=64, act="relu6", join="add")
    inputs = [rng.normal(0, 1, (int(rng.integers(1, 96)), 24)).astype(np.float32) for _ in range(12)]
    _run_concurrently(model, inputs, _serial(model, inputs), change_threads)


def test_pooling_model_from_8_threads():
    rng = np.random.default_rng(1)
    model = om.quantized_poolnet(rng, c=8, hw=16)
    inputs = [rng.normal(0, 2, (int(rng.integers(1, 5)), 8, 16, 16)).astype(np.float32) for _ in range(8)]
    _run_concurrently(model, inputs, _serial(model, inputs))


def test_dynamic_linear_from_8_threads():
    rng = np.random.default_rng(2)
    model = npquant.quantize_dynamic(npquant.nn.Sequential(npquant.nn.Linear(300, 200, rng=rng)), {npquant.nn.Linear})
    inputs = [rng.normal(0, 1, (int(rng.integers(1, 64)), 300)).astype(np.float32) for _ in range(12)]
    _run_concurrently(model, inputs, _serial(model, inputs), change_threads=True)


@pytest.mark.parametrize("change_threads", [False, True])
def test_static_conv_model_from_8_threads(change_threads):
    nn = npquant.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = nn.QuantStub(), nn.DeQuantStub()
            self.conv1, self.relu1 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()
            self.dw, self.relu2 = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.ReLU()
            self.pw = nn.Conv2d(16, 32, 1)
            self.skip = nn.FloatFunctional()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.relu1(self.conv1(self.quant(x)))
            x = self.relu2(self.dw(x))
            x = self.skip.add(self.pw(x), self.pw(x))
            return self.dequant(self.fc(self.flatten(self.pool(x))))

    rng = np.random.default_rng(3)
    model = om.calibrated(
        Net(), [rng.normal(0, 1, (4, 3, 20, 20)).astype(np.float32)], fuse=[["conv1", "relu1"], ["dw", "relu2"]]
    )
    assert isinstance(model.conv1, nnq.ConvReLU2d)
    inputs = [rng.normal(0, 1, (int(rng.integers(1, 4)), 3, 20, 20)).astype(np.float32) for _ in range(8)]
    _run_concurrently(model, inputs, _serial(model, inputs), change_threads)
