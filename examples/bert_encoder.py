"""A small BERT-style encoder three ways on the same weights: fp32, npquant dynamic int8,
torch's quantize_dynamic int8. Prints each output's cosine to the fp32 output and the
latency at batch 1 and 8, all in one run.

The model: word + position embeddings, LayerNorm, N post-norm TransformerEncoderLayers
(GELU, batch_first), and a tanh pooler over the first token. The torch model is
random-initialized; npquant's twin loads its state dict (same attribute names), so
npquant needs no torch at run time -- torch is here only to compare.

npquant int8 is shown twice: ``{nn.Linear}`` (what torch's quantize_dynamic reaches:
the feed-forward and the pooler; attention stays float) and ``{nn.Linear,
nn.MultiheadAttention}`` (attention's input/output projections in int8 too).

    python examples/bert_encoder.py                 # hidden 256, 2 layers, seq 128
    python examples/bert_encoder.py --small         # a seconds-long run (the test's)
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import npquant
import npquant.nn as qnn

warnings.filterwarnings("ignore", message=".*deprecated.*")


class TorchBert(torch.nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, ffn: int, max_len: int) -> None:
        super().__init__()
        self.layers = layers
        self.word_embeddings = torch.nn.Embedding(vocab, hidden, padding_idx=0)
        self.position_embeddings = torch.nn.Embedding(max_len, hidden)
        self.emb_norm = torch.nn.LayerNorm(hidden, eps=1e-12)
        for i in range(layers):
            setattr(
                self,
                f"layer{i}",
                torch.nn.TransformerEncoderLayer(hidden, heads, ffn, dropout=0.0, activation="gelu", batch_first=True),
            )
        self.pooler = torch.nn.Linear(hidden, hidden)

    def forward(self, ids: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1])
        x = self.emb_norm(self.word_embeddings(ids) + self.position_embeddings(pos))
        for i in range(self.layers):
            x = getattr(self, f"layer{i}")(x, src_key_padding_mask=pad_mask)
        return torch.tanh(self.pooler(x[:, 0]))


class NpqBert(qnn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, ffn: int, max_len: int) -> None:
        super().__init__()
        self.layers = layers
        self.word_embeddings = qnn.Embedding(vocab, hidden, padding_idx=0)
        self.position_embeddings = qnn.Embedding(max_len, hidden)
        self.emb_norm = qnn.LayerNorm(hidden, eps=1e-12)
        for i in range(layers):
            setattr(
                self,
                f"layer{i}",
                qnn.TransformerEncoderLayer(hidden, heads, ffn, dropout=0.0, activation="gelu", batch_first=True),
            )
        self.pooler = qnn.Linear(hidden, hidden)
        self.pooler_act = qnn.Tanh()

    def forward(self, ids: np.ndarray, pad_mask: np.ndarray) -> np.ndarray:
        pos = np.arange(ids.shape[1])
        x = self.emb_norm(self.word_embeddings(ids) + self.position_embeddings(pos))
        for i in range(self.layers):
            x = getattr(self, f"layer{i}")(x, src_key_padding_mask=pad_mask)
        out: np.ndarray = self.pooler_act(self.pooler(x[:, 0]))
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def latencies_ms(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median wall time of each fn, timed round-robin (one call of each per round), so
    that load from other processes drifting during the run hits every model alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def inputs(batch: int, seq: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(1, vocab, (batch, seq))
    mask = np.zeros((batch, seq), bool)
    for b in range(batch):  # ragged sentences, padded with id 0
        n = int(rng.integers(seq // 2, seq + 1))
        ids[b, n:], mask[b, n:] = 0, True
    return ids, mask


def run(
    vocab: int = 8000,
    hidden: int = 256,
    layers: int = 2,
    heads: int = 4,
    ffn: int = 1024,
    seq: int = 128,
    repeat: int = 20,
    threads: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    npquant.set_num_threads(threads)
    # NumPy's BLAS (attention's float matmuls) gets the same thread count: OpenBLAS
    # threads spinning beside npquant's and torch's turn each matmul from ~0.2 ms into
    # ~5 ms on a busy 2-core machine.
    with threadpool_limits(threads):
        return _run(vocab, hidden, layers, heads, ffn, seq, repeat, seed)


def _run(
    vocab: int, hidden: int, layers: int, heads: int, ffn: int, seq: int, repeat: int, seed: int
) -> dict[str, Any]:
    tm = TorchBert(vocab, hidden, layers, heads, ffn, seq).eval()
    fm = NpqBert(vocab, hidden, layers, heads, ffn, seq)
    fm.load_state_dict(tm.state_dict())
    tq = torch.ao.quantization.quantize_dynamic(tm, {torch.nn.Linear}, dtype=torch.qint8)
    models: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "npquant fp32": fm,
        "npquant int8 {Linear}": npquant.quantize_dynamic(fm, {qnn.Linear}),
        "npquant int8 {Linear, MHA}": npquant.quantize_dynamic(fm, {qnn.Linear, qnn.MultiheadAttention}),
    }

    def torch_fn(m: torch.nn.Module, fastpath: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def f(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            # torch's encoder fast path fails on its own dynamic quantized layers (it reads
            # linear1.weight, a method there): those run the regular path, as torch must.
            torch.backends.mha.set_fastpath_enabled(fastpath)
            with torch.inference_mode():
                out = m(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            torch.backends.mha.set_fastpath_enabled(True)
            return out

        return f

    models["torch fp32"] = torch_fn(tm, True)
    models["torch int8 quantize_dynamic"] = torch_fn(tq, False)
    rng = np.random.default_rng(seed)
    ids8, mask8 = inputs(8, seq, vocab, rng)
    ref = models["torch fp32"](ids8, mask8)
    result: dict[str, Any] = {name: {"cosine": cosine(fn(ids8, mask8), ref)} for name, fn in models.items()}
    for batch in (1, 8):
        ids, mask = ids8[:batch], mask8[:batch]
        calls = {name: (lambda fn=fn: fn(ids, mask)) for name, fn in models.items()}
        for name, ms in latencies_ms(calls, repeat).items():
            result[name][f"ms_b{batch}"] = ms
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{'model':<30}{'cosine to fp32':>16}{'ms batch 1':>12}{'ms batch 8':>12}"]
    for name, r in result.items():
        lines.append(f"{name:<30}{r['cosine']:>16.6f}{r['ms_b1']:>12.2f}{r['ms_b8']:>12.2f}")
    t = result["torch int8 quantize_dynamic"]
    for name in ("npquant int8 {Linear}", "npquant int8 {Linear, MHA}"):
        r = result[name]
        lines.append(
            f"{name} speed-up over torch int8: batch 1 {t['ms_b1'] / r['ms_b1']:.2f}x, "
            f"batch 8 {t['ms_b8'] / r['ms_b8']:.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="a tiny model and few repeats (seconds)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    if a.small:
        res = run(vocab=100, hidden=32, layers=2, heads=2, ffn=64, seq=16, repeat=2, threads=a.threads)
    else:
        res = run(repeat=a.repeat, threads=a.threads)
    print(report(res))


if __name__ == "__main__":
    main()
