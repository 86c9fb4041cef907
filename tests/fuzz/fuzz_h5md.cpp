// libFuzzer target: H5MD layouts through flowforce_md's reader (FuzzH5MD.h).
#include "FuzzH5MD.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = flowforce::fuzz::h5mdScratchPath();
    flowforce::fuzz::checkH5MDLayout(data, size, path);
    return 0;
}
