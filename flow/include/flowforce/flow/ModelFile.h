#pragma once
// Model files and LibTorch flows: capture a Flow's architecture and weights as a model file
// (ModelFormat.h, the container), and build a Flow from one.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Flow.h"
#include "flowforce/flow/ModelFormat.h"

#include <memory>
#include <string>

namespace flowforce {

/** Captures a flow's architecture and weights (float64). */
FLOWFORCE_FLOW_EXPORT ModelFile toModelFile(const Flow& flow, const nlohmann::json& info = nlohmann::json::object());
/** Builds the flow of a model file and loads its weights; every parameter must be present with the
 *  right shape and no tensor may be left over. Throws ModelFileError. */
FLOWFORCE_FLOW_EXPORT std::shared_ptr<Flow> buildFlow(const ModelFile& model, const std::string& source = "model");

/** Convenience: saveFlow = writeModelFile(toModelFile(...)); loadFlow = buildFlow(readModelFile(...)). */
FLOWFORCE_FLOW_EXPORT void saveFlow(const Flow& flow, const std::string& path, const nlohmann::json& info = nlohmann::json::object());
FLOWFORCE_FLOW_EXPORT std::shared_ptr<Flow> loadFlow(const std::string& path, nlohmann::json* info = nullptr);

/** A stored tensor as a float64 LibTorch tensor (a copy), and back. */
FLOWFORCE_FLOW_EXPORT torch::Tensor toTensor(const StoredTensor& t);
FLOWFORCE_FLOW_EXPORT StoredTensor toStoredTensor(const torch::Tensor& t);

}  // namespace flowforce
