"""Bar charts of ``npquant bench`` results (matplotlib, optional)."""

from __future__ import annotations

__all__ = ["plot_results"]

_TITLES = {"linear": "Linear (M,K,N)", "conv": "Conv2d (N,C,H,W,Cout,k,stride,groups)"}


def plot_results(result: dict, path: str) -> str:
    """Draws one grouped bar chart per table in ``result`` (the dict
    ``npquant.benchmark.run`` returns): GMAC/s per shape, one bar per
    implementation. Writes ``path`` (PNG) and returns it."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    tables = [(k, result[k]) for k in ("linear", "conv") if result.get(k)]
    if not tables:
        raise ValueError("nothing to plot: the benchmark produced no rows")
    fig, axes = plt.subplots(len(tables), 1, figsize=(12, 4.5 * len(tables)), squeeze=False)
    for ax, (key, rows) in zip(axes[:, 0], tables):
        _bars(ax, rows, _TITLES[key])
    meta = result.get("meta", {})
    fig.suptitle(f"npquant ({meta.get('npquant_isa', '?')}) vs peers, {meta.get('threads', '?')} thread(s), "
                 f"{meta.get('cpu', '')}: GMAC/s, higher is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ax, rows: list, title: str) -> None:
    impls = []
    for r in rows:
        for name in r["gmacs"]:
            if name not in impls:
                impls.append(name)
    width = 0.85 / max(len(impls), 1)
    for i, name in enumerate(impls):
        xs = [j + (i - (len(impls) - 1) / 2) * width for j in range(len(rows))]
        ys = [r["gmacs"].get(name, 0.0) for r in rows]
        ax.bar(xs, ys, width, label=name, edgecolor="black" if name.startswith("npquant") else None,
               linewidth=1.2 if name.startswith("npquant") else 0)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["shape"] for r in rows], fontsize=8)
    ax.set_ylabel("GMAC/s")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(len(impls), 4))
    ax.grid(axis="y", alpha=0.3)
