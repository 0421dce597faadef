"""Dynamic int8 transformer encoders: what quantize_dynamic reaches (as torch by default,
attention on request), per-token activation scales, accuracy against torch's
quantize_dynamic on the same weights, save/load, and examples/bert_encoder.py run small."""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest

import npquant
import npquant.nn as nn
import npquant.nn.quantized as nnq

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", message=".*deprecated.*")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pair(d: int, heads: int, ffn: int, activation: str, norm_first: bool, seed: int = 0):
    torch.manual_seed(seed)
    t = torch.nn.TransformerEncoderLayer(
        d, heads, ffn, dropout=0.0, activation=activation, norm_first=norm_first, batch_first=True
    ).eval()
    m = nn.TransformerEncoderLayer(d, heads, ffn, activation=activation, norm_first=norm_first, batch_first=True)
    m.load_state_dict(t.state_dict())
    return m, t


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_linear_spec_reaches_what_torch_reaches():
    m, t = _pair(16, 2, 32, "relu", False)
    q = npquant.quantize_dynamic(m, {nn.Linear})
    tq = torch.ao.quantization.quantize_dynamic(t, {torch.nn.Linear}, dtype=torch.qint8)
    ours = {n for n, c in q.named_modules() if type(c).__module__.startswith("npquant.nn.quantized")}
    theirs = {
        n
        for n, c in tq.named_modules()
        if type(c).__module__.startswith("torch.ao.nn.quantized") and "_packed_params" not in n
    }
    assert ours == theirs == {"linear1", "linear2"}
    assert type(q.self_attn.out_proj) is nn.NonDynamicallyQuantizableLinear
    qa = npquant.quantize_dynamic(m, {nn.Linear, nn.MultiheadAttention})
    assert isinstance(qa.self_attn, nnq.dynamic.MultiheadAttention)
    assert isinstance(qa.self_attn.in_proj, nnq.dynamic.Linear) and qa.self_attn.in_proj.out_features == 48
    assert isinstance(qa.self_attn.out_proj, nnq.dynamic.Linear)


@pytest.mark.parametrize("activation,norm_first,seed", [("relu", False, 0), ("gelu", False, 1), ("gelu", True, 2)])
def test_int8_no_further_from_fp32_than_torch(activation, norm_first, seed):
    m, t = _pair(64, 4, 128, activation, norm_first, seed)
    x = np.random.default_rng(seed).standard_normal((4, 20, 64)).astype(np.float32)
    ref = m(x)
    with torch.no_grad():
        np.testing.assert_allclose(ref, t(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
        torch.backends.mha.set_fastpath_enabled(False)  # torch's fast path fails on its quantized layers
        try:
            tq = torch.ao.quantization.quantize_dynamic(t, {torch.nn.Linear}, dtype=torch.qint8)
            torch_err = _rel(tq(torch.from_numpy(x)).numpy(), ref)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    npq_err = _rel(npquant.quantize_dynamic(m, {nn.Linear})(x), ref)
    assert 0 < npq_err <= torch_err, (npq_err, torch_err)
    all_err = _rel(npquant.quantize_dynamic(m, {nn.Linear, nn.MultiheadAttention})(x), ref)
    assert 0 < all_err < 0.02


def test_per_token_qconfig_selects_per_row_activations():
    m, _ = _pair(32, 2, 64, "gelu", False)
    spec = {nn.Linear: npquant.per_token_dynamic_qconfig, nn.MultiheadAttention: npquant.per_token_dynamic_qconfig}
    q = npquant.quantize_dynamic(m, spec)
    lins = [c for c in q.modules() if isinstance(c, nnq.dynamic.Linear)]
    assert len(lins) == 4 and all(c.per_row for c in lins)
    assert all(c.weight().qscheme() == "per_channel_affine" for c in lins)
    # the same layer built directly with per_row=True computes the same thing
    m.linear1.qconfig = npquant.per_channel_dynamic_qconfig
    direct = nnq.dynamic.Linear.from_float(m.linear1, per_row=True)
    x = np.random.default_rng(3).standard_normal((6, 32)).astype(np.float32)
    x[0] *= 50  # one loud token: per-row scales keep the others' precision
    np.testing.assert_array_equal(q.linear1(x), direct(x))
    per_tensor = npquant.quantize_dynamic(m, {nn.Linear: npquant.per_channel_dynamic_qconfig})
    ref = m.linear1(x)
    assert _rel(q.linear1(x)[1:], ref[1:]) < _rel(per_tensor.linear1(x)[1:], ref[1:])
    assert not npquant.quantize_dynamic(m, {nn.Linear}).linear1.per_row


def test_quantized_encoder_save_load_and_state_dict(tmp_path):
    m, _ = _pair(16, 2, 32, "gelu", True)
    q = npquant.quantize_dynamic(m, {nn.Linear, nn.MultiheadAttention})
    x = np.random.default_rng(4).standard_normal((2, 5, 16)).astype(np.float32)
    npquant.save(q, tmp_path / "enc.npq")
    back = npquant.load(tmp_path / "enc.npq")
    np.testing.assert_array_equal(back(x), q(x))
    twin = npquant.quantize_dynamic(
        nn.TransformerEncoderLayer(16, 2, 32, activation="gelu", norm_first=True, batch_first=True),
        {nn.Linear, nn.MultiheadAttention},
    )
    twin.load_state_dict(q.state_dict())
    np.testing.assert_array_equal(twin(x), q(x))
    assert any(k.startswith("self_attn.in_proj._packed_params") for k in q.state_dict())


def test_quantized_attention_bad_input():
    q = npquant.quantize_dynamic(nn.MultiheadAttention(8, 2), {nn.MultiheadAttention})
    x = np.zeros((3, 2, 8), np.float32)
    with pytest.raises(ValueError, match="key_padding_mask"):
        q(x, x, x, key_padding_mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="embed_dim=8"):
        q(np.zeros((3, 2, 4), np.float32), x, x)
    y, w = q(x, x, x)
    assert y.shape == (3, 2, 8) and w.shape == (2, 3, 3)


def test_bert_example_runs_small():
    spec = importlib.util.spec_from_file_location("bert_encoder", os.path.join(REPO, "examples", "bert_encoder.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(vocab=50, hidden=32, layers=2, heads=2, ffn=64, seq=12, repeat=1)
    assert set(res) == {
        "npquant fp32",
        "npquant int8 {Linear}",
        "npquant int8 {Linear, MHA}",
        "torch fp32",
        "torch int8 quantize_dynamic",
    }
    assert res["npquant fp32"]["cosine"] > 1 - 1e-9  # the float twin is torch's model
    for name in ("npquant int8 {Linear}", "npquant int8 {Linear, MHA}", "torch int8 quantize_dynamic"):
        assert 0.99 < res[name]["cosine"] < 1
        assert res[name]["ms_b1"] > 0 and res[name]["ms_b8"] > 0
    assert "speed-up" in mod.report(res)
