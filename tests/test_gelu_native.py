"""The native float32 GELU (``_C.gelu_f32``, ukernels/f32-vgelu-*.cc): the same bits on every
ISA (each forced through NPQUANT_ISA against the scalar kernel), within ~1e-6 of torch and
of float64 GELU, torch's special-value behaviour, and the float GELU module's use of it."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

import npquant
import npquant.nn as nn
from npquant import _C

from conftest import run_python

FORMS = ("none", "tanh")
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, -1e-38, 3e38, -3e38], np.float32)


def inputs() -> np.ndarray:
    """Random values at many scales, the clamp regions, special values and a sweep of bit patterns."""
    rng = np.random.default_rng(7)
    parts = [
        rng.standard_normal(200_000).astype(np.float32) * np.float32(3),
        np.exp(rng.uniform(-87, 87, 100_000)).astype(np.float32) * rng.choice([-1, 1], 100_000).astype(np.float32),
        np.linspace(-12, 12, 100_001, dtype=np.float32),
        np.arange(0, 0x7F800000, 4099, dtype=np.uint32).view(np.float32),
        -np.arange(0, 0x7F800000, 4099, dtype=np.uint32).view(np.float32),
        SPECIAL,
    ]
    return np.ascontiguousarray(np.concatenate(parts))


def digest() -> str:
    """Hash of both forms' outputs on inputs() and on every length 0..70 at odd offsets
    (the vector kernels' tails); run under each NPQUANT_ISA."""
    x = inputs()
    h = hashlib.sha256()
    for form in FORMS:
        h.update(_C.gelu_f32(x, form).tobytes())
        for n in range(71):
            h.update(_C.gelu_f32(x[3 : 3 + n], form).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scalar_digest() -> str:
    return _digest_under("scalar")


GELU_ISAS = ("scalar", "avx2", "avx512vnni")  # the ISAs with a registered f32_vgelu kernel


def _digest_under(isa: str) -> str:
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_gelu_native as t; "
        "from npquant import _C; print(_C.cpu_info()['kernels']['gelu']['name'], t.digest())"
    )
    r = run_python(code, {"NPQUANT_ISA": isa})
    assert r.returncode == 0, r.stderr[-2000:]
    name, h = r.stdout.split()
    assert name.startswith("f32_vgelu__"), name
    assert name.endswith("__" + isa) or isa not in GELU_ISAS, name  # others run a lower ISA's
    return h


@pytest.mark.parametrize("isa", [i for i in npquant.cpu_info()["runnable_isas"] if i != "scalar"])
def test_every_isa_gives_the_scalar_bits(isa: str, scalar_digest: str) -> None:
    assert _digest_under(isa) == scalar_digest


def test_the_digest_sees_a_changed_bit() -> None:
    """The bit-exactness test can fail: one flipped output bit changes the hash."""
    x = inputs()[:1000]
    y = _C.gelu_f32(x)
    z = y.copy()
    z.view(np.uint32)[500] ^= 1
    assert hashlib.sha256(y.tobytes()).digest() != hashlib.sha256(z.tobytes()).digest()


@pytest.mark.parametrize("form", FORMS)
def test_close_to_torch_and_float64(form: str) -> None:
    x = inputs()
    finite = np.isfinite(x)
    y = _C.gelu_f32(x, form)[finite]
    t = torch.from_numpy(x[finite])
    t32 = torch.nn.functional.gelu(t, approximate=form).numpy()
    t64 = torch.nn.functional.gelu(t.double(), approximate=form).numpy()
    # float64 GELU rounded once: within 1e-6 absolute and relative everywhere
    np.testing.assert_allclose(y, t64, rtol=1e-6, atol=1e-6)
    # torch's float32 (its 1 + erf cancels below x = -3, ~1.1e-6 off float64 itself; its
    # erf form overflows to inf above ~1.7e38, where float64 and npquant give x)
    small = np.abs(x[finite]) < 1e38
    np.testing.assert_allclose(y[small], t32[small], rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("form", FORMS)
def test_special_values(form: str) -> None:
    y = _C.gelu_f32(SPECIAL, form)
    t = torch.nn.functional.gelu(torch.from_numpy(SPECIAL).double(), approximate=form).numpy().astype(np.float32)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(t))  # NaN -> NaN, -inf -> NaN (as torch)
    ok = ~np.isnan(t)
    np.testing.assert_array_equal(y[ok], t[ok])  # zeros, +inf, tiny and huge values exactly
    np.testing.assert_array_equal(np.signbit(y[ok]), np.signbit(t[ok]))  # -0 stays -0
    assert y[2] == np.inf  # torch's float32 erf GELU gives NaN at +inf; float64 (and npquant): inf


@pytest.mark.parametrize("form", FORMS)
def test_module_uses_the_kernel_and_falls_back(form: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 40)).astype(np.float32)
    m = nn.GELU(form)
    np.testing.assert_array_equal(m(x), _C.gelu_f32(x, form))
    strided = x[:, :, ::2]  # not C-contiguous: the NumPy path
    y = m(strided)
    assert y.shape == strided.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, _C.gelu_f32(np.ascontiguousarray(strided), form), rtol=2e-6, atol=2e-6)


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="float32"):
        _C.gelu_f32(np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.gelu_f32(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="approximate"):
        _C.gelu_f32(np.zeros(4, np.float32), "fast")
    assert _C.gelu_f32(np.zeros((0, 3), np.float32)).shape == (0, 3)
