#include "flowforce/flow/Losses.h"

#include "flowforce/flow/Physics.h"

#include <cmath>
#include <stdexcept>

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

torch::Tensor thermalSteps(const std::vector<double>& massesDa, double temperatureK, double timestepFs, int64_t count,
                           at::Generator generator) {
    if (massesDa.empty() || !(temperatureK > 0) || !(timestepFs > 0) || count < 0)
        throw std::invalid_argument("thermalSteps: need atoms, a positive temperature and a positive time step");
    std::vector<double> sigma;  // per Cartesian component: sqrt(kT/m) (nm/ps) times the step (ps)
    for (double m : massesDa) {
        if (!(m > 0)) throw std::invalid_argument("thermalSteps: masses must be positive");
        sigma.insert(sigma.end(), 3, std::sqrt(kBoltzmannKJPerMolK * temperatureK / m) * timestepFs * 1e-3);
    }
    auto scale = torch::tensor(sigma, torch::kFloat64);
    return torch::randn({count, scale.size(0)}, generator, torch::kFloat64) * scale;
}

torch::Tensor roughnessLoss(Flow& flow, const torch::Tensor& x, const torch::Tensor& steps) {
    if (x.sizes() != steps.sizes()) throw std::invalid_argument("roughnessLoss: configurations and steps differ in shape");
    auto points = torch::cat({x - 2 * steps, x - steps, x, x + steps, x + 2 * steps});
    auto u = (-flow.logProb(points)).view({5, x.size(0)});
    auto fourth = u[0] - 4 * u[1] + 6 * u[2] - 4 * u[3] + u[4];
    return fourth.pow(2).mean();
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
