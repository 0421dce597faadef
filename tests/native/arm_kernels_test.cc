// Every GEMM and quantize kernel this CPU can run, against the oracle
// (npq::ref), bit for bit, on the edge grid of DESIGN.md:
//   m 1..MR, n 1..2NR+1, k in {1, KR-1, KR, KR+1, primes, 4096},
//   activation zero points 0/128/255 (per row for the dynamic epilogue),
//   weights holding -128 and 127, clamps that bind, ties of round-half-even,
//   both epilogues (requantized u8, dequantized fp32).
// Written for the aarch64 kernels (run under qemu-aarch64 with several CPU
// models, tests/arm/run_qemu.sh) but runs on any architecture.
//
// A rows end at a PROT_NONE page, so a kernel reading past its last row's kp
// bytes crashes; C is surrounded by sentinels, so a stray store fails.
//
// Usage: arm_kernels_test [--expect-isa ISA] [--quick]
//   --expect-isa  fail unless dispatch chose ISA (checks the HWCAP detection)
//   --quick       k up to 257 only (no k = 4096)
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "npquant/cpu.h"
#include "npquant/dispatch.h"
#include "npquant/ops/pack.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace {

using npq::Isa;

struct Tally {
  size_t passed = 0, failed = 0;
};
std::map<std::string, Tally> g_tally;  // per ISA
size_t g_reported = 0;                 // failures printed so far

void record(Isa isa, bool ok, const std::string& what) {
  Tally& t = g_tally[npq::isa_name(isa)];
  if (ok) {
    ++t.passed;
    return;
  }
  ++t.failed;
  if (g_reported++ < 20) std::printf("FAIL %s\n", what.c_str());
}

// `bytes` usable bytes that end exactly where a PROT_NONE page begins.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    map_bytes_ = (bytes + page - 1) / page * page + page;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<uint8_t*>(p);
    if (mprotect(base_ + map_bytes_ - page, page, PROT_NONE) != 0)
      throw std::runtime_error("mprotect failed");
    data_ = base_ + map_bytes_ - page - bytes;
  }
  ~GuardedBuffer() { munmap(base_, map_bytes_); }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  uint8_t* data() { return data_; }

 private:
  uint8_t* base_;
  uint8_t* data_;
  size_t map_bytes_;
};

std::mt19937 g_rng(20240531);
int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }
float uniform_f(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

std::vector<size_t> k_grid(size_t kr, bool quick) {
  std::vector<size_t> ks = {1, kr - 1, kr, kr + 1, 2 * kr + 3, 7, 13, 31, 61, 127, 257};
  if (!quick) ks.push_back(4096);
  std::vector<size_t> out;
  for (size_t k : ks)
    if (k >= 1 && std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  return out;
}

// Activations and weights for one shape. Pattern 0: uniform with -128 and 127
// forced into the weights; 1: only the extremes {0, 255} x {-128, 127};
// 2: the largest magnitudes (a = 255 or a = 0 against w = -128: 0 is -128
// after the s8 shift some kernels use).
void fill_operands(int pattern, size_t m, size_t n, size_t k, std::vector<uint8_t>* a,
                   std::vector<int8_t>* w) {
  a->resize(m * k);
  w->resize(n * k);
  for (size_t i = 0; i < a->size(); ++i) {
    if (pattern == 0) (*a)[i] = static_cast<uint8_t>(uniform(0, 255));
    if (pattern == 1) (*a)[i] = uniform(0, 1) ? 255 : 0;
    if (pattern == 2) (*a)[i] = (i / k) % 2 ? 0 : 255;
  }
  for (size_t i = 0; i < w->size(); ++i) {
    if (pattern == 0) (*w)[i] = static_cast<int8_t>(uniform(-128, 127));
    if (pattern == 1) (*w)[i] = uniform(0, 1) ? 127 : -128;
    if (pattern == 2) (*w)[i] = -128;
  }
  if (pattern == 0) {
    (*w)[0] = -128;
    w->back() = 127;
  }
}

struct Shape {
  size_t m, n, k;
  int pattern;
  int32_t a_zp;  // requant: all rows; dequant: first row (others vary)
};

std::string describe(const npq::QGemmKernel& kern, const Shape& s, const char* what) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%s %s m=%zu n=%zu k=%zu pattern=%d a_zp=%d", kern.name, what,
                s.m, s.n, s.k, s.pattern, s.a_zp);
  return buf;
}

// Runs one kernel call on a packed copy of w and compares with the oracle.
class GemmCase {
 public:
  GemmCase(const npq::QGemmKernel& kern, const Shape& s) : kern_(kern), s_(s) {
    fill_operands(s.pattern, s.m, s.n, s.k, &a_, &w_);
    packed_.reset(new npq::PackedWeights(w_.data(), s.n, s.k, s.k, kern.layout));
    kp_ = packed_->kp();
    np_ = packed_->n_padded();
    // A: row stride kp (+ 3 bytes on every other shape); bytes past k are
    // garbage, which the kernels must ignore (padded weights are zero).
    a_stride_ = kp_ + ((s.m + s.n) % 2 ? 3 : 0);
    const size_t a_bytes = (s.m - 1) * a_stride_ + kp_;
    abuf_.reset(new GuardedBuffer(a_bytes));
    for (size_t i = 0; i < a_bytes; ++i) abuf_->data()[i] = static_cast<uint8_t>(uniform(0, 255));
    for (size_t r = 0; r < s.m; ++r)
      std::memcpy(abuf_->data() + r * a_stride_, a_.data() + r * s.k, s.k);
  }

  // Static epilogue; config picks the clamp: 0 none, 1 fused ReLU, 2 narrow.
  bool requant(int config, int32_t out_zp) {
    const size_t m = s_.m, n = s_.n, k = s_.k;
    std::vector<int32_t> acc(m * n), zp(m, s_.a_zp);
    npq::ref::qgemm_acc(m, n, k, a_.data(), k, zp.data(), w_.data(), k, acc.data());
    // Multipliers spreading v over about +-300 so both clamps bind; column 0
    // gets 0.5 (odd accumulators are exact ties), column 1 a huge one (the
    // saturating path), the rest random.
    std::vector<float> bias_s(np_, 0.0f), mult(np_, 1.0f);
    for (size_t j = 0; j < n; ++j) {
      int64_t mx = 1;
      for (size_t r = 0; r < m; ++r) mx = std::max<int64_t>(mx, std::llabs(acc[r * n + j]));
      mult[j] = uniform_f(100.0f, 300.0f) / static_cast<float>(mx);
      bias_s[j] = uniform(0, 3) == 0 ? 0.0f : uniform_f(-0.3f, 0.3f) * static_cast<float>(mx);
    }
    mult[0] = 0.5f;
    bias_s[0] = 0.0f;
    if (n > 1) mult[1] = 1.0e6f;
    const int32_t lo = config == 0 ? 0 : config == 1 ? out_zp : 37;
    const int32_t hi = config == 2 ? 201 : 255;
    std::vector<uint8_t> want(m * n);
    npq::ref::qgemm_requant(m, n, k, a_.data(), k, s_.a_zp, w_.data(), k, bias_s.data(),
                            mult.data(), out_zp, lo, hi, want.data(), n);
    const size_t c_stride = n + 5;
    std::vector<uint8_t> c((m + 1) * c_stride, 0xA5);
    npq::RequantEpilogue ep{bias_s.data(), mult.data(), out_zp, lo, hi};
    kern_.requant(m, n, kp_, abuf_->data(), a_stride_, packed_->panel(0), zp.data(), c.data(),
                  c_stride, &ep);
    for (size_t i = 0; i < c.size(); ++i) {
      const size_t r = i / c_stride, j = i % c_stride;
      const uint8_t expect = (r < m && j < n) ? want[r * n + j] : 0xA5;
      if (c[i] != expect) return false;
    }
    return true;
  }

  // Dynamic epilogue with one zero point and scale per row.
  bool dequant() {
    const size_t m = s_.m, n = s_.n, k = s_.k;
    std::vector<int32_t> zp(m);
    std::vector<float> as(m), ws(np_, 1.0f), bias(np_, 0.0f);
    for (size_t r = 0; r < m; ++r) {
      zp[r] = r == 0 ? s_.a_zp : uniform(0, 255);
      as[r] = uniform_f(1e-3f, 1.0f);
    }
    for (size_t j = 0; j < n; ++j) {
      ws[j] = uniform_f(1e-4f, 1e-2f);
      bias[j] = uniform(0, 3) == 0 ? 0.0f : uniform_f(-1.0f, 1.0f);
    }
    std::vector<float> want(m * n);
    npq::ref::qgemm_dequant(m, n, k, a_.data(), k, zp.data(), as.data(), w_.data(), k, ws.data(),
                            bias.data(), want.data(), n);
    const size_t c_stride = n + 3;  // floats
    const float sentinel = -12345.0f;
    std::vector<float> c((m + 1) * c_stride, sentinel);
    npq::DequantEpilogue ep{as.data(), ws.data(), bias.data()};
    kern_.dequant(m, n, kp_, abuf_->data(), a_stride_, packed_->panel(0), zp.data(), c.data(),
                  c_stride * sizeof(float), &ep);
    for (size_t i = 0; i < c.size(); ++i) {
      const size_t r = i / c_stride, j = i % c_stride;
      const float expect = (r < m && j < n) ? want[r * n + j] : sentinel;
      if (std::memcmp(&c[i], &expect, sizeof(float)) != 0) return false;
    }
    return true;
  }

 private:
  const npq::QGemmKernel& kern_;
  Shape s_;
  std::vector<uint8_t> a_;
  std::vector<int8_t> w_;
  std::unique_ptr<npq::PackedWeights> packed_;
  std::unique_ptr<GuardedBuffer> abuf_;
  size_t kp_, np_, a_stride_;
};

void test_gemm_kernel(const npq::QGemmKernel& kern, bool quick) {
  const int32_t zps[] = {0, 128, 255};
  size_t idx = 0;
  for (size_t m = 1; m <= kern.mr; ++m)
    for (size_t n = 1; n <= 2 * kern.layout.nr + 1; ++n)
      for (size_t k : k_grid(kern.layout.kr, quick))
        for (int32_t a_zp : zps) {
          const Shape s{m, n, k, static_cast<int>(idx % 3), a_zp};
          GemmCase gc(kern, s);
          const int config = static_cast<int>((idx / 3) % 3);
          record(kern.isa, gc.requant(config, zps[(idx + 1) % 3]),
                 describe(kern, s, ("requant config " + std::to_string(config)).c_str()));
          record(kern.isa, gc.dequant(), describe(kern, s, "dequant"));
          ++idx;
        }
}

// ---- quantize family

// Inputs for quantize: finite values around the quantization range, exact
// ties (x*inv + zp on .5), huge values, subnormals and signed zeros.
float quantize_input(size_t i, float scale) {
  switch (i % 8) {
    case 0: return static_cast<float>(uniform(-400, 400)) * scale + 0.5f * scale;  // ties
    case 1: return uniform_f(-1.0e30f, 1.0e30f);
    case 2: return uniform(0, 1) ? 1.0e-40f : -0.0f;
    default: return uniform_f(-300.0f, 300.0f) * scale;
  }
}

void test_quantize_kernel(const npq::QuantizeKernel& qk) {
  // minmax: values, then NaN / +Inf / -Inf at every position of short arrays.
  std::vector<size_t> ns;
  for (size_t n = 1; n <= 70; ++n) ns.push_back(n);
  ns.push_back(4099);
  for (size_t n : ns) {
    GuardedBuffer buf(n * sizeof(float));
    float* x = reinterpret_cast<float*>(buf.data());
    for (size_t i = 0; i < n; ++i) x[i] = uniform_f(-1000.0f, 1000.0f);
    float lo, hi, rlo, rhi;
    const bool ok = qk.minmax(n, x, &lo, &hi);
    npq::ref::minmax(n, x, &rlo, &rhi);
    record(qk.isa, ok && lo == rlo && hi == rhi, std::string(qk.name) + " minmax n=" +
                                                     std::to_string(n));
    if (n > 40) continue;
    const float bad[] = {std::nanf(""), INFINITY, -INFINITY};
    for (float b : bad)
      for (size_t p = 0; p < n; ++p) {
        const float keep = x[p];
        x[p] = b;
        record(qk.isa, !qk.minmax(n, x, &lo, &hi),
               std::string(qk.name) + " minmax misses non-finite, n=" + std::to_string(n) +
                   " at " + std::to_string(p));
        x[p] = keep;
      }
  }
  // quantize: scales from tiny to huge (1 and 0.5 give exact ties), zp 0/128/255.
  const float scales[] = {1.0f, 0.5f, 0.0123f, 3.7e-5f, 17.0f, 1.0e4f};
  const int32_t zps[] = {0, 128, 255};
  ns.push_back(1000);
  for (size_t n : ns)
    for (float scale : scales)
      for (int32_t zp : zps) {
        GuardedBuffer buf(n * sizeof(float));
        float* x = reinterpret_cast<float*>(buf.data());
        for (size_t i = 0; i < n; ++i) x[i] = quantize_input(i, scale);
        std::vector<int32_t> want(n);
        npq::ref::quantize(n, x, scale, zp, 0, 255, want.data());
        std::vector<uint8_t> q(n + 16, 0xA5);
        qk.quantize(n, x, 1.0f / scale, zp, q.data());
        bool ok = true;
        for (size_t i = 0; i < q.size(); ++i)
          ok = ok && q[i] == (i < n ? static_cast<uint8_t>(want[i]) : 0xA5);
        char what[120];
        std::snprintf(what, sizeof(what), "%s quantize n=%zu scale=%g zp=%d", qk.name, n, scale,
                      zp);
        record(qk.isa, ok, what);
      }
}

}  // namespace

int main(int argc, char** argv) {
  std::string expect_isa;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--expect-isa" && i + 1 < argc) {
      expect_isa = argv[++i];
    } else if (arg == "--quick") {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--expect-isa ISA] [--quick]\n", argv[0]);
      return 2;
    }
  }
  const npq::CpuFeatures& cpu = npq::cpu_features();
  std::string flags;
  for (const auto& f : cpu.flags()) flags += " " + f;
  const npq::KernelSet& ks = npq::kernels();
  std::printf("arch %s, features:%s\n", cpu.arch.c_str(), flags.c_str());
  std::printf("chosen ISA: %s (gemm %s, quantize %s)\n", npq::isa_name(ks.cap), ks.gemm.name,
              ks.quant.name);

  for (const auto& k : npq::runnable_gemm_kernels()) test_gemm_kernel(k, quick);
  for (const auto& q : npq::runnable_quantize_kernels()) test_quantize_kernel(q);

  size_t passed = 0, failed = 0;
  for (Isa isa : npq::all_isas()) {
    auto it = g_tally.find(npq::isa_name(isa));
    if (it == g_tally.end()) continue;
    std::printf("%-10s %zu passed, %zu failed\n", it->first.c_str(), it->second.passed,
                it->second.failed);
    passed += it->second.passed;
    failed += it->second.failed;
  }
  if (!expect_isa.empty() && expect_isa != npq::isa_name(ks.cap)) {
    std::printf("FAIL dispatch chose %s, expected %s\n", npq::isa_name(ks.cap),
                expect_isa.c_str());
    ++failed;
  }
  std::printf("%zu passed, %zu failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
