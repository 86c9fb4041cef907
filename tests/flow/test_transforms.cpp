// Element-wise transforms on both topologies: bijectivity, log-det, normalisation, smoothness.
#include "TestUtil.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>

using namespace flowforce;
using namespace flowforce::test;

class TransformTest : public ::testing::TestWithParam<TransformCase> {
protected:
    void SetUp() override {
        transform = makeTransform(GetParam().config);
        const_cast<ElementwiseTransform&>(*transform).inversion = {16, 1e-13};
    }
    TransformPtr transform;
};

TEST_P(TransformTest, RoundTripIsIdentity) {
    const int64_t n = 4000;
    auto x = uniform(n, 1);
    auto params = randomParams(*transform, n, 2);
    auto fwd = transform->forward(x, params);
    ASSERT_TRUE(torch::isfinite(fwd.out).all().item<bool>());
    EXPECT_GE(fwd.out.min().item<double>(), -1e-14);
    EXPECT_LE(fwd.out.max().item<double>(), 1.0 + 1e-14);
    auto inv = transform->inverse(fwd.out, params);
    EXPECT_LT(maxAbs(inv.out - x), 1e-10) << GetParam().name;
    EXPECT_LT(maxAbs(inv.logdet + fwd.logdet), 1e-8);
    // and the other way round: f(f^-1(y)) = y
    auto y = uniform(n, 3);
    auto back = transform->forward(transform->inverse(y, params).out, params).out;
    EXPECT_LT(maxAbs(back - y), 1e-10);
}

TEST_P(TransformTest, EndpointsAreFixed) {
    auto params = randomParams(*transform, 50, 4);
    auto zeros = torch::zeros({50}, f64()), ones = torch::ones({50}, f64());
    EXPECT_LT(maxAbs(transform->forward(zeros, params).out), 1e-14);
    EXPECT_LT(maxAbs(transform->forward(ones, params).out - 1.0), 1e-14);
}

TEST_P(TransformTest, LogDetMatchesAutogradJacobian) {
    const int64_t n = 1000;
    auto x = uniform(n, 5).requires_grad_(true);
    auto params = randomParams(*transform, n, 6);
    auto fwd = transform->forward(x, params);
    // element-wise: the Jacobian is diagonal, so the gradient of the sum is its diagonal
    auto dydx = torch::autograd::grad({fwd.out.sum()}, {x})[0];
    EXPECT_LT(maxAbs(torch::log(dydx) - fwd.logdet), 1e-10);

    auto y = uniform(n, 7).requires_grad_(true);
    auto inv = transform->inverse(y, params);
    auto dxdy = torch::autograd::grad({inv.out.sum()}, {y})[0];
    EXPECT_LT(maxAbs(torch::log(dxdy) - inv.logdet), 1e-8);
}

TEST_P(TransformTest, DensityIntegratesToOneByQuadrature) {
    // Composite Gauss-Legendre; for the spline, whose density is only C^0 at its knots, on each bin
    // separately (knots from the parameter map of Transforms.cpp) so the quadrature stays spectral.
    auto [unitNodes, unitWeights] = gaussLegendre(2000);
    for (uint64_t seed : {11, 12, 13}) {
        auto raw = randomParams(*transform, 1, seed, 2.0);
        std::vector<double> breaks{0.0, 1.0};
        if (!GetParam().smooth()) {
            const int64_t K = GetParam().config.at("bins").get<int64_t>();
            auto widths = 1e-3 + (1.0 - 1e-3 * K) * torch::softmax(raw.narrow(-1, 0, K), -1);
            auto cum = torch::cumsum(widths, -1).squeeze(0);
            breaks = {0.0};
            for (int64_t k = 0; k + 1 < K; ++k) breaks.push_back(cum[k].item<double>());
            breaks.push_back(1.0);
        }
        double integral = 0.0;
        for (size_t i = 0; i + 1 < breaks.size(); ++i) {
            const double a = breaks[i], b = breaks[i + 1];
            auto nodes = a + (b - a) * unitNodes;
            auto params = raw.expand({nodes.size(0), transform->numParams()});
            integral += (b - a) * (torch::exp(transform->forward(nodes, params).logdet) * unitWeights).sum().item<double>();
        }
        EXPECT_NEAR(integral, 1.0, 1e-8) << GetParam().name << " seed " << seed;
    }
}

TEST_P(TransformTest, WideParametersStillGiveAStrictlyIncreasingMapOfTheInterval) {
    // raw parameters three times wider than elsewhere: the bounded shape maps keep the transform a bijection
    // of [0, 1] onto itself with a positive, finite density everywhere, and the density agrees with the
    // slope of the map between grid points (trapezoid rule on the log-determinant's exponential)
    auto x = torch::linspace(0.0, 1.0, 10001, f64());
    auto params = randomParams(*transform, 1, 21, 3.0).expand({x.size(0), transform->numParams()});
    auto r = transform->forward(x, params);
    ASSERT_TRUE(torch::isfinite(r.logdet).all().item<bool>());
    EXPECT_NEAR(r.out[0].item<double>(), 0.0, 1e-12);
    EXPECT_NEAR(r.out[-1].item<double>(), 1.0, 1e-12);
    auto steps = r.out.narrow(0, 1, 10000) - r.out.narrow(0, 0, 10000);
    EXPECT_GT(steps.min().item<double>(), 0.0);
    auto density = torch::exp(r.logdet);
    auto trapezoid = 0.5 * (density.narrow(0, 1, 10000) + density.narrow(0, 0, 10000)) * 1e-4;
    EXPECT_NEAR(trapezoid.sum().item<double>(), 1.0, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(AllTransforms, TransformTest, ::testing::ValuesIn(allTransformCases()),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// Smoothness: derivatives of the density p = f' up to order 4, left and right of the points where
// a component's bump starts or ends and of the periodic seam.

namespace {

/** p, p', ..., p^(order) at x (element-wise), by repeated autograd. */
std::vector<torch::Tensor> densityDerivatives(const ElementwiseTransform& t, const torch::Tensor& x0,
                                              const torch::Tensor& params, int order) {
    auto x = x0.clone().requires_grad_(true);
    std::vector<torch::Tensor> d{torch::exp(t.forward(x, params).logdet)};
    for (int k = 1; k <= order; ++k)
        d.push_back(torch::autograd::grad({d.back().sum()}, {x}, {}, true, true)[0]);
    for (auto& v : d) v = v.detach();
    return d;
}

/** Largest |p^(k)| on a fine grid: the scale against which jumps are judged. */
std::vector<double> derivativeScales(const ElementwiseTransform& t, const torch::Tensor& params1, int order) {
    auto grid = torch::linspace(1e-4, 1.0 - 1e-4, 2001, f64());
    auto d = densityDerivatives(t, grid, params1.expand({grid.size(0), params1.size(-1)}), order);
    std::vector<double> s;
    for (auto& v : d) s.push_back(maxAbs(v));
    return s;
}

/** Support edges b +- 1/(2a) of every component, wrapped into [0,1) on the circle, that lie inside (0,1). */
std::vector<double> supportEdges(const SmoothMixtureTransform& t, const torch::Tensor& raw) {
    auto m = t.shape(raw.unsqueeze(0));
    const int64_t K = t.options().components;
    auto a = m.a.expand({1, K}), b = m.b;
    std::vector<double> edges;
    for (int64_t k = 0; k < K; ++k)
        for (double sgn : {-1.0, 1.0}) {
            double e = b[0][k].item<double>() + sgn * 0.5 / a[0][k].item<double>();
            if (t.circular()) e -= std::floor(e);
            if (e > 0.01 && e < 0.99) edges.push_back(e);
        }
    return edges;
}

}  // namespace

TEST(Smoothness, SmoothMixtureDerivativesContinuousAcrossSupportEdges) {
    for (bool circ : {false, true}) {
        for (int beta : {1, 2}) {
            SmoothMixtureOptions o;
            o.components = 5;
            o.beta = beta;
            SmoothMixtureTransform t(circ, o);
            // concentrations large enough that every bump ends inside the interval (raw log-scales of the
            // "shape" head, after weights, sharpness and locations)
            auto raw = randomParams(t, 1, 31 + beta).squeeze(0);
            raw.narrow(0, 3 * o.components, o.components).fill_(1.0);
            auto edges = supportEdges(t, raw);
            ASSERT_GE(edges.size(), 4u);
            auto scales = derivativeScales(t, raw.unsqueeze(0), 4);
            const double h = 1e-7;
            for (double e : edges) {
                // p^(k) extrapolated to the edge from the left and from the right with the next derivative
                // (another bump may be steep at this point: a one-sided difference alone is not a jump)
                auto xs = torch::tensor({e - h, e + h}, f64());
                auto d = densityDerivatives(t, xs, raw.unsqueeze(0).expand({2, raw.size(0)}), 5);
                for (int k = 0; k <= 4; ++k) {
                    const double left = d[k][0].item<double>() + h * d[k + 1][0].item<double>();
                    const double right = d[k][1].item<double>() - h * d[k + 1][1].item<double>();
                    EXPECT_LT(std::abs(right - left), 1e-5 * scales[k]) << "order " << k << " at edge " << e << (circ ? " (circle)" : "");
                }
            }
        }
    }
}

TEST(Smoothness, CircularDerivativesArePeriodicAcrossTheSeam) {
    for (const auto& cfg : {nlohmann::json{{"type", "smooth"}, {"circular", true}, {"components", 6}},
                            nlohmann::json{{"type", "smooth"}, {"circular", true}, {"components", 6}, {"beta", 2}}}) {
        auto t = makeTransform(cfg);
        for (uint64_t seed : {41, 42, 43}) {
            auto raw = randomParams(*t, 1, seed);
            auto scales = derivativeScales(*t, raw, 4);
            const double h = 1e-9;
            auto xs = torch::tensor({h, 1.0 - h}, f64());
            auto d = densityDerivatives(*t, xs, raw.expand({2, raw.size(1)}), 4);
            for (int k = 0; k <= 4; ++k) {
                const double jump = std::abs(d[k][1].item<double>() - d[k][0].item<double>());
                EXPECT_LT(jump, 1e-5 * scales[k] + 1e-12) << "order " << k << " seed " << seed;
            }
        }
    }
}

TEST(Smoothness, SplineSecondDerivativeJumpsAtKnots) {
    // The spline is only C^1: its density is continuous but the density's slope jumps at knots.
    for (bool circ : {false, true}) {
        SplineOptions o;
        o.bins = 6;
        RationalQuadraticSplineTransform t(circ, o);
        auto raw = randomParams(t, 1, 51, 1.0);
        // knot positions: cumulative widths (parameter map of Transforms.cpp)
        auto widths = o.minBinWidth + (1.0 - o.minBinWidth * o.bins) * torch::softmax(raw.narrow(-1, 0, o.bins), -1);
        auto knots = torch::cumsum(widths, -1).squeeze(0);
        auto scales = derivativeScales(t, raw, 1);
        int bigJumps = 0;
        const double h = 1e-8;
        std::vector<double> points;
        for (int64_t k = 0; k + 1 < o.bins; ++k) points.push_back(knots[k].item<double>());
        for (double e : points) {
            auto xs = torch::tensor({e - h, e + h}, f64());
            auto d = densityDerivatives(t, xs, raw.expand({2, raw.size(1)}), 1);
            const double jump0 = std::abs(d[0][1].item<double>() - d[0][0].item<double>());
            const double jump1 = std::abs(d[1][1].item<double>() - d[1][0].item<double>());
            EXPECT_LT(jump0, 1e-6 * scales[0]) << "spline density must be continuous at a knot";
            if (jump1 > 1e-2 * scales[1]) ++bigJumps;
        }
        EXPECT_GE(bigJumps, static_cast<int>(points.size()) - 1) << "second derivative of f should jump at the knots";
        if (circ) {  // tied slopes: continuous density across the seam, but its slope jumps
            auto xs = torch::tensor({1e-9, 1.0 - 1e-9}, f64());
            auto d = densityDerivatives(t, xs, raw.expand({2, raw.size(1)}), 1);
            EXPECT_LT(std::abs(d[0][1].item<double>() - d[0][0].item<double>()), 1e-6 * scales[0]);
            EXPECT_GT(std::abs(d[1][1].item<double>() - d[1][0].item<double>()), 1e-2 * scales[1]);
        }
    }
}

TEST(Smoothness, MonomialRampIsOnlyFinitelySmooth) {
    // rho(x) = x^k gives a density whose k-th derivative jumps at the support edges.
    SmoothMixtureOptions o;
    o.components = 1;
    o.ramp = RampType::Monomial;
    o.monomialOrder = 2;
    SmoothMixtureTransform t(false, o);
    auto raw = torch::tensor({{0.0, 0.0, 1.0, -3.0}}, f64());  // weight, b = 0.5, a = exp(tanh(1)), small c
    auto edges = supportEdges(t, raw.squeeze(0));
    ASSERT_EQ(edges.size(), 2u);
    auto xs = torch::tensor({edges[0] - 1e-7, edges[0] + 1e-7}, f64());
    auto d = densityDerivatives(t, xs, raw.expand({2, 4}), 2);
    EXPECT_LT(std::abs(d[0][1].item<double>() - d[0][0].item<double>()), 1e-4);
    EXPECT_GT(std::abs(d[1][1].item<double>() - d[1][0].item<double>()), 1e-1);
}

TEST(SmoothMixture, ShapeParametersStayInThePapersRangesWithoutClamps) {
    // Every shape parameter is a smooth bounded map of its raw output: within range for any raw value,
    // and strictly monotonic (never flat, as a clamp would be) over a wide raw range.
    for (bool circ : {false, true}) {
        SmoothMixtureOptions o;
        o.components = 8;
        SmoothMixtureTransform t(circ, o);
        auto raw = randomParams(t, 2000, 61, 8.0);
        auto m = t.shape(raw);
        const double sMin = unimodalSharpness(1);
        EXPECT_GE(m.s.min().item<double>(), sMin);
        EXPECT_LE(m.s.max().item<double>(), sMin + 10.0);
        EXPECT_GE(m.c.min().item<double>(), 1e-6);
        EXPECT_LE(m.c.max().item<double>(), 1.0);
        if (circ) {
            EXPECT_EQ(m.a.item<double>(), 1.0);
        } else {
            EXPECT_GE(m.a.min().item<double>(), std::exp(-1.0) * (1 - 1e-15));
            EXPECT_LE(m.a.max().item<double>(), std::exp(1.0) * (1 + 1e-15));
        }
        // locations increase with k and stay inside [0,1] (strictly, for raw values that do not underflow
        // the softmax); weights sum to one
        auto db = m.b.narrow(-1, 1, 7) - m.b.narrow(-1, 0, 7);
        EXPECT_GE(db.min().item<double>(), 0.0);
        EXPECT_GE(m.b.min().item<double>(), 0.0);
        EXPECT_LE(m.b.max().item<double>(), 1.0 + 1e-15);  // cumulative sums may round up
        EXPECT_LT(maxAbs(m.w.sum(-1) - 1.0), 1e-14);
        auto mild = t.shape(randomParams(t, 2000, 62, 2.0));
        EXPECT_GT((mild.b.narrow(-1, 1, 7) - mild.b.narrow(-1, 0, 7)).min().item<double>(), 0.0);
        EXPECT_GT(mild.b.min().item<double>(), 0.0);
        EXPECT_LT(mild.b.max().item<double>(), 1.0);
        // no clamp: each map's derivative is positive for raw values in [-6, 6]
        auto r = torch::linspace(-6.0, 6.0, 101, f64()).unsqueeze(1).expand({101, t.numParams()}).clone().requires_grad_(true);
        auto mm = t.shape(r);
        for (auto [name, v] : std::vector<std::pair<std::string, torch::Tensor>>{{"s", mm.s}, {"c", mm.c}, {"a", mm.a}}) {
            if (name == "a" && circ) continue;
            auto g = torch::autograd::grad({v.sum()}, {r}, {}, true)[0];
            const int64_t offset = name == "s" ? 8 : name == "a" ? 24 : 32;
            EXPECT_GT(g.narrow(1, offset, 8).min().item<double>(), 0.0) << name << (circ ? " circle" : " interval");
        }
    }
}

TEST(SmoothMixture, UnimodalSharpnessSeparatesOneMaximumFromTwo) {
    // The bump density sigma'(t) of the exponential ramp has one maximum (at t = 1/2) for s above
    // unimodalSharpness(beta) and two (near the support edges) below it.
    for (int beta : {1, 2}) {
        SmoothMixtureOptions o;
        o.beta = beta;
        o.sharpnessMin = 0.01;
        SmoothMixtureTransform t(false, o);
        auto grid = torch::linspace(1e-4, 1.0 - 1e-4, 200001, f64());
        auto maxima = [&](double s) {
            auto d = t.sigmoid(grid, torch::full({}, s, f64())).second;
            auto mid = d.narrow(0, 1, d.size(0) - 2);
            auto isMax = (mid > d.narrow(0, 0, d.size(0) - 2)).logical_and(mid >= d.narrow(0, 2, d.size(0) - 2));
            return isMax.sum().item<int64_t>();
        };
        const double s0 = unimodalSharpness(beta);
        EXPECT_EQ(maxima(s0 * 1.01), 1) << "beta " << beta;
        EXPECT_EQ(maxima(s0 * 0.99), 2) << "beta " << beta;
    }
}

TEST(Transforms, RejectBadConfigurationsAndShapes) {
    EXPECT_THROW(makeTransform({{"type", "magic"}}), std::invalid_argument);
    EXPECT_THROW(makeTransform({{"type", "smooth"}, {"beta", 3}}), std::invalid_argument);
    EXPECT_THROW(makeTransform({{"type", "smooth"}, {"components", 0}}), std::invalid_argument);
    EXPECT_THROW(makeTransform({{"type", "spline"}, {"bins", 0}}), std::invalid_argument);
    EXPECT_THROW(makeTransform({{"type", "smooth"}, {"circular", true}, {"scale", 0.5}}), std::invalid_argument);
    // the clamped parameterization of FlowForce 0.1 is refused with a message, not misread
    try {
        makeTransform({{"type", "smooth"}, {"min_density", 1e-3}});
        ADD_FAILURE() << "a format-1 smooth transform was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("retrain"), std::string::npos) << e.what();
    }
    auto t = makeTransform({{"type", "smooth"}, {"components", 3}});
    EXPECT_THROW(t->forward(torch::zeros({4}, f64()), torch::zeros({4, 7}, f64())), std::invalid_argument);
}
