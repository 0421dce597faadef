// Every GEMM, quantize, depthwise and indirect-GEMM kernel this CPU can run,
// against the oracle (npq::ref), bit for bit, on the edge grid of DESIGN.md
// (the conv kernels on their own grid: see test_dwconv_kernel, test_igemm_kernel):
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
#include "npquant/ops/conv2d.h"
#include "npquant/ops/pack.h"
#include "npquant/qmath.h"
#include "npquant/reference/reference.h"

namespace {

using npq::Isa;

struct Tally {
  size_t passed = 0, failed = 0;
  void add(bool ok) { ++(ok ? passed : failed); }
};
std::map<std::string, Tally> g_tally;         // per ISA
std::map<std::string, Tally> g_kernel_tally;  // per kernel
size_t g_reported = 0;                        // failures printed so far

void record(Isa isa, const char* kernel, bool ok, const std::string& what) {
  g_tally[npq::isa_name(isa)].add(ok);
  g_kernel_tally[kernel].add(ok);
  if (!ok && g_reported++ < 20) std::printf("FAIL %s\n", what.c_str());
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
    // A kernel that takes weights in [-127, 127] (x86 AVX2 sign trick) runs
    // layers with many -128 weights on its fallback, as the drivers do.
    kern_ = npq::gemm_kernel_for_weights(kern, w_.data(), s.n, s.k, s.k);
    packed_.reset(new npq::PackedWeights(w_.data(), s.n, s.k, s.k, kern_.layout));
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
  npq::QGemmKernel kern_;
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
          record(kern.isa, kern.name, gc.requant(config, zps[(idx + 1) % 3]),
                 describe(kern, s, ("requant config " + std::to_string(config)).c_str()));
          record(kern.isa, kern.name, gc.dequant(), describe(kern, s, "dequant"));
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
    record(qk.isa, qk.name, ok && lo == rlo && hi == rhi, std::string(qk.name) + " minmax n=" +
                                                     std::to_string(n));
    if (n > 40) continue;
    const float bad[] = {std::nanf(""), INFINITY, -INFINITY};
    for (float b : bad)
      for (size_t p = 0; p < n; ++p) {
        const float keep = x[p];
        x[p] = b;
        record(qk.isa, qk.name, !qk.minmax(n, x, &lo, &hi),
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
        record(qk.isa, qk.name, ok, what);
      }
}

// ---- convolution kernels (depthwise, indirect GEMM)
//
// Each kernel runs inside the conv driver (ops/conv2d.cc) with the kernel under
// test plugged into its ISA's ConvKernels, so it is called exactly as in
// production: row transforms and channel-block tails (depthwise), output-pixel
// tiles shorter than MR and partial column panels (indirect GEMM), padding rows.
// The input ends at a PROT_NONE page; the output has sentinels on both sides.

struct ConvCase {
  npq::ConvGeometry g;
  size_t n, h, w;
  int pattern;  // operands, as fill_operands
  int32_t xz, yz;
  int clamp;    // 0: [0, 255], 1: fused ReLU [yz, 255], 2: narrow [37, 201]
};

size_t conv_out(size_t in, size_t k, size_t s, size_t d, size_t p0, size_t p1) {
  return (in + p0 + p1 - d * (k - 1) - 1) / s + 1;
}

std::string describe(const char* kernel, const ConvCase& c) {
  const npq::ConvGeometry& g = c.g;
  char buf[320];
  std::snprintf(buf, sizeof(buf),
                "%s N,H,W=%zu,%zu,%zu in=%zu out=%zu groups=%zu k=%zux%zu stride=%zu,%zu "
                "dil=%zu,%zu pad=%zu,%zu,%zu,%zu pattern=%d xz=%d yz=%d clamp=%d",
                kernel, c.n, c.h, c.w, g.in_c, g.out_c, g.groups, g.kh, g.kw, g.stride_h,
                g.stride_w, g.dil_h, g.dil_w, g.pad_top, g.pad_left, g.pad_bottom, g.pad_right,
                c.pattern, c.xz, c.yz, c.clamp);
  return buf;
}

// Grows the input so the dilated kernel fits the padded input.
void fit_input(ConvCase* c) {
  const npq::ConvGeometry& g = c->g;
  const size_t span_h = g.dil_h * (g.kh - 1) + 1, span_w = g.dil_w * (g.kw - 1) + 1;
  if (c->h + g.pad_top + g.pad_bottom < span_h) c->h = span_h - g.pad_top - g.pad_bottom;
  if (c->w + g.pad_left + g.pad_right < span_w) c->w = span_w - g.pad_left - g.pad_right;
}

// Runs the conv with kernels k (which must take path `want`) and compares every
// output byte with ref::conv2d_requant. "" on a match, else what differed.
std::string conv_mismatch(const npq::ConvKernels& k, const ConvCase& c,
                          npq::PackedConv2d::Path want) {
  const npq::ConvGeometry& g = c.g;
  const size_t cg = g.in_c / g.groups, taps = g.kh * g.kw;
  const size_t oh = conv_out(c.h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom);
  const size_t ow = conv_out(c.w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right);
  const size_t x_bytes = c.n * c.h * c.w * g.in_c, y_bytes = c.n * oh * ow * g.out_c;
  // Operands in the GEMM's patterns: input pixels as rows of in_c bytes, weights
  // as out_c rows of cg*taps.
  std::vector<uint8_t> xv, unused_a;
  std::vector<int8_t> w, unused_w;
  fill_operands(c.pattern, c.n * c.h * c.w, 1, g.in_c, &xv, &unused_w);
  fill_operands(c.pattern, 1, g.out_c, cg * taps, &unused_a, &w);
  GuardedBuffer x(x_bytes);
  std::memcpy(x.data(), xv.data(), x_bytes);

  // xs = 2^-4 and ys = 1 make mult = fl(xs * ws) = ws / 16 exactly: channel 0
  // gets 0.5 (odd accumulators are ties), channel 1 a huge multiplier (the
  // saturating path), the others spread about +-300 so the clamps bind.
  std::vector<int32_t> acc(y_bytes);
  npq::ref::conv2d_acc(g, c.n, c.h, c.w, x.data(), c.xz, w.data(), acc.data());
  std::vector<int64_t> mx(g.out_c, 1);
  for (size_t i = 0; i < y_bytes; ++i)
    mx[i % g.out_c] = std::max<int64_t>(mx[i % g.out_c], std::llabs(acc[i]));
  const float xs = 0.0625f, ys = 1.0f;
  std::vector<float> ws(g.out_c), bias(g.out_c);
  for (size_t o = 0; o < g.out_c; ++o) {
    ws[o] = 16.0f * uniform_f(100.0f, 300.0f) / static_cast<float>(mx[o]);
    bias[o] = uniform(0, 3) == 0 ? 0.0f : uniform_f(-0.3f, 0.3f) * xs * ws[o] * mx[o];
  }
  ws[0] = 8.0f;
  bias[0] = 0.0f;
  if (g.out_c > 1) ws[1] = 1.6e7f;
  const int32_t lo = c.clamp == 0 ? 0 : c.clamp == 1 ? c.yz : 37;
  const int32_t hi = c.clamp == 2 ? 201 : 255;
  std::vector<float> bias_s(g.out_c), mult(g.out_c);
  npq::requant_constants(g.out_c, xs, ws.data(), ys, bias.data(), bias_s.data(), mult.data());
  std::vector<uint8_t> want_y(y_bytes);
  npq::ref::conv2d_requant(g, c.n, c.h, c.w, x.data(), c.xz, w.data(), bias_s.data(),
                           mult.data(), c.yz, lo, hi, want_y.data());

  // A w127 indirect GEMM (avx2's sign trick) hands layers with more -128s in a
  // panel than its fix table holds to the exact gathered path (patterns 1, 2).
  if (want == npq::PackedConv2d::Path::igemm && k.igemm.layout.w127) {
    const size_t og = g.out_c / g.groups;
    for (size_t grp = 0; grp < g.groups; ++grp)
      if (!npq::weights_fit_layout(w.data() + grp * og * cg * taps, og, cg * taps, cg * taps,
                                   k.igemm.layout))
        want = npq::PackedConv2d::Path::gather;
  }
  const npq::PackedConv2d packed(w.data(), g, k);
  if (packed.path() != want)
    return std::string("took path ") + packed.path_name() + " (" + packed.kernel_name() + ")";
  constexpr size_t kGuard = 64;
  std::vector<uint8_t> y(y_bytes + 2 * kGuard, 0xA5);
  const npq::Conv2dArgs a{c.n, c.h, c.w, x.data(), xs, c.xz, ws.data(), bias.data(),
                          ys, c.yz, lo, hi, y.data() + kGuard};
  npq::conv2d_static(packed, a);
  for (size_t i = 0; i < y.size(); ++i) {
    const bool out = i >= kGuard && i < kGuard + y_bytes;
    const uint8_t expect = out ? want_y[i - kGuard] : 0xA5;
    if (y[i] != expect)
      return out ? "output " + std::to_string(i - kGuard) + ": got " + std::to_string(y[i]) +
                       ", want " + std::to_string(expect)
                 : "wrote outside the output at byte " + std::to_string(i) + " of the buffer";
  }
  return "";
}

const int32_t kZps[] = {0, 128, 255};

// Operand pattern, zero points and clamp from a case index (all combinations recur).
void vary(size_t idx, ConvCase* c) {
  c->xz = kZps[idx % 3];
  c->pattern = static_cast<int>((idx / 3) % 3);
  c->clamp = static_cast<int>((idx / 9) % 3);
  c->yz = kZps[(idx / 27 + idx) % 3];
}

// Padding mode 0: none, 1: "same" (half the dilated kernel on each side),
// 2: asym = {top, left, bottom, right}.
void set_padding(size_t mode, const size_t (&asym)[4], npq::ConvGeometry* g) {
  if (mode == 1) {
    g->pad_top = g->pad_bottom = g->kh / 2 * g->dil_h;
    g->pad_left = g->pad_right = g->kw / 2 * g->dil_w;
  } else if (mode == 2) {
    g->pad_top = asym[0], g->pad_left = asym[1], g->pad_bottom = asym[2], g->pad_right = asym[3];
  }
}

// Varies case idx's operands, fits the input to the kernel, runs the conv (which
// must take `path`) and records the outcome for kernel `name`.
void check_conv_case(const npq::ConvKernels& k, npq::PackedConv2d::Path path, Isa isa,
                     const char* name, size_t idx, ConvCase* c) {
  vary(idx, c);
  fit_input(c);
  const std::string why = conv_mismatch(k, *c, path);
  record(isa, name, why.empty(), describe(name, *c) + ": " + why);
}

// Depthwise: channels 1..2*CT+1, kernels 1/3/5 (square and not), strides 1..2,
// dilations 1..2, no / "same" / asymmetric padding, multipliers 1 and 2.
void test_dwconv_kernel(const npq::DwconvKernel& dk) {
  npq::ConvKernels k = npq::conv_kernels_for(dk.isa);
  k.dwconv = dk;
  const size_t shapes[][2] = {{1, 1}, {3, 3}, {5, 5}, {3, 5}, {5, 3}, {1, 3}, {3, 1}};
  size_t idx = 0;
  for (size_t ch = 1; ch <= 2 * dk.ct + 1; ++ch)
    for (const auto& kk : shapes)
      for (size_t stride = 1; stride <= 2; ++stride, ++idx) {
        ConvCase c{};
        npq::ConvGeometry& g = c.g;
        g.groups = g.in_c = ch;
        g.out_c = ch > 1 && idx % 5 == 4 ? 2 * ch : ch;
        g.kh = kk[0];
        g.kw = kk[1];
        g.stride_h = stride;
        g.stride_w = idx % 3 == 0 ? 3 - stride : stride;
        g.dil_h = 1 + idx % 2;
        g.dil_w = 1 + (idx / 2) % 2;
        set_padding((idx / 4) % 3, {2, 0, 1, 3}, &g);
        c.n = 1 + idx % 2;
        c.h = 2 + idx % 5;
        c.w = 3 + idx % 9;
        check_conv_case(k, npq::PackedConv2d::Path::dwconv, dk.isa, dk.name, idx, &c);
      }
}

// Indirect GEMM: output channels 1..2*NR+1, input channels per group KR * {1, 2, 3, 5}
// (K loop remainders), kernels 1/3/5, 1 or 2 groups, strides, dilations, padding,
// and output sizes whose pixel count leaves every tail of MR.
void test_igemm_kernel(const npq::QIGemmKernel& ik) {
  npq::ConvKernels k = npq::conv_kernels_for(ik.isa);
  k.igemm = ik;
  const size_t kr = ik.layout.kr, cms[] = {1, 2, 3, 5};
  size_t idx = 0;
  for (size_t oc = 1; oc <= 2 * ik.layout.nr + 1; ++oc)
    for (size_t ks : {1, 3, 5})
      for (size_t cm : cms) {
        ConvCase c{};
        npq::ConvGeometry& g = c.g;
        g.groups = idx % 4 == 3 ? 2 : 1;
        g.in_c = cm * kr * g.groups;
        g.out_c = oc * g.groups;
        g.kh = ks;
        g.kw = idx % 5 == 1 ? 6 - ks : ks;  // 1x5, 3x3, 5x1 among the squares
        g.stride_h = 1 + idx % 2;
        g.stride_w = 1 + (idx / 2) % 2;
        g.dil_h = 1 + (idx / 3) % 2;
        g.dil_w = g.dil_h;
        // (1x1, stride 1, no padding is the pointwise GEMM path: pad it, and
        // every one-row kernel with "same" padding, by one row.)
        const bool pointwise = g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1;
        const size_t pad = pointwise ? 1 : (idx / 4) % 3;
        set_padding(pad, {0, 2, 3, 1}, &g);
        if (pad == 1 && g.kh == 1) g.pad_top = g.pad_bottom = 1;
        c.n = 1 + idx % 2;
        c.h = 1 + idx % 6;
        c.w = 2 + idx % 7;
        check_conv_case(k, npq::PackedConv2d::Path::igemm, ik.isa, ik.name, idx, &c);
        ++idx;
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
  for (const auto& d : npq::built_dwconv_kernels())
    if (npq::can_run(d)) test_dwconv_kernel(d);
  for (const auto& i : npq::built_igemm_kernels())
    if (npq::can_run(i)) test_igemm_kernel(i);

  for (const auto& kt : g_kernel_tally)
    std::printf("  %-34s %7zu passed, %zu failed\n", kt.first.c_str(), kt.second.passed,
                kt.second.failed);

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
