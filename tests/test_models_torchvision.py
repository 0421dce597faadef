"""npquant.models against torchvision's own quantizable models (torch's x86 engine), one
test per architecture (tests/vision_peer.py runs the comparison; bench/vision_models.py
prints the same comparison as a table):

- fp32: the torchvision state dict loaded into npquant.models gives torch's logits within
  1e-5 (relative to the largest);
- observers: every activation observer torch calls during calibration, fed the very
  float32 arrays torch's saw, gives torch's scale and zero point bit for bit;
- int8: npquant converted from those observers gives torch's codes at every module output
  both models have, bit for bit, once the layers where torch does not compute npquant's
  contract on this CPU run torch's own arithmetic (peers.emulate_torch: oneDNN's conv
  requantization on AVX-512 VNNI, FBGEMM's saturating depthwise kernels on every CPU and
  all of its kernels on AVX2-only ones; torch's float route of Tensor.mean in ShuffleNetV2).
  Where no layer needs that, npquant's own model is the one compared.

Needs torchvision (.ci/run installs it without its dependencies: PyPI's wheel is a CUDA
build, whose C extension cannot load beside the CPU torch; vision_peer.import_torchvision
bypasses it)."""

from __future__ import annotations

import numpy as np
import pytest

import vision_peer

import peers

torch = pytest.importorskip("torch")

# Each takes more than 5 s on a 2-core machine (about 10-25 s: torch's and npquant's
# conversion of millions of weights, torch's histogram observers, the emulation in NumPy).
NAMES = [pytest.param(n, marks=pytest.mark.slow) for n in vision_peer.MODELS]


@pytest.fixture(scope="module")
def torchvision():
    try:
        return vision_peer.import_torchvision()
    except ImportError as e:
        pytest.skip(f"needs torchvision: {e}")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", NAMES)
def test_model_agrees_with_torchvision(torchvision, name):
    # 32x32 images (Inception v3: 75, ShuffleNetV2: 33, vision_peer.MIN_SIZE); two
    # calibration batches, so that the histogram observers also merge a grown range
    r = vision_peer.compare(name, size=32, batch=2, calib=2, calib_batch=2)
    print(
        f"{name} ({r['size']}x{r['size']}): fp32 rel {r['fp32_rel']:.1e}; observers identical "
        f"{r['observers'] - len(r['qparams_differ'])}/{r['observers']}; int8 module outputs identical "
        f"{r['layers_compared'] - len(r['layers_differ'])}/{r['layers_compared']} ({r['codes_compared']} codes), "
        f"layers {r['modes']}; logits identical: emulated {r['identical_emulated']:.4f}, "
        f"npquant as is {r['identical']:.4f}"
    )
    assert r["fp32_rel"] < 1e-5
    assert r["observers"] > 20 and r["qparams_differ"] == []
    assert r["layers_compared"] > 50 and r["layers_differ"] == {}
    np.testing.assert_array_equal(r["qe"], r["qt"])
    if not r["emulated"]:
        np.testing.assert_array_equal(r["qn"], r["qt"])
    # the comparison is not vacuous: int8 logits that follow fp32's
    assert r["sqnr_torch"] > 15 and len(np.unique(r["qt"])) > 100
    for mode, n in r["modes"].items():
        peers.record("torchvision models (layers)", mode, n)
