// The float32 kernels (GELU, softmax, LayerNorm, LSTM and GRU cells, GEMM tiles): every runnable
// kernel of a family against that family's scalar kernel, bit for bit (a NaN matches
// any NaN), on every length 1..70 and longer rows, with random, wide-range and special
// values (+-0, +-inf, NaN, subnormals, huge), with and without the optional operands,
// in place, inputs ending at an unreadable page and canaries around the outputs. The
// scalar kernels themselves are checked against double precision: exp, sigmoid and tanh
// (scalar-fmath.h) within a few ulp over a sweep of every float range, their special
// values exactly, and softmax / LayerNorm rows within 2e-6.
#include <cmath>
#include <cstring>
#include <algorithm>
#include <stdexcept>
#include <limits>
#include <string>
#include <vector>

#include "harness.h"
#include "npquant/dispatch.h"
#include "npquant/ops/gemm_f32.h"
#include "npquant/ukernels/scalar-fmath.h"

namespace npqtest {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool same(float a, float b) {
  return std::isnan(a) ? std::isnan(b) : npq::f32_bits(a) == npq::f32_bits(b);
}

// n floats of one of four kinds: 0 normal-ish (sd ~3), 1 wide (+-e^u, |u| <= 30),
// 2 normal-ish with specials sprinkled in, 3 within +-100.
std::vector<float> values(Rng& rng, size_t n, int kind, float scale = 3.0f) {
  static const float specials[] = {0.0f,    -0.0f, kInf,   -kInf, kNaN,   1e-40f,
                                   -1e-40f, 1e30f, -1e30f, 88.0f, -90.0f, 9.5f};
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    float x = 0;
    for (int j = 0; j < 4; ++j) x += rng.uniform(-1.0f, 1.0f);
    x *= scale * 0.866f;
    if (kind == 1) x = (rng.coin() ? 1.0f : -1.0f) * std::exp(rng.uniform(-30.0f, 30.0f));
    if (kind == 2 && rng.range(0, 7) == 0) x = specials[rng.range(0, 11)];
    if (kind == 3) x = rng.uniform(-100.0f, 100.0f);
    v[i] = x;
  }
  return v;
}

std::vector<size_t> lengths() {
  std::vector<size_t> v;
  for (size_t n = 1; n <= 70; ++n) v.push_back(n);
  for (size_t n : {127, 128, 129, 255, 256, 257, 1000, 4099}) v.push_back(n);
  return v;
}

// A copy of v ending at an unreadable page (reads past it fault).
struct PageEnd {
  explicit PageEnd(const std::vector<float>& v) : mem(v.data(), v.size() * sizeof(float)) {}
  const float* data() const { return reinterpret_cast<const float*>(mem.data()); }
  EndOfPage mem;
};

// Output slots of n floats each with canaries around them.
struct Out {
  Out(size_t slots, size_t n) : n(n), g(slots * n * sizeof(float)) { g.allow(0, slots * n * 4); }
  float* slot(size_t i) { return reinterpret_cast<float*>(g.data()) + i * n; }
  size_t n;
  Guarded g;
};

// Compares n outputs (and the canaries of out) with want; one pass or one failure.
void compare(Tally& t, const char* name, const std::string& what, Out& out, const float* got,
             const float* want, size_t n) {
  std::string msg;
  if (!out.g.intact(&msg)) {
    t.fail(name, what + ": " + msg);
    return;
  }
  for (size_t i = 0; i < n; ++i)
    if (!same(got[i], want[i])) {
      char buf[160];
      std::snprintf(buf, sizeof buf, " n=%zu i=%zu: got %a, want %a", n, i, got[i], want[i]);
      t.fail(name, what + buf);
      return;
    }
  t.pass(name);
}

std::string what_of(const char* op, int kind, int variant) {
  return std::string(op) + " kind " + std::to_string(kind) + " variant " + std::to_string(variant);
}

void test_gelu(const npq::GeluKernel& k, const npq::GeluKernel& ref, Tally& t) {
  Rng rng(0x6E1);
  for (size_t n : lengths())
    for (int kind = 0; kind < 4; ++kind)
      for (int form = 0; form < 2; ++form) {
        const auto x = values(rng, n, kind);
        std::vector<float> want(n);
        ref.gelu(n, x.data(), want.data(), form);
        const PageEnd xe(x);
        Out out(1, n);
        k.gelu(n, xe.data(), out.slot(0), form);
        compare(t, k.name, what_of("gelu", kind, form), out, out.slot(0), want.data(), n);
      }
}

void test_softmax(const npq::SoftmaxKernel& k, const npq::SoftmaxKernel& ref, Tally& t) {
  Rng rng(0x50F);
  for (size_t n : lengths())
    for (int kind = 0; kind < 4; ++kind)
      for (int variant = 0; variant < 3; ++variant) {
        const auto x = values(rng, n, kind);
        std::vector<float> bias(n);
        for (auto& b : bias) b = rng.range(0, 4) == 0 ? -kInf : rng.uniform(-2.0f, 2.0f);
        if (variant == 2) bias.assign(n, -kInf);  // every position masked: a NaN row
        const float* bp = variant ? bias.data() : nullptr;
        std::vector<float> want(n);
        ref.fn(n, x.data(), bp, want.data());
        const PageEnd xe(x), be(bias);
        Out out(2, n);
        k.fn(n, xe.data(), variant ? be.data() : nullptr, out.slot(0));
        std::memcpy(out.slot(1), x.data(), n * sizeof(float));
        k.fn(n, out.slot(1), variant ? be.data() : nullptr, out.slot(1));  // in place
        compare(t, k.name, what_of("softmax", kind, variant), out, out.slot(0), want.data(), n);
        compare(t, k.name, what_of("softmax in place", kind, variant), out, out.slot(1),
                want.data(), n);
      }
}

void test_layernorm(const npq::LayerNormKernel& k, const npq::LayerNormKernel& ref, Tally& t) {
  Rng rng(0x1A7);
  const float eps[] = {1e-5f, 1e-12f, 0.0f, 0.5f};
  for (size_t n : lengths())
    for (int kind = 0; kind < 4; ++kind)
      for (int variant = 0; variant < 4; ++variant) {
        auto x = values(rng, n, kind);
        if (variant == 3)  // a large offset: the two-pass variance keeps its digits
          for (auto& v : x) v = 1e4f + v;
        const auto gamma = values(rng, n, 0, 1.0f), beta = values(rng, n, 0, 1.0f);
        const float* gp = variant & 1 ? gamma.data() : nullptr;
        const float* bp = variant & 2 ? beta.data() : nullptr;
        const float e = eps[(n + kind) % 4];
        std::vector<float> want(n);
        ref.fn(n, x.data(), gp, bp, e, want.data());
        const PageEnd xe(x), ge(gamma), bee(beta);
        Out out(2, n);
        k.fn(n, xe.data(), gp ? ge.data() : nullptr, bp ? bee.data() : nullptr, e, out.slot(0));
        std::memcpy(out.slot(1), x.data(), n * sizeof(float));
        k.fn(n, out.slot(1), gp ? ge.data() : nullptr, bp ? bee.data() : nullptr, e, out.slot(1));
        compare(t, k.name, what_of("layernorm", kind, variant), out, out.slot(0), want.data(), n);
        compare(t, k.name, what_of("layernorm in place", kind, variant), out, out.slot(1),
                want.data(), n);
      }
}

void test_lstm(const npq::LstmKernel& k, const npq::LstmKernel& ref, Tally& t) {
  Rng rng(0x157);
  for (size_t n : lengths())
    for (int kind = 0; kind < 4; ++kind) {
      const auto gi = values(rng, 4 * n, kind), gh = values(rng, 4 * n, kind % 2 ? 0 : kind);
      const auto c = values(rng, n, kind, 2.0f);
      std::vector<float> want_c(n), want_h(n);
      ref.fn(n, gi.data(), gh.data(), c.data(), want_c.data(), want_h.data());
      const PageEnd gie(gi), ghe(gh), ce(c);
      Out out(4, n);
      k.fn(n, gie.data(), ghe.data(), ce.data(), out.slot(0), out.slot(1));
      std::memcpy(out.slot(2), c.data(), n * sizeof(float));
      k.fn(n, gie.data(), ghe.data(), out.slot(2), out.slot(2), out.slot(3));  // c in place
      compare(t, k.name, what_of("lstm c", kind, 0), out, out.slot(0), want_c.data(), n);
      compare(t, k.name, what_of("lstm h", kind, 0), out, out.slot(1), want_h.data(), n);
      compare(t, k.name, what_of("lstm c in place", kind, 0), out, out.slot(2), want_c.data(), n);
      compare(t, k.name, what_of("lstm h (c in place)", kind, 0), out, out.slot(3), want_h.data(),
              n);
    }
}

void test_gru(const npq::GruKernel& k, const npq::GruKernel& ref, Tally& t) {
  Rng rng(0x62A);
  for (size_t n : lengths())
    for (int kind = 0; kind < 4; ++kind) {
      const auto gi = values(rng, 3 * n, kind), gh = values(rng, 3 * n, kind % 2 ? 0 : kind);
      const auto h = values(rng, n, kind, 2.0f);
      std::vector<float> want(n);
      ref.fn(n, gi.data(), gh.data(), h.data(), want.data());
      const PageEnd gie(gi), ghe(gh), he(h);
      Out out(2, n);
      k.fn(n, gie.data(), ghe.data(), he.data(), out.slot(0));
      std::memcpy(out.slot(1), h.data(), n * sizeof(float));
      k.fn(n, gie.data(), ghe.data(), out.slot(1), out.slot(1));  // in place
      compare(t, k.name, what_of("gru", kind, 0), out, out.slot(0), want.data(), n);
      compare(t, k.name, what_of("gru in place", kind, 0), out, out.slot(1), want.data(), n);
    }
}

// c = a * b (+ bias) with the scalar tile over the whole m x n (its 4 x 8 tiles): the
// reference for any other tile, since every output is its own fma chain.
void ref_gemm(const npq::FGemmKernel& ref, size_t m, size_t n, size_t k, const float* a, size_t lda,
              const float* b, size_t ldb, const float* bias, float* c, size_t ldc) {
  for (size_t r = 0; r < m; r += ref.mr)
    for (size_t j = 0; j < n; j += ref.nr)
      ref.fn(std::min<size_t>(ref.mr, m - r), std::min<size_t>(ref.nr, n - j), k, a + r * lda, lda,
             b + j, ldb, bias ? bias + j : nullptr, c + r * ldc + j, ldc);
}

void test_fgemm(const npq::FGemmKernel& k, const npq::FGemmKernel& ref, Tally& t) {
  Rng rng(0xF6E);
  const size_t kcs[] = {0, 1, 2, 7, 64, 129};
  for (size_t mr = 1; mr <= k.mr; ++mr)
    for (size_t nc = 1; nc <= k.nr; ++nc)
      for (size_t kc : kcs) {
        const int kind = static_cast<int>((mr + nc + kc) % 4);
        const bool with_bias = (mr + nc) % 2 == 0;
        const size_t lda = kc + 3, ldb = nc + 5, ldc = nc + 2;
        const auto a = values(rng, mr * lda, kind),
                   b = values(rng, std::max<size_t>(1, kc * ldb), kind);
        const auto bias = values(rng, nc, kind);
        std::vector<float> want(mr * ldc, 0.0f);
        ref_gemm(ref, mr, nc, kc, a.data(), lda, b.data(), ldb, with_bias ? bias.data() : nullptr,
                 want.data(), ldc);
        const PageEnd ae(a), be(b), biase(bias);
        Out out(1, mr * ldc);
        for (size_t r = 0; r < mr; ++r)  // rows of c, stride ldc; the gaps must stay as they are
          for (size_t j = nc; j < ldc; ++j) out.slot(0)[r * ldc + j] = want[r * ldc + j] = 7.0f;
        k.fn(mr, nc, kc, ae.data(), lda, be.data(), ldb, with_bias ? biase.data() : nullptr,
             out.slot(0), ldc);
        compare(t, k.name,
                "gemm mr=" + std::to_string(mr) + " nc=" + std::to_string(nc) +
                    " kc=" + std::to_string(kc) + " kind " + std::to_string(kind),
                out, out.slot(0), want.data(), mr * ldc);
      }
  // The driver (panels, row blocks, b transposed or not, in parallel or not) with this
  // kernel equals the reference on shapes that are not multiples of any tile.
  for (bool trans : {false, true})
    for (bool parallel : {false, true}) {
      const size_t m = 37, n = 3 * k.nr + 5, kk = 45;
      const auto a = values(rng, m * kk, 0), b = values(rng, n * kk, 0), bias = values(rng, n, 0);
      std::vector<float> bt(n * kk), want(m * n), got(m * n);
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < kk; ++j) bt[j * n + i] = b[i * kk + j];  // b^T, k x n
      ref_gemm(ref, m, n, kk, a.data(), kk, bt.data(), n, bias.data(), want.data(), n);
      npq::gemm_f32(k, m, n, kk, a.data(), kk, trans ? b.data() : bt.data(), trans ? kk : n, trans,
                    bias.data(), got.data(), n, parallel);
      bool ok = true;
      for (size_t i = 0; i < m * n && ok; ++i) ok = same(got[i], want[i]);
      t.check(ok, k.name,
              std::string("gemm driver") + (trans ? " b^T" : "") + (parallel ? " parallel" : ""));
    }
}

// The scalar tile against double: an fma chain's error is at most about kc * 2^-24 times
// the sum of the products' magnitudes.
void test_scalar_fgemm(const npq::FGemmKernel& ref, Tally& t) {
  Rng rng(0xACC);
  const size_t m = 13, n = 21, k = 300;
  const auto a = values(rng, m * k, 0), b = values(rng, k * n, 0);
  std::vector<float> c(m * n);
  ref_gemm(ref, m, n, k, a.data(), k, b.data(), n, nullptr, c.data(), n);
  bool ok = true;
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < n; ++j) {
      double exact = 0, mag = 0;
      for (size_t i = 0; i < k; ++i) {
        exact += static_cast<double>(a[r * k + i]) * b[i * n + j];
        mag += std::fabs(static_cast<double>(a[r * k + i]) * b[i * n + j]);
      }
      ok &= std::fabs(c[r * n + j] - exact) <= k * 0x1p-24 * mag;
    }
  t.check(ok, ref.name, "scalar f32 gemm vs double within k ulps of the magnitudes");
}

// |got - want| in units of the float spacing at want (2^-149 below the normal range).
double ulps(double want, float got) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0 : 1e30;
  if (want == 0) return got == 0 ? 0 : std::fabs(got) / 0x1p-149;
  int e;
  std::frexp(want, &e);
  const double u = std::fabs(want) < 0x1p-126 ? 0x1p-149 : std::ldexp(1.0, e - 24);
  return std::fabs(static_cast<double>(got) - want) / u;
}

// The scalar exp / sigmoid / tanh against double over a sweep of float bit patterns
// (both signs) and a dense grid of [-20, 20]; their special values exactly.
void test_scalar_math(const std::vector<const char*>& labels, Tally& t) {
  double worst[3] = {0, 0, 0};
  float at[3] = {0, 0, 0};
  auto note = [&](int f, double e, float x) {
    if (e > worst[f]) worst[f] = e, at[f] = x;
  };
  const uint32_t stride = options().quick ? 65537 : 4099;
  std::vector<float> xs;
  for (uint32_t u = 0; u < 0x7F800000u; u += stride) xs.push_back(npq::f32_from_bits(u));
  for (int i = 0; i <= 400000; ++i) xs.push_back(-20.0f + 40.0f * static_cast<float>(i) / 400000);
  for (float x0 : xs)
    for (float x : {x0, -x0}) {
      if (x <= 0 && x >= -104)
        note(0, ulps(std::exp(static_cast<double>(x)), npq::exp_nonpos(x)), x);
      note(1, ulps(1.0 / (1.0 + std::exp(-static_cast<double>(x))), npq::sigmoid(x)), x);
      note(2, ulps(std::tanh(static_cast<double>(x)), npq::tanh_f32(x)), x);
    }
  const double bound[3] = {2.0, 3.0, 4.0};
  const char* fn[3] = {"exp", "sigmoid", "tanh"};
  for (int f = 0; f < 3; ++f) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "scalar %s: %.2f ulp at %a (bound %.0f)", fn[f], worst[f], at[f],
                  bound[f]);
    for (const char* label : labels) t.check(worst[f] <= bound[f], label, buf);
  }
  const bool specials = npq::exp_nonpos(0.0f) == 1.0f && npq::exp_nonpos(-0.0f) == 1.0f &&
                        npq::exp_nonpos(-kInf) == 0.0f && std::isnan(npq::exp_nonpos(kNaN)) &&
                        npq::sigmoid(0.0f) == 0.5f && npq::sigmoid(kInf) == 1.0f &&
                        npq::sigmoid(-kInf) == 0.0f && npq::sigmoid(100.0f) == 1.0f &&
                        std::isnan(npq::sigmoid(kNaN)) && npq::tanh_f32(kInf) == 1.0f &&
                        npq::tanh_f32(-kInf) == -1.0f && npq::tanh_f32(20.0f) == 1.0f &&
                        std::isnan(npq::tanh_f32(kNaN)) && same(npq::tanh_f32(-0.0f), -0.0f) &&
                        same(npq::tanh_f32(0.0f), 0.0f) && npq::tanh_f32(1e-30f) == 1e-30f;
  for (const char* label : labels)
    t.check(specials, label, "scalar exp / sigmoid / tanh special values");
}

// The scalar softmax and LayerNorm rows against double (moderate values, so float32's
// rounding of the inputs' differences stays below the bound).
void test_scalar_rows(const npq::SoftmaxKernel& sm, const npq::LayerNormKernel& ln, Tally& t) {
  Rng rng(0xD0B);
  double worst_sm = 0, worst_ln = 0;
  for (size_t n : lengths()) {
    const auto x = values(rng, n, 0, 2.0f), g = values(rng, n, 0, 1.0f),
               b = values(rng, n, 0, 1.0f);
    std::vector<float> y(n);
    sm.fn(n, x.data(), nullptr, y.data());
    double m = -1e300, s = 0;
    for (float v : x) m = std::max(m, static_cast<double>(v));
    for (float v : x) s += std::exp(v - m);
    for (size_t i = 0; i < n; ++i) {
      const double w = std::exp(x[i] - m) / s;
      worst_sm = std::max(worst_sm, std::fabs(y[i] - w) / w);
    }
    ln.fn(n, x.data(), g.data(), b.data(), 1e-5f, y.data());
    double mean = 0, var = 0;
    for (float v : x) mean += v;
    mean /= static_cast<double>(n);
    for (float v : x) var += (v - mean) * (v - mean);
    var /= static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) {
      const double w = (x[i] - mean) / std::sqrt(var + 1e-5f) * g[i] + b[i];
      worst_ln = std::max(worst_ln, std::fabs(y[i] - w) / (1.0 + std::fabs(w)));
    }
  }
  t.check(worst_sm <= 2e-6, sm.name,
          "softmax vs double: relative error " + std::to_string(worst_sm));
  t.check(worst_ln <= 2e-6, ln.name, "layernorm vs double: error " + std::to_string(worst_ln));
}

// The scalar GELU (both forms) against double.
void test_scalar_gelu(const npq::GeluKernel& k, Tally& t) {
  std::vector<float> x;
  for (int i = 0; i <= 200000; ++i) x.push_back(-12.0f + 24.0f * static_cast<float>(i) / 200000);
  std::vector<float> y(x.size());
  for (int form = 0; form < 2; ++form) {
    k.gelu(x.size(), x.data(), y.data(), form);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double e = form ? std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))
                            : std::erf(v / std::sqrt(2.0));
      const double w = 0.5 * v * (1 + e);
      worst = std::max(worst, std::fabs(y[i] - w) / (1.0 + std::fabs(w)));
    }
    t.check(worst <= 1e-6, k.name,
            "gelu form " + std::to_string(form) + " vs double: " + std::to_string(worst));
  }
}

// The family's scalar kernel (always built).
template <class K>
const K& scalar_of(const std::vector<K>& table) {
  for (const K& k : table)
    if (k.isa == npq::Isa::scalar) return k;
  throw std::logic_error("a float kernel family without its scalar kernel");
}

// Every runnable kernel but the scalar one against the scalar one.
template <class K, class Fn>
void each(const std::vector<K>& table, Fn test) {
  const K& ref = scalar_of(table);
  for (const K& k : table)
    if (k.isa != npq::Isa::scalar && npq::can_run(k)) test(k, ref);
}

}  // namespace

void test_float_kernels(Tally& t) {
  each(npq::built_gelu_kernels(), [&](auto& k, auto& r) { test_gelu(k, r, t); });
  each(npq::built_softmax_kernels(), [&](auto& k, auto& r) { test_softmax(k, r, t); });
  each(npq::built_layernorm_kernels(), [&](auto& k, auto& r) { test_layernorm(k, r, t); });
  each(npq::built_lstm_kernels(), [&](auto& k, auto& r) { test_lstm(k, r, t); });
  each(npq::built_gru_kernels(), [&](auto& k, auto& r) { test_gru(k, r, t); });
  each(npq::built_fgemm_kernels(), [&](auto& k, auto& r) { test_fgemm(k, r, t); });
  // The references themselves.
  test_scalar_gelu(scalar_of(npq::built_gelu_kernels()), t);
  test_scalar_math(
      {scalar_of(npq::built_lstm_kernels()).name, scalar_of(npq::built_gru_kernels()).name,
       scalar_of(npq::built_softmax_kernels()).name},
      t);
  test_scalar_rows(scalar_of(npq::built_softmax_kernels()),
                   scalar_of(npq::built_layernorm_kernels()), t);
  test_scalar_fgemm(scalar_of(npq::built_fgemm_kernels()), t);
}

}  // namespace npqtest
