#pragma once
// DCD trajectories (CHARMM/NAMD binary format, as read by VMD, mdtraj, MDAnalysis): Fortran
// unformatted records, little-endian, coordinates float32 in Angstrom, no unit cell.

#include "flowforce/md/Error.h"

#include <openmm/Vec3.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace flowforce::md {

class DCDWriter {
public:
    /** Creates (truncates) a DCD file; firstStep and interval in MD steps, dtPs the step in ps. */
    DCDWriter(const std::string& path, int atoms, int firstStep, int interval, double dtPs);
    /** Appends one frame (positions in nm) and updates the frame count in the header. */
    void write(const std::vector<OpenMM::Vec3>& positions);
    int frames() const { return frames_; }
    void close();

private:
    std::fstream out_;
    std::string path_;
    int atoms_, firstStep_, interval_, frames_ = 0;
};

struct DCDFile {
    int atoms = 0, frames = 0;
    std::vector<float> xyz;  // frames * atoms * 3, Angstrom
};
/** Reads a DCD file written by DCDWriter (for tests). */
DCDFile readDCD(const std::string& path);

}  // namespace flowforce::md
