#pragma once
// Molecules for the training and evaluation commands: the molecule options shared by every
// subcommand, the Boltzmann-generator model of a molecule, datasets as tensors, and the classical
// target energy (OpenMM) used by the reverse KL and by evaluation.

#include "flowforce/flow/Flow.h"

#include <memory>
#include <string>

namespace CLI {
class App;
}

namespace flowforce::cli {

/** A molecule: PDB + z-matrix; empty paths mean the built-in alanine dipeptide. */
struct MoleculeOptions {
    std::string pdb, zmatrix;
};
/** Adds --pdb and --zmatrix to a subcommand. */
void addMoleculeOptions(CLI::App& cmd, MoleculeOptions& options);
/** The molecule's PDB file: --pdb, or the built-in alanine dipeptide's. */
std::string moleculePDB(const MoleculeOptions& molecule);

/** A molecular flow and the information stored with it in the model file. */
struct MolecularModel {
    std::shared_ptr<Flow> flow;
    nlohmann::json info;
};

/** What a new Boltzmann generator is made of (the seed paper's SI-2.4 layout in every case). */
struct ModelChoice {
    std::string transform = "smooth";  ///< "smooth" (8 bump components) or "spline" (8 bins)
    bool inverse = false;              ///< smooth transforms in the inverse direction (density by root finding)
    std::string activation = "sin";    ///< conditioner activation: sin (the paper's), silu or tanh (smooth ones)
    /** Smooth transforms: the span of the ramp sharpness, alpha in [0.866, 0.866 + span] (the paper's: 10).
     *  A smaller span keeps every bump's ramp wider (features no narrower than about 1 / (2 alpha) of the
     *  bump's support), at a cost in likelihood. */
    double sharpnessSpan = 10.0;
    uint64_t seed = 1;
    double temperature = 300.0;  ///< K, stored in the model
    /** Frames [B, 3n] (nm): when defined, every bond and angle gets its own range fitted to them: with
     *  rangeFit "data", [min, max] widened by rangeMargin (fitDataRanges, InternalCoordinates.h); with
     *  "gauss", the gauss map at the data's mean and standard deviation (fitDataGaussians). Otherwise the
     *  paper's fixed ranges. */
    torch::Tensor rangeFrames;
    std::string rangeFit = "data";
    double rangeMargin = 0.5;
    double gaussScale = 1.0;  ///< rangeFit "gauss": the map's sigma in units of the data's standard deviation
};

/** The Boltzmann-generator architecture of the seed paper (SI-2.4) for a molecule, untrained and seeded,
 *  conditioners 64-64. */
MolecularModel buildMolecularModel(const MoleculeOptions& molecule, const ModelChoice& choice);

/** A dataset as float64 tensors: positions [frames, 3n] nm, forces [frames, 3n] kJ/mol/nm (undefined
 *  if the file has none), energies [frames] kJ/mol (undefined if none). */
struct MolecularData {
    torch::Tensor positions, forces, energies;
};
/** Reads an H5MD dataset; checks it has 3n = dataDim coordinates per frame (and forces if needed). */
MolecularData loadMolecularData(const std::string& path, int64_t dataDim, int64_t maxFrames, bool needForces);

/** The classical potential energy of the molecule in units of k_B T, evaluated by OpenMM. */
class TargetEnergy {
public:
    virtual ~TargetEnergy() = default;
    /** u(x) [B] for x [B, 3n] nm, without gradients. */
    virtual torch::Tensor energies(const torch::Tensor& x) = 0;
    /** u(x) [B] connected to autograd: its gradient is -F/kT from OpenMM's forces. */
    virtual torch::Tensor energiesWithGradient(const torch::Tensor& x) = 0;
    /** Forces -du/dx [B, 3n] in k_B T per nm. */
    virtual torch::Tensor forces(const torch::Tensor& x) = 0;
    /** u(x) [B] and du/dx [B, 3n] (1/nm) from one evaluation, without autograd. */
    virtual std::pair<torch::Tensor, torch::Tensor> energiesAndGradients(const torch::Tensor& x) = 0;
};
std::unique_ptr<TargetEnergy> makeTargetEnergy(const MoleculeOptions& molecule, double temperature);

}  // namespace flowforce::cli
