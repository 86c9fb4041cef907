// The classical System of a molecule: built by flowforce_system.py (openmm.app), cached as XML.
#include "flowforce/md/ClassicalSystem.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/md/Error.h"
#include "flowforce/md/Share.h"

#include <openmm/OpenMMException.h>
#include <openmm/System.h>
#include <openmm/serialization/XmlSerializer.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FLOWFORCE_PYTHON
#define FLOWFORCE_PYTHON "python3"
#endif
#ifndef FLOWFORCE_CACHE_BUILD_DIR
#define FLOWFORCE_CACHE_BUILD_DIR ""
#endif

namespace fs = std::filesystem;

namespace flowforce::md {

namespace {

bool usableDirectory(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    return fs::is_directory(dir, ec) && ::access(dir.c_str(), W_OK) == 0;
}

fs::path cacheDirectory(const std::string& requested) {
    if (!requested.empty()) {
        if (!usableDirectory(requested)) throw MDError("cannot use cache folder '" + requested + "'");
        return requested;
    }
    if (const char* env = std::getenv("FLOWFORCE_CACHE_DIR"))
        if (*env && usableDirectory(env)) return env;
    if (*FLOWFORCE_CACHE_BUILD_DIR && runningFromBuildTree() && usableDirectory(FLOWFORCE_CACHE_BUILD_DIR))
        return FLOWFORCE_CACHE_BUILD_DIR;
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    if (xdg && *xdg && usableDirectory(fs::path(xdg) / "flowforce")) return fs::path(xdg) / "flowforce";
    if (home && *home && usableDirectory(fs::path(home) / ".cache" / "flowforce")) return fs::path(home) / ".cache" / "flowforce";
    return fs::temp_directory_path();
}

std::string shellQuote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::unique_ptr<OpenMM::System> loadSystemXml(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw MDError("cannot read System XML '" + path + "'");
    try {
        return std::unique_ptr<OpenMM::System>(OpenMM::XmlSerializer::deserialize<OpenMM::System>(in));
    } catch (const std::exception& e) {
        throw MDError("cannot read System XML '" + path + "': " + e.what());
    }
}

}  // namespace

ClassicalSystem createClassicalSystem(const std::string& pdbPath, const ClassicalSystemOptions& options) {
    std::string pdb;
    try {
        pdb = readFile(pdbPath);
    } catch (const std::runtime_error& e) {
        throw MDError(e.what());
    }
    std::string key = "flowforce-system-v1\n" + pdb;
    for (const auto& f : options.forceFields) key += "\nff:" + f;
    const fs::path dir = cacheDirectory(options.cacheDir);
    const fs::path xml = dir / ("system-" + hashHex(key) + ".xml");
    ClassicalSystem result;
    result.xmlPath = xml.string();
    std::error_code ec;
    if (fs::exists(xml, ec)) {
        try {
            result.system = loadSystemXml(xml.string());
            result.fromCache = true;
            return result;
        } catch (const MDError&) {
            fs::remove(xml, ec);  // a damaged cache entry: rebuild it
        }
    }
    std::string python = options.python;
    if (python.empty()) {
        const char* env = std::getenv("FLOWFORCE_PYTHON");
        python = env && *env ? env : FLOWFORCE_PYTHON;
    }
    const std::string script = findShareFile("flowforce_system.py");
    const fs::path tmpXml = dir / ("system-" + hashHex(key) + ".xml.tmp" + std::to_string(::getpid()));
    const fs::path errFile = dir / ("system-" + hashHex(key) + ".err" + std::to_string(::getpid()));
    std::string cmd = shellQuote(python) + " " + shellQuote(script) + " " + shellQuote(pdbPath) + " " + shellQuote(tmpXml.string());
    for (const auto& f : options.forceFields) cmd += " " + shellQuote(f);
    cmd += " 2>" + shellQuote(errFile.string());
    if (options.verbose)
        std::cerr << "building the classical System (" << python << ", openmm.app) for " << pdbPath << "\n";
    const int rc = std::system(cmd.c_str());
    std::string err;
    try {
        err = readFile(errFile.string());
    } catch (const std::runtime_error&) {
        // the helper wrote no messages
    }
    fs::remove(errFile, ec);
    if (rc != 0 || !fs::exists(tmpXml, ec)) {
        fs::remove(tmpXml, ec);
        // The helper's last non-empty line is its one-line reason.
        std::istringstream lines(err);
        std::string line, last;
        while (std::getline(lines, line))
            if (!line.empty()) last = line;
        throw MDError("cannot build the classical System for '" + pdbPath + "'" + (last.empty() ? "" : ": " + last));
    }
    fs::rename(tmpXml, xml, ec);
    if (ec) throw MDError("cannot write the System cache '" + xml.string() + "': " + ec.message());
    result.system = loadSystemXml(xml.string());
    return result;
}

}  // namespace flowforce::md
