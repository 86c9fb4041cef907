#pragma once
// Whole-file reads and atomic writes: the one place FlowForce touches files byte-wise; content hashes.

#include "flowforce/flow/Export.h"

#include <string>

namespace flowforce {

/** Reads a whole file; throws std::runtime_error naming the path and the system's reason. */
FLOWFORCE_FLOW_EXPORT std::string readFile(const std::string& path);

/** Writes bytes to path atomically: the bytes go to a temporary file in the same folder, which is
 *  flushed to disk (fsync) and then renamed over path, so a reader (or a run killed at any moment)
 *  sees the old file or the complete new one, never a part. Throws std::runtime_error. */
FLOWFORCE_FLOW_EXPORT void writeFileAtomically(const std::string& path, const std::string& bytes);

/** 64-bit FNV-1a hash of bytes as 16 hex digits: a content key (cache names, run fingerprints), not a
 *  cryptographic hash. */
FLOWFORCE_FLOW_EXPORT std::string hashHex(const std::string& bytes);
/** Removes the temporary files that writeFileAtomically left for path when its writer was killed
 *  (those of processes that no longer run, or of this one); returns how many. For a program that
 *  writes path and starts over after an interruption; call it before writing. */
FLOWFORCE_FLOW_EXPORT int removeStaleTemporaries(const std::string& path);

}  // namespace flowforce
