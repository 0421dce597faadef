// Constants of the float32 exp / sigmoid / tanh that the softmax, LSTM and GRU kernels
// evaluate (scalar-fmath.h, avx2-fmath.h, avx512-fmath.h). Every ISA runs the same
// IEEE operations on them in the same order, so every ISA gives the same bits:
//
//   exp(x), x <= 0:  x = clamp(x, kExpLo, 0); t = fma(x, kLog2e, kRoundMagic) (t's low
//                    bits are n = nearbyint(x / ln 2)); nf = t - kRoundMagic;
//                    r = fma(nf, -kLn2Lo, fma(nf, -kLn2Hi, x)) (|r| <= ln2 / 2);
//                    q = Q(r) (Horner, fma); p = fma(q, r, 1);
//                    exp = (p * 2^n1) * 2^n2 with n1 = n >> 1, n2 = n - n1 (both >= -76,
//                    so each power of two is a normal float and subnormal results round
//                    once, in the last product; below kExpLo the result is 0).
//   expm1(y), -2 * kTanhClamp <= y <= 0: the same r and q; m = r * q; s = 2^n;
//                    expm1 = fma(s, m, s - 1) (s - 1 is exact for n >= -24 and
//                    rounds to -1 below, where expm1(y) is -1 to within 2^-25).
//   sigmoid(x):      e = exp(-|x|); (x >= 0 ? 1 : e) / (1 + e).
//   tanh(x):         a = min(|x|, kTanhClamp); m = expm1(-2a); |tanh| = -m / (2 + m),
//                    with the sign of x (so tanh(-x) = -tanh(x) and tanh(-0) = -0).
//
// Q is (exp(r) - 1) / r, degree 5, fitted for npquant on [-ln2/2, ln2/2] by iteratively
// reweighted least squares (max relative error of 1 + r*Q(r): 2.0e-9 in exact
// arithmetic). Measured in float32 against float64 over every float: exp <= 1.1 ulp,
// sigmoid <= 2.4 ulp, tanh <= 2.9 ulp (abs error <= 1.5e-7).
#pragma once

#include <cstdint>

namespace npq {
namespace {

constexpr float kLog2e = 0x1.715476p+0f;    // fl(1 / ln 2)
constexpr float kRoundMagic = 0x1.8p23f;    // 1.5 * 2^23: t's unit is 1
constexpr float kLn2Hi = 0x1.62e430p-1f;    // fl(ln 2)
constexpr float kLn2Lo = -0x1.05c610p-29f;  // fl(ln 2 - kLn2Hi)
constexpr float kExpLo = -104.0f;           // exp(-104) < 2^-150: rounds to 0
constexpr float kTanhClamp = 9.1f;          // tanh(x) rounds to 1 from x = 8.7 on
constexpr uint32_t kSignBit = 0x80000000u;

constexpr float kExpQ[6] = {0x1.0p+0f,      0x1.fffffcp-2f, 0x1.555418p-3f,
                            0x1.555824p-5f, 0x1.1267dap-7f, 0x1.6ae6d8p-10f};

}  // namespace
}  // namespace npq
