"""The demo model: a small CNN for 32x32 handwritten digits (npquant.data.load_digits).

Trained in PyTorch by examples/train_digits.py (99.4% on the 540 held-out test
images); the weights ship in npquant/data/digits_cnn.npz under PyTorch's state
dict key names, which npquant.nn modules use too.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..data import data_path

__all__ = ["DigitsCNN", "digits_cnn", "FUSE_GROUPS"]

# Module groups fuse_modules folds into one quantized layer each.
FUSE_GROUPS = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"], ["fc1", "relu4"]]


class DigitsCNN(nn.Module):
    """(N, 1, 32, 32) float32 in [0, 1] -> (N, 10) logits.

    Three conv-bn-relu blocks (16, 32, 64 channels) with max, max and average
    pooling, then two Linear layers. QuantStub/DeQuantStub mark where the
    quantized part of the model starts and ends.
    """

    def __init__(self):
        super().__init__()
        self.quant = nn.QuantStub()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3, self.bn3, self.relu3 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        self.pool3 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1, self.relu4 = nn.Linear(64 * 4 * 4, 128), nn.ReLU()
        self.fc2 = nn.Linear(128, 10)
        self.dequant = nn.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.pool3(self.relu3(self.bn3(self.conv3(x))))
        x = self.fc2(self.relu4(self.fc1(self.flatten(x))))
        return self.dequant(x)


def digits_cnn(pretrained: bool = True) -> DigitsCNN:
    """The demo CNN in eval mode, with the bundled trained weights unless pretrained=False."""
    model = DigitsCNN()
    if pretrained:
        with np.load(data_path("digits_cnn.npz"), allow_pickle=False) as f:
            model.load_state_dict({k: f[k] for k in f.files})
    return model.eval()
