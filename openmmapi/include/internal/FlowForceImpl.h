#ifndef FLOWFORCE_OPENMM_FLOWFORCEIMPL_H_
#define FLOWFORCE_OPENMM_FLOWFORCEIMPL_H_

// The ForceImpl of FlowForce: validates the particles against the System, creates the platform's
// kernel and forwards energy/force evaluations to it. Not part of the user-facing API.

#include "FlowForce.h"
#include "FlowForceExport.h"

#include <openmm/Kernel.h>
#include <openmm/internal/ForceImpl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flowforce {
class Potential;  // flowforce/flow/Potential.h (LibTorch-free)
}

namespace FlowForcePlugin {

class FLOWFORCE_EXPORT FlowForceImpl : public OpenMM::ForceImpl {
public:
    explicit FlowForceImpl(const FlowForce& owner);
    ~FlowForceImpl() override;

    /** Checks the particle list against the System (range, duplicates), builds the model once (precision
     *  and backend from the force, the platform's default precision otherwise) and initializes the kernel. */
    void initialize(OpenMM::ContextImpl& context) override;
    const FlowForce& getOwner() const override { return owner_; }
    /** Energy in kJ/mol (0 if the force's group is not in groups); adds forces if includeForces. */
    double calcForcesAndEnergy(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy, int groups) override;
    std::map<std::string, double> getDefaultParameters() override { return {}; }
    std::vector<std::string> getKernelNames() override;
    /** Copies temperature and energy offset of the owner into the kernel. */
    void updateParametersInContext(OpenMM::ContextImpl& context);

    /** Builds the force's model (from its embedded bytes) for a platform; throws OpenMMException.
     *  With PlatformDefault precision: double on the Reference platform, single on every other one.
     *  threads: threads the native evaluator may use (the caller included). */
    static std::shared_ptr<flowforce::Potential> createPotential(const FlowForce& force, const std::string& platformName,
                                                                 int threads = 1);
    /** Threads of the Context's platform: the CPU platform's "Threads" property, else 1. */
    static int platformThreads(OpenMM::ContextImpl& context);

private:
    const FlowForce& owner_;
    OpenMM::Kernel kernel_;
};

}  // namespace FlowForcePlugin

#endif  // FLOWFORCE_OPENMM_FLOWFORCEIMPL_H_
