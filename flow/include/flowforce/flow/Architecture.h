#pragma once
// Flow architectures, free of LibTorch: the JSON description stored in model files, parsed and validated
// in one place. The LibTorch flow (Flow.h) and the native evaluator (NativeFlow.h) are both built from an
// ArchitectureSpec, so they accept exactly the same files and name the weights the same way.
//
// JSON (all keys but "dim" and "layers" optional):
//   {"dim": d, "circular": [bool x d],
//    "embedding": {"type": "internal_coordinates", "zmatrix": [[atom, bond, angle, torsion], ...],
//                  "bond_range": [lo, hi] (nm), "angle_range": [lo, hi] (rad)},
//    "layers": [ {"type": "coupling", "conditioning": [...], "transformed": [...],
//                 "transform": {"type": "smooth" | "spline", ...},
//                 "conditioner": {"hidden": [64, 64], "activation": "sin", "heads": "separate"},
//                 "invert_transform": false},
//                {"type": "box", "low": [...], "high": [...]},
//                {"type": "inverted", "layer": {...}} ]}

#include "flowforce/flow/Export.h"

#include "flowforce/flow/ModelFormat.h"
#include "flowforce/flow/ZMatrix.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flowforce {

// ---------------------------------------------------------------------------------------------
// Element-wise transforms

/** A group of raw parameters per element (see TransformSpec::heads). */
struct FLOWFORCE_FLOW_EXPORT ParameterHead {
    std::string name;
    int64_t count;
};

/** Ramp functions for the smooth sigmoid sigma[rho](t) = rho(t) / (rho(t) + rho(1 - t)). */
enum class RampType {
    Exponential,  ///< rho(t) = exp(-s / t^beta), C-infinity; sharpness s trainable per component
    Monomial      ///< rho(t) = t^k, C^(k-1) at the support edges (a baseline)
};

/** Smallest sharpness s for which the exponential ramp's bump density is unimodal (one maximum, at the
 *  centre of its support): 0.8656721 for beta = 1, 0.3052033 for beta = 2. Below it the density has two
 *  spikes at the support edges. Throws std::invalid_argument for other beta. */
FLOWFORCE_FLOW_EXPORT double unimodalSharpness(int beta);

/** Options of the smooth bump-mixture transform (paper section 4, SI-1). Every shape parameter is a
 *  smooth bounded function of its raw conditioner output (no clamps), within the ranges of the paper's
 *  model: sharpness s in [unimodalSharpness(beta), +10], concentration within a factor e^logScaleBound of
 *  its nominal value (constant on the circle), identity weight c in [minIdentity, 1]. */
struct FLOWFORCE_FLOW_EXPORT SmoothMixtureOptions {
    int64_t components = 8;      ///< K mixture components
    RampType ramp = RampType::Exponential;
    int beta = 1;                ///< exponent beta of the exponential ramp, 1 or 2
    int monomialOrder = 3;       ///< k of the monomial ramp
    double sharpnessMin = 0.0;   ///< lowest sharpness s (0: unimodalSharpness(beta))
    double sharpnessSpan = 10.0; ///< s = sharpnessMin + sharpnessSpan * sigmoid(raw)
    double scale = 1.0;          ///< nominal concentration a0 (bump support 1/a0 of the interval); circle: a = a0 >= 1
    double logScaleBound = 1.0;  ///< interval: a = a0 * exp(logScaleBound * tanh(raw))
    double minIdentity = 1e-6;   ///< c = minIdentity + (1 - minIdentity) * sigmoid(raw)
};

/** Options of the rational-quadratic spline (Durkan et al. 2019) on [0,1]. */
struct FLOWFORCE_FLOW_EXPORT SplineOptions {
    int64_t bins = 8;
    double minBinWidth = 1e-3;
    double minBinHeight = 1e-3;
    double minDerivative = 1e-3;
};

/** A validated element-wise transform: its kind, topology and options. */
struct FLOWFORCE_FLOW_EXPORT TransformSpec {
    enum class Kind { Smooth, Spline };
    Kind kind = Kind::Smooth;
    bool circular = false;
    SmoothMixtureOptions smooth;  ///< kind Smooth (sharpnessMin resolved, never 0)
    SplineOptions spline;         ///< kind Spline

    /** Parses {"type": "smooth" | "spline", ...}; `circular` overrides the config's "circular" if given.
     *  Throws std::invalid_argument naming the bad value. */
    static TransformSpec fromJson(const nlohmann::json& config, std::optional<bool> circular = std::nullopt);
    /** Checks the options (throws std::invalid_argument); fromJson and the constructors call it. */
    void validate();
    /** The configuration (including "circular"). */
    nlohmann::json toJson() const;
    /** Raw parameters per element. */
    int64_t numParams() const;
    /** The raw parameters per element as consecutive groups, each of which a coupling layer can compute
     *  with a conditioner network of its own (its "head"); the counts add up to numParams().
     *  Smooth: "weights" K, "sharpness" K (exponential ramp only), "shape" 3K (locations, log-scales,
     *  identity weights); spline: "params" (widths K, heights K, knot slopes K + 1, or K on the circle). */
    std::vector<ParameterHead> heads() const;
};

// ---------------------------------------------------------------------------------------------
// Layers

/** Activation functions of conditioner networks. */
enum class Activation { SiLU, Sin, Tanh, ReLU };
FLOWFORCE_FLOW_EXPORT Activation activationFromName(const std::string& name);
FLOWFORCE_FLOW_EXPORT std::string activationName(Activation a);

/** How a coupling layer computes its transform's parameters: one conditioner network per parameter
 *  head of the transform (the paper's layout), or one network for all of them. */
enum class ConditionerHeads { Separate, Shared };
FLOWFORCE_FLOW_EXPORT ConditionerHeads conditionerHeadsFromName(const std::string& name);
FLOWFORCE_FLOW_EXPORT std::string conditionerHeadsName(ConditionerHeads h);

/** A coupling layer (Flow.h, CouplingLayer). */
struct FLOWFORCE_FLOW_EXPORT CouplingSpec {
    std::vector<int64_t> conditioning, transformed;
    TransformSpec transform;  ///< circular = the topology of the transformed dimensions
    std::vector<int64_t> hidden{64, 64};
    Activation activation = Activation::SiLU;
    ConditionerHeads heads = ConditionerHeads::Shared;  ///< files without "heads" use one network
    bool invertTransform = false;

    /** The conditioner networks: module name ("conditioner" or "conditioner_<head>") and parameters
     *  per transformed element. One network for a single-head transform or shared heads. */
    std::vector<ParameterHead> networks() const;
    /** Inputs of every network: non-circular conditioning dims as 2x-1, then circular ones as (cos, sin)
     *  of 2 pi x (the circular flags of the conditioning dims decide). */
    int64_t networkInputs(const std::vector<bool>& circular) const;
};

/** A fixed affine map of the box [low, high] onto [0,1]^d (Flow.h, BoxLayer). */
struct FLOWFORCE_FLOW_EXPORT BoxSpec {
    std::vector<double> low, high;
};

/** One layer: a coupling or a box, possibly wrapped in one or more "inverted" layers. */
struct FLOWFORCE_FLOW_EXPORT LayerSpec {
    enum class Kind { Coupling, Box, Inverted };
    Kind kind = Kind::Coupling;
    CouplingSpec coupling;              ///< kind Coupling
    BoxSpec box;                        ///< kind Box
    std::shared_ptr<LayerSpec> inner;   ///< kind Inverted: the layer whose directions are swapped
    nlohmann::json toJson() const;
};

/** Where a configuration leaves a flow's support (its density is zero there). */
struct FLOWFORCE_FLOW_EXPORT SupportViolation {
    int64_t coordinate = -1;  ///< index of the internal coordinate (bonds, then angles) or data value; -1: inside
    std::string description;  ///< e.g. "bond 3 (atoms 4-6) is 0.412 nm, outside the model's range [0.05, 0.3] nm"
    bool inside() const { return coordinate < 0; }
};

/** The internal-coordinate embedding (InternalCoordinates.h). Bonds and angles map from their ranges to
 *  [0,1] by one of three maps of t = (q - lo) / (hi - lo) (JSON "boundary"):
 *  - "linear" (the paper's map, the default): u = t.
 *  - "wall": the smooth wall W(t) = sigma[rho](t) with the exponential ramp of sharpness s
 *    (W(t) = logistic(s (1/(1-t) - 1/t))). W is C-infinity and its derivative vanishes with all derivatives
 *    at both ends, so the density in Cartesian space goes to zero smoothly at the ends of the ranges:
 *    -log p rises like s/t, a wall that keeps bonds inside their range and angles away from 180 degrees,
 *    where the torsions that use them are undefined.
 *  - "gauss": the normal CDF u = Phi(2t - 1) = Phi((q - mu) / sigma), where each coordinate's [lo, hi] is
 *    [mu - sigma, mu + sigma] (per-coordinate ranges are required; fitDataGaussians fits them). A flow
 *    that is the identity on a coordinate gives it exactly a harmonic potential -log p = (q - mu)^2 /
 *    (2 sigma^2) + const (zero fourth derivative, as a force field's bond or angle term), so the mixture
 *    transforms only carry the anharmonic correction; far from the data -log p keeps rising
 *    quadratically. The support is every bond > 0 and every angle in (0, pi). */
struct FLOWFORCE_FLOW_EXPORT EmbeddingSpec {
    enum class Boundary { Linear, Wall, Gauss };
    ZMatrix zmatrix;
    std::array<double, 2> bondRange{0.05, 0.3};          ///< nm
    std::array<double, 2> angleRange{0.15 * 3.14159265358979323846, 3.14159265358979323846};  ///< rad
    Boundary boundary = Boundary::Linear;  ///< JSON "boundary": "linear" (default), "wall" or "gauss"
    double wallSharpness = 1.0;  ///< s of the wall map, >= the unimodal bound 0.8657 (JSON "wall_sharpness")
    /** Optional per-coordinate ranges (JSON "bond_ranges": [[lo, hi] nm, ...] with one entry per bond, and
     *  "angle_ranges": [[lo, hi] rad, ...] with one per angle, in the output order): when present they
     *  replace bondRange / angleRange for that coordinate (fitDataRanges, fitDataGaussians in
     *  InternalCoordinates.h). With the gauss map each is [mu - sigma, mu + sigma]. */
    std::vector<std::array<double, 2>> bondRanges, angleRanges;
    /** The range of bond i (nm) and of angle i (rad), i in output order (0-based within the kind). */
    std::array<double, 2> bondRangeOf(size_t i) const { return bondRanges.empty() ? bondRange : bondRanges.at(i); }
    std::array<double, 2> angleRangeOf(size_t i) const { return angleRanges.empty() ? angleRange : angleRanges.at(i); }
    /** The range of every bond, then of every angle (the output order of the internal coordinates). */
    std::vector<std::array<double, 2>> coordinateRanges() const;
    /** The JSON name of a boundary map ("linear", "wall", "gauss"). */
    static const char* boundaryName(Boundary b);
    static EmbeddingSpec fromJson(const nlohmann::json& config);
    nlohmann::json toJson() const;
    int64_t numAtoms() const { return zmatrix.numAtoms(); }
    /** The support rule, the same for trainer, evaluator and plugin: every position finite, every bond
     *  within its range and every angle within its range (torsions are unbounded); with the gauss map
     *  every bond > 0 and every angle in (0, pi). Outside, the flow's density is zero and -log p
     *  does not exist. x: [3 n] positions in nm. */
    SupportViolation checkSupport(const double* x) const;
};

/** A whole flow. */
struct FLOWFORCE_FLOW_EXPORT ArchitectureSpec {
    int64_t dim = 0;
    std::vector<bool> circular;
    std::optional<EmbeddingSpec> embedding;
    std::vector<LayerSpec> layers;

    /** Parses and validates an architecture (every index within dim, no dimension twice in a coupling,
     *  transformed dims of one topology, the embedding's size and torsions matching dim and circular,
     *  sizes within sane bounds). Throws std::invalid_argument with a one-line reason. */
    static ArchitectureSpec fromJson(const nlohmann::json& architecture);
    nlohmann::json toJson() const;
    /** Dimension of the data: 3 n for a molecule entering through internal coordinates, else dim. */
    int64_t dataDim() const { return embedding ? 3 * embedding->numAtoms() : dim; }
    /** Every weight tensor the architecture has, in layer order: name (as the LibTorch flow registers
     *  it, e.g. "layer3.conditioner_shape.linear2.weight") and shape ([out, in] weights, [out] biases). */
    std::vector<std::pair<std::string, std::vector<int64_t>>> parameterShapes() const;
    /** Number of trainable scalars. */
    int64_t parameterCount() const;
};

/** A model file's architecture, parsed, with its weights checked against it: every tensor the
 *  architecture needs present with its shape, none left over, every value finite. The validation every
 *  reader applies before it allocates anything. Throws ModelFileError naming `source`. */
FLOWFORCE_FLOW_EXPORT ArchitectureSpec validatedArchitecture(const ModelFile& model, const std::string& source);

}  // namespace flowforce
