// libFuzzer target: FlowForce XML through OpenMM's XmlSerializer and the FlowForce proxy (FuzzXml.h).
#include "FuzzXml.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    flowforce::fuzz::installRecordingProxy();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)flowforce::fuzz::checkXmlBytes(std::string(reinterpret_cast<const char*>(data), size));
    return 0;
}
