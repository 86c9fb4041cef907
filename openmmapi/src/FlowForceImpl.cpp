#include "internal/FlowForceImpl.h"

#include "FlowForceKernels.h"

#include "flowforce/flow/Potential.h"

#include <openmm/OpenMMException.h>
#include <openmm/internal/ContextImpl.h>

#include <algorithm>
#include <vector>

using OpenMM::OpenMMException;

namespace FlowForcePlugin {

FlowForceImpl::FlowForceImpl(const FlowForce& owner) : owner_(owner) {}

FlowForceImpl::~FlowForceImpl() = default;

void FlowForceImpl::initialize(OpenMM::ContextImpl& context) {
    const OpenMM::System& system = context.getSystem();
    const int numSystem = system.getNumParticles();
    const std::vector<int> particles = owner_.getEffectiveParticles();
    if (owner_.getParticles().empty() && owner_.getNumParticles() > numSystem)
        throw OpenMMException("FlowForce: the model describes " + std::to_string(owner_.getNumParticles()) +
                              " particles but the System has only " + std::to_string(numSystem));
    std::vector<char> used(static_cast<size_t>(numSystem), 0);
    for (int p : particles) {
        if (p < 0 || p >= numSystem)
            throw OpenMMException("FlowForce: particle index " + std::to_string(p) + " is out of range (the System has " +
                                  std::to_string(numSystem) + " particles)");
        if (used[static_cast<size_t>(p)]++)
            throw OpenMMException("FlowForce: particle " + std::to_string(p) + " appears more than once in the particle list");
    }
    auto potential = createPotential(owner_, context.getPlatform().getName(), platformThreads(context));
    kernel_ = context.getPlatform().createKernel(CalcFlowForceKernel::Name(), context);
    kernel_.getAs<CalcFlowForceKernel>().initialize(system, owner_, std::move(potential));
}

double FlowForceImpl::calcForcesAndEnergy(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy, int groups) {
    if ((groups & (1 << owner_.getForceGroup())) == 0) return 0.0;
    return kernel_.getAs<CalcFlowForceKernel>().execute(context, includeForces, includeEnergy);
}

std::vector<std::string> FlowForceImpl::getKernelNames() { return {CalcFlowForceKernel::Name()}; }

void FlowForceImpl::updateParametersInContext(OpenMM::ContextImpl& context) {
    kernel_.getAs<CalcFlowForceKernel>().copyParametersToContext(context, owner_);
}

int FlowForceImpl::platformThreads(OpenMM::ContextImpl& context) {
    // the CPU platform's "Threads" property of this Context (OPENMM_CPU_THREADS or the core count by
    // default); Reference and platforms without the property compute on the calling thread
    const OpenMM::Platform& platform = context.getPlatform();
    const auto& names = platform.getPropertyNames();
    if (std::find(names.begin(), names.end(), "Threads") == names.end()) return 1;
    try {
        return std::max(1, std::stoi(platform.getPropertyValue(context.getOwner(), "Threads")));
    } catch (const std::exception&) {
        return 1;
    }
}

std::shared_ptr<flowforce::Potential> FlowForceImpl::createPotential(const FlowForce& force, const std::string& platformName,
                                                                     int threads) {
    flowforce::PotentialOptions options;
    options.threads = threads;
    options.backend = force.getBackend() == FlowForce::LibTorch ? flowforce::Backend::LibTorch : flowforce::Backend::Native;
    switch (force.getPrecision()) {
        case FlowForce::Double: options.precision = flowforce::Precision::Double; break;
        case FlowForce::Single: options.precision = flowforce::Precision::Single; break;
        case FlowForce::PlatformDefault:
            options.precision = platformName == "Reference" ? flowforce::Precision::Double : flowforce::Precision::Single;
            break;
    }
    try {
        std::shared_ptr<flowforce::Potential> potential = flowforce::loadPotentialFromBytes(
            force.getModelBytes(), "model file '" + force.getModelFile() + "'", force.getNumParticles(), options);
        if (potential->numParticles() != force.getNumParticles())
            throw OpenMMException("FlowForce: the model describes " + std::to_string(potential->numParticles()) +
                                  " particles but the force expects " + std::to_string(force.getNumParticles()));
        return potential;
    } catch (const OpenMMException&) {
        throw;
    } catch (const std::exception& e) {
        throw OpenMMException(std::string("FlowForce: ") + e.what());
    }
}

}  // namespace FlowForcePlugin
