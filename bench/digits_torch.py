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
from collections import OrderedDict

import numpy as np
import torch

import npquant
from npquant.data import load_digits
from npquant.demo import quantize_digits
from npquant.models.digits import digits_cnn

warnings.filterwarnings("ignore")  # torch's deprecation notes on eager quantization


def torch_layer(m):
    """The PyTorch module with the same configuration as an npquant.nn float layer."""
    nn, q = torch.nn, torch.ao.quantization
    kind = type(m).__name__
    if kind == "Conv2d":
        return nn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            bias=m.bias is not None,
        )
    if kind == "Linear":
        return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if kind == "BatchNorm2d":
        return nn.BatchNorm2d(m.num_features, m.eps, m.momentum)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return getattr(nn, kind)(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
    if kind == "Flatten":
        return nn.Flatten(m.start_dim, m.end_dim)
    return {"QuantStub": q.QuantStub, "DeQuantStub": q.DeQuantStub, "ReLU": nn.ReLU}[kind]()


def torch_twin(model) -> torch.nn.Sequential:
    """DigitsCNN's children in PyTorch, same names (so the state dict loads as is); its
    forward() calls them in the order they are declared, so a Sequential reproduces it."""
    return torch.nn.Sequential(OrderedDict((name, torch_layer(m)) for name, m in model.named_children()))


def torch_models(float_model, calib_x):
    """(PyTorch fp32, PyTorch int8) with npquant's float weights."""
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in float_model.state_dict().items()}
    fp32, int8 = torch_twin(float_model), torch_twin(float_model)
    for m in (fp32, int8):
        m.load_state_dict(state)
        m.eval()
    int8 = torch.ao.quantization.fuse_modules(
        int8, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"], ["fc1", "relu4"]]
    )
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
        assert np.allclose(th_fp32(torch.from_numpy(probe)).numpy(), npq_fp32(probe), atol=1e-3), (
            "the PyTorch float twin does not reproduce npquant's float model"
        )
    print(
        f"npquant {npquant.__version__} ({npquant.cpu_info()['isa']}), PyTorch {torch.__version__} "
        "(x86 engine), 1 thread; ms, lower is better"
    )
    print(
        f"{'batch':>5} {'npquant fp32':>13} {'npquant int8':>13} {'PyTorch fp32':>13} {'PyTorch int8':>13}"
        f" {'npquant int8 speedup':>21}"
    )
    with torch.no_grad():
        for batch, n in ((1, 300), (256, 15)):
            x = np.resize(data["test_x"], (batch,) + data["test_x"].shape[1:])
            xt = torch.from_numpy(x)
            runs = {
                "npquant fp32": (lambda: npq_fp32(x), max(3, n // 5)),
                "npquant int8": (lambda: npq_int8(x), n),
                "PyTorch fp32": (lambda: th_fp32(xt), n),
                "PyTorch int8": (lambda: th_int8(xt), n),
            }
            for fn, _ in runs.values():  # warm up
                fn()
            best = {name: min(median_ms(fn, reps) for _ in range(3)) for name, (fn, reps) in runs.items()}
            print(
                f"{batch:>5} "
                + " ".join(f"{best[k]:>13.3f}" for k in runs)
                + f" {best['PyTorch int8'] / best['npquant int8']:>20.2f}x"
            )
        correct = th_int8(torch.from_numpy(data["test_x"])).argmax(1).numpy() == data["test_y"]
    print(
        f"accuracy on the 540 test images: PyTorch int8 {correct.mean():.2%}, "
        f"npquant int8 {(npq_int8(data['test_x']).argmax(1) == data['test_y']).mean():.2%}"
    )


if __name__ == "__main__":
    main()
