#ifndef FLOWFORCE_REFERENCE_KERNELS_H_
#define FLOWFORCE_REFERENCE_KERNELS_H_

// FlowForce on OpenMM's Reference platform and every platform derived from it (CPU).

#include "FlowForceExport.h"
#include "FlowForceKernels.h"

#include <openmm/KernelFactory.h>

#include <memory>
#include <vector>

namespace flowforce {
class Potential;
}

namespace FlowForcePlugin {

/** Evaluates the model through flowforce::Potential on the host (double precision on Reference, single on
 *  CPU by default; see FlowForce::setPrecision). Energy-only requests skip the gradient. */
class ReferenceCalcFlowForceKernel : public CalcFlowForceKernel {
public:
    ReferenceCalcFlowForceKernel(const std::string& name, const OpenMM::Platform& platform);
    ~ReferenceCalcFlowForceKernel() override;
    void initialize(const OpenMM::System& system, const FlowForce& force,
                    std::shared_ptr<flowforce::Potential> potential) override;
    double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy) override;
    void copyParametersToContext(OpenMM::ContextImpl& context, const FlowForce& force) override;

private:
    std::shared_ptr<flowforce::Potential> potential_;
    std::vector<int> particles_;
    std::vector<double> positions_, gradient_;
    double kT_ = 0.0;      // kJ/mol
    double offset_ = 0.0;  // kJ/mol
};

/** Creates ReferenceCalcFlowForceKernel for platforms derived from ReferencePlatform. */
class ReferenceFlowForceKernelFactory : public OpenMM::KernelFactory {
public:
    OpenMM::KernelImpl* createKernelImpl(std::string name, const OpenMM::Platform& platform,
                                         OpenMM::ContextImpl& context) const override;
};

/**
 * Registers the FlowForce kernels on every currently registered platform derived from OpenMM's
 * Reference platform (Reference, CPU). Idempotent. Call it after the default OpenMM plugins are
 * loaded (Platform::loadPluginsFromDirectory(Platform::getDefaultPluginsDirectory())), or the CPU
 * platform does not exist yet.
 */
FLOWFORCE_EXPORT void registerFlowForceReferenceKernelFactories();

}  // namespace FlowForcePlugin

#endif  // FLOWFORCE_REFERENCE_KERNELS_H_
