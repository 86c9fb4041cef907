#!/usr/bin/env python3
"""Builds the classical OpenMM System of a molecule for the flowforce tool and writes it as XML.

Usage: flowforce_system.py PDB OUT.xml [FORCEFIELD.xml ...]   (default: amber99sbildn.xml amber99_obc.xml)
No constraints, no cutoff, flexible water (the settings of the seed paper's alanine dipeptide data).
On failure prints one line "error: ..." on stderr and exits 1.
"""
import os
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pdb_path, out = sys.argv[1], sys.argv[2]
    forcefields = sys.argv[3:] or ["amber99sbildn.xml", "amber99_obc.xml"]
    try:
        try:
            import openmm
            from openmm import app
        except ImportError:
            from simtk import openmm
            from simtk.openmm import app
        pdb = app.PDBFile(pdb_path)
        ff = app.ForceField(*forcefields)
        system = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)
        xml = openmm.XmlSerializer.serialize(system)
    except ImportError as e:
        print(f"error: {sys.executable} has no OpenMM Python module ({e})", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any failure becomes a one-line message for the C++ side
        msg = " ".join(str(e).split())
        print(f"error: {type(e).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)
    tmp = out + ".part"
    with open(tmp, "w") as fh:
        fh.write(xml)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
