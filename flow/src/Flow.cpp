#include "flowforce/flow/Flow.h"

#include "flowforce/flow/InternalCoordinates.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <set>
#include <stdexcept>

namespace flowforce {

Activation activationFromName(const std::string& name) {
    if (name == "silu" || name == "swish") return Activation::SiLU;
    if (name == "sin") return Activation::Sin;
    if (name == "tanh") return Activation::Tanh;
    if (name == "relu") return Activation::ReLU;
    throw std::invalid_argument("unknown activation '" + name + "' (silu, sin, tanh or relu)");
}

std::string activationName(Activation a) {
    switch (a) {
        case Activation::SiLU: return "silu";
        case Activation::Sin: return "sin";
        case Activation::Tanh: return "tanh";
        case Activation::ReLU: return "relu";
    }
    return "silu";
}

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

std::vector<int64_t> toIndices(const nlohmann::json& j, int64_t dim, const char* what) {
    std::vector<int64_t> v = j.get<std::vector<int64_t>>();
    for (auto i : v)
        if (i < 0 || i >= dim)
            throw std::invalid_argument(std::string("coupling: ") + what + " index " + std::to_string(i) +
                                        " outside 0.." + std::to_string(dim - 1));
    return v;
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

CouplingLayer::CouplingLayer(int64_t dim, std::vector<int64_t> conditioning, std::vector<int64_t> transformed,
                             const std::vector<bool>& circular, const nlohmann::json& transformConfig,
                             std::vector<int64_t> hidden, Activation activation, bool invertTransform)
    : dim_(dim), conditioning_(std::move(conditioning)), transformed_(std::move(transformed)),
      hidden_(std::move(hidden)), activation_(activation), invertTransform_(invertTransform) {
    if (static_cast<int64_t>(circular.size()) != dim) throw std::invalid_argument("coupling: circular flags must match dim");
    if (conditioning_.empty() || transformed_.empty())
        throw std::invalid_argument("coupling: needs at least one conditioning and one transformed dimension");
    std::set<int64_t> seen;
    for (auto i : conditioning_) seen.insert(i);
    for (auto i : transformed_)
        if (!seen.insert(i).second)
            throw std::invalid_argument("coupling: dimension " + std::to_string(i) +
                                        " appears twice among conditioning/transformed");
    const bool circ = circular[transformed_[0]];
    for (auto i : transformed_)
        if (circular[i] != circ)
            throw std::invalid_argument("coupling: transformed dimensions must all be circular or all be non-circular");
    auto cfg = transformConfig;
    cfg["circular"] = circ;
    transform_ = std::const_pointer_cast<ElementwiseTransform>(makeTransform(cfg));
    std::vector<bool> condCircular;
    for (auto i : conditioning_) condCircular.push_back(circular[i]);
    conditioner_ = register_module(
        "conditioner", std::make_shared<Conditioner>(condCircular, static_cast<int64_t>(transformed_.size()) * transform_->numParams(),
                                                     hidden_, activation_));
    // start near the transform's preferred initial shape (e.g. mixture components spread on a grid),
    // with a weak dependence on the conditioning inputs
    conditioner_->initializeOutput(transform_->initialParams().repeat({static_cast<int64_t>(transformed_.size())}), 0.1);
    condIndex_ = indexTensor(conditioning_);
    transIndex_ = indexTensor(transformed_);
}

FlowResult CouplingLayer::apply(const torch::Tensor& x, bool transformForward) {
    auto ci = condIndex_.to(x.device()), ti = transIndex_.to(x.device());
    auto params = conditioner_->forward(x.index_select(1, ci))
                      .view({x.size(0), static_cast<int64_t>(transformed_.size()), transform_->numParams()});
    auto xt = x.index_select(1, ti);
    auto r = transformForward ? transform_->forward(xt, params) : transform_->inverse(xt, params);
    return {x.index_copy(1, ti, r.out), r.logdet.sum(-1)};
}

FlowResult CouplingLayer::forward(const torch::Tensor& x) { return apply(x, !invertTransform_); }
FlowResult CouplingLayer::inverse(const torch::Tensor& z) { return apply(z, invertTransform_); }

nlohmann::json CouplingLayer::config() const {
    auto t = transform_->config();
    t.erase("circular");  // follows from the flow's topology
    return {{"type", "coupling"},
            {"conditioning", conditioning_},
            {"transformed", transformed_},
            {"transform", t},
            {"conditioner", {{"hidden", hidden_}, {"activation", activationName(activation_)}}},
            {"invert_transform", invertTransform_}};
}

// ----------------------------------------------------------------------------------------------

InvertedLayer::InvertedLayer(BijectionPtr inner) : inner_(register_module("inner", std::move(inner))) {}

nlohmann::json InvertedLayer::config() const { return {{"type", "inverted"}, {"layer", inner_->config()}}; }

// ----------------------------------------------------------------------------------------------

BoxLayer::BoxLayer(std::vector<double> low, std::vector<double> high, std::vector<bool> circular)
    : low_(std::move(low)), high_(std::move(high)), circular_(std::move(circular)), logVolume_(0.0) {
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

BijectionPtr makeBijection(const nlohmann::json& config, const std::vector<bool>& circular) {
    const auto dim = static_cast<int64_t>(circular.size());
    const std::string type = config.at("type").get<std::string>();
    if (type == "coupling") {
        const auto& cond = config.at("conditioner");
        return std::make_shared<CouplingLayer>(
            dim, toIndices(config.at("conditioning"), dim, "conditioning"),
            toIndices(config.at("transformed"), dim, "transformed"), circular, config.at("transform"),
            cond.value("hidden", std::vector<int64_t>{64, 64}),
            activationFromName(cond.value("activation", std::string("silu"))), config.value("invert_transform", false));
    }
    if (type == "inverted") return std::make_shared<InvertedLayer>(makeBijection(config.at("layer"), circular));
    if (type == "box")
        return std::make_shared<BoxLayer>(config.at("low").get<std::vector<double>>(),
                                          config.at("high").get<std::vector<double>>(), circular);
    throw std::invalid_argument("unknown layer type '" + type + "' (coupling, inverted or box)");
}

Flow::Flow(const nlohmann::json& architecture) : architecture_(architecture) {
    dim_ = architecture.at("dim").get<int64_t>();
    if (dim_ < 1) throw std::invalid_argument("flow: dim must be >= 1");
    circular_ = architecture.value("circular", std::vector<bool>(static_cast<size_t>(dim_), false));
    if (static_cast<int64_t>(circular_.size()) != dim_) throw std::invalid_argument("flow: 'circular' needs dim entries");
    dataDim_ = dim_;
    if (architecture.contains("embedding")) {
        const auto& e = architecture["embedding"];
        if (e.value("type", std::string()) != "internal_coordinates")
            throw std::invalid_argument("flow: unknown embedding type (internal_coordinates)");
        auto ic = makeInternalCoordinateLayer(e);
        if (ic->outputDim() != dim_)
            throw std::invalid_argument("flow: the embedding produces " + std::to_string(ic->outputDim()) +
                                        " coordinates but dim is " + std::to_string(dim_));
        if (ic->circularFlags() != circular_)
            throw std::invalid_argument("flow: 'circular' does not match the embedding's torsions");
        dataDim_ = ic->inputDim();
        embedding_ = register_module("embedding", ic);
    }
    int i = 0;
    for (const auto& layer : architecture.at("layers"))
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

FlowResult Flow::sample(int64_t n, torch::TensorOptions options) {
    auto z = torch::rand({n, dim_}, options);
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
                                               Activation activation) {
    if (dim < 2) throw std::invalid_argument("alternating couplings need dim >= 2");
    nlohmann::json layers = nlohmann::json::array();
    for (int64_t l = 0; l < numLayers; ++l) {
        std::vector<int64_t> cond, trans;
        for (int64_t i = 0; i < dim; ++i) ((i % 2 == l % 2) ? trans : cond).push_back(i);
        layers.push_back({{"type", "coupling"},
                          {"conditioning", cond},
                          {"transformed", trans},
                          {"transform", transformConfig},
                          {"conditioner", {{"hidden", hidden}, {"activation", activationName(activation)}}}});
    }
    return {{"dim", dim}, {"circular", circular}, {"layers", layers}};
}

}  // namespace flowforce
