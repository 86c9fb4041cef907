#pragma once
// Molecules for the flowforce tool: PDB reading, element masses, dihedrals.
// Units: positions nm, masses Da, angles rad.

#include "flowforce/md/Error.h"

// Transitional: Molecular.cpp still takes createClassicalSystem from here; it should include
// flowforce/md/ClassicalSystem.h itself, then this include goes.
#include "flowforce/md/ClassicalSystem.h"

#include <openmm/Vec3.h>

#include <string>
#include <vector>

namespace flowforce::md {

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

/** The built-in molecule: alanine dipeptide (22 atoms), from the share folder. */
std::string defaultMoleculePDB();

/** Standard atomic mass (Da) of an element symbol; throws MDError for an unknown symbol. */
double elementMass(const std::string& element);

/** Masses (Da) of a molecule's atoms from their elements. */
std::vector<double> atomMasses(const Molecule& molecule);

/** Dihedral angle (rad, in (-pi, pi]) of four points, IUPAC sign convention (as OpenMM and mdtraj). */
double dihedral(const OpenMM::Vec3& a, const OpenMM::Vec3& b, const OpenMM::Vec3& c, const OpenMM::Vec3& d);

}  // namespace flowforce::md
