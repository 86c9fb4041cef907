#pragma once
// The frames of a running MD job, appended block by block to a raw file next to its output. With the
// job's checkpoint, which counts the frames it covers, the journal makes the job resumable after a
// kill at any moment: reopening keeps exactly the counted frames and drops whatever was written after
// the checkpoint (or cut short by the kill). Native byte order: a journal is continued on the machine
// that wrote it.

#include "flowforce/md/Error.h"

#include <openmm/Vec3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace flowforce::md {

/** Frames of an MD run: per frame the step, time (ps), potential energy (kJ/mol), positions (nm) and
 *  forces (kJ/mol/nm); positions and forces are [frames, atoms, 3]. */
struct FrameBlock {
    std::vector<int64_t> steps;
    std::vector<double> times, energies, positions, forces;

    size_t size() const { return steps.size(); }
    void add(int64_t step, double time, double energy, const std::vector<OpenMM::Vec3>& x, const std::vector<OpenMM::Vec3>& f);
    void clear();
};

/** An append-only file of frames of one run, locked against a second writer while open. */
class FrameJournal {
public:
    /** Opens the journal at path (created if missing) of a run (any text that identifies it) on
     *  `atoms` atoms and locks it for this process; MDError if another process holds it. */
    FrameJournal(const std::string& path, size_t atoms, const std::string& run);
    ~FrameJournal();
    FrameJournal(const FrameJournal&) = delete;
    FrameJournal& operator=(const FrameJournal&) = delete;

    /** Empties it (on disk when this returns): a new run. */
    void reset();
    /** Keeps its first `frames` frames and drops the rest; MDError if it belongs to another run or
     *  holds fewer frames. */
    void keep(size_t frames);
    /** Appends frames; they are on disk (fsync) when this returns. */
    void append(const FrameBlock& block);
    size_t frames() const { return frames_; }
    /** All its frames. */
    FrameBlock read() const;
    /** Closes and deletes it. */
    void remove();

private:
    size_t recordBytes() const;
    void syncOrThrow(const std::string& what) const;

    std::string path_, header_;
    size_t atoms_ = 0, frames_ = 0;
    int fd_ = -1;
};

}  // namespace flowforce::md
