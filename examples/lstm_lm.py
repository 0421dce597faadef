"""An LSTM language model, float vs dynamic int8 in npquant vs torch's quantize_dynamic.

PyTorch's canonical use of dynamic quantization: ``quantize_dynamic(model, {nn.LSTM,
nn.Linear})`` on a word or character language model. This script

1. trains a small character-level LSTM LM with PyTorch on the repository's own
   documentation (README.md and docs/*.md: no download), for a few hundred steps;
2. loads the same weights into an npquant.nn model (same attribute names, so
   ``load_state_dict(torch_model.state_dict())`` works as is);
3. quantizes both with dynamic int8 (npquant.quantize_dynamic and
   torch.ao.quantization.quantize_dynamic, {LSTM, Linear}), and float16;
4. reports, on held-out text: next-token agreement with torch fp32 (argmax of the
   logits), cosine similarity of the logits, and the next-character accuracy;
5. times one forward pass over a sequence at batch 1 and 8 (median of interleaved
   runs, the same thread count for both libraries).

    python examples/lstm_lm.py                      # defaults: hidden 256, 2 layers
    python examples/lstm_lm.py --hidden 512 --threads 2

Needs PyTorch (training and the comparison; npquant itself never imports torch).
The embedding is a table lookup (``weight[tokens]``), npquant.nn.Embedding's when
this npquant has it.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
import warnings
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

import npquant

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# ---------------------------------------------------------------- data
def corpus() -> str:
    paths = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    text = "".join(open(p, encoding="utf-8").read() for p in paths if os.path.exists(p))
    if len(text) < 10_000:  # run outside the repository: a synthetic but learnable text
        rng = np.random.default_rng(0)
        words = ["int8", "lstm", "numpy", "exact", "kernel", "scale", "zero", "point", "the", "of", "and"]
        text = " ".join(words[i] for i in rng.integers(0, len(words), 20_000))
    return text


def encode(text: str) -> tuple:
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.array([index[ch] for ch in text], np.int64), vocab


def windows(ids: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(length + 1, n) token windows, time-major like the models' input."""
    starts = rng.integers(0, ids.size - length - 1, n)
    return np.stack([ids[s : s + length + 1] for s in starts], axis=1)


# ---------------------------------------------------------------- models
class TorchLM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, layers)
        self.dec = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(tokens))
        return self.dec(out)


class Lookup(npquant.nn.Module):
    """A table lookup standing in for npquant.nn.Embedding where this npquant lacks it
    (same parameter name, ``weight``, so torch's state dict loads)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.register_parameter("weight", np.zeros((num_embeddings, embedding_dim), np.float32))

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        return self.weight[tokens]


class NpquantLM(npquant.nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.emb = getattr(npquant.nn, "Embedding", Lookup)(vocab, embed)
        self.rnn = npquant.nn.LSTM(embed, hidden, layers)
        self.dec = npquant.nn.Linear(hidden, vocab)

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        out, _ = self.rnn(self.emb(tokens))
        return self.dec(out)


def train(model: TorchLM, ids: np.ndarray, steps: int, length: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    model.train()
    for _ in range(steps):
        w = torch.from_numpy(windows(ids, 32, length, rng))
        logits = model(w[:-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses[0] if losses else float("nan"), float(np.mean(losses[-20:])) if losses else float("nan")


# ---------------------------------------------------------------- metrics
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def agreement(logits: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(logits.argmax(-1) == ref.argmax(-1)))


def median_ms(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each fn, interleaved so machine noise hits all alike."""
    for fn in fns.values():
        fn()  # warm up (packing, caches)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


# ---------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict:
    args = _parse(argv)
    # NumPy's BLAS (npquant fp32's float32 products) gets the same thread count as torch
    # and npquant: OpenBLAS threads spinning after a call steal the core from the next
    # timed model on a busy machine (npquant fp32 took 0.6-1.7 s at batch 8 without this).
    with threadpool_limits(args.threads):
        return _main(args)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=300, help="training steps (batch 32)")
    p.add_argument("--seq", type=int, default=64, help="sequence length (training and timing)")
    p.add_argument("--eval", type=int, default=64, help="held-out sequences for the accuracy proxies")
    p.add_argument("--repeat", type=int, default=30, help="timed runs per model and batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _main(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    npquant.set_num_threads(args.threads)

    ids, vocab = encode(corpus())
    split = int(0.9 * ids.size)
    tm = TorchLM(len(vocab), args.embed, args.hidden, args.layers)
    first, last = train(tm, ids[:split], args.steps, args.seq, args.seed)
    print(f"trained {args.steps} steps on {split} characters (vocab {len(vocab)}): loss {first:.3f} -> {last:.3f}")

    nm = NpquantLM(len(vocab), args.embed, args.hidden, args.layers)
    nm.load_state_dict(tm.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        tq = torch.ao.quantization.quantize_dynamic(tm, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
        tq16 = torch.ao.quantization.quantize_dynamic(tm, {nn.LSTM, nn.Linear}, dtype=torch.float16)
    nq = npquant.quantize_dynamic(nm, {npquant.nn.LSTM, npquant.nn.Linear})
    nq16 = npquant.quantize_dynamic(nm, {npquant.nn.LSTM, npquant.nn.Linear}, dtype=npquant.float16)

    held = windows(ids[split:], args.eval, args.seq, np.random.default_rng(args.seed + 1))
    x, target = held[:-1], held[1:]
    with torch.no_grad():
        tx = torch.from_numpy(x)
        ref = tm(tx).numpy()
        outs = {"torch int8": tq(tx).numpy(), "torch float16": tq16(tx).numpy()}
    outs.update({"npquant fp32": nm(x), "npquant int8": nq(x), "npquant float16": nq16(x)})
    report: dict = {"loss": (first, last), "accuracy_fp32": float(np.mean(ref.argmax(-1) == target))}
    print(
        f"\nheld-out: {args.eval} sequences x {args.seq} characters; torch fp32 next-char accuracy "
        f"{report['accuracy_fp32']:.3f}"
    )
    print(f"{'model':<16} {'agree w/ fp32':>13} {'cosine':>9} {'accuracy':>9} {'max |diff|':>11}")
    for name, out in outs.items():
        row = {
            "agreement": agreement(out, ref),
            "cosine": cosine(out, ref),
            "accuracy": float(np.mean(out.argmax(-1) == target)),
            "max_abs": float(np.max(np.abs(out - ref))),
        }
        report[name] = row
        print(
            f"{name:<16} {row['agreement']:>13.4f} {row['cosine']:>9.6f} {row['accuracy']:>9.3f} "
            f"{row['max_abs']:>11.2e}"
        )

    print(f"\nlatency of one forward pass, {args.seq} steps, {args.threads} thread(s), median of {args.repeat} (ms)")
    print(
        f"{'batch':>5} {'torch fp32':>11} {'torch int8':>11} {'npquant fp32':>13} {'npquant int8':>13} "
        f"{'int8 speedup':>13}"
    )
    for batch in (1, 8):
        tok = x[:, :batch] if x.shape[1] >= batch else np.resize(x, (x.shape[0], batch))
        tok = np.ascontiguousarray(tok)
        ttok = torch.from_numpy(tok)
        with torch.no_grad():
            ms = median_ms(
                {
                    "torch fp32": lambda: tm(ttok),
                    "torch int8": lambda: tq(ttok),
                    "npquant fp32": lambda: nm(tok),
                    "npquant int8": lambda: nq(tok),
                },
                args.repeat,
            )
        speedup = ms["torch int8"] / ms["npquant int8"]
        report[f"latency_b{batch}"] = dict(ms, speedup=speedup)
        print(
            f"{batch:>5} {ms['torch fp32']:>11.2f} {ms['torch int8']:>11.2f} {ms['npquant fp32']:>13.2f} "
            f"{ms['npquant int8']:>13.2f} {speedup:>12.2f}x"
        )
    return report


if __name__ == "__main__":
    main()
