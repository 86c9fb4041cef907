#pragma once
// A molecular potential defined by a trained model: u(x) = -log p(x) (dimensionless, nats) of the
// positions of n particles, with its exact gradient, in double precision. This header is free of
// LibTorch so that the OpenMM plugin and applications can use it cheaply.

#include <memory>
#include <string>
#include <vector>

namespace flowforce {

class Potential {
public:
    virtual ~Potential() = default;
    /** Number of particles n the model describes. */
    virtual int numParticles() const = 0;
    /** u(x) in nats for positions [n*3] (nm, row-major x0 y0 z0 x1 ...); writes du/dx [n*3] (1/nm). */
    virtual double evaluate(const std::vector<double>& positions, std::vector<double>& gradient) = 0;
    /** Temperature (K) the model was trained at, or 0 if the model does not say. */
    virtual double modelTemperature() const { return 0.0; }
    /** Short human-readable description ("smooth flow, 22 atoms", "TorchScript module"). */
    virtual std::string describe() const = 0;
};

/** Loads a model from a file: a FlowForce model file (*.flow) or a TorchScript module whose forward
 *  maps positions [n,3] (nm, float64) to -log p (a scalar). numParticles is required for TorchScript
 *  modules (they do not declare it) and checked against .flow models; pass -1 to take the model's.
 *  Throws std::runtime_error with a one-line message on any problem. */
std::unique_ptr<Potential> loadPotential(const std::string& path, int numParticles = -1);
/** Same, from the bytes of such a file (e.g. a model embedded in serialized XML). */
std::unique_ptr<Potential> loadPotentialFromBytes(const std::string& bytes, const std::string& name, int numParticles = -1);

}  // namespace flowforce
