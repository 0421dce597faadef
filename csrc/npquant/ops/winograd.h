// Exact int8 Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1, dilation 1
// and one group (any padding): the weight transform and packing, and when the
// path is exact. The conv driver (conv2d.cc) runs the kernels (ukernel.h
// qu8_wino_input_fn / qu8_wino_gemm_fn).
//
// Why it is exact. For a tile of 2x2 outputs and its 4x4 input patch d (d = x - xz,
// so |d| <= 255 and padding is 0) and a 3x3 filter g, Lavin's F(2x2, 3x3) is
//   Y = A^T [ (G g G^T) . (B^T d B) ] A       (. is the elementwise product)
//   B^T = [[1, 0,-1, 0],   G = [[1,   0,   0 ],   A^T = [[1, 1, 1, 0],
//          [0, 1, 1, 0],        [1/2, 1/2, 1/2],          [0, 1,-1,-1]]
//          [0,-1, 1, 0],        [1/2,-1/2, 1/2],
//          [0, 1, 0,-1]]        [0,   0,   1 ]]
// an identity of polynomials, so Y is the direct 3x3 correlation exactly. G has
// halves; G' = 2G = [[2,0,0],[1,1,1],[1,-1,1],[0,0,2]] is integer, U = G' g G'^T =
// 4 (G g G^T), and the same formula with U gives 4Y: every quantity is an integer.
// Ranges: a row of B^T has two entries +-1, so |B^T d B| <= 4 * 255 = 1020; a row of
// G' has absolute sum <= 3, so |U| <= 3 * 3 * 128 = 1152 (|w| <= 128): V = B^T d B and
// U both fit int16, so the products go through int16 multiply-adds (vpmaddwd, whose
// pair sums are at most 2 * 1020 * 1152 < 2^31) exactly. The sums over channels and
// the output transform are int32 additions that may wrap: integer arithmetic modulo
// 2^32 is a ring, so the wrapped result is 4 * acc modulo 2^32, acc the exact direct
// accumulator the reference computes. When -2^29 <= acc < 2^29, 4 * acc is itself in
// int32's range, so the wrapped value *is* 4 * acc and an arithmetic shift right by 2
// gives acc bit for bit; the requantization then is the GEMM's.
//
// The bound, per layer (checked when the weights are packed): |acc| <= max|d| *
// sum over (c, ky, kx) of |w[o]| <= 255 * S, S the largest such sum over output
// channels o, so 255 * S < 2^29 suffices for every input and zero point. For weights
// anywhere in [-128, 127] that is C <= 1,827 input channels (255 * 128 * 9 * 1,827 =
// 536,699,520 < 2^29 = 536,870,912); real layers, whose |w| averages far below 128,
// pass far beyond it. A layer that does not pass runs the indirect GEMM instead.
// (The wrapped value only determines acc modulo 2^30, so a larger range is possible
// only with a per-channel offset when acc lies in a known interval shorter than 2^30,
// [lo, lo + 255 * S] for a given xz: that would double S, but no real layer needs it.)
#pragma once

#include <cstddef>
#include <cstdint>

#include "../params.h"
#include "pack.h"

namespace npq {

// Whether the geometry is one the Winograd path computes: a 3x3 kernel, stride 1,
// dilation 1, one group (padding is free).
bool winograd_geometry(const ConvGeometry& g);

// Whether the Winograd path is exact for these weights (out_c rows of k = cg * 9
// int8, OIHW): 255 * max over rows of sum |w| < 2^29 (the bound above).
bool winograd_exact(const int8_t* w, size_t out_c, size_t k);

// Transformed and packed weights U = G' g G'^T (int16) for a kernel with panels of nr
// output channels and channels in groups of kr: [ceil(out_c / nr) panels][16 positions]
// [kc / kr][nr][kr], kc = round_up(cg, kr); padded channels and columns are 0.
class WinogradWeights {
 public:
  WinogradWeights() = default;
  // w: OIHW int8 (out_c, cg, 3, 3).
  WinogradWeights(const int8_t* w, size_t out_c, size_t cg, size_t nr, size_t kr);
  size_t kc() const { return kc_; }
  size_t bytes() const { return panel_bytes_ * panels_; }
  // First panel of output channels n0.. (n0 a multiple of nr).
  const void* panel(size_t n0) const { return data_.get() + (n0 / nr_) * panel_bytes_; }

 private:
  size_t nr_ = 0, kc_ = 0, panels_ = 0, panel_bytes_ = 0;
  AlignedBuffer data_;
};

}  // namespace npq
