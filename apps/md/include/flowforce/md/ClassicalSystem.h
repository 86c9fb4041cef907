#pragma once
// The classical OpenMM System of a molecule (openmm.app force fields), built once by a Python helper
// and cached as XML.

#include <memory>
#include <string>
#include <vector>

namespace OpenMM {
class System;
}

namespace flowforce::md {

struct ClassicalSystemOptions {
    std::vector<std::string> forceFields{"amber99sbildn.xml", "amber99_obc.xml"};
    std::string python;    // empty: $FLOWFORCE_PYTHON, else the configured interpreter
    std::string cacheDir;  // empty: $FLOWFORCE_CACHE_DIR, else build/cache (from the build tree), else ~/.cache/flowforce
    bool verbose = true;   // say on stderr when the helper runs
};

struct ClassicalSystem {
    std::unique_ptr<OpenMM::System> system;
    std::string xmlPath;  // the cached XML it was read from
    bool fromCache = false;
};

/**
 * The classical System of a PDB molecule (openmm.app ForceField, no constraints, NoCutoff, flexible
 * water), built by the Python helper flowforce_system.py and cached as XML keyed by a hash of the PDB
 * contents and the force-field names. Throws MDError with the helper's message if it fails.
 */
ClassicalSystem createClassicalSystem(const std::string& pdbPath, const ClassicalSystemOptions& options = {});

}  // namespace flowforce::md
