// Every runnable quantize / min-max kernel against npq::ref, bit for bit:
// every length 0..70 (all tail shapes), large random arrays with huge, tiny,
// denormal and signed-zero values, exact .5 ties, values beyond int32, and
// non-finite values at every position for the min/max detection.
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace npqtest {
namespace {

using npq::QuantizeKernel;

// A value drawn from a mix of regimes around the quantization grid of `scale`.
float sample(Rng& rng, float scale, int32_t zp) {
  switch (rng.range(0, 9)) {
    case 0:
      return (static_cast<float>(rng.range(-300, 300)) + 0.5f) * scale;  // ties
    case 1:
      return rng.uniform(-1e30f, 1e30f);  // huge
    case 2:
      return (rng.coin() ? 1 : -1) * rng.uniform(2.2e9f, 3e9f) * scale;  // beyond int32
    case 3:
      return rng.uniform(-1e-38f, 1e-38f);  // tiny, denormal
    case 4:
      return rng.coin() ? 0.0f : -0.0f;
    case 5:
      return (rng.coin() ? 1 : -1) * FLT_MAX;
    case 6:
      return static_cast<float>(rng.range(-zp - 2, 257 - zp)) * scale;  // clamp edges
    default:
      return rng.uniform(-300.0f, 300.0f) * scale;
  }
}

bool check_quantize(const QuantizeKernel& qk, const std::vector<float>& x, float scale, int32_t zp,
                    Tally& t, const std::string& what) {
  const size_t n = x.size();
  Guarded q(n);
  q.allow(0, n);
  const EndOfPage xg(x.data(), n * sizeof(float));  // reading past x faults
  qk.quantize(n, reinterpret_cast<const float*>(xg.data()), 1.0f / scale, zp, q.data());
  std::vector<int32_t> want(n);
  npq::ref::quantize(n, x.data(), scale, zp, 0, 255, want.data());
  std::string msg;
  if (!q.intact(&msg)) return t.fail(qk.name, "quantize " + what + ": " + msg);
  for (size_t i = 0; i < n; ++i)
    if (q.data()[i] != want[i])
      return t.fail(qk.name, "quantize " + what + " n=" + std::to_string(n) + " i=" +
                                 std::to_string(i) + " x=" + std::to_string(x[i]) + ": got " +
                                 std::to_string(q.data()[i]) + " want " + std::to_string(want[i]));
  t.pass(qk.name);
  return true;
}

bool check_minmax(const QuantizeKernel& qk, const std::vector<float>& x, Tally& t,
                  const std::string& what) {
  float lo, hi, rlo, rhi;
  const EndOfPage xg(x.data(), x.size() * sizeof(float));  // reading past x faults
  const bool ok = qk.minmax(x.size(), reinterpret_cast<const float*>(xg.data()), &lo, &hi);
  const bool rok = npq::ref::minmax(x.size(), x.data(), &rlo, &rhi);
  if (ok != rok)
    return t.fail(qk.name, "minmax " + what + " n=" + std::to_string(x.size()) + ": finite flag " +
                               std::to_string(ok) + " want " + std::to_string(rok));
  // Compared by value: -0.0 and 0.0 are interchangeable for choose_qparams.
  if (ok && (lo != rlo || hi != rhi))
    return t.fail(qk.name, "minmax " + what + " n=" + std::to_string(x.size()) + ": got [" +
                               std::to_string(lo) + ", " + std::to_string(hi) + "] want [" +
                               std::to_string(rlo) + ", " + std::to_string(rhi) + "]");
  t.pass(qk.name);
  return true;
}

void test_kernel(const QuantizeKernel& qk, Tally& t) {
  Rng rng(0x9A11);
  const float scales[] = {0.0078125f, 0.1f, 1.0f / 3.0f, 37.5f, 6.1e-5f};
  const int32_t zps[] = {0, 128, 255, 77};
  // Every length 0..70 (min/max from 1), every scale and zero point.
  for (size_t n = 0; n <= 70; ++n)
    for (float s : scales)
      for (int32_t zp : zps) {
        std::vector<float> x(n);
        for (auto& v : x) v = sample(rng, s, zp);
        check_quantize(qk, x, s, zp, t, "short");
        if (n > 0) check_minmax(qk, x, t, "short");
      }
  // Large arrays (with unaligned starts via odd sizes).
  for (size_t i = 0; i < 40; ++i) {
    const size_t n = rng.range(1000, 70000);
    const float s = scales[i % 5];
    const int32_t zp = zps[i % 4];
    std::vector<float> x(n);
    for (auto& v : x) v = sample(rng, s, zp);
    check_quantize(qk, x, s, zp, t, "large");
    check_minmax(qk, x, t, "large");
    // A plain finite uniform array too, where min/max are ordinary numbers.
    for (auto& v : x) v = rng.uniform(-5.0f, 3.0f);
    check_minmax(qk, x, t, "uniform");
  }
  // Non-finite values at every position of every short length: detected.
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (size_t n = 1; n <= 70; ++n)
    for (size_t pos = 0; pos < n; ++pos)
      for (float b : bad) {
        std::vector<float> x(n);
        for (auto& v : x) v = rng.uniform(-1.0f, 1.0f);
        x[pos] = b;
        check_minmax(qk, x, t, "non-finite");
      }
  // quantize on non-finite input follows quantize_one (NaN -> 0, +-Inf clamp).
  for (size_t n = 1; n <= 70; n += 7) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = bad[i % 3];
    check_quantize(qk, x, 0.1f, 128, t, "non-finite");
  }
}

}  // namespace

void test_quantize_kernels(Tally& t) {
  for (const QuantizeKernel& qk : npq::runnable_quantize_kernels()) test_kernel(qk, t);
}

}  // namespace npqtest
