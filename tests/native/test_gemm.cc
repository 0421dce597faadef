// Every runnable GEMM ukernel against npq::ref, bit for bit, on the edge grid
// (m 1..MR, n 1..2NR+1, k in {1, KR-1, KR, KR+1, 7, 13, 61, 127, 257, 4096}),
// with extreme zero points, weights at -128 and 127, binding clamps, padded
// strides, junk in A's padding, both epilogues, and random tiles.
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
enum Pattern { kRandom, kAllMin, kAllMax, kCorners, kTiny, kNumPatterns };

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
    case 0: p.out_min = 0, p.out_max = 255; break;
    case 1: p.out_min = p.out_zp, p.out_max = 255; break;  // fused ReLU
    default: p.out_min = static_cast<int32_t>(rng.range(0, 120));
             p.out_max = static_cast<int32_t>(rng.range(p.out_min + 1, 255));
  }
  p.bias_s.resize(n_padded);
  p.mult.resize(n_padded);
  const float typical = 1.0f / (std::sqrt(static_cast<float>(k)) * 128.0f * 100.0f);
  for (size_t j = 0; j < n_padded; ++j) {
    float mult;
    switch ((idx / 3 + j) % 5) {
      case 0: mult = typical * rng.uniform(0.5f, 40.0f); break;
      case 1: mult = 1e-9f; break;                       // everything lands on the zero point
      case 2: mult = rng.uniform(1.0f, 1e4f); break;     // saturates, |v| beyond 2^20
      case 3: mult = 0.5f; break;                        // ties: odd acc gives x.5
      default: mult = rng.uniform(1e-6f, 1e-2f);
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

std::string where(const QGemmKernel& kk, const char* epi, size_t m, size_t n, size_t k,
                  size_t r, size_t c) {
  return std::string(epi) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
         " k=" + std::to_string(k) + " at (" + std::to_string(r) + "," + std::to_string(c) + ")";
}

// Runs the requant kernel on the top-left m x n of the problem and compares it
// with the first m rows / n columns of want (want has ld columns).
void check_requant(const QGemmKernel& kk, const Problem& pr, const npq::PackedWeights& pw,
                   const RequantParams& rp, size_t m, size_t n, size_t c_extra,
                   const std::vector<uint8_t>& want, size_t ld, Tally& t) {
  const size_t c_stride = n + c_extra;
  Guarded c(m * c_stride);
  for (size_t r = 0; r < m; ++r) c.allow(r * c_stride, n);
  std::vector<int32_t> zp(m, rp.a_zp);
  npq::RequantEpilogue ep{rp.bias_s.data(), rp.mult.data(), rp.out_zp, rp.out_min, rp.out_max};
  kk.requant(m, n, pw.kp(), pr.a.data(), pr.a_stride, pw.panel(0), zp.data(), c.data(),
             c_stride, &ep);
  std::string msg;
  if (!c.intact(&msg)) {
    t.fail(kk.name, where(kk, "requant", m, n, pr.k, 0, 0) + ": " + msg);
    return;
  }
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j) {
      const uint8_t got = c.data()[r * c_stride + j], exp = want[r * ld + j];
      if (got != exp) {
        t.fail(kk.name, where(kk, "requant", m, n, pr.k, r, j) + ": got " +
                            std::to_string(got) + " want " + std::to_string(exp));
        return;
      }
    }
  t.pass(kk.name);
}

void check_dequant(const QGemmKernel& kk, const Problem& pr, const npq::PackedWeights& pw,
                   const DequantParams& dp, size_t m, size_t n, size_t c_extra,
                   const std::vector<float>& want, size_t ld, Tally& t) {
  const size_t c_stride = (n + c_extra) * sizeof(float);
  Guarded c(m * c_stride);
  for (size_t r = 0; r < m; ++r) c.allow(r * c_stride, n * sizeof(float));
  npq::DequantEpilogue ep{dp.a_scale.data(), dp.w_scale.data(), dp.bias.data()};
  kk.dequant(m, n, pw.kp(), pr.a.data(), pr.a_stride, pw.panel(0), dp.a_zp.data(),
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
        t.fail(kk.name, where(kk, "dequant", m, n, pr.k, r, j) + ": got " +
                            std::to_string(got) + " want " + std::to_string(exp));
        return;
      }
    }
  t.pass(kk.name);
}

// One problem of mm x nn (the largest tile the grid asks for) checked on every
// m <= mm, n <= nn sub-tile: each output depends only on its row and column,
// so the reference is computed once and sliced.
void check_problem(const QGemmKernel& kk, const Problem& pr, size_t idx, bool all_subtiles,
                   Rng& rng, Tally& t) {
  const npq::PackedWeights pw(pr.w.data(), pr.n, pr.k, pr.k, kk.layout);
  const size_t np = pw.n_padded(), mm = pr.m, nn = pr.n;
  const RequantParams rp = make_requant(idx, np, pr.k, rng);
  const DequantParams dp = make_dequant(idx, mm, np, rng);
  std::vector<uint8_t> want_q(mm * nn);
  std::vector<float> want_y(mm * nn);
  npq::ref::qgemm_requant(mm, nn, pr.k, pr.a.data(), pr.a_stride, rp.a_zp, pr.w.data(), pr.k,
                          rp.bias_s.data(), rp.mult.data(), rp.out_zp, rp.out_min, rp.out_max,
                          want_q.data(), nn);
  npq::ref::qgemm_dequant(mm, nn, pr.k, pr.a.data(), pr.a_stride, dp.a_zp.data(),
                          dp.a_scale.data(), pr.w.data(), pr.k, dp.w_scale.data(),
                          dp.bias.data(), want_y.data(), nn);
  const size_t c_extra = idx % 3 == 0 ? 0 : 5 + idx % 11;
  for (size_t m = all_subtiles ? 1 : mm; m <= mm; ++m)
    for (size_t n = all_subtiles ? 1 : nn; n <= nn; ++n) {
      check_requant(kk, pr, pw, rp, m, n, c_extra, want_q, nn, t);
      check_dequant(kk, pr, pw, dp, m, n, c_extra, want_y, nn, t);
    }
}

void edge_grid(const QGemmKernel& kk, Tally& t, size_t max_k = 4096) {
  const size_t mr = kk.mr, nr = kk.layout.nr, kr = kk.layout.kr;
  std::vector<size_t> ks = {1, kr - 1, kr, kr + 1, 7, 13, 61, 127, 257, max_k};
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
  }
}

#if defined(NPQ_TEST_AMX_EMULATED)
// One K value of the edge grid, every data pattern.
void edge_grid_k(const QGemmKernel& kk, Tally& t, size_t k) {
  Rng rng(0x5EED1000 + k);
  for (int p = 0; p < kNumPatterns; ++p) {
    Problem pr = make_problem(kk.mr, 2 * kk.layout.nr + 1, k, kk.layout.k_align, 1 + p, static_cast<Pattern>(p), rng);
    check_problem(kk, pr, p, true, rng, t);
  }
}
#endif

void random_tiles(const QGemmKernel& kk, Tally& t) {
  Rng rng(0xABCDEF + kk.mr);
  for (size_t i = 0; i < 300; ++i) {
    const size_t m = rng.range(1, kk.mr), n = rng.range(1, 5 * kk.layout.nr);
    const size_t k = rng.range(1, i % 10 == 0 ? 3000 : 300);
    const Pattern pat = static_cast<Pattern>(rng.range(0, kNumPatterns - 1));
    Problem pr = make_problem(m, n, k, kk.layout.k_align, rng.range(0, 40), pat, rng);
    check_problem(kk, pr, rng.next() % 1000, false, rng, t);
  }
}

}  // namespace

#if defined(NPQ_TEST_AMX_EMULATED)
npq::QGemmKernel amx_emulated_kernel();  // test_amx_emulated.cc
#endif

void test_gemm_kernels(Tally& t) {
  for (const QGemmKernel& kk : npq::runnable_gemm_kernels()) {
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
