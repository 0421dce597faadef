"""The numerics contract restated in NumPy, independently of the C++ reference.

float64 matmul of integers is exact here (|acc| < 2^31 << 2^53), and NumPy's
float32 element-wise ops are single IEEE operations (no FMA), so these
formulas give the contract's bits.
"""

import numpy as np


def acc_int(x_u8, xz, w_s8):
    """sum_k (x[m,k] - xz[m]) * w[n,k] exactly (xz scalar or per row)."""
    xz = np.asarray(xz, dtype=np.float64).reshape(-1, 1) if np.ndim(xz) else np.float64(xz)
    a = x_u8.astype(np.float64) - xz
    return (a @ w_s8.astype(np.float64).T).astype(np.int64)


def requant_constants(xs, ws, ys, bias):
    s = (np.float32(xs) * ws.astype(np.float32)).astype(np.float32)
    mult = (s / np.float32(ys)).astype(np.float32)
    bias_s = np.zeros_like(s) if bias is None else (bias.astype(np.float32) / s).astype(np.float32)
    return bias_s, mult


def linear_static(x_u8, xs, xz, w_s8, ws, bias, ys, yz, relu=False):
    acc = acc_int(x_u8, xz, w_s8)
    assert np.all(np.abs(acc) < 2**31)
    bias_s, mult = requant_constants(xs, ws, ys, bias)
    v = ((acc.astype(np.float32) + bias_s).astype(np.float32) * mult).astype(np.float32)
    q = np.rint(v).astype(np.float64) + yz  # rint: round half to even
    return np.clip(q, yz if relu else 0, 255).astype(np.uint8)


def quantize(x, scale, zp, qmin=0, qmax=255):
    """clamp(nearbyint(fmaf(x, fl(1/scale), zp))): fmaf via exact float64 product + correctly
    rounded sum when it is exact in float64, falling back to Python's exact fractions."""
    from fractions import Fraction

    inv = np.float32(np.float32(1) / np.float32(scale))
    prod = x.astype(np.float64) * np.float64(inv)  # exact: 24 + 24 bits
    s = prod + np.float64(zp)
    # The float64 sum is exact unless the addends' bits span > 53: check by subtracting back.
    exact = (s - np.float64(zp)) == prod
    v = s.astype(np.float32)
    # Rounding float64 -> float32 is the single rounding of the exact value when s is exact.
    for i in np.flatnonzero(~exact.reshape(-1)):
        e = Fraction(float(x.reshape(-1)[i])) * Fraction(float(inv)) + zp
        v.reshape(-1)[i] = _fraction_to_f32(e)
    q = np.rint(v).astype(np.float64)
    return np.clip(q, qmin, qmax).astype(np.int64)


def _fraction_to_f32(e):
    import math
    from fractions import Fraction

    f = np.float32(float(e))  # float() of a Fraction rounds correctly to float64, then to f32
    # Fix possible double rounding by checking neighbours.
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    best = min(
        cands,
        key=lambda c: (abs(Fraction(float(c)) - e), int(np.frombuffer(np.float32(c).tobytes(), np.uint32)[0]) & 1),
    )
    assert math.isfinite(float(best))
    return best


def choose_qparams(mn, mx, qmin=0, qmax=255):
    """PyTorch's ChooseQuantizationParams (no reduce_range), restated."""
    mn = min(np.float32(mn), np.float32(0))
    mx = max(np.float32(mx), np.float32(0))
    scale = (float(mx) - float(mn)) / (qmax - qmin)
    if np.float32(scale) == 0 or np.isinf(np.float32(1) / np.float32(scale)):
        scale = 0.1
    small = float(np.float32(6.1e-5))
    if scale < small:
        org = np.float32(scale)
        scale = small
        if mn == 0:
            mx = np.float32(np.float32(small) * np.float32(qmax - qmin))
        elif mx == 0:
            mn = np.float32(-np.float32(small) * np.float32(qmax - qmin))
        else:
            amp = np.float32(np.float32(small) / org)
            mn, mx = np.float32(mn * amp), np.float32(mx * amp)
    zlo = qmin - float(mn) / scale
    zhi = qmax - float(mx) / scale
    elo = abs(qmin) - abs(float(mn) / scale)
    ehi = abs(qmax) - abs(float(mx) / scale)
    z0 = zlo if elo < ehi else zhi
    zp = qmin if z0 < qmin else qmax if z0 > qmax else int(np.rint(z0))
    return float(np.float32(scale)), zp


def linear_dynamic(x, w_s8, ws, bias, per_row=False):
    m = x.shape[0]
    if per_row:
        qp = [choose_qparams(r.min(), r.max()) if r.size else (1.0, 0) for r in x]
    else:
        qp = [choose_qparams(x.min(), x.max()) if x.size else (1.0, 0)] * m
    xs = np.array([s for s, _ in qp], np.float32)
    xz = np.array([z for _, z in qp], np.int64)
    q = np.stack([quantize(x[r], xs[r], xz[r]) for r in range(m)]) if m else np.zeros(x.shape, np.int64)
    acc = acc_int(q.astype(np.uint8), xz, w_s8)
    s = (xs.reshape(-1, 1) * ws.astype(np.float32).reshape(1, -1)).astype(np.float32)
    y = (acc.astype(np.float32) * s).astype(np.float32)
    b = np.zeros(w_s8.shape[0], np.float32) if bias is None else bias.astype(np.float32)
    return (y + b).astype(np.float32)
