"""npquant.models against torchvision.models.quantization: the issue-13 acceptance table.

Manual measurement (torchvision is not importable beside the system torch), run with the
torch 2.14 + torchvision venv and this worktree's npquant build:

    NPQUANT_SITE=/path/to/venv-with-npquant/lib/python3.11/site-packages \\
        /work/venv-tv/bin/python bench/vision_models.py [--models resnet18 ...] [--size 64]

Per model: torchvision's quantizable model (weights=None, quantize=False, fixed seed, BatchNorm
statistics randomized), its state dict loaded into npquant.models.<name>, then
- fp32: max |npquant - torch| / max |torch| on the same images;
- torch int8: fuse_model, HistogramObserver (reduce_range=False) + per-channel weights,
  calibrate, convert;
- qparams: torch's observers' inputs (torch's own float activations, recorded) fed to
  npquant's observers of the same names: how many give torch's qparams bit for bit;
- int8 given torch's qparams: npquant converted from those observers; fraction of output
  elements identical to torch int8's;
- npquant int8 with its own calibration (its float activations): qparams identical to
  torch's, and SQNR vs torch fp32 for npquant's and torch's int8.
"""

from __future__ import annotations

import argparse
import os
import site
import warnings

import numpy as np

if os.environ.get("NPQUANT_SITE"):
    site.addsitedir(os.environ["NPQUANT_SITE"])

MODELS = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "googlenet",
    "inception_v3",
)


def sqnr(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - y) ** 2.0), 1e-30)))


def randomize_bn(torch, model) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def observers(model, cls) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, cls) and "weight_fake" not in n}


def run(name: str, size: int, calib: int, seed: int) -> dict:
    import torch
    import torchvision.models.quantization as tvq

    import npquant
    import npquant.models as nm
    from npquant.observers import ObserverBase

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tm = getattr(tvq, name)(weights=None, quantize=False)
    size = max(size, 80) if name == "inception_v3" else size  # Inception v3 needs >= 75
    randomize_bn(torch, tm)
    tm.eval()
    state = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    model = getattr(nm, name)(weights=state)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
    yn = model(x)
    fp32_rel = float(np.abs(yn - yt).max() / np.abs(yt).max())

    obs = torch.ao.quantization.observer
    tm.fuse_model()
    tm.qconfig = torch.ao.quantization.QConfig(
        activation=obs.HistogramObserver.with_args(reduce_range=False),
        weight=obs.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    tp = torch.ao.quantization.prepare(tm)
    seen: dict = {}
    for n, o in observers(tp, torch.ao.quantization.ObserverBase).items():
        o.register_forward_pre_hook(
            lambda mod, args, n=n: seen.setdefault(n, []).append(args[0].detach().numpy().copy())
        )
    batches = [rng.standard_normal((4, 3, size, size)).astype(np.float32) for _ in range(calib)]
    with torch.no_grad():
        for b in batches:
            tp(torch.from_numpy(b))
    tq = torch.ao.quantization.convert(tp)
    with torch.no_grad():
        qt = tq(torch.from_numpy(x)).numpy()
    # observers torch attached but never called (FloatFunctionals of blocks without a residual) are left out
    tq_params = {
        n: tuple(t.numpy() for t in o.calculate_qparams())
        for n, o in observers(tp, torch.ao.quantization.ObserverBase).items()
        if n in seen
    }

    model.fuse_model()
    model.qconfig = npquant.get_default_qconfig("x86")

    def same_qparams(prepared) -> tuple:
        nobs = observers(prepared, ObserverBase)
        same = sum(
            1
            for n, o in nobs.items()
            if n in tq_params and all(np.array_equal(a, b) for a, b in zip(o.calculate_qparams(), tq_params[n]))
        )
        return same, len(tq_params)

    # npquant's observers fed torch's float activations
    fed = npquant.prepare(model)
    for n, o in observers(fed, ObserverBase).items():
        for a in seen.get(n, []):
            o(a)
    fed_same = same_qparams(fed)
    qn_torchq = npquant.convert(fed)(x)
    identical = float(np.mean(qn_torchq == qt))

    # npquant's own calibration
    own = npquant.prepare(model)
    for b in batches:
        own(b)
    own_same = same_qparams(own)
    qn = npquant.convert(own)(x)
    return dict(
        model=name,
        fp32_rel=fp32_rel,
        identical=identical,
        fed_same=fed_same,
        own_same=own_same,
        sqnr_npq=sqnr(yt, qn),
        sqnr_torch=sqnr(yt, qt),
        sqnr_npq_torchq=sqnr(yt, qn_torchq),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--calib", type=int, default=4, help="calibration batches of 4 images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"needs torch and torchvision ({e}); see the docstring")
        return
    warnings.filterwarnings("ignore")
    import npquant

    print(f"npquant from {npquant.__file__}")
    print(
        "| model | fp32 rel diff | int8 identical given torch's qparams | qparams identical "
        "(torch's activations) | qparams identical (own calibration) | SQNR npquant int8 (own) | "
        "SQNR npquant int8 (torch's qparams) | SQNR torch int8 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = run(name, args.size, args.calib, args.seed)
        print(
            f"| {r['model']} | {r['fp32_rel']:.1e} | {r['identical']:.4f} | {r['fed_same'][0]}/{r['fed_same'][1]} | "
            f"{r['own_same'][0]}/{r['own_same'][1]} | {r['sqnr_npq']:.1f} dB | {r['sqnr_npq_torchq']:.1f} dB | "
            f"{r['sqnr_torch']:.1f} dB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
