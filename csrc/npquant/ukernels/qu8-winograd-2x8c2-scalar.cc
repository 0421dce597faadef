// Portable exact int8 Winograd F(2x2, 3x3): the model the SIMD kernels follow and
// the scalar ISA's kernel. Contract: ukernel.h (qu8_wino_input_fn, qu8_wino_gemm_fn);
// why the arithmetic is exact: ops/winograd.h. Tile: 2 tiles x 8 output channels,
// channels in pairs (the packed U of ops/winograd.cc with nr = 8, kr = 2).
#include "../qmath.h"
#include "../ukernel.h"

namespace npq {
namespace {

// Tiles per call: the registry's mr = 2 (any mr works here).
constexpr size_t kNR = 8, kKR = 2;

// Wrapping int32 arithmetic (unsigned, so it is defined behaviour): every value
// the output transform produces is exact modulo 2^32.
inline uint32_t u32(int32_t v) { return static_cast<uint32_t>(v); }

}  // namespace

void qu8_winograd_2x8c2__scalar_input(size_t cg, size_t cp, const uint8_t* const* rows, int32_t xz,
                                      int16_t* v, size_t v_pos) {
  for (size_t c = 0; c < cp; ++c) {
    if (c >= cg) {
      for (size_t p = 0; p < 16; ++p) v[p * v_pos + c] = 0;
      continue;
    }
    int32_t d[4][4], t[4][4];
    for (size_t i = 0; i < 4; ++i)
      for (size_t j = 0; j < 4; ++j) d[i][j] = static_cast<int32_t>(rows[4 * i + j][c]) - xz;
    // t = B^T d (over rows), then V = t B (over columns); |d| <= 255, |V| <= 1020.
    for (size_t j = 0; j < 4; ++j) {
      t[0][j] = d[0][j] - d[2][j];
      t[1][j] = d[1][j] + d[2][j];
      t[2][j] = d[2][j] - d[1][j];
      t[3][j] = d[1][j] - d[3][j];
    }
    for (size_t i = 0; i < 4; ++i) {
      const int32_t r[4] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1],
                            t[i][1] - t[i][3]};
      for (size_t j = 0; j < 4; ++j) v[(4 * i + j) * v_pos + c] = static_cast<int16_t>(r[j]);
    }
  }
}

void qu8_winograd_2x8c2__scalar_gemm(size_t mr, size_t nc, size_t kc, const int16_t* v,
                                     size_t v_row, size_t v_pos, const void* u, uint8_t* const* y,
                                     const RequantEpilogue* ep) {
  const size_t pos_stride = kc * kNR;  // int16 per position of a panel
  const int16_t* panel = static_cast<const int16_t*>(u);
  for (size_t n0 = 0; n0 < nc; n0 += kNR, panel += 16 * pos_stride) {
    const size_t nn = nc - n0 < kNR ? nc - n0 : kNR;
    for (size_t r = 0; r < mr; ++r) {
      uint32_t m[16][kNR];
      for (size_t p = 0; p < 16; ++p) {
        const int16_t* vr = v + p * v_pos + r * v_row;
        const int16_t* up = panel + p * pos_stride;
        for (size_t n = 0; n < kNR; ++n) m[p][n] = 0;
        for (size_t c = 0; c < kc; c += kKR)
          for (size_t n = 0; n < kNR; ++n)
            for (size_t i = 0; i < kKR; ++i)
              // |V * U| <= 1020 * 1152: the product fits int32; the sum wraps.
              m[p][n] += u32(int32_t{vr[c + i]} * up[(c / kKR) * kNR * kKR + n * kKR + i]);
      }
      for (size_t n = 0; n < nn; ++n) {
        // Y = A^T M A with A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]: columns, then rows.
        uint32_t s[4][2];
        for (size_t i = 0; i < 4; ++i) {
          s[i][0] = m[4 * i][n] + m[4 * i + 1][n] + m[4 * i + 2][n];
          s[i][1] = m[4 * i + 1][n] - m[4 * i + 2][n] - m[4 * i + 3][n];
        }
        for (size_t qx = 0; qx < 2; ++qx) {
          const uint32_t yq[2] = {s[0][qx] + s[1][qx] + s[2][qx], s[1][qx] - s[2][qx] - s[3][qx]};
          for (size_t qy = 0; qy < 2; ++qy) {
            uint8_t* out = y[4 * r + 2 * qy + qx];
            if (!out) continue;
            // Y = 4 * acc exactly (ops/winograd.h): an arithmetic shift recovers acc.
            const int32_t acc = static_cast<int32_t>(yq[qy]) >> 2;
            out[n0 + n] = requant_one(acc, ep->bias_s[n0 + n], ep->mult[n0 + n], ep->out_zp,
                                      ep->out_min, ep->out_max);
          }
        }
      }
    }
  }
}

}  // namespace npq
