// OpenMM platforms: the default plugins and platform lookup.
#include "flowforce/md/Platforms.h"

#include "flowforce/md/Error.h"

#include <openmm/Platform.h>

namespace flowforce::md {

void loadDefaultOpenMMPlugins() {
    static bool loaded = false;
    if (loaded) return;
    loaded = true;
    try {
        OpenMM::Platform::loadPluginsFromDirectory(OpenMM::Platform::getDefaultPluginsDirectory());
    } catch (const std::exception&) {
        // no plugin folder: the Reference platform remains
    }
}

OpenMM::Platform& getPlatform(const std::string& name) {
    loadDefaultOpenMMPlugins();
    try {
        return OpenMM::Platform::getPlatformByName(name);
    } catch (const std::exception&) {
        std::string names;
        for (int i = 0; i < OpenMM::Platform::getNumPlatforms(); ++i)
            names += (i ? ", " : "") + OpenMM::Platform::getPlatform(i).getName();
        throw MDError("unknown OpenMM platform '" + name + "' (available: " + names + ")");
    }
}

}  // namespace flowforce::md
