#include "ReferenceFlowForceKernels.h"

#include "internal/FlowForceImpl.h"

#include "flowforce/flow/Physics.h"
#include "flowforce/flow/Potential.h"

#include <openmm/OpenMMException.h>
#include <openmm/Vec3.h>
#include <openmm/internal/ContextImpl.h>
#include <openmm/reference/ReferencePlatform.h>

#include <cmath>

using OpenMM::OpenMMException;

namespace FlowForcePlugin {

namespace {

OpenMM::ReferencePlatform::PlatformData& platformData(OpenMM::ContextImpl& context) {
    return *static_cast<OpenMM::ReferencePlatform::PlatformData*>(context.getPlatformData());
}

}  // namespace

ReferenceCalcFlowForceKernel::ReferenceCalcFlowForceKernel(const std::string& name, const OpenMM::Platform& platform)
    : CalcFlowForceKernel(name, platform) {}

ReferenceCalcFlowForceKernel::~ReferenceCalcFlowForceKernel() = default;

void ReferenceCalcFlowForceKernel::initialize(const OpenMM::System&, const FlowForce& force,
                                              std::shared_ptr<flowforce::Potential> potential) {
    potential_ = std::move(potential);
    particles_ = force.getEffectiveParticles();
    positions_.assign(particles_.size() * 3, 0.0);
    gradient_.assign(particles_.size() * 3, 0.0);
    kT_ = flowforce::kBoltzmannKJPerMolK * force.getTemperature();
    offset_ = force.getEnergyOffset();
}

double ReferenceCalcFlowForceKernel::execute(OpenMM::ContextImpl& context, bool includeForces, bool) {
    auto& data = platformData(context);
    const std::vector<OpenMM::Vec3>& pos = *data.positions;
    for (size_t i = 0; i < particles_.size(); ++i) {
        const OpenMM::Vec3& r = pos[static_cast<size_t>(particles_[i])];
        for (int k = 0; k < 3; ++k) {
            if (!std::isfinite(r[k]))
                throw OpenMMException("FlowForce: the position of particle " + std::to_string(particles_[i]) +
                                      " is not finite (NaN or infinity)");
            positions_[3 * i + static_cast<size_t>(k)] = r[k];
        }
    }
    double u = 0.0;
    try {
        u = includeForces ? potential_->evaluate(positions_, gradient_) : potential_->energy(positions_);
    } catch (const std::exception& e) {
        throw OpenMMException(std::string("FlowForce: ") + e.what());
    }
    if (!std::isfinite(u)) throw OpenMMException("FlowForce: the model returned a non-finite energy");
    if (includeForces) {
        std::vector<OpenMM::Vec3>& forces = *data.forces;
        for (size_t i = 0; i < particles_.size(); ++i) {
            OpenMM::Vec3& f = forces[static_cast<size_t>(particles_[i])];
            for (int k = 0; k < 3; ++k) {
                const double g = gradient_[3 * i + static_cast<size_t>(k)];
                if (!std::isfinite(g))
                    throw OpenMMException("FlowForce: the model returned a non-finite force on particle " +
                                          std::to_string(particles_[i]));
                f[k] -= kT_ * g;
            }
        }
    }
    return kT_ * u + offset_;
}

void ReferenceCalcFlowForceKernel::copyParametersToContext(OpenMM::ContextImpl&, const FlowForce& force) {
    if (force.getEffectiveParticles() != particles_)
        throw OpenMMException("FlowForce: updateParametersInContext cannot change the particles");
    kT_ = flowforce::kBoltzmannKJPerMolK * force.getTemperature();
    offset_ = force.getEnergyOffset();
}

OpenMM::KernelImpl* ReferenceFlowForceKernelFactory::createKernelImpl(std::string name, const OpenMM::Platform& platform,
                                                                      OpenMM::ContextImpl&) const {
    if (name == CalcFlowForceKernel::Name()) return new ReferenceCalcFlowForceKernel(name, platform);
    throw OpenMMException("FlowForce: the Reference kernel factory cannot create kernel '" + name + "'");
}

void registerFlowForceReferenceKernelFactories() {
    for (int i = 0; i < OpenMM::Platform::getNumPlatforms(); ++i) {
        OpenMM::Platform& platform = OpenMM::Platform::getPlatform(i);
        if (dynamic_cast<OpenMM::ReferencePlatform*>(&platform) == nullptr) continue;
        if (platform.supportsKernels({CalcFlowForceKernel::Name()})) continue;  // already registered
        platform.registerKernelFactory(CalcFlowForceKernel::Name(), new ReferenceFlowForceKernelFactory());
    }
}

}  // namespace FlowForcePlugin

// Entry points OpenMM calls when it loads this library from a plugin folder.
extern "C" FLOWFORCE_EXPORT void registerPlatforms() {}

extern "C" FLOWFORCE_EXPORT void registerKernelFactories() {
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
}
