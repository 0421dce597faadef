"""float32 arithmetic in the exact order and rounding PyTorch's CPU kernels use.

The observers need three of PyTorch's float32 primitives bit for bit to give
PyTorch's qparams on the same data (the histogram observer compares sums that
differ in their last bit):

* ``fma32(a, s, n)``: ``a + s * n`` rounded once, as PyTorch's compiled
  ``start + step * idx`` (FMA-contracted on x86 builds with AVX2 or AVX-512);
* ``linspace32``: ``torch.linspace`` in float32 (``start + step*i`` for the
  first half of the points, ``end - step*(steps-1-i)`` for the rest, each one FMA);
* ``sum32``: ``torch.sum`` of a contiguous float32 vector: SIMD lanes, four
  independent vector accumulators and a cascade of partial sums
  (aten/src/ATen/native/cpu/SumKernel.cpp) over 8 float32 lanes, which is what
  PyTorch 2.13 and 2.14 run on AVX2 and on AVX-512 CPUs alike (measured: every
  length 1..32768 tried agrees with 8 lanes, none with 16).

Written from reading PyTorch's kernels and checked against them (tests/test_observers.py);
no PyTorch code is used.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["fma32", "linspace32", "sum32"]

F32 = npt.NDArray[np.float32]

# PyTorch splits a reduction between threads above this many elements
_GRAIN_SIZE = 32768
# float32 lanes of PyTorch's vectorized sum
_LANES = 8


def _round_once(hi: npt.NDArray[np.float64], lo: npt.NDArray[np.float64]) -> F32:
    """The float32 nearest to the exact value hi + lo (|lo| tiny next to hi, both float64):
    rounds hi, then corrects the one case double rounding gets wrong -- hi exactly half
    way between two float32 values while lo, the part float64 lost, breaks the tie."""
    r = hi.astype(np.float32)
    toward = np.where(lo > 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    other = np.nextafter(r, toward)
    mid = (r.astype(np.float64) + other.astype(np.float64)) * 0.5
    return np.where((lo != 0) & (mid == hi), other, r).astype(np.float32)


def fma32(a: float | np.floating | F32, s: float | np.floating | F32, n: npt.ArrayLike) -> F32:
    """``a + s * n`` in float32 with one rounding (an FMA). ``a`` and ``s`` are
    float32 values, ``n`` integers of magnitude below 2**24 (exact in float32)."""
    a64 = np.asarray(a, np.float32).astype(np.float64)
    p = np.asarray(s, np.float32).astype(np.float64) * np.asarray(n, np.float32).astype(np.float64)
    hi = a64 + p  # the product is exact (24 x 24 bits); TwoSum recovers the sum's error
    b = hi - a64
    lo = (a64 - (hi - b)) + (p - b)
    return _round_once(np.asarray(hi), np.asarray(lo))


def linspace32(start: float | np.floating, end: float | np.floating, steps: int) -> F32:
    """``torch.linspace(start, end, steps)`` in float32, bit for bit."""
    if steps < 1:
        raise ValueError(f"linspace32 needs at least one step, got {steps}")
    start32, end32 = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([start32], np.float32)
    step = np.float32((end32 - start32) / np.float32(steps - 1))
    half = steps // 2
    i = np.arange(steps)
    first = fma32(start32, step, i[:half])
    second = fma32(end32, -step, steps - 1 - i[half:])
    return np.concatenate([first, second]).astype(np.float32)


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else int(x - 1).bit_length()


def _cascade(rows: F32) -> F32:
    """Sum of rows[i] over i (each row an array of independent accumulators) in
    PyTorch's cascade order: blocks of 2**p rows summed in turn, block sums carried
    into up to four levels of partial sums."""
    size = rows.shape[0]
    power = max(4, _ceil_log2(size) // 4)
    step, mask = 1 << power, (1 << power) - 1
    zero = np.zeros(rows.shape[1:], np.float32)
    acc = [zero.copy() for _ in range(4)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = (acc[0] + rows[i]).astype(np.float32)
            i += 1
        for j in range(1, 4):
            acc[j] = (acc[j] + acc[j - 1]).astype(np.float32)
            acc[j - 1] = zero.copy()
            if i & (mask << (j * power)):
                break
    for k in range(i, size):
        acc[0] = (acc[0] + rows[k]).astype(np.float32)
    for j in range(1, 4):
        acc[0] = (acc[0] + acc[j]).astype(np.float32)
    return acc[0]


def _row_sum(items: F32) -> F32:
    """PyTorch's row_sum over items[i] (scalars or vectors): four interleaved
    accumulators, the leftover items into the first, then the four added in order."""
    n4 = items.shape[0] // 4
    partial = _cascade(items[: n4 * 4].reshape((n4, 4) + items.shape[1:]))
    for k in range(n4 * 4, items.shape[0]):
        partial[0] = (partial[0] + items[k]).astype(np.float32)
    total = partial[0]
    for k in range(1, 4):
        total = (total + partial[k]).astype(np.float32)
    return np.asarray(total, np.float32)


def sum32(x: npt.ArrayLike, lanes: int = _LANES) -> np.float32:
    """``torch.sum`` of a float32 array (flattened, contiguous) bit for bit, for up
    to 32768 elements (PyTorch splits longer sums between threads)."""
    v = np.ascontiguousarray(x, np.float32).reshape(-1)
    if v.size > _GRAIN_SIZE:
        raise ValueError(
            f"sum32 reproduces PyTorch's single-threaded sum of at most {_GRAIN_SIZE} elements, got {v.size}"
        )
    w = int(lanes)
    if v.size < w:  # PyTorch's scalar path: the same cascade on single elements
        return np.float32(_row_sum(v))
    nvec = v.size // w
    vec = _row_sum(v[: nvec * w].reshape(nvec, w))
    total = np.float32(0)
    for k in range(nvec * w, v.size):
        total = np.float32(total + v[k])
    for lane in vec:
        total = np.float32(total + lane)
    return total
