// libFuzzer target: FlowForce model files (*.flow) through the LibTorch-free loader (FuzzModel.h).
#include "FuzzModel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    flowforce::fuzz::checkModelBytes(std::string(reinterpret_cast<const char*>(data), size));
    return 0;
}
