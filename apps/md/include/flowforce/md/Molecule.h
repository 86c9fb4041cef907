#pragma once
// Molecules for the flowforce tool: PDB reading, element masses, the classical OpenMM System, dihedrals.
// Units: positions nm, masses Da, angles rad.

#include <openmm/Vec3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace OpenMM {
class System;
}

namespace flowforce::md {

/** Bad input or a failed operation (file missing, corrupt, helper failed): the message says which. */
class MDError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Atom {
    std::string name;         // PDB atom name, trimmed (e.g. "CA")
    std::string residueName;  // e.g. "ALA"
    int residueNumber = 0;
    std::string element;      // from columns 77-78, else guessed from the atom name (e.g. "C")
};

struct Molecule {
    std::string pdbPath;
    std::vector<Atom> atoms;
    std::vector<OpenMM::Vec3> positions;  // nm
    size_t numAtoms() const { return atoms.size(); }
};

/** Reads ATOM/HETATM records of the first model of a PDB file (Angstrom -> nm). Throws MDError. */
Molecule readPDB(const std::string& path);

/** Looks up a file of the share folder (flowforce_system.py, alanine-dipeptide.pdb): $FLOWFORCE_SHARE_DIR,
 *  <exe>/../share/flowforce, the build tree, then the source tree. Throws MDError if none exists. */
std::string findShareFile(const std::string& name);

/** The built-in molecule: alanine dipeptide (22 atoms). */
std::string defaultMoleculePDB();

/** Standard atomic mass (Da) of an element symbol; throws MDError for an unknown symbol. */
double elementMass(const std::string& element);

/** Masses (Da) of a molecule's atoms from their elements. */
std::vector<double> atomMasses(const Molecule& molecule);

struct ClassicalSystemOptions {
    std::vector<std::string> forceFields{"amber99sbildn.xml", "amber99_obc.xml"};
    std::string python;    // empty: $FLOWFORCE_PYTHON, else the configured interpreter
    std::string cacheDir;  // empty: $FLOWFORCE_CACHE_DIR, else build/cache, else ~/.cache/flowforce
    bool verbose = true;   // say on stderr when the helper runs
};

struct ClassicalSystem {
    std::unique_ptr<OpenMM::System> system;
    std::string xmlPath;  // the cached XML it was read from
    bool fromCache = false;
};

/**
 * The classical System of a PDB molecule (openmm.app ForceField, no constraints, NoCutoff, flexible
 * water), built by the Python helper flowforce_system.py and cached as XML keyed by a hash of the PDB
 * contents and the force-field names. Throws MDError with the helper's message if it fails.
 */
ClassicalSystem createClassicalSystem(const std::string& pdbPath, const ClassicalSystemOptions& options = {});

/** Dihedral angle (rad, in (-pi, pi]) of four points, IUPAC sign convention (as OpenMM and mdtraj). */
double dihedral(const OpenMM::Vec3& a, const OpenMM::Vec3& b, const OpenMM::Vec3& c, const OpenMM::Vec3& d);

/** Writes a file through a temporary name and a rename (readers never see a partial file). */
void writeFileAtomically(const std::string& path, const std::string& bytes);

/** Reads a whole file; throws MDError if it cannot. */
std::string readFile(const std::string& path);

/** 64-bit FNV-1a hash (for cache keys and run fingerprints), as 16 hex digits. */
std::string hashHex(const std::string& bytes);

}  // namespace flowforce::md

namespace OpenMM {
class Platform;
}

namespace flowforce::md {

/** Loads OpenMM's default platform plugins (CPU, OpenCL, ...) once; failures of single plugins are ignored. */
void loadDefaultOpenMMPlugins();

/** The OpenMM platform of that name (after loading the default plugins); MDError lists the available ones. */
OpenMM::Platform& getPlatform(const std::string& name);

}  // namespace flowforce::md
