#pragma once
// How narrow the features of a molecular flow's density are, in the units of the internal coordinates
// and against how far those coordinates move in one MD step: whether a model is safe to integrate.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Flow.h"

#include <functional>
#include <string>
#include <vector>

namespace flowforce {

/** The narrowest significant bump of a smooth flow's density on given configurations. */
struct FLOWFORCE_FLOW_EXPORT FeatureReport {
    bool found = false;              ///< false for flows without smooth mixtures or without embedding
    int64_t layer = -1;              ///< index in Flow::layers() (data -> latent order)
    int64_t dim = -1;                ///< internal coordinate (flow dimension)
    std::string coordinate;          ///< e.g. "bond 3 (atom 7 to 6)"
    std::string unit;                ///< "nm" (bonds) or "rad" (angles, torsions)
    double width = 0;                ///< full width at half height of the bump, in unit
    double stepDisplacement = 0;     ///< root-mean-square change of that coordinate in one time step, in unit
    double ratio = 0;                ///< width / stepDisplacement
    int64_t significantFeatures = 0; ///< bumps counted (over configurations, elements and components)
    int64_t belowOneStep = 0;        ///< of those, how many are narrower than one step's displacement
};

/**
 * Scans every smooth-mixture coupling of a molecular flow at configurations x [B, 3n] (nm): every mixture
 * component whose bump changes the density noticeably (its peak adds at least `significance` times the
 * mixture's density there), its width at half height in the layer's coordinate, converted to the internal
 * coordinate through the stretch of the layers before it (the product of their element-wise derivatives for
 * that dimension, and the embedding's map), against the coordinate's thermal displacement in one step:
 * v_rms dt with v_rms^2 = k_B T sum_atoms |dq/dx|^2 / m (masses in Da, T in K, dt in ps).
 */
FLOWFORCE_FLOW_EXPORT FeatureReport narrowestFeature(Flow& flow, const torch::Tensor& x, const std::vector<double>& masses, double temperatureK,
                               double timestepPs, double significance = 0.1);

/** A potential as the tools see it: energy(k, xs, us, gs) fills us [k] with U (kJ/mol) and, unless gs is null
 *  (energies only), gs [k, 3n] with dU/dx (kJ/mol/nm) at the k configurations xs [k, 3n] (nm). */
using PotentialFunction = std::function<void(int64_t, const double*, double*, double*)>;

/** The stiffest vibration of a potential at one configuration: the largest eigenvalue omega^2 of the
 *  mass-weighted Hessian M^-1/2 H M^-1/2. Velocity Verlet with step dt is stable for omega dt < 2 and its
 *  energy error grows like (omega dt)^2, so this is what decides whether a potential can be integrated. */
struct FLOWFORCE_FLOW_EXPORT StiffestMode {
    double omega = 0;            ///< angular frequency, 1/ps (0 if the Hessian has no positive eigenvalue)
    double periodFs = 0;         ///< 2 pi / omega, fs (infinite if omega is 0)
    std::vector<double> share;   ///< per atom: the share of the mode's mass-weighted amplitude (sums to 1)
    /** The atoms carrying most of the mode, largest first, e.g. "17 (61%), 16 (35%)". */
    std::string atoms(double minimumShare = 0.1) const;
};

/**
 * The stiffest mode of a potential at configuration x [3n] (nm). The Hessian comes from central differences
 * of the gradient with step h (nm), symmetrised; masses in Da (so omega^2 is in kJ/mol/nm^2/Da = 1/ps^2).
 * Throws std::invalid_argument on non-positive masses or a gradient that is not finite around x.
 */
FLOWFORCE_FLOW_EXPORT StiffestMode stiffestMode(const PotentialFunction& energy, const double* x, const std::vector<double>& masses,
                                               double h = 1e-5);

/**
 * How far a potential departs, along the straight segment from a to b ([dim], nm; an MD step), from the cubic
 * that its energies and slopes at both ends determine (Hermite): max |U(s) - H(s)| in kJ/mol over points + 1
 * evenly spaced s in [0, 1]. A smooth potential resolved by the step gives a tiny figure (a force field at
 * 1 fs: ~1e-5 kJ/mol); structure narrower than the step, which velocity Verlet cannot see, gives a large one.
 */
FLOWFORCE_FLOW_EXPORT double offCubicAlongSegment(const PotentialFunction& energy, const double* a, const double* b, int64_t dim,
                                                  int points = 64);

/**
 * The fourth difference U(x-2s) - 4U(x-s) + 6U(x) - 4U(x+s) + U(x+2s) (kJ/mol) of a potential along a step s
 * ([dim], nm) from x: zero for a potential that is a cubic along the step, the fourth derivative along s for a
 * smooth one, of the order of a feature's height for structure narrower than the step. The same figure as
 * roughnessLoss (Losses.h), which penalises it in training. Asks the potential for energies only (gs null).
 * Throws std::invalid_argument where U is not finite.
 */
FLOWFORCE_FLOW_EXPORT double fourthDifferenceAlongStep(const PotentialFunction& energy, const double* x, const double* step,
                                                       int64_t dim);

/** Full width at half height of the bump density sigma'(t) of a smooth mixture component with sharpness s
 *  (exponential ramp, beta 1 or 2) or monomial order s, in units of the component's support (1/a wide). */
FLOWFORCE_FLOW_EXPORT double bumpHalfWidth(double s, RampType ramp, int beta);

}  // namespace flowforce
