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

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace flowforce {

/** Output of an element-wise transform: the mapped values and log|dy/dx| per element. */
struct ElementwiseResult {
    torch::Tensor out;
    torch::Tensor logdet;
};

/** Settings of the multi-bin bisection used by transforms without an analytic inverse. */
struct InversionOptions {
    int64_t bins = 16;         ///< bins per bisection step (2 = plain bisection)
    double tolerance = 1e-12;  ///< bracket width at which the search stops, in units of x
};

/** An element-wise bijection of [0,1] (or of the circle) with conditioner-provided parameters. */
class ElementwiseTransform {
public:
    virtual ~ElementwiseTransform() = default;
    /** Number of raw parameters per element, the size of the last dimension of params. */
    virtual int64_t numParams() const = 0;
    /** True if the transform is a bijection of the circle (periodic density and derivatives). */
    virtual bool circular() const = 0;
    /** y = f(x) and log f'(x), element-wise; differentiable in x and params to any order. */
    virtual ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const = 0;
    /** x = f^-1(y) and log (f^-1)'(y). The default inverts forward() by multi-bin bisection with
     *  inverse-function-theorem gradients (see Inversion.h). */
    virtual ElementwiseResult inverse(const torch::Tensor& y, const torch::Tensor& params) const;
    /** True if inverse() is closed-form rather than a root finder. */
    virtual bool hasAnalyticInverse() const { return false; }
    /** The configuration that recreates this transform with makeTransform(). */
    virtual nlohmann::json config() const = 0;
    /** y = f(x) for fixed params, with the parameter maps evaluated once (root finding calls it many
     *  times): x has params' element shape (params.sizes() without the last), optionally with one extra
     *  trailing dimension of points per element. */
    using Evaluator = std::function<torch::Tensor(const torch::Tensor& x)>;
    virtual Evaluator prepare(const torch::Tensor& params) const;
    /** Raw parameters [numParams()] a conditioner should output at initialisation (its output bias):
     *  a transform close to the identity with components spread over the interval. */
    virtual torch::Tensor initialParams() const { return torch::zeros({numParams()}, torch::kFloat64); }

    InversionOptions inversion;
};

using TransformPtr = std::shared_ptr<const ElementwiseTransform>;

/** Ramp functions for the smooth sigmoid sigma[rho](x) = rho(x) / (rho(x) + rho(1 - x)). */
enum class RampType {
    Exponential,  ///< rho(x) = exp(-1 / (alpha * x^beta)), C-infinity; alpha trainable per component
    Monomial      ///< rho(x) = x^k, C^(k-1) at the support edges (a baseline)
};

/** Options of the smooth bump-mixture transform (paper section 4 and SI-1). */
struct SmoothMixtureOptions {
    int64_t components = 8;   ///< K mixture components
    RampType ramp = RampType::Exponential;
    int beta = 1;             ///< exponent beta of the exponential ramp, 1 or 2
    int monomialOrder = 3;    ///< k of the monomial ramp
    double minDensity = 1e-3; ///< lower bound of each component's uniform weight c
    double minAlpha = 0.05;   ///< alpha in [minAlpha, maxAlpha] (maxAlpha keeps exp(-1/(alpha t)) == 0
    double maxAlpha = 20.0;   ///<   in double precision for t below the support-edge guard 1e-5)
};

/** Mixture of K smooth unimodal transforms, each (1-c)(g(x)-g(0))/(g(1)-g(0)) + c x with the bump
 *  g(x) = sigma[rho](a (x - b) + 1/2); on the circle the closed-form wrapped version of SI-1.2.
 *  Raw parameters per element, in this order, K each: mixture logits, concentration a (= exp(softplus),
 *  >= 1, at most e^7), location b (sigmoid), minimum density c (sigmoid into [minDensity, 1]), and for the
 *  exponential ramp alpha (softplus, 1 at raw 0, clamped to [minAlpha, maxAlpha]). */
class SmoothMixtureTransform : public ElementwiseTransform {
public:
    SmoothMixtureTransform(bool circular, SmoothMixtureOptions options = {});
    int64_t numParams() const override {
        return (options_.ramp == RampType::Exponential ? 5 : 4) * options_.components;
    }
    bool circular() const override { return circular_; }
    ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const override;
    nlohmann::json config() const override;
    /** Locations on a regular grid (k + 1/2)/K with widths ~2/K, equal weights: nearly uniform. */
    torch::Tensor initialParams() const override;
    Evaluator prepare(const torch::Tensor& params) const override;
    const SmoothMixtureOptions& options() const { return options_; }

private:
    /** Constrained shape parameters [..., K] (weights, concentration, location, minimum density,
     *  ramp alpha) and the bump values at the interval ends. */
    struct Shape {
        torch::Tensor w, a, b, c, alpha, g0, g1;
    };
    Shape shape(const torch::Tensor& params) const;
    ElementwiseResult evaluate(const torch::Tensor& x, const Shape& s) const;
    /** sigma[rho](t) and its derivative d sigma / dt for t clamped to [0,1]; alpha broadcasts. */
    std::pair<torch::Tensor, torch::Tensor> sigmoid(const torch::Tensor& t, const torch::Tensor& alpha) const;
    bool circular_;
    SmoothMixtureOptions options_;
};

/** Options of the rational-quadratic spline (Durkan et al. 2019) on [0,1]. */
struct SplineOptions {
    int64_t bins = 8;
    double minBinWidth = 1e-3;
    double minBinHeight = 1e-3;
    double minDerivative = 1e-3;
};

/** Monotonic rational-quadratic spline on [0,1] with analytic inverse: the C^1 baseline.
 *  Raw parameters per element: K widths, K heights, then K+1 knot derivatives (K on the circle,
 *  where the last knot's derivative is tied to the first so the density is continuous across the seam). */
class RationalQuadraticSplineTransform : public ElementwiseTransform {
public:
    RationalQuadraticSplineTransform(bool circular, SplineOptions options = {});
    int64_t numParams() const override { return 3 * options_.bins + (circular_ ? 0 : 1); }
    bool circular() const override { return circular_; }
    ElementwiseResult forward(const torch::Tensor& x, const torch::Tensor& params) const override;
    ElementwiseResult inverse(const torch::Tensor& y, const torch::Tensor& params) const override;
    bool hasAnalyticInverse() const override { return true; }
    nlohmann::json config() const override;
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
    bool circular_;
    SplineOptions options_;
};

/** Creates a transform from its config() (throws std::invalid_argument on a bad config). */
TransformPtr makeTransform(const nlohmann::json& config);

}  // namespace flowforce
