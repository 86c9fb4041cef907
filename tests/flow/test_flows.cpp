// Coupling flows: bijectivity, log-det against the full autograd Jacobian, normalisation, energy
// gradients, inverted layers and model files.
#include "TestUtil.h"

#include "flowforce/flow/Flow.h"
#include "flowforce/flow/ModelFile.h"

#include <torch/csrc/autograd/autograd.h>

#include <cstdio>
#include <fstream>

using namespace flowforce;
using namespace flowforce::test;

namespace {

nlohmann::json smoothConfig() { return {{"type", "smooth"}, {"components", 6}}; }
nlohmann::json splineConfig() { return {{"type", "spline"}, {"bins", 8}}; }

std::shared_ptr<Flow> makeFlow(const nlohmann::json& transform, bool circular, int64_t dim = 2, uint64_t seed = 1,
                               bool withBox = false) {
    torch::manual_seed(seed);
    auto arch = alternatingCouplingArchitecture(dim, std::vector<bool>(dim, circular), 4, transform, {32, 32},
                                                Activation::SiLU);
    if (withBox) {
        std::vector<double> lo(dim, -M_PI), hi(dim, M_PI);
        arch["layers"].insert(arch["layers"].begin(), nlohmann::json{{"type", "box"}, {"low", lo}, {"high", hi}});
    }
    auto flow = std::make_shared<Flow>(arch);
    flow->to(torch::kFloat64);
    flow->setInversion({16, 1e-13});
    return flow;
}

/** Full Jacobian of the flow's forward map at each row of x: [B, d, d]. */
torch::Tensor jacobian(Flow& flow, const torch::Tensor& x) {
    auto xg = x.clone().requires_grad_(true);
    auto z = flow.forward(xg).out;
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < z.size(1); ++i)
        rows.push_back(torch::autograd::grad({z.select(1, i).sum()}, {xg}, {}, true)[0]);
    return torch::stack(rows, 1);
}

struct FlowCase {
    std::string name;
    nlohmann::json transform;
    bool circular;
};

class FlowTest : public ::testing::TestWithParam<FlowCase> {};

std::string tempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

}  // namespace

TEST_P(FlowTest, RoundTripAndLogDetConsistency) {
    auto flow = makeFlow(GetParam().transform, GetParam().circular, 3);
    auto x = torch::rand({300, 3}, f64());
    auto fwd = flow->forward(x);
    auto inv = flow->inverse(fwd.out);
    EXPECT_LT(maxAbs(inv.out - x), 1e-10);
    EXPECT_LT(maxAbs(inv.logdet + fwd.logdet), 1e-8);
}

TEST_P(FlowTest, LogDetMatchesFullJacobian) {
    auto flow = makeFlow(GetParam().transform, GetParam().circular, 3);
    auto x = torch::rand({50, 3}, f64());
    auto J = jacobian(*flow, x);
    auto logabsdet = std::get<1>(torch::linalg_slogdet(J));
    EXPECT_LT(maxAbs(logabsdet - flow->forward(x).logdet), 1e-10);
}

TEST_P(FlowTest, DensityIntegratesToOneOnTheSquare) {
    auto flow = makeFlow(GetParam().transform, GetParam().circular, 2);
    // Smooth flows: spectral convergence. Spline flows have kinks along curves, where composite
    // quadrature converges only as h^2, hence their looser bound.
    auto [nodes, weights] = gaussLegendre(150);  // 750 x 750 nodes
    auto grid = torch::meshgrid({nodes, nodes}, "ij");
    auto x = torch::stack({grid[0].reshape(-1), grid[1].reshape(-1)}, 1);
    auto w = torch::outer(weights, weights).reshape(-1);
    torch::NoGradGuard ng;
    const double integral = (torch::exp(flow->logProb(x)) * w).sum().item<double>();
    const bool smooth = GetParam().transform.at("type") == "smooth";
    EXPECT_NEAR(integral, 1.0, smooth ? 1e-7 : 1e-4) << GetParam().name;
}

TEST_P(FlowTest, EnergyGradientMatchesFiniteDifferences) {
    auto flow = makeFlow(GetParam().transform, GetParam().circular, 2, 3, /*withBox=*/true);
    auto x = torch::rand({20, 2}, f64()) * 5.0 - 2.5;
    auto [u, grad] = flow->energyAndGradient(x);
    const double eps = 1e-6;
    torch::NoGradGuard ng;
    for (int64_t j = 0; j < 2; ++j) {
        auto xp = x.clone(), xm = x.clone();
        xp.select(1, j) += eps;
        xm.select(1, j) -= eps;
        auto fd = (-flow->logProb(xp) + flow->logProb(xm)) / (2 * eps);
        EXPECT_LT(maxAbs(fd - grad.select(1, j)), 1e-5 * (1.0 + maxAbs(fd))) << GetParam().name;
    }
}

TEST_P(FlowTest, SaveLoadGivesIdenticalOutputs) {
    auto flow = makeFlow(GetParam().transform, GetParam().circular, 2, 5, true);
    const auto path = tempPath("flow_" + GetParam().name + ".flow");
    saveFlow(*flow, path, {{"temperature_K", 300.0}});
    nlohmann::json info;
    auto loaded = loadFlow(path, &info);
    EXPECT_EQ(info.at("temperature_K").get<double>(), 300.0);
    EXPECT_EQ(loaded->config(), flow->config());
    EXPECT_EQ(loaded->parameterCount(), flow->parameterCount());
    auto x = torch::rand({100, 2}, f64()) * 6.0 - 3.0;
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(loaded->logProb(x), flow->logProb(x)));
    std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Flows, FlowTest,
                         ::testing::Values(FlowCase{"SmoothInterval", smoothConfig(), false},
                                           FlowCase{"SmoothTorus", smoothConfig(), true},
                                           FlowCase{"SplineInterval", splineConfig(), false},
                                           FlowCase{"SplineTorus", splineConfig(), true}),
                         [](const auto& info) { return info.param.name; });

TEST(InvertedFlow, AnalyticDirectionCanSitOnEitherSide) {
    // The same couplings with the smooth transform inverted: density evaluation now needs the root
    // finder, sampling is analytic. Both directions stay consistent.
    torch::manual_seed(7);
    auto arch = alternatingCouplingArchitecture(2, {false, true}, 2, smoothConfig(), {16}, Activation::Sin);
    nlohmann::json inverted = arch;
    for (auto& l : inverted["layers"]) l = nlohmann::json{{"type", "inverted"}, {"layer", l}};
    Flow a(arch), b(inverted);
    a.to(torch::kFloat64);
    b.to(torch::kFloat64);
    b.setInversion({16, 1e-13});
    {
        torch::NoGradGuard ng;
        auto pa = a.named_parameters(), pb = b.named_parameters();
        ASSERT_EQ(pa.size(), pb.size());
        for (size_t i = 0; i < pa.size(); ++i) pb[i].value().copy_(pa[i].value());
    }
    auto x = torch::rand({100, 2}, f64());
    // b's forward is a's inverse applied layer by layer in a's order; check each is a bijection and
    // that b.inverse(b.forward(x)) = x with consistent log-dets
    auto fb = b.forward(x);
    auto ib = b.inverse(fb.out);
    EXPECT_LT(maxAbs(ib.out - x), 1e-10);
    EXPECT_LT(maxAbs(ib.logdet + fb.logdet), 1e-8);
    // Single inverted layer = inverse of the plain layer
    auto la = a.layers()[0], lb = b.layers()[0];
    EXPECT_LT(maxAbs(lb->forward(x).out - la->inverse(x).out), 1e-14);
    // gradient of the density through the root finder matches finite differences
    auto [u, grad] = b.energyAndGradient(x.narrow(0, 0, 5) * 0.9 + 0.05);
    torch::NoGradGuard ng;
    const double eps = 1e-6;
    auto x0 = x.narrow(0, 0, 5) * 0.9 + 0.05;
    for (int64_t j = 0; j < 2; ++j) {
        auto xp = x0.clone(), xm = x0.clone();
        xp.select(1, j) += eps;
        xm.select(1, j) -= eps;
        auto fd = (-b.logProb(xp) + b.logProb(xm)) / (2 * eps);
        EXPECT_LT(maxAbs(fd - grad.select(1, j)), 1e-5 * (1.0 + maxAbs(fd)));
    }
}

TEST(Coupling, RejectsInconsistentLayouts) {
    auto layer = [](nlohmann::json cond, nlohmann::json trans) {
        return nlohmann::json{{"dim", 3},
                              {"circular", {false, false, true}},
                              {"layers",
                               {{{"type", "coupling"}, {"conditioning", cond}, {"transformed", trans},
                                 {"transform", smoothConfig()}, {"conditioner", {{"hidden", {8}}}}}}}};
    };
    EXPECT_THROW(Flow(layer({0}, {0})), std::invalid_argument);     // overlap
    EXPECT_THROW(Flow(layer({0}, {5})), std::invalid_argument);     // out of range
    EXPECT_THROW(Flow(layer({0}, {1, 2})), std::invalid_argument);  // mixed topology
    EXPECT_THROW(Flow(layer(nlohmann::json::array(), {1})), std::invalid_argument);      // nothing to condition on
    EXPECT_NO_THROW(Flow(layer({0, 1}, {2})));
}

// ---------------------------------------------------------------------------------------------
// Model files: corrupt, truncated and mismatched files are rejected with a message, never a crash.

namespace {
std::string validModelBytes() {
    auto flow = makeFlow(smoothConfig(), false, 2, 9);
    return serializeModelFile(toModelFile(*flow));
}
void expectRejected(const std::string& bytes, const std::string& fragment) {
    try {
        buildFlow(parseModelFile(bytes, "test"));
        ADD_FAILURE() << "accepted a bad model file (expected: " << fragment << ")";
    } catch (const ModelFileError& e) {
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
}
}  // namespace

TEST(ModelFile, RejectsTruncatedFilesAtEveryLength) {
    const auto bytes = validModelBytes();
    for (size_t len : {size_t(0), size_t(3), size_t(8), size_t(20), bytes.size() / 2, bytes.size() - 1}) {
        EXPECT_THROW(buildFlow(parseModelFile(bytes.substr(0, len), "t")), ModelFileError) << "length " << len;
    }
    expectRejected(bytes.substr(0, bytes.size() - 8), "truncated");
}

TEST(ModelFile, RejectsGarbageAndForeignFiles) {
    expectRejected(std::string(64, '\xff'), "header length");
    std::string notJson(8, '\0');
    notJson[0] = 10;
    notJson += "not json!!";
    expectRejected(notJson, "not valid JSON");
    std::string foreign = "{\"__metadata__\":{\"format\":\"pt\"}}";
    std::string withLen(8, '\0');
    withLen[0] = static_cast<char>(foreign.size());
    expectRejected(withLen + foreign, "not a FlowForce model file");
}

TEST(ModelFile, RejectsMismatchedWeightsAndVersions) {
    auto flow = makeFlow(smoothConfig(), false, 2, 9);
    auto m = toModelFile(*flow);
    auto missing = m;
    missing.tensors.erase(missing.tensors.begin());
    expectRejected(serializeModelFile(missing), "missing");
    auto extra = m;
    extra.tensors["bogus"] = StoredTensor{TensorType::F64, {2}, {0.0, 0.0}};
    expectRejected(serializeModelFile(extra), "does not belong");
    auto wrongShape = m;
    wrongShape.tensors.begin()->second = StoredTensor{TensorType::F64, {3, 3}, std::vector<double>(9, 0.0)};
    expectRejected(serializeModelFile(wrongShape), "shape");
    auto badArch = m;
    badArch.architecture["layers"][0]["transform"]["type"] = "magic";
    expectRejected(serializeModelFile(badArch), "invalid architecture");
    auto bytes = serializeModelFile(m);
    auto pos = bytes.find("\"format_version\":\"2\"");
    ASSERT_NE(pos, std::string::npos);
    bytes.replace(pos, 20, "\"format_version\":\"9\"");
    expectRejected(bytes, "format version 9");
}

TEST(ModelFile, MissingFileNamesThePath) {
    try {
        loadFlow("/nonexistent/dir/model.flow");
        FAIL();
    } catch (const ModelFileError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.flow"), std::string::npos);
    }
}

TEST(ModelFile, SafetensorsLayoutIsReadableWithoutLibTorch) {
    // header length, JSON header with __metadata__, offsets covering the data exactly
    auto bytes = validModelBytes();
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
    auto header = nlohmann::json::parse(bytes.substr(8, n));
    EXPECT_EQ(header["__metadata__"]["format"], "flowforce");
    EXPECT_TRUE(header["__metadata__"]["architecture"].is_string());
    EXPECT_EQ((8 + n) % 8, 0u);
    uint64_t total = 0;
    for (auto& [k, v] : header.items())
        if (k != "__metadata__") {
            EXPECT_EQ(v["dtype"], "F64");
            total += v["data_offsets"][1].get<uint64_t>() - v["data_offsets"][0].get<uint64_t>();
        }
    EXPECT_EQ(total, bytes.size() - 8 - n);
}
