// Every runnable quantized add / mul kernel against the formulas of their
// contract (ukernel.h: QAddParams, QMulParams), evaluated here one code at a
// time: all 65,536 code pairs for several parameter sets (zero points at the
// ends, fused ReLU, the requantizing add without b, multipliers that saturate),
// every length 0..70 for the tails, inputs ending at an unreadable page and
// canaries around the output.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"

namespace npqtest {
namespace {

// clamp(nearbyint(t) + zp, 0, 255), t clamped to +-65536 first (NaN to the lower end).
uint8_t round_clamp(float t, int32_t zp) {
  t = std::isnan(t) ? -65536.0f : t < -65536.0f ? -65536.0f : t > 65536.0f ? 65536.0f : t;
  const int32_t q = static_cast<int32_t>(std::nearbyint(t)) + zp;
  return static_cast<uint8_t>(q < 0 ? 0 : q > 255 ? 255 : q);
}

uint8_t add_one(uint8_t a, const uint8_t* b, const npq::QAddParams& p) {
  float v = std::fmaf(p.a_scale, static_cast<float>(a), p.a_premul);
  if (b) v = v + std::fmaf(p.b_scale, static_cast<float>(*b), p.b_premul);
  if (p.relu && v < 0.0f) v = 0.0f;
  return round_clamp(v * p.inv_scale, p.zero_point);
}

uint8_t mul_one(uint8_t a, uint8_t b, const npq::QMulParams& p) {
  const int32_t prod = (a - p.a_zero_point) * (b - p.b_zero_point);
  return round_clamp(static_cast<float>(prod) * p.multiplier, p.zero_point);
}

// Runs fn(n, a, b, y) on n codes and compares y with one(i); a and b end at a
// page boundary, y has canaries around it.
template <class Fn, class One>
void check(const char* name, const std::string& what, const std::vector<uint8_t>& av,
           const std::vector<uint8_t>* bv, Fn fn, One one, Tally& t) {
  const size_t n = av.size();
  const EndOfPage a(av.data(), n), b(bv ? bv->data() : av.data(), n);
  Guarded y(n);
  y.allow(0, n);
  fn(n, a.data(), bv ? b.data() : nullptr, y.data());
  std::string msg;
  if (!y.intact(&msg)) {
    t.fail(name, what + ": " + msg);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint8_t want = one(i);
    if (y.data()[i] != want) {
      t.fail(name, what + " n=" + std::to_string(n) + " i=" + std::to_string(i) + " a=" +
                       std::to_string(av[i]) + (bv ? " b=" + std::to_string((*bv)[i]) : "") +
                       ": got " + std::to_string(y.data()[i]) + " want " + std::to_string(want));
      return;
    }
  }
  t.pass(name);
}

// Code vectors: every (a, b) pair, then short random ones.
void pairs(std::vector<uint8_t>* a, std::vector<uint8_t>* b) {
  a->resize(65536);
  b->resize(65536);
  for (size_t i = 0; i < 65536; ++i)
    (*a)[i] = static_cast<uint8_t>(i >> 8), (*b)[i] = static_cast<uint8_t>(i);
}

std::vector<std::vector<uint8_t>> lengths(Rng& rng) {
  std::vector<std::vector<uint8_t>> v;
  for (size_t n = 0; n <= 70; ++n) {
    std::vector<uint8_t> x(n);
    for (auto& c : x) c = static_cast<uint8_t>(rng.next());
    v.push_back(x);
  }
  return v;
}

void test_add(const npq::AddKernel& k, Tally& t) {
  Rng rng(0xADD);
  std::vector<uint8_t> a, b;
  pairs(&a, &b);
  const auto shorts = lengths(rng), shorts_b = lengths(rng);
  const int32_t zps[] = {0, 128, 255, 77};
  for (int i = 0; i < 16; ++i) {
    const float as = rng.uniform(1e-3f, 0.5f), bs = rng.uniform(1e-3f, 0.5f);
    // One output scale in four tiny: the +-65536 clamp before rounding binds.
    const float ys = i % 4 == 3 ? 1e-7f : rng.uniform(1e-3f, 1.0f);
    const int32_t az = zps[i % 4], bz = zps[(i + 1) % 4];
    const npq::QAddParams p{as,        as * static_cast<float>(-az),
                            bs,        bs * static_cast<float>(-bz),
                            1.0f / ys, zps[(i + 2) % 4],
                            i % 2};
    const std::string what = "add params " + std::to_string(i);
    const bool unary = i % 8 >= 6;
    auto fn = [&](size_t n, const uint8_t* x, const uint8_t* y2, uint8_t* out) {
      k.vadd(n, x, unary ? nullptr : y2, out, &p);
    };
    check(
        k.name, what, a, unary ? nullptr : &b, fn,
        [&](size_t j) { return add_one(a[j], unary ? nullptr : &b[j], p); }, t);
    for (size_t s = 0; s < shorts.size(); ++s)
      check(
          k.name, what + " short", shorts[s], unary ? nullptr : &shorts_b[s], fn,
          [&](size_t j) { return add_one(shorts[s][j], unary ? nullptr : &shorts_b[s][j], p); }, t);
  }
}

void test_mul(const npq::MulKernel& k, Tally& t) {
  Rng rng(0x3A1);
  std::vector<uint8_t> a, b;
  pairs(&a, &b);
  const auto shorts = lengths(rng), shorts_b = lengths(rng);
  const int32_t zps[] = {0, 128, 255, 77};
  for (int i = 0; i < 12; ++i) {
    // Multipliers from tiny to saturating (|product| up to 65,025).
    const float mult = i % 3 == 0   ? rng.uniform(1e-5f, 1e-3f)
                       : i % 3 == 1 ? rng.uniform(1e-3f, 0.1f)
                                    : rng.uniform(1.0f, 100.0f);
    const npq::QMulParams p{zps[i % 4], zps[(i + 1) % 4], mult, zps[(i + 3) % 4]};
    const std::string what = "mul params " + std::to_string(i);
    auto fn = [&](size_t n, const uint8_t* x, const uint8_t* y2, uint8_t* out) {
      k.vmul(n, x, y2, out, &p);
    };
    check(k.name, what, a, &b, fn, [&](size_t j) { return mul_one(a[j], b[j], p); }, t);
    for (size_t s = 0; s < shorts.size(); ++s)
      check(
          k.name, what + " short", shorts[s], &shorts_b[s], fn,
          [&](size_t j) { return mul_one(shorts[s][j], shorts_b[s][j], p); }, t);
  }
}

// The table lookup on every code (all 256, in runs of several lengths so every
// tail path runs) for random tables and the identity and reversal tables.
void test_lut(const npq::LutKernel& k, Tally& t) {
  Rng rng(0x107);
  std::vector<uint8_t> every(65536);
  for (size_t i = 0; i < every.size(); ++i) every[i] = static_cast<uint8_t>(i * 97 + (i >> 8));
  const auto shorts = lengths(rng);
  for (int i = 0; i < 8; ++i) {
    uint8_t table[256];
    for (int c = 0; c < 256; ++c)
      table[c] = static_cast<uint8_t>(i == 0 ? c : i == 1 ? 255 - c : rng.next());
    const std::string what = "table " + std::to_string(i);
    auto fn = [&](size_t n, const uint8_t* x, const uint8_t*, uint8_t* out) {
      k.lut(n, x, out, table);
    };
    check(k.name, what, every, nullptr, fn, [&](size_t j) { return table[every[j]]; }, t);
    for (const auto& s : shorts)
      check(k.name, what + " short", s, nullptr, fn, [&](size_t j) { return table[s[j]]; }, t);
  }
}

// Max pooling: random codes, every channel count 1..200 (the full-vector, tail and
// overlap paths of each ISA), 1..9 taps per pixel with some taps on a zero padding row,
// against a byte loop; the output is checked whole, so a store past a pixel fails too.
void test_maxpool(const npq::MaxPoolKernel& k, Tally& t) {
  Rng rng(0x3a7);
  for (size_t c = 1; c <= 200; c += c < 70 ? 1 : 7) {
    const size_t n = 1 + rng.range(0, 6), ks = 1 + rng.range(0, 8), rows = 12;
    std::vector<uint8_t> x(rows * c), zero(c, 0);
    for (auto& v : x) v = static_cast<uint8_t>(rng.next());
    std::vector<const uint8_t*> ind(n * ks);
    for (auto& p : ind)
      p = rng.range(0, 4) == 0 ? zero.data() : x.data() + rng.range(0, rows - 1) * c;
    std::vector<uint8_t> want(n * c + 64, 0xA5), got(n * c + 64, 0xA5);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < c; ++j) {
        uint8_t m = 0;
        for (size_t tp = 0; tp < ks; ++tp) m = std::max(m, ind[i * ks + tp][j]);
        want[i * c + j] = m;
      }
    k.maxpool(n, ks, ind.data(), c, got.data());
    t.check(got == want, k.name,
            "c=" + std::to_string(c) + " n=" + std::to_string(n) + " ks=" + std::to_string(ks));
  }
}

}  // namespace

void test_elementwise_kernels(Tally& t) {
  for (const npq::MaxPoolKernel& k : npq::built_maxpool_kernels())
    if (npq::can_run(k)) test_maxpool(k, t);
  for (const npq::LutKernel& k : npq::built_lut_kernels())
    if (npq::can_run(k)) test_lut(k, t);
  for (const npq::AddKernel& k : npq::built_add_kernels())
    if (npq::can_run(k)) test_add(k, t);
  for (const npq::MulKernel& k : npq::built_mul_kernels())
    if (npq::can_run(k)) test_mul(k, t);
}

}  // namespace npqtest
