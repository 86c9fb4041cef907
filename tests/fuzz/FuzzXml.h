#pragma once
// The XML check of the fuzz target flowforce_fuzz_xml and of the corpus test (test_fuzz_corpus):
// a FlowForce serialized by OpenMM's XmlSerializer (serialization/FlowForceProxy):
// bytes -> XmlSerializer::deserialize<Force> with the FlowForce proxy registered -> the FlowForce
// (its embedded model validated by the LibTorch-free model reader) -> serialized and read back.
//
// XmlSerializer::deserialize<T> reinterpret_casts whatever object the root element's "type" names, so
// the harness only passes on inputs whose root element declares type="FlowForce", and it recognises the
// FlowForce it gets back by the pointer its proxy returned (an input that still makes OpenMM build another
// kind of object is kept, never used as a FlowForce: OpenMM's own proxies are not under test).
#include "FuzzCommon.h"

#include "FlowForce.h"
#include "FlowForceProxy.h"

#include <openmm/OpenMMException.h>
#include <openmm/serialization/SerializationProxy.h>
#include <openmm/serialization/XmlSerializer.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

namespace flowforce::fuzz {

namespace xml_detail {

using FlowForcePlugin::FlowForce;

inline const void* lastFlowForce = nullptr;

/** The FlowForce proxy, noting the object it returns. */
class RecordingProxy : public FlowForcePlugin::FlowForceProxy {
public:
    void* deserialize(const OpenMM::SerializationNode& node) const override {
        lastFlowForce = nullptr;
        void* p = FlowForcePlugin::FlowForceProxy::deserialize(node);
        lastFlowForce = p;
        return p;
    }
};

/** Whether the first element of the text declares type="FlowForce" (every "type" in its start tag). */
inline bool rootIsFlowForce(const std::string& text) {
    size_t pos = 0;
    while (true) {
        pos = text.find('<', pos);
        if (pos == std::string::npos || pos + 1 >= text.size()) return false;
        if (text[pos + 1] != '?' && text[pos + 1] != '!') break;
        ++pos;
    }
    const size_t end = text.find('>', pos);
    if (end == std::string::npos) return false;
    const std::string tag = text.substr(pos, end - pos);
    int found = 0;
    for (size_t t = tag.find("type"); t != std::string::npos; t = tag.find("type", t + 1)) {
        if (tag.compare(t, 16, "type=\"FlowForce\"") != 0) return false;
        ++found;
    }
    return found > 0;
}

/** A conservative check of the XML shapes that FlowForce's proxy writes: an optional <?xml ...?>
 *  declaration, then one element tree (names [A-Za-z0-9_:.-], double-quoted attribute values without
 *  '<', '&' or NUL, nothing but whitespace between tags, balanced). OpenMM's XML reader (irrXML, inside
 *  libOpenMM) crashes on some malformed text, such as a tag left open at the end of the input; that is
 *  OpenMM's code, not under test here, so such inputs are skipped. */
inline bool simpleXml(const std::string& s) {
    size_t i = 0;
    const size_t n = s.size();
    if (s.find('\0') != std::string::npos) return false;
    auto ws = [&] { while (i < n && std::isspace(static_cast<unsigned char>(s[i]))) ++i; };
    auto name = [&] {
        const size_t b = i;
        while (i < n && (std::isalnum(static_cast<unsigned char>(s[i])) || std::strchr("_:.-", s[i]))) ++i;
        return s.substr(b, i - b);
    };
    ws();
    if (s.compare(i, 2, "<?") == 0) {
        const size_t e = s.find("?>", i);
        if (e == std::string::npos) return false;
        i = e + 2;
    }
    std::vector<std::string> open;
    bool root = false;
    while (true) {
        ws();
        if (i == n) return root && open.empty();
        if (s[i] != '<' || (root && open.empty())) return false;
        ++i;
        if (i < n && s[i] == '/') {
            ++i;
            const std::string tag = name();
            ws();
            if (tag.empty() || open.empty() || open.back() != tag || i >= n || s[i] != '>') return false;
            ++i;
            open.pop_back();
            continue;
        }
        const std::string tag = name();
        if (tag.empty()) return false;
        root = true;
        while (true) {
            ws();
            if (i >= n) return false;
            if (s[i] == '/') {
                if (i + 1 >= n || s[i + 1] != '>') return false;
                i += 2;
                break;
            }
            if (s[i] == '>') {
                ++i;
                open.push_back(tag);
                break;
            }
            if (name().empty() || i >= n || s[i] != '=' || i + 1 >= n || s[i + 1] != '"') return false;
            i += 2;
            while (i < n && s[i] != '"') {
                if (s[i] == '<' || s[i] == '&') return false;
                ++i;
            }
            if (i >= n) return false;
            ++i;
        }
    }
}

inline std::vector<void*> otherObjects;  // objects of other types (reachable, never used)

}  // namespace xml_detail

/** Puts the recording proxy in place of the FlowForce proxy (once, before checkXmlBytes). */
inline void installRecordingProxy() {
    using namespace xml_detail;
    // The proxy libFlowForce registered when it loaded, kept reachable (the leak checker).
    static const OpenMM::SerializationProxy* original = &OpenMM::SerializationProxy::getProxy("FlowForce");
    (void)original;
    OpenMM::SerializationProxy::registerProxy(typeid(FlowForce), new RecordingProxy());
    if (dynamic_cast<const RecordingProxy*>(&OpenMM::SerializationProxy::getProxy("FlowForce")) == nullptr)
        flowforce::fuzz::finding("could not register the recording FlowForce proxy");
}

/** Deserializes the text (if it is simple XML with a FlowForce root), round-trips the FlowForce it gives;
 *  aborts on a finding. Returns whether the text was passed to OpenMM. */
inline bool checkXmlBytes(const std::string& text) {
    using namespace xml_detail;
    if (!simpleXml(text) || !rootIsFlowForce(text)) return false;
    void* object = nullptr;
    lastFlowForce = nullptr;
    try {
        std::istringstream in(text);
        object = OpenMM::XmlSerializer::deserialize<void>(in);
    } catch (const OpenMM::OpenMMException& e) {
        // Our proxy's errors (all "FlowForce: ..."): one line. OpenMM's XML parser's own are not under test.
        if (std::strncmp(e.what(), "FlowForce", 9) == 0) flowforce::fuzz::checkMessage(e.what(), "OpenMMException");
        return true;
    } catch (const std::exception& e) {
        flowforce::fuzz::finding(std::string("deserialization threw a non-OpenMM exception: ") + e.what());
    }
    if (object == nullptr) return true;
    if (object != lastFlowForce) {
        otherObjects.push_back(object);
        return true;
    }
    std::unique_ptr<FlowForce> force(static_cast<FlowForce*>(object));
    (void)force->getEffectiveParticles();
    (void)force->getModelBytes().size();
    // What the proxy reads, it must write back readably.
    try {
        std::stringstream out;
        OpenMM::XmlSerializer::serialize<OpenMM::Force>(force.get(), "Force", out);
        lastFlowForce = nullptr;
        void* again = OpenMM::XmlSerializer::deserialize<void>(out);
        if (again != lastFlowForce) flowforce::fuzz::finding("a serialized FlowForce did not read back as a FlowForce");
        std::unique_ptr<FlowForce> copy(static_cast<FlowForce*>(again));
        if (copy->getModelBytes() != force->getModelBytes() || copy->getParticles() != force->getParticles() ||
            copy->getTemperature() != force->getTemperature())
            flowforce::fuzz::finding("a FlowForce changed in a serialization round trip");
    } catch (const std::exception& e) {
        flowforce::fuzz::finding(std::string("a deserialized FlowForce does not serialize and read back: ") + e.what());
    }
    return true;
}

}  // namespace flowforce::fuzz
