"""Data bundled with npquant: scikit-learn's 8x8 handwritten digits, split for the demo.

The file ``digits.npz`` holds the original 8x8 images (pixel values 0..16, uint8)
of a held-out test set and of a calibration subset drawn from the training set;
``examples/train_digits.py`` wrote it. Images are upscaled to 32x32 here, with
one function shared by training and inference so both see the same pixels.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["data_path", "upscale_digits", "load_digits"]

_SIDE_IN = 8
_SIDE_OUT = 32


def data_path(name: str) -> str:
    """Absolute path of a file shipped in npquant/data."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"npquant's bundled file {name!r} is missing at {path}; reinstall npquant "
            "(pip install .) so the wheel carries python/npquant/data"
        )
    return path


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bilinear resampling with half-pixel centres
    (align_corners=False), edges clamped."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        src = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        a[i, lo] += 1.0 - frac
        a[i, hi] += frac
    return a


def upscale_digits(images) -> np.ndarray:
    """(N, 8, 8) digits with values 0..16 -> (N, 1, 32, 32) float32 in [0, 1].

    The weights are multiples of 1/8 and pixels are integers over 16, so the
    float64 arithmetic is exact and the result is the same on every machine.
    """
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != (_SIDE_IN, _SIDE_IN):
        raise ValueError(f"upscale_digits expects (N, 8, 8) images, got shape {x.shape}")
    a = _bilinear_matrix(_SIDE_IN, _SIDE_OUT)
    up = np.einsum("ij,njk,lk->nil", a, x.astype(np.float64) / 16.0, a)
    return up.astype(np.float32)[:, None, :, :]


def load_digits() -> dict:
    """The bundled split, upscaled: ``test_x`` (N, 1, 32, 32) float32, ``test_y``
    (N,) int64 labels 0..9, ``calib_x`` (M, 1, 32, 32) float32 for calibration."""
    with np.load(data_path("digits.npz"), allow_pickle=False) as f:
        return {
            "test_x": upscale_digits(f["test_images"]),
            "test_y": f["test_labels"].astype(np.int64),
            "calib_x": upscale_digits(f["calib_images"]),
        }
