#include "flowforce/flow/ModelFormat.h"

#include "flowforce/flow/FileIO.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace flowforce {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // 100 MiB of JSON is certainly corrupt
constexpr int64_t kMaxDimension = int64_t(1) << 40;

void putLE64(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t getLE64(const char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

}  // namespace

int64_t StoredTensor::numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
}

std::string serializeModelFile(const ModelFile& model) {
    nlohmann::json header;
    header["__metadata__"] = {{"format", "flowforce"},
                              {"format_version", std::to_string(kModelFormatVersion)},
                              {"architecture", model.architecture.dump()},
                              {"info", model.info.dump()}};
    std::string data;
    for (const auto& [name, t] : model.tensors) {
        if (t.numel() != static_cast<int64_t>(t.values.size()))
            throw ModelFileError("model file: tensor '" + name + "' has " + std::to_string(t.values.size()) +
                                 " values but its shape needs " + std::to_string(t.numel()));
        const size_t begin = data.size();
        if (t.type == TensorType::F64) {
            data.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * sizeof(double));
        } else {
            for (double v : t.values) {
                const float f = static_cast<float>(v);
                data.append(reinterpret_cast<const char*>(&f), sizeof f);
            }
        }
        header[name] = {{"dtype", t.type == TensorType::F64 ? "F64" : "F32"},
                        {"shape", t.shape},
                        {"data_offsets", {begin, data.size()}}};
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // align tensor data to 8 bytes
    std::string out;
    putLE64(out, text.size());
    out += text;
    out += data;
    return out;
}

bool looksLikeModelFile(const std::string& bytes) {
    if (bytes.size() < 9 || bytes[8] != '{') return false;
    const uint64_t len = getLE64(bytes.data());
    return len > 0 && len <= bytes.size() - 8;
}

ModelFile parseModelFile(const std::string& bytes, const std::string& source) {
    auto fail = [&source](const std::string& why) { return ModelFileError(source + ": " + why); };
    if (bytes.size() < 8) throw fail("truncated: " + std::to_string(bytes.size()) + " bytes is too short for a model file");
    const uint64_t headerLen = getLE64(bytes.data());
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
    auto metaString = [&](const char* key, const char* fallback) -> std::string {
        if (!meta.contains(key)) return fallback;
        if (!meta[key].is_string()) throw fail(std::string("corrupt header: __metadata__.") + key + " is not a string");
        return meta[key].get<std::string>();
    };
    if (metaString("format", "") != "flowforce") throw fail("not a FlowForce model file (format is not 'flowforce')");
    const std::string versionText = metaString("format_version", "0");
    if (versionText.empty() || versionText.size() > 6 || versionText.find_first_not_of("0123456789") != std::string::npos)
        throw fail("corrupt header: bad format_version '" + versionText.substr(0, 20) + "'");
    const int version = std::stoi(versionText);
    if (version < 1 || version > kModelFormatVersion)
        throw fail("format version " + std::to_string(version) + " is not supported (this build reads 1.." +
                   std::to_string(kModelFormatVersion) + "; a newer FlowForce wrote it?)");

    ModelFile model;
    model.formatVersion = version;
    try {
        model.architecture = nlohmann::json::parse(metaString("architecture", ""));
        model.info = nlohmann::json::parse(metaString("info", "{}"));
    } catch (const ModelFileError&) {
        throw;
    } catch (const std::exception&) {
        throw fail("corrupt header: architecture/info are not valid JSON text");
    }
    if (!model.architecture.is_object()) throw fail("corrupt header: the architecture is not a JSON object");
    if (!model.info.is_object()) throw fail("corrupt header: info is not a JSON object");

    const uint64_t dataSize = bytes.size() - 8 - headerLen;
    const char* data = bytes.data() + 8 + headerLen;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& item : header.items()) {
        const std::string name = item.key();  // (not a structured binding: lambdas capture it, which clang 14 refuses)
        const auto& entry = item.value();
        if (name == "__metadata__") continue;
        auto bad = [&](const std::string& why) { return fail("tensor '" + name + "' " + why); };
        if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
            throw bad("has a corrupt header entry (needs dtype, shape, data_offsets)");
        const auto& dt = entry["dtype"];
        StoredTensor t;
        if (dt == "F64") t.type = TensorType::F64;
        else if (dt == "F32") t.type = TensorType::F32;
        else throw bad("has unsupported dtype " + dt.dump() + " (F64 or F32)");
        const auto& shape = entry["shape"];
        const auto& offsets = entry["data_offsets"];
        if (!shape.is_array() || shape.size() > 8) throw bad("has an invalid shape");
        uint64_t numel = 1;
        for (const auto& s : shape) {
            if (!s.is_number_integer()) throw bad("has an invalid shape");
            const auto v = s.get<int64_t>();
            if (v < 0 || v > kMaxDimension) throw bad("has an invalid shape");
            t.shape.push_back(v);
            if (v != 0 && numel > dataSize / static_cast<uint64_t>(v)) throw bad("needs more data than the file holds");
            numel *= static_cast<uint64_t>(v);
        }
        if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
            throw bad("has invalid data offsets");
        const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
        const uint64_t elem = t.type == TensorType::F64 ? 8 : 4;
        if (end < begin || end - begin != numel * elem) throw bad("has data offsets that do not match its shape");
        if (end > dataSize)
            throw fail("truncated: tensor '" + name + "' needs bytes up to " + std::to_string(end) +
                       " of the data section, which has " + std::to_string(dataSize));
        ranges.emplace_back(begin, end);
        t.values.resize(numel);
        if (t.type == TensorType::F64) {
            if (numel > 0) std::memcpy(t.values.data(), data + begin, numel * 8);  // x86/ARM: little-endian
        } else {
            for (uint64_t i = 0; i < numel; ++i) {
                float f;
                std::memcpy(&f, data + begin + 4 * i, 4);
                t.values[i] = f;
            }
        }
        model.tensors.emplace(name, std::move(t));
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

ModelFile readModelFile(const std::string& path) {
    std::string bytes;
    try {
        bytes = readFile(path);
    } catch (const std::exception& e) {
        throw ModelFileError(std::string("model file: ") + e.what());
    }
    return parseModelFile(bytes, "model file '" + path + "'");
}

void writeModelFile(const std::string& path, const ModelFile& model) { writeFileAtomically(path, serializeModelFile(model)); }

double modelTemperature(const ModelFile& model, const std::string& source) {
    if (!model.info.contains("temperature_K")) return 0.0;
    const auto& t = model.info["temperature_K"];
    const double v = t.is_number() ? t.get<double>() : NAN;
    if (!(v > 0.0 && v < 1e6))
        throw ModelFileError(source + ": info.temperature_K must be a positive number of kelvin below 1e6, got " + t.dump());
    return v;
}

}  // namespace flowforce
