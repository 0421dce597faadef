#include "linear.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../qmath.h"
#include "threadpool.h"

namespace npq {

namespace {

constexpr size_t kMaxMR = 32;

// The kernel that runs weights w when k is asked for: k, or, for a layer that
// was packed for k's full-range fallback (w127 kernels with -128 weights, see
// dispatch.h gemm_kernel_for_weights), that fallback.
const QGemmKernel& kernel_for(const PackedWeights& w, const QGemmKernel& k) {
  if (layout_compatible(w.layout(), k.layout)) return k;
  const QGemmKernel& f = gemm_fallback(k);
  if (layout_compatible(w.layout(), f.layout)) return f;
  throw ValueError(std::string("packed weights do not match kernel ") + k.name +
                   "; repack them (weights are packed for the ISA chosen at import)");
}

// How the GEMM is cut into tasks. A task is rows [m0, m0 + mb) x columns
// [n0, n0 + nb); inside it the kernel runs MR rows at a time across all nb
// columns, so the MR x kp activation rows stay in L1 while the nb x kp weight
// block (at most ~256 KiB) streams from L2 once per MR rows.
struct Tiling {
  size_t mb, nb, m_tasks, n_tasks;
  bool serial;   // too little work to pay for waking other threads
  bool whole_m;  // a task is a whole M block (all N blocks), else an (M, N) block pair
  size_t tasks() const { return m_tasks * n_tasks; }
};

Tiling choose_tiling(size_t m, size_t n_padded, size_t kp, size_t mr, size_t nr) {
  Tiling t;
  t.mb = mr * std::max<size_t>(1, 64 / mr);
  t.nb = std::min(n_padded,
                  round_up(std::max<size_t>(nr, (256 * 1024) / std::max<size_t>(kp, 1)), nr));
  // Narrow GEMMs (MobileNet's 1x1 convs at batch 8: M = 100k rows, K = 16..32, N = 16..96)
  // do ~0.2 us of work per 64-row block: ~1,500 such tasks per call kept two threads
  // trading the task counter's cache line, no faster than one. Double the M block while
  // a task stays under ~1M MACs and every thread still gets 8 blocks.
  const size_t threads = static_cast<size_t>(get_num_threads());
  while (2 * t.mb * t.nb * kp <= (size_t{1} << 20) && m >= 2 * t.mb * 8 * threads) t.mb *= 2;
  t.m_tasks = (m + t.mb - 1) / t.mb;
  t.n_tasks = (n_padded + t.nb - 1) / t.nb;
  // Below ~1M MACs (a few microseconds) handing tasks to other threads costs
  // about as much as the work, and far more when those threads are busy.
  t.serial = m * n_padded * kp < (size_t{1} << 20);
  // Whole M blocks as tasks when every thread gets at least two and an even
  // share is at least 80% of the busiest thread's (ceil(m_tasks / threads)
  // blocks): each thread then fills only the rows it reads. Otherwise (M, N)
  // pairs: ResNet-50's 14x14 1x1 convs have M = 196, four blocks of 64, 64,
  // 64 and 4 rows, which gave two threads 128 and 68 rows (1.5x). (28x28,
  // 13 blocks, 7 against 6.25, stays whole: halving N there measured slower.)
  const size_t busiest = (t.m_tasks + threads - 1) / threads * t.mb;
  t.whole_m =
      t.serial || (t.m_tasks >= 2 * threads && (threads == 1 || 10 * m >= 8 * threads * busiest));
  // Otherwise cut N finer until every thread gets several tasks (dynamic
  // scheduling then evens out the imbalance: 8 per thread leave the last
  // round at most 1/8 of a thread's work), as long as a task keeps at least
  // ~256k MACs so the per-task overhead stays negligible.
  if (threads > 1 && !t.whole_m) {
    const size_t rows = std::min(m, t.mb);
    while (t.tasks() < 8 * threads && t.nb > nr && rows * (t.nb / 2) * kp >= 256 * 1024) {
      t.nb = round_up(t.nb / 2, nr);
      t.n_tasks = (n_padded + t.nb - 1) / t.nb;
    }
  }
  return t;
}

// Activation rows as the kernels read them (kp bytes per row), prepared one
// M block at a time inside the GEMM's parallel region: the first task of a
// block starts filling its rows (quantize, or copy with zero K padding), and
// any other task reaching the block helps, row by row, instead of idling. A
// task waits only for rows another thread is filling at that moment, never
// for a whole block (yielding the CPU there costs a time slice on a busy
// machine: 2 threads ran 4x slower than 1 with a block-level wait).
class ActivationRows {
 public:
  ActivationRows(size_t m, size_t mb) : m_(m), mb_(mb), blocks_(new Block[(m + mb - 1) / mb]) {}

  template <class FillRow>
  void ensure(size_t block, const FillRow& fill_row) {
    Block& b = blocks_[block];
    const size_t r0 = block * mb_, rows = std::min(m_, r0 + mb_) - r0;
    if (b.done.load(std::memory_order_acquire) == rows) return;
    for (size_t i; (i = b.next.fetch_add(1, std::memory_order_relaxed)) < rows;) {
      try {
        fill_row(r0 + i);
      } catch (...) {
        b.done.fetch_add(1, std::memory_order_release);  // never leave waiters spinning
        throw;
      }
      b.done.fetch_add(1, std::memory_order_release);
    }
    for (unsigned spins = 0; b.done.load(std::memory_order_acquire) != rows; ++spins) {
      if (spins < 4096) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  struct Block {
    std::atomic<size_t> next{0}, done{0};
  };
  size_t m_, mb_;
  std::unique_ptr<Block[]> blocks_;
};

// Runs tile(m0, mr, n0, nc) over the tiling; fill_row(r) prepares activation
// row r before the first tile that reads it. A null fill_row reads the rows in
// place. With enough M blocks for every thread, a task is a whole M block (all
// N blocks in turn), so each thread fills only rows it reads and never waits
// on another; otherwise tasks are (M block, N block) pairs that share fills
// through ActivationRows.
template <class FillRow, class Tile>
void run_gemm(size_t m, size_t n, const Tiling& t, size_t mr_max, const FillRow* fill_row,
              const Tile& tile) {
  const auto block = [&](size_t mi, size_t n0) {
    const size_t m0 = mi * t.mb, m1 = std::min(m, m0 + t.mb), nc = std::min(t.nb, n - n0);
    for (size_t r = m0; r < m1; r += mr_max) tile(r, std::min(mr_max, m1 - r), n0, nc);
  };
  const auto run = [&](size_t ntasks, const std::function<void(size_t)>& fn) {
    if (t.serial) {
      for (size_t i = 0; i < ntasks; ++i) fn(i);
    } else {
      parallel_for(ntasks, fn);
    }
  };
  if (t.whole_m) {
    run(t.m_tasks, [&](size_t mi) {
      if (fill_row)
        for (size_t r = mi * t.mb; r < std::min(m, (mi + 1) * t.mb); ++r) (*fill_row)(r);
      for (size_t n0 = 0; n0 < n; n0 += t.nb) block(mi, n0);
    });
    return;
  }
  ActivationRows rows(m, t.mb);
  run(t.tasks(), [&](size_t task) {
    const size_t mi = task / t.n_tasks, n0 = (task % t.n_tasks) * t.nb;
    if (n0 >= n) return;
    if (fill_row) rows.ensure(mi, *fill_row);
    block(mi, n0);
  });
}

// Epilogue arrays are read in whole panels: pad to n_padded when needed.
const float* padded(const float* v, size_t n, size_t n_padded, float fill,
                    std::vector<float>* storage) {
  if (v && n == n_padded) return v;
  storage->assign(n_padded, fill);
  if (v) std::copy(v, v + n, storage->begin());
  return storage->data();
}

}  // namespace

const QGemmKernel& gemm_kernel_for_rows(size_t m) {
  const KernelSet& ks = kernels();
  return m < ks.small_m ? ks.gemm_small : ks.gemm;
}

PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride) {
  return pack_weights(w, n, k, w_stride, kernels().gemm);
}

PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride,
                           const QGemmKernel& kernel) {
  if (k > kMaxK)
    throw ValueError("in_features K=" + std::to_string(k) +
                     " exceeds npquant's exact int32 "
                     "accumulation bound K <= " +
                     std::to_string(kMaxK) + "; split the layer along K");
  return PackedWeights(w, n, k, w_stride,
                       gemm_kernel_for_weights(kernel, w, n, k, w_stride).layout);
}

void linear_static(const PackedWeights& w, const StaticLinearArgs& a) {
  linear_static(w, a, gemm_kernel_for_rows(a.m));
}

RequantConstants requant_constants(const PackedWeights& w, float xs, const float* w_scale, float ys,
                                   const float* bias) {
  const size_t n = w.n(), np = w.n_padded();
  std::vector<float> ws_store;
  const float* ws = padded(w_scale, n, np, 1.0f, &ws_store);
  std::vector<float> bias_store;
  const float* b = bias ? padded(bias, n, np, 0.0f, &bias_store) : nullptr;
  RequantConstants c{xs, ys, std::vector<float>(np), std::vector<float>(np)};
  if (!requant_constants(np, xs, ws, ys, b, c.bias_s.data(), c.mult.data()))
    throw ValueError(
        "requantization constants are not finite: check the input scale, weight "
        "scales, output scale and bias (scales must be > 0 and finite, and "
        "bias / (input_scale * weight_scale) must be finite in float32)");
  return c;
}

void linear_static(const PackedWeights& w, const StaticLinearArgs& a, const QGemmKernel& k) {
  if (a.m == 0 || w.n() == 0) return;
  linear_static(w, a, requant_constants(w, a.xs, a.w_scale, a.ys, a.bias), k);
}

void linear_static(const PackedWeights& w, const StaticLinearArgs& a, const RequantConstants& c,
                   const QGemmKernel& asked) {
  const QGemmKernel& k = kernel_for(w, asked);
  const size_t n = w.n(), np = w.n_padded(), kk = w.k(), kp = w.kp();
  if (a.m == 0 || n == 0) return;
  if (c.xs != a.xs || c.ys != a.ys || c.mult.size() != np)
    throw ValueError("requantization constants were made for other scales or another layer");
  const Tiling t = choose_tiling(a.m, np, kp, k.mr, w.layout().nr);
  // Rows are read in place when they already hold kp bytes; otherwise each M
  // block is copied with zero K padding.
  const bool copy = kk != kp;
  AlignedBuffer buf = copy ? aligned_zeros(a.m * kp) : nullptr;
  const uint8_t* rows = copy ? buf.get() : a.x;
  const size_t stride = copy ? kp : a.x_stride;
  const auto copy_row = [&](size_t r) {
    std::memcpy(buf.get() + r * kp, a.x + r * a.x_stride, kk);
  };
  int32_t zp[kMaxMR];
  std::fill(zp, zp + kMaxMR, a.xz);
  const RequantEpilogue base{c.bias_s.data(), c.mult.data(), a.yz, a.out_min, a.out_max};
  run_gemm(a.m, n, t, k.mr, copy ? &copy_row : nullptr,
           [&](size_t m0, size_t mr, size_t n0, size_t nc) {
             RequantEpilogue ep = base;
             ep.bias_s += n0;
             ep.mult += n0;
             k.requant(mr, nc, kp, rows + m0 * stride, stride, w.panel(n0), zp,
                       a.y + m0 * a.y_stride + n0, a.y_stride, &ep);
           });
}

void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& a) {
  linear_dynamic(w, a, gemm_kernel_for_rows(a.m), kernels().quant);
}

namespace {

// Per-tensor activation range: min/max over all rows (in parallel). Throws on NaN/Inf.
QuantParams tensor_qparams(const DynamicLinearArgs& a, size_t k, const QuantizeKernel& qk) {
  const size_t rows_per_task = std::max<size_t>(1, (64 * 1024) / (k * sizeof(float)));
  const size_t tasks = (a.m + rows_per_task - 1) / rows_per_task;
  std::vector<float> mins(tasks), maxs(tasks);
  std::vector<char> ok(tasks, 1);
  parallel_for(tasks, [&](size_t t) {
    const size_t r0 = t * rows_per_task, r1 = std::min(a.m, r0 + rows_per_task);
    float lo = a.x[r0 * a.x_stride], hi = lo;
    for (size_t r = r0; r < r1; ++r) {
      float l, h;
      if (!qk.minmax(k, a.x + r * a.x_stride, &l, &h)) ok[t] = 0;
      lo = std::min(lo, l);
      hi = std::max(hi, h);
    }
    mins[t] = lo;
    maxs[t] = hi;
  });
  if (std::find(ok.begin(), ok.end(), 0) != ok.end())
    throw ValueError("input contains NaN or Inf; dynamic quantization needs finite values");
  return choose_qparams(*std::min_element(mins.begin(), mins.end()),
                        *std::max_element(maxs.begin(), maxs.end()), 0, a.reduce_range ? 127 : 255);
}

}  // namespace

void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& a, const QGemmKernel& asked,
                    const QuantizeKernel& qk) {
  const QGemmKernel& k = kernel_for(w, asked);
  const size_t n = w.n(), np = w.n_padded(), kk = w.k(), kp = w.kp();
  if (a.m == 0 || n == 0) return;
  std::vector<int32_t> zps(a.m);
  std::vector<float> scales(a.m);
  if (kk == 0) {
    // Empty reduction: y = bias, whatever the qparams.
    std::fill(scales.begin(), scales.end(), 1.0f);
  } else if (!a.per_row) {
    const QuantParams qp = tensor_qparams(a, kk, qk);
    std::fill(zps.begin(), zps.end(), qp.zero_point);
    std::fill(scales.begin(), scales.end(), qp.scale);
  }
  std::vector<float> ws_store, bias_store;
  const float* ws = padded(a.w_scale, n, np, 1.0f, &ws_store);
  const float* bias = padded(a.bias, n, np, 0.0f, &bias_store);
  const Tiling t = choose_tiling(a.m, np, kp, k.mr, w.layout().nr);
  // Quantized rows, kp bytes each (zero K padding), filled per M block inside
  // the GEMM region while the block's inputs are still in cache.
  AlignedBuffer qa = aligned_zeros(a.m * kp);
  std::atomic<bool> nonfinite{false};
  const auto quantize_row = [&](size_t r) {
    const float* xr = a.x + r * a.x_stride;
    if (a.per_row) {
      float lo, hi;
      if (!qk.minmax(kk, xr, &lo, &hi)) {
        nonfinite.store(true, std::memory_order_relaxed);
        return;  // the row stays zero; the call throws below
      }
      const QuantParams qp = choose_qparams(lo, hi, 0, a.reduce_range ? 127 : 255);
      zps[r] = qp.zero_point;
      scales[r] = qp.scale;
    }
    qk.quantize(kk, xr, 1.0f / scales[r], zps[r], qa.get() + r * kp);
  };
  run_gemm(a.m, n, t, k.mr, kk ? &quantize_row : nullptr,
           [&](size_t m0, size_t mr, size_t n0, size_t nc) {
             const DequantEpilogue ep{scales.data() + m0, ws + n0, bias + n0};
             k.dequant(mr, nc, kp, qa.get() + m0 * kp, kp, w.panel(n0), zps.data() + m0,
                       a.y + m0 * a.y_stride + n0, a.y_stride * sizeof(float), &ep);
           });
  if (nonfinite.load())
    throw ValueError("input contains NaN or Inf; dynamic quantization needs finite values");
}

bool quantize_u8(size_t n, const float* x, float scale, int32_t zp, uint8_t* q) {
  const QuantizeKernel& qk = kernels().quant;
  const float inv = 1.0f / scale;
  constexpr size_t kChunk = 1 << 16;
  const size_t tasks = (n + kChunk - 1) / kChunk;
  std::vector<char> ok(tasks, 1);
  // One pass per chunk: the finiteness check, then the quantization while the
  // chunk is still in L2 (two whole-array passes read the input twice from L3).
  parallel_for(tasks, [&](size_t t) {
    const size_t i0 = t * kChunk, len = std::min(kChunk, n - i0);
    float lo, hi;
    if (qk.minmax(len, x + i0, &lo, &hi))
      qk.quantize(len, x + i0, inv, zp, q + i0);
    else
      ok[t] = 0;
  });
  return std::find(ok.begin(), ok.end(), 0) == ok.end();
}

bool minmax_f32(size_t n, const float* x, float* mn, float* mx) {
  const QuantizeKernel& qk = kernels().quant;
  constexpr size_t kChunk = 1 << 16;
  const size_t tasks = (n + kChunk - 1) / kChunk;
  std::vector<float> lo(tasks), hi(tasks);
  std::vector<char> ok(tasks, 1);
  parallel_for(tasks, [&](size_t t) {
    const size_t i0 = t * kChunk;
    ok[t] = qk.minmax(std::min(kChunk, n - i0), x + i0, &lo[t], &hi[t]);
  });
  *mn = *std::min_element(lo.begin(), lo.end());
  *mx = *std::max_element(hi.begin(), hi.end());
  return std::find(ok.begin(), ok.end(), 0) == ok.end();
}

const QGemmKernel& gemm_kernel_by_name(const std::string& name) {
  for (const auto& k : built_gemm_kernels())
    if (name == k.name) {
      if (!can_run(k)) throw ValueError("kernel " + name + " cannot run on this CPU");
      return k;
    }
  throw ValueError("no GEMM kernel named '" + name + "' in this build");
}

const QuantizeKernel& quantize_kernel_for(const QGemmKernel& g) {
  const QuantizeKernel* best = nullptr;
  for (const auto& q : built_quantize_kernels())
    if (static_cast<int>(q.isa) <= static_cast<int>(g.isa) && can_run(q)) best = &q;
  return *best;
}

namespace {

// The kernel weights (n, k) are packed for: `kernel`, or the process's.
const QGemmKernel& kernel_or_default(const QGemmKernel* kernel) {
  return kernel ? *kernel : kernels().gemm;
}

}  // namespace

PackedLinear::PackedLinear(const int8_t* w, size_t n, size_t k, std::vector<float> w_scale,
                           std::vector<float> bias, const QGemmKernel* kernel)
    : w_scale_(std::move(w_scale)),
      bias_(std::move(bias)),
      explicit_kernel_(kernel != nullptr),
      kernel_(kernel_or_default(kernel)),
      w_(pack_weights(w, n, k, k, kernel_)) {
  if (!layout_compatible(w_.layout(), kernel_.layout)) kernel_ = gemm_fallback(kernel_);
}

std::shared_ptr<const RequantConstants> PackedLinear::requant(float xs, float ys) const {
  auto c = std::atomic_load(&constants_);
  if (c && c->xs == xs && c->ys == ys) return c;
  c = std::make_shared<const RequantConstants>(
      requant_constants(w_, xs, w_scale_.data(), ys, bias_or_null()));
  std::atomic_store(&constants_, c);
  return c;
}

void PackedLinear::run_static(size_t m, const uint8_t* x, float xs, int32_t xz, float ys,
                              int32_t yz, bool relu, uint8_t* y) const {
  const auto constants = requant(xs, ys);
  const StaticLinearArgs a{m,  x,  w_.k(),        xs,  xz, w_scale_.data(), bias_or_null(),
                           ys, yz, relu ? yz : 0, 255, y,  w_.n()};
  linear_static(w_, a, *constants, explicit_kernel_ ? kernel_ : gemm_kernel_for_rows(m));
}

void PackedLinear::run_dynamic(size_t m, const float* x, bool per_row, bool reduce_range,
                               float* y) const {
  const DynamicLinearArgs a{m,       x, w_.k(), w_scale_.data(), bias_or_null(),
                            per_row, y, w_.n(), reduce_range};
  if (explicit_kernel_)
    linear_dynamic(w_, a, kernel_, quantize_kernel_for(kernel_));
  else
    linear_dynamic(w_, a);
}

}  // namespace npq
