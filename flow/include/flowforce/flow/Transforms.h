#pragma once
// Element-wise bijections of the unit interval [0,1] and of the circle (the unit interval with its ends
// identified). Each transform acts independently on every element of a tensor; its shape parameters
// come per element from a conditioner network, as raw (unconstrained) numbers in the last dimension.
//
//   forward(x, params) -> {y = f(x), log f'(x)}          x: [...], params: [..., numParams()]
//   inverse(y, params) -> {x = f^-1(y), log (f^-1)'(y)}
//
// Transforms without a closed-form inverse invert by multi-bin bisection (Inversion.h) with exact
// gradients from the inverse function theorem.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Architecture.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flowforce {

/** Output of an element-wise transform: the mapped values and log|dy/dx| per element. */
struct FLOWFORCE_FLOW_EXPORT ElementwiseResult {
    torch::Tensor out;
    torch::Tensor logdet;
};

/** Settings of the multi-bin bisection used by transforms without an analytic inverse. */
struct FLOWFORCE_FLOW_EXPORT InversionOptions {
    int64_t bins = 16;         ///< bins per bisection step (2 = plain bisection)
    double tolerance = 1e-12;  ///< bracket width at which the search stops, in units of x
};

/** An element-wise bijection of [0,1] (or of the circle) with conditioner-provided parameters. */
class FLOWFORCE_FLOW_EXPORT ElementwiseTransform {
public:
    explicit ElementwiseTransform(TransformSpec spec) : spec_(std::move(spec)) {}
    virtual ~ElementwiseTransform() = default;
    /** The validated kind, topology and options (Architecture.h). */
    const TransformSpec& spec() const { return spec_; }
    /** Number of raw parameters per element, the size of the last dimension of params. */
    int64_t numParams() const { return spec_.numParams(); }
    /** The raw parameters per element as consecutive groups (TransformSpec::heads). */
    std::vector<ParameterHead> heads() const { return spec_.heads(); }
    /** True if the transform is a bijection of the circle (periodic density and derivatives). */
    bool circular() const { return spec_.circular; }
    /** The configuration that recreates this transform with makeTransform(). */
    nlohmann::json config() const { return spec_.toJson(); }
    /** y = f(x) and log f'(x), element-wise; differentiable in x and params to any order. */
    virtual ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const = 0;
    /** x = f^-1(y) and log (f^-1)'(y). The default inverts forward() by multi-bin bisection with
     *  inverse-function-theorem gradients (see Inversion.h). */
    virtual ElementwiseResult inverse(const torch::Tensor& y, const torch::Tensor& params) const;
    /** True if inverse() is closed-form rather than a root finder. */
    virtual bool hasAnalyticInverse() const { return false; }
    /** y = f(x) for fixed params, with the parameter maps evaluated once (root finding calls it many
     *  times): x has params' element shape (params.sizes() without the last), optionally with one extra
     *  trailing dimension of points per element. */
    using Evaluator = std::function<torch::Tensor(const torch::Tensor& x)>;
    virtual Evaluator prepare(const torch::Tensor& params) const;
    /** Raw parameters [numParams()] a conditioner should output at initialisation (its output bias):
     *  a transform close to the identity with components spread over the interval. */
    virtual torch::Tensor initialParams() const { return torch::zeros({numParams()}, torch::kFloat64); }

    InversionOptions inversion;

private:
    TransformSpec spec_;
};

using TransformPtr = std::shared_ptr<const ElementwiseTransform>;

/** The constrained shape of a smooth mixture, [..., K] each (SmoothMixtureTransform::shape). */
struct FLOWFORCE_FLOW_EXPORT MixtureShape {
    torch::Tensor w;  ///< mixture weights (softmax), sum 1
    torch::Tensor s;  ///< ramp sharpness (exponential ramp; 1 for the monomial ramp)
    torch::Tensor a;  ///< concentration: the bump's support is 1/a wide
    torch::Tensor b;  ///< location: the centre of the bump, increasing with k, in (0,1)
    torch::Tensor c;  ///< identity weight: f_k = (1 - c) bump CDF + c x
};

/** Mixture of K smooth unimodal transforms, each (1-c)(g(x)-g(0))/(g(1)-g(0)) + c x with the bump
 *  g(x) = sigma[rho](a (x - b) + 1/2); on the circle the closed-form wrapped version of SI-1.2.
 *  Raw parameters per element, K each, grouped by conditioner head:
 *    head "weights":   mixture logits                      w = softmax(raw)
 *    head "sharpness": ramp sharpness (exponential ramp)   s = s_min + span * sigmoid(raw)
 *    head "shape":     locations                           b_k = sum_{j<k} u_j + u_k / 2,  u = softmax(raw)
 *                      log-concentrations                  a = a0 exp(bound * tanh(raw))  (circle: a = a0)
 *                      identity weights                    c = c_min + (1 - c_min) sigmoid(raw)
 *  (the monomial ramp has no sharpness head). */
class FLOWFORCE_FLOW_EXPORT SmoothMixtureTransform : public ElementwiseTransform {
public:
    /** Throws std::invalid_argument on invalid options (TransformSpec::validate). */
    SmoothMixtureTransform(bool circular, SmoothMixtureOptions options = {});
    ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const override;
    /** Evenly spaced locations, nominal concentration, gentle sharpness 1.5 and c = 0.01: a nearly
     *  uniform density (within 0.67..1.1 on the interval, 1 +- 1e-3 on the circle). */
    torch::Tensor initialParams() const override;
    Evaluator prepare(const torch::Tensor& params) const override;
    const SmoothMixtureOptions& options() const { return spec().smooth; }
    /** The constrained shape parameters for raw params [..., numParams()]. */
    MixtureShape shape(const torch::Tensor& params) const;
    /** sigma[rho](t) and d sigma / dt for t clamped to [0,1], sharpness s (broadcasts). */
    std::pair<torch::Tensor, torch::Tensor> sigmoid(const torch::Tensor& t, const torch::Tensor& s) const;

private:
    bool exponential() const { return options().ramp == RampType::Exponential; }
    struct Prepared {
        MixtureShape shape;
        torch::Tensor g0, g1;  // bump values at the interval ends
    };
    Prepared prepareShape(const torch::Tensor& params) const;
    ElementwiseResult evaluate(const torch::Tensor& x, const Prepared& p) const;
};

/** Monotonic rational-quadratic spline on [0,1] with analytic inverse: the C^1 baseline.
 *  Raw parameters per element: K widths, K heights, then K+1 knot derivatives (K on the circle,
 *  where the last knot's derivative is tied to the first so the density is continuous across the seam). */
class FLOWFORCE_FLOW_EXPORT RationalQuadraticSplineTransform : public ElementwiseTransform {
public:
    /** Throws std::invalid_argument on invalid options (TransformSpec::validate). */
    RationalQuadraticSplineTransform(bool circular, SplineOptions options = {});
    ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const override;
    ElementwiseResult inverse(const torch::Tensor& y, const torch::Tensor& params) const override;
    bool hasAnalyticInverse() const override { return true; }
    /** Equal bins and unit knot slopes: the identity. */
    torch::Tensor initialParams() const override;
    Evaluator prepare(const torch::Tensor& params) const override;
    /** Inverse by multi-bin bisection instead of the closed form (benchmarks and tests). */
    ElementwiseResult inverseByBisection(const torch::Tensor& y, const torch::Tensor& params) const;

private:
    struct Knots {
        torch::Tensor cumwidths, cumheights, derivatives;  // [..., K+1] each
    };
    Knots knots(const torch::Tensor& params) const;
    ElementwiseResult evaluate(const torch::Tensor& x, const Knots& knots) const;
    const SplineOptions& options() const { return spec().spline; }
};

/** Creates a transform from its validated spec, or from its config() (throws std::invalid_argument on a
 *  bad config). */
FLOWFORCE_FLOW_EXPORT TransformPtr makeTransform(const TransformSpec& spec);
FLOWFORCE_FLOW_EXPORT TransformPtr makeTransform(const nlohmann::json& config);

}  // namespace flowforce
