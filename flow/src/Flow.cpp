#include "flowforce/flow/Flow.h"

#include "flowforce/flow/InternalCoordinates.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <set>
#include <stdexcept>

namespace flowforce {

namespace {
torch::Tensor activate(const torch::Tensor& h, Activation a) {
    switch (a) {
        case Activation::SiLU: return torch::silu(h);
        case Activation::Sin: return torch::sin(h);
        case Activation::Tanh: return torch::tanh(h);
        case Activation::ReLU: return torch::relu(h);
    }
    return h;
}

torch::Tensor indexTensor(const std::vector<int64_t>& idx) {
    return torch::tensor(std::vector<int64_t>(idx.begin(), idx.end()), torch::kLong);
}

}  // namespace

// ----------------------------------------------------------------------------------------------

Conditioner::Conditioner(std::vector<bool> inputCircular, int64_t outputs, std::vector<int64_t> hidden,
                         Activation activation)
    : activation_(activation) {
    std::vector<int64_t> lin, circ;
    for (size_t i = 0; i < inputCircular.size(); ++i) (inputCircular[i] ? circ : lin).push_back(static_cast<int64_t>(i));
    linearIndex_ = indexTensor(lin);
    circularIndex_ = indexTensor(circ);
    int64_t in = static_cast<int64_t>(lin.size() + 2 * circ.size());
    if (in == 0) throw std::invalid_argument("conditioner: needs at least one input");
    hidden.push_back(outputs);
    for (size_t i = 0; i < hidden.size(); ++i) {
        layers_.push_back(register_module("linear" + std::to_string(i), torch::nn::Linear(in, hidden[i])));
        in = hidden[i];
    }
}

void Conditioner::initializeOutput(const torch::Tensor& bias, double weightScale) {
    torch::NoGradGuard ng;
    auto& out = layers_.back();
    out->bias.copy_(bias);
    out->weight.mul_(weightScale);
}

torch::Tensor Conditioner::forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> features;
    if (linearIndex_.numel() > 0) features.push_back(2.0 * x.index_select(1, linearIndex_.to(x.device())) - 1.0);
    if (circularIndex_.numel() > 0) {
        auto angle = (2.0 * M_PI) * x.index_select(1, circularIndex_.to(x.device()));
        features.push_back(torch::cos(angle));
        features.push_back(torch::sin(angle));
    }
    auto h = features.size() == 1 ? features[0] : torch::cat(features, 1);
    for (size_t i = 0; i < layers_.size(); ++i) {
        h = layers_[i]->forward(h);
        if (i + 1 < layers_.size()) h = activate(h, activation_);
    }
    return h;
}

// ----------------------------------------------------------------------------------------------

CouplingLayer::CouplingLayer(const CouplingSpec& spec, const std::vector<bool>& circular) : spec_(spec) {
    transform_ = std::const_pointer_cast<ElementwiseTransform>(makeTransform(spec_.transform));
    std::vector<bool> condCircular;
    for (auto i : spec_.conditioning) condCircular.push_back(circular[static_cast<size_t>(i)]);
    const auto d = static_cast<int64_t>(spec_.transformed.size());
    // start near the transform's preferred initial shape (e.g. mixture components spread on a grid),
    // with a weak dependence on the conditioning inputs
    const auto init = transform_->initialParams();
    int64_t offset = 0;
    for (const auto& net : spec_.networks()) {
        auto c = register_module(net.name, std::make_shared<Conditioner>(condCircular, d * net.count, spec_.hidden, spec_.activation));
        c->initializeOutput(init.narrow(0, offset, net.count).repeat({d}), 0.1);
        offset += net.count;
        conditioners_.push_back(c);
        networkCounts_.push_back(net.count);
    }
    condIndex_ = indexTensor(spec_.conditioning);
    transIndex_ = indexTensor(spec_.transformed);
}

torch::Tensor CouplingLayer::parameters(const torch::Tensor& x) {
    auto xc = x.index_select(1, condIndex_.to(x.device()));
    const int64_t B = x.size(0), d = static_cast<int64_t>(spec_.transformed.size());
    if (conditioners_.size() == 1) return conditioners_[0]->forward(xc).view({B, d, networkCounts_[0]});
    std::vector<torch::Tensor> parts;
    for (size_t h = 0; h < conditioners_.size(); ++h)
        parts.push_back(conditioners_[h]->forward(xc).view({B, d, networkCounts_[h]}));
    return torch::cat(parts, -1);
}

FlowResult CouplingLayer::apply(const torch::Tensor& x, bool transformForward) {
    auto ti = transIndex_.to(x.device());
    auto params = parameters(x);
    auto xt = x.index_select(1, ti);
    auto r = transformForward ? transform_->forward(xt, params) : transform_->inverse(xt, params);
    return {x.index_copy(1, ti, r.out), r.logdet.sum(-1)};
}

FlowResult CouplingLayer::forward(const torch::Tensor& x) { return apply(x, !spec_.invertTransform); }
FlowResult CouplingLayer::inverse(const torch::Tensor& z) { return apply(z, spec_.invertTransform); }

nlohmann::json CouplingLayer::config() const {
    LayerSpec l;
    l.coupling = spec_;
    return l.toJson();
}

// ----------------------------------------------------------------------------------------------

InvertedLayer::InvertedLayer(BijectionPtr inner) : inner_(register_module("inner", std::move(inner))) {}

nlohmann::json InvertedLayer::config() const { return {{"type", "inverted"}, {"layer", inner_->config()}}; }

// ----------------------------------------------------------------------------------------------

BoxLayer::BoxLayer(const BoxSpec& spec, std::vector<bool> circular)
    : low_(spec.low), high_(spec.high), circular_(std::move(circular)), logVolume_(0.0) {
    if (low_.size() != high_.size() || low_.size() != circular_.size())
        throw std::invalid_argument("box: low, high and circular must have the flow's dimension");
    for (size_t i = 0; i < low_.size(); ++i) {
        if (!(high_[i] > low_[i])) throw std::invalid_argument("box: need high > low in every dimension");
        logVolume_ += std::log(high_[i] - low_[i]);
    }
}

FlowResult BoxLayer::forward(const torch::Tensor& x) {
    auto lo = torch::tensor(low_, x.options()), hi = torch::tensor(high_, x.options());
    auto u = (x - lo) / (hi - lo);
    std::vector<int64_t> circ;
    for (size_t i = 0; i < circular_.size(); ++i)
        if (circular_[i]) circ.push_back(static_cast<int64_t>(i));
    if (!circ.empty()) {
        auto ci = indexTensor(circ).to(x.device());
        auto uc = u.index_select(1, ci);
        u = u.index_copy(1, ci, uc - torch::floor(uc).detach());
    }
    return {u, torch::full({x.size(0)}, -logVolume_, x.options())};
}

FlowResult BoxLayer::inverse(const torch::Tensor& z) {
    auto lo = torch::tensor(low_, z.options()), hi = torch::tensor(high_, z.options());
    return {lo + z * (hi - lo), torch::full({z.size(0)}, logVolume_, z.options())};
}

nlohmann::json BoxLayer::config() const { return {{"type", "box"}, {"low", low_}, {"high", high_}}; }

// ----------------------------------------------------------------------------------------------

BijectionPtr makeBijection(const LayerSpec& spec, const std::vector<bool>& circular) {
    switch (spec.kind) {
        case LayerSpec::Kind::Coupling: return std::make_shared<CouplingLayer>(spec.coupling, circular);
        case LayerSpec::Kind::Box: return std::make_shared<BoxLayer>(spec.box, circular);
        case LayerSpec::Kind::Inverted: return std::make_shared<InvertedLayer>(makeBijection(*spec.inner, circular));
    }
    throw std::invalid_argument("flow: unknown layer kind");
}

Flow::Flow(const nlohmann::json& architecture) : Flow(ArchitectureSpec::fromJson(architecture)) {}

Flow::Flow(const ArchitectureSpec& spec) : spec_(spec), dim_(spec.dim), dataDim_(spec.dataDim()), circular_(spec.circular) {
    if (spec_.embedding) embedding_ = register_module("embedding", std::make_shared<InternalCoordinateLayer>(*spec_.embedding));
    int i = 0;
    for (const auto& layer : spec_.layers)
        layers_.push_back(register_module("layer" + std::to_string(i++), makeBijection(layer, circular_)));
}

FlowResult Flow::forward(const torch::Tensor& x) {
    if (x.dim() != 2 || x.size(1) != dataDim_)
        throw std::invalid_argument("flow: expected input of shape [batch, " + std::to_string(dataDim_) + "]");
    auto h = x;
    auto logdet = torch::zeros({x.size(0)}, x.options());
    if (embedding_) {
        auto r = embedding_->forward(h);
        h = r.out;
        logdet = r.logdet;
    }
    for (auto& layer : layers_) {
        auto r = layer->forward(h);
        h = r.out;
        logdet = logdet + r.logdet;
    }
    return {h, logdet};
}

FlowResult Flow::inverse(const torch::Tensor& z) {
    if (z.dim() != 2 || z.size(1) != dim_)
        throw std::invalid_argument("flow: expected input of shape [batch, " + std::to_string(dim_) + "]");
    auto h = z;
    auto logdet = torch::zeros({z.size(0)}, z.options());
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
        auto r = (*it)->inverse(h);
        h = r.out;
        logdet = logdet + r.logdet;
    }
    if (embedding_) {
        auto r = embedding_->inverse(h);
        h = r.out;
        logdet = logdet + r.logdet;
    }
    return {h, logdet};
}

FlowResult Flow::sample(int64_t n, torch::TensorOptions options, c10::optional<at::Generator> generator) {
    auto z = torch::rand({n, dim_}, generator, options);
    auto r = inverse(z);
    return {r.out, -r.logdet};
}

std::pair<torch::Tensor, torch::Tensor> Flow::energyAndGradient(const torch::Tensor& x, bool createGraph) {
    torch::AutoGradMode enable(true);
    auto xg = x.detach().requires_grad_(true);
    auto u = -logProb(xg);
    auto grad = torch::autograd::grad({u.sum()}, {xg}, {}, /*retain_graph=*/createGraph, /*create_graph=*/createGraph)[0];
    if (!createGraph) u = u.detach();
    return {u, grad};
}

void Flow::setInversion(InversionOptions options) {
    for (auto& m : modules(/*include_self=*/false))
        if (auto c = std::dynamic_pointer_cast<CouplingLayer>(m)) c->inversionOptions() = options;
}

int64_t Flow::parameterCount() const {
    int64_t n = 0;
    for (const auto& p : parameters()) n += p.numel();
    return n;
}

nlohmann::json alternatingCouplingArchitecture(int64_t dim, const std::vector<bool>& circular, int64_t numLayers,
                                               const nlohmann::json& transformConfig, std::vector<int64_t> hidden,
                                               Activation activation, ConditionerHeads heads) {
    if (dim < 2) throw std::invalid_argument("alternating couplings need dim >= 2");
    nlohmann::json layers = nlohmann::json::array();
    for (int64_t l = 0; l < numLayers; ++l) {
        std::vector<int64_t> cond, trans;
        for (int64_t i = 0; i < dim; ++i) ((i % 2 == l % 2) ? trans : cond).push_back(i);
        layers.push_back({{"type", "coupling"},
                          {"conditioning", cond},
                          {"transformed", trans},
                          {"transform", transformConfig},
                          {"conditioner",
                           {{"hidden", hidden}, {"activation", activationName(activation)}, {"heads", conditionerHeadsName(heads)}}}});
    }
    return {{"dim", dim}, {"circular", circular}, {"layers", layers}};
}

}  // namespace flowforce
