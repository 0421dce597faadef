// Coefficients of the float32 GELU kernels (f32-vgelu-*.cc), shared so every ISA
// evaluates the same polynomials in the same order (fma in every Horner step):
//
//   erf form ('none'):  z = clamp(x * (1/sqrt 2), -kErfClamp, kErfClamp)
//   tanh form:          z = clamp(kBeta * fma(kKappa, x*x*x, x), -kTanhClamp, kTanhClamp)
//   u = z*z, e = clamp((z * P(u)) / Q(u), -1, 1),  y = (x * 0.5) * (1 + e)
//
// P/Q is a rational approximation of erf(z)/z (degrees 6/5 in u, fitted on [0, 4] by
// iteratively reweighted linearized least squares toward minimax; max |error| 1.5e-9
// in exact arithmetic) or of tanh(z)/z (4/4, on [0, 9.1], 2.1e-8). Beyond the clamp
// points erf and tanh are 1 in float32. Fitted for npquant (no coefficients copied).
// The last step follows torch's formula x * 0.5 * (1 + erf(x / sqrt 2)).
#pragma once

namespace npq {
namespace {

constexpr float kGeluRsqrt2 = 0x1.6a09e6p-1f;  // fl(1 / sqrt 2)
constexpr float kGeluBeta = 0x1.988454p-1f;    // fl(sqrt(2 / pi))
constexpr float kGeluKappa = 0.044715f;
constexpr float kErfClamp = 4.0f;
constexpr float kTanhClamp = 9.1f;

constexpr float kErfP[7] = {0x1.20dd76p+0f,  0x1.7a4974p-3f,  0x1.bd17cep-5f,  0x1.f74178p-9f,
                            0x1.91489ep-12f, 0x1.40d1c6p-18f, -0x1.d5983ep-27f};
constexpr float kErfQ[6] = {1.0f,           0x1.fcf524p-2f,  0x1.d23b98p-4f,
                            0x1.fa61aap-7f, 0x1.574c9ep-10f, 0x1.0c79dep-14f};
constexpr float kTanhP[5] = {0x1.fffffcp-1f, 0x1.11bee2p-3f, 0x1.c7f3f4p-9f, 0x1.554a3cp-16f,
                             0x1.beec24p-27f};
constexpr float kTanhQ[5] = {1.0f, 0x1.de34acp-2f, 0x1.a6e61cp-6f, 0x1.55aca0p-12f,
                             0x1.999e56p-21f};

}  // namespace
}  // namespace npq
