"""Small npquant models for the ONNX tests: float definitions, and converted versions
calibrated on random data (each builder takes a numpy Generator)."""

import numpy as np

import npquant
from npquant import nn


def make_onnx(nodes, inits, in_shape, opset=17, ir_version=8):
    """A one-input ("x"), one-output ("y") float ModelProto of nodes, with inits as
    initializers (name -> array)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def calibrated(model, batches, fuse=None):
    """prepare / calibrate / convert with the x86 qconfig."""
    model.eval()
    if fuse:
        model = npquant.fuse_modules(model, fuse)
    model.qconfig = npquant.get_default_qconfig("x86")
    prepared = npquant.prepare(model)
    for x in batches:
        prepared(x)
    return npquant.convert(prepared)


class MLP(nn.Module):
    """Linear layers with every elementwise op between them, and a residual add."""

    def __init__(self, rng, k=24, hidden=40, out=10, act="relu", join="add"):
        super().__init__()
        self.quant = nn.QuantStub()
        self.fc1 = nn.Linear(k, hidden, rng=rng)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden, rng=rng)
        self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hardswish": nn.Hardswish(), "dropout": nn.Dropout()}[act]
        self.fc3 = nn.Linear(hidden, hidden, bias=False, rng=rng)
        self.skip = nn.FloatFunctional()
        self.join = join
        self.fc4 = nn.Linear(2 * hidden if join == "cat" else hidden, out, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.relu1(self.fc1(self.quant(x)))
        h = self.act(self.fc2(x))
        r = self.fc3(h)
        if self.join == "cat":
            h = self.skip.cat([h, r], dim=-1)
        else:
            h = getattr(self.skip, self.join)(h, r)
        return self.dequant(self.fc4(h))


def quantized_mlp(rng, n_calib=3, batch=32, in_shape=None, **kw):
    model = MLP(rng, **kw)
    shape = in_shape or (batch, 24)
    batches = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(n_calib)]
    return calibrated(model, batches, fuse=[["fc1", "relu1"]])


class PoolNet(nn.Module):
    """4-D activations without convolution: pooling, quantized BatchNorm, flatten."""

    def __init__(self, rng, c=3, ceil_mode=False):
        super().__init__()
        self.quant = nn.QuantStub()
        self.bn = nn.BatchNorm2d(c)
        self.bn.running_mean = rng.normal(0, 0.5, c).astype(np.float32)
        self.bn.running_var = rng.uniform(0.5, 2, c).astype(np.float32)
        self.bn.weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
        self.bn.bias = rng.normal(0, 0.2, c).astype(np.float32)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=ceil_mode)
        self.avgpool = nn.AvgPool2d(2, 1, 1, ceil_mode=ceil_mode, count_include_pad=False)
        self.relu6 = nn.ReLU6()
        self.gap = nn.AdaptiveAvgPool2d((2, 2))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * c, 6, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.bn(self.quant(x)))
        x = self.relu6(self.avgpool(self.maxpool(x)))
        return self.dequant(self.fc(self.flatten(self.gap(x))))


def quantized_poolnet(rng, c=3, hw=12, ceil_mode=False):
    model = PoolNet(rng, c, ceil_mode)
    batches = [rng.normal(0, 2, (4, c, hw, hw)).astype(np.float32) for _ in range(2)]
    return calibrated(model, batches)


class ReshapeNet(nn.Module):
    """QTensor.reshape in forward (the npquant spelling of torch's x.view(n, -1))."""

    def __init__(self, rng):
        super().__init__()
        self.quant = nn.QuantStub()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 4 * 4, 5, rng=rng)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.quant(x))
        x = x.reshape(x.shape[0], -1)
        return self.dequant(self.fc(x))
