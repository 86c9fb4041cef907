#pragma once
// Model files (*.flow), free of LibTorch: the safetensors layout (8-byte little-endian header length,
// a JSON header, raw little-endian tensor data) with the FlowForce architecture and information in
// "__metadata__":
//   "format": "flowforce", "format_version": "2",
//   "architecture": JSON text of the flow architecture (Architecture.h), "info": JSON text (temperature, ...).
// numpy, Python's safetensors package, the native evaluator and the LibTorch flow read it.

#include "flowforce/flow/Export.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace flowforce {

/** Version of the model-file format this build writes. It reads versions 1 and 2; version 1 differs only
 *  in its smooth transforms (the clamped parameterization of FlowForce 0.1, refused with a message). */
constexpr int kModelFormatVersion = 2;

/** A model file that cannot be read: missing, truncated, corrupt, or not matching its architecture. */
class FLOWFORCE_FLOW_EXPORT ModelFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/** Element type of a stored tensor. */
enum class TensorType { F64, F32 };

/** A named tensor of a model file: its stored type and shape, its values as doubles (row-major). */
struct FLOWFORCE_FLOW_EXPORT StoredTensor {
    TensorType type = TensorType::F64;
    std::vector<int64_t> shape;
    std::vector<double> values;
    /** Number of elements (product of the shape; 1 for a scalar). */
    int64_t numel() const;
};

/** The contents of a model file. */
struct FLOWFORCE_FLOW_EXPORT ModelFile {
    nlohmann::json architecture;                    ///< flow architecture (Architecture.h)
    nlohmann::json info = nlohmann::json::object(); ///< free-form information: temperature_K, molecule, ...
    int formatVersion = kModelFormatVersion;        ///< the version the file declared (writing uses the current one)
    std::map<std::string, StoredTensor> tensors;    ///< named weights
};

/** Serializes to the file format (bytes), with the current format version. */
FLOWFORCE_FLOW_EXPORT std::string serializeModelFile(const ModelFile& model);
/** Parses and validates the container: header length, JSON, format and version, every tensor's dtype,
 *  shape and byte range (within the file, no overlaps, gaps or trailing bytes), before allocating.
 *  `source` names the bytes in error messages. Throws ModelFileError with a one-line reason. */
FLOWFORCE_FLOW_EXPORT ModelFile parseModelFile(const std::string& bytes, const std::string& source);
/** True if the bytes start like a model file (a plausible header length followed by '{'). */
FLOWFORCE_FLOW_EXPORT bool looksLikeModelFile(const std::string& bytes);
/** Reads and parses a model file; throws ModelFileError. */
FLOWFORCE_FLOW_EXPORT ModelFile readModelFile(const std::string& path);
/** Writes a model file atomically (FileIO.h). */
FLOWFORCE_FLOW_EXPORT void writeModelFile(const std::string& path, const ModelFile& model);

/** The model's temperature in K from info["temperature_K"]: 0 if absent; throws ModelFileError if it
 *  is present but not a positive finite number below 1e6 K. */
FLOWFORCE_FLOW_EXPORT double modelTemperature(const ModelFile& model, const std::string& source);

}  // namespace flowforce
