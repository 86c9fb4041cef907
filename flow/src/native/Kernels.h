#pragma once
// The inner loops of the native evaluator: dense layers (forward and transposed) and activations, for
// float and double weights. Compiled for several x86-64 instruction sets (AVX-512, AVX2+FMA, baseline)
// and chosen at run time, so one binary is fast on every machine.

#include "flowforce/flow/Architecture.h"

#include <cstdint>

namespace flowforce::native {

/** y[b][o] = bias[o] + sum_i W[o][i] x[b][i] for b < batch, with the weights stored transposed:
 *  WT[i][o] = W[o][i] (row-major [in][out]). */
void denseForward(const double* WT, const double* bias, int64_t out, int64_t in, int64_t batch, const double* x, double* y);
/** Float weights and activations, sums in double (acc: batch * out doubles of scratch). */
void denseForward(const float* WT, const float* bias, int64_t out, int64_t in, int64_t batch, const float* x, float* y,
                  double* acc);

/** gx[b][i] = sum_o gy[b][o] W[o][i] (the transposed product: gradients through a dense layer), WT as above;
 *  float weights are summed in double. */
void denseBackward(const double* WT, int64_t out, int64_t in, int64_t batch, const double* gy, double* gx);
void denseBackward(const float* WT, int64_t out, int64_t in, int64_t batch, const float* gy, float* gx);

/** h = act(h) in place for n values; writes act'(pre-activation) to deriv. */
void activate(Activation a, int64_t n, double* h, double* deriv);
void activate(Activation a, int64_t n, float* h, float* deriv);

/** sin and cos of n values (accurate to a few ulp in double; |x| > 1e5 falls back to the C library);
 *  s may be x (in place). */
void sinCos(int64_t n, const double* x, double* s, double* c);

}  // namespace flowforce::native
