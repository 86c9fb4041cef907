// The frame journal: a header line naming the run, then fixed-size records
// (int64 step, float64 time, energy, positions[atoms*3], forces[atoms*3]).
#include "flowforce/md/FrameJournal.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace flowforce::md {

namespace {

constexpr const char* kMagic = "FLOWFORCE-FRAMES-1";

std::string systemError(const std::string& what, const std::string& path) {
    return "cannot " + what + " '" + path + "': " + std::strerror(errno);
}

/** Moves all `size` bytes at offset with pread or pwrite (either may move fewer than asked). */
template <class Io, class Byte>
bool transferAll(Io io, int fd, Byte* data, size_t size, off_t offset) {
    while (size > 0) {
        const ssize_t n = io(fd, data, size, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n, size -= static_cast<size_t>(n), offset += n;
    }
    return true;
}

bool writeAll(int fd, const char* data, size_t size, off_t offset) { return transferAll(::pwrite, fd, data, size, offset); }
bool readAll(int fd, char* data, size_t size, off_t offset) { return transferAll(::pread, fd, data, size, offset); }

template <class T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T take(const char*& p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
}

}  // namespace

void FrameBlock::add(int64_t step, double time, double energy, const std::vector<OpenMM::Vec3>& x,
                     const std::vector<OpenMM::Vec3>& f) {
    steps.push_back(step), times.push_back(time), energies.push_back(energy);
    for (const auto& p : x) positions.insert(positions.end(), {p[0], p[1], p[2]});
    for (const auto& g : f) forces.insert(forces.end(), {g[0], g[1], g[2]});
}

void FrameBlock::clear() { steps.clear(), times.clear(), energies.clear(), positions.clear(), forces.clear(); }

FrameJournal::FrameJournal(const std::string& path, size_t atoms, const std::string& run)
    : path_(path), header_(std::string(kMagic) + " atoms=" + std::to_string(atoms) + " run=" + run + "\n"), atoms_(atoms) {
    if (atoms == 0) throw MDError("frame journal: no atoms");
    if (run.find('\n') != std::string::npos) throw MDError("frame journal: the run name must be one line");
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw MDError(systemError("open", path));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd_);
        fd_ = -1;
        throw MDError("'" + path + "' is in use by another process (is the same job running?)");
    }
}

FrameJournal::~FrameJournal() {
    if (fd_ >= 0) ::close(fd_);
}

size_t FrameJournal::recordBytes() const { return sizeof(int64_t) + 2 * sizeof(double) + 6 * atoms_ * sizeof(double); }

void FrameJournal::syncOrThrow(const std::string& what) const {
    if (::fsync(fd_) != 0) throw MDError(systemError(what, path_));
}

void FrameJournal::reset() {
    if (::ftruncate(fd_, 0) != 0 || !writeAll(fd_, header_.data(), header_.size(), 0)) throw MDError(systemError("write", path_));
    syncOrThrow("write");
    frames_ = 0;
}

void FrameJournal::keep(size_t frames) {
    std::string head(header_.size(), '\0');
    if (!readAll(fd_, head.data(), head.size(), 0) || head != header_)
        throw MDError("'" + path_ + "' is not this run's frame journal");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw MDError(systemError("read", path_));
    const size_t held = (static_cast<size_t>(st.st_size) - header_.size()) / recordBytes();
    if (held < frames)
        throw MDError("'" + path_ + "' holds " + std::to_string(held) + " frames, fewer than the checkpoint's " + std::to_string(frames));
    if (::ftruncate(fd_, static_cast<off_t>(header_.size() + frames * recordBytes())) != 0) throw MDError(systemError("truncate", path_));
    syncOrThrow("truncate");
    frames_ = frames;
}

void FrameJournal::append(const FrameBlock& block) {
    const size_t n = block.size(), per = 3 * atoms_;
    if (block.positions.size() != n * per || block.forces.size() != n * per || block.times.size() != n || block.energies.size() != n)
        throw MDError("frame journal: a block's frames do not match " + std::to_string(atoms_) + " atoms");
    std::string bytes;
    bytes.reserve(n * recordBytes());
    for (size_t k = 0; k < n; ++k) {
        put(bytes, block.steps[k]), put(bytes, block.times[k]), put(bytes, block.energies[k]);
        bytes.append(reinterpret_cast<const char*>(block.positions.data() + k * per), per * sizeof(double));
        bytes.append(reinterpret_cast<const char*>(block.forces.data() + k * per), per * sizeof(double));
    }
    if (!writeAll(fd_, bytes.data(), bytes.size(), static_cast<off_t>(header_.size() + frames_ * recordBytes())))
        throw MDError(systemError("write", path_));
    syncOrThrow("write");
    frames_ += n;
}

FrameBlock FrameJournal::read() const {
    std::string bytes(frames_ * recordBytes(), '\0');
    if (!readAll(fd_, bytes.data(), bytes.size(), static_cast<off_t>(header_.size()))) throw MDError(systemError("read", path_));
    FrameBlock block;
    const size_t per = 3 * atoms_;
    const char* p = bytes.data();
    for (size_t k = 0; k < frames_; ++k) {
        block.steps.push_back(take<int64_t>(p));
        block.times.push_back(take<double>(p));
        block.energies.push_back(take<double>(p));
        for (size_t i = 0; i < per; ++i) block.positions.push_back(take<double>(p));
        for (size_t i = 0; i < per; ++i) block.forces.push_back(take<double>(p));
    }
    return block;
}

void FrameJournal::remove() {
    ::close(fd_);
    fd_ = -1;
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) throw MDError(systemError("delete", path_));
}

}  // namespace flowforce::md
