#pragma once
// Vector-friendly math for the native evaluator's inner loops: functions the compiler inlines into loops
// marked `#pragma omp simd` and vectorizes (no calls into the C library), and function multiversioning.

#include <cmath>
#include <cstdint>
#include <cstring>

// GCC and Clang compile each marked function for every listed x86-64 level and pick the best one for the
// running processor when the program starts (one binary, fast everywhere).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FLOWFORCE_NO_MULTIVERSION)
#define FLOWFORCE_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOWFORCE_MULTIVERSION
#endif

namespace flowforce::native {

/** Rounds x (|x| < 2^51) to the nearest integer k; returns k as a double and its bits-minus-offset as an
 *  integer, with plain double and 64-bit integer operations (vectorizable without AVX-512's conversions). */
__attribute__((always_inline)) inline double roundWithBits(double x, int64_t& k) {
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: x + shifter holds round(x) in its low bits
    const double kd = x + shifter;
    int64_t bits;
    std::memcpy(&bits, &kd, sizeof bits);
    k = bits - 0x4338000000000000LL;
    return kd - shifter;
}

/** exp(x) to about 1 ulp: reduction by ln 2 in two parts, degree-13 Taylor polynomial, exponent bits.
 *  Results below exp(-708) are 0 (no subnormals); above exp(709) saturate at exp(709). */
__attribute__((always_inline)) inline double vexp(double x) {
    const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    int64_t ki;
    const double k = roundWithBits(xc * 1.4426950408889634, ki);
    const double r = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // Shifted as unsigned: for x = NaN, ki is garbage (possibly negative; the result is NaN either way),
    // and a left shift of a negative signed value is undefined.
    const uint64_t bits = static_cast<uint64_t>(ki + 1023) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < -708.0 ? 0.0 : p * scale;
}

/** 1 / (1 + exp(-x)). */
inline double vlogistic(double x) { return 1.0 / (1.0 + vexp(-x)); }

}  // namespace flowforce::native
