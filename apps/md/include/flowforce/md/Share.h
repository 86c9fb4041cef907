#pragma once
// The share folder: files the flowforce tool reads at run time (helper scripts, the built-in molecule).

#include <string>

namespace flowforce::md {

/** Looks up a file of the share folder (flowforce_system.py, flowforce_plots.py, alanine-dipeptide.pdb):
 *  $FLOWFORCE_SHARE_DIR, <exe>/../share/flowforce (the installed layout, which the build tree mirrors), then,
 *  only for a program running from the build tree, the build and source trees. Throws MDError if none exists. */
std::string findShareFile(const std::string& name);

/** True if this program runs from the build tree it was built in (build/bin), not from an installation. */
bool runningFromBuildTree();

}  // namespace flowforce::md
