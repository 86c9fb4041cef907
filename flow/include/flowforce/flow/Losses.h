#pragma once
// The losses and estimates of molecular flow training and evaluation (seed paper eqs. 2-5, SI-2.5,
// SI-2.6), one definition each: the negative log-likelihood, force matching, the reverse KL with the
// energy cut, and the importance-sampling estimates of the sampling efficiency and log Z.
// Energies u are in units of k_B T, forces in k_B T per length unit (nm for molecules).

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Flow.h"

#include <torch/torch.h>

#include <vector>

namespace flowforce {

/** The data terms of the loss for a batch of configurations x [B, dataDim]. */
struct FLOWFORCE_FLOW_EXPORT DataLosses {
    /** NLL: the mean of -log p(x), nats. */
    torch::Tensor nll;
    /** FM (undefined without reference forces): forceMatchingLoss of the reference forces and the flow's
     *  gradient d(-log p)/dx. */
    torch::Tensor fm;
};
/** NLL and, given reference forces f = F/k_BT [B, dataDim], FM. Without forces one forward pass gives
 *  the NLL (differentiable unless the caller disabled gradients); with forces the NLL comes from
 *  Flow::energyAndGradient, and with createGraph both terms stay differentiable in the parameters. */
FLOWFORCE_FLOW_EXPORT DataLosses dataLosses(Flow& flow, const torch::Tensor& x, const torch::Tensor& forces = {}, bool createGraph = false);

/** Force-matching error per configuration [B]: the mean over the Cartesian components of (f + du/dx)^2
 *  for reference forces f [B, d] and model gradients du/dx [B, d] (both in k_B T per length unit).
 *  Per component, not the squared norm: the normalisation under which the paper's w_f = 0.001
 *  (Table 1) balances NLL and FM, and its FME values compare. */
FLOWFORCE_FLOW_EXPORT torch::Tensor forceMatchingErrors(const torch::Tensor& forces, const torch::Tensor& gradient);
/** The FM loss: the mean of forceMatchingErrors over the batch, (1/length)^2. */
FLOWFORCE_FLOW_EXPORT torch::Tensor forceMatchingLoss(const torch::Tensor& forces, const torch::Tensor& gradient);

/** Random thermal steps [count, 3n] (nm): one time step of timestepFs (fs) at Maxwell-Boltzmann velocities of
 *  temperatureK (K) for atoms of the given masses (Da), the displacement of one MD step from a configuration. */
FLOWFORCE_FLOW_EXPORT torch::Tensor thermalSteps(const std::vector<double>& massesDa, double temperatureK, double timestepFs,
                                                 int64_t count, at::Generator generator);

/** Sub-step roughness penalty, nats^2: the mean over configurations x [B, d] of the squared fourth difference
 *  u(x-2s) - 4u(x-s) + 6u(x) - 4u(x+s) + u(x+2s) of u = -log p along steps s [B, d]. Zero for a potential that
 *  is a cubic along each step; a feature narrower than a step makes it of the order of the feature's height.
 *  Velocity Verlet integrates the first and fails on the second (an energy kick), so penalising it keeps
 *  structure narrower than an MD step out of a trained flow. Differentiable in the flow's parameters. */
FLOWFORCE_FLOW_EXPORT torch::Tensor roughnessLoss(Flow& flow, const torch::Tensor& x, const torch::Tensor& steps);

/** The energy cut of the reverse KL (Physics.h energyCut, paper SI-2.5) element-wise on energies in
 *  k_B T; differentiable (the logarithmic branch is never evaluated below the cut). */
FLOWFORCE_FLOW_EXPORT torch::Tensor energyCut(const torch::Tensor& energies);
/** The reverse KL up to the constant log Z, k_B T: the mean over flow samples x of
 *  energyCut(u(x)) + log p(x), for target energies u [B] and the flow's log p(x) [B]. */
FLOWFORCE_FLOW_EXPORT torch::Tensor reverseKL(const torch::Tensor& energies, const torch::Tensor& logProb);

/** Importance sampling of the target exp(-u) with N flow samples, weights w = exp(-u(x) - log p(x)). */
struct FLOWFORCE_FLOW_EXPORT ImportanceEstimates {
    /** Samples whose target energy counts [N] (bool): finite and below kEnergyCeilingKT, the value
     *  at which a target marks a failed evaluation; the others get weight 0. */
    torch::Tensor valid;
    /** Effective sample size over N: (sum w)^2 / (N sum w^2), in (0, 1] (NaN if no sample counts). */
    double essFraction = 0;
    /** log Z = log(sum w / N), the log partition function of exp(-u) (-inf if no sample counts). */
    double logPartitionFunction = 0;
};
FLOWFORCE_FLOW_EXPORT ImportanceEstimates importanceEstimates(const torch::Tensor& energies, const torch::Tensor& logProb);

}  // namespace flowforce
