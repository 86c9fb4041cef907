#pragma once
// Model files (*.flow): the safetensors layout (8-byte little-endian header length, a JSON header,
// raw little-endian tensor data) with the FlowForce architecture and information in "__metadata__":
//   "format": "flowforce", "format_version": "1",
//   "architecture": JSON text of the Flow architecture, "info": JSON text (temperature, molecule, ...).
// numpy, Python's safetensors package and the native evaluator read it without LibTorch.

#include "flowforce/flow/Flow.h"

#include <map>
#include <stdexcept>
#include <string>

namespace flowforce {

/** Version of the model-file format this build writes; it reads this version and older. */
constexpr int kModelFormatVersion = 1;

/** A model file that cannot be read: missing, truncated, corrupt, or not matching its architecture. */
class ModelFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/** The contents of a model file. */
struct ModelFile {
    nlohmann::json architecture;                   ///< Flow architecture (Flow.h)
    nlohmann::json info = nlohmann::json::object(); ///< free-form information: temperature_K, molecule, ...
    std::map<std::string, torch::Tensor> tensors;  ///< named float64/float32 tensors (CPU)
};

/** Serializes to the file format (bytes). */
std::string serializeModelFile(const ModelFile& model);
/** Parses and validates bytes of the file format; `source` names them in error messages. */
ModelFile parseModelFile(const std::string& bytes, const std::string& source);
/** Reads and validates a model file; throws ModelFileError with a one-line reason. */
ModelFile readModelFile(const std::string& path);
/** Writes a model file atomically (temporary file in the same folder, then rename). */
void writeModelFile(const std::string& path, const ModelFile& model);

/** Captures a flow's architecture and weights (float64). */
ModelFile toModelFile(const Flow& flow, const nlohmann::json& info = nlohmann::json::object());
/** Builds the flow of a model file and loads its weights; every parameter must be present with the
 *  right shape and no tensor may be left over. Throws ModelFileError. */
std::shared_ptr<Flow> buildFlow(const ModelFile& model, const std::string& source = "model");

/** Convenience: saveFlow = writeModelFile(toModelFile(...)); loadFlow = buildFlow(readModelFile(...)). */
void saveFlow(const Flow& flow, const std::string& path, const nlohmann::json& info = nlohmann::json::object());
std::shared_ptr<Flow> loadFlow(const std::string& path, nlohmann::json* info = nullptr);

/** Writes bytes to path atomically: a reader sees the old file or the complete new one, never a part. */
void writeFileAtomically(const std::string& path, const std::string& bytes);
/** Reads a whole file; throws std::runtime_error naming the path and the system's reason. */
std::string readFile(const std::string& path);

}  // namespace flowforce
