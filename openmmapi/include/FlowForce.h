#ifndef FLOWFORCE_OPENMM_FLOWFORCE_H_
#define FLOWFORCE_OPENMM_FLOWFORCE_H_

// FlowForce: a trained normalizing flow used as a potential in an OpenMM System.
//
// For the selected particles with positions x (nm) the model defines u(x) = -log p(x) (nats); the
// force adds the energy E(x) = k_B T u(x) + offset (kJ/mol) and the forces -dE/dx (kJ/mol/nm).
// Other particles are not affected. FlowForce model files (*.flow) are evaluated by FlowForce's native
// evaluator, in double precision on the Reference platform and in single precision (float weights and
// activations, double sums and energy) on the CPU platform, as OpenMM's own platforms do; both can be
// overridden (setPrecision, setBackend). On the CPU platform the evaluator uses the platform's threads
// (its "Threads" property, OPENMM_CPU_THREADS or all cores) for the independent conditioner heads of each
// coupling layer; results do not depend on the thread count.

#include "FlowForceExport.h"

#include <openmm/Force.h>

#include <string>
#include <vector>

namespace OpenMM {
class Context;
}

namespace FlowForcePlugin {

class FLOWFORCE_EXPORT FlowForce : public OpenMM::Force {
public:
    /** Arithmetic of the model's networks: the platform's own (double on Reference, single on CPU), or
     *  forced. Single: float weights and activations with double sums; the energy is always summed in double. */
    enum Precision { PlatformDefault = 0, Single = 1, Double = 2 };
    /** How a FlowForce model file is evaluated: FlowForce's native evaluator (fast, the default), or the
     *  LibTorch flow with autograd (double precision; for cross-checks). TorchScript modules always use LibTorch. */
    enum Backend { Native = 0, LibTorch = 1 };

    /**
     * Creates a force from a model file: a FlowForce model (*.flow) or a TorchScript module whose
     * forward maps positions [n,3] (nm, float64) to -log p. The file is read and validated now (for a
     * *.flow file: its header, architecture and weight shapes, without building the model) and its bytes
     * are kept (a serialized System embeds them), so the file may disappear afterwards. The model is
     * built once, when a Context is created. In a simulation, positions outside the model's support (a
     * bond or angle outside the model's range, where the flow's density is zero) raise an OpenMMException
     * naming the coordinate.
     *
     * @param modelFile  path of the model file
     * @param particles  indices (in the System) of the n particles the model describes, in the
     *                   model's order; empty: particles 0..n-1, n taken from the model
     * @throws OpenMM::OpenMMException if the file cannot be read or is not a valid model, if the
     *         number of particles does not match the model, or if the list holds duplicates or
     *         negative indices
     */
    explicit FlowForce(const std::string& modelFile, const std::vector<int>& particles = std::vector<int>());

    /**
     * Creates a force from the bytes of a model file (as embedded in serialized XML).
     *
     * @param modelBytes  the complete contents of a model file
     * @param modelName   the name reported by getModelFile() and in error messages (e.g. the original path)
     * @param particles   as for the constructor
     * @return a new force, owned by the caller (e.g. pass it to System::addForce)
     * @throws OpenMM::OpenMMException as the constructor
     */
    static FlowForce* createFromBytes(const std::string& modelBytes, const std::string& modelName,
                                      const std::vector<int>& particles = std::vector<int>());

    /** The path (or name) of the model file this force was created from. */
    const std::string& getModelFile() const { return modelFile_; }
    /** The complete contents (bytes) of the model file, read at construction. */
    const std::string& getModelBytes() const { return modelBytes_; }
    /** A short description of the model (kind and number of particles). */
    const std::string& getModelDescription() const { return modelDescription_; }
    /** The particle indices given at construction (empty: the first getNumParticles() of the System). */
    const std::vector<int>& getParticles() const { return particles_; }
    /** The number n of particles the model describes (dimensionless). */
    int getNumParticles() const { return numParticles_; }
    /** The indices of the particles this force acts on: getParticles(), or 0..n-1 if that is empty. */
    std::vector<int> getEffectiveParticles() const;

    /** The temperature T in K that scales the model's -log p into an energy, E = k_B T u + offset. */
    double getTemperature() const { return temperature_; }
    /**
     * Sets the temperature T in K. Call updateParametersInContext() to apply it to an existing Context.
     * @throws OpenMM::OpenMMException if T is not a positive finite number
     */
    void setTemperature(double temperature);
    /** The temperature (K) the model declares, or 0 if it declares none (then the default is 300 K). */
    double getModelTemperature() const { return modelTemperature_; }

    /** The constant added to the energy, in kJ/mol (default 0). */
    double getEnergyOffset() const { return energyOffset_; }
    /**
     * Sets the constant added to the energy, in kJ/mol (e.g. -k_B T log Z). Call
     * updateParametersInContext() to apply it to an existing Context.
     * @throws OpenMM::OpenMMException if the offset is not finite
     */
    void setEnergyOffset(double offset);

    /** The precision requested for the model's networks (default PlatformDefault). */
    Precision getPrecision() const { return precision_; }
    /** Requests a precision; it applies to Contexts created afterwards. */
    void setPrecision(Precision precision);
    /** The backend that evaluates a FlowForce model file (default Native). */
    Backend getBackend() const { return backend_; }
    /** Selects the backend; it applies to Contexts created afterwards. */
    void setBackend(Backend backend);

    /**
     * Copies the temperature and the energy offset into a Context that already uses this force.
     * The model and the particles cannot change after the Context was created.
     */
    void updateParametersInContext(OpenMM::Context& context);

    /** FlowForce acts on free (unwrapped) coordinates: always false. */
    bool usesPeriodicBoundaryConditions() const override { return false; }

protected:
    OpenMM::ForceImpl* createImpl() const override;

private:
    struct FromBytes {};
    FlowForce(FromBytes, const std::string& modelBytes, const std::string& modelName, const std::vector<int>& particles);
    void init(const std::vector<int>& particles);

    std::string modelFile_;
    std::string modelBytes_;
    std::string modelDescription_;
    std::vector<int> particles_;
    int numParticles_ = 0;
    double modelTemperature_ = 0.0;
    double temperature_ = 300.0;
    double energyOffset_ = 0.0;
    Precision precision_ = PlatformDefault;
    Backend backend_ = Native;
};

}  // namespace FlowForcePlugin

#endif  // FLOWFORCE_OPENMM_FLOWFORCE_H_
