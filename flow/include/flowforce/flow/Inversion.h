#pragma once
// Black-box inversion of element-wise bijections of [0,1] (paper section 5, SI-1.3 and SI-1.4).

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Transforms.h"

#include <functional>

namespace flowforce {

/**
 * Solves f(x) = y on [0,1] element-wise by multi-bin bisection: each step evaluates f at the K-1
 * interior points of a K-bin grid over the current bracket (one vectorised call), keeps the bin that
 * contains the root, and stops once the bracket is narrower than the tolerance; a final secant step
 * inside the last bracket gives x. Runs without gradients; y outside [f(0), f(1)] clamps to 0 or 1.
 * @param f          increasing element-wise function (ElementwiseTransform::prepare): called with x of
 *                   y's shape and with x of y's shape plus a trailing dimension of grid points
 * @param bins       K >= 2 (2 is plain bisection)
 * @param tolerance  bracket width at which to stop (in units of x), > 0
 */
FLOWFORCE_FLOW_EXPORT torch::Tensor multiBinBisection(const ElementwiseTransform::Evaluator& f, const torch::Tensor& y, int64_t bins,
                                double tolerance);

/** Number of bisection steps multiBinBisection takes for these settings. */
FLOWFORCE_FLOW_EXPORT int64_t bisectionSteps(int64_t bins, double tolerance);

/**
 * x = f^-1(y) and log (f^-1)'(y) = -log f'(x) for transform.forward = f, found by multiBinBisection
 * with transform.inversion settings, as a differentiable operation: gradients with respect to y and
 * params follow the inverse function theorem (eqs. 8-11),
 *   dx/dy = 1/f',  dx/dtheta = -(df/dtheta)/f',
 *   dl/dy = -f''/f'^2,  dl/dtheta = ((f''/f') df/dtheta - df'/dtheta)/f',
 * computed from forward evaluations at the root only (one vector-Jacobian product of f and log f').
 * The gradients are exact to first order; the transform must outlive the autograd graph.
 */
FLOWFORCE_FLOW_EXPORT ElementwiseResult invertWithImplicitGradients(const ElementwiseTransform& transform, const torch::Tensor& y,
                                              const torch::Tensor& params);

}  // namespace flowforce
