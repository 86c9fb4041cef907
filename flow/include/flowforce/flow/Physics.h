#pragma once
// Physical constants and molecule facts that more than one part of FlowForce uses: one definition each.

#include <array>
#include <cmath>
#include <cstdint>

namespace flowforce {

/** Boltzmann constant times Avogadro's number, kJ/mol/K: the exact SI value k_B N_A (CODATA 2018),
 *  the value OpenMM uses. k_B T at 300 K is 2.494339 kJ/mol. */
constexpr double kBoltzmannKJPerMolK = 0.00831446261815324;

/** The energy cut of the reverse-KL loss (paper SI-2.5), for an energy e in k_B T:
 *  e up to kEnergyCutKT, then kEnergyCutKT + log(1 + e - kEnergyCutKT), never above kEnergyCeilingKT. */
constexpr double kEnergyCutKT = 1e3;
constexpr double kEnergyCeilingKT = 1e9;
inline double energyCut(double e) {
    const double v = e <= kEnergyCutKT ? e : kEnergyCutKT + std::log1p(e - kEnergyCutKT);
    return std::fmin(v, kEnergyCeilingKT);
}

/** Backbone dihedrals of alanine dipeptide, 0-based atom indices of data/alanine-dipeptide.pdb:
 *  phi = C-N-CA-C, psi = N-CA-C-N. */
constexpr std::array<int64_t, 4> kAlanineDipeptidePhi{4, 6, 8, 14};
constexpr std::array<int64_t, 4> kAlanineDipeptidePsi{6, 8, 14, 16};

}  // namespace flowforce
