// AMX-INT8 GEMM, 32 rows x 32 columns, K in steps of 64 (tdpbusd).
//
// NOT YET RUN ON AMX HARDWARE: written from Intel's ISA reference (TDPBUSD,
// LDTILECFG, TILELOADD) on machines without AMX. Its logic (tile shapes,
// addressing, partial row blocks, the panel layout) is tested bit for bit on
// the GEMM edge grid by tests/native/test_amx_emulated.cc, which builds this
// file with the tile instructions replaced by a software model of them
// (tests/native/amx_emulator.h). The encodings themselves are checked on AMX
// hardware only by the run-time self-check in dispatch.cc, which compares the
// kernel with the reference before it is ever chosen and falls back to
// AVX-512 VNNI on any mismatch (cpu_info()["self_check"] says why).
//
// Layout: PackedLayout{nr=32, kr=4, k_align=64}, the AVX-512 VNNI kernel's
// layout with K padded to 64 so every B tile is whole. One K group of a panel
// is 128 bytes: columns 0..15 x 4 bytes, then columns 16..31 x 4 bytes. A B
// tile (16 K groups x 16 columns x 4 bytes) is therefore read straight from
// the panel with a row stride of 128 bytes, and an A tile (16 rows x 64 bytes
// of K) straight from the activations with their row stride.
//
// Tiles: C 0..3 (rows 0-15 / 16-31 x columns 0-15 / 16-31), A 4 (rows 0-15),
// A 5 (rows 16-31), B 6 (columns 0-15), B 7 (columns 16-31). The tiles are
// configured per call with the call's row count, so partial row blocks never
// read past the last row, and released at the end of the call.
//
// TDPBUSD multiplies u8 (first source, A) by s8 (second source, B) and sums
// groups of 4 into int32: the operand types of the contract, exact. C is
// stored to a stack buffer and finished with AVX-512 (zero-point term and
// requantize / dequantize), exactly like the AVX-512 VNNI kernel.
#include <immintrin.h>

#include <cstring>

#include "../ukernel.h"
#include "avx512-util.h"

namespace npq {
namespace {

constexpr size_t kMR = 32, kNR = 32, kKStep = 64;
constexpr size_t kBStride = kNR * 4;  // bytes per K group of a panel

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

void set_tile(TileConfig* cfg, int t, size_t rows) {
  cfg->rows[t] = static_cast<uint8_t>(rows);
  cfg->colsb[t] = rows ? 64 : 0;  // an unused tile has rows = colsb = 0
}

// rows0 = rows of the upper block (1..16), rows1 = rows of the lower one (0..16).
void configure(size_t rows0, size_t rows1) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette = 1;
  set_tile(&cfg, 0, rows0);
  set_tile(&cfg, 1, rows0);
  set_tile(&cfg, 2, rows1);
  set_tile(&cfg, 3, rows1);
  set_tile(&cfg, 4, rows0);
  set_tile(&cfg, 5, rows1);
  set_tile(&cfg, 6, 16);
  set_tile(&cfg, 7, 16);
  _tile_loadconfig(&cfg);
}

// C tiles of one panel, stored to acc[32][32] (int32, row stride 128 bytes).
void panel_tiles(bool two_blocks, size_t kp, const uint8_t* a, size_t a_stride, const int8_t* wk,
                 int32_t (*acc)[kNR]) {
  const long as = static_cast<long>(a_stride);
  const long bs = static_cast<long>(kBStride);
  const uint8_t* a1 = a + 16 * a_stride;
  _tile_zero(0);
  _tile_zero(1);
  if (two_blocks) {
    _tile_zero(2);
    _tile_zero(3);
    for (size_t k = 0; k < kp; k += kKStep) {
      const int8_t* b = wk + (k / 4) * kBStride;
      _tile_loadd(4, a + k, as);
      _tile_loadd(6, b, bs);
      _tile_loadd(7, b + 64, bs);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_loadd(5, a1 + k, as);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(2, &acc[16][0], bs);
    _tile_stored(3, &acc[16][16], bs);
  } else {
    for (size_t k = 0; k < kp; k += kKStep) {
      const int8_t* b = wk + (k / 4) * kBStride;
      _tile_loadd(4, a + k, as);
      _tile_loadd(6, b, bs);
      _tile_loadd(7, b + 64, bs);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
    }
  }
  _tile_stored(0, &acc[0][0], bs);
  _tile_stored(1, &acc[0][16], bs);
}

struct Requant {
  const RequantEpilogue* ep;
  uint8_t* c;
  size_t c_stride;

  void store(size_t r, size_t n0, size_t v, __mmask16 mask, __m512i acc) const {
    const __m512 bias = _mm512_loadu_ps(ep->bias_s + n0 + 16 * v);
    const __m512 mult = _mm512_loadu_ps(ep->mult + n0 + 16 * v);
    _mm512_mask_cvtepi32_storeu_epi8(c + r * c_stride + n0 + 16 * v, mask,
                                     RequantZmm(ep)(acc, bias, mult));
  }
};

struct Dequant {
  const DequantEpilogue* ep;
  float* c;
  size_t c_stride;

  void store(size_t r, size_t n0, size_t v, __mmask16 mask, __m512i acc) const {
    const __m512 ws = _mm512_loadu_ps(ep->w_scale + n0 + 16 * v);
    const __m512 bias = _mm512_loadu_ps(ep->bias + n0 + 16 * v);
    float* cr = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + r * c_stride);
    _mm512_mask_storeu_ps(cr + n0 + 16 * v, mask, dequant_zmm(acc, ep->a_scale[r], ws, bias));
  }
};

template <class Out>
void gemm(size_t mr, size_t nc, size_t kp, const uint8_t* a, size_t a_stride, const void* w,
          const int32_t* a_zp, const Out& out) {
  if (mr > kMR) mr = kMR;
  const size_t rows0 = mr < 16 ? mr : 16, rows1 = mr - rows0;
  configure(rows0, rows1);
  alignas(64) int32_t acc[kMR][kNR];
  const size_t panel_stride = kNR * sizeof(int32_t) + kp * kNR;
  const int8_t* panel = static_cast<const int8_t*>(w);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += panel_stride) {
    panel_tiles(rows1 != 0, kp, a, a_stride, panel + kNR * sizeof(int32_t), acc);
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t v = 0; v < kNR / 16; ++v) {
      const __mmask16 mask = lane_mask16(nn, v);
      if (!mask) break;
      const __m512i colsum = _mm512_load_si512(panel + 64 * v);
      for (size_t r = 0; r < mr; ++r) {
        // Zero-point term: acc -= a_zp[r] * colsum (wrapping int32, exact overall).
        const __m512i x = _mm512_sub_epi32(_mm512_load_si512(&acc[r][16 * v]),
                                           _mm512_mullo_epi32(_mm512_set1_epi32(a_zp[r]), colsum));
        out.store(r, n0, v, mask, x);
      }
    }
  }
  _tile_release();
}

}  // namespace

void qu8_gemm_32x32c4__amx_requant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                   size_t a_stride, const void* w, const int32_t* a_zp, uint8_t* c,
                                   size_t c_stride, const RequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Requant{ep, c, c_stride});
}

void qu8_gemm_32x32c4__amx_dequant(size_t mr, size_t nc, size_t kp, const uint8_t* a,
                                   size_t a_stride, const void* w, const int32_t* a_zp, float* c,
                                   size_t c_stride, const DequantEpilogue* ep) {
  gemm(mr, nc, kp, a, a_stride, w, a_zp, Dequant{ep, c, c_stride});
}

}  // namespace npq
