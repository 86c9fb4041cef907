#pragma once
// How narrow the features of a molecular flow's density are, in the units of the internal coordinates
// and against how far those coordinates move in one MD step: whether a model is safe to integrate.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Flow.h"

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

/** Full width at half height of the bump density sigma'(t) of a smooth mixture component with sharpness s
 *  (exponential ramp, beta 1 or 2) or monomial order s, in units of the component's support (1/a wide). */
FLOWFORCE_FLOW_EXPORT double bumpHalfWidth(double s, RampType ramp, int beta);

}  // namespace flowforce
