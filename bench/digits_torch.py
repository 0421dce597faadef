"""The demo model (npquant.models.digits) against the same network in PyTorch, in one run.

Builds the PyTorch twin of DigitsCNN with the bundled weights (checked equal in float),
quantizes it with PyTorch's eager flow (x86 engine: fuse, prepare, calibrate on the same
256 images, convert), and times fp32 and int8 of both libraries at batch 1 and 256,
one thread: the best of 3 medians of repeated calls, in ms.

    python bench/digits_torch.py          # needs torch (pip install ".[bench]")
"""

import statistics
import time
import warnings

import numpy as np
import torch

import npquant
from npquant.data import load_digits
from npquant.demo import quantize_digits
from npquant.models.digits import digits_cnn

warnings.filterwarnings("ignore")  # torch's deprecation notes on eager quantization


class TorchDigits(torch.nn.Module):
    """DigitsCNN written in PyTorch: same layer names, so the state dict loads as is."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3, self.bn3, self.relu3 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        self.pool3 = nn.AvgPool2d(2)
        self.fc1, self.relu4, self.fc2 = nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10)

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.pool3(self.relu3(self.bn3(self.conv3(x))))
        return self.dequant(self.fc2(self.relu4(self.fc1(torch.flatten(x, 1)))))


def torch_models(float_model, calib_x):
    """(PyTorch fp32, PyTorch int8) with npquant's float weights."""
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in float_model.state_dict().items()}
    fp32, int8 = TorchDigits(), TorchDigits()
    for m in (fp32, int8):
        m.load_state_dict(state)
        m.eval()
    int8 = torch.ao.quantization.fuse_modules(
        int8, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"], ["fc1", "relu4"]])
    int8.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    torch.ao.quantization.prepare(int8, inplace=True)
    int8(torch.from_numpy(calib_x))
    torch.ao.quantization.convert(int8, inplace=True)
    return fp32, int8


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    torch.set_num_threads(1)
    npquant.set_num_threads(1)
    torch.backends.quantized.engine = "x86"
    data = load_digits()
    npq_fp32 = digits_cnn()
    npq_int8 = quantize_digits(npq_fp32, data["calib_x"], "x86", False)
    th_fp32, th_int8 = torch_models(npq_fp32, data["calib_x"])
    probe = data["test_x"][:64]
    with torch.no_grad():
        assert np.allclose(th_fp32(torch.from_numpy(probe)).numpy(), npq_fp32(probe), atol=1e-3), \
            "the PyTorch float twin does not reproduce npquant's float model"
    print(f"npquant {npquant.__version__} ({npquant.cpu_info()['isa']}), PyTorch {torch.__version__} "
          "(x86 engine), 1 thread; ms, lower is better")
    print(f"{'batch':>5} {'npquant fp32':>13} {'npquant int8':>13} {'PyTorch fp32':>13} {'PyTorch int8':>13}"
          f" {'npquant int8 speedup':>21}")
    with torch.no_grad():
        for batch, n in ((1, 300), (256, 15)):
            x = np.resize(data["test_x"], (batch,) + data["test_x"].shape[1:])
            xt = torch.from_numpy(x)
            runs = {"npquant fp32": (lambda: npq_fp32(x), max(3, n // 5)), "npquant int8": (lambda: npq_int8(x), n),
                    "PyTorch fp32": (lambda: th_fp32(xt), n), "PyTorch int8": (lambda: th_int8(xt), n)}
            for fn, _ in runs.values():  # warm up
                fn()
            best = {name: min(median_ms(fn, reps) for _ in range(3)) for name, (fn, reps) in runs.items()}
            print(f"{batch:>5} " + " ".join(f"{best[k]:>13.3f}" for k in runs)
                  + f" {best['PyTorch int8'] / best['npquant int8']:>20.2f}x")
        correct = th_int8(torch.from_numpy(data["test_x"])).argmax(1).numpy() == data["test_y"]
    print(f"accuracy on the 540 test images: PyTorch int8 {correct.mean():.2%}, "
          f"npquant int8 {(npq_int8(data['test_x']).argmax(1) == data['test_y']).mean():.2%}")


if __name__ == "__main__":
    main()
