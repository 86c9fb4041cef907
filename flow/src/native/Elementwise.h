#pragma once
// Element-wise transforms of the native evaluator, one coupling layer's elements at a time: the smooth
// bump mixture (interval and circle, vectorised over elements x components) and the rational-quadratic
// spline, with the derivatives the hand-written reverse pass needs. The formulas are those of
// Transforms.cpp (the LibTorch version); tests compare both.

#include "flowforce/flow/Architecture.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace flowforce::native {

/** Below this distance from the ends of [0,1] the exponential ramp's sigmoid is exactly 0 or 1 in double
 *  precision (the same guard as Transforms.cpp). */
constexpr double kEdgeGuard = 1e-5;

/** The d element-wise transforms of one coupling for one configuration. */
class CouplingTransform {
public:
    virtual ~CouplingTransform() = default;
    /** Doubles per configuration that forward() keeps for backward(). */
    virtual size_t savedSize() const = 0;
    /** raw [d][P] parameters, inputs x [d] -> outputs y [d]; returns the sum of the elements' log
     *  derivatives in this (data -> latent) direction. inverse: y = f^-1(x) (log-derivative -log f'(y)).
     *  saved: where to keep what backward() needs (null when no gradient follows). */
    virtual double forward(const double* raw, const double* x, double* y, bool inverse, double* saved) = 0;
    /** Cotangents ybar [d] of the outputs and lbar of the summed log-derivative -> cotangents of the
     *  inputs xbar [d] and of the raw parameters rawBar [d][P]. */
    virtual void backward(const double* raw, const double* saved, const double* ybar, double lbar, bool inverse,
                          double* xbar, double* rawBar) = 0;

    /** The transform of a spec for d elements. */
    static std::unique_ptr<CouplingTransform> create(const TransformSpec& spec, int64_t d);
};

}  // namespace flowforce::native
