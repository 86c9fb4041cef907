#pragma once
// OpenMM platforms: the default plugins and platform lookup with a clear error.

#include <string>

namespace OpenMM {
class Platform;
}

namespace flowforce::md {

/** Loads OpenMM's default platform plugins (CPU, OpenCL, ...) once; failures of single plugins are ignored. */
void loadDefaultOpenMMPlugins();

/** The OpenMM platform of that name (after loading the default plugins); MDError lists the available ones. */
OpenMM::Platform& getPlatform(const std::string& name);

}  // namespace flowforce::md
