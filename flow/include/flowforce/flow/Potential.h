#pragma once
// A molecular potential defined by a trained model: u(x) = -log p(x) (dimensionless, nats) of the
// positions of n particles, with its exact gradient. This header is free of LibTorch so that the OpenMM
// plugin and applications can use it cheaply.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/NativeFlow.h"

#include <memory>
#include <string>
#include <vector>

namespace flowforce {

/** How a FlowForce model file is evaluated: the native evaluator (NativeFlow.h, the default) or the
 *  LibTorch flow with autograd (for cross-checks). TorchScript modules always use LibTorch. */
enum class Backend { Native, LibTorch };
FLOWFORCE_FLOW_EXPORT std::string backendName(Backend b);

struct FLOWFORCE_FLOW_EXPORT PotentialOptions {
    Backend backend = Backend::Native;
    Precision precision = Precision::Double;  ///< native backend only; LibTorch computes in double
    int threads = 1;  ///< native backend only: threads that evaluate (NativeEvaluator), the caller included
};

class FLOWFORCE_FLOW_EXPORT Potential {
public:
    virtual ~Potential() = default;
    /** Number of particles n the model describes. */
    virtual int numParticles() const = 0;
    /** u(x) in nats for positions [n*3] (nm, row-major x0 y0 z0 x1 ...), without the gradient. */
    virtual double energy(const std::vector<double>& positions) = 0;
    /** u(x) in nats; writes du/dx [n*3] (1/nm). */
    virtual double evaluate(const std::vector<double>& positions, std::vector<double>& gradient) = 0;
    /** Temperature (K) the model was trained at, or 0 if the model does not say. */
    virtual double modelTemperature() const { return 0.0; }
    /** Short human-readable description ("FlowForce flow, 22 particles, 758168 parameters, native double"). */
    virtual std::string describe() const = 0;
};

/** What a model file declares, read without building the model (cheap for FlowForce model files). */
struct FLOWFORCE_FLOW_EXPORT ModelSummary {
    int numParticles = 0;          ///< particles n
    double temperature = 0.0;      ///< K, 0 if the model does not say
    std::string description;       ///< as Potential::describe, without the backend
    bool torchScript = false;      ///< a TorchScript module (always evaluated with LibTorch)
};

/** Reads a model's summary from the bytes of a model file: a FlowForce model file (*.flow: header and
 *  architecture validated, weights checked against it) or a TorchScript module whose forward maps positions
 *  [n,3] (nm, float64) to -log p (a scalar; numParticles is required for modules that do not declare
 *  num_particles). numParticles > 0 is checked against the model; -1 takes the model's. Throws
 *  std::runtime_error with a one-line message. */
FLOWFORCE_FLOW_EXPORT ModelSummary summarizeModel(const std::string& bytes, const std::string& name, int numParticles = -1);

/** A FlowForce model file (*.flow), parsed and checked: container, architecture and weights
 *  (validatedArchitecture), a molecular model (internal-coordinate embedding) of numParticles particles
 *  (-1: the model's), its temperature. LibTorch-free (flowforce_native). */
struct FLOWFORCE_FLOW_EXPORT MolecularModel {
    ModelFile file;
    ArchitectureSpec spec;
    double temperature = 0.0;   ///< K, 0 if the model does not say
    std::string description;    ///< "FlowForce flow, n particles, m parameters"
};
/** Reads a FlowForce model file from its bytes; throws std::runtime_error (ModelFileError for the
 *  container and the weights) with a one-line message. No TorchScript: that needs LibTorch (summarizeModel). */
FLOWFORCE_FLOW_EXPORT MolecularModel readMolecularModel(const std::string& bytes, const std::string& name, int numParticles = -1);
/** summarizeModel for FlowForce model files only (readMolecularModel), LibTorch-free. */
FLOWFORCE_FLOW_EXPORT ModelSummary summarizeFlowModel(const std::string& bytes, const std::string& name, int numParticles = -1);
/** Throws std::runtime_error unless numParticles is -1 (the model's) or positive. */
FLOWFORCE_FLOW_EXPORT void checkModelParticleCount(int numParticles, const std::string& name);

/** Loads a model for evaluation (see summarizeModel for the kinds of files). FlowForce model files are
 *  checked against the support rule at every evaluation (EmbeddingSpec::checkSupport): outside it, the
 *  evaluation throws std::runtime_error naming the coordinate and the model's range. */
FLOWFORCE_FLOW_EXPORT std::unique_ptr<Potential> loadPotentialFromBytes(const std::string& bytes, const std::string& name, int numParticles = -1,
                                                  const PotentialOptions& options = {});
/** Same, from a file. */
FLOWFORCE_FLOW_EXPORT std::unique_ptr<Potential> loadPotential(const std::string& path, int numParticles = -1, const PotentialOptions& options = {});

}  // namespace flowforce
