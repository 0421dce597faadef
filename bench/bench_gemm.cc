// npquant native benchmark: peak probes per ISA, then every runnable GEMM
// kernel through the Linear drivers (static u8 -> u8 and dynamic f32 -> f32)
// on the shapes of bench/compare.py, every runnable ISA's conv kernels
// (indirect GEMM or gathered GEMM, depthwise) through the Conv2d driver on
// the conv shapes of docs/conv.md, and every runnable quantize, add and mul
// kernel on 1 Mi elements. The kernels come from the dispatch tables, i.e. the
// registry (csrc/npquant/ukernels.inc): a registered kernel is benchmarked, the float32
// kernels of sequence models (GELU, softmax, LayerNorm, LSTM / GRU cells, GEMM tiles) too. Reports
// GMAC/s and % of the kernel ISA's probe peak. Single thread unless --threads=N (or a
// list, --threads=1,2, to see the scaling in one run).
//
//   npquant_bench                                   # everything
//   npquant_bench --benchmark_filter='^probe/'      # peaks only
//   npquant_bench --threads=1,2 --benchmark_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "npquant/dispatch.h"
#include "npquant/ops/conv2d.h"
#include "npquant/ops/gemm_f32.h"
#include "npquant/ops/linear.h"
#include "npquant/ops/threadpool.h"
#include "peaks.h"

namespace {

struct Shape {
  size_t m, k, n;
};
// (M, K, N): transformer layers at batch 1 and small batches, a large square.
const Shape kShapes[] = {{1, 768, 768},     {32, 768, 3072}, {128, 768, 768},    {128, 3072, 768},
                         {512, 1024, 1024}, {1, 4096, 4096}, {1024, 1024, 1024}, {256, 256, 256}};

// Deterministic filler (xorshift), cheap enough for 16M-element weights.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 32);
  }
  float normalish() {  // sum of uniforms: mean 0, std about 1
    float v = 0;
    for (int i = 0; i < 4; ++i) v += next() * (1.0f / 4294967296.0f) - 0.5f;
    return v * 1.7320508f;
  }
};

// Weights and per-channel scales shared by both drivers.
struct Weights {
  npq::PackedWeights packed;
  std::vector<float> scale, bias;

  static Weights make(const Shape& s, const npq::QGemmKernel& k) {
    Rng rng;
    // Like symmetric per-channel quantization (scale = max|w| / 127.5): values
    // in [-127, 127] and one -128 in every other column (where the extreme was
    // negative). Kernels that take weights in [-127, 127] (the AVX2 sign trick)
    // run such layers themselves (docs/ukernels.md); every kernel gets the same data.
    std::vector<int8_t> w(s.n * s.k);
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng.next() % 255) - 127);
    for (size_t j = 0; j < s.n; j += 2) w[j * s.k + rng.next() % s.k] = -128;
    std::vector<float> scale(s.n), bias(s.n);
    for (size_t i = 0; i < s.n; ++i) {
      scale[i] = (0.5f + (rng.next() % 100) * 0.01f) / 128.0f;
      bias[i] = rng.normalish();
    }
    return {npq::pack_weights(w.data(), s.n, s.k, s.k, k), std::move(scale), std::move(bias)};
  }
};

// GB's rate counters print as "x/s"; the rates are computed here instead from
// the wall time of the timed loop (the drivers run on a thread pool, so
// wall time is what counts, as with UseRealTime()).
class WallClock {
 public:
  WallClock() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_;
};

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Timing {
  double wall = 0;  // all iterations
  double best = 0;  // the fastest iteration
  double cpu = 0;   // process CPU time, all iterations
};

// Runs the benchmark loop over fn(), timing each iteration.
template <class Fn>
Timing time_loop(benchmark::State& st, const Fn& fn) {
  Timing t;
  const WallClock clock;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : st) {
    const WallClock once;
    fn();
    const double s = once.seconds();
    t.best = t.best == 0 ? s : std::min(t.best, s);
  }
  t.cpu = process_cpu_seconds() - cpu0;
  t.wall = clock.seconds();
  return t;
}

void set_rate_counters(benchmark::State& st, double macs, double seconds, double peak) {
  if (seconds <= 0) return;
  const double rate = macs / seconds;
  st.counters["GMAC/s"] = rate * 1e-9;
  if (peak > 0) st.counters["%peak"] = 100.0 * rate / peak;
}

// GMAC/s and %peak over all iterations (GB's usual mean); best_GMAC/s and
// best_%peak of the fastest iteration, which preemption on a shared machine
// cannot slow down; with one thread, cpu_GMAC/s from the process's CPU time,
// which other processes do not inflate either (better than the best iteration
// when every iteration is long enough to be preempted).
void set_counters(benchmark::State& st, const Shape& s, const npq::QGemmKernel& k, int threads,
                  const Timing& t) {
  const double macs = static_cast<double>(s.m) * s.k * s.n;
  const double peak = npqbench::peak_macs(k.isa, k.standin, threads);
  set_rate_counters(st, macs * st.iterations(), t.wall, peak);
  if (t.best > 0) {
    st.counters["best_GMAC/s"] = macs / t.best * 1e-9;
    if (peak > 0) st.counters["best_%peak"] = 100.0 * macs / t.best / peak;
  }
  if (threads == 1 && t.cpu > 0) st.counters["cpu_GMAC/s"] = macs * st.iterations() / t.cpu * 1e-9;
  st.SetLabel(std::string(npq::isa_name(k.isa)) + (k.standin ? " (stand-in)" : ""));
}

// Labels a Linear benchmark whose weights went to the kernel's fallback.
void note_fallback(benchmark::State& st, const npq::PackedWeights& w, const npq::QGemmKernel& k) {
  if (!npq::layout_compatible(w.layout(), k.layout))
    st.SetLabel(std::string("FELL BACK to ") + npq::gemm_fallback(k).name);
}

void bench_static(benchmark::State& st, npq::QGemmKernel k, Shape s, int threads) {
  npq::set_num_threads(threads);
  const Weights w = Weights::make(s, k);
  Rng rng;
  std::vector<uint8_t> x(s.m * s.k), y(s.m * s.n);
  for (auto& v : x) v = static_cast<uint8_t>(rng.next());
  // Output scale: the accumulators' spread (std of u8 - 128 and of s8 is
  // about 74) maps to about 40 steps, so outputs use most of the u8 range.
  const float xs = 0.02f, ys = xs * w.scale[0] * 74.0f * 74.0f * std::sqrt(float(s.k)) / 40.0f;
  npq::StaticLinearArgs a{s.m, x.data(), s.k, xs,       128, w.scale.data(), w.bias.data(), ys,
                          100, 0,        255, y.data(), s.n};
  // As the Python layer does: constants made once per (input, output) scale pair.
  const npq::RequantConstants c = npq::requant_constants(w.packed, xs, a.w_scale, ys, a.bias);
  const Timing t = time_loop(st, [&] {
    npq::linear_static(w.packed, a, c, k);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  set_counters(st, s, k, threads, t);
  note_fallback(st, w.packed, k);
}

void bench_dynamic(benchmark::State& st, npq::QGemmKernel k, Shape s, int threads) {
  npq::set_num_threads(threads);
  const Weights w = Weights::make(s, k);
  const npq::QuantizeKernel& q = npq::quantize_kernel_for(k);
  Rng rng;
  std::vector<float> x(s.m * s.k), y(s.m * s.n);
  for (auto& v : x) v = rng.normalish();
  npq::DynamicLinearArgs a{s.m, x.data(), s.k, w.scale.data(), w.bias.data(), false, y.data(), s.n};
  const Timing t = time_loop(st, [&] {
    npq::linear_dynamic(w.packed, a, k, q);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  set_counters(st, s, k, threads, t);
  note_fallback(st, w.packed, k);
}

// Reports the best iteration's rate: a peak is a maximum, and on a shared
// machine preemption only ever lowers a sample.
void bench_probe(benchmark::State& st, npqbench::Probe p, int threads) {
  const uint64_t iters = npqbench::probe_iters(p);  // about 1 ms per iteration
  double best = 0;
  for (auto _ : st) {
    const WallClock clock;
    const uint64_t macs = npqbench::run_probe(p, threads, iters);
    best = std::max(best, macs / clock.seconds());
  }
  st.counters["GMAC/s"] = best * 1e-9;
  st.SetLabel(p.is_peak ? std::string("peak of ") + npq::isa_name(p.peak_of) +
                              (p.standin ? " (stand-in)" : "")
                        : "reference");
}

// ---- Conv2d (NHWC u8, static requantization)

struct ConvShape {
  size_t n, c, h, w, out_c, k, stride, groups;
};
// docs/conv.md's layers: dense 3x3, pointwise, deep 3x3, depthwise 3x3, a
// MobileNetV2 stride-2 depthwise, batch 8; the other ResNet 3x3 stages; the
// vision models' 3-input-channel first layers; MobileNet / ShuffleNet layers;
// ResNet-50's uneven batch-1 1x1 convs.
const ConvShape kConvShapes[] = {{1, 64, 56, 56, 64, 3, 1, 1},
                                 {1, 256, 56, 56, 64, 1, 1, 1},
                                 {1, 256, 14, 14, 256, 3, 1, 1},
                                 {1, 32, 112, 112, 32, 3, 1, 32},
                                 {1, 144, 56, 56, 144, 3, 2, 144},
                                 {8, 128, 28, 28, 128, 3, 1, 1},
                                 {1, 128, 28, 28, 128, 3, 1, 1},
                                 {1, 512, 7, 7, 512, 3, 1, 1},
                                 // the 3-channel stems: MobileNetV2 (32), ShuffleNetV2 (24),
                                 // MobileNetV3 (16) 3x3 stride 2; ResNet's 7x7 stride 2
                                 {8, 3, 224, 224, 32, 3, 2, 1},
                                 {1, 3, 224, 224, 32, 3, 2, 1},
                                 {8, 3, 224, 224, 24, 3, 2, 1},
                                 {1, 3, 224, 224, 16, 3, 2, 1},
                                 {8, 3, 224, 224, 16, 3, 2, 1},
                                 {8, 3, 224, 224, 64, 7, 2, 1},
                                 {1, 3, 224, 224, 64, 7, 2, 1},
                                 // MobileNetV2 / V3 / ShuffleNetV2 (batch 8): depthwise 3x3 and
                                 // 5x5 at stride 1 and 2, and 1x1 convs with small K or N.
                                 {8, 32, 112, 112, 32, 3, 1, 32},
                                 {8, 96, 112, 112, 96, 3, 2, 96},
                                 {8, 144, 56, 56, 144, 3, 1, 144},
                                 {8, 384, 14, 14, 384, 3, 1, 384},
                                 {8, 72, 56, 56, 72, 5, 2, 72},
                                 {8, 120, 28, 28, 120, 5, 1, 120},
                                 {8, 58, 28, 28, 58, 3, 1, 58},
                                 {8, 32, 112, 112, 16, 1, 1, 1},
                                 {8, 16, 112, 112, 96, 1, 1, 1},
                                 {8, 144, 56, 56, 24, 1, 1, 1},
                                 {8, 24, 56, 56, 144, 1, 1, 1},
                                 {8, 58, 28, 28, 58, 1, 1, 1},
                                 // ResNet-50's batch-1 1x1 convs where M (pixels) splits
                                 // unevenly into 64-row blocks: 14x14 (196) and 28x28 (784)
                                 {1, 1024, 14, 14, 256, 1, 1, 1},
                                 {1, 256, 14, 14, 1024, 1, 1, 1},
                                 {1, 512, 28, 28, 128, 1, 1, 1}};

std::string conv_shape_name(const ConvShape& s) {
  auto v = [](size_t x) { return std::to_string(x); };
  return "N:" + v(s.n) + "/C:" + v(s.c) + "/HW:" + v(s.h) + "/Cout:" + v(s.out_c) + "/k:" + v(s.k) +
         "/s:" + v(s.stride) + "/g:" + v(s.groups);
}

// One conv layer ("same" padding) on the conv kernels of one ISA.
// igemm = false forces the gathered path where the ISA has an indirect GEMM;
// wino as PackedConv2d's (never: what the ISA ran before its Winograd kernel).
void bench_conv(benchmark::State& st, npq::ConvKernels k, ConvShape s, int threads, bool igemm,
                npq::WinogradUse wino) {
  npq::set_num_threads(threads);
  const size_t pad = s.k / 2;
  const npq::ConvGeometry g{s.c, s.out_c, s.groups, s.k, s.k, s.stride, s.stride,
                            1,   1,       pad,      pad, pad, pad};
  Rng rng;
  // As the Linear weights: [-127, 127] and one -128 in every other output channel.
  const size_t per_out = (s.c / s.groups) * s.k * s.k;
  std::vector<int8_t> w(s.out_c * per_out);
  for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng.next() % 255) - 127);
  for (size_t o = 0; o < s.out_c; o += 2) w[o * per_out + rng.next() % per_out] = -128;
  std::vector<float> scale(s.out_c), bias(s.out_c);
  for (size_t i = 0; i < s.out_c; ++i) {
    scale[i] = (0.5f + (rng.next() % 100) * 0.01f) / 128.0f;
    bias[i] = rng.normalish();
  }
  const npq::PackedConv2d packed(w.data(), g, k, igemm, wino);
  const size_t oh = (s.h + 2 * pad - s.k) / s.stride + 1, ow = (s.w + 2 * pad - s.k) / s.stride + 1;
  std::vector<uint8_t> x(s.n * s.h * s.w * s.c), y(s.n * oh * ow * s.out_c);
  for (auto& v : x) v = static_cast<uint8_t>(rng.next());
  const size_t kk = (s.c / s.groups) * s.k * s.k;
  const float xs = 0.02f, ys = xs * scale[0] * 74.0f * 74.0f * std::sqrt(float(kk)) / 40.0f;
  const npq::Conv2dArgs a{s.n,         s.h, s.w, x.data(), xs,  128,     scale.data(),
                          bias.data(), ys,  100, 0,        255, y.data()};
  const Timing t = time_loop(st, [&] {
    npq::conv2d_static(packed, a);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  const double macs = static_cast<double>(s.n) * oh * ow * s.out_c * kk;
  const npq::Isa isa = packed.path() == npq::PackedConv2d::Path::dwconv ? k.dwconv.isa : k.gemm.isa;
  set_rate_counters(st, macs * st.iterations(), t.wall, npqbench::peak_macs(isa, false, threads));
  if (t.best > 0) st.counters["best_GMAC/s"] = macs / t.best * 1e-9;
  if (threads == 1 && t.cpu > 0) st.counters["cpu_GMAC/s"] = macs * st.iterations() / t.cpu * 1e-9;
  st.SetLabel(std::string(packed.path_name()) + " " + packed.kernel_name());
}

// Every runnable ISA's conv kernels (what NPQUANT_ISA=<isa> would run).
void register_conv(const std::vector<int>& thread_counts) {
  std::vector<npq::Isa> isas;
  for (const npq::QGemmKernel& k : npq::runnable_gemm_kernels())
    if (!k.standin && std::find(isas.begin(), isas.end(), k.isa) == isas.end())
      isas.push_back(k.isa);
  for (npq::Isa isa : isas) {
    const npq::ConvKernels k = npq::conv_kernels_for(isa);
    for (const ConvShape& s : kConvShapes)
      for (int threads : thread_counts) {
        const std::string name = std::string("conv/") + npq::isa_name(isa) + "/" +
                                 conv_shape_name(s) + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), bench_conv, k, s, threads, true,
                                     npq::WinogradUse::when_faster)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        // Depthwise layers: forced onto every runnable dwconv kernel of the ISA
        // other than the routed one (both AVX-512 kernels at stride 1 and 2).
        if (s.groups == s.c && s.groups > 1)
          for (const npq::DwconvKernel& dk : npq::built_dwconv_kernels())
            if (dk.isa == isa && npq::can_run(dk) &&
                std::string(dk.name) != (s.stride > 1 ? k.dwconv_strided : k.dwconv).name) {
              npq::ConvKernels kd = k;
              kd.dwconv = kd.dwconv_strided = dk;
              benchmark::RegisterBenchmark(
                  ("conv_dw/" + std::string(dk.name) + "/" + conv_shape_name(s) +
                   "/threads:" + std::to_string(threads))
                      .c_str(),
                  bench_conv, kd, s, threads, true, npq::WinogradUse::when_faster)
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
            }
        // Dense non-1x1 layers: the gathered path too (what the ISA ran before its
        // indirect GEMM), and the GEMM kernel on the same M x K x N (conv's target
        // rate: M = output pixels, K = C*k*k, N = Cout; no tap copies at all).
        if (s.groups != 1 || s.k == 1) continue;
        const std::string tail = std::string(npq::isa_name(isa)) + "/" + conv_shape_name(s) +
                                 "/threads:" + std::to_string(threads);
        if (k.igemm.requant)
          benchmark::RegisterBenchmark(("conv_gather/" + tail).c_str(), bench_conv, k, s, threads,
                                       false, npq::WinogradUse::never)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        // 3x3 stride 1 with a Winograd kernel: Winograd and the path it replaces, both
        // forced, beside the routed entry above (MACs counted as the direct conv's).
        if (k.wino.name && s.k == 3 && s.stride == 1) {
          benchmark::RegisterBenchmark(("conv_winograd/" + tail).c_str(), bench_conv, k, s, threads,
                                       true, npq::WinogradUse::when_exact)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
          benchmark::RegisterBenchmark(("conv_direct/" + tail).c_str(), bench_conv, k, s, threads,
                                       true, npq::WinogradUse::never)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
        const size_t pad = s.k / 2, o = (s.h + 2 * pad - s.k) / s.stride + 1;
        const Shape gs{s.n * o * o, s.c * s.k * s.k, s.out_c};
        benchmark::RegisterBenchmark(("conv_as_gemm/" + tail).c_str(), bench_static, k.gemm, gs,
                                     threads)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
  }
}

// ---- elementwise kernels: every runnable quantize, add and mul kernel of the
// registry (ukernels.inc) on 1 Mi elements, in elements per second.

constexpr size_t kElems = 1 << 20;

void set_elem_counters(benchmark::State& st, const char* name, const Timing& t) {
  st.counters["Melem/s"] = t.wall > 0 ? kElems * st.iterations() / t.wall * 1e-6 : 0;
  if (t.best > 0) st.counters["best_Melem/s"] = kElems / t.best * 1e-6;
  st.SetLabel(name);
}

void bench_quantize(benchmark::State& st, npq::QuantizeKernel k) {
  Rng rng;
  std::vector<float> x(kElems);
  for (auto& v : x) v = rng.normalish();
  std::vector<uint8_t> q(kElems);
  const Timing t = time_loop(st, [&] {
    float lo, hi;
    k.minmax(kElems, x.data(), &lo, &hi);
    k.quantize(kElems, x.data(), 255.0f / (hi - lo), 128, q.data());
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  });
  set_elem_counters(st, k.name, t);
}

template <class K, class P, class Fn>
void bench_binary(benchmark::State& st, K k, P p, Fn fn) {
  Rng rng;
  std::vector<uint8_t> a(kElems), b(kElems), y(kElems);
  for (size_t i = 0; i < kElems; ++i)
    a[i] = static_cast<uint8_t>(rng.next()), b[i] = static_cast<uint8_t>(rng.next());
  const Timing t = time_loop(st, [&] {
    fn(k, kElems, a.data(), b.data(), y.data(), &p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  set_elem_counters(st, k.name, t);
}

void register_elementwise() {
  for (const npq::QuantizeKernel& k : npq::runnable_quantize_kernels())
    benchmark::RegisterBenchmark((std::string("quantize/") + k.name).c_str(), bench_quantize, k)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  const npq::QAddParams ap{0.02f, 0.02f * -128.0f, 0.03f, 0.03f * -100.0f, 1.0f / 0.04f, 120, 0};
  for (const npq::AddKernel& k : npq::built_add_kernels())
    if (npq::can_run(k))
      benchmark::RegisterBenchmark(
          (std::string("qadd/") + k.name).c_str(),
          [k, ap](benchmark::State& st) {
            bench_binary(st, k, ap,
                         [](const npq::AddKernel& kk, size_t n, const uint8_t* a, const uint8_t* b,
                            uint8_t* y, const npq::QAddParams* p) { kk.vadd(n, a, b, y, p); });
          })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  const npq::QMulParams mp{128, 100, 0.02f * 0.03f / 0.05f, 120};
  for (const npq::MulKernel& k : npq::built_mul_kernels())
    if (npq::can_run(k))
      benchmark::RegisterBenchmark(
          (std::string("qmul/") + k.name).c_str(),
          [k, mp](benchmark::State& st) {
            bench_binary(st, k, mp,
                         [](const npq::MulKernel& kk, size_t n, const uint8_t* a, const uint8_t* b,
                            uint8_t* y, const npq::QMulParams* p) { kk.vmul(n, a, b, y, p); });
          })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  // Max pooling, 3x3 windows (9 taps) over one output row of 14 pixels x C channels (the
  // taps of neighbouring pixels overlap, as in a 3x3 stride-2 pool): GoogLeNet's maxpool3 row
  // (C = 480) and ResNet's first pool (C = 64). GB/s counts the tap bytes read.
  for (const npq::MaxPoolKernel& k : npq::built_maxpool_kernels())
    if (npq::can_run(k))
      for (size_t c : {64, 480})
        benchmark::RegisterBenchmark(
            ("maxpool/" + std::string(k.name) + "/C:" + std::to_string(c)).c_str(),
            [k, c](benchmark::State& st) {
              const size_t ow = 14, ks = 9, iw = 2 * ow + 1;
              std::vector<uint8_t> x(3 * iw * c), y(ow * c);
              for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(i * 131 + 7);
              std::vector<const uint8_t*> ind(ow * ks);
              for (size_t o = 0; o < ow; ++o)
                for (size_t i = 0; i < 3; ++i)
                  for (size_t j = 0; j < 3; ++j)
                    ind[o * ks + i * 3 + j] = x.data() + (i * iw + 2 * o + j) * c;
              for (auto _ : st) {
                k.maxpool(ow, ks, ind.data(), c, y.data());
                benchmark::DoNotOptimize(y.data());
                benchmark::ClobberMemory();
              }
              st.counters["GB/s"] =
                  benchmark::Counter(static_cast<double>(ow * ks * c) * 1e-9,
                                     benchmark::Counter::kIsIterationInvariantRate);
            })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
  std::vector<uint8_t> table(256);
  for (size_t c = 0; c < 256; ++c) table[c] = static_cast<uint8_t>(c * 37 + 11);
  for (const npq::LutKernel& k : npq::built_lut_kernels())
    if (npq::can_run(k))
      benchmark::RegisterBenchmark(
          (std::string("lut/") + k.name).c_str(),
          [k, table](benchmark::State& st) {
            bench_binary(st, k, table.data(),
                         [](const npq::LutKernel& kk, size_t n, const uint8_t* a, const uint8_t*,
                            uint8_t* y, const uint8_t* const* t) { kk.lut(n, a, y, *t); });
          })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
}

// ---- float32 kernels (GELU, softmax, LayerNorm, LSTM / GRU cells): every runnable
// kernel of each family on 1 Mi elements, in elements (hidden units for the cells) per
// second; softmax and LayerNorm as rows of n (attention rows of 128 keys, hidden sizes).

template <class Fn>
void bench_float(benchmark::State& st, const char* name, size_t floats_in, Fn fn) {
  Rng rng;
  std::vector<float> in(floats_in), out(2 * kElems);
  for (auto& v : in) v = 3.0f * rng.normalish();
  const Timing t = time_loop(st, [&] {
    fn(in.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  });
  set_elem_counters(st, name, t);
}

template <class K, class Make>
void register_float_family(const std::vector<K>& table, const std::string& prefix, Make make) {
  for (const K& k : table)
    if (npq::can_run(k))
      benchmark::RegisterBenchmark((prefix + k.name).c_str(), make(k))
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
}

void register_float() {
  register_float_family(npq::built_gelu_kernels(), "gelu/", [](npq::GeluKernel k) {
    return [k](benchmark::State& st) {
      bench_float(st, k.name, kElems, [&](const float* x, float* y) { k.gelu(kElems, x, y, 0); });
    };
  });
  for (size_t n : {128, 1000})
    register_float_family(npq::built_softmax_kernels(), "softmax/n:" + std::to_string(n) + "/",
                          [n](npq::SoftmaxKernel k) {
                            return [k, n](benchmark::State& st) {
                              bench_float(st, k.name, kElems, [&](const float* x, float* y) {
                                for (size_t r = 0; r + n <= kElems; r += n)
                                  k.fn(n, x + r, nullptr, y + r);
                              });
                            };
                          });
  for (size_t n : {256, 768})
    register_float_family(npq::built_layernorm_kernels(), "layernorm/n:" + std::to_string(n) + "/",
                          [n](npq::LayerNormKernel k) {
                            return [k, n](benchmark::State& st) {
                              bench_float(st, k.name, kElems + 2 * n,
                                          [&](const float* x, float* y) {
                                            const float *g = x + kElems, *b = g + n;
                                            for (size_t r = 0; r + n <= kElems; r += n)
                                              k.fn(n, x + r, g, b, 1e-5f, y + r);
                                          });
                            };
                          });
  // Cells: kElems hidden units as rows of 512 (batch rows of one time step).
  constexpr size_t kHidden = 512;
  register_float_family(npq::built_lstm_kernels(), "lstm_cell/hidden:512/", [](npq::LstmKernel k) {
    return [k](benchmark::State& st) {
      bench_float(st, k.name, 9 * kElems, [&](const float* x, float* y) {
        const float *gi = x, *gh = x + 4 * kElems, *c = x + 8 * kElems;
        for (size_t r = 0; r < kElems; r += kHidden)
          k.fn(kHidden, gi + 4 * r, gh + 4 * r, c + r, y + r, y + kElems + r);
      });
    };
  });
  register_float_family(npq::built_gru_kernels(), "gru_cell/hidden:512/", [](npq::GruKernel k) {
    return [k](benchmark::State& st) {
      bench_float(st, k.name, 7 * kElems, [&](const float* x, float* y) {
        const float *gi = x, *gh = x + 3 * kElems, *h = x + 6 * kElems;
        for (size_t r = 0; r < kElems; r += kHidden)
          k.fn(kHidden, gi + 3 * r, gh + 3 * r, h + r, y + r);
      });
    };
  });
}

std::string shape_name(const Shape& s) {
  return "M:" + std::to_string(s.m) + "/K:" + std::to_string(s.k) + "/N:" + std::to_string(s.n);
}

// Float32 GEMM tiles through the gemm_f32 driver: attention's two products per head (L = S
// = 128, D = 64) and the float Linear of a BERT-base-like layer (b^T: the weight as stored,
// repacked per panel), in GFLOP/s.
void bench_fgemm(benchmark::State& st, npq::FGemmKernel k, Shape s, bool trans) {
  Rng rng;
  std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
  for (auto& v : a) v = rng.normalish();
  for (auto& v : b) v = rng.normalish();
  const Timing t = time_loop(st, [&] {
    npq::gemm_f32(k, s.m, s.n, s.k, a.data(), s.k, b.data(), trans ? s.k : s.n, trans, nullptr,
                  c.data(), s.n, false);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
  const double flop = 2.0 * s.m * s.n * s.k;
  st.counters["GFLOP/s"] = t.wall > 0 ? flop * st.iterations() / t.wall * 1e-9 : 0;
  if (t.best > 0) st.counters["best_GFLOP/s"] = flop / t.best * 1e-9;
  st.SetLabel(k.name);
}

void register_fgemm() {
  struct Case {
    Shape s;
    bool trans;
  };
  const Case cases[] = {{{128, 64, 128}, true},
                        {{128, 128, 64}, false},
                        {{1024, 256, 768}, true},
                        {{1024, 768, 768}, true}};
  for (const npq::FGemmKernel& k : npq::built_fgemm_kernels())
    if (npq::can_run(k))
      for (const Case& c : cases)
        benchmark::RegisterBenchmark(
            (std::string("f32_gemm/") + k.name + "/" + (c.trans ? "bT/" : "b/") + shape_name(c.s))
                .c_str(),
            bench_fgemm, k, c.s, c.trans)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
}

void register_all(const std::vector<int>& thread_counts) {
  for (int threads : thread_counts) {
    const std::string t = "/threads:" + std::to_string(threads);
    for (const npqbench::Probe& p : npqbench::built_probes()) {
      if (!npqbench::can_run(p)) continue;
      const std::string name = std::string("probe/") + npq::isa_name(p.needs) + "/" + p.name + t;
      benchmark::RegisterBenchmark(name.c_str(), bench_probe, p, threads)->UseRealTime();
    }
  }
  for (const npq::QGemmKernel& k : npq::runnable_gemm_kernels()) {
    for (const Shape& s : kShapes) {
      for (int threads : thread_counts) {
        const std::string tail =
            std::string("/") + k.name + "/" + shape_name(s) + "/threads:" + std::to_string(threads);
        for (bool dynamic : {false, true}) {
          const std::string name = (dynamic ? "linear_dynamic" : "linear_static") + tail;
          benchmark::RegisterBenchmark(name.c_str(), dynamic ? bench_dynamic : bench_static, k, s,
                                       threads)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
  register_conv(thread_counts);
  register_elementwise();
  register_float();
  register_fgemm();
}

// Removes --threads=N[,N...] (or --threads N[,N...]) from argv; returns the
// thread counts (default: 1).
std::vector<int> take_threads_flag(int* argc, char** argv) {
  std::vector<int> counts;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string v;
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      v = argv[i] + 10;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < *argc) {
      v = argv[++i];
    } else {
      argv[out++] = argv[i];
      continue;
    }
    counts.clear();
    size_t pos = 0;
    while (pos <= v.size()) {
      const size_t comma = std::min(v.find(',', pos), v.size());
      const int n = std::atoi(v.substr(pos, comma - pos).c_str());
      if (n < 1) {
        std::fprintf(stderr, "--threads expects positive integers (e.g. 2 or 1,2), got '%s'\n",
                     v.c_str());
        std::exit(2);
      }
      counts.push_back(n);
      pos = comma + 1;
    }
  }
  *argc = out;
  if (counts.empty()) counts.push_back(1);
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<int> thread_counts = take_threads_flag(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  try {
    benchmark::AddCustomContext("npquant_isa", npq::isa_name(npq::kernels().cap));
    benchmark::AddCustomContext("cpu_brand", npq::cpu_features().brand);
  } catch (const std::exception& e) {  // e.g. a bad NPQUANT_ISA
    std::fprintf(stderr, "npquant_bench: %s\n", e.what());
    return 2;
  }
  register_all(thread_counts);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
