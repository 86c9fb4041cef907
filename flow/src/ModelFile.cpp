#include "flowforce/flow/ModelFile.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

namespace flowforce {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // 100 MiB of JSON is certainly corrupt

std::string dtypeName(torch::ScalarType t) {
    if (t == torch::kFloat64) return "F64";
    if (t == torch::kFloat32) return "F32";
    throw ModelFileError("model file: only float64 and float32 tensors can be stored");
}

void putLE64(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t getLE64(const std::string& s) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[static_cast<size_t>(i)]);
    return v;
}

}  // namespace

std::string serializeModelFile(const ModelFile& model) {
    nlohmann::json header;
    header["__metadata__"] = {{"format", "flowforce"},
                              {"format_version", std::to_string(kModelFormatVersion)},
                              {"architecture", model.architecture.dump()},
                              {"info", model.info.dump()}};
    std::string data;
    for (const auto& [name, tensor] : model.tensors) {
        auto t = tensor.detach().to(torch::kCPU).contiguous();
        const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
        header[name] = {{"dtype", dtypeName(t.scalar_type())},
                        {"shape", t.sizes().vec()},
                        {"data_offsets", {data.size(), data.size() + bytes}}};
        data.append(static_cast<const char*>(t.data_ptr()), bytes);  // x86/ARM: little-endian in memory
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // align tensor data to 8 bytes
    std::string out;
    putLE64(out, text.size());
    out += text;
    out += data;
    return out;
}

ModelFile parseModelFile(const std::string& bytes, const std::string& source) {
    auto fail = [&source](const std::string& why) { return ModelFileError(source + ": " + why); };
    if (bytes.size() < 8) throw fail("truncated: " + std::to_string(bytes.size()) + " bytes is too short for a model file");
    const uint64_t headerLen = getLE64(bytes);
    if (headerLen > kMaxHeaderBytes || headerLen > bytes.size() - 8)
        throw fail("corrupt or truncated: header length " + std::to_string(headerLen) + " exceeds the file (" +
                   std::to_string(bytes.size()) + " bytes)");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(headerLen));
    } catch (const std::exception&) {
        throw fail("corrupt header: not valid JSON (is this a FlowForce model file?)");
    }
    if (!header.is_object() || !header.contains("__metadata__") || !header["__metadata__"].is_object())
        throw fail("not a FlowForce model file (no __metadata__ in the header)");
    const auto& meta = header["__metadata__"];
    if (meta.value("format", std::string()) != "flowforce") throw fail("not a FlowForce model file (format is not 'flowforce')");
    int version = 0;
    try {
        version = std::stoi(meta.value("format_version", std::string("0")));
    } catch (const std::exception&) {
        throw fail("corrupt header: bad format_version");
    }
    if (version < 1 || version > kModelFormatVersion)
        throw fail("format version " + std::to_string(version) + " is not supported (this build reads 1.." +
                   std::to_string(kModelFormatVersion) + "; a newer FlowForce wrote it?)");

    ModelFile model;
    try {
        model.architecture = nlohmann::json::parse(meta.at("architecture").get<std::string>());
        model.info = nlohmann::json::parse(meta.value("info", std::string("{}")));
    } catch (const std::exception&) {
        throw fail("corrupt header: architecture/info are not valid JSON text");
    }

    const uint64_t dataSize = bytes.size() - 8 - headerLen;
    const char* data = bytes.data() + 8 + headerLen;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") continue;
        try {
            const std::string dtype = entry.at("dtype").get<std::string>();
            torch::ScalarType type;
            if (dtype == "F64") type = torch::kFloat64;
            else if (dtype == "F32") type = torch::kFloat32;
            else throw fail("tensor '" + name + "' has unsupported dtype " + dtype);
            auto shape = entry.at("shape").get<std::vector<int64_t>>();
            auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
            uint64_t numel = 1;
            for (auto s : shape) {
                if (s < 0 || s > (int64_t(1) << 40)) throw fail("tensor '" + name + "' has an invalid shape");
                numel *= static_cast<uint64_t>(s);
            }
            const uint64_t elem = type == torch::kFloat64 ? 8 : 4;
            if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] - offsets[0] != numel * elem)
                throw fail("tensor '" + name + "' has data offsets that do not match its shape");
            if (offsets[1] > dataSize)
                throw fail("truncated: tensor '" + name + "' needs bytes up to " + std::to_string(offsets[1]) +
                           " of the data section, which has " + std::to_string(dataSize));
            ranges.emplace_back(offsets[0], offsets[1]);
            auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
            if (numel > 0) std::memcpy(t.data_ptr(), data + offsets[0], numel * elem);
            model.tensors[name] = t;
        } catch (const ModelFileError&) {
            throw;
        } catch (const std::exception&) {
            throw fail("corrupt header entry for tensor '" + name + "'");
        }
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t end = 0;
    for (const auto& [b, e] : ranges) {
        if (b != end) throw fail("corrupt: tensor data overlaps or leaves gaps");
        end = e;
    }
    if (end != dataSize)
        throw fail("corrupt: " + std::to_string(dataSize - end) + " bytes of trailing data after the tensors");
    return model;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
    return ss.str();
}

ModelFile readModelFile(const std::string& path) {
    std::string bytes;
    try {
        bytes = readFile(path);
    } catch (const std::exception& e) {
        throw ModelFileError(std::string("model file: ") + e.what());
    }
    return parseModelFile(bytes, "model file '" + path + "'");
}

void writeFileAtomically(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0 &&
                    ::fsync(fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    if (!ok) {
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(e));
    }
}

void writeModelFile(const std::string& path, const ModelFile& model) { writeFileAtomically(path, serializeModelFile(model)); }

ModelFile toModelFile(const Flow& flow, const nlohmann::json& info) {
    ModelFile m;
    m.architecture = flow.config();
    m.info = info;
    for (const auto& p : flow.named_parameters()) m.tensors[p.key()] = p.value().detach().to(torch::kFloat64);
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
        if (it->second.sizes() != p.value().sizes())
            throw ModelFileError(source + ": weights '" + p.key() + "' have shape " + c10::str(it->second.sizes()) +
                                 " but the architecture needs " + c10::str(p.value().sizes()));
        p.value().copy_(it->second);
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
