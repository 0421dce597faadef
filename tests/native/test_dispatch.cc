// Dispatch: the chosen set passed its self-check, every runnable kernel passes
// the self-check, and the self-check does catch a kernel that is off by one.
#include <string>

#include "harness.h"
#include "npquant/dispatch.h"

namespace npqtest {
namespace {

const char* const kLabel = "dispatch";

npq::QGemmKernel scalar_kernel() {
  for (const auto& k : npq::built_gemm_kernels())
    if (k.isa == npq::Isa::scalar) return k;
  return npq::built_gemm_kernels().front();
}

// The scalar kernel with one output nudged: what a subtly wrong kernel looks like.
void off_by_one_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                        const void* w, const int32_t* a_zp, uint8_t* c, size_t c_stride,
                        const npq::RequantEpilogue* ep) {
  scalar_kernel().requant(mr, nc, kp, a, a_stride, w, a_zp, c, c_stride, ep);
  if (mr > 1 && nc > 2) c[c_stride + 2] ^= 1;
}

void off_by_one_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride,
                        const void* w, const int32_t* a_zp, float* c, size_t c_stride,
                        const npq::DequantEpilogue* ep) {
  scalar_kernel().dequant(mr, nc, kp, a, a_stride, w, a_zp, c, c_stride, ep);
  c[nc - 1] += 1.0f;
}

void ignores_tail_quantize(size_t n, const float* x, float inv, int32_t zp, uint8_t* q) {
  npq::runnable_quantize_kernels().front().quantize(n, x, inv, zp, q);
  if (n) q[n - 1] ^= 1;
}

}  // namespace

void test_dispatch(Tally& t) {
  const npq::KernelSet& ks = npq::kernels();
  t.check(ks.self_check == "passed", kLabel, "chosen set self-check: " + ks.self_check);
  t.check(npq::layout_compatible(ks.gemm.layout, ks.gemm_small.layout), kLabel,
          "gemm_small cannot run on gemm's layout");
  for (const auto& k : npq::runnable_gemm_kernels()) {
    const std::string why = npq::self_check(k, k.layout);
    t.check(why.empty(), kLabel, why);
  }
  for (const auto& q : npq::runnable_quantize_kernels()) {
    const std::string why = npq::self_check(q);
    t.check(why.empty(), kLabel, why);
  }
  // The AVX-512 VNNI kernel runs AMX-packed weights (K padded to 64) when AMX
  // delegates small M to it: check it on that layout wherever it runs.
  for (const auto& k : npq::runnable_gemm_kernels()) {
    npq::PackedLayout padded = k.layout;
    padded.k_align = 64;
    const std::string why = npq::self_check(k, padded);
    t.check(why.empty(), kLabel, std::string(k.name) + " on K padded to 64: " + why);
  }
  // The safety net catches wrong kernels.
  npq::QGemmKernel bad = scalar_kernel();
  bad.name = "off_by_one";
  bad.requant = off_by_one_requant;
  t.check(!npq::self_check(bad, bad.layout).empty(), kLabel, "missed a wrong requant output");
  bad.requant = scalar_kernel().requant;
  bad.dequant = off_by_one_dequant;
  t.check(!npq::self_check(bad, bad.layout).empty(), kLabel, "missed a wrong dequant output");
  npq::QuantizeKernel badq = npq::runnable_quantize_kernels().front();
  badq.name = "ignores_tail";
  badq.quantize = ignores_tail_quantize;
  t.check(!npq::self_check(badq).empty(), kLabel, "missed a wrong quantize output");
  npq::PackedLayout other = bad.layout;
  other.nr *= 2;
  t.check(!npq::layout_compatible(other, bad.layout), kLabel, "layouts with different NR match");
}

}  // namespace npqtest
