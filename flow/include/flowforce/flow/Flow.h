#pragma once
// Flows: compositions of bijections between a data space and the unit hypercube [0,1]^d with a
// uniform base density. Direction convention (as in nflows): forward() maps data x to latent z and
// returns log|det dz/dx|, so log p(x) = forward(x).logdet; inverse() maps latent to data (sampling).
// Every layer is described by a JSON config so that a model file can rebuild it (ModelFile.h).

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Transforms.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

namespace flowforce {

/** A batch mapped through a bijection: outputs [B, d] and log|det J| per row [B]. */
struct FLOWFORCE_FLOW_EXPORT FlowResult {
    torch::Tensor out;
    torch::Tensor logdet;
};

/** Base class of all flow layers (a torch::nn::Module, so parameters are registered and saved). */
class FLOWFORCE_FLOW_EXPORT Bijection : public torch::nn::Module {
public:
    /** Data-to-latent direction: x [B, d] -> z, log|det dz/dx| [B]. */
    virtual FlowResult forward(const torch::Tensor& x) = 0;
    /** Latent-to-data direction: z [B, d] -> x, log|det dx/dz| [B]. */
    virtual FlowResult inverse(const torch::Tensor& z) = 0;
    /** JSON description from which makeBijection() rebuilds the layer (weights excluded). */
    virtual nlohmann::json config() const = 0;
};
using BijectionPtr = std::shared_ptr<Bijection>;

/** Dense conditioner: embeds its inputs (circular ones as cos/sin of 2 pi x, others as 2x - 1), then
 *  Linear -> activation for each hidden size, then a final Linear to the transform parameters. */
class FLOWFORCE_FLOW_EXPORT Conditioner : public torch::nn::Module {
public:
    Conditioner(std::vector<bool> inputCircular, int64_t outputs, std::vector<int64_t> hidden, Activation activation);
    torch::Tensor forward(const torch::Tensor& x);
    /** Sets the output layer's bias and scales its weights (initialisation near a chosen transform). */
    void initializeOutput(const torch::Tensor& bias, double weightScale);

private:
    torch::Tensor linearIndex_, circularIndex_;  // inputs embedded as 2x-1 and as (cos, sin)
    Activation activation_;
    std::vector<torch::nn::Linear> layers_;
};

/**
 * Coupling layer: the `transformed` dimensions go through an element-wise transform whose
 * parameters conditioner networks compute from the `conditioning` dimensions; the rest pass unchanged.
 * All transformed dimensions share one topology (circular or not). With separate heads, each parameter
 * head of the transform (ElementwiseTransform::heads) has a network of its own, registered as
 * "conditioner_<head>"; a transform with a single head, or shared heads, has one, "conditioner".
 * Head outputs are element-major: head h gives [B, d * count_h], viewed as [B, d, count_h], and the
 * heads are concatenated in order into the transform's [B, d, numParams()].
 * With invertTransform the element-wise transform is applied in its inverse direction in forward(),
 * so the analytic direction can be put on either side of the flow.
 */
class FLOWFORCE_FLOW_EXPORT CouplingLayer : public Bijection {
public:
    /** A coupling of a flow whose dimensions have the given circular flags (spec validated by
     *  ArchitectureSpec). */
    CouplingLayer(const CouplingSpec& spec, const std::vector<bool>& circular);
    FlowResult forward(const torch::Tensor& x) override;
    FlowResult inverse(const torch::Tensor& z) override;
    nlohmann::json config() const override;
    const ElementwiseTransform& transform() const { return *transform_; }
    /** Mutable access to the root-finder settings of this layer's transform. */
    InversionOptions& inversionOptions() { return const_cast<ElementwiseTransform&>(*transform_).inversion; }
    /** Raw transform parameters [B, transformed, numParams()] for layer input x [B, dim]. */
    torch::Tensor parameters(const torch::Tensor& x);
    const CouplingSpec& spec() const { return spec_; }

private:
    FlowResult apply(const torch::Tensor& x, bool transformForward);
    CouplingSpec spec_;
    torch::Tensor condIndex_, transIndex_;
    std::shared_ptr<ElementwiseTransform> transform_;
    std::vector<std::shared_ptr<Conditioner>> conditioners_;  // one per network (CouplingSpec::networks)
    std::vector<int64_t> networkCounts_;                     // parameters per element of each network
};

/** Swaps the directions of another bijection. */
class FLOWFORCE_FLOW_EXPORT InvertedLayer : public Bijection {
public:
    explicit InvertedLayer(BijectionPtr inner);
    FlowResult forward(const torch::Tensor& x) override { return inner_->inverse(x); }
    FlowResult inverse(const torch::Tensor& z) override { return inner_->forward(z); }
    nlohmann::json config() const override;
    const BijectionPtr& inner() const { return inner_; }

private:
    BijectionPtr inner_;
};

/** Fixed affine map of the box [low, high] onto [0,1]^d (circular dimensions are wrapped into [0,1)). */
class FLOWFORCE_FLOW_EXPORT BoxLayer : public Bijection {
public:
    BoxLayer(const BoxSpec& spec, std::vector<bool> circular);
    FlowResult forward(const torch::Tensor& x) override;
    FlowResult inverse(const torch::Tensor& z) override;
    nlohmann::json config() const override;

private:
    std::vector<double> low_, high_;
    std::vector<bool> circular_;
    double logVolume_;
};

/**
 * A normalizing flow on d dimensions: layers applied in order in forward() (data -> latent),
 * uniform base density on [0,1]^d. Built from a JSON architecture:
 *   {"dim": d, "circular": [bool...], "layers": [layer configs], "embedding": {...} (optional)}
 * with layer configs {"type": "coupling" | "inverted" | "box", ...} (see makeBijection). The optional
 * embedding is a dimension-changing first layer from the data space, e.g. {"type":
 * "internal_coordinates", ...} mapping Cartesian positions [B, 3n] to [B, 3n-6] (InternalCoordinates.h).
 */
class FLOWFORCE_FLOW_EXPORT Flow : public Bijection {
public:
    /** Throws std::invalid_argument on an invalid architecture (ArchitectureSpec::fromJson). */
    explicit Flow(const nlohmann::json& architecture);
    explicit Flow(const ArchitectureSpec& spec);
    FlowResult forward(const torch::Tensor& x) override;
    FlowResult inverse(const torch::Tensor& z) override;
    nlohmann::json config() const override { return spec_.toJson(); }
    const ArchitectureSpec& spec() const { return spec_; }

    /** Dimension of the flow's own space (the latent space). */
    int64_t dim() const { return dim_; }
    /** Dimension of the data x: 3n for a molecule entering through internal coordinates, else dim(). */
    int64_t dataDim() const { return dataDim_; }
    /** The dimension-changing first layer (e.g. internal coordinates), or null. */
    const BijectionPtr& embedding() const { return embedding_; }
    const std::vector<bool>& circular() const { return circular_; }
    const std::vector<BijectionPtr>& layers() const { return layers_; }

    /** log p(x) [B] for x [B, d]. */
    torch::Tensor logProb(const torch::Tensor& x) { return forward(x).logdet; }
    /** n samples x and their log p(x), by pushing uniform latents through inverse(); the latents come
     *  from the generator if one is given, else from LibTorch's default generator. */
    FlowResult sample(int64_t n, torch::TensorOptions options = torch::kFloat64,
                      c10::optional<at::Generator> generator = c10::nullopt);
    /** -log p(x) and its gradient d(-log p)/dx (the force is the negative gradient), both [B], [B, d];
     *  with createGraph the gradient stays differentiable (force matching). */
    std::pair<torch::Tensor, torch::Tensor> energyAndGradient(const torch::Tensor& x, bool createGraph = false);
    /** Sets the root finder of every layer whose transform has no analytic inverse. */
    void setInversion(InversionOptions options);
    /** Number of trainable scalars. */
    int64_t parameterCount() const;

private:
    ArchitectureSpec spec_;
    int64_t dim_, dataDim_;
    std::vector<bool> circular_;
    BijectionPtr embedding_;
    std::vector<BijectionPtr> layers_;
};

/** Builds one layer from its spec for a flow with the given per-dimension topology. */
FLOWFORCE_FLOW_EXPORT BijectionPtr makeBijection(const LayerSpec& spec, const std::vector<bool>& circular);

/** Architecture of a stack of 2-dim-style alternating couplings: layer i transforms the dimensions
 *  congruent to (i mod 2) conditioned on the others. Convenience for toys and tests. */
FLOWFORCE_FLOW_EXPORT nlohmann::json alternatingCouplingArchitecture(int64_t dim, const std::vector<bool>& circular, int64_t numLayers,
                                               const nlohmann::json& transformConfig, std::vector<int64_t> hidden,
                                               Activation activation, ConditionerHeads heads = ConditionerHeads::Separate);

}  // namespace flowforce
