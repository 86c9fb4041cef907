// The training and evaluation losses (Losses.h): the tensor energy cut against Physics.h's, force
// matching per component, the reverse KL, and the importance-sampling estimates on cases with known
// answers (an exact flow has ESS 1 and the true log Z).
#include "TestUtil.h"

#include "flowforce/flow/Losses.h"
#include "flowforce/flow/Physics.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>

using namespace flowforce;
using namespace flowforce::test;

namespace {

/** A small seeded 2-D flow on the unit square (two couplings, conditioners 8 wide), float64. */
std::shared_ptr<Flow> smallFlow(const nlohmann::json& transform = {{"type", "spline"}, {"bins", 4}},
                                Activation activation = Activation::SiLU, uint64_t seed = 3) {
    torch::manual_seed(seed);
    auto flow = std::make_shared<Flow>(alternatingCouplingArchitecture(2, {false, false}, 2, transform, {8}, activation));
    flow->to(torch::kFloat64);
    return flow;
}

std::shared_ptr<Flow> smallSmoothFlow() { return smallFlow({{"type", "smooth"}, {"components", 4}}, Activation::Sin, 4); }

}  // namespace

TEST(LossesTest, EnergyCutMatchesThePhysicsDefinition) {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> e{-50.0, 0.0, 999.0, kEnergyCutKT, 1001.0, 1e5, 1e300, inf, nan};
    auto cut = energyCut(torch::tensor(e, f64()));
    for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(cut[static_cast<int64_t>(i)].item<double>(), energyCut(e[i])) << e[i];
    // slope 1 below the cut, 1/(1 + e - cut) above it, and finite on both sides
    auto x = torch::tensor({10.0, kEnergyCutKT + 1000.0}, f64()).requires_grad_(true);
    auto g = torch::autograd::grad({energyCut(x).sum()}, {x})[0];
    EXPECT_DOUBLE_EQ(g[0].item<double>(), 1.0);
    EXPECT_DOUBLE_EQ(g[1].item<double>(), 1.0 / 1001.0);
}

TEST(LossesTest, ReverseKLIsTheMeanOfCutEnergyPlusLogDensity) {
    auto u = torch::tensor({1.0, 2.0, 3e3}, f64()), logp = torch::tensor({-0.5, 0.5, -1.0}, f64());
    const double expected = (0.5 + 2.5 + energyCut(3e3) - 1.0) / 3.0;
    EXPECT_DOUBLE_EQ(reverseKL(u, logp).item<double>(), expected);
}

TEST(LossesTest, ForceMatchingIsPerCartesianComponent) {
    auto f = torch::tensor({{1.0, 2.0, 3.0}, {0.0, 0.0, 0.0}}, f64());
    auto grad = torch::tensor({{-1.0, -2.0, 0.0}, {1.0, 1.0, 1.0}}, f64());
    auto errors = forceMatchingErrors(f, grad);
    EXPECT_DOUBLE_EQ(errors[0].item<double>(), 3.0);  // (0 + 0 + 9) / 3
    EXPECT_DOUBLE_EQ(errors[1].item<double>(), 1.0);  // (1 + 1 + 1) / 3
    EXPECT_DOUBLE_EQ(forceMatchingLoss(f, grad).item<double>(), 2.0);
}

TEST(LossesTest, DataLossesAreTheNllAndZeroForTheFlowsOwnForces) {
    auto flow = smallFlow();
    auto x = torch::rand({64, 2}, at::detail::createCPUGenerator(5), f64());
    const double nll = -flow->logProb(x).mean().item<double>();
    EXPECT_NEAR(dataLosses(*flow, x).nll.item<double>(), nll, 1e-14);
    EXPECT_FALSE(dataLosses(*flow, x).fm.defined());
    auto [u, grad] = flow->energyAndGradient(x);
    auto l = dataLosses(*flow, x, -grad);  // the flow's own forces -du/dx match exactly
    EXPECT_NEAR(l.nll.item<double>(), nll, 1e-14);
    EXPECT_LT(l.fm.item<double>(), 1e-28);
    auto shifted = dataLosses(*flow, x, -grad + 0.5);
    EXPECT_NEAR(shifted.fm.item<double>(), 0.25, 1e-12);
    // with createGraph the FM term has a gradient in the parameters
    auto trained = dataLosses(*flow, x, torch::zeros_like(grad), /*createGraph=*/true);
    trained.fm.backward();
    double norm = 0;
    for (const auto& p : flow->parameters()) norm += p.grad().defined() ? p.grad().pow(2).sum().item<double>() : 0.0;
    EXPECT_GT(norm, 0.0);
}

TEST(LossesTest, ImportanceEstimatesOfAnExactFlow) {
    // u = -log p - c: weights exp(-u - log p) = exp(c) for every sample, so ESS/N = 1 and log Z = c
    auto logp = torch::randn({100}, at::detail::createCPUGenerator(2), f64());
    const double c = 1.7;
    auto e = importanceEstimates(-logp - c, logp);
    EXPECT_NEAR(e.essFraction, 1.0, 1e-12);
    EXPECT_NEAR(e.logPartitionFunction, c, 1e-12);
    EXPECT_TRUE(e.valid.all().item<bool>());
    // failed target evaluations (non-finite, or the ceiling a target marks them with) get weight zero:
    // half of the samples count, so ESS/N = 1/2 and the estimate of Z halves
    auto u = -logp - c;
    u.narrow(0, 0, 25).fill_(kEnergyCeilingKT);
    u.narrow(0, 25, 25).fill_(std::numeric_limits<double>::quiet_NaN());
    auto half = importanceEstimates(u, logp);
    EXPECT_EQ(half.valid.sum().item<int64_t>(), 50);
    EXPECT_NEAR(half.essFraction, 0.5, 1e-12);
    EXPECT_NEAR(half.logPartitionFunction, c + std::log(0.5), 1e-12);
}

TEST(LossesTest, EssOfUnequalWeights) {
    // log w = 0 and log 2 for two samples: ESS = (1 + 2)^2 / (1 + 4) = 9/5 of N = 2, log Z = log(3/2)
    auto e = importanceEstimates(torch::tensor({0.0, -std::log(2.0)}, f64()), torch::zeros({2}, f64()));
    EXPECT_NEAR(e.essFraction, 0.9, 1e-12);
    EXPECT_NEAR(e.logPartitionFunction, std::log(1.5), 1e-12);
}

TEST(LossesTest, RoughnessIsTheSquaredFourthDifferenceOfTheEnergyAlongEachStep) {
    auto flow = smallSmoothFlow();
    auto x = uniform(16, 7, 0.35, 0.65).view({8, 2});
    auto s = (uniform(16, 8) - 0.5).view({8, 2}) * 0.1;
    double expected = 0;
    for (int64_t b = 0; b < 8; ++b) {  // one configuration at a time, stencil point by stencil point
        auto xb = x.narrow(0, b, 1), sb = s.narrow(0, b, 1);
        const double c[5] = {1, -4, 6, -4, 1};
        double d4 = 0;
        for (int k = -2; k <= 2; ++k) d4 += c[k + 2] * -flow->logProb(xb + k * sb).item<double>();
        expected += d4 * d4 / 8.0;
    }
    EXPECT_GT(expected, 1e-8);  // a non-trivial case
    EXPECT_NEAR(roughnessLoss(*flow, x, s).item<double>(), expected, 1e-12 * (1 + expected));
    // differentiable in the parameters
    roughnessLoss(*flow, x, s).backward();
    double norm = 0;
    for (const auto& p : flow->parameters()) norm += p.grad().defined() ? p.grad().pow(2).sum().item<double>() : 0.0;
    EXPECT_GT(norm, 0.0);
    EXPECT_THROW(roughnessLoss(*flow, x, s.narrow(0, 0, 4)), std::invalid_argument);
}

TEST(LossesTest, RoughnessOfASmoothFlowFallsAsTheEighthPowerOfTheStep) {
    // the fourth difference of a C^4 function is h^4 u''''(x) + O(h^6): halving the steps divides its square by 256
    auto flow = smallSmoothFlow();
    torch::NoGradGuard ng;
    auto x = uniform(64, 9, 0.3, 0.7).view({32, 2});
    auto s = (uniform(64, 10) - 0.5).view({32, 2});
    const double h = 4e-3;
    const double ratio = roughnessLoss(*flow, x, h * s).item<double>() / roughnessLoss(*flow, x, 0.5 * h * s).item<double>();
    EXPECT_NEAR(ratio, 256.0, 256.0 * 0.1);
}

TEST(LossesTest, ThermalStepsHaveTheMaxwellBoltzmannSpreadTimesTheTimeStep) {
    const std::vector<double> masses{1.008, 15.999};  // Da
    const double T = 300, dtFs = 2;
    auto s = thermalSteps(masses, T, dtFs, 40000, at::detail::createCPUGenerator(3));
    ASSERT_EQ(s.sizes(), (std::vector<int64_t>{40000, 6}));
    auto sd = s.std(0);
    for (int64_t j = 0; j < 6; ++j) {
        // sqrt(kT/m) in nm/ps (1 kJ/g = 1 nm^2/ps^2) times 2e-3 ps; 40000 samples: std within ~1 %
        const double expected = std::sqrt(kBoltzmannKJPerMolK * T / masses[static_cast<size_t>(j / 3)]) * dtFs * 1e-3;
        EXPECT_NEAR(sd[j].item<double>(), expected, 0.02 * expected) << j;
    }
    EXPECT_LT(std::abs(s.mean().item<double>()), 1e-4);
    auto gen = at::detail::createCPUGenerator(1);
    EXPECT_THROW(thermalSteps({}, T, 1, 1, gen), std::invalid_argument);
    EXPECT_THROW(thermalSteps(masses, 0, 1, 1, gen), std::invalid_argument);
    EXPECT_THROW(thermalSteps(masses, T, -1, 1, gen), std::invalid_argument);
    EXPECT_THROW(thermalSteps({1.0, 0.0}, T, 1, 1, gen), std::invalid_argument);
}
