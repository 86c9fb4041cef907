#ifndef FLOWFORCE_OPENMM_PROXY_H_
#define FLOWFORCE_OPENMM_PROXY_H_

// XmlSerializer support for FlowForce: the model file's bytes are embedded (base64), so a
// serialized System runs without the original file.

#include "FlowForceExport.h"

#include <openmm/serialization/SerializationNode.h>
#include <openmm/serialization/SerializationProxy.h>

#include <string>

namespace FlowForcePlugin {

class FLOWFORCE_EXPORT FlowForceProxy : public OpenMM::SerializationProxy {
public:
    FlowForceProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const override;
    void* deserialize(const OpenMM::SerializationNode& node) const override;
};

/** Registers FlowForceProxy with OpenMM's serialization. Idempotent; it also runs when libFlowForce loads. */
FLOWFORCE_EXPORT void registerFlowForceSerializationProxies();

/** Base64 (RFC 4648, with padding) of arbitrary bytes. */
FLOWFORCE_EXPORT std::string encodeBase64(const std::string& bytes);
/** Decodes base64 text (whitespace ignored); throws OpenMM::OpenMMException on malformed input. */
FLOWFORCE_EXPORT std::string decodeBase64(const std::string& text);

}  // namespace FlowForcePlugin

#endif  // FLOWFORCE_OPENMM_PROXY_H_
