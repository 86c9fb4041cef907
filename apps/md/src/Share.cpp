#include "flowforce/md/Share.h"

#include "flowforce/md/Error.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#ifndef FLOWFORCE_BUILD_BIN_DIR
#define FLOWFORCE_BUILD_BIN_DIR ""
#endif
#ifndef FLOWFORCE_SHARE_BUILD_DIR
#define FLOWFORCE_SHARE_BUILD_DIR ""
#endif
#ifndef FLOWFORCE_SOURCE_DATA_DIR
#define FLOWFORCE_SOURCE_DATA_DIR ""
#endif
#ifndef FLOWFORCE_SOURCE_MD_DIR
#define FLOWFORCE_SOURCE_MD_DIR ""
#endif

namespace fs = std::filesystem;

namespace flowforce::md {

bool runningFromBuildTree() {
    static const bool inBuildTree = [] {
        // The build puts every program into one folder (build/bin); an installation anywhere else, even
        // inside the build tree, is not the build tree.
        if (!*FLOWFORCE_BUILD_BIN_DIR) return false;
        std::error_code ec;
        const fs::path self = fs::canonical("/proc/self/exe", ec);
        if (ec) return false;
        const fs::path bin = fs::canonical(FLOWFORCE_BUILD_BIN_DIR, ec);
        return !ec && self.parent_path() == bin;
    }();
    return inBuildTree;
}

std::string findShareFile(const std::string& name) {
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("FLOWFORCE_SHARE_DIR")) candidates.emplace_back(fs::path(env) / name);
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(self.parent_path().parent_path() / "share" / "flowforce" / name);
    if (runningFromBuildTree()) {  // an installed program never looks into the build or source tree
        if (*FLOWFORCE_SHARE_BUILD_DIR) candidates.push_back(fs::path(FLOWFORCE_SHARE_BUILD_DIR) / name);
        if (*FLOWFORCE_SOURCE_DATA_DIR) candidates.push_back(fs::path(FLOWFORCE_SOURCE_DATA_DIR) / name);
        if (*FLOWFORCE_SOURCE_MD_DIR) candidates.push_back(fs::path(FLOWFORCE_SOURCE_MD_DIR) / name);
    }
    for (const auto& c : candidates)
        if (fs::exists(c, ec)) return c.string();
    throw MDError("cannot find '" + name + "' in the share folder (set FLOWFORCE_SHARE_DIR)");
}

}  // namespace flowforce::md
