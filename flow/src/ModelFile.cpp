#include "flowforce/flow/ModelFile.h"


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
    // validated before any module is allocated: corrupt sizes cannot make the flow huge
    auto flow = std::make_shared<Flow>(validatedArchitecture(model, source));
    flow->to(torch::kFloat64);
    torch::NoGradGuard noGrad;
    for (auto& p : flow->named_parameters()) p.value().copy_(toTensor(model.tensors.at(p.key())));
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
