#include "flowforce/flow/ModelFile.h"

#include <set>

namespace flowforce {

torch::Tensor toTensor(const StoredTensor& t) {
    return torch::tensor(t.values, torch::kFloat64).reshape(t.shape);
}

StoredTensor toStoredTensor(const torch::Tensor& tensor) {
    auto t = tensor.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    StoredTensor s;
    s.type = TensorType::F64;
    s.shape = t.sizes().vec();
    s.values.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    return s;
}

ModelFile toModelFile(const Flow& flow, const nlohmann::json& info) {
    ModelFile m;
    m.architecture = flow.config();
    m.info = info;
    for (const auto& p : flow.named_parameters()) m.tensors[p.key()] = toStoredTensor(p.value());
    return m;
}

std::shared_ptr<Flow> buildFlow(const ModelFile& model, const std::string& source) {
    std::shared_ptr<Flow> flow;
    try {
        flow = std::make_shared<Flow>(model.architecture);
    } catch (const std::exception& e) {
        throw ModelFileError(source + ": invalid architecture: " + e.what());
    }
    flow->to(torch::kFloat64);
    std::set<std::string> used;
    torch::NoGradGuard noGrad;
    for (auto& p : flow->named_parameters()) {
        auto it = model.tensors.find(p.key());
        if (it == model.tensors.end()) throw ModelFileError(source + ": weights '" + p.key() + "' are missing");
        if (it->second.shape != p.value().sizes().vec())
            throw ModelFileError(source + ": weights '" + p.key() + "' have shape " + c10::str(at::IntArrayRef(it->second.shape)) +
                                 " but the architecture needs " + c10::str(p.value().sizes()));
        p.value().copy_(toTensor(it->second));
        used.insert(p.key());
    }
    for (const auto& [name, t] : model.tensors)
        if (!used.count(name)) throw ModelFileError(source + ": tensor '" + name + "' does not belong to the architecture");
    return flow;
}

void saveFlow(const Flow& flow, const std::string& path, const nlohmann::json& info) {
    writeModelFile(path, toModelFile(flow, info));
}

std::shared_ptr<Flow> loadFlow(const std::string& path, nlohmann::json* info) {
    auto model = readModelFile(path);
    if (info) *info = model.info;
    return buildFlow(model, "model file '" + path + "'");
}

}  // namespace flowforce
