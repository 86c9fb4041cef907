#pragma once
// Shared by the fuzz targets: what counts as a finding besides a sanitizer report.
// A loader must either accept the bytes or throw an exception with a one-line message; any other
// outcome (an exception of a type the loader does not document, an empty or multi-line message) aborts,
// so libFuzzer records the input as a crash.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace flowforce::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
    std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
    std::abort();
}

/** Checks that a loader's error message is one non-empty line. */
inline void checkMessage(const char* what, const char* kind) {
    const std::string m = what ? what : "";
    if (m.empty()) finding(std::string(kind) + " with an empty message");
    if (m.find('\n') != std::string::npos) finding(std::string(kind) + " with a multi-line message: " + m);
}

}  // namespace flowforce::fuzz
