#include "dispatch.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "ops/pack.h"
#include "reference/reference.h"

namespace npq {

namespace {

// The tables, generated from the registry (ukernels.inc) in its order: lowest ISA
// first. Within one ISA the last runnable GEMM that is not a stand-in is preferred
// (preferred_gemm); a w127 kernel falls back to the last full-range tile GEMM (MR > 1)
// of its ISA per layer (gemm_fallback), which is also the convolutions' GEMM; the w127
// indirect GEMM falls back to the gathered path.

std::vector<QGemmKernel> make_gemm_table() {
  std::vector<QGemmKernel> t;
#define NPQ_GEMM_ROW(standin, name, isa, guard, mr, nr, kr, ka, w16, w127) \
  NPQ_IF(guard)(t.push_back(                                               \
      {#name, Isa::isa, standin, mr, {nr, kr, ka, w16, w127}, name##_requant, name##_dequant});)
#define NPQ_QGEMM(...) NPQ_GEMM_ROW(false, __VA_ARGS__)
#define NPQ_QGEMM_STANDIN(...) NPQ_GEMM_ROW(true, __VA_ARGS__)
#include "ukernels.inc"
#undef NPQ_GEMM_ROW
  return t;
}

std::vector<QIGemmKernel> make_igemm_table() {
  std::vector<QIGemmKernel> t;
#define NPQ_QIGEMM(name, isa, guard, mr, nr, kr, ka, w16, w127) \
  NPQ_IF(guard)(t.push_back({#name, Isa::isa, mr, {nr, kr, ka, w16, w127}, name##_requant});)
#include "ukernels.inc"
  return t;
}

std::vector<DwconvKernel> make_dwconv_table() {
  std::vector<DwconvKernel> t;
#define NPQ_DWCONV(name, isa, guard, ct, g, tb, wb, vbmi) \
  NPQ_IF(guard)(t.push_back(                              \
      {#name, Isa::isa, ct, g, tb, wb, vbmi, name##_pack, name##_transform, name##_row});)
#include "ukernels.inc"
  return t;
}

std::vector<WinogradKernel> make_winograd_table() {
  std::vector<WinogradKernel> t;
#define NPQ_WINOGRAD(name, isa, guard, mr, nr, kr) \
  NPQ_IF(guard)(t.push_back({#name, Isa::isa, mr, nr, kr, name##_input, name##_gemm});)
#include "ukernels.inc"
  return t;
}

std::vector<QuantizeKernel> make_quantize_table() {
  std::vector<QuantizeKernel> t;
#define NPQ_QUANTIZE(name, minmax, isa, guard) \
  NPQ_IF(guard)(t.push_back({#name, Isa::isa, minmax, name});)
#include "ukernels.inc"
  return t;
}

std::vector<AddKernel> make_add_table() {
  std::vector<AddKernel> t;
#define NPQ_VADD(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<MulKernel> make_mul_table() {
  std::vector<MulKernel> t;
#define NPQ_VMUL(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<GeluKernel> make_gelu_table() {
  std::vector<GeluKernel> t;
#define NPQ_VGELU(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<LutKernel> make_lut_table() {
  std::vector<LutKernel> t;
#define NPQ_LUT(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<MaxPoolKernel> make_maxpool_table() {
  std::vector<MaxPoolKernel> t;
#define NPQ_MAXPOOL(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<SoftmaxKernel> make_softmax_table() {
  std::vector<SoftmaxKernel> t;
#define NPQ_VSOFTMAX(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<LayerNormKernel> make_layernorm_table() {
  std::vector<LayerNormKernel> t;
#define NPQ_LAYERNORM(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<LstmKernel> make_lstm_table() {
  std::vector<LstmKernel> t;
#define NPQ_VLSTM(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<GruKernel> make_gru_table() {
  std::vector<GruKernel> t;
#define NPQ_VGRU(name, isa, guard) NPQ_IF(guard)(t.push_back({#name, Isa::isa, name});)
#include "ukernels.inc"
  return t;
}

std::vector<FGemmKernel> make_fgemm_table() {
  std::vector<FGemmKernel> t;
#define NPQ_FGEMM(name, isa, guard, mr, nr) \
  NPQ_IF(guard)(t.push_back({#name, Isa::isa, mr, nr, name});)
#include "ukernels.inc"
  return t;
}

std::string join_isas(const std::vector<Isa>& v) {
  std::string s;
  for (Isa i : v) {
    if (!s.empty()) s += ", ";
    s += isa_name(i);
  }
  return s;
}

// The best kernel of table t whose ISA is <= cap and that can run here.
// A stand-in is only used when the cap names its ISA exactly and the real
// encoding cannot run.
template <class K>
const K* pick(const std::vector<K>& t, Isa cap) {
  const K* best = nullptr;
  for (const K& k : t) {
    if (static_cast<int>(k.isa) > static_cast<int>(cap) || !can_run(k)) continue;
    if (!best || static_cast<int>(k.isa) > static_cast<int>(best->isa)) best = &k;
  }
  return best;
}

// Conv kernels to go with the GEMM kernel `gemm` under cap: the indirect GEMM and the
// Winograd kernel of the same ISA (if built), and the best depthwise kernel not above cap.
ConvKernels conv_kernels_with(Isa cap, const QGemmKernel& gemm) {
  ConvKernels c{};
  // Convolutions run the ISA's full-range GEMM: a conv is never M = 1, so the layout a
  // w127 GEMM keeps for its GEMV buys them nothing, and no layer needs a fallback.
  c.gemm = gemm_fallback(gemm);
  c.igemm = QIGemmKernel{nullptr, Isa::scalar, 0, {0, 0, 0}, nullptr};
  c.stem = c.igemm;
  for (const QIGemmKernel& k : built_igemm_kernels())
    if (k.isa == gemm.isa && can_run(k)) {
      c.igemm = k;
      if (!k.layout.w127) c.stem = k;
    }
  c.dwconv = *pick(built_dwconv_kernels(), cap);
  c.dwconv_strided = c.dwconv;
  for (const DwconvKernel& k : built_dwconv_kernels())
    if (k.isa == c.dwconv.isa && k.tb == 0 && can_run(k)) {
      c.dwconv_strided = k;
      break;
    }
  c.wino = WinogradKernel{nullptr, Isa::scalar, 0, 0, 0, nullptr, nullptr};
  for (const WinogradKernel& k : built_winograd_kernels())
    if (k.isa == gemm.isa && can_run(k)) c.wino = k;
  return c;
}

// The GEMM kernel an ISA runs: its last runnable entry in the table that is
// not a stand-in, else its stand-in (stand-ins only stand in when the real
// encoding is missing). Null if none can run.
const QGemmKernel* preferred_gemm(Isa isa) {
  const QGemmKernel* g = nullptr;
  for (const QGemmKernel& k : built_gemm_kernels()) {
    if (k.isa != isa || !can_run(k)) continue;
    if (!g || g->standin || !k.standin) g = &k;
  }
  return g;
}

// The kernel set for one ISA (which must be runnable).
KernelSet make_set(Isa isa) {
  KernelSet s{};
  s.cap = isa;
  const QGemmKernel* g = preferred_gemm(isa);
  s.gemm = *g;
  s.gemm_small = *g;
  s.small_m = 0;
  if (isa == Isa::amx) {
    // AMX tiles are 16 rows high; small M runs on AVX-512 VNNI, whose layout
    // differs from AMX's only in AMX's K padding to 64.
    for (const QGemmKernel& k : built_gemm_kernels())
      if (k.isa == Isa::avx512vnni && can_run(k) && layout_compatible(g->layout, k.layout)) {
        s.gemm_small = k;
        s.small_m = 16;
      }
  } else {
    // A one-row kernel (GEMV) of the same ISA on exactly gemm's layout, listed
    // before gemm in the table, runs M = 1 (qu8_gemm_1x16c8__avx2_sign).
    for (const QGemmKernel& k : built_gemm_kernels())
      if (k.isa == isa && !k.standin && can_run(k) && k.mr == 1 && g->mr > 1 &&
          layout_compatible(g->layout, k.layout) && layout_compatible(k.layout, g->layout)) {
        s.gemm_small = k;
        s.small_m = 2;
      }
  }
  s.quant = *pick(built_quantize_kernels(), isa);
  s.conv = conv_kernels_with(isa, s.gemm);
  const AddKernel* add = pick(built_add_kernels(), isa);
  s.add = add ? *add : AddKernel{nullptr, Isa::scalar, nullptr};
  const MulKernel* mul = pick(built_mul_kernels(), isa);
  s.mul = mul ? *mul : MulKernel{nullptr, Isa::scalar, nullptr};
  s.gelu = *pick(built_gelu_kernels(), isa);
  s.lut = *pick(built_lut_kernels(), isa);
  s.maxpool = *pick(built_maxpool_kernels(), isa);
  s.softmax = *pick(built_softmax_kernels(), isa);
  s.layernorm = *pick(built_layernorm_kernels(), isa);
  s.lstm = *pick(built_lstm_kernels(), isa);
  s.gru = *pick(built_gru_kernels(), isa);
  s.fgemm = *pick(built_fgemm_kernels(), isa);
  return s;
}

// "" if every kernel of the set matches the reference, else the first mismatch.
std::string verify(const KernelSet& s) {
  std::string why = self_check(s.gemm, s.gemm.layout);
  // The kernel layers with weights outside gemm's layout run on.
  const QGemmKernel& fb = gemm_fallback(s.gemm);
  if (why.empty() && fb.name != s.gemm.name) why = self_check(fb, fb.layout);
  if (why.empty() && s.small_m) why = self_check(s.gemm_small, s.gemm.layout);
  if (why.empty()) why = self_check(s.quant);
  return why;
}

// Runnable ISAs (built, supported here; stand-ins count), lowest first.
std::vector<Isa> runnable_isas() {
  std::vector<Isa> runnable;
  for (Isa i : built_isas()) {
    for (const QGemmKernel& k : built_gemm_kernels())
      if (k.isa == i && can_run(k)) {
        runnable.push_back(i);
        break;
      }
  }
  return runnable;
}

Isa requested_cap(const std::vector<Isa>& runnable) {
  const char* env = std::getenv("NPQUANT_ISA");
  if (!env || !*env) return runnable.back();
  Isa want;
  if (!parse_isa(env, &want))
    throw std::runtime_error(std::string("NPQUANT_ISA='") + env +
                             "' is not an ISA name. Use one of: scalar, avx2, avxvnni, "
                             "avx512vnni, amx, neon, neondot, neoni8mm (runnable here: " +
                             join_isas(runnable) + "), or unset it.");
  if (std::find(runnable.begin(), runnable.end(), want) == runnable.end()) {
    const auto built = built_isas();
    const bool is_built = std::find(built.begin(), built.end(), want) != built.end();
    throw std::runtime_error(std::string("NPQUANT_ISA=") + env + " cannot run here: " +
                             (is_built
                                  ? "this CPU (" + cpu_features().arch + ") or its OS lacks it"
                                  : std::string("this build of npquant has no kernels for it")) +
                             ". ISAs runnable here: " + join_isas(runnable) +
                             ". Set NPQUANT_ISA to one of them, or unset it.");
  }
  return want;
}

// The best set at or below the cap whose kernels pass the self-check: a
// kernel that cannot be tested where it is built (AMX here) must never
// produce a wrong answer, so a mismatch drops to the next lower ISA.
KernelSet choose() {
  const std::vector<Isa> runnable = runnable_isas();
  const Isa cap = requested_cap(runnable);
  std::string report;
  for (auto it = runnable.rbegin(); it != runnable.rend(); ++it) {
    if (static_cast<int>(*it) > static_cast<int>(cap)) continue;
    KernelSet s = make_set(*it);
    const std::string why = verify(s);
    if (why.empty()) {
      s.self_check = report.empty() ? "passed" : report + "fell back to " + isa_name(*it);
      return s;
    }
    report += std::string(isa_name(*it)) + ": " + why + "; ";
  }
  // Even the scalar kernels differ from the reference: a broken build. Run
  // them anyway (there is nothing lower) and say so.
  KernelSet s = make_set(Isa::scalar);
  s.self_check = report + "no kernel set passed";
  return s;
}

// ---- self-check problems (small, fixed, with the extremes of both ranges)

uint32_t mix(uint32_t i) {
  i ^= i >> 15;
  i *= 0x2C1B3C6Du;
  i ^= i >> 12;
  i *= 0x297A2D39u;
  return i ^ (i >> 15);
}

std::string describe(const char* kernel, const char* what, size_t r, size_t c,
                     const std::string& got, const std::string& want) {
  return std::string(kernel) + " " + what + " differs from the reference at (" + std::to_string(r) +
         "," + std::to_string(c) + "): got " + got + ", want " + want;
}

}  // namespace

bool layout_compatible(const PackedLayout& packed, const PackedLayout& kernel) {
  return packed.nr == kernel.nr && packed.kr == kernel.kr && packed.w16 == kernel.w16 &&
         packed.w127 == kernel.w127 && packed.k_align % kernel.k_align == 0;
}

const QGemmKernel& gemm_fallback(const QGemmKernel& k) {
  if (!k.layout.w127) return k;
  const QGemmKernel* f = nullptr;
  for (const QGemmKernel& c : built_gemm_kernels())
    if (c.isa == k.isa && !c.layout.w127 && c.mr > 1 && can_run(c) && (!f || !c.standin)) f = &c;
  if (!f) throw std::logic_error(std::string(k.name) + " has no full-range fallback kernel");
  return *f;
}

const QGemmKernel& gemm_kernel_for_weights(const QGemmKernel& k, const int8_t* w, size_t n,
                                           size_t kk, size_t w_stride) {
  return weights_fit_layout(w, n, kk, w_stride, k.layout) ? k : gemm_fallback(k);
}

std::string self_check(const QGemmKernel& k, const PackedLayout& layout) {
  if (!layout_compatible(layout, k.layout)) return std::string(k.name) + ": incompatible layout";
  // M = MR (AMX: both 16-row blocks), N = two panels and a partial third,
  // K not a multiple of any K group (A and W padding exercised).
  const size_t m = k.mr, n = 2 * layout.nr + 3, kk = 100;
  const size_t kp = round_up(kk, layout.k_align), a_stride = kp + 3;
  std::vector<uint8_t> a(m * a_stride, 0x5A);  // padding is junk on purpose
  std::vector<int8_t> w(n * kk);
  for (size_t r = 0; r < m; ++r)
    for (size_t i = 0; i < kk; ++i) a[r * a_stride + i] = static_cast<uint8_t>(mix(r * 1000 + i));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(mix(77777 + i));
  a[0] = 255;
  w[0] = -128;
  w[1] = -128;
  w[(layout.nr + 5) * kk + 7] = -128;  // a second panel, another column
  w[n * kk - 1] = 127;
  const PackedWeights pw(w.data(), n, kk, kk, layout);
  const size_t np = pw.n_padded();
  std::vector<int32_t> zp(m);
  std::vector<float> bias_s(np), mult(np), a_scale(m), w_scale(np), bias(np);
  for (size_t r = 0; r < m; ++r) {
    zp[r] = static_cast<int32_t>(mix(r + 5) & 255);
    a_scale[r] = 0.01f * static_cast<float>(r + 1);
  }
  for (size_t j = 0; j < np; ++j) {
    bias_s[j] = static_cast<float>(static_cast<int32_t>(mix(j + 99) % 20001) - 10000) * 0.5f;
    mult[j] = j % 4 == 0 ? 0.5f : 1.0f / (1500.0f + 37.0f * static_cast<float>(j));
    w_scale[j] = 0.002f * static_cast<float>(j % 5 + 1);
    bias[j] = 0.25f * static_cast<float>(j);
  }
  // Requant: one zero point for all rows, as the static path uses it.
  const std::vector<int32_t> zp0(m, zp[0]);
  std::vector<uint8_t> q(m * n), q_ref(m * n);
  const RequantEpilogue rep{bias_s.data(), mult.data(), 100, 3, 250};
  k.requant(m, n, kp, a.data(), a_stride, pw.panel(0), zp0.data(), q.data(), n, &rep);
  ref::qgemm_requant(m, n, kk, a.data(), a_stride, zp[0], w.data(), kk, bias_s.data(), mult.data(),
                     100, 3, 250, q_ref.data(), n);
  for (size_t i = 0; i < q.size(); ++i)
    if (q[i] != q_ref[i])
      return describe(k.name, "requant", i / n, i % n, std::to_string(q[i]),
                      std::to_string(q_ref[i]));
  std::vector<float> y(m * n), y_ref(m * n);
  const DequantEpilogue dep{a_scale.data(), w_scale.data(), bias.data()};
  k.dequant(m, n, kp, a.data(), a_stride, pw.panel(0), zp.data(), y.data(), n * sizeof(float),
            &dep);
  ref::qgemm_dequant(m, n, kk, a.data(), a_stride, zp.data(), a_scale.data(), w.data(), kk,
                     w_scale.data(), bias.data(), y_ref.data(), n);
  for (size_t i = 0; i < y.size(); ++i)
    if (std::memcmp(&y[i], &y_ref[i], sizeof(float)) != 0)
      return describe(k.name, "dequant", i / n, i % n, std::to_string(y[i]),
                      std::to_string(y_ref[i]));
  return "";
}

std::string self_check(const QuantizeKernel& k) {
  // 100 values: a full vector body and a tail, with ties, clamps and huge values.
  constexpr size_t n = 100;
  const float scale = 0.25f;
  const int32_t zp = 120;
  float x[n];
  for (size_t i = 0; i < n; ++i)
    x[i] = (static_cast<float>(static_cast<int32_t>(mix(i) % 601) - 300) + 0.5f) * scale;
  x[3] = 3e10f;
  x[50] = -3e10f;
  x[97] = 1e-39f;
  uint8_t q[n];
  int32_t q_ref[n];
  k.quantize(n, x, 1.0f / scale, zp, q);
  ref::quantize(n, x, scale, zp, 0, 255, q_ref);
  for (size_t i = 0; i < n; ++i)
    if (q[i] != q_ref[i])
      return describe(k.name, "quantize", 0, i, std::to_string(q[i]), std::to_string(q_ref[i]));
  float lo, hi, lo_ref, hi_ref;
  ref::minmax(n, x, &lo_ref, &hi_ref);
  if (!k.minmax(n, x, &lo, &hi) || lo != lo_ref || hi != hi_ref)
    return std::string(k.name) + " minmax differs from the reference";
  x[n - 1] = std::numeric_limits<float>::quiet_NaN();
  if (k.minmax(n, x, &lo, &hi)) return std::string(k.name) + " minmax missed a NaN in the tail";
  return "";
}

bool can_run(const QGemmKernel& k) {
  const CpuFeatures& cpu = cpu_features();
  if (k.standin) return cpu.supports(Isa::avx512vnni);
  return cpu.supports(k.isa);
}

bool can_run(const QuantizeKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const AddKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const MulKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const GeluKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const LutKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const MaxPoolKernel& k) { return cpu_features().supports(k.isa); }

const std::vector<MaxPoolKernel>& built_maxpool_kernels() {
  static const std::vector<MaxPoolKernel> t = make_maxpool_table();
  return t;
}

const std::vector<LutKernel>& built_lut_kernels() {
  static const std::vector<LutKernel> t = make_lut_table();
  return t;
}

const std::vector<GeluKernel>& built_gelu_kernels() {
  static const std::vector<GeluKernel> t = make_gelu_table();
  return t;
}

const std::vector<SoftmaxKernel>& built_softmax_kernels() {
  static const std::vector<SoftmaxKernel> t = make_softmax_table();
  return t;
}

const std::vector<LayerNormKernel>& built_layernorm_kernels() {
  static const std::vector<LayerNormKernel> t = make_layernorm_table();
  return t;
}

const std::vector<LstmKernel>& built_lstm_kernels() {
  static const std::vector<LstmKernel> t = make_lstm_table();
  return t;
}

const std::vector<GruKernel>& built_gru_kernels() {
  static const std::vector<GruKernel> t = make_gru_table();
  return t;
}

const std::vector<FGemmKernel>& built_fgemm_kernels() {
  static const std::vector<FGemmKernel> t = make_fgemm_table();
  return t;
}

bool can_run(const FGemmKernel& k) { return cpu_features().supports(k.isa); }

const std::vector<MulKernel>& built_mul_kernels() {
  static const std::vector<MulKernel> t = make_mul_table();
  return t;
}

const std::vector<AddKernel>& built_add_kernels() {
  static const std::vector<AddKernel> t = make_add_table();
  return t;
}

const std::vector<QGemmKernel>& built_gemm_kernels() {
  static const std::vector<QGemmKernel> t = make_gemm_table();
  return t;
}

const std::vector<QuantizeKernel>& built_quantize_kernels() {
  static const std::vector<QuantizeKernel> t = make_quantize_table();
  return t;
}

std::vector<QGemmKernel> runnable_gemm_kernels() {
  std::vector<QGemmKernel> v;
  for (const auto& k : built_gemm_kernels())
    if (can_run(k)) v.push_back(k);
  return v;
}

std::vector<QuantizeKernel> runnable_quantize_kernels() {
  std::vector<QuantizeKernel> v;
  for (const auto& k : built_quantize_kernels())
    if (can_run(k)) v.push_back(k);
  return v;
}

std::vector<Isa> built_isas() {
  std::vector<Isa> v;
  for (const auto& k : built_gemm_kernels())
    if (std::find(v.begin(), v.end(), k.isa) == v.end()) v.push_back(k.isa);
  return v;
}

const std::vector<QIGemmKernel>& built_igemm_kernels() {
  static const std::vector<QIGemmKernel> t = make_igemm_table();
  return t;
}

const std::vector<DwconvKernel>& built_dwconv_kernels() {
  static const std::vector<DwconvKernel> t = make_dwconv_table();
  return t;
}

const std::vector<WinogradKernel>& built_winograd_kernels() {
  static const std::vector<WinogradKernel> t = make_winograd_table();
  return t;
}

bool can_run(const QIGemmKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const WinogradKernel& k) { return cpu_features().supports(k.isa); }
bool can_run(const DwconvKernel& k) {
  return cpu_features().supports(k.isa) && (!k.vbmi || cpu_features().avx512vbmi);
}

ConvKernels conv_kernels_for(Isa cap) {
  // The GEMM kernel choose() would take for this cap.
  const QGemmKernel* g = preferred_gemm(cap);
  if (!g)
    throw std::runtime_error(std::string("no GEMM kernel for ISA ") + isa_name(cap) +
                             " can run here");
  return conv_kernels_with(cap, *g);
}

const KernelSet& kernels() {
  static const KernelSet s = choose();
  return s;
}

}  // namespace npq
