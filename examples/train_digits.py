"""Trains the CNN that npquant bundles for `npquant demo`, and writes its files.

Data: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with
scikit-learn, no download), upscaled to 32x32 by npquant.data.upscale_digits
(the function inference uses too). A stratified 30% is held out as the test
set; 256 training images form the calibration subset.

Writes (both read with allow_pickle=False):
  python/npquant/data/digits.npz      test images/labels and calibration images (8x8 uint8)
  python/npquant/data/digits_cnn.npz  the trained weights, PyTorch state-dict key names

Needs PyTorch and scikit-learn (training only; npquant itself never imports torch)
and an installed npquant (for upscale_digits):

    pip install . && python examples/train_digits.py
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from npquant.data import upscale_digits

REPO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "npquant", "data")


class DigitsCNN(nn.Module):
    """Same layer names as npquant.models.DigitsCNN, so the state dict loads there as is."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3, self.bn3, self.relu3 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        self.pool3 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1, self.relu4 = nn.Linear(64 * 4 * 4, 128), nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.pool3(self.relu3(self.bn3(self.conv3(x))))
        return self.fc2(self.relu4(self.fc1(self.flatten(x))))


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shifts each image by up to max_shift pixels (zero fill): cheap augmentation."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=REPO_DATA, help="folder for digits.npz and digits_cnn.npz")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    labels = digits.target.astype(np.uint8)
    tr_img, te_img, tr_lab, te_lab = train_test_split(
        images, labels, test_size=0.3, stratify=labels, random_state=args.seed
    )
    calib_img = tr_img[np.random.default_rng(args.seed).choice(len(tr_img), 256, replace=False)]

    x_tr = torch.from_numpy(upscale_digits(tr_img))
    y_tr = torch.from_numpy(tr_lab.astype(np.int64))
    x_te, y_te = upscale_digits(te_img), te_lab.astype(np.int64)

    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(random_shift(x_tr[idx], 2, gen)), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test acc {evaluate(model, x_te, y_te):.4f}")

    acc = evaluate(model, x_te, y_te)
    print(f"fp32 test accuracy (PyTorch): {acc:.4f} on {len(y_te)} held-out images")
    if acc < 0.97:
        raise SystemExit("accuracy below the 97% the demo promises; not writing files")

    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(
        os.path.join(args.out, "digits.npz"), test_images=te_img, test_labels=te_lab, calib_images=calib_img
    )
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez_compressed(os.path.join(args.out, "digits_cnn.npz"), **state)
    for name in ("digits.npz", "digits_cnn.npz"):
        print(f"wrote {name}: {os.path.getsize(os.path.join(args.out, name)) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
