#pragma once
// Shared helpers of the flow-library tests (double precision throughout).
#include "flowforce/flow/Transforms.h"

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flowforce::test {

inline torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kFloat64); }

/** A named transform configuration exercised by the parametrised tests. */
struct TransformCase {
    std::string name;
    nlohmann::json config;
    bool smooth() const { return config.at("type") == "smooth"; }
};

inline std::vector<TransformCase> allTransformCases() {
    std::vector<TransformCase> cases;
    for (bool circ : {false, true}) {
        const std::string topo = circ ? "Circle" : "Interval";
        cases.push_back({"SmoothBeta1" + topo, {{"type", "smooth"}, {"circular", circ}, {"components", 6}, {"beta", 1}}});
        cases.push_back({"SmoothBeta2" + topo, {{"type", "smooth"}, {"circular", circ}, {"components", 6}, {"beta", 2}}});
        cases.push_back({"SmoothMonomial" + topo,
                         {{"type", "smooth"}, {"circular", circ}, {"components", 4}, {"ramp", "monomial"}, {"order", 4}}});
        cases.push_back({"Spline" + topo, {{"type", "spline"}, {"circular", circ}, {"bins", 8}}});
    }
    return cases;
}

/** Raw parameters for n elements drawn from N(0, scale^2), reproducibly. */
inline torch::Tensor randomParams(const ElementwiseTransform& t, int64_t n, uint64_t seed, double scale = 1.5) {
    auto gen = at::detail::createCPUGenerator(seed);
    return torch::randn({n, t.numParams()}, gen, f64()) * scale;
}

inline torch::Tensor uniform(int64_t n, uint64_t seed, double lo = 0.0, double hi = 1.0) {
    auto gen = at::detail::createCPUGenerator(seed);
    return lo + (hi - lo) * torch::rand({n}, gen, f64());
}

inline double maxAbs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

/** Composite 5-point Gauss-Legendre nodes and weights on [0,1] with `intervals` equal pieces. */
inline std::pair<torch::Tensor, torch::Tensor> gaussLegendre(int64_t intervals) {
    const double n[5] = {-0.9061798459386640, -0.5384693101056831, 0.0, 0.5384693101056831, 0.9061798459386640};
    const double w[5] = {0.2369268850561891, 0.4786286704993665, 0.5688888888888889, 0.4786286704993665,
                         0.2369268850561891};
    auto nodes = torch::empty({intervals * 5}, f64()), weights = torch::empty({intervals * 5}, f64());
    auto pn = nodes.accessor<double, 1>();
    auto pw = weights.accessor<double, 1>();
    const double h = 1.0 / static_cast<double>(intervals);
    for (int64_t i = 0; i < intervals; ++i)
        for (int k = 0; k < 5; ++k) {
            pn[i * 5 + k] = (static_cast<double>(i) + 0.5 * (n[k] + 1.0)) * h;
            pw[i * 5 + k] = 0.5 * w[k] * h;
        }
    return {nodes, weights};
}

}  // namespace flowforce::test
