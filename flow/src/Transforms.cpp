#include "flowforce/flow/Transforms.h"

#include "flowforce/flow/Inversion.h"

#include <algorithm>
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
// precision for every sharpness the spec allows (TransformSpec::validate); evaluating it there would only
// produce 0 * inf.
constexpr double kEdgeGuard = 1e-5;

TransformSpec validSpec(TransformSpec::Kind kind, bool circular, const SmoothMixtureOptions& smooth,
                        const SplineOptions& spline) {
    TransformSpec spec;
    spec.kind = kind;
    spec.circular = circular;
    spec.smooth = smooth;
    spec.spline = spline;
    spec.validate();
    return spec;
}
}  // namespace

SmoothMixtureTransform::SmoothMixtureTransform(bool circular, SmoothMixtureOptions options)
    : ElementwiseTransform(validSpec(TransformSpec::Kind::Smooth, circular, options, {})) {}

std::pair<torch::Tensor, torch::Tensor> SmoothMixtureTransform::sigmoid(const torch::Tensor& t,
                                                                         const torch::Tensor& s) const {
    const double guard = exponential() ? kEdgeGuard : 0.0;
    auto inside = (t > guard).logical_and(t < 1.0 - guard);
    // Evaluate the closed form only where it is finite; the flat pieces are exact 0/1 with zero
    // derivatives of every order, and torch::where routes no gradient into the unused branch.
    auto ts = torch::where(inside, t, torch::full({}, 0.5, t.options()));
    auto us = 1.0 - ts;
    torch::Tensor sig, dsig;
    if (exponential()) {
        const int beta = options().beta;
        auto inv0 = s / ts.pow(beta);  // -log rho(t)
        auto inv1 = s / us.pow(beta);  // -log rho(1 - t)
        auto z = inv1 - inv0;          // sigma = rho(t) / (rho(t) + rho(1-t)) = sigmoid(z)
        auto dz = beta * (inv1 / us + inv0 / ts);
        sig = torch::sigmoid(z);
        dsig = sig * torch::sigmoid(-z) * dz;
    } else {
        const int k = options().monomialOrder;
        auto tk = ts.pow(k), uk = us.pow(k);
        auto den = tk + uk;
        sig = tk / den;
        dsig = k * ts.pow(k - 1) * us.pow(k - 1) / (den * den);
    }
    auto outsideValue = (t >= 0.5).to(t.scalar_type());
    return {torch::where(inside, sig, outsideValue), torch::where(inside, dsig, torch::zeros({}, t.options()))};
}

MixtureShape SmoothMixtureTransform::shape(const torch::Tensor& params) const {
    const int64_t K = options().components;
    if (params.size(-1) != numParams())
        throw std::invalid_argument("smooth mixture: expected " + std::to_string(numParams()) +
                                    " parameters per element, got " + std::to_string(params.size(-1)));
    MixtureShape m;
    int64_t at = 0;
    auto next = [&] {
        auto r = params.narrow(-1, at, K);
        at += K;
        return r;
    };
    m.w = torch::softmax(next(), -1);
    m.s = exponential() ? options().sharpnessMin + options().sharpnessSpan * torch::sigmoid(next())
                        : torch::ones({}, params.options());
    auto u = torch::softmax(next(), -1);  // partition of [0,1] into K intervals; b = their centres
    m.b = torch::cumsum(u, -1) - 0.5 * u;
    auto logScale = next();
    m.a = circular() ? torch::full({}, options().scale, params.options())
                    : options().scale * torch::exp(options().logScaleBound * torch::tanh(logScale));
    m.c = options().minIdentity + (1.0 - options().minIdentity) * torch::sigmoid(next());
    return m;
}

SmoothMixtureTransform::Prepared SmoothMixtureTransform::prepareShape(const torch::Tensor& params) const {
    Prepared p{shape(params), {}, {}};
    const auto& m = p.shape;
    p.g0 = sigmoid(0.5 - m.a * m.b, m.s).first;         // g(0)
    p.g1 = sigmoid(m.a * (1.0 - m.b) + 0.5, m.s).first;  // g(1)
    return p;
}

ElementwiseResult SmoothMixtureTransform::evaluate(const torch::Tensor& x, const Prepared& p) const {
    const auto& m = p.shape;
    auto xe = x.unsqueeze(-1);  // broadcasts against the K components
    auto tx = m.a * (xe - m.b) + 0.5;
    torch::Tensor value, density;  // per component: f_k(x) and f_k'(x)
    if (!circular()) {
        auto [gx, dgx] = sigmoid(tx, m.s);
        auto norm = p.g1 - p.g0;  // the bump's mass inside [0,1]: > 0, since its support contains b
        value = (1.0 - m.c) * (gx - p.g0) / norm + m.c * xe;
        density = (1.0 - m.c) * m.a * dgx / norm + m.c;
    } else {
        // Wrapped bump (SI-1.2): a >= 1 keeps the support within one period, so
        // f = (1-c) * sum_{j=-1,0,1} [g(x+j) - g(j)] + c x  with g(-1) = 0, g(2) = 1.
        auto [gm, dgm] = sigmoid(tx - m.a, m.s);
        auto [g, dg] = sigmoid(tx, m.s);
        auto [gp, dgp] = sigmoid(tx + m.a, m.s);
        value = (1.0 - m.c) * (gm + g + gp - p.g0 - p.g1) + m.c * xe;
        density = (1.0 - m.c) * m.a * (dgm + dg + dgp) + m.c;
    }
    return {(m.w * value).sum(-1), torch::log((m.w * density).sum(-1))};
}

ElementwiseResult SmoothMixtureTransform::forward(const torch::Tensor& x, const torch::Tensor& params) const {
    return evaluate(x, prepareShape(params));
}

ElementwiseTransform::Evaluator SmoothMixtureTransform::prepare(const torch::Tensor& params) const {
    auto p = prepareShape(params);
    auto lift = [](const torch::Tensor& t) { return t.dim() > 0 ? t.unsqueeze(-2) : t; };
    Prepared grid{{lift(p.shape.w), lift(p.shape.s), lift(p.shape.a), lift(p.shape.b), lift(p.shape.c)},
                  lift(p.g0), lift(p.g1)};
    const int64_t elementDims = params.dim() - 1;
    return [this, p, grid, elementDims](const torch::Tensor& x) {
        return evaluate(x, x.dim() == elementDims ? p : grid).out;
    };
}

torch::Tensor SmoothMixtureTransform::initialParams() const {
    const int64_t K = options().components;
    auto p = torch::zeros({numParams()}, torch::kFloat64);
    auto logit = [](double q) { return std::log(q / (1.0 - q)); };
    int64_t at = K;  // weights: equal (raw 0)
    if (exponential()) {
        // gentle ramps: sharpness 1.5 (or the lowest allowed, if higher)
        const double q = options().sharpnessSpan > 0
                             ? std::clamp((1.5 - options().sharpnessMin) / options().sharpnessSpan, 0.01, 0.99)
                             : 0.5;
        p.narrow(0, at, K).fill_(logit(q));
        at += K;
    }
    at += 2 * K;  // locations evenly spaced (raw 0), nominal concentration (raw 0)
    // c ~ 0.01: every element transform mixes a fraction c of the identity into its bumps, so in a flow
    // of many layers and dimensions a large c sends most samples through some uniform floor (clashing
    // molecules); likelihood training lowers c only slowly, so it starts small.
    const double c0 = std::max((0.01 - options().minIdentity) / (1.0 - options().minIdentity), 1e-3);
    p.narrow(0, at, K).fill_(logit(c0));
    return p;
}

// ----------------------------------------------------------------------------------------------
// Rational-quadratic spline
// ----------------------------------------------------------------------------------------------

RationalQuadraticSplineTransform::RationalQuadraticSplineTransform(bool circular, SplineOptions options)
    : ElementwiseTransform(validSpec(TransformSpec::Kind::Spline, circular, {}, options)) {}

RationalQuadraticSplineTransform::Knots RationalQuadraticSplineTransform::knots(const torch::Tensor& params) const {
    const int64_t K = options().bins;
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
    k.cumwidths = cumulative(params.narrow(-1, 0, K), options().minBinWidth);
    k.cumheights = cumulative(params.narrow(-1, K, K), options().minBinHeight);
    auto d = options().minDerivative + F::softplus(params.narrow(-1, 2 * K, params.size(-1) - 2 * K));
    if (circular()) d = torch::cat({d, d.narrow(-1, 0, 1)}, -1);  // tie the seam's slopes
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
    const int64_t K = options().bins;
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
    const int64_t K = options().bins;
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
    p.narrow(0, 2 * options().bins, numParams() - 2 * options().bins).fill_(std::log(std::expm1(1.0 - options().minDerivative)));
    return p;
}

// ----------------------------------------------------------------------------------------------

TransformPtr makeTransform(const TransformSpec& spec) {
    if (spec.kind == TransformSpec::Kind::Smooth) return std::make_shared<SmoothMixtureTransform>(spec.circular, spec.smooth);
    return std::make_shared<RationalQuadraticSplineTransform>(spec.circular, spec.spline);
}

TransformPtr makeTransform(const nlohmann::json& config) { return makeTransform(TransformSpec::fromJson(config)); }

}  // namespace flowforce
