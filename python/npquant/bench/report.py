"""The benchmark's report: markdown tables (GMAC/s and ratio columns), plots, versions."""

from __future__ import annotations

import sys

import numpy as np

from .peers import Impl, conv_impls, linear_impls, select
from .timing import ElementwiseRow, Row


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _column_isa(name: str, default_isa: str | None) -> str | None:
    """'npquant dyn [avx2]' ran under avx2; unbracketed npquant columns under default_isa."""
    return name[name.rindex("[") + 1 : -1] if name.endswith("]") else default_isa


def ratio_columns(rows: list, impls: list, peaks: dict, default_isa: str | None) -> list:
    """(title, function of a row, unit) for each npquant column: its speed over the best
    peer of its kind, over fp32 (dynamic columns), and as % of its ISA's probe peak
    (peaks: isa -> GMAC/s)."""
    cols = []
    fp32 = [i.name for i in impls if i.kind == "fp32"]
    for npq in (i for i in impls if i.family == "npquant"):
        short = npq.name.replace("npquant ", "")
        peers = [i.name for i in impls if i.kind == npq.kind and i.family != "npquant"]

        def vs_peers(row, npq=npq.name, peers=peers):
            best = max((row.gmacs[p] for p in peers if p in row.gmacs), default=None)
            v = row.gmacs.get(npq)
            return None if v is None or best is None else v / best

        cols.append((f"{short} / best peer", vs_peers, "x"))
        if npq.kind == "dynamic" and fp32:

            def vs_fp32(row, npq=npq.name, ref=fp32[0]):
                v, r = row.gmacs.get(npq), row.gmacs.get(ref)
                return None if v is None or r is None else v / r

            cols.append((f"{short} / {fp32[0]}", vs_fp32, "x"))
        peak = peaks.get(_column_isa(npq.name, default_isa))
        if peak:
            cols.append(
                (
                    f"{short} % peak",
                    lambda row, npq=npq.name, peak=peak: row.gmacs[npq] / peak * 100 if npq in row.gmacs else None,
                    "%",
                )
            )
    return cols


def markdown_table(
    rows: list, impls: list, first: str, peaks: dict | None = None, default_isa: str | None = None
) -> str:
    """GMAC/s per implementation (— where skipped or failed), then the ratio columns."""
    names = [i.name for i in impls]
    ratios = ratio_columns(rows, impls, peaks or {}, default_isa)
    head = [first] + names + [t for t, _, _ in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.shape] + [_fmt(row.gmacs.get(n)) for n in names]
        for _, f, unit in ratios:
            v = f(row)
            cells.append("—" if v is None else f"{v:.2f}x" if unit == "x" else f"{v:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    notes: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for name, note in row.notes.items():
            notes.setdefault((name, note), []).append(row.shape)
    for (name, note), shapes in notes.items():
        where = "all shapes" if len(shapes) == len(rows) else "; ".join(shapes)
        lines.append(f"\n- {name}: {note} ({where})")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Grouped bars of GMAC/s per shape and implementation (Linear and Conv2d panels),
    written to `path` (PNG). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, t) for k, t in (("linear", "Linear (M,K,N)"), ("conv", "Conv2d")) if result[k]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 4.5 * len(panels)), squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], panels):
        rows = rows_from_dicts(result[key])
        names = [n for n in dict.fromkeys(n for r in rows for n in r.gmacs)]
        width = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            xs = [i + j * width for i in range(len(rows))]
            ax.bar(xs, [r.gmacs.get(name, 0.0) for r in rows], width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
        ax.set_xticklabels([r.shape for r in rows], fontsize=8)
        ax.set_ylabel("GMAC/s (higher is better)")
        meta = result["meta"]
        ax.set_title(f"{title}: npquant ISA {meta.get('npquant_isa')}, {meta['threads']} thread(s)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def elementwise_table(rows: list) -> str:
    names = ["npquant", "npquant NumPy path", "PyTorch"]
    head = ["op (NHWC / channels_last)"] + [f"{n} ms" for n in names] + ["PyTorch / npquant", "NumPy path / npquant"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.case] + [f"{r.ms[n]:.3f}" if n in r.ms else r.notes.get(n, "—") for n in names]
        for other in ("PyTorch", "npquant NumPy path"):
            cells.append(f"{r.ms[other] / r.ms['npquant']:.2f}x" if other in r.ms and "npquant" in r.ms else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict:
    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    for mod in ("npquant", "torch", "onnxruntime", "onnx"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = None
    return v


def rows_from_dicts(dicts: list) -> list:
    return [Row(**d) for d in dicts]


def _with_isa_columns(impls: list, rows: list) -> list:
    """The table's columns: impls, then any '<npquant column> [isa]' found in rows."""
    extra: list[Impl] = []
    for row in rows:
        for name in list(row.gmacs) + list(row.notes):
            if name.endswith("]") and name not in [i.name for i in extra]:
                base = next(i for i in impls if name.startswith(i.name + " ["))
                extra.append(Impl(name, base.kind, base.family, base.build))
    return impls + extra


def report(result: dict, args) -> str:
    meta = result["meta"]
    v = meta["versions"]
    out = [
        f"npquant {v.get('npquant')} ISA **{meta.get('npquant_isa')}** "
        f"(kernel {meta.get('npquant_kernel')}), {meta['threads']} thread(s), "
        f"CPU {meta.get('cpu', '?')}; NumPy {v['numpy']}, PyTorch {v.get('torch')}, "
        f"ONNX Runtime {v.get('onnxruntime')}. GMAC/s (higher is better), "
        f"{meta['timing']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after.",
        f"Peaks (GMAC/s): {meta.get('peak_source', '?')}.",
    ]
    for isa, ran in (meta.get("isa_workers") or {}).items():
        out.append(
            f"Columns '[{isa}]': npquant in a worker process under NPQUANT_ISA={isa} "
            f"(ran {ran}), its samples interleaved with the others."
        )
    peaks, isa = meta.get("peaks") or {}, meta.get("npquant_isa")
    if result["linear"]:
        rows = rows_from_dicts(result["linear"])
        impls = _with_isa_columns(select(linear_impls(), args.only), rows)
        out += ["", "### Linear (M,K,N)", "", markdown_table(rows, impls, "M,K,N", peaks, isa)]
    if result["conv"]:
        rows = rows_from_dicts(result["conv"])
        impls = _with_isa_columns(select(conv_impls(), args.only), rows)
        out += [
            "",
            "### Conv2d (N,C,H,W,Cout,k,stride,groups), padding k//2",
            "",
            markdown_table(rows, impls, "N,C,H,W,Cout,k,s,g", peaks, isa),
        ]
    if result.get("elementwise"):
        rows = [ElementwiseRow(**d) for d in result["elementwise"]]
        out += [
            "",
            "### Quantized elementwise (QFunctional), ms per call (lower is better)",
            "",
            elementwise_table(rows),
        ]
    if meta["notes"]:
        out += [""] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(out)
