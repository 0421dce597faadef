"""Export of ChannelShuffle and Upsample (nearest, bilinear), the same in every format.

Both move or weight values whose indices npquant computes at export time, so the
graph states npquant's arithmetic exactly: nearest is two Gathers with npquant's
source indices (on the codes of a QTensor); channel shuffle is Reshape, Transpose,
Reshape; bilinear gathers the four neighbours and weights them with npquant's float32
lambdas in npquant's order, and on a QTensor subtracts the zero point, rounds half to
even, adds it back and clips, as npquant does. ONNX Runtime's output therefore equals
npquant's bit for bit (Mul/Add/Sub/Round are single IEEE operations)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn import upsampling as up
from ..qtensor import QTensor
from ._errors import ExportError


def _gather(g: Any, x: str, idx: np.ndarray, axis: int, base: str) -> str:
    return g.node("Gather", [x, g.const(f"{base}_idx{axis}", idx.astype(np.int64))], base, axis=axis)


def _geometry(call: Any) -> tuple:
    mod, x, y = call.module, call.inputs[0], call.output
    if len(x.shape) != 4:
        raise ExportError(f"'{call.name}': Upsample exports 4-D inputs only")
    _, scales = up._output_size(tuple(x.shape[2:]), mod.size, mod.scale_factor)
    return tuple(x.shape[2:]), tuple(y.shape[2:]), scales


def upsample(g: Any, call: Any, base: str) -> None:
    mod, x = call.module, call.inputs[0]
    src = g.value(x).name  # codes of a QTensor, or the float tensor
    (h, w), (oh, ow), scales = _geometry(call)
    if mod.mode == "nearest":
        y = _gather(
            g,
            _gather(g, src, up._nearest_index(h, oh, scales[0]), 2, base),
            up._nearest_index(w, ow, scales[1]),
            3,
            base,
        )
        g.bind(call.output, y)
        return
    quantized = isinstance(x, QTensor)
    if quantized and (oh, ow) == (h, w):
        g.bind(call.output, g.node("Identity", [src], base))
        return
    v = g.node("Cast", [src], base, to=1) if quantized else src  # 1 = FLOAT
    ac = bool(mod.align_corners)
    h0, h1, hl0, hl1 = up._linear_params(h, oh, ac, scales[0])
    w0, w1, wl0, wl1 = up._linear_params(w, ow, ac, scales[1])
    top, bot = _gather(g, v, h0, 2, base + "_t"), _gather(g, v, h1, 2, base + "_b")

    def c(name: str, a: np.ndarray, shape: tuple) -> str:
        return g.const(f"{base}_{name}", a.astype(np.float32).reshape(shape))

    def row(r: str, tag: str) -> str:
        left = g.node("Mul", [c("wl0", wl0, (1, 1, 1, ow)), _gather(g, r, w0, 3, f"{base}_{tag}0")], base)
        right = g.node("Mul", [c("wl1", wl1, (1, 1, 1, ow)), _gather(g, r, w1, 3, f"{base}_{tag}1")], base)
        return g.node("Add", [left, right], base)

    y = g.node(
        "Add",
        [
            g.node("Mul", [c("hl0", hl0, (1, 1, oh, 1)), row(top, "t")], base),
            g.node("Mul", [c("hl1", hl1, (1, 1, oh, 1)), row(bot, "b")], base),
        ],
        base,
    )
    if quantized:
        zp = g.const(base + "_zp", np.float32(x.q_zero_point()))
        y = g.node("Add", [g.node("Round", [g.node("Sub", [y, zp], base)], base), zp], base)
        y = g.node(
            "Clip",
            [y, g.const(base + "_lo", np.float32(x.dtype.qmin)), g.const(base + "_hi", np.float32(x.dtype.qmax))],
            base,
        )
        y = g.node("Cast", [y], base, to=2 if x.dtype.qmin == 0 else 3)  # UINT8 / INT8
    g.bind(call.output, y)


def channel_shuffle(g: Any, call: Any, base: str) -> None:
    x, groups = call.inputs[0], call.module.groups
    if len(x.shape) != 4:
        raise ExportError(f"'{call.name}': ChannelShuffle exports 4-D inputs only")
    _, c, h, w = x.shape
    y = g.node("Reshape", [g.value(x).name, g.const(base + "_s1", np.array([0, groups, c // groups, h * w]))], base)
    y = g.node("Transpose", [y], base, perm=[0, 2, 1, 3])
    g.bind(call.output, g.node("Reshape", [y, g.const(base + "_s2", np.array([0, c, h, w]))], base))
