// The native evaluator against the LibTorch flow: energies and gradients of every supported layout
// (smooth mixtures with separate or shared conditioner heads, exponential or monomial ramps, beta 1 or 2,
// inverted transforms found by root finding, splines, boxes, inverted layers) on configurations near
// alanine dipeptide's geometry; finite differences; batch = single; model-file validation.
#include "TestUtil.h"

#include "flowforce/flow/Features.h"
#include "flowforce/flow/Flow.h"
#include "flowforce/flow/Molecular.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/flow/InternalCoordinates.h"
#include "flowforce/flow/NativeFlow.h"

#include <cmath>
#include <fstream>
#include <sstream>

using namespace flowforce;
using namespace flowforce::test;

namespace {

/** Alanine dipeptide positions [66] (nm) from the project's PDB. */
std::vector<double> ala2Positions() {
    std::ifstream in(FLOWFORCE_TEST_DATA_DIR "/alanine-dipeptide.pdb");
    std::vector<double> x;
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("ATOM", 0) == 0 || line.rfind("HETATM", 0) == 0)
            for (int k = 0; k < 3; ++k) x.push_back(0.1 * std::stod(line.substr(30 + 8 * k, 8)));
    return x;
}

/** n configurations: the PDB geometry with Gaussian noise (nm), randomly rotated and shifted. */
torch::Tensor nearbyConfigurations(int64_t n, double noise, uint64_t seed) {
    auto base = torch::tensor(ala2Positions(), f64()).reshape({22, 3});
    auto gen = at::detail::createCPUGenerator(seed);
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < n; ++i) {
        auto q = torch::randn({4}, gen, f64());
        q = q / q.norm();
        const double w = q[0].item<double>(), x = q[1].item<double>(), y = q[2].item<double>(), z = q[3].item<double>();
        auto R = torch::tensor({1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w), 2 * (x * y + z * w),
                                1 - 2 * (x * x + z * z), 2 * (y * z - x * w), 2 * (x * z - y * w), 2 * (y * z + x * w),
                                1 - 2 * (x * x + y * y)},
                               f64())
                     .reshape({3, 3});
        auto c = (base + noise * torch::randn({22, 3}, gen, f64())).matmul(R.t()) + torch::randn({1, 3}, gen, f64());
        out.push_back(c.reshape({66}));
    }
    return torch::stack(out);
}

/** The Boltzmann-generator architecture with the given transform and conditioner layout, with weights
 *  perturbed away from their initialisation so that shape parameters spread over their ranges. */
std::shared_ptr<Flow> molecularFlow(const nlohmann::json& transform, bool invert, const std::string& heads, uint64_t seed,
                                    double spread, const std::string& boundary = "wall", bool dataRanges = false) {
    auto arch = boltzmannGeneratorArchitecture(ZMatrix::builtinAlanineDipeptide(), transform, {32, 32}, Activation::Sin, invert);
    for (auto& layer : arch["layers"]) layer["conditioner"]["heads"] = heads;
    arch["embedding"]["boundary"] = boundary == "gauss" ? "linear" : boundary;
    if (boundary == "gauss")  // Gaussians fitted to configurations like the ones compared
        arch["embedding"] = fitDataGaussians(EmbeddingSpec::fromJson(arch["embedding"]), nearbyConfigurations(200, 0.004, 99)).toJson();
    else if (dataRanges)  // per-coordinate ranges fitted to configurations like the ones compared (margin 1: room for them)
        arch["embedding"] = fitDataRanges(EmbeddingSpec::fromJson(arch["embedding"]), nearbyConfigurations(200, 0.004, 99), 1.0).toJson();
    torch::manual_seed(seed);
    auto flow = std::make_shared<Flow>(arch);
    flow->to(torch::kFloat64);
    torch::NoGradGuard ng;
    for (auto& p : flow->named_parameters())
        if (p.key().find(".bias") == std::string::npos) p.value().add_(spread * 0.05 * torch::randn_like(p.value()));
    flow->setInversion({16, 1e-14});
    return flow;
}

struct Comparison {
    double energy = 0, gradient = 0;  // largest relative errors
};

/** Native (given precision) against LibTorch on configurations x [B, dataDim]. */
Comparison compare(Flow& flow, const torch::Tensor& x, Precision precision) {
    auto native = NativeFlow::compile(toModelFile(flow), "test");
    NativeEvaluator eval(native, precision);
    auto [uRef, gRef] = flow.energyAndGradient(x);
    Comparison c;
    const int64_t B = x.size(0), D = x.size(1);
    auto xc = x.contiguous();
    std::vector<double> g(static_cast<size_t>(D));
    for (int64_t b = 0; b < B; ++b) {
        const double u = eval.energyAndGradient(xc[b].data_ptr<double>(), g.data());
        const double ur = uRef[b].item<double>();
        c.energy = std::max(c.energy, std::abs(u - ur) / std::max(1.0, std::abs(ur)));
        auto gt = torch::tensor(g, f64());
        c.gradient = std::max(c.gradient, (gt - gRef[b]).norm().item<double>() / std::max(1e-12, gRef[b].norm().item<double>()));
    }
    return c;
}

struct LayoutCase {
    std::string name;
    nlohmann::json transform;
    bool invert;
    std::string heads;
    std::string boundary = "wall";
    bool dataRanges = false;
};

std::vector<LayoutCase> layoutCases() {
    return {
        {"SmoothSeparate", {{"type", "smooth"}, {"components", 8}}, false, "separate"},
        {"SmoothShared", {{"type", "smooth"}, {"components", 8}}, false, "shared"},
        {"SmoothInverted", {{"type", "smooth"}, {"components", 4}}, true, "separate"},
        {"SmoothBeta2", {{"type", "smooth"}, {"components", 5}, {"beta", 2}}, false, "separate"},
        {"SmoothMonomial", {{"type", "smooth"}, {"components", 4}, {"ramp", "monomial"}, {"order", 3}}, false, "separate"},
        {"Spline", {{"type", "spline"}, {"bins", 8}}, false, "separate"},
        {"SmoothLinearBoundary", {{"type", "smooth"}, {"components", 8}}, false, "separate", "linear"},
        {"SmoothDataRanges", {{"type", "smooth"}, {"components", 8}}, false, "separate", "wall", true},
        {"SplineDataRangesLinear", {{"type", "spline"}, {"bins", 8}}, false, "separate", "linear", true},
        {"SmoothGauss", {{"type", "smooth"}, {"components", 8}}, false, "separate", "gauss"},
        {"SplineGauss", {{"type", "spline"}, {"bins", 8}}, false, "separate", "gauss"},
    };
}

class NativeLayouts : public ::testing::TestWithParam<LayoutCase> {};

}  // namespace

TEST_P(NativeLayouts, DoubleMatchesLibTorch) {
    const auto& c = GetParam();
    for (double spread : {1.0, 4.0}) {
        auto flow = molecularFlow(c.transform, c.invert, c.heads, 11, spread, c.boundary, c.dataRanges);
        auto x = nearbyConfigurations(c.invert ? 20 : 60, 0.004, 5);
        auto r = compare(*flow, x, Precision::Double);
        EXPECT_LT(r.energy, 1e-10) << c.name << " spread " << spread;
        EXPECT_LT(r.gradient, 1e-10) << c.name << " spread " << spread;
    }
}

TEST_P(NativeLayouts, SingleMatchesLibTorch) {
    // float weights and activations (sums in double): wilder weights (spread 2, beta 2) reach 1.0e-5
    const auto& c = GetParam();
    auto flow = molecularFlow(c.transform, c.invert, c.heads, 12, 1.0, c.boundary, c.dataRanges);
    auto x = nearbyConfigurations(c.invert ? 10 : 30, 0.004, 6);
    auto r = compare(*flow, x, Precision::Single);
    EXPECT_LT(r.energy, 1e-5) << c.name;
    EXPECT_LT(r.gradient, 1e-5) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Native, NativeLayouts, ::testing::ValuesIn(layoutCases()),
                         [](const auto& info) { return info.param.name; });

TEST(Native, ThousandConfigurationsOfThePapersSmoothFlow) {
    // the default smooth Boltzmann generator (64-64 sin conditioners, separate heads, 758,168 weights)
    auto arch = boltzmannGeneratorArchitecture(ZMatrix::builtinAlanineDipeptide(), {{"type", "smooth"}, {"components", 8}});
    torch::manual_seed(3);
    Flow flow(arch);
    flow.to(torch::kFloat64);
    EXPECT_EQ(flow.parameterCount(), 758168);
    {
        torch::NoGradGuard ng;
        for (auto& p : flow.parameters()) p.add_(0.1 * torch::randn_like(p));
    }
    auto native = NativeFlow::compile(toModelFile(flow), "test");
    EXPECT_EQ(native->parameterCount(), 758168);
    NativeEvaluator eval(native, Precision::Double);
    auto x = nearbyConfigurations(1000, 0.005, 9);
    auto [uRef, gRef] = flow.energyAndGradient(x);
    std::vector<double> u(1000), g(1000 * 66);
    eval.evaluate(1000, x.contiguous().data_ptr<double>(), u.data(), g.data());
    auto ut = torch::tensor(u, f64()), gt = torch::tensor(g, f64()).reshape({1000, 66});
    EXPECT_LT(((ut - uRef).abs() / uRef.abs().clamp_min(1.0)).max().item<double>(), 1e-10);
    EXPECT_LT(((gt - gRef).norm(2, {1}) / gRef.norm(2, {1})).max().item<double>(), 1e-10);
}

TEST(Native, BatchEqualsSingleAndEnergyOnlyEqualsEnergyWithGradient) {
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 21, 2.0);
    auto native = NativeFlow::compile(toModelFile(*flow), "test");
    for (Precision p : {Precision::Double, Precision::Single}) {
        NativeEvaluator eval(native, p);
        auto x = nearbyConfigurations(9, 0.004, 22).contiguous();
        std::vector<double> u(9), g(9 * 66), g1(66);
        eval.evaluate(9, x.data_ptr<double>(), u.data(), g.data());
        // the batched products sum in another order: equal to rounding
        const double tol = p == Precision::Double ? 1e-13 : 1e-6;
        for (int b = 0; b < 9; ++b) {
            const double* xb = x[b].data_ptr<double>();
            const double e1 = eval.energyAndGradient(xb, g1.data());
            EXPECT_NEAR(e1, u[static_cast<size_t>(b)], tol * std::abs(e1));
            EXPECT_NEAR(eval.energy(xb), e1, 1e-14 * std::abs(e1));  // the same forward pass (but for FMA contraction)
            double err = 0, scale = 0;
            for (int i = 0; i < 66; ++i) {
                err = std::max(err, std::abs(g1[static_cast<size_t>(i)] - g[static_cast<size_t>(b * 66 + i)]));
                scale = std::max(scale, std::abs(g1[static_cast<size_t>(i)]));
            }
            EXPECT_LE(err, 10 * tol * scale);
        }
    }
}

TEST(Native, ThreadsSplitTheHeadsAndGiveBitIdenticalResults) {
    // the paper layout's three heads per coupling run on two and three threads; every sum keeps its order
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 23, 2.0);
    auto native = NativeFlow::compile(toModelFile(*flow), "test");
    auto x = nearbyConfigurations(5, 0.004, 24).contiguous();
    for (Precision p : {Precision::Double, Precision::Single}) {
        NativeEvaluator one(native, p, 1);
        std::vector<double> u1(5), g1(5 * 66);
        one.evaluate(5, x.data_ptr<double>(), u1.data(), g1.data());
        for (int threads : {2, 3}) {
            NativeEvaluator many(native, p, threads);
            EXPECT_EQ(many.threads(), threads);
            for (int repeat = 0; repeat < 10; ++repeat) {  // many hand-overs between the threads
                std::vector<double> u(5), g(5 * 66), gb(66), gbRef(66);
                many.evaluate(5, x.data_ptr<double>(), u.data(), g.data());
                ASSERT_EQ(u, u1) << precisionName(p) << ", " << threads << " threads";
                ASSERT_EQ(g, g1) << precisionName(p) << ", " << threads << " threads";
                const double* xb = x[repeat % 5].data_ptr<double>();
                ASSERT_EQ(many.energyAndGradient(xb, gb.data()), one.energyAndGradient(xb, gbRef.data()));
                ASSERT_EQ(gb, gbRef);
                ASSERT_EQ(many.energy(xb), one.energy(xb));
            }
        }
    }
    EXPECT_THROW(NativeEvaluator(native, Precision::Double, 0), std::invalid_argument);
}

TEST(Native, WholeMoleculeSeamOfEveryTorsion) {
    // a torsion at pi - e and at -pi + e: two configurations that differ by a rotation of 2e about one bond.
    // Energy and forces of the whole molecule must meet across the seam (a discontinuity would not shrink
    // with e).
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 41, 2.0);
    auto ic = std::dynamic_pointer_cast<InternalCoordinateLayer>(flow->embedding());
    ASSERT_TRUE(ic);
    NativeEvaluator eval(NativeFlow::compile(toModelFile(*flow), "test"), Precision::Double);
    torch::NoGradGuard ng;
    auto u0 = ic->forward(nearbyConfigurations(1, 0.002, 42)).out;  // [1, 60], torsions in turns on [0, 1)
    auto at = [&](int64_t dim, double t, std::vector<double>& g) {
        auto u = u0.clone();
        u[0][dim] = t;
        auto x = ic->inverse(u).out.contiguous();
        g.assign(66, 0.0);
        return eval.energyAndGradient(x.data_ptr<double>(), g.data());
    };
    const auto torsions = ic->outputDims(ICKind::Torsion);
    ASSERT_EQ(torsions.size(), 19u);
    for (int64_t dim : torsions) {
        double gap[2];
        int k = 0;
        for (double e : {1e-4, 1e-7}) {
            std::vector<double> ga, gb;
            const double ua = at(dim, e, ga), ub = at(dim, 1.0 - e, gb);
            ASSERT_TRUE(std::isfinite(ua) && std::isfinite(ub));
            gap[k++] = std::abs(ua - ub);
            double dg = 0, scale = 0;
            for (size_t i = 0; i < 66; ++i) {
                dg = std::max(dg, std::abs(ga[i] - gb[i]));
                scale = std::max(scale, std::abs(ga[i]));
            }
            // 2e of a turn apart: the forces differ by about the Hessian times the displacement
            EXPECT_LE(dg, (e < 1e-6 ? 1e-4 : 0.05) * scale + 1e-8) << "torsion dim " << dim << ", e " << e;
        }
        // |u(a) - u(b)| ~ |du/dtorsion| 2e: a thousand times smaller e, a thousand times smaller gap
        EXPECT_LE(gap[1], 2e-3 * gap[0] + 1e-9) << "torsion dim " << dim << ": gaps " << gap[0] << ", " << gap[1];
    }
}

TEST(Native, EnergyIsSmoothAlongRandomLineSegments) {
    // u(x0 + s d) on a fine grid of s: the second differences of a C^2 function, divided by h^2, converge to
    // u'' as h shrinks; a jump or a kink anywhere on the segment makes their largest value grow like 1/h^2
    // or 1/h. Segments of 0.02 nm (rms per atom) through frames near the data, in random directions.
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 43, 2.0);
    NativeEvaluator eval(NativeFlow::compile(toModelFile(*flow), "test"), Precision::Double);
    auto x0 = nearbyConfigurations(6, 0.004, 44);
    auto gen = at::detail::createCPUGenerator(45);
    for (int64_t k = 0; k < x0.size(0); ++k) {
        auto d = torch::randn({66}, gen, f64());
        d = d * (0.02 * std::sqrt(22.0) / d.norm().item<double>());
        auto u = [&](double s) {
            auto x = (x0[k] + s * d).contiguous();
            return eval.energy(x.data_ptr<double>());
        };
        double curvature[2] = {0, 0};
        int i = 0;
        for (int n : {400, 800}) {  // h = 1/400 and 1/800 of the segment
            const double h = 1.0 / n;
            std::vector<double> v(static_cast<size_t>(n + 1));
            for (int j = 0; j <= n; ++j) v[static_cast<size_t>(j)] = u(j * h);
            for (int j = 1; j < n; ++j)
                curvature[i] = std::max(curvature[i], std::abs(v[j + 1] - 2 * v[j] + v[j - 1]) / (h * h));
            ++i;
        }
        EXPECT_GT(curvature[0], 0);
        EXPECT_LE(curvature[1], 1.2 * curvature[0]) << "segment " << k << ": max |u''| " << curvature[0] << " then " << curvature[1];
        EXPECT_GE(curvature[1], 0.8 * curvature[0]) << "segment " << k;
    }
}

TEST(Native, GradientMatchesFiniteDifferences) {
    for (const auto& c : layoutCases()) {
        auto flow = molecularFlow(c.transform, c.invert, c.heads, 31, 2.0, c.boundary);
        NativeEvaluator eval(NativeFlow::compile(toModelFile(*flow), "test"), Precision::Double);
        auto x = nearbyConfigurations(3, 0.004, 32).contiguous();
        for (int b = 0; b < 3; ++b) {
            std::vector<double> xb(x[b].data_ptr<double>(), x[b].data_ptr<double>() + 66), g(66);
            eval.energyAndGradient(xb.data(), g.data());
            const double h = 1e-6;
            double err = 0, scale = 0;
            for (int i = 0; i < 66; ++i) {
                auto xp = xb, xm = xb;
                xp[static_cast<size_t>(i)] += h;
                xm[static_cast<size_t>(i)] -= h;
                const double fd = (eval.energy(xp.data()) - eval.energy(xm.data())) / (2 * h);
                err = std::max(err, std::abs(fd - g[static_cast<size_t>(i)]));
                scale = std::max(scale, std::abs(g[static_cast<size_t>(i)]));
            }
            EXPECT_LT(err, 1e-5 * scale) << c.name;
        }
    }
}

TEST(Native, ToyFlowsWithBoxesInvertedLayersAndTori) {
    // non-molecular flows: a box layer, an inverted layer and circular dimensions
    for (bool circular : {false, true})
        for (const auto& t : {nlohmann::json{{"type", "smooth"}, {"components", 6}}, nlohmann::json{{"type", "spline"}, {"bins", 6}}}) {
            auto arch = alternatingCouplingArchitecture(3, std::vector<bool>(3, circular), 4, t, {16, 16}, Activation::SiLU);
            arch["layers"].insert(arch["layers"].begin(),
                                  nlohmann::json{{"type", "box"}, {"low", {-3.0, -3.0, -3.0}}, {"high", {3.0, 3.0, 3.0}}});
            arch["layers"][2] = nlohmann::json{{"type", "inverted"}, {"layer", arch["layers"][2]}};
            torch::manual_seed(41);
            Flow flow(arch);
            flow.to(torch::kFloat64);
            flow.setInversion({16, 1e-14});
            {
                torch::NoGradGuard ng;
                for (auto& p : flow.parameters()) p.add_(0.2 * torch::randn_like(p));
            }
            auto x = (torch::rand({40, 3}, f64()) * 5.8 - 2.9);
            auto r = compare(flow, x, Precision::Double);
            EXPECT_LT(r.energy, 1e-10) << t.dump() << (circular ? " torus" : "");
            EXPECT_LT(r.gradient, 1e-9) << t.dump() << (circular ? " torus" : "");
        }
}

TEST(Native, RejectsMismatchedWeightsWithoutAllocating) {
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 51, 1.0);
    const auto m = toModelFile(*flow);
    auto expectRejected = [](const ModelFile& bad, const std::string& fragment) {
        try {
            NativeFlow::compile(bad, "test");
            ADD_FAILURE() << "accepted (expected: " << fragment << ")";
        } catch (const ModelFileError& e) {
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        }
    };
    auto missing = m;
    missing.tensors.erase(missing.tensors.begin());
    expectRejected(missing, "missing");
    auto extra = m;
    extra.tensors["bogus"] = StoredTensor{TensorType::F64, {1}, {0.0}};
    expectRejected(extra, "does not belong");
    auto shape = m;
    shape.tensors.begin()->second.shape = {1, static_cast<int64_t>(shape.tensors.begin()->second.values.size())};
    expectRejected(shape, "shape");
    auto nan = m;
    nan.tensors.begin()->second.values[0] = NAN;
    expectRejected(nan, "non-finite");
    auto huge = m;  // a corrupt hidden size must be caught by the shape check, not allocated
    huge.architecture["layers"][0]["conditioner"]["hidden"] = {60000, 60000};
    expectRejected(huge, "shape");
    auto legacy = m;
    legacy.architecture["layers"][0]["transform"] = {{"type", "smooth"}, {"components", 8}, {"min_density", 1e-3}};
    expectRejected(legacy, "retrain");
}

TEST(Native, SupportCheckNamesTheCoordinate) {
    auto flow = molecularFlow({{"type", "smooth"}, {"components", 8}}, false, "separate", 61, 1.0);
    NativeEvaluator eval(NativeFlow::compile(toModelFile(*flow), "test"), Precision::Double);
    auto x = ala2Positions();
    EXPECT_EQ(eval.checkSupport(x.data()).coordinate, -1);
    auto stretched = x;
    for (int k = 0; k < 3; ++k) stretched[static_cast<size_t>(3 * 1 + k)] += 0.5;  // atom 1 far from its bond partner
    auto v = eval.checkSupport(stretched.data());
    EXPECT_GE(v.coordinate, 0);
    EXPECT_NE(v.description.find("outside the model's range"), std::string::npos) << v.description;
    EXPECT_NE(v.description.find("nm"), std::string::npos) << v.description;
    auto bad = x;
    bad[7] = NAN;
    EXPECT_NE(eval.checkSupport(bad.data()).description.find("not finite"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The stiffest vibration of a potential (Features.h), the measure eval compares with the time step

namespace {
/** Harmonic bonds 0.5 k (r - r0)^2 between atom pairs: energy in kJ/mol, gradient in kJ/mol/nm. */
struct Springs {
    std::vector<std::array<int64_t, 2>> pairs;
    std::vector<double> k, r0;
    int64_t atoms;
    void operator()(int64_t n, const double* xs, double* us, double* gs) const {
        for (int64_t c = 0; c < n; ++c) {
            const double* x = xs + c * 3 * atoms;
            double* g = gs + c * 3 * atoms;
            std::fill(g, g + 3 * atoms, 0.0);
            us[c] = 0;
            for (size_t s = 0; s < pairs.size(); ++s) {
                const auto [a, b] = pairs[s];
                double d[3], r = 0;
                for (int i = 0; i < 3; ++i) d[i] = x[3 * a + i] - x[3 * b + i], r += d[i] * d[i];
                r = std::sqrt(r);
                us[c] += 0.5 * k[s] * (r - r0[s]) * (r - r0[s]);
                for (int i = 0; i < 3; ++i) {
                    g[3 * a + i] += k[s] * (r - r0[s]) * d[i] / r;
                    g[3 * b + i] -= k[s] * (r - r0[s]) * d[i] / r;
                }
            }
        }
    }
};
}  // namespace

TEST(Diagnostics, StiffestModeOfADiatomicIsItsStretch) {
    // C-H at its rest length, k = 284,512 kJ/mol/nm^2 (Amber's 340 kcal/mol/A^2 x 2): omega^2 = k / mu
    const double k = 284512.0, mH = 1.008, mC = 12.011, mu = mH * mC / (mH + mC);
    Springs s{{{0, 1}}, {k}, {0.109}, 2};
    const std::vector<double> x{0.01, 0.02, -0.03, 0.01 + 0.109 * 0.6, 0.02 + 0.109 * 0.8, -0.03};
    auto mode = stiffestMode(s, x.data(), {mH, mC});
    EXPECT_NEAR(mode.omega, std::sqrt(k / mu), 1e-6 * std::sqrt(k / mu));
    EXPECT_NEAR(mode.periodFs, 2 * M_PI / std::sqrt(k / mu) * 1e3, 1e-5);
    EXPECT_GT(mode.periodFs, 10.0);  // ~11 fs: why 1 fs steps work for the force field
    EXPECT_LT(mode.periodFs, 12.0);
    // the light atom carries the mass-weighted amplitude in proportion m_C / (m_H + m_C)
    ASSERT_EQ(mode.share.size(), 2u);
    EXPECT_NEAR(mode.share[0], mC / (mH + mC), 1e-6);
    EXPECT_NEAR(mode.share[0] + mode.share[1], 1.0, 1e-12);
    EXPECT_EQ(mode.atoms(0.5), "0 (92%)");
}

TEST(Diagnostics, StiffestModeFindsTheStifferOfTwoSpringsAndNothingInAFlatPotential) {
    // two separate molecules: the same masses, one spring 9x stiffer -> 3x the frequency, all on atoms 2, 3
    Springs s{{{0, 1}, {2, 3}}, {1e5, 9e5}, {0.15, 0.15}, 4};
    const std::vector<double> x{0, 0, 0, 0.15, 0, 0, 1, 1, 1, 1, 1.15, 1};
    const std::vector<double> m{12.0, 12.0, 12.0, 12.0};
    auto mode = stiffestMode(s, x.data(), m);
    EXPECT_NEAR(mode.omega, std::sqrt(9e5 / 6.0), 1e-5 * std::sqrt(9e5 / 6.0));
    EXPECT_NEAR(mode.share[2] + mode.share[3], 1.0, 1e-8);
    Springs none{{}, {}, {}, 4};
    auto flat = stiffestMode(none, x.data(), m);
    EXPECT_EQ(flat.omega, 0.0);
    EXPECT_TRUE(std::isinf(flat.periodFs));
    EXPECT_THROW(stiffestMode(s, x.data(), {12.0, 0.0, 12.0, 12.0}), std::invalid_argument);
    EXPECT_THROW(stiffestMode(s, x.data(), {}), std::invalid_argument);
    Springs broken = s;
    broken.r0[0] = NAN;
    EXPECT_THROW(stiffestMode(broken, x.data(), m), std::invalid_argument);
}

TEST(Diagnostics, OffCubicSeesStructureNarrowerThanTheStepAndNothingInACubic) {
    // U(x) = c3 x0^3 + c1 x1 (a cubic along any straight segment): the Hermite cubic of the ends is exact
    auto cubic = [](int64_t k, const double* xs, double* us, double* gs) {
        for (int64_t c = 0; c < k; ++c) {
            const double* x = xs + 2 * c;
            us[c] = 40 * x[0] * x[0] * x[0] + 3 * x[1];
            gs[2 * c] = 120 * x[0] * x[0], gs[2 * c + 1] = 3;
        }
    };
    const double a[2] = {0.1, -0.2}, b[2] = {0.104, -0.197};
    EXPECT_LT(offCubicAlongSegment(cubic, a, b, 2), 1e-12);
    // a Gaussian spike of height 2 kJ/mol and width 1e-4 nm half-way along a 5e-3 nm step: flat at both ends
    auto spike = [&](int64_t k, const double* xs, double* us, double* gs) {
        for (int64_t c = 0; c < k; ++c) {
            const double d = xs[2 * c] - 0.102, w = 1e-4;
            us[c] = 2.0 * std::exp(-0.5 * d * d / (w * w));
            gs[2 * c] = -us[c] * d / (w * w), gs[2 * c + 1] = 0;
        }
    };
    EXPECT_NEAR(offCubicAlongSegment(spike, a, b, 2, 64), 2.0, 1e-9);  // the point s = 1/2 sits on the peak
    auto notFinite = [](int64_t k, const double*, double* us, double* gs) {
        for (int64_t c = 0; c < k; ++c) us[c] = NAN, gs[2 * c] = gs[2 * c + 1] = 0;
    };
    EXPECT_THROW(offCubicAlongSegment(notFinite, a, b, 2), std::invalid_argument);
    EXPECT_THROW(offCubicAlongSegment(cubic, a, b, 2, 1), std::invalid_argument);
}

TEST(Diagnostics, FourthDifferenceIsZeroForACubicAndTwentyFourH4ForAQuartic) {
    auto poly = [](double c4) {
        return [c4](int64_t k, const double* xs, double* us, double* gs) {
            for (int64_t c = 0; c < k; ++c) {
                const double* x = xs + 2 * c;
                us[c] = c4 * std::pow(x[0], 4) + 40 * x[0] * x[0] * x[0] - 7 * x[0] * x[1] + 3 * x[1];
                EXPECT_EQ(gs, nullptr);  // energies only
            }
        };
    };
    const double x[2] = {0.1, -0.2}, s[2] = {0.004, 0.003};
    EXPECT_NEAR(fourthDifferenceAlongStep(poly(0), x, s, 2), 0.0, 1e-12);
    // along the step U(x + t s) has the quartic term c4 s0^4 t^4: its fourth difference (h = 1) is 24 c4 s0^4
    const double c4 = 5e9;
    EXPECT_NEAR(fourthDifferenceAlongStep(poly(c4), x, s, 2), 24 * c4 * std::pow(s[0], 4), 1e-6);
    auto notFinite = [](int64_t k, const double*, double* us, double*) {
        for (int64_t c = 0; c < k; ++c) us[c] = c == 3 ? INFINITY : 0.0;
    };
    EXPECT_THROW(fourthDifferenceAlongStep(notFinite, x, s, 2), std::invalid_argument);
}
