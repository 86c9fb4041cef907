#pragma once
// Architectures of molecular flows: the Boltzmann generator of the seed paper (SI-2.4, Fig. SI-2).

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Flow.h"
#include "flowforce/flow/InternalCoordinates.h"

namespace flowforce {

/**
 * Architecture JSON (for Flow) of the paper's Boltzmann generator for a molecule with z-matrix z.
 * Data x (Cartesian, nm) enter through the internal-coordinate embedding (bonds, angles, torsions
 * mapped to [0,1], torsions circular), with the smooth wall at the ends of the bond and angle ranges
 * (EmbeddingSpec: -log p rises smoothly to infinity there, keeping angles away from 180 degrees, where
 * torsions are undefined; the paper maps linearly). In the generative direction (latent -> data): the torsions,
 * split into two channels, are conditioned on each other by 8 couplings; bonds and angles are
 * conditioned on each other by 4 couplings; then angles are conditioned on all torsions, and bonds
 * on all angles and torsions. Flow layers are listed data side first, so this order is reversed.
 * @param transform     element-wise transform config ({"type": "smooth", "components": 8} or a spline)
 * @param invertSmooth  put smooth transforms in the inverse direction (density by root finding)
 */
FLOWFORCE_FLOW_EXPORT nlohmann::json boltzmannGeneratorArchitecture(const ZMatrix& z, const nlohmann::json& transform,
                                              std::vector<int64_t> hidden = {64, 64},
                                              Activation activation = Activation::Sin, bool invertSmooth = false);

}  // namespace flowforce
