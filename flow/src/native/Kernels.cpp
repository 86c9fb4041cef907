#include "Kernels.h"

#include "Simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace flowforce::native {

namespace {

// ---- dense layers ----------------------------------------------------------------------------

// The weights are stored transposed, WT [in][out] (column-major W): the forward product adds scaled
// rows of WT (no horizontal sums), the transposed product takes long dot products, and with a batch
// each row of WT is loaded once for every configuration. always_inline: the loops are compiled inside
// each multiversioned caller, for its instruction set.

// T: weights and activations; A: accumulation (double for both precisions: float weights and
// activations halve the memory traffic, double sums keep single precision within 1e-5 of double).
template <class T, class A>
__attribute__((always_inline)) inline void forwardImpl(const T* __restrict WT, const T* __restrict bias, int64_t out,
                                                       int64_t in, int64_t batch, const T* __restrict x,
                                                       A* __restrict y) {
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t o = 0; o < out; ++o) y[b * out + o] = static_cast<A>(bias[o]);
    int64_t i = 0;
    for (; i + 4 <= in; i += 4) {
        const T* w0 = WT + i * out;
        const T* w1 = w0 + out;
        const T* w2 = w1 + out;
        const T* w3 = w2 + out;
        for (int64_t b = 0; b < batch; ++b) {
            const T* xb = x + b * in + i;
            const A x0 = xb[0], x1 = xb[1], x2 = xb[2], x3 = xb[3];
            A* yb = y + b * out;
#pragma omp simd
            for (int64_t o = 0; o < out; ++o)
                yb[o] += x0 * static_cast<A>(w0[o]) + x1 * static_cast<A>(w1[o]) + x2 * static_cast<A>(w2[o]) +
                         x3 * static_cast<A>(w3[o]);
        }
    }
    for (; i < in; ++i) {
        const T* w = WT + i * out;
        for (int64_t b = 0; b < batch; ++b) {
            const A xi = x[b * in + i];
            A* yb = y + b * out;
#pragma omp simd
            for (int64_t o = 0; o < out; ++o) yb[o] += xi * static_cast<A>(w[o]);
        }
    }
}

template <class T, class A>
__attribute__((always_inline)) inline void backwardImpl(const T* __restrict WT, int64_t out, int64_t in, int64_t batch,
                                                        const T* __restrict gy, T* __restrict gx) {
    int64_t i = 0;
    for (; i + 4 <= in; i += 4) {
        const T* w0 = WT + i * out;
        const T* w1 = w0 + out;
        const T* w2 = w1 + out;
        const T* w3 = w2 + out;
        for (int64_t b = 0; b < batch; ++b) {
            const T* g = gy + b * out;
            A a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
            for (int64_t o = 0; o < out; ++o) {
                const A v = g[o];
                a0 += static_cast<A>(w0[o]) * v;
                a1 += static_cast<A>(w1[o]) * v;
                a2 += static_cast<A>(w2[o]) * v;
                a3 += static_cast<A>(w3[o]) * v;
            }
            T* gxb = gx + b * in + i;
            gxb[0] = static_cast<T>(a0);
            gxb[1] = static_cast<T>(a1);
            gxb[2] = static_cast<T>(a2);
            gxb[3] = static_cast<T>(a3);
        }
    }
    for (; i < in; ++i) {
        const T* w = WT + i * out;
        for (int64_t b = 0; b < batch; ++b) {
            const T* g = gy + b * out;
            A acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t o = 0; o < out; ++o) acc += static_cast<A>(w[o]) * static_cast<A>(g[o]);
            gx[b * in + i] = static_cast<T>(acc);
        }
    }
}

// ---- sin and cos -----------------------------------------------------------------------------
// Cody-Waite reduction by pi/2 in three parts, then minimax polynomials on [-pi/4, pi/4] (the fdlibm
// kernels' coefficients). Branch-free, so the loop vectorizes; large arguments are redone by the C library.

constexpr double kTwoOverPi = 0.63661977236758134308;
constexpr double kPio2Hi = 1.57079632673412561417e+00;
constexpr double kPio2Mid = 6.07710050650619224932e-11;
constexpr double kPio2Lo = 2.02226624879595063154e-21;
constexpr double kS1 = -1.66666666666666324348e-01, kS2 = 8.33333333332248946124e-03, kS3 = -1.98412698298579493134e-04,
                 kS4 = 2.75573137070700676789e-06, kS5 = -2.50507602534068634195e-08, kS6 = 1.58969099521155010221e-10;
constexpr double kC1 = 4.16666666666666019037e-02, kC2 = -1.38888888888741095749e-03, kC3 = 2.48015872894767294178e-05,
                 kC4 = -2.75573143513906633035e-07, kC5 = 2.08757232129817482790e-09, kC6 = -1.13596475577881948265e-11;
constexpr double kLargeArgument = 1e5;

FLOWFORCE_MULTIVERSION
bool sinCosVector(int64_t n, const double* x, double* s, double* c) {  // s may be x
    int large = 0;
#pragma omp simd reduction(| : large)
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        int64_t q;
        const double k = roundWithBits(v * kTwoOverPi, q);
        const double r = ((v - k * kPio2Hi) - k * kPio2Mid) - k * kPio2Lo;
        const double z = r * r;
        const double sr = r + r * z * (kS1 + z * (kS2 + z * (kS3 + z * (kS4 + z * (kS5 + z * kS6)))));
        const double cr = 1.0 - 0.5 * z + z * z * (kC1 + z * (kC2 + z * (kC3 + z * (kC4 + z * (kC5 + z * kC6)))));
        const double sinv = (q & 1) ? cr : sr;
        const double cosv = (q & 1) ? sr : cr;
        // beyond the reduction's accuracy (or not finite): keep the argument in s and mark c, for sinCos
        const bool big = !(std::fabs(v) <= kLargeArgument);
        c[i] = big ? std::numeric_limits<double>::quiet_NaN() : (((q + 1) & 2) ? -cosv : cosv);
        s[i] = big ? v : ((q & 2) ? -sinv : sinv);
        large |= big;
    }
    return large != 0;
}

template <class T>
void activateImpl(Activation a, int64_t n, T* h, T* d) {
    switch (a) {
        case Activation::Sin: {
            if constexpr (std::is_same_v<T, double>) {
                sinCos(n, h, h, d);  // in place: h = sin(h), d = cos(h)
            } else {
                constexpr int64_t kChunk = 256;
                double xs[kChunk], cs[kChunk];
                for (int64_t at = 0; at < n; at += kChunk) {
                    const int64_t m = std::min(kChunk, n - at);
                    for (int64_t i = 0; i < m; ++i) xs[i] = static_cast<double>(h[at + i]);
                    sinCos(m, xs, xs, cs);
                    for (int64_t i = 0; i < m; ++i) {
                        h[at + i] = static_cast<T>(xs[i]);
                        d[at + i] = static_cast<T>(cs[i]);
                    }
                }
            }
            return;
        }
        case Activation::SiLU:
            for (int64_t i = 0; i < n; ++i) {
                const double z = h[i], sg = 1.0 / (1.0 + std::exp(-z));
                h[i] = static_cast<T>(z * sg);
                d[i] = static_cast<T>(sg * (1.0 + z * (1.0 - sg)));
            }
            return;
        case Activation::Tanh:
            for (int64_t i = 0; i < n; ++i) {
                const double t = std::tanh(static_cast<double>(h[i]));
                h[i] = static_cast<T>(t);
                d[i] = static_cast<T>(1.0 - t * t);
            }
            return;
        case Activation::ReLU:
            for (int64_t i = 0; i < n; ++i) {
                d[i] = h[i] > 0 ? T(1) : T(0);
                h[i] = h[i] > 0 ? h[i] : T(0);
            }
            return;
    }
}

}  // namespace

FLOWFORCE_MULTIVERSION
void denseForward(const double* W, const double* bias, int64_t out, int64_t in, int64_t batch, const double* x, double* y) {
    forwardImpl<double, double>(W, bias, out, in, batch, x, y);
}
FLOWFORCE_MULTIVERSION
void denseForward(const float* W, const float* bias, int64_t out, int64_t in, int64_t batch, const float* x, float* y,
                  double* acc) {
    forwardImpl<float, double>(W, bias, out, in, batch, x, acc);
    const int64_t n = batch * out;
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) y[k] = static_cast<float>(acc[k]);
}
FLOWFORCE_MULTIVERSION
void denseBackward(const double* W, int64_t out, int64_t in, int64_t batch, const double* gy, double* gx) {
    backwardImpl<double, double>(W, out, in, batch, gy, gx);
}
FLOWFORCE_MULTIVERSION
void denseBackward(const float* W, int64_t out, int64_t in, int64_t batch, const float* gy, float* gx) {
    backwardImpl<float, double>(W, out, in, batch, gy, gx);
}

void sinCos(int64_t n, const double* x, double* s, double* c) {
    if (!sinCosVector(n, x, s, c)) return;
    for (int64_t i = 0; i < n; ++i)  // rare: redone by the C library from the argument kept in s
        if (std::isnan(c[i])) {
            const double v = s[i];
            s[i] = std::sin(v);
            c[i] = std::cos(v);
        }
}

void activate(Activation a, int64_t n, double* h, double* deriv) { activateImpl(a, n, h, deriv); }
void activate(Activation a, int64_t n, float* h, float* deriv) { activateImpl(a, n, h, deriv); }

}  // namespace flowforce::native
