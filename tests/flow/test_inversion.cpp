// Multi-bin bisection and gradients through the black-box inverse (inverse function theorem).
#include "TestUtil.h"

#include "flowforce/flow/Inversion.h"

#include <torch/csrc/autograd/autograd.h>

using namespace flowforce;
using namespace flowforce::test;

namespace {
TransformPtr smoothTransform(bool circular) {
    auto t = makeTransform({{"type", "smooth"}, {"circular", circular}, {"components", 5}});
    const_cast<ElementwiseTransform&>(*t).inversion = {8, 1e-14};
    return t;
}

/** Reference inverse recorded by autograd: bisection to a coarse bracket (no gradient), then Newton steps;
 *  differentiating the unrolled iteration gives the inverse's derivatives independently of eqs. 8-11. */
ElementwiseResult unrolledInverse(const ElementwiseTransform& t, const torch::Tensor& y, const torch::Tensor& params,
                                  int newtonSteps) {
    auto x = multiBinBisection(t.prepare(params.detach()), y.detach(), 4, 1e-4);
    for (int it = 0; it < newtonSteps; ++it) {
        auto r = t.forward(x, params);
        x = x - (r.out - y) / torch::exp(r.logdet);
    }
    return {x, -t.forward(x, params).logdet};
}

/** Loss mixing both outputs of the inverse with fixed random weights. */
torch::Tensor inverseLoss(const ElementwiseResult& r, const torch::Tensor& cx, const torch::Tensor& cl) {
    return (cx * r.out).sum() + (cl * r.logdet).sum() + 0.3 * (r.out * r.out).sum();
}
}  // namespace

TEST(MultiBinBisection, AllBinCountsAgreeWithAnalyticSplineInverse) {
    RationalQuadraticSplineTransform spline(false);
    auto params = randomParams(spline, 500, 61);
    auto y = uniform(500, 62);
    auto exact = spline.inverse(y, params).out;
    auto f = spline.prepare(params);
    for (int64_t bins : {2, 3, 4, 16, 100, 256}) {
        auto x = multiBinBisection(f, y, bins, 1e-12);
        EXPECT_LT(maxAbs(x - exact), 1e-11) << bins << " bins";
    }
}

TEST(MultiBinBisection, StepCountShrinksWithLogOfBins) {
    EXPECT_EQ(bisectionSteps(2, 1e-6), 20);
    EXPECT_EQ(bisectionSteps(4, 1e-6), 10);
    EXPECT_EQ(bisectionSteps(100, 1e-6), 3);
    EXPECT_THROW(bisectionSteps(1, 1e-6), std::invalid_argument);
    EXPECT_THROW(bisectionSteps(4, 0.0), std::invalid_argument);
}

TEST(ImplicitGradients, MatchFiniteDifferencesInYAndParameters) {
    for (bool circ : {false, true}) {
        auto t = smoothTransform(circ);
        const int64_t n = 6;
        auto y = uniform(n, 71, 0.05, 0.95).requires_grad_(true);
        auto params = randomParams(*t, n, 72).requires_grad_(true);
        auto cx = torch::randn({n}, f64()), cl = torch::randn({n}, f64());
        auto loss = inverseLoss(t->inverse(y, params), cx, cl);
        auto grads = torch::autograd::grad({loss}, {y, params});

        torch::NoGradGuard ng;
        auto lossAt = [&](const torch::Tensor& yy, const torch::Tensor& pp) {
            return inverseLoss(t->inverse(yy, pp), cx, cl).item<double>();
        };
        const double eps = 1e-5;
        for (int64_t i = 0; i < n; ++i) {
            auto yp = y.detach().clone(), ym = y.detach().clone();
            yp[i] += eps;
            ym[i] -= eps;
            const double fd = (lossAt(yp, params.detach()) - lossAt(ym, params.detach())) / (2 * eps);
            EXPECT_NEAR(grads[0][i].item<double>(), fd, 1e-6 * (1.0 + std::abs(fd))) << "dL/dy[" << i << "]";
        }
        auto flat = params.detach().view({-1});
        for (int64_t j = 0; j < flat.size(0); j += 3) {
            auto pp = flat.clone(), pm = flat.clone();
            pp[j] += eps;
            pm[j] -= eps;
            const double fd = (lossAt(y.detach(), pp.view(params.sizes())) - lossAt(y.detach(), pm.view(params.sizes()))) / (2 * eps);
            EXPECT_NEAR(grads[1].view({-1})[j].item<double>(), fd, 1e-6 * (1.0 + std::abs(fd))) << "dL/dtheta[" << j << "]";
        }
    }
}

TEST(ImplicitGradients, MatchAutogradThroughUnrolledRootFinder) {
    // Reference: autograd through the unrolled root finder (unrolledInverse).
    for (bool circ : {false, true}) {
        auto t = smoothTransform(circ);
        const int64_t n = 200;
        auto y = uniform(n, 81, 0.01, 0.99).requires_grad_(true);
        auto params = randomParams(*t, n, 82).requires_grad_(true);
        auto cx = torch::randn({n}, f64()), cl = torch::randn({n}, f64());

        auto implicit = torch::autograd::grad({inverseLoss(t->inverse(y, params), cx, cl)}, {y, params});

        auto reference = torch::autograd::grad({inverseLoss(unrolledInverse(*t, y, params, 8), cx, cl)}, {y, params});
        EXPECT_LT(maxAbs(implicit[0] - reference[0]), 1e-8 * (1.0 + maxAbs(reference[0])));
        EXPECT_LT(maxAbs(implicit[1] - reference[1]), 1e-8 * (1.0 + maxAbs(reference[1])));
    }
}

TEST(ImplicitGradients, OnlyOneOutputUsed) {
    auto t = smoothTransform(false);
    auto y = uniform(10, 91).requires_grad_(true);
    auto params = randomParams(*t, 10, 92).requires_grad_(true);
    auto r = t->inverse(y, params);
    auto gx = torch::autograd::grad({r.out.sum()}, {y}, {}, true)[0];
    auto gl = torch::autograd::grad({r.logdet.sum()}, {params})[0];
    EXPECT_TRUE(torch::isfinite(gx).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(gl).all().item<bool>());
    // dx/dy = exp(log (f^-1)'(y))
    EXPECT_LT(maxAbs(gx - torch::exp(r.logdet.detach())), 1e-10);
}

TEST(ImplicitGradients, DoubleBackwardThroughLogDetMatchesUnrolledRootFinder) {
    // Gradients of the inverse's log-det taken with create_graph (as when it sits inside a loss whose
    // gradient is differentiated again, e.g. force matching on an inverse flow) differentiated a second time
    // with respect to y and the parameters: the second-order implicit terms against autograd through Newton steps.
    for (bool circ : {false, true}) {
        auto t = smoothTransform(circ);
        const int64_t n = 50;
        auto y = uniform(n, 95, 0.02, 0.98).requires_grad_(true);
        auto params = randomParams(*t, n, 96).requires_grad_(true);
        auto secondOrder = [&](const ElementwiseResult& r) {
            auto dldy = torch::autograd::grad({r.logdet.sum()}, {y}, {}, true, true)[0];
            auto dxdy = torch::autograd::grad({r.out.sum()}, {y}, {}, true, true)[0];
            return torch::autograd::grad({(dldy * dldy).sum() + (dxdy * r.out).sum()}, {y, params});
        };
        auto implicit = secondOrder(t->inverse(y, params));

        auto reference = secondOrder(unrolledInverse(*t, y, params, 10));
        for (int k = 0; k < 2; ++k) {
            EXPECT_GT(maxAbs(reference[k]), 1e-3);
            EXPECT_LT(maxAbs(implicit[k] - reference[k]), 1e-7 * (1.0 + maxAbs(reference[k]))) << "input " << k;
        }
    }
}

TEST(ImplicitGradients, SecondOrderMatchesFiniteDifferencesOfFirstOrder) {
    // g(y) = (d log|dx/dy| / dy)^2 + (dx/dy) x per element; its derivative by double backward against central
    // differences of g evaluated with first-order gradients only.
    for (bool circ : {false, true}) {
        auto t = smoothTransform(circ);
        const int64_t n = 50;
        auto y0 = uniform(n, 97, 0.02, 0.98);
        auto params = randomParams(*t, n, 98);
        auto g = [&](const torch::Tensor& yy, bool createGraph, torch::Tensor* dgdy) {
            auto y = yy.clone().requires_grad_(true);
            auto r = t->inverse(y, params);
            auto dldy = torch::autograd::grad({r.logdet.sum()}, {y}, {}, true, createGraph)[0];
            auto dxdy = torch::autograd::grad({r.out.sum()}, {y}, {}, true, createGraph)[0];
            auto value = dldy * dldy + dxdy * r.out;
            if (dgdy) *dgdy = torch::autograd::grad({value.sum()}, {y})[0];
            return value.detach();
        };
        torch::Tensor analytic;
        g(y0, true, &analytic);
        const double eps = 1e-6;
        auto fd = (g(y0 + eps, false, nullptr) - g(y0 - eps, false, nullptr)) / (2 * eps);
        EXPECT_GT(maxAbs(fd), 1.0);
        EXPECT_LT(((analytic - fd).abs() / (1.0 + fd.abs())).max().item<double>(), 1e-5) << "circular " << circ;
    }
}
