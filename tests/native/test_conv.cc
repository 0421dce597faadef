// Conv2d (ops/conv2d.h) with the conv kernels of every runnable ISA, on every
// path (gemm, igemm and the gathered GEMM, dwconv), against ref::conv2d_requant
// bit for bit. Inputs end at a guard page (an over-read faults), outputs are
// canary-guarded (an out-of-bounds write fails the check).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"
#include "npquant/ops/conv2d.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace npqtest {
namespace {

// `bytes` readable bytes that end exactly where an inaccessible page begins.
struct Case {
  npq::ConvGeometry g;
  size_t n, h, w;
};

std::string describe(const Case& c) {
  const npq::ConvGeometry& g = c.g;
  auto s = [](size_t v) { return std::to_string(v); };
  return "N,H,W,C=" + s(c.n) + "," + s(c.h) + "," + s(c.w) + "," + s(g.in_c) +
         " out=" + s(g.out_c) + " groups=" + s(g.groups) + " k=" + s(g.kh) + "x" + s(g.kw) +
         " stride=" + s(g.stride_h) + "," + s(g.stride_w) + " dil=" + s(g.dil_h) + "," +
         s(g.dil_w) + " pad=" + s(g.pad_top) + "," + s(g.pad_left) + "," + s(g.pad_bottom) + "," +
         s(g.pad_right);
}

size_t out_size(size_t in, size_t k, size_t s, size_t d, size_t p0, size_t p1) {
  return (in + p0 + p1 - d * (k - 1) - 1) / s + 1;
}

// How run_case draws weights and the input zero point.
struct Draw {
  // -1: random int8 weights (all -128/127 one time in five, with all-0/255 inputs);
  // n >= 0: weights in [-127, 127] plus n of -128 in every panel of 16 output
  // channels of each group (the w127 fix table holds 31: n = 32 must fall back).
  int n128 = -1;
  int xz = -1;  // -1: 0, 255 or random
  // The Winograd path: never by default (the grids below test the other paths), or
  // when_exact / when_faster (the Winograd grid).
  npq::WinogradUse wino = npq::WinogradUse::never;
  // >= 0: every input byte this value, every weight w_fill (the accumulator bounds).
  int x_fill = -1;
  int w_fill = 0;
  // > 0: the largest |acc| of the case; the output scale then maps it to +-100
  // steps around an output zero point of 128 (no clamping, no ReLU), so a wrong
  // accumulator shows.
  double acc_max = 0;
  int expect_wino = -1;  // 1 (0): the layer must (must not) take the Winograd path
  int expect_stem = -1;  // 1 (0): the layer must (must not) take the stem path
  bool nchw = false;     // the input given NCHW (Conv2dArgs::nchw)
};

void run_case(const npq::ConvKernels& k, bool igemm, const Case& c, Rng& rng, Tally& t,
              Draw d = {}) {
  const npq::ConvGeometry& g = c.g;
  const size_t oh = out_size(c.h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom);
  const size_t ow = out_size(c.w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right);
  const size_t x_bytes = c.n * c.h * c.w * g.in_c, y_bytes = c.n * oh * ow * g.out_c;
  EndOfPage x(x_bytes);
  const bool extremes = rng.range(0, 4) == 0;  // all inputs 0/255, all weights -128/127
  for (size_t i = 0; i < x_bytes; ++i)
    x.data()[i] = d.x_fill >= 0 ? static_cast<uint8_t>(d.x_fill)
                  : extremes    ? (rng.coin() ? 255 : 0)
                                : static_cast<uint8_t>(rng.next());
  std::vector<int8_t> w(g.out_c * (g.in_c / g.groups) * g.kh * g.kw);
  size_t most128 = 0;  // the most -128s placed in one panel (small panels hold fewer than n128)
  if (d.x_fill >= 0) {
    std::fill(w.begin(), w.end(), static_cast<int8_t>(d.w_fill));
  } else if (d.n128 < 0) {
    for (auto& v : w) v = extremes ? (rng.coin() ? 127 : -128) : static_cast<int8_t>(rng.next());
  } else {
    // Panels of 16 output channels within each group; n of -128 in each.
    const size_t og = g.out_c / g.groups, per_out = w.size() / g.out_c;
    for (auto& v : w)
      v = extremes ? (rng.coin() ? 127 : -127) : static_cast<int8_t>(rng.range(-127, 127));
    for (size_t grp = 0; grp < g.groups; ++grp)
      for (size_t o0 = 0; o0 < og; o0 += 16) {
        const size_t cols = std::min<size_t>(16, og - o0), cells = cols * per_out;
        int8_t* p0 = w.data() + (grp * og + o0) * per_out;
        size_t placed = 0;
        for (size_t i = 0; i < cells && placed < static_cast<size_t>(d.n128); ++i)
          if (rng.range(0, static_cast<int64_t>(cells - i) - 1) <
              static_cast<int64_t>(static_cast<size_t>(d.n128) - placed)) {
            p0[i] = -128;
            ++placed;
          }
        most128 = std::max(most128, placed);
      }
  }
  std::vector<float> ws(g.out_c), bias(g.out_c);
  for (auto& v : ws) v = rng.uniform(5e-3f, 1.5e-2f);
  for (auto& v : bias) v = rng.uniform(-2.0f, 2.0f);
  const bool with_bias = rng.coin(), relu = d.acc_max == 0 && rng.range(0, 3) == 0;
  const int32_t zps[] = {0, 255, static_cast<int32_t>(rng.range(0, 255))};
  const int32_t xz = d.xz >= 0 ? d.xz : zps[rng.range(0, 2)];
  const int32_t yz = d.acc_max > 0 ? 128 : zps[rng.range(0, 2)];
  // Output range: [0 or yz (ReLU), 255], or a lower top (a fused clamp) in a quarter.
  const int32_t lo = relu ? yz : 0;
  const int32_t hi = rng.range(0, 3) == 0 ? static_cast<int32_t>(rng.range(lo, 255)) : 255;
  const float xs = rng.uniform(5e-3f, 0.1f);
  const float ys = d.acc_max > 0 ? static_cast<float>(xs * 1.5e-2 * d.acc_max / 100)
                                 : xs * 0.01f * 128 * std::sqrt(float(w.size() / g.out_c)) *
                                       rng.uniform(0.2f, 3);

  const npq::PackedConv2d packed(w.data(), g, k, igemm, d.wino);
  const std::string label = std::string(packed.path_name()) + " " + packed.kernel_name();
  if (d.expect_wino >= 0 &&
      (packed.path() == npq::PackedConv2d::Path::winograd) != (d.expect_wino == 1)) {
    t.fail(label, describe(c) + ": path " + packed.path_name() + ", Winograd " +
                      (d.expect_wino ? "expected" : "not expected"));
    return;
  }
  if (d.expect_stem >= 0) {
    // igemm = false forces the gathered path.
    const bool want = igemm && d.expect_stem == 1;
    if ((packed.path() == npq::PackedConv2d::Path::stem) != want) {
      t.fail(label, describe(c) + ": path " + packed.path_name() + ", stem " +
                        (want ? "expected" : "not expected"));
      return;
    }
  }
  // An indirect GEMM must take every layer it can (weights within its fix
  // table), and a w127 one must hand the others to the full-range gathered path.
  if (igemm && k.igemm.requant && d.n128 >= 0 && packed.path() != npq::PackedConv2d::Path::dwconv &&
      packed.path() != npq::PackedConv2d::Path::gemm &&
      (g.in_c / g.groups) % k.igemm.layout.kr == 0) {
    const bool fits = !k.igemm.layout.w127 || most128 <= npq::kW127FixWords - 1;
    if ((packed.path() == npq::PackedConv2d::Path::igemm) != fits) {
      t.fail(label, describe(c) + ": path " + packed.path_name() + " with " +
                        std::to_string(d.n128) + " weights of -128 per panel");
      return;
    }
  }
  Guarded y(y_bytes);
  y.allow(0, y_bytes);
  npq::Conv2dArgs a{
      c.n, c.h, c.w, x.data(), xs,      xz, ws.data(), with_bias ? bias.data() : nullptr,
      ys,  yz,  lo,  hi,       y.data()};
  // NCHW: the same input transposed, also ending at a guard page.
  EndOfPage x_nchw(d.nchw ? x_bytes : 1);
  if (d.nchw) {
    const size_t hw = c.h * c.w;
    for (size_t n = 0; n < c.n; ++n)
      for (size_t p = 0; p < hw; ++p)
        for (size_t ch = 0; ch < g.in_c; ++ch)
          x_nchw.data()[(n * g.in_c + ch) * hw + p] = x.data()[(n * hw + p) * g.in_c + ch];
    a.x = x_nchw.data();
    a.nchw = true;
  }
  npq::conv2d_static(packed, a);

  std::vector<float> bias_s(g.out_c), mult(g.out_c);
  npq::requant_constants(g.out_c, xs, ws.data(), ys, with_bias ? bias.data() : nullptr,
                         bias_s.data(), mult.data());
  std::vector<uint8_t> want(y_bytes);
  npq::ref::conv2d_requant(g, c.n, c.h, c.w, x.data(), xz, w.data(), bias_s.data(), mult.data(), yz,
                           lo, hi, want.data());
  std::string msg;
  if (!y.intact(&msg)) {
    t.fail(label, describe(c) + ": " + msg);
    return;
  }
  for (size_t i = 0; i < y_bytes; ++i)
    if (y.data()[i] != want[i]) {
      t.fail(label, describe(c) + " at output " + std::to_string(i) + ": got " +
                        std::to_string(y.data()[i]) + " want " + std::to_string(want[i]));
      return;
    }
  t.pass(label);
}

template <size_t N>
size_t pick(Rng& rng, const size_t (&v)[N]) {
  return v[rng.range(0, N - 1)];
}

// Kernel shape: kh from ks, kw = kh or another pick, strides 1..max_stride,
// each dilation 2 one time in four.
template <size_t N>
void random_kernel(Rng& rng, const size_t (&ks)[N], int max_stride, npq::ConvGeometry* g) {
  g->kh = pick(rng, ks);
  g->kw = rng.coin() ? g->kh : pick(rng, ks);
  g->stride_h = static_cast<size_t>(rng.range(1, max_stride));
  g->stride_w = static_cast<size_t>(rng.range(1, max_stride));
  g->dil_h = rng.range(0, 3) == 0 ? 2 : 1;
  g->dil_w = rng.range(0, 3) == 0 ? 2 : 1;
}

// Padding of 0..3 on each side, drawn top, left, bottom, right.
void random_padding(Rng& rng, npq::ConvGeometry* g) {
  g->pad_top = static_cast<size_t>(rng.range(0, 3));
  g->pad_left = static_cast<size_t>(rng.range(0, 3));
  g->pad_bottom = static_cast<size_t>(rng.range(0, 3));
  g->pad_right = static_cast<size_t>(rng.range(0, 3));
}

// c with its input grown where needed so that the dilated kernel fits the
// padded input.
Case fit_kernel(Case c) {
  const npq::ConvGeometry& g = c.g;
  const size_t span_h = g.dil_h * (g.kh - 1) + 1, span_w = g.dil_w * (g.kw - 1) + 1;
  if (c.h + g.pad_top + g.pad_bottom < span_h) c.h = span_h - g.pad_top - g.pad_bottom;
  if (c.w + g.pad_left + g.pad_right < span_w) c.w = span_w - g.pad_left - g.pad_right;
  return c;
}

// Geometries around every kernel's edges: channel counts at and around the
// channel tiles (16, 32, 64) and the 4-channel K groups, 1..7 taps, strides,
// dilations, asymmetric padding, tiny and wide images.
Case edge_case(Rng& rng) {
  static const size_t dw_channels[] = {1, 2, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100};
  static const size_t channels[] = {1, 3, 4, 5, 8, 12, 16, 64, 68};
  static const size_t outs[] = {1, 5, 16, 17, 48, 64, 65, 130};
  static const size_t ks[] = {1, 2, 3, 3, 4, 5, 7};
  static const size_t sizes[] = {1, 2, 3, 5, 9, 13, 40};
  npq::ConvGeometry g{};
  const int kind = static_cast<int>(rng.range(0, 3));
  if (kind == 0) {  // depthwise, multiplier 1..3
    g.groups = pick(rng, dw_channels);
    g.in_c = g.groups;
    g.out_c = g.groups * static_cast<size_t>(rng.range(1, 3));
  } else if (kind == 1) {  // grouped
    g.groups = static_cast<size_t>(rng.range(2, 4));
    g.in_c = g.groups * pick(rng, channels);
    g.out_c = g.groups * pick(rng, outs);
  } else {  // dense (kind 3: pointwise)
    g.groups = 1;
    g.in_c = pick(rng, channels);
    g.out_c = pick(rng, outs);
  }
  if (kind == 3) {
    g.kh = g.kw = g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
  } else {
    g.kh = pick(rng, ks);
    g.kw = rng.coin() ? g.kh : pick(rng, ks);
    g.stride_h = static_cast<size_t>(rng.range(1, 3));
    g.stride_w = static_cast<size_t>(rng.range(1, 3));
    g.dil_h = static_cast<size_t>(rng.range(1, 2));
    g.dil_w = static_cast<size_t>(rng.range(1, 2));
    random_padding(rng, &g);
  }
  Case c{g, static_cast<size_t>(rng.range(1, 3)), pick(rng, sizes), pick(rng, sizes)};
  return fit_kernel(c);
}

// Depthwise geometries for the dwconv kernels' edges: every channel count 1..65
// (two 32-channel blocks and one more), kernel rows and columns of 1..7 taps
// (odd and even: the AVX2 kernel pairs the lone last taps of two rows).
Case depthwise_case(Rng& rng, size_t channels) {
  static const size_t ks[] = {1, 2, 3, 3, 3, 4, 5, 5, 7};
  npq::ConvGeometry g{};
  g.groups = g.in_c = channels;
  g.out_c = channels * (rng.range(0, 5) == 0 ? 2 : 1);
  random_kernel(rng, ks, 2, &g);
  g.pad_top = g.pad_bottom = g.kh / 2;
  g.pad_left = g.pad_right = g.kw / 2;
  if (rng.range(0, 3) == 0) g.pad_right = static_cast<size_t>(rng.range(0, 3));
  Case c{g, 1, static_cast<size_t>(rng.range(1, 12)), static_cast<size_t>(rng.range(1, 21))};
  return fit_kernel(c);
}

// MobileNetV2 / V3 / ShuffleNetV2 depthwise layers, scaled down: their channel
// counts (several 32-channel blocks and a partial one), 3x3 and 5x5 at stride 1
// and 2 with "same" padding, odd and even widths.
Case mobilenet_dw_case(Rng& rng) {
  static const size_t chans[] = {16, 24, 58, 72, 96, 116, 120, 144, 200};
  const size_t ch = pick(rng, chans), k = rng.coin() ? 3 : 5;
  npq::ConvGeometry g{};
  g.groups = g.in_c = g.out_c = ch;
  g.kh = g.kw = k;
  g.stride_h = g.stride_w = static_cast<size_t>(rng.range(1, 2));
  g.dil_h = g.dil_w = 1;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = k / 2;
  Case c{g, static_cast<size_t>(rng.range(1, 2)), static_cast<size_t>(rng.range(5, 17)),
         static_cast<size_t>(rng.range(5, 17))};
  return fit_kernel(c);
}

// Convolutions with 1..3 input channels per group (the gathered path's short
// runs): kernels 1, 3, 5, 7, strides, padding, dilation, and groups.
Case small_channel_case(Rng& rng) {
  static const size_t ks[] = {1, 3, 5, 7};
  static const size_t outs[] = {1, 8, 16, 17, 33};
  npq::ConvGeometry g{};
  g.groups = rng.range(0, 3) == 0 ? 2 : 1;
  g.in_c = g.groups * static_cast<size_t>(rng.range(1, 3));
  g.out_c = g.groups * (g.groups > 1 ? 20 : pick(rng, outs));  // 20 per group: not depthwise
  random_kernel(rng, ks, 3, &g);
  random_padding(rng, &g);
  Case c{g, static_cast<size_t>(rng.range(1, 2)), static_cast<size_t>(rng.range(1, 20)),
         static_cast<size_t>(rng.range(1, 20))};
  return fit_kernel(c);
}

// Dense and grouped convs for the indirect GEMMs' edges: cg input channels per
// group (1..33 is swept: K groups of 4 and 8, the gathered path for the others),
// kernels 1x1..5x5 incl. non-square, strides 1..3, dilation, asymmetric padding,
// output channels around the 16-column panels, zero points 0/128/255.
// One-group convs with few input channels for the stem path (kernel rows of kw*C
// canvas bytes rounded up to the kernel's kr): C 1..7, kernels 1..7 (non-square),
// strides 1..3, vertical dilation (horizontal dilation never takes the path),
// asymmetric padding 0..3, output channels around the 16-column panels and the
// 64-column tile, images narrower than the kernel's run, batch 1..3.
Case stem_case(Rng& rng) {
  static const size_t chans[] = {1, 2, 3, 3, 3, 5, 6, 7};
  static const size_t outs[] = {1, 8, 16, 17, 24, 32, 33, 64, 65, 80};
  static const size_t ks[] = {1, 2, 3, 3, 3, 5, 7, 7};
  npq::ConvGeometry g{};
  g.groups = 1;
  g.in_c = pick(rng, chans);
  g.out_c = pick(rng, outs);
  g.kh = pick(rng, ks);
  g.kw = rng.coin() ? g.kh : pick(rng, ks);
  g.stride_h = static_cast<size_t>(rng.range(1, 3));
  g.stride_w = rng.coin() ? g.stride_h : static_cast<size_t>(rng.range(1, 3));
  g.dil_h = rng.range(0, 3) == 0 ? 2 : 1;
  g.dil_w = rng.range(0, 7) == 0 ? 2 : 1;
  random_padding(rng, &g);
  Case c{g, static_cast<size_t>(rng.range(1, 3)), static_cast<size_t>(rng.range(1, 30)),
         static_cast<size_t>(rng.range(1, 30))};
  return fit_kernel(c);
}

// Whether PackedConv2d sends the geometry to the stem path (weights permitting).
bool takes_stem(const npq::ConvKernels& k, const npq::ConvGeometry& g) {
  if (!k.stem.requant || k.stem.layout.w127 || g.groups != 1 || g.dil_w != 1) return false;
  if (g.in_c == 1 && g.out_c == 1) return false;  // depthwise
  const size_t kr = k.stem.layout.kr, run = g.kw * g.in_c;
  if (g.in_c % kr == 0 || 4 * run < 3 * ((run + kr - 1) / kr * kr)) return false;
  // 1x1 stride-1 unpadded convs run the GEMM on the input itself
  return !(g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
           g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0);
}

Case igemm_case(Rng& rng, size_t cg) {
  static const size_t outs[] = {1, 5, 16, 17, 31, 33, 48, 64, 65};
  npq::ConvGeometry g{};
  g.groups = rng.range(0, 3) == 0 ? 2 : 1;
  g.in_c = g.groups * cg;
  g.out_c = g.groups * pick(rng, outs);
  if (g.groups > 1 && cg == 1 && g.out_c / g.groups <= 16)
    g.out_c = g.groups * 17;  // not depthwise
  g.kh = static_cast<size_t>(rng.range(1, 5));
  g.kw = rng.coin() ? g.kh : static_cast<size_t>(rng.range(1, 5));
  g.stride_h = static_cast<size_t>(rng.range(1, 3));
  g.stride_w = rng.coin() ? g.stride_h : static_cast<size_t>(rng.range(1, 3));
  g.dil_h = rng.range(0, 3) == 0 ? 2 : 1;
  g.dil_w = rng.range(0, 3) == 0 ? 2 : 1;
  random_padding(rng, &g);
  if (g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.groups == 1 &&
      g.pad_top + g.pad_left + g.pad_bottom + g.pad_right == 0)
    g.pad_right = 1;  // not pointwise: the igemm/gather path
  Case c{g, static_cast<size_t>(rng.range(1, 2)), static_cast<size_t>(rng.range(1, 12)),
         static_cast<size_t>(rng.range(1, 12))};
  return fit_kernel(c);
}

}  // namespace

// 3x3 stride-1 one-group convs for the Winograd kernels' edges: channel counts around
// the 16-channel transform step and the column panels, images smaller than a tile
// and odd sizes (partial tiles), asymmetric padding 0..2, batch 1..3.
Case winograd_case(Rng& rng) {
  static const size_t channels[] = {1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 48, 64, 100};
  static const size_t outs[] = {1, 2, 5, 8, 9, 16, 17, 23, 24, 25, 47, 48, 49, 64, 65, 97};
  static const size_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16};
  npq::ConvGeometry g{};
  g.groups = 1;
  g.in_c = pick(rng, channels);
  g.out_c = pick(rng, outs);
  g.kh = g.kw = 3;
  g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
  g.pad_top = static_cast<size_t>(rng.range(0, 2));
  g.pad_left = static_cast<size_t>(rng.range(0, 2));
  g.pad_bottom = static_cast<size_t>(rng.range(0, 2));
  g.pad_right = static_cast<size_t>(rng.range(0, 2));
  Case c{g, static_cast<size_t>(rng.range(1, 3)), pick(rng, sizes), pick(rng, sizes)};
  return fit_kernel(c);
}

void test_conv(Tally& t) {
  Rng rng(2024);
  std::vector<npq::Isa> isas;
  for (const auto& k : npq::runnable_gemm_kernels())
    if (isas.empty() || isas.back() != k.isa) isas.push_back(k.isa);
  for (npq::Isa isa : isas) {
    const npq::ConvKernels k = npq::conv_kernels_for(isa);
    for (int i = 0; i < 250; ++i) {
      const Case c = edge_case(rng);
      run_case(k, true, c, rng, t);
      if (k.igemm.requant) run_case(k, false, c, rng, t);  // the gathered path too
    }
    // The depthwise grid as dispatch routes it and, where the ISA routes strided
    // layers to another kernel, forced onto each of its kernels at every stride.
    std::vector<npq::ConvKernels> dws{k};
    for (const npq::DwconvKernel& dk : npq::built_dwconv_kernels())
      if (dk.isa == isa && npq::can_run(dk) &&
          std::string(k.dwconv.name) != k.dwconv_strided.name) {
        dws.push_back(k);
        dws.back().dwconv = dws.back().dwconv_strided = dk;
      }
    for (const npq::ConvKernels& kd : dws) {
      for (size_t ch = 1; ch <= 65; ++ch)
        for (int i = 0; i < 3; ++i) run_case(kd, true, depthwise_case(rng, ch), rng, t);
      for (int i = 0; i < 40; ++i) run_case(kd, true, mobilenet_dw_case(rng), rng, t);
    }
    for (int i = 0; i < 150; ++i) run_case(k, true, small_channel_case(rng), rng, t);
    // The indirect GEMM's grid: every cg 1..33, zero points 0/128/255, -128
    // weights at none, one, the fix table's capacity (31 per panel) and one over.
    static const int n128s[] = {0, 1, 7, 31, 32};
    static const int xzs[] = {0, 128, 255};
    for (size_t cg = 1; cg <= 33; ++cg)
      for (int i = 0; i < (cg % 4 == 0 ? 36 : 6); ++i) {
        const Case c = igemm_case(rng, cg);
        const Draw d{n128s[rng.range(0, 4)], xzs[i % 3]};
        run_case(k, true, c, rng, t, d);
        if (k.igemm.requant && i % 3 == 0) run_case(k, false, c, rng, t, d);
      }
    // Deep layers: K = taps * cg beyond the AVX2 kernels' whole-row buffer (2048),
    // prepared in chunks that split a tap; fix entries in late taps (w127 kernels).
    // cg = 464 has 277 output channels: past a group of 16 panels whose sums wait in
    // memory between the chunks (avx2-c2.h c2_chunked).
    for (const size_t cg : {464, 1028})
      for (int n128 : {0, 31}) {
        npq::ConvGeometry g{};
        g.groups = 1;
        g.in_c = cg;
        g.out_c = cg == 464 ? 277 : 33;
        g.kh = g.kw = 3;
        g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
        g.pad_top = g.pad_left = 1;
        g.pad_bottom = 2;
        g.pad_right = 0;
        run_case(k, true, Case{g, 1, 5, 6}, rng, t, Draw{n128, 128});
      }
    // The stem path: the grid, with its routing asserted (weights with -128 at none,
    // one, the fix table's capacity and one over: w127 kernels must hand the last
    // to the gathered path), the forced gathered path beside it, and the real stems.
    static const int stem128s[] = {0, 0, 1, 31, 32};
    for (int i = 0; i < 300; ++i) {
      const Case c = stem_case(rng);
      Draw d{stem128s[rng.range(0, 4)], i % 4 == 3 ? -1 : xzs[i % 3]};
      d.expect_stem = takes_stem(k, c.g);
      d.nchw = i % 2 == 1;
      run_case(k, true, c, rng, t, d);
      if (i % 4 == 0 || i % 4 == 3) run_case(k, false, c, rng, t, d);
    }
    // Deep stem layers (odd C, so not an igemm layer anywhere): K = 3 * kc beyond the
    // AVX2 stem kernel's whole-row buffer (2048), prepared in chunks, one (C = 1029)
    // splitting a kernel row.
    for (const size_t cg : {301, 1029}) {
      npq::ConvGeometry g{};
      g.groups = 1;
      g.in_c = cg;
      g.out_c = 33;
      g.kh = g.kw = 3;
      g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
      g.pad_top = g.pad_left = 1;
      g.pad_bottom = 2;
      g.pad_right = 0;
      Draw d{0, 128};
      d.expect_stem = takes_stem(k, g);
      run_case(k, true, Case{g, 1, 5, 6}, rng, t, d);
    }
    for (const size_t kk : {3, 7}) {
      npq::ConvGeometry g{};
      g.groups = 1;
      g.in_c = 3;
      g.out_c = kk == 3 ? 32 : 64;
      g.kh = g.kw = kk;
      g.stride_h = g.stride_w = 2;
      g.dil_h = g.dil_w = 1;
      g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = kk / 2;
      Draw d{1, -1};
      d.expect_stem = takes_stem(k, g);
      for (const bool nchw : {false, true}) {
        d.nchw = nchw;
        run_case(k, true, Case{g, 2, 57, 64}, rng, t, d);
      }
    }
    if (!k.wino.name) continue;
    // Winograd: the edge grid, forced wherever exact, and as dispatch routes it.
    for (int i = 0; i < 400; ++i) {
      Draw d;
      d.xz = i % 4 == 3 ? -1 : (i % 4 == 0 ? 0 : i % 4 == 1 ? 255 : 128);
      d.wino = i % 5 == 4 ? npq::WinogradUse::when_faster : npq::WinogradUse::when_exact;
      const Case c = winograd_case(rng);
      // C <= 100 keeps every weight draw within the bound: forced, it must run.
      if (d.wino == npq::WinogradUse::when_exact) d.expect_wino = c.g.in_c * c.g.out_c > 1;
      run_case(k, true, c, rng, t, d);
    }
    // The exactness bound: every weight -128 and every input 255 zero points away, so
    // acc = +-255 * 128 * 9 * C. C = 1,827 is the largest with |acc| < 2^29 (Winograd
    // runs, exact); C = 1,828 must go to the other path.
    for (const size_t cg : {1827, 1828})
      for (int sign = 0; sign < 2; ++sign) {
        npq::ConvGeometry g{};
        g.groups = 1;
        g.in_c = cg;
        g.out_c = 9;
        g.kh = g.kw = 3;
        g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
        g.pad_top = g.pad_left = 0;
        g.pad_bottom = g.pad_right = 1;
        Draw d;
        d.wino = npq::WinogradUse::when_exact;
        d.xz = sign ? 0 : 255;
        d.x_fill = sign ? 255 : 0;
        d.w_fill = -128;
        d.acc_max = 255.0 * 128 * 9 * static_cast<double>(cg);
        d.expect_wino = cg == 1827;
        run_case(k, true, Case{g, 1, 3, 4}, rng, t, d);
      }
  }
}

}  // namespace npqtest
