#include "FlowForceProxy.h"

#include "FlowForce.h"

#include <openmm/OpenMMException.h>

#include <array>
#include <cctype>
#include <cmath>
#include <memory>
#include <mutex>
#include <typeinfo>
#include <vector>

using OpenMM::OpenMMException;
using OpenMM::SerializationNode;

namespace FlowForcePlugin {

namespace {

constexpr int kVersion = 2;  // 2: precision and backend
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string encodeBase64(const std::string& bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                           static_cast<unsigned char>(bytes[i + 2]);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    const size_t rest = bytes.size() - i;
    if (rest > 0) {
        unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
        if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string decodeBase64(const std::string& text) {
    std::array<int, 256> value;
    value.fill(-1);
    for (int k = 0; k < 64; ++k) value[static_cast<unsigned char>(kAlphabet[k])] = k;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    unsigned acc = 0;
    int bits = 0, padding = 0;
    size_t symbols = 0;
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c))) continue;
        ++symbols;
        if (c == '=') {
            ++padding;
            continue;
        }
        const int v = value[static_cast<unsigned char>(c)];
        if (v < 0 || padding > 0) throw OpenMMException("FlowForce: the embedded model is not valid base64");
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    if (symbols % 4 != 0 || padding > 2) throw OpenMMException("FlowForce: the embedded model is not valid base64 (truncated?)");
    return out;
}

FlowForceProxy::FlowForceProxy() : OpenMM::SerializationProxy("FlowForce") {}

void FlowForceProxy::serialize(const void* object, SerializationNode& node) const {
    const FlowForce& force = *static_cast<const FlowForce*>(object);
    node.setIntProperty("version", kVersion);
    node.setStringProperty("name", force.getName());
    node.setIntProperty("forceGroup", force.getForceGroup());
    node.setStringProperty("modelFile", force.getModelFile());
    node.setDoubleProperty("temperature", force.getTemperature());
    node.setDoubleProperty("energyOffset", force.getEnergyOffset());
    node.setIntProperty("precision", static_cast<int>(force.getPrecision()));
    node.setIntProperty("backend", static_cast<int>(force.getBackend()));
    SerializationNode& particles = node.createChildNode("Particles");
    for (int p : force.getParticles()) particles.createChildNode("Particle").setIntProperty("index", p);
    node.createChildNode("Model").setStringProperty("base64", encodeBase64(force.getModelBytes()));
}

namespace {

/** Text from a serialized force (an element name, a file name) as one printable line, for messages. */
std::string oneLine(const std::string& text, size_t maxLength = 300) {
    std::string out;
    for (char c : text.substr(0, maxLength)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    return text.size() > maxLength ? out + "..." : out;
}

FlowForce* readFlowForce(const SerializationNode& node) {
    const int version = node.getIntProperty("version");
    if (version < 1 || version > kVersion)
        throw OpenMMException("FlowForce: unsupported serialization version " + std::to_string(version) +
                              " (this build reads up to " + std::to_string(kVersion) + ")");
    std::vector<int> particles;
    for (const SerializationNode& p : node.getChildNode("Particles").getChildren()) {
        if (p.getName() != "Particle")
            throw OpenMMException("FlowForce: unexpected element '" + p.getName() + "' among the Particles (Particle expected)");
        particles.push_back(p.getIntProperty("index"));
    }
    const std::string bytes = decodeBase64(node.getChildNode("Model").getStringProperty("base64"));
    std::unique_ptr<FlowForce> force(FlowForce::createFromBytes(bytes, node.getStringProperty("modelFile"), particles));
    force->setName(node.getStringProperty("name", force->getName()));
    force->setForceGroup(node.getIntProperty("forceGroup", 0));
    force->setTemperature(node.getDoubleProperty("temperature"));
    force->setEnergyOffset(node.getDoubleProperty("energyOffset"));
    if (version >= 2) {
        const int precision = node.getIntProperty("precision"), backend = node.getIntProperty("backend");
        if (precision != FlowForce::PlatformDefault && precision != FlowForce::Single && precision != FlowForce::Double)
            throw OpenMMException("FlowForce: unknown precision " + std::to_string(precision));
        if (backend != FlowForce::Native && backend != FlowForce::LibTorch)
            throw OpenMMException("FlowForce: unknown backend " + std::to_string(backend));
        force->setPrecision(static_cast<FlowForce::Precision>(precision));
        force->setBackend(static_cast<FlowForce::Backend>(backend));
    }
    return force.release();
}

}  // namespace

void* FlowForceProxy::deserialize(const SerializationNode& node) const {
    // Every error as one line starting with "FlowForce:": OpenMM's own messages (a missing or malformed
    // property) and ours quote names from the file, which may hold line breaks.
    try {
        return readFlowForce(node);
    } catch (const OpenMMException& e) {
        const std::string what = e.what();
        throw OpenMMException(oneLine(what.rfind("FlowForce:", 0) == 0 ? what : "FlowForce: cannot read the serialized force: " + what));
    }
}

void registerFlowForceSerializationProxies() {
    static std::once_flag once;
    std::call_once(once, [] { OpenMM::SerializationProxy::registerProxy(typeid(FlowForce), new FlowForceProxy()); });
}

namespace {
// Register when the library is loaded, so that XmlSerializer works in every program that links it.
struct AutoRegister {
    AutoRegister() { registerFlowForceSerializationProxies(); }
} autoRegister;
}  // namespace

}  // namespace FlowForcePlugin
