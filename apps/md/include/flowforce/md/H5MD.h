#pragma once
// H5MD 1.1 datasets (https://www.nongnu.org/h5md/h5md.html) through the HDF5 C API.
//   /h5md                                   version [1,1]; author (name), creator (name, version)
//   /particles/<group>/box                  dimension 3, boundary none (no periodic box)
//   /particles/<group>/position/{value,step,time}   [frames, atoms, 3] float64, nm; step int64; time ps
//   /particles/<group>/force/{value,step,time}      [frames, atoms, 3] float64, kJ mol-1 nm-1 (optional)
//   /particles/<group>/mass                 [atoms] float64, Da (optional)
//   /observables/potential_energy/{value,step,time} [frames] float64, kJ mol-1 (optional)
//   /parameters/flowforce                   attributes describing the run (optional)
// Time-dependent datasets are chunked along frames and extendable. The writer builds the file in
// memory and saves it atomically (temporary file, fsync, rename): a reader, or a run killed at any
// moment, sees no file, the previous one or the complete new one, never a part.

#include "flowforce/Version.h"
#include "flowforce/md/Error.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace flowforce::md {

/** The contents of an H5MD file: positions and, where present, forces and potential energies. */
struct Dataset {
    std::string path;
    std::string group;  // the particles group the positions came from
    size_t frames = 0, atoms = 0;
    std::vector<double> positions;  // frames * atoms * 3, nm
    std::vector<double> forces;     // frames * atoms * 3, kJ/mol/nm; empty if the file has none
    std::vector<double> energies;   // frames, kJ/mol; empty if the file has none
    std::vector<int64_t> step;      // frames; empty if the file has none
    std::vector<double> time;       // frames, ps; empty if the file has none
    std::vector<double> masses;     // atoms, Da; empty if the file has none

    bool hasForces() const { return !forces.empty(); }
    bool hasEnergies() const { return !energies.empty(); }
    const double* position(size_t frame) const { return positions.data() + frame * atoms * 3; }
    const double* force(size_t frame) const { return forces.data() + frame * atoms * 3; }
};

/**
 * Reads an H5MD file with positions (the particles group is discovered: `group` if given, else the
 * first one with a position element). Reads at most maxFrames frames (from the start).
 * Throws MDError with a one-line message for a missing, unreadable or non-H5MD file.
 */
Dataset readH5MD(const std::string& path, size_t maxFrames = std::numeric_limits<size_t>::max(),
                 const std::string& group = "");

/** Number of frames of an H5MD file's positions without reading them. */
size_t countH5MDFrames(const std::string& path);

struct H5MDWriterOptions {
    std::string group = "all";
    bool forces = true;
    bool energies = true;
    std::vector<double> masses;  // Da; written if not empty
    std::string author = "flowforce";
    std::string creator = "flowforce";
    std::string creatorVersion = FLOWFORCE_VERSION;
    size_t chunkFrames = 64;
};

/** Builds an H5MD file in memory, frames appended block by block, and saves it atomically.
 *  Holds the whole file in memory (48 bytes per atom and frame with forces). Not copyable. */
class H5MDWriter {
public:
    /** An empty file for `atoms` particles. */
    explicit H5MDWriter(size_t atoms, const H5MDWriterOptions& options = {});
    ~H5MDWriter();
    H5MDWriter(const H5MDWriter&) = delete;
    H5MDWriter& operator=(const H5MDWriter&) = delete;

    /** Appends n frames: positions [n, atoms, 3], forces [n, atoms, 3] (if the file has forces),
     *  energies [n] (if it has energies), steps [n], times [n] (ps). */
    void append(size_t n, const double* positions, const double* forces, const double* energies, const int64_t* steps,
                const double* times);
    /** Sets a string / number attribute of /parameters/flowforce. */
    void setParameter(const std::string& name, const std::string& value);
    void setParameter(const std::string& name, double value);
    size_t frames() const;
    /** The bytes of the file as it stands. */
    std::string fileImage() const;
    /** Writes the file as it stands to path atomically (flowforce::writeFileAtomically); MDError if that fails. */
    void save(const std::string& path) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/** Reads a string attribute of /parameters/flowforce ("" if missing). */
std::string readH5MDParameter(const std::string& path, const std::string& name);

}  // namespace flowforce::md
