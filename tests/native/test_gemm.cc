// Every runnable GEMM ukernel against npq::ref, bit for bit, on the edge grid
// (m 1..MR, n 1..2NR+1, k in {1, KR-1, KR, KR+1, 7, 13, 61, 127, 257, 4096}),
// with extreme zero points, weights at -128 and 127, binding clamps, padded
// strides, junk in A's padding, both epilogues, and random tiles.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"
#include "npquant/ops/pack.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace npqtest {
namespace {

using npq::QGemmKernel;

// Data patterns: random (with -128 and 127 forced in), the two extremes of the
// int32 accumulator, the corners of both ranges, and tiny values.
// Extra patterns for kernels whose layout takes weights in [-127, 127] (w127,
// the AVX2 sign trick): +-127 with activations 0/255 (|a - 128| = 128, the
// int16 pair bound 2*128*127 = 32,512 reached), a panel with exactly as many
// -128 weights as its fix table holds (at activations 0, 127, 128 and 255),
// and one more (the layer must fall back to the full-range kernel).
enum Pattern {
  kRandom,
  kAllMin,
  kAllMax,
  kCorners,
  kTiny,
  kNumPatterns,
  kEdge127 = kNumPatterns + 1,
  kFixFull,
  kFixOver,
  kSignEnd  // w127 kernels only
};

struct Problem {
  size_t m, n, k, kp, a_stride;
  std::vector<uint8_t> a;  // m rows of a_stride bytes; bytes past k are junk
  std::vector<int8_t> w;   // n rows of k
};

Problem make_problem(size_t m, size_t n, size_t k, size_t k_align, size_t a_extra, Pattern p,
                     Rng& rng) {
  Problem pr{m, n, k, npq::round_up(k, k_align), 0, {}, {}};
  pr.a_stride = pr.kp + a_extra;
  pr.a.resize(m * pr.a_stride);
  pr.w.resize(n * k);
  // Junk everywhere first: kernels may read A's padding but must not depend on it.
  for (auto& x : pr.a) x = static_cast<uint8_t>(rng.next());
  for (size_t r = 0; r < m; ++r)
    for (size_t i = 0; i < k; ++i) {
      uint8_t v = static_cast<uint8_t>(rng.next());
      if (p == kAllMin || p == kAllMax) v = 255;
      if (p == kCorners) v = rng.coin() ? 255 : 0;
      if (p == kTiny) v = static_cast<uint8_t>(rng.range(0, 3));
      pr.a[r * pr.a_stride + i] = v;
    }
  for (auto& x : pr.w) {
    int8_t v = static_cast<int8_t>(rng.next());
    if (p == kAllMin) v = -128;
    if (p == kAllMax) v = 127;
    if (p == kCorners) v = rng.coin() ? 127 : -128;
    if (p == kTiny) v = static_cast<int8_t>(rng.range(-2, 2));
    x = v;
  }
  if (p == kRandom && n * k >= 2) {
    pr.w[0] = -128;
    pr.w[n * k - 1] = 127;
  }
  if (p == kEdge127) {
    for (size_t r = 0; r < m; ++r)
      for (size_t i = 0; i < k; ++i) pr.a[r * pr.a_stride + i] = rng.coin() ? 255 : 0;
    for (auto& x : pr.w) x = rng.coin() ? 127 : -127;
  }
  if (p == kFixFull || p == kFixOver) {
    const uint8_t edges[] = {0, 127, 128, 255};
    for (auto& x : pr.w) x = static_cast<int8_t>(rng.range(-127, 127));
    for (auto& x : pr.a)
      if (rng.coin()) x = edges[rng.range(0, 3)];
    // The first panel (16 columns) gets the fix table's capacity (+1), placed
    // at random distinct positions; the second panel, if any, a few.
    const size_t cols = n < 16 ? n : 16;
    const size_t want = npq::kW127FixWords - 1 + (p == kFixOver ? 1 : 0);
    size_t placed = 0;
    for (size_t tries = 0; placed < want && tries < 100000; ++tries) {
      int8_t& x = pr.w[rng.range(0, cols - 1) * k + rng.range(0, k - 1)];
      if (x != -128) x = -128, ++placed;
    }
    for (size_t i = 0; i < 3 && n > 16; ++i)
      pr.w[rng.range(16, n - 1) * k + rng.range(0, k - 1)] = -128;
  }
  return pr;
}

struct RequantParams {
  int32_t a_zp, out_zp, out_min, out_max;
  std::vector<float> bias_s, mult;  // padded to a multiple of NR
};

// Rotates through zero points, clamp modes and multiplier regimes by index.
RequantParams make_requant(size_t idx, size_t n_padded, size_t k, Rng& rng) {
  const int32_t zps[] = {0, 128, 255, static_cast<int32_t>(rng.range(0, 255))};
  RequantParams p;
  p.a_zp = zps[idx % 4];
  p.out_zp = zps[(idx / 4 + 1) % 4];
  switch (idx % 3) {
    case 0:
      p.out_min = 0, p.out_max = 255;
      break;
    case 1:
      p.out_min = p.out_zp, p.out_max = 255;
      break;  // fused ReLU
    default:
      p.out_min = static_cast<int32_t>(rng.range(0, 120));
      p.out_max = static_cast<int32_t>(rng.range(p.out_min + 1, 255));
  }
  p.bias_s.resize(n_padded);
  p.mult.resize(n_padded);
  const float typical = 1.0f / (std::sqrt(static_cast<float>(k)) * 128.0f * 100.0f);
  for (size_t j = 0; j < n_padded; ++j) {
    float mult;
    switch ((idx / 3 + j) % 5) {
      case 0:
        mult = typical * rng.uniform(0.5f, 40.0f);
        break;
      case 1:
        mult = 1e-9f;
        break;  // everything lands on the zero point
      case 2:
        mult = rng.uniform(1.0f, 1e4f);
        break;  // saturates, |v| beyond 2^20
      case 3:
        mult = 0.5f;
        break;  // ties: odd acc gives x.5
      default:
        mult = rng.uniform(1e-6f, 1e-2f);
    }
    p.mult[j] = mult;
    p.bias_s[j] = rng.coin() ? 0.0f : rng.uniform(-3e5f, 3e5f);
    if ((idx + j) % 7 == 0) p.bias_s[j] = 0.5f;  // more ties
    // Huge but finite bias: fl(acc + bias_s) stays finite, v may reach +-Inf.
    if ((idx + j) % 11 == 0) p.bias_s[j] = (j % 2 ? 3.0e38f : -1.0e30f);
  }
  return p;
}

struct DequantParams {
  std::vector<int32_t> a_zp;
  std::vector<float> a_scale, w_scale, bias;  // w_scale/bias padded
};

DequantParams make_dequant(size_t idx, size_t m, size_t n_padded, Rng& rng) {
  DequantParams p;
  const int32_t zps[] = {0, 128, 255};
  for (size_t r = 0; r < m; ++r) {
    p.a_zp.push_back((idx + r) % 4 == 3 ? static_cast<int32_t>(rng.range(0, 255))
                                        : zps[(idx + r) % 3]);
    p.a_scale.push_back(rng.uniform(1e-4f, 0.1f));
  }
  for (size_t j = 0; j < n_padded; ++j) {
    p.w_scale.push_back(rng.uniform(1e-4f, 0.05f));
    p.bias.push_back(idx % 2 ? 0.0f : rng.uniform(-10.0f, 10.0f));
  }
  return p;
}

std::string where(const QGemmKernel& kk, const char* epi, size_t m, size_t n, size_t k, size_t r,
                  size_t c) {
  return std::string(epi) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
         " k=" + std::to_string(k) + " at (" + std::to_string(r) + "," + std::to_string(c) + ")";
}

// Runs the requant kernel on the top-left m x n of the problem and compares it
// with the first m rows / n columns of want (want has ld columns).
void check_requant(const QGemmKernel& kk, const Problem& pr, const uint8_t* a,
                   const npq::PackedWeights& pw, const RequantParams& rp, size_t m, size_t n,
                   size_t c_extra, const std::vector<uint8_t>& want, size_t ld, Tally& t) {
  const size_t c_stride = n + c_extra;
  Guarded c(m * c_stride);
  for (size_t r = 0; r < m; ++r) c.allow(r * c_stride, n);
  std::vector<int32_t> zp(m, rp.a_zp);
  npq::RequantEpilogue ep{rp.bias_s.data(), rp.mult.data(), rp.out_zp, rp.out_min, rp.out_max};
  kk.requant(m, n, pw.kp(), a, pr.a_stride, pw.panel(0), zp.data(), c.data(), c_stride, &ep);
  std::string msg;
  if (!c.intact(&msg)) {
    t.fail(kk.name, where(kk, "requant", m, n, pr.k, 0, 0) + ": " + msg);
    return;
  }
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j) {
      const uint8_t got = c.data()[r * c_stride + j], exp = want[r * ld + j];
      if (got != exp) {
        t.fail(kk.name, where(kk, "requant", m, n, pr.k, r, j) + ": got " + std::to_string(got) +
                            " want " + std::to_string(exp));
        return;
      }
    }
  t.pass(kk.name);
}

void check_dequant(const QGemmKernel& kk, const Problem& pr, const uint8_t* a,
                   const npq::PackedWeights& pw, const DequantParams& dp, size_t m, size_t n,
                   size_t c_extra, const std::vector<float>& want, size_t ld, Tally& t) {
  const size_t c_stride = (n + c_extra) * sizeof(float);
  Guarded c(m * c_stride);
  for (size_t r = 0; r < m; ++r) c.allow(r * c_stride, n * sizeof(float));
  npq::DequantEpilogue ep{dp.a_scale.data(), dp.w_scale.data(), dp.bias.data()};
  kk.dequant(m, n, pw.kp(), a, pr.a_stride, pw.panel(0), dp.a_zp.data(),
             reinterpret_cast<float*>(c.data()), c_stride, &ep);
  std::string msg;
  if (!c.intact(&msg)) {
    t.fail(kk.name, where(kk, "dequant", m, n, pr.k, 0, 0) + ": " + msg);
    return;
  }
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j) {
      float got;
      std::memcpy(&got, c.data() + r * c_stride + j * sizeof(float), sizeof(float));
      const float exp = want[r * ld + j];
      if (std::memcmp(&got, &exp, sizeof(float)) != 0) {
        t.fail(kk.name, where(kk, "dequant", m, n, pr.k, r, j) + ": got " + std::to_string(got) +
                            " want " + std::to_string(exp));
        return;
      }
    }
  t.pass(kk.name);
}

// One problem of mm x nn (the largest tile the grid asks for) checked on every
// m <= mm, n <= nn sub-tile: each output depends only on its row and column,
// so the reference is computed once and sliced.
// A kernel whose layout needs weights in [-127, 127] (w127) runs a layer with
// too many -128 weights in one panel on its fallback, as the drivers do; the
// fallback is then what is checked (counted apart under "<kernel> fallback").
void check_problem(const QGemmKernel& asked, const Problem& pr, size_t idx, bool all_subtiles,
                   Rng& rng, Tally& t) {
  const QGemmKernel& kk = npq::gemm_kernel_for_weights(asked, pr.w.data(), pr.n, pr.k, pr.k);
  if (&kk != &asked) t.pass(std::string(asked.name) + " fallback");
  const npq::PackedWeights pw(pr.w.data(), pr.n, pr.k, pr.k, kk.layout);
  // The fallback may have fewer rows per call than the kernel asked for (drivers tile by
  // the kernel that runs): check the rows it can take.
  const size_t np = pw.n_padded(), mm = std::min<size_t>(pr.m, kk.mr), nn = pr.n;
  const RequantParams rp = make_requant(idx, np, pr.k, rng);
  const DequantParams dp = make_dequant(idx, mm, np, rng);
  std::vector<uint8_t> want_q(mm * nn);
  std::vector<float> want_y(mm * nn);
  npq::ref::qgemm_requant(mm, nn, pr.k, pr.a.data(), pr.a_stride, rp.a_zp, pr.w.data(), pr.k,
                          rp.bias_s.data(), rp.mult.data(), rp.out_zp, rp.out_min, rp.out_max,
                          want_q.data(), nn);
  npq::ref::qgemm_dequant(mm, nn, pr.k, pr.a.data(), pr.a_stride, dp.a_zp.data(), dp.a_scale.data(),
                          pr.w.data(), pr.k, dp.w_scale.data(), dp.bias.data(), want_y.data(), nn);
  const size_t c_extra = idx % 3 == 0 ? 0 : 5 + idx % 11;
  // The kernels see A ending at an unreadable page right after the last row's
  // kp bytes: reading past them faults.
  const EndOfPage a(pr.a.data(), (mm - 1) * pr.a_stride + pw.kp());
  for (size_t m = all_subtiles ? 1 : mm; m <= mm; ++m)
    for (size_t n = all_subtiles ? 1 : nn; n <= nn; ++n) {
      check_requant(kk, pr, a.data(), pw, rp, m, n, c_extra, want_q, nn, t);
      check_dequant(kk, pr, a.data(), pw, dp, m, n, c_extra, want_y, nn, t);
    }
}

void edge_grid(const QGemmKernel& kk, Tally& t, size_t max_k = 4096) {
  const size_t mr = kk.mr, nr = kk.layout.nr, kr = kk.layout.kr;
  if (options().quick) max_k = 257;
  std::vector<size_t> ks = {1, kr - 1, kr, kr + 1, 7, 13, 61, 127, 257, max_k};
  // The AVX2 kernels prepare rows of up to 2048 (6x16c2), 4096 (sign) or 8192 (the
  // 1x16c2 GEMV) values once per call and longer ones in chunks: one K past the
  // largest, with a tail (max_k is past the others).
  if (!options().quick) ks.push_back(8192 + 2 * kr + 3);
  Rng rng(0x5EED0000 + mr * 131 + nr);
  size_t idx = 0;
  for (size_t k : ks) {
    if (k == 0) continue;
    for (int p = 0; p <= kNumPatterns; ++p, ++idx) {
      const Pattern pat = static_cast<Pattern>(p % kNumPatterns);
      const size_t a_extra = idx % 3 == 1 ? 0 : 1 + idx % 29;
      Problem pr = make_problem(mr, 2 * nr + 1, k, kk.layout.k_align, a_extra, pat, rng);
      check_problem(kk, pr, idx, true, rng, t);
    }
    if (!kk.layout.w127) continue;
    for (int p = kEdge127; p < kSignEnd; ++p, ++idx) {
      Problem pr = make_problem(mr, 2 * nr + 1, k, kk.layout.k_align, 1 + idx % 7,
                                static_cast<Pattern>(p), rng);
      check_problem(kk, pr, idx, true, rng, t);
    }
  }
  // Wide and deep: 17 panels and a partial one, K past 2048, so the avx2 6x16c2 GEMM's
  // K-outer chunking (avx2-c2.h c2_chunked) crosses a group of 16 panels.
  if (!options().quick) {
    Problem pr =
        make_problem(mr, 17 * nr + 5, 2048 + 2 * kr + 3, kk.layout.k_align, 3, kRandom, rng);
    check_problem(kk, pr, idx, false, rng, t);
  }
}

#if defined(NPQ_TEST_AMX_EMULATED)
// One K value of the edge grid, every data pattern.
void edge_grid_k(const QGemmKernel& kk, Tally& t, size_t k) {
  Rng rng(0x5EED1000 + k);
  for (int p = 0; p < kNumPatterns; ++p) {
    Problem pr = make_problem(kk.mr, 2 * kk.layout.nr + 1, k, kk.layout.k_align, 1 + p,
                              static_cast<Pattern>(p), rng);
    check_problem(kk, pr, p, true, rng, t);
  }
}
#endif

void random_tiles(const QGemmKernel& kk, Tally& t) {
  Rng rng(0xABCDEF + kk.mr);
  for (size_t i = 0; i < 300; ++i) {
    const size_t m = rng.range(1, kk.mr), n = rng.range(1, 5 * kk.layout.nr);
    const size_t k = rng.range(1, i % 10 == 0 ? 3000 : 300);
    Pattern pat = static_cast<Pattern>(rng.range(0, kNumPatterns - 1));
    if (kk.layout.w127 && i % 3 == 0) pat = static_cast<Pattern>(rng.range(kEdge127, kSignEnd - 1));
    Problem pr = make_problem(m, n, k, kk.layout.k_align, rng.range(0, 40), pat, rng);
    check_problem(kk, pr, rng.next() % 1000, false, rng, t);
  }
}

}  // namespace

#if defined(NPQ_TEST_AMX_EMULATED)
npq::QGemmKernel amx_emulated_kernel();  // test_amx_emulated.cc
#endif

// The per-layer choice for w127 kernels: a panel may hold kW127FixWords - 1
// weights of -128 (the count decides, not where they are), one more sends the
// layer to the full-range kernel of the same ISA; other layouts take anything.
void w127_layer_choice(const QGemmKernel& kk, Tally& t) {
  const std::string label = std::string(kk.name) + " per-layer choice";
  // Three whole panels and a partial one, whatever the kernel's NR.
  const size_t n = 3 * kk.layout.nr + 8, k = 50, cap = npq::kW127FixWords - 1;
  for (size_t panel : {0, 1, 2})
    for (size_t extra : {0, 1}) {
      std::vector<int8_t> w(n * k, 127);
      const size_t c0 = panel * kk.layout.nr, cols = std::min(n - c0, size_t{kk.layout.nr});
      for (size_t i = 0; i < cap + extra; ++i) w[(c0 + i % cols) * k + i / cols] = -128;
      const QGemmKernel& got = npq::gemm_kernel_for_weights(kk, w.data(), n, k, k);
      const bool fell_back = &got != &kk;
      const bool want = kk.layout.w127 && extra == 1;
      t.check(fell_back == want && (!fell_back || !got.layout.w127), label,
              "panel " + std::to_string(panel) + ", " + std::to_string(cap + extra) +
                  " weights of -128: chose " + got.name);
      if (fell_back)
        t.check(got.isa == kk.isa, label,
                std::string("fallback ") + got.name + " is not of the same ISA");
    }
}

void test_gemm_kernels(Tally& t) {
  for (const QGemmKernel& kk : npq::runnable_gemm_kernels()) {
    w127_layer_choice(kk, t);
    edge_grid(kk, t);
    random_tiles(kk, t);
  }
#if defined(NPQ_TEST_AMX_EMULATED)
  // Also its K-tile boundaries (64 +- 1, 128 +- 1); K stops at 300 because
  // the tile model is scalar and the grid runs every sub-tile up to 32 x 65;
  // random_tiles reaches K = 3000.
  const QGemmKernel amx = amx_emulated_kernel();
  if (npq::can_run(amx)) {
    edge_grid(amx, t, 300);
    for (size_t k : {63, 64, 65, 127, 128, 129}) edge_grid_k(amx, t, k);
    random_tiles(amx, t);
  }
#endif
}

}  // namespace npqtest
