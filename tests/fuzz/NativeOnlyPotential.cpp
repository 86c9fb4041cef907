// The fuzz build's stand-in for flow/src/Potential.cpp, which needs LibTorch: FlowForce model files go
// through the same LibTorch-free reader as in the plugin (summarizeFlowModel, flow/src/MolecularModel.cpp);
// TorchScript modules are refused. Loading a potential for evaluation (a Context) is not part of the
// fuzz targets.
#include "flowforce/flow/Potential.h"

#include <stdexcept>

namespace flowforce {

std::string backendName(Backend b) { return b == Backend::Native ? "native" : "libtorch"; }

ModelSummary summarizeModel(const std::string& bytes, const std::string& name, int numParticles) {
    checkModelParticleCount(numParticles, name);
    if (bytes.size() >= 2 && bytes.compare(0, 2, "PK") == 0)
        throw std::runtime_error(name + ": TorchScript modules need LibTorch, which the fuzz build leaves out");
    return summarizeFlowModel(bytes, name, numParticles);
}

std::unique_ptr<Potential> loadPotentialFromBytes(const std::string&, const std::string& name, int, const PotentialOptions&) {
    throw std::logic_error(name + ": loadPotentialFromBytes is not part of the fuzz build");
}

std::unique_ptr<Potential> loadPotential(const std::string& path, int, const PotentialOptions&) {
    throw std::logic_error(path + ": loadPotential is not part of the fuzz build");
}

}  // namespace flowforce
