// The Linear drivers (ops/linear.h) with every runnable kernel passed
// explicitly, on random (M, K, N) with padded strides, 1 and 2 threads,
// against the reference composed from npq::ref and qmath.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"
#include "npquant/ops/linear.h"
#include "npquant/ops/threadpool.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace npqtest {
namespace {

using npq::QGemmKernel;
using npq::QuantizeKernel;

std::string shape(size_t m, size_t k, size_t n) {
  return "(M,K,N)=(" + std::to_string(m) + "," + std::to_string(k) + "," + std::to_string(n) + ")";
}

void static_case(const QGemmKernel& kk, size_t m, size_t k, size_t n, Rng& rng, Tally& t) {
  const std::string label = std::string(kk.name) + " [linear_static]";
  const size_t x_stride = k + rng.range(0, 3), y_stride = n + rng.range(0, 3);
  std::vector<uint8_t> x(m * x_stride);
  std::vector<int8_t> w(n * k);
  for (auto& v : x) v = static_cast<uint8_t>(rng.next());
  for (auto& v : w) v = static_cast<int8_t>(rng.next());
  std::vector<float> ws(n), bias(n);
  for (auto& v : ws) v = rng.uniform(1e-3f, 2e-2f);
  for (auto& v : bias) v = rng.uniform(-2.0f, 2.0f);
  const bool with_bias = rng.coin(), relu = rng.coin();
  const float xs = rng.uniform(1e-3f, 5e-2f);
  const int32_t xz = static_cast<int32_t>(rng.range(0, 255));
  const float ys = xs * 0.02f * std::sqrt(static_cast<float>(k)) * rng.uniform(0.5f, 4.0f);
  const int32_t yz = static_cast<int32_t>(rng.range(0, 255));

  const npq::PackedWeights pw = npq::pack_weights(w.data(), n, k, k, kk);
  Guarded y(m * y_stride);
  for (size_t r = 0; r < m; ++r) y.allow(r * y_stride, n);
  npq::StaticLinearArgs a{
      m,  x.data(), x_stride,      xs,  xz,       ws.data(), with_bias ? bias.data() : nullptr,
      ys, yz,       relu ? yz : 0, 255, y.data(), y_stride};
  npq::linear_static(pw, a, kk);

  std::vector<float> bias_s(n), mult(n);
  npq::requant_constants(n, xs, ws.data(), ys, with_bias ? bias.data() : nullptr, bias_s.data(),
                         mult.data());
  std::vector<uint8_t> want(m * n);
  npq::ref::qgemm_requant(m, n, k, x.data(), x_stride, xz, w.data(), k, bias_s.data(), mult.data(),
                          yz, relu ? yz : 0, 255, want.data(), n);
  std::string msg;
  if (!y.intact(&msg)) {
    t.fail(label, shape(m, k, n) + ": " + msg);
    return;
  }
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j)
      if (y.data()[r * y_stride + j] != want[r * n + j]) {
        t.fail(label, shape(m, k, n) + " at (" + std::to_string(r) + "," + std::to_string(j) +
                          "): got " + std::to_string(y.data()[r * y_stride + j]) + " want " +
                          std::to_string(want[r * n + j]));
        return;
      }
  t.pass(label);
}

// The dynamic path's reference: qparams by choose_qparams over the whole
// tensor (or each row), ref::quantize, then ref::qgemm_dequant.
std::vector<float> dynamic_reference(const std::vector<float>& x, size_t x_stride, size_t m,
                                     size_t k, size_t n, const std::vector<int8_t>& w,
                                     const std::vector<float>& ws, const float* bias,
                                     bool per_row) {
  std::vector<int32_t> zps(m);
  std::vector<float> scales(m);
  std::vector<uint8_t> q(m * k);
  float lo = x[0], hi = x[0];
  for (size_t r = 0; r < m; ++r) {
    float l, h;
    npq::ref::minmax(k, &x[r * x_stride], &l, &h);
    lo = std::min(lo, l);
    hi = std::max(hi, h);
  }
  for (size_t r = 0; r < m; ++r) {
    npq::QuantParams qp;
    if (per_row) {
      float l, h;
      npq::ref::minmax(k, &x[r * x_stride], &l, &h);
      qp = npq::choose_qparams(l, h, 0, 255);
    } else {
      qp = npq::choose_qparams(lo, hi, 0, 255);
    }
    zps[r] = qp.zero_point;
    scales[r] = qp.scale;
    std::vector<int32_t> qi(k);
    npq::ref::quantize(k, &x[r * x_stride], qp.scale, qp.zero_point, 0, 255, qi.data());
    for (size_t i = 0; i < k; ++i) q[r * k + i] = static_cast<uint8_t>(qi[i]);
  }
  std::vector<float> y(m * n);
  npq::ref::qgemm_dequant(m, n, k, q.data(), k, zps.data(), scales.data(), w.data(), k, ws.data(),
                          bias, y.data(), n);
  return y;
}

void dynamic_case(const QGemmKernel& kk, const QuantizeKernel& qk, size_t m, size_t k, size_t n,
                  Rng& rng, Tally& t) {
  const bool per_row = rng.coin();
  const std::string label = std::string(kk.name) + (per_row ? " [dynamic per-row]" : " [dynamic]");
  const size_t x_stride = k + rng.range(0, 3), y_stride = n + rng.range(0, 3);
  std::vector<float> x(m * x_stride);
  const float spread = rng.uniform(0.01f, 100.0f), shift = rng.uniform(-1.0f, 1.0f) * spread;
  for (auto& v : x) v = rng.uniform(-spread, spread) + shift;
  std::vector<int8_t> w(n * k);
  for (auto& v : w) v = static_cast<int8_t>(rng.next());
  std::vector<float> ws(n), bias(n);
  for (auto& v : ws) v = rng.uniform(1e-3f, 2e-2f);
  for (auto& v : bias) v = rng.uniform(-2.0f, 2.0f);
  const bool with_bias = rng.coin();

  const npq::PackedWeights pw = npq::pack_weights(w.data(), n, k, k, kk);
  const size_t y_bytes = m * y_stride * sizeof(float);
  Guarded y(y_bytes);
  for (size_t r = 0; r < m; ++r) y.allow(r * y_stride * sizeof(float), n * sizeof(float));
  float* yp = reinterpret_cast<float*>(y.data());
  npq::DynamicLinearArgs a{
      m, x.data(), x_stride, ws.data(), with_bias ? bias.data() : nullptr, per_row, yp, y_stride};
  npq::linear_dynamic(pw, a, kk, qk);
  const std::vector<float> want =
      dynamic_reference(x, x_stride, m, k, n, w, ws, with_bias ? bias.data() : nullptr, per_row);
  std::string msg;
  if (!y.intact(&msg)) {
    t.fail(label, shape(m, k, n) + ": " + msg);
    return;
  }
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j) {
      float got;
      std::memcpy(&got, y.data() + (r * y_stride + j) * sizeof(float), sizeof(float));
      if (std::memcmp(&got, &want[r * n + j], sizeof(float)) != 0) {
        t.fail(label, shape(m, k, n) + " at (" + std::to_string(r) + "," + std::to_string(j) +
                          "): got " + std::to_string(got) + " want " +
                          std::to_string(want[r * n + j]));
        return;
      }
    }
  t.pass(label);
}

// The best runnable quantize kernel not above the GEMM kernel's ISA.
const QuantizeKernel& quantize_for(const QGemmKernel& kk) {
  static const std::vector<QuantizeKernel> qks = npq::runnable_quantize_kernels();
  const QuantizeKernel* best = &qks.front();
  for (const auto& q : qks)
    if (static_cast<int>(q.isa) <= static_cast<int>(kk.isa)) best = &q;
  return *best;
}

// The static Linear's reference (C-contiguous x and y).
std::vector<uint8_t> static_reference(const std::vector<uint8_t>& x, size_t m, size_t k, size_t n,
                                      const std::vector<int8_t>& w, const std::vector<float>& ws,
                                      const float* bias, float xs, int32_t xz, float ys, int32_t yz,
                                      bool relu) {
  std::vector<float> bias_s(n), mult(n);
  npq::requant_constants(n, xs, ws.data(), ys, bias, bias_s.data(), mult.data());
  std::vector<uint8_t> y(m * n);
  npq::ref::qgemm_requant(m, n, k, x.data(), k, xz, w.data(), k, bias_s.data(), mult.data(), yz,
                          relu ? yz : 0, 255, y.data(), n);
  return y;
}

// npq::PackedLinear (the layer object the binding holds) for kernel kk (nullptr:
// the process's kernels): static calls alternating between two (input scale,
// output scale) pairs, so the kept requantization constants must follow the
// scales, then a dynamic call; each bit-exact with the reference.
void packed_linear_case(const QGemmKernel* kk, size_t m, size_t k, size_t n, Rng& rng, Tally& t) {
  const std::string label =
      std::string("PackedLinear ") + (kk ? kk->name : "(dispatched)") + " [static, dynamic]";
  std::vector<uint8_t> x(m * k);
  std::vector<float> xf(m * k);
  std::vector<int8_t> w(n * k);
  for (auto& v : x) v = static_cast<uint8_t>(rng.next());
  for (auto& v : xf) v = rng.uniform(-3.0f, 3.0f);
  // Every fourth case is mostly -128, which w127 kernels must hand to their fallback.
  const bool low = rng.range(0, 3) == 0;
  for (auto& v : w) v = low && rng.coin() ? int8_t{-128} : static_cast<int8_t>(rng.next());
  std::vector<float> ws(n), bias(n);
  for (auto& v : ws) v = rng.uniform(1e-3f, 2e-2f);
  for (auto& v : bias) v = rng.uniform(-2.0f, 2.0f);
  const bool with_bias = rng.coin();
  const float* b = with_bias ? bias.data() : nullptr;
  const npq::PackedLinear p(w.data(), n, k, ws, with_bias ? bias : std::vector<float>{}, kk);
  if (!t.check(p.n() == n && p.k() == k && p.bytes() > 0, label, shape(m, k, n) + ": sizes"))
    return;
  if (kk && !t.check(std::string(p.kernel().name) == kk->name ||
                         std::string(p.kernel().name) == npq::gemm_fallback(*kk).name,
                     label, shape(m, k, n) + ": runs on " + p.kernel().name))
    return;
  const float xs[2] = {rng.uniform(1e-3f, 5e-2f), rng.uniform(1e-3f, 5e-2f)};
  const float ys[2] = {xs[0] * 0.02f * std::sqrt(static_cast<float>(k)) * rng.uniform(0.5f, 4.0f),
                       xs[1] * 0.02f * std::sqrt(static_cast<float>(k)) * rng.uniform(0.5f, 4.0f)};
  const int32_t xz = static_cast<int32_t>(rng.range(0, 255));
  const int32_t yz = static_cast<int32_t>(rng.range(0, 255));
  const bool relu = rng.coin();
  for (int call = 0; call < 3; ++call) {
    const int s = call % 2;
    std::vector<uint8_t> y(m * n);
    p.run_static(m, x.data(), xs[s], xz, ys[s], yz, relu, y.data());
    if (!t.check(y == static_reference(x, m, k, n, w, ws, b, xs[s], xz, ys[s], yz, relu), label,
                 shape(m, k, n) + ": static call " + std::to_string(call) + " differs"))
      return;
  }
  std::vector<float> y(m * n);
  p.run_dynamic(m, xf.data(), false, false, y.data());
  const std::vector<float> want = dynamic_reference(xf, k, m, k, n, w, ws, b, false);
  t.check(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)) == 0, label,
          shape(m, k, n) + ": dynamic call differs");
}

}  // namespace

void test_packed_linear(Tally& t) {
  Rng rng(0x9AC4);
  for (size_t i = 0; i < 8; ++i) {
    const size_t m = rng.range(1, 40), k = rng.range(1, 300), n = rng.range(1, 100);
    packed_linear_case(nullptr, m, k, n, rng, t);
    for (const QGemmKernel& kk : npq::runnable_gemm_kernels())
      packed_linear_case(&kk, m, k, n, rng, t);
  }
}

void test_linear_drivers(Tally& t) {
  const int threads = npq::get_num_threads();
  for (const QGemmKernel& kk : npq::runnable_gemm_kernels()) {
    Rng rng(0x11E4 + kk.mr);
    for (size_t i = 0; i < 60; ++i) {
      // Mostly small shapes; every tenth large. The reference is naive, so
      // M*N*K stays below ~3e7.
      size_t m = rng.range(1, i % 10 == 0 ? 600 : 70);
      size_t k = rng.range(1, i % 10 == 0 ? 5000 : 700);
      size_t n = rng.range(1, i % 10 == 0 ? 3000 : 300);
      while (m * n * k > 30000000) (m > n ? m : n) /= 2;
      npq::set_num_threads(i % 2 ? 2 : 1);
      static_case(kk, m, k, n, rng, t);
      dynamic_case(kk, quantize_for(kk), m, k, n, rng, t);
      // The scalar quantize kernel with this GEMM kernel too.
      dynamic_case(kk, npq::runnable_quantize_kernels().front(), m, k, n, rng, t);
    }
  }
  npq::set_num_threads(threads);
}

}  // namespace npqtest
