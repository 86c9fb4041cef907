#pragma once
// The share folder: files the flowforce tool reads at run time (helper scripts, the built-in molecule).

#include <string>

namespace flowforce::md {

/** Looks up a file of the share folder (flowforce_system.py, alanine-dipeptide.pdb): $FLOWFORCE_SHARE_DIR,
 *  <exe>/../share/flowforce, the build tree, then the source tree. Throws MDError if none exists. */
std::string findShareFile(const std::string& name);

}  // namespace flowforce::md
