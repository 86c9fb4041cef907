#ifndef FLOWFORCE_OPENMM_KERNELS_H_
#define FLOWFORCE_OPENMM_KERNELS_H_

// The kernel interface every platform implements for FlowForce.

#include "FlowForce.h"

#include <openmm/KernelImpl.h>
#include <openmm/Platform.h>
#include <openmm/System.h>

#include <memory>
#include <string>

namespace OpenMM {
class ContextImpl;
}

namespace flowforce {
class Potential;  // flowforce/flow/Potential.h (LibTorch-free)
}

namespace FlowForcePlugin {

/** Computes the FlowForce energy E = k_B T u(x) + offset (kJ/mol) and forces -dE/dx (kJ/mol/nm). */
class FLOWFORCE_EXPORT CalcFlowForceKernel : public OpenMM::KernelImpl {
public:
    /** The kernel name under which platforms register their implementation. */
    static std::string Name() { return "CalcFlowForce"; }

    CalcFlowForceKernel(const std::string& name, const OpenMM::Platform& platform) : OpenMM::KernelImpl(name, platform) {}

    /**
     * Prepares the kernel: records the model, the particles, the temperature and the offset.
     * @param system     the System the force belongs to
     * @param force      the FlowForce (its particle list is already validated against the System)
     * @param potential  the model, built once by the FlowForceImpl for this Context's platform
     */
    virtual void initialize(const OpenMM::System& system, const FlowForce& force,
                            std::shared_ptr<flowforce::Potential> potential) = 0;

    /**
     * Evaluates the force.
     * @param context        the context whose positions to use
     * @param includeForces  whether to add the forces (kJ/mol/nm) to the context's force buffer
     * @param includeEnergy  whether the energy is needed (it is always computed)
     * @return the energy in kJ/mol
     */
    virtual double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy) = 0;

    /** Copies the temperature (K) and energy offset (kJ/mol) of the force into the kernel. */
    virtual void copyParametersToContext(OpenMM::ContextImpl& context, const FlowForce& force) = 0;
};

}  // namespace FlowForcePlugin

#endif  // FLOWFORCE_OPENMM_KERNELS_H_
