#include "flowforce/flow/Losses.h"

#include "flowforce/flow/Physics.h"

#include <cmath>

namespace flowforce {

DataLosses dataLosses(Flow& flow, const torch::Tensor& x, const torch::Tensor& forces, bool createGraph) {
    if (!forces.defined()) return {-flow.logProb(x).mean(), {}};
    auto [u, gradient] = flow.energyAndGradient(x, createGraph);
    return {u.mean(), forceMatchingLoss(forces, gradient)};
}

torch::Tensor forceMatchingErrors(const torch::Tensor& forces, const torch::Tensor& gradient) {
    return (forces + gradient).pow(2).mean(-1);
}

torch::Tensor forceMatchingLoss(const torch::Tensor& forces, const torch::Tensor& gradient) {
    return forceMatchingErrors(forces, gradient).mean();
}

torch::Tensor energyCut(const torch::Tensor& energies) {
    auto logBranch = kEnergyCutKT + torch::log1p((energies - kEnergyCutKT).clamp_min(0.0));
    auto cut = torch::where(energies <= kEnergyCutKT, energies, logBranch);
    return torch::fmin(cut, torch::full({}, kEnergyCeilingKT, cut.options()));
}

torch::Tensor reverseKL(const torch::Tensor& energies, const torch::Tensor& logProb) {
    return (energyCut(energies) + logProb).mean();
}

ImportanceEstimates importanceEstimates(const torch::Tensor& energies, const torch::Tensor& logProb) {
    torch::NoGradGuard ng;
    ImportanceEstimates e;
    e.valid = torch::isfinite(energies).logical_and(energies < kEnergyCeilingKT);
    auto logw = torch::where(e.valid, -energies - logProb, torch::full({}, -INFINITY, energies.options()));
    const double n = static_cast<double>(energies.size(0));
    const double lse = torch::logsumexp(logw, 0).item<double>();
    const double lse2 = torch::logsumexp(2.0 * logw, 0).item<double>();
    e.essFraction = std::exp(2.0 * lse - lse2) / n;
    e.logPartitionFunction = lse - std::log(n);
    return e;
}

}  // namespace flowforce
