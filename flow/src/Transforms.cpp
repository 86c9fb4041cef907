#include "flowforce/flow/Transforms.h"

#include "flowforce/flow/Inversion.h"

#include <cmath>
#include <stdexcept>

namespace flowforce {

namespace F = torch::nn::functional;

ElementwiseResult ElementwiseTransform::inverse(const torch::Tensor& y, const torch::Tensor& params) const {
    return invertWithImplicitGradients(*this, y, params);
}

ElementwiseTransform::Evaluator ElementwiseTransform::prepare(const torch::Tensor& params) const {
    auto grid = params.unsqueeze(-2);
    const int64_t elementDims = params.dim() - 1;
    return [this, params, grid, elementDims](const torch::Tensor& x) {
        return forward(x, x.dim() == elementDims ? params : grid).out;
    };
}

// ----------------------------------------------------------------------------------------------
// Smooth bump mixtures
// ----------------------------------------------------------------------------------------------

namespace {
// Below this distance from the ends of [0,1] the exponential ramp's sigmoid is 0 (or 1) to double
// precision for every alpha <= maxAlpha; evaluating it there would only produce 0 * inf.
constexpr double kEdgeGuard = 1e-5;
// Bumps narrower than 1/e^7 ~ 1e-3 of the interval are not useful and risk overflow.
constexpr double kMaxLogConcentration = 7.0;

const char* rampName(RampType r) { return r == RampType::Exponential ? "exponential" : "monomial"; }
}  // namespace

SmoothMixtureTransform::SmoothMixtureTransform(bool circular, SmoothMixtureOptions options)
    : circular_(circular), options_(options) {
    if (options_.components < 1) throw std::invalid_argument("smooth mixture: components must be >= 1");
    if (options_.beta != 1 && options_.beta != 2) throw std::invalid_argument("smooth mixture: beta must be 1 or 2");
    if (options_.monomialOrder < 1) throw std::invalid_argument("smooth mixture: monomial order must be >= 1");
    if (!(options_.minDensity > 0.0 && options_.minDensity < 1.0))
        throw std::invalid_argument("smooth mixture: minDensity must lie in (0, 1)");
    if (!(options_.minAlpha > 0.0 && options_.maxAlpha > options_.minAlpha && options_.maxAlpha * kEdgeGuard < 1.0 / 745.0))
        throw std::invalid_argument("smooth mixture: need 0 < minAlpha < maxAlpha < 134");
}

std::pair<torch::Tensor, torch::Tensor> SmoothMixtureTransform::sigmoid(const torch::Tensor& t,
                                                                         const torch::Tensor& alpha) const {
    const bool exponential = options_.ramp == RampType::Exponential;
    const double guard = exponential ? kEdgeGuard : 0.0;
    auto inside = (t > guard).logical_and(t < 1.0 - guard);
    // Evaluate the closed form only where it is finite; the flat pieces are exact 0/1 with zero
    // derivatives of every order, and torch::where routes no gradient into the unused branch.
    auto ts = torch::where(inside, t, torch::full({}, 0.5, t.options()));
    auto us = 1.0 - ts;
    torch::Tensor sig, dsig;
    if (exponential) {
        const int beta = options_.beta;
        auto inv0 = 1.0 / (alpha * ts.pow(beta));  // -log rho(t)
        auto inv1 = 1.0 / (alpha * us.pow(beta));  // -log rho(1 - t)
        auto s = inv1 - inv0;                      // sigma = rho(t) / (rho(t) + rho(1-t)) = sigmoid(s)
        auto ds = beta * (inv1 / us + inv0 / ts);
        sig = torch::sigmoid(s);
        dsig = sig * torch::sigmoid(-s) * ds;
    } else {
        const int k = options_.monomialOrder;
        auto tk = ts.pow(k), uk = us.pow(k);
        auto den = tk + uk;
        sig = tk / den;
        dsig = k * ts.pow(k - 1) * us.pow(k - 1) / (den * den);
    }
    auto outsideValue = (t >= 0.5).to(t.scalar_type());
    return {torch::where(inside, sig, outsideValue), torch::where(inside, dsig, torch::zeros({}, t.options()))};
}

SmoothMixtureTransform::Shape SmoothMixtureTransform::shape(const torch::Tensor& params) const {
    const int64_t K = options_.components;
    if (params.size(-1) != numParams())
        throw std::invalid_argument("smooth mixture: expected " + std::to_string(numParams()) +
                                    " parameters per element, got " + std::to_string(params.size(-1)));
    Shape s;
    s.w = torch::softmax(params.narrow(-1, 0, K), -1);
    // concentration a = exp(softplus(raw)) >= 1: log-scale, so sharp bumps (a ~ 10-100) are easy to reach
    s.a = torch::exp(F::softplus(params.narrow(-1, K, K)).clamp_max(kMaxLogConcentration));
    s.b = torch::sigmoid(params.narrow(-1, 2 * K, K));
    s.c = options_.minDensity + (1.0 - options_.minDensity) * torch::sigmoid(params.narrow(-1, 3 * K, K));
    if (options_.ramp == RampType::Exponential) {
        // softplus shifted so that a raw value of 0 gives alpha = 1
        const double shift = std::log(std::expm1(1.0 - options_.minAlpha));
        s.alpha = (options_.minAlpha + F::softplus(params.narrow(-1, 4 * K, K) + shift)).clamp_max(options_.maxAlpha);
    } else {
        s.alpha = torch::ones({}, params.options());
    }
    s.g0 = sigmoid(0.5 - s.a * s.b, s.alpha).first;         // g(0)
    s.g1 = sigmoid(s.a * (1.0 - s.b) + 0.5, s.alpha).first;  // g(1)
    return s;
}

ElementwiseResult SmoothMixtureTransform::evaluate(const torch::Tensor& x, const Shape& s) const {
    auto xe = x.unsqueeze(-1);  // broadcasts against the K components
    auto tx = s.a * (xe - s.b) + 0.5;
    torch::Tensor value, density;  // per component: f_k(x) and f_k'(x)
    if (!circular_) {
        auto [gx, dgx] = sigmoid(tx, s.alpha);
        auto norm = s.g1 - s.g0;  // >= 1/2 since a >= 1 and b in [0,1]
        value = (1.0 - s.c) * (gx - s.g0) / norm + s.c * xe;
        density = (1.0 - s.c) * s.a * dgx / norm + s.c;
    } else {
        // Wrapped bump (SI-1.2): a >= 1 keeps the support within one period, so
        // f = (1-c) * sum_{j=-1,0,1} [g(x+j) - g(j)] + c x  with g(-1) = 0, g(2) = 1.
        auto [gm, dgm] = sigmoid(tx - s.a, s.alpha);
        auto [g, dg] = sigmoid(tx, s.alpha);
        auto [gp, dgp] = sigmoid(tx + s.a, s.alpha);
        value = (1.0 - s.c) * (gm + g + gp - s.g0 - s.g1) + s.c * xe;
        density = (1.0 - s.c) * s.a * (dgm + dg + dgp) + s.c;
    }
    return {(s.w * value).sum(-1), torch::log((s.w * density).sum(-1))};
}

ElementwiseResult SmoothMixtureTransform::forward(const torch::Tensor& x, const torch::Tensor& params) const {
    return evaluate(x, shape(params));
}

ElementwiseTransform::Evaluator SmoothMixtureTransform::prepare(const torch::Tensor& params) const {
    auto s = shape(params);
    Shape grid{s.w.unsqueeze(-2), s.a.unsqueeze(-2), s.b.unsqueeze(-2), s.c.unsqueeze(-2),
               s.alpha.dim() > 0 ? s.alpha.unsqueeze(-2) : s.alpha, s.g0.unsqueeze(-2), s.g1.unsqueeze(-2)};
    const int64_t elementDims = params.dim() - 1;
    return [this, s, grid, elementDims](const torch::Tensor& x) {
        return evaluate(x, x.dim() == elementDims ? s : grid).out;
    };
}

torch::Tensor SmoothMixtureTransform::initialParams() const {
    const int64_t K = options_.components;
    auto p = torch::zeros({numParams()}, torch::kFloat64);
    // a = exp(softplus(raw)) = max(K/2, 2): neighbouring bumps overlap
    const double logA = std::log(std::max(0.5 * static_cast<double>(K), 2.0));
    p.narrow(0, K, K).fill_(std::log(std::expm1(logA)));
    auto grid = (torch::arange(K, torch::kFloat64) + 0.5) / static_cast<double>(K);
    p.narrow(0, 2 * K, K).copy_(torch::log(grid / (1.0 - grid)));
    // c ~ 0.01: every element transform mixes a fraction c of the identity into its bumps, so in a flow
    // of many layers and dimensions a large c sends most samples through some uniform floor (clashing
    // molecules); likelihood training lowers c only slowly, so it starts small.
    const double s0 = std::max((0.01 - options_.minDensity) / (1.0 - options_.minDensity), 0.01);
    p.narrow(0, 3 * K, K).fill_(std::log(s0 / (1.0 - s0)));
    return p;
}

nlohmann::json SmoothMixtureTransform::config() const {
    nlohmann::json j{{"type", "smooth"},
                     {"circular", circular_},
                     {"components", options_.components},
                     {"ramp", rampName(options_.ramp)},
                     {"min_density", options_.minDensity}};
    if (options_.ramp == RampType::Exponential) {
        j["beta"] = options_.beta;
        j["min_alpha"] = options_.minAlpha;
        j["max_alpha"] = options_.maxAlpha;
    } else {
        j["order"] = options_.monomialOrder;
    }
    return j;
}

// ----------------------------------------------------------------------------------------------
// Rational-quadratic spline
// ----------------------------------------------------------------------------------------------

RationalQuadraticSplineTransform::RationalQuadraticSplineTransform(bool circular, SplineOptions options)
    : circular_(circular), options_(options) {
    if (options_.bins < 1) throw std::invalid_argument("spline: bins must be >= 1");
    if (options_.minBinWidth * options_.bins >= 1.0 || options_.minBinHeight * options_.bins >= 1.0)
        throw std::invalid_argument("spline: minimal bin width/height times bins must be below 1");
    if (!(options_.minDerivative > 0.0)) throw std::invalid_argument("spline: minDerivative must be positive");
}

RationalQuadraticSplineTransform::Knots RationalQuadraticSplineTransform::knots(const torch::Tensor& params) const {
    const int64_t K = options_.bins;
    if (params.size(-1) != numParams())
        throw std::invalid_argument("spline: expected " + std::to_string(numParams()) +
                                    " parameters per element, got " + std::to_string(params.size(-1)));
    auto cumulative = [K](const torch::Tensor& raw, double minSize) {
        auto sizes = minSize + (1.0 - minSize * K) * torch::softmax(raw, -1);
        auto cum = F::pad(torch::cumsum(sizes, -1), F::PadFuncOptions({1, 0}));
        // pin the ends exactly to 0 and 1
        auto inner = cum.narrow(-1, 1, K - 1);
        auto zero = torch::zeros_like(cum.narrow(-1, 0, 1));
        return torch::cat({zero, inner, zero + 1.0}, -1);
    };
    Knots k;
    k.cumwidths = cumulative(params.narrow(-1, 0, K), options_.minBinWidth);
    k.cumheights = cumulative(params.narrow(-1, K, K), options_.minBinHeight);
    auto d = options_.minDerivative + F::softplus(params.narrow(-1, 2 * K, params.size(-1) - 2 * K));
    if (circular_) d = torch::cat({d, d.narrow(-1, 0, 1)}, -1);  // tie the seam's slopes
    k.derivatives = d;
    return k;
}

namespace {
// Gathers knot quantities of the bin `idx` (shape [..., 1]) after broadcasting to x's shape.
torch::Tensor pick(const torch::Tensor& knotValues, const torch::Tensor& idx) {
    auto shape = idx.sizes().vec();
    shape.back() = knotValues.size(-1);
    return knotValues.expand(shape).gather(-1, idx).squeeze(-1);
}
std::vector<int64_t> broadcastShape(const torch::Tensor& x, const torch::Tensor& knotValues) {
    auto lead = knotValues.sizes().vec();
    lead.pop_back();
    return at::infer_size(x.sizes(), lead);
}
}  // namespace

ElementwiseResult RationalQuadraticSplineTransform::forward(const torch::Tensor& x, const torch::Tensor& params) const {
    return evaluate(x, knots(params));
}

ElementwiseTransform::Evaluator RationalQuadraticSplineTransform::prepare(const torch::Tensor& params) const {
    auto k = knots(params);
    Knots grid{k.cumwidths.unsqueeze(-2), k.cumheights.unsqueeze(-2), k.derivatives.unsqueeze(-2)};
    const int64_t elementDims = params.dim() - 1;
    return [this, k, grid, elementDims](const torch::Tensor& x) { return evaluate(x, x.dim() == elementDims ? k : grid).out; };
}

ElementwiseResult RationalQuadraticSplineTransform::evaluate(const torch::Tensor& xIn, const Knots& k) const {
    const int64_t K = options_.bins;
    auto x = xIn.expand(broadcastShape(xIn, k.cumwidths));
    auto idx = (x.unsqueeze(-1) >= k.cumwidths.narrow(-1, 1, K - 1)).sum(-1, /*keepdim=*/true);
    auto x0 = pick(k.cumwidths, idx), w = pick(k.cumwidths, idx + 1) - x0;
    auto y0 = pick(k.cumheights, idx), h = pick(k.cumheights, idx + 1) - y0;
    auto d0 = pick(k.derivatives, idx), d1 = pick(k.derivatives, idx + 1);
    auto delta = h / w;
    auto theta = (x - x0) / w;
    auto tt = theta * (1.0 - theta);
    auto den = delta + (d0 + d1 - 2.0 * delta) * tt;
    auto y = y0 + h * (delta * theta * theta + d0 * tt) / den;
    auto dnum = delta * delta * (d1 * theta * theta + 2.0 * delta * tt + d0 * (1.0 - theta) * (1.0 - theta));
    return {y, torch::log(dnum) - 2.0 * torch::log(den)};
}

ElementwiseResult RationalQuadraticSplineTransform::inverse(const torch::Tensor& yIn, const torch::Tensor& params) const {
    auto k = knots(params);
    const int64_t K = options_.bins;
    auto y = yIn.expand(broadcastShape(yIn, k.cumheights));
    auto idx = (y.unsqueeze(-1) >= k.cumheights.narrow(-1, 1, K - 1)).sum(-1, true);
    auto x0 = pick(k.cumwidths, idx), w = pick(k.cumwidths, idx + 1) - x0;
    auto y0 = pick(k.cumheights, idx), h = pick(k.cumheights, idx + 1) - y0;
    auto d0 = pick(k.derivatives, idx), d1 = pick(k.derivatives, idx + 1);
    auto delta = h / w;
    auto dy = y - y0;
    auto s = d0 + d1 - 2.0 * delta;
    auto qa = h * (delta - d0) + dy * s;
    auto qb = h * d0 - dy * s;
    auto qc = -delta * dy;
    auto disc = (qb * qb - 4.0 * qa * qc).clamp_min(0.0);
    auto theta = (2.0 * qc) / (-qb - torch::sqrt(disc));
    auto x = x0 + theta * w;
    auto tt = theta * (1.0 - theta);
    auto den = delta + s * tt;
    auto dnum = delta * delta * (d1 * theta * theta + 2.0 * delta * tt + d0 * (1.0 - theta) * (1.0 - theta));
    return {x, 2.0 * torch::log(den) - torch::log(dnum)};
}

ElementwiseResult RationalQuadraticSplineTransform::inverseByBisection(const torch::Tensor& y,
                                                                       const torch::Tensor& params) const {
    return invertWithImplicitGradients(*this, y, params);
}

torch::Tensor RationalQuadraticSplineTransform::initialParams() const {
    auto p = torch::zeros({numParams()}, torch::kFloat64);
    // minDerivative + softplus(raw) = 1
    p.narrow(0, 2 * options_.bins, numParams() - 2 * options_.bins).fill_(std::log(std::expm1(1.0 - options_.minDerivative)));
    return p;
}

nlohmann::json RationalQuadraticSplineTransform::config() const {
    return {{"type", "spline"},
            {"circular", circular_},
            {"bins", options_.bins},
            {"min_bin_width", options_.minBinWidth},
            {"min_bin_height", options_.minBinHeight},
            {"min_derivative", options_.minDerivative}};
}

// ----------------------------------------------------------------------------------------------

TransformPtr makeTransform(const nlohmann::json& config) {
    const std::string type = config.at("type").get<std::string>();
    const bool circular = config.value("circular", false);
    if (type == "smooth") {
        SmoothMixtureOptions o;
        o.components = config.value("components", o.components);
        const std::string ramp = config.value("ramp", std::string("exponential"));
        if (ramp == "exponential") o.ramp = RampType::Exponential;
        else if (ramp == "monomial") o.ramp = RampType::Monomial;
        else throw std::invalid_argument("unknown ramp '" + ramp + "' (exponential or monomial)");
        o.beta = config.value("beta", o.beta);
        o.monomialOrder = config.value("order", o.monomialOrder);
        o.minDensity = config.value("min_density", o.minDensity);
        o.minAlpha = config.value("min_alpha", o.minAlpha);
        o.maxAlpha = config.value("max_alpha", o.maxAlpha);
        return std::make_shared<SmoothMixtureTransform>(circular, o);
    }
    if (type == "spline") {
        SplineOptions o;
        o.bins = config.value("bins", o.bins);
        o.minBinWidth = config.value("min_bin_width", o.minBinWidth);
        o.minBinHeight = config.value("min_bin_height", o.minBinHeight);
        o.minDerivative = config.value("min_derivative", o.minDerivative);
        return std::make_shared<RationalQuadraticSplineTransform>(circular, o);
    }
    throw std::invalid_argument("unknown transform type '" + type + "' (smooth or spline)");
}

}  // namespace flowforce
