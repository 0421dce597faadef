#include "linear.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "../qmath.h"
#include "threadpool.h"

namespace npq {

namespace {

constexpr size_t kMaxMR = 32;
// Columns per task: enough panels to amortize A, few enough to keep the
// panel block in L2 (about 256 KiB).
size_t choose_nb(size_t kp, size_t n_padded, size_t nr) {
  size_t nb = round_up(std::max<size_t>(nr, (256 * 1024) / std::max<size_t>(kp, 1)), nr);
  return std::min(nb, n_padded);
}

void check_layout(const PackedWeights& w, const QGemmKernel& k) {
  if (!layout_compatible(w.layout(), k.layout))
    throw ValueError(std::string("packed weights do not match kernel ") + k.name +
                     "; repack them (weights are packed for the ISA chosen at import)");
}

const QGemmKernel& pick_gemm(size_t m) {
  const KernelSet& ks = kernels();
  return m < ks.small_m ? ks.gemm_small : ks.gemm;
}

// Runs the GEMM over all (M block, N block) tasks. `tile(m0, mr, n0, nc)` calls
// the ukernel; A rows must already hold kp readable bytes.
template <class Tile>
void run_tiles(size_t m, size_t mr_max, size_t n, size_t nb, const Tile& tile) {
  const size_t mb = mr_max * std::max<size_t>(1, 64 / mr_max);  // rows per task
  const size_t m_tasks = (m + mb - 1) / mb, n_tasks = (n + nb - 1) / nb;
  parallel_for(m_tasks * n_tasks, [&](size_t t) {
    const size_t m0 = (t / n_tasks) * mb, n0 = (t % n_tasks) * nb;
    const size_t m1 = std::min(m, m0 + mb), nc = std::min(nb, n - n0);
    for (size_t r = m0; r < m1; r += mr_max) tile(r, std::min(mr_max, m1 - r), n0, nc);
  });
}

// Copies rows of A into a zero-padded buffer of kp bytes per row when K is not
// a multiple of the layout's k_align (the kernels read whole K groups).
struct PaddedA {
  const uint8_t* ptr;
  size_t stride;
  AlignedBuffer buf;
};
PaddedA pad_a(const uint8_t* x, size_t m, size_t k, size_t stride, size_t kp) {
  if (k == kp) return {x, stride, nullptr};
  AlignedBuffer buf = aligned_zeros(m * kp);
  for (size_t r = 0; r < m; ++r) std::memcpy(buf.get() + r * kp, x + r * stride, k);
  const uint8_t* p = buf.get();
  return {p, kp, std::move(buf)};
}

std::vector<float> padded_copy(const float* v, size_t n, size_t n_padded, float fill) {
  std::vector<float> out(n_padded, fill);
  if (v) std::copy(v, v + n, out.begin());
  return out;
}

}  // namespace

PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride) {
  return pack_weights(w, n, k, w_stride, kernels().gemm);
}

PackedWeights pack_weights(const int8_t* w, size_t n, size_t k, size_t w_stride,
                           const QGemmKernel& kernel) {
  if (k > kMaxK)
    throw ValueError("in_features K=" + std::to_string(k) + " exceeds npquant's exact int32 "
                     "accumulation bound K <= " + std::to_string(kMaxK) +
                     "; split the layer along K");
  return PackedWeights(w, n, k, w_stride, kernel.layout);
}

void linear_static(const PackedWeights& w, const StaticLinearArgs& a) {
  linear_static(w, a, pick_gemm(a.m));
}

void linear_static(const PackedWeights& w, const StaticLinearArgs& a, const QGemmKernel& k) {
  check_layout(w, k);
  const size_t n = w.n(), np = w.n_padded();
  if (a.m == 0 || n == 0) return;
  std::vector<float> ws = padded_copy(a.w_scale, n, np, 1.0f);
  std::vector<float> bias_s(np), mult(np);
  if (!requant_constants(n, a.xs, ws.data(), a.ys, a.bias, bias_s.data(), mult.data()))
    throw ValueError("requantization constants are not finite: check the input scale, weight "
                     "scales, output scale and bias (scales must be > 0 and finite, and "
                     "bias / (input_scale * weight_scale) must be finite in float32)");
  PaddedA pa = pad_a(a.x, a.m, w.k(), a.x_stride, w.kp());
  int32_t zp[kMaxMR];
  std::fill(zp, zp + kMaxMR, a.xz);
  RequantEpilogue base{bias_s.data(), mult.data(), a.yz, a.out_min, a.out_max};
  run_tiles(a.m, k.mr, n, choose_nb(w.kp(), np, w.layout().nr),
            [&](size_t m0, size_t mr, size_t n0, size_t nc) {
              RequantEpilogue ep = base;
              ep.bias_s += n0;
              ep.mult += n0;
              k.requant(mr, nc, w.kp(), pa.ptr + m0 * pa.stride, pa.stride, w.panel(n0), zp,
                        a.y + m0 * a.y_stride + n0, a.y_stride, &ep);
            });
}

void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& a) {
  linear_dynamic(w, a, pick_gemm(a.m), kernels().quant);
}

void linear_dynamic(const PackedWeights& w, const DynamicLinearArgs& a, const QGemmKernel& k,
                    const QuantizeKernel& qk) {
  check_layout(w, k);
  const size_t n = w.n(), np = w.n_padded(), kk = w.k(), kp = w.kp();
  if (a.m == 0 || n == 0) return;
  // 1. Activation qparams: per tensor (one min/max pass) or per row.
  std::vector<int32_t> zps(a.m);
  std::vector<float> scales(a.m);
  AlignedBuffer qa = aligned_zeros(a.m * kp);
  const size_t rows_per_task = std::max<size_t>(1, (64 * 1024) / (kk * 4 + 1));
  const size_t row_tasks = (a.m + rows_per_task - 1) / rows_per_task;
  if (kk == 0) {  // empty reduction: y = bias; any qparams do
    std::fill(scales.begin(), scales.end(), 1.0f);
  } else if (!a.per_row) {
    std::vector<float> mins(row_tasks), maxs(row_tasks);
    std::vector<char> ok(row_tasks, 1);
    parallel_for(row_tasks, [&](size_t t) {
      const size_t r0 = t * rows_per_task, r1 = std::min(a.m, r0 + rows_per_task);
      float lo = a.x[r0 * a.x_stride], hi = lo;
      for (size_t r = r0; r < r1; ++r) {
        float l, h;
        if (!qk.minmax(kk, a.x + r * a.x_stride, &l, &h)) ok[t] = 0;
        lo = std::min(lo, l);
        hi = std::max(hi, h);
      }
      mins[t] = lo;
      maxs[t] = hi;
    });
    if (std::find(ok.begin(), ok.end(), 0) != ok.end())
      throw ValueError("input contains NaN or Inf; dynamic quantization needs finite values");
    const QuantParams qp = choose_qparams(*std::min_element(mins.begin(), mins.end()),
                                          *std::max_element(maxs.begin(), maxs.end()), 0, 255);
    std::fill(zps.begin(), zps.end(), qp.zero_point);
    std::fill(scales.begin(), scales.end(), qp.scale);
  }
  // 2. Quantize into kp-padded rows (with per-row qparams when asked).
  std::vector<char> ok(row_tasks, 1);
  parallel_for(kk == 0 ? 0 : row_tasks, [&](size_t t) {
    const size_t r0 = t * rows_per_task, r1 = std::min(a.m, r0 + rows_per_task);
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = a.x + r * a.x_stride;
      if (a.per_row) {
        float l, h;
        if (!qk.minmax(kk, xr, &l, &h)) {
          ok[t] = 0;
          continue;
        }
        const QuantParams qp = choose_qparams(l, h, 0, 255);
        zps[r] = qp.zero_point;
        scales[r] = qp.scale;
      }
      qk.quantize(kk, xr, 1.0f / scales[r], zps[r], qa.get() + r * kp);
    }
  });
  if (std::find(ok.begin(), ok.end(), 0) != ok.end())
    throw ValueError("input contains NaN or Inf; dynamic quantization needs finite values");
  // 3. GEMM with the dequantizing epilogue.
  std::vector<float> ws = padded_copy(a.w_scale, n, np, 1.0f);
  std::vector<float> bias = padded_copy(a.bias, n, np, 0.0f);
  run_tiles(a.m, k.mr, n, choose_nb(kp, np, w.layout().nr),
            [&](size_t m0, size_t mr, size_t n0, size_t nc) {
              DequantEpilogue ep{scales.data() + m0, ws.data() + n0, bias.data() + n0};
              k.dequant(mr, nc, kp, qa.get() + m0 * kp, kp, w.panel(n0), zps.data() + m0,
                        a.y + m0 * a.y_stride + n0, a.y_stride * sizeof(float), &ep);
            });
}

void quantize_u8(size_t n, const float* x, float scale, int32_t zp, uint8_t* q) {
  const QuantizeKernel& qk = kernels().quant;
  const float inv = 1.0f / scale;
  constexpr size_t kChunk = 1 << 16;
  parallel_for((n + kChunk - 1) / kChunk, [&](size_t t) {
    const size_t i0 = t * kChunk;
    qk.quantize(std::min(kChunk, n - i0), x + i0, inv, zp, q + i0);
  });
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

}  // namespace npq
