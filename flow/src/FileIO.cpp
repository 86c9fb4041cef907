#include "flowforce/flow/FileIO.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace flowforce {

std::string readFile(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw std::runtime_error("'" + path + "' is a folder, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
    return ss.str();
}

namespace {
/** writeFileAtomically writes path through path + kTemporaryInfix + its process id. */
constexpr const char* kTemporaryInfix = ".tmp.";

/** Whether a process other than this one runs with that id. */
bool otherProcessRuns(pid_t pid) { return pid != ::getpid() && (::kill(pid, 0) == 0 || errno == EPERM); }
}  // namespace

void writeFileAtomically(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + kTemporaryInfix + std::to_string(::getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0 &&
                    ::fsync(fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    if (!ok) {
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(e));
    }
}

std::string hashHex(const std::string& bytes) {
    uint64_t h = 1469598103934665603ULL;  // FNV-1a offset basis
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ULL;  // FNV prime
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

int removeStaleTemporaries(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path target = fs::absolute(path);
    const std::string prefix = target.filename().string() + kTemporaryInfix;
    std::error_code ec;
    int removed = 0;
    for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
        const std::string name = entry.path().filename().string();
        const std::string pid = name.substr(std::min(name.size(), prefix.size()));
        if (name.compare(0, prefix.size(), prefix) != 0 || pid.empty() || pid.size() > 9 ||
            pid.find_first_not_of("0123456789") != std::string::npos || otherProcessRuns(std::stoi(pid)))
            continue;
        if (fs::remove(entry.path(), ec)) ++removed;
    }
    return removed;
}

}  // namespace flowforce
