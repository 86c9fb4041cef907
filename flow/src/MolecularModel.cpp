// readMolecularModel / summarizeFlowModel (Potential.h): the LibTorch-free part of loading a FlowForce
// model file as a molecular potential, shared by the plugin, the tools and the fuzz targets.
#include "flowforce/flow/Potential.h"

#include <stdexcept>

namespace flowforce {

void checkModelParticleCount(int numParticles, const std::string& name) {
    if (numParticles == 0 || numParticles < -1)
        throw std::runtime_error(name + ": invalid number of particles " + std::to_string(numParticles));
}

MolecularModel readMolecularModel(const std::string& bytes, const std::string& name, int numParticles) {
    checkModelParticleCount(numParticles, name);
    if (bytes.empty()) throw std::runtime_error(name + ": the model file is empty");
    if (!looksLikeModelFile(bytes))
        throw std::runtime_error(name + ": not a model file (neither a FlowForce model *.flow nor a TorchScript module)");
    MolecularModel m;
    m.file = parseModelFile(bytes, name);  // throws ModelFileError (a runtime_error)
    m.spec = validatedArchitecture(m.file, name);
    if (!m.spec.embedding)
        throw std::runtime_error(name + ": not a molecular model (it has no internal-coordinate embedding); "
                                        "FlowForce needs a model of particle positions");
    const int n = static_cast<int>(m.spec.embedding->numAtoms());
    if (numParticles > 0 && numParticles != n)
        throw std::runtime_error(name + ": the model describes " + std::to_string(n) + " particles but " +
                                 std::to_string(numParticles) + " were given");
    m.temperature = modelTemperature(m.file, name);
    m.description = "FlowForce flow, " + std::to_string(n) + " particles, " + std::to_string(m.spec.parameterCount()) + " parameters";
    return m;
}

ModelSummary summarizeFlowModel(const std::string& bytes, const std::string& name, int numParticles) {
    const auto m = readMolecularModel(bytes, name, numParticles);
    ModelSummary s;
    s.numParticles = static_cast<int>(m.spec.embedding->numAtoms());
    s.temperature = m.temperature;
    s.description = m.description;
    return s;
}

}  // namespace flowforce
