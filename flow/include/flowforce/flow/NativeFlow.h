#pragma once
// The native evaluator: u(x) = -log p(x) and du/dx of a model file's flow, computed with plain loops and
// a hand-written reverse pass through the internal-coordinate transform, the coupling layers, every
// conditioner network and the element-wise transforms (smooth mixtures on the interval and the circle,
// rational-quadratic splines, inverted transforms by root finding with implicit-function gradients).
// No LibTorch: it reads the model file's container (ModelFormat.h) and architecture (Architecture.h).
//
// Precision::Double computes everything in double and matches the LibTorch flow to ~1e-12 relative.
// Precision::Single keeps the conditioner networks' weights and activations in float (the bulk of the
// work and memory traffic) and everything else (coordinates, element-wise transforms, log-determinants,
// the energy) in double.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Architecture.h"
#include "flowforce/flow/ModelFormat.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flowforce {

/** Arithmetic of the conditioner networks in the native evaluator. */
enum class Precision { Double, Single };
FLOWFORCE_FLOW_EXPORT std::string precisionName(Precision p);
/** "double" or "single" (also "mixed" = single); throws std::invalid_argument otherwise. */
FLOWFORCE_FLOW_EXPORT Precision precisionFromName(const std::string& name);

namespace native {
struct Program;  // the compiled flow (NativeFlow.cpp)
}

/** A model compiled for native evaluation: validated architecture, weights in evaluation order. Immutable
 *  and shareable between evaluators (one per thread or per OpenMM kernel). */
class FLOWFORCE_FLOW_EXPORT NativeFlow {
public:
    /** Compiles a parsed model file. Checks the architecture (ArchitectureSpec::fromJson) and that every
     *  weight the architecture needs is present with its shape, none is left over and every value is
     *  finite, before allocating anything. Throws ModelFileError naming `source`. */
    static std::shared_ptr<const NativeFlow> compile(const ModelFile& model, const std::string& source);
    ~NativeFlow();

    const ArchitectureSpec& spec() const;
    /** Dimension of the data x: 3 n for molecules (internal-coordinate embedding), else the flow's dim. */
    int64_t dataDim() const;
    /** Number of particles n of a molecular flow, 0 for a flow without internal-coordinate embedding. */
    int numParticles() const;
    /** Number of weights (trainable scalars). */
    int64_t parameterCount() const;
    const native::Program& program() const { return *program_; }

private:
    NativeFlow() = default;
    std::unique_ptr<native::Program> program_;
};

/**
 * Evaluates a NativeFlow. Holds its scratch memory (allocated on first use for a batch size, then reused:
 * no allocation per call) and, for single precision, a float copy of the weights. Not thread-safe: use one
 * evaluator per thread.
 *
 * With threads > 1 the evaluator keeps a team of threads-1 workers and runs the independent conditioner
 * heads of each coupling layer (weights, ramp exponents, shapes) side by side, forward and backward; a
 * layer with one network (splines, affine) stays on the calling thread. Idle workers spin for ~2 ms after a
 * call (so back-to-back MD steps need no wake-up) and then sleep. Results do not depend on the thread count.
 */
class FLOWFORCE_FLOW_EXPORT NativeEvaluator {
public:
    /** threads: threads that evaluate (the caller included), >= 1. */
    NativeEvaluator(std::shared_ptr<const NativeFlow> flow, Precision precision, int threads = 1);
    ~NativeEvaluator();
    NativeEvaluator(const NativeEvaluator&) = delete;
    NativeEvaluator& operator=(const NativeEvaluator&) = delete;

    Precision precision() const;
    int threads() const;
    const NativeFlow& flow() const;

    /** u = -log p(x) (nats) for one configuration x [dataDim()] (nm for molecules), without gradient. */
    double energy(const double* x);
    /** u = -log p(x) and its gradient du/dx [dataDim()] (1/nm for molecules). */
    double energyAndGradient(const double* x, double* gradient);
    /** A batch: x [batch, dataDim()] row-major -> u [batch] and, if gradient is not null, du/dx
     *  [batch, dataDim()]. The conditioner networks stream their weights once per batch. */
    void evaluate(int64_t batch, const double* x, double* u, double* gradient);

    /** The support rule (EmbeddingSpec::checkSupport; for flows without embedding: every value finite).
     *  The evaluation functions do not check: call this first where configurations can leave the support. */
    SupportViolation checkSupport(const double* x) const;

    /** The weight-streaming limit of energyAndGradient: runs only the conditioner networks' matrix-vector
     *  products, in its order (every layer forward, then every layer transposed in reverse), on fixed
     *  vectors, `repeats` times; returns a checksum (so the work is not optimised away). For benchmarks. */
    double weightStreamingOnly(int repeats);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace flowforce
