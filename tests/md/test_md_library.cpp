// Tests of flowforce_md: H5MD round trip (and h5py reading it), atomic saves, reader errors, the frame
// journal, PDB, dihedrals, DCD, the classical System, platforms.
#include "flowforce/flow/FileIO.h"
#include "flowforce/md/ClassicalSystem.h"
#include "flowforce/md/DCD.h"
#include "flowforce/md/FrameJournal.h"
#include "flowforce/md/H5MD.h"
#include "flowforce/md/Molecule.h"
#include "flowforce/md/Platforms.h"

#include <openmm/Platform.h>
#include <openmm/System.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace flowforce::md;

namespace {

fs::path tempDir() {
    const fs::path dir = fs::path(FLOWFORCE_TEST_OUT_DIR) / "md-library";
    fs::create_directories(dir);
    return dir;
}

struct Frames {
    size_t n, atoms;
    std::vector<double> pos, force, energy, time;
    std::vector<int64_t> step;
};

Frames makeFrames(size_t n, size_t atoms, size_t offset) {
    Frames f{n, atoms, {}, {}, {}, {}, {}};
    for (size_t k = 0; k < n; ++k) {
        const size_t fr = k + offset;
        for (size_t i = 0; i < atoms * 3; ++i) {
            f.pos.push_back(0.1 * static_cast<double>(fr) + 0.001 * static_cast<double>(i));
            f.force.push_back(-5.0 * static_cast<double>(fr) + static_cast<double>(i));
        }
        f.energy.push_back(-10.0 - static_cast<double>(fr));
        f.step.push_back(static_cast<int64_t>(1000 * (fr + 1)));
        f.time.push_back(static_cast<double>(fr + 1));
    }
    return f;
}

void append(H5MDWriter& w, const Frames& f) { w.append(f.n, f.pos.data(), f.force.data(), f.energy.data(), f.step.data(), f.time.data()); }

}  // namespace

TEST(H5MD, RoundTrip) {
    const std::string path = (tempDir() / "roundtrip.h5").string();
    const Frames a = makeFrames(5, 4, 0), b = makeFrames(3, 4, 5);
    {
        H5MDWriterOptions o;
        o.masses = {1.0, 12.0, 14.0, 16.0};
        o.chunkFrames = 2;
        H5MDWriter w(4, o);
        append(w, a);
        w.save(path);
        EXPECT_EQ(countH5MDFrames(path), 5u);  // a saved file is complete as it stood
        append(w, b);
        w.setParameter("note", "hello");
        w.setParameter("temperature_K", 300.0);
        EXPECT_EQ(w.frames(), 8u);
        w.save(path);
    }
    const Dataset d = readH5MD(path);
    EXPECT_EQ(d.group, "all");
    ASSERT_EQ(d.frames, 8u);
    ASSERT_EQ(d.atoms, 4u);
    ASSERT_TRUE(d.hasForces());
    ASSERT_TRUE(d.hasEnergies());
    for (size_t k = 0; k < 8; ++k) {
        const Frames& src = k < 5 ? a : b;
        const size_t j = k < 5 ? k : k - 5;
        for (size_t i = 0; i < 12; ++i) {
            EXPECT_EQ(d.position(k)[i], src.pos[j * 12 + i]);
            EXPECT_EQ(d.force(k)[i], src.force[j * 12 + i]);
        }
        EXPECT_EQ(d.energies[k], src.energy[j]);
        EXPECT_EQ(d.step[k], src.step[j]);
        EXPECT_EQ(d.time[k], src.time[j]);
    }
    EXPECT_EQ(d.masses, (std::vector<double>{1.0, 12.0, 14.0, 16.0}));
    EXPECT_EQ(readH5MDParameter(path, "note"), "hello");
    EXPECT_EQ(std::atof(readH5MDParameter(path, "temperature_K").c_str()), 300.0);
    EXPECT_EQ(countH5MDFrames(path), 8u);
    const Dataset first = readH5MD(path, 3);
    EXPECT_EQ(first.frames, 3u);
    EXPECT_EQ(first.energies.size(), 3u);
}

TEST(H5MD, SaveReplacesTheFileAtomically) {
    const fs::path dir = tempDir() / "atomic";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string path = (dir / "data.h5").string();
    H5MDWriter w(2);
    append(w, makeFrames(3, 2, 0));
    w.save(path);
    append(w, makeFrames(2, 2, 3));
    w.save(path);
    EXPECT_EQ(readH5MD(path).frames, 5u);
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"data.h5"});  // no temporary left
    EXPECT_THROW(w.save((dir / "no" / "such" / "folder.h5").string()), MDError);
}

TEST(H5MD, ReadableByH5py) {
    const std::string path = (tempDir() / "h5py.h5").string();
    {
        H5MDWriter w(3);
        append(w, makeFrames(4, 3, 0));
        w.save(path);
    }
    const std::string script = (tempDir() / "check.py").string();
    std::ofstream(script) << "import sys, h5py, numpy as np\n"
                             "f = h5py.File(sys.argv[1], 'r')\n"
                             "assert list(f['h5md'].attrs['version']) == [1, 1]\n"
                             "assert f['h5md/author'].attrs['name'] and f['h5md/creator'].attrs['name']\n"
                             "assert f['h5md/creator'].attrs['version']\n"
                             "p = f['particles/all/position/value']\n"
                             "assert p.shape == (4, 3, 3) and p.dtype == np.float64, p.shape\n"
                             "assert p.attrs['unit'] == 'nm'\n"
                             "assert f['particles/all/force/value'].attrs['unit'] == 'kJ mol-1 nm-1'\n"
                             "e = f['observables/potential_energy']\n"
                             "assert e['value'].attrs['unit'] == 'kJ mol-1' and e['time'].attrs['unit'] == 'ps'\n"
                             "assert np.allclose(e['value'][:], [-10, -11, -12, -13])\n"
                             "assert list(f['particles/all/position/step'][:]) == [1000, 2000, 3000, 4000]\n"
                             "assert abs(p[2, 1, 2] - (0.2 + 0.005)) < 1e-15\n"
                             "assert list(f['particles/all/box'].attrs['boundary']) == ['none'] * 3\n"
                             "print('ok')\n";
    const std::string cmd = std::string("'") + FLOWFORCE_TEST_PYTHON + "' '" + script + "' '" + path + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(H5MD, ReaderErrors) {
    const fs::path dir = tempDir();
    try {
        readH5MD((dir / "missing.h5").string());
        FAIL();
    } catch (const MDError& e) {
        EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
    }
    std::ofstream(dir / "garbage.h5") << "this is not HDF5";
    try {
        readH5MD((dir / "garbage.h5").string());
        FAIL();
    } catch (const MDError& e) {
        EXPECT_NE(std::string(e.what()).find("not an HDF5 file"), std::string::npos) << e.what();
    }
    // A truncated copy of a valid file.
    const std::string good = (dir / "good.h5").string();
    {
        H5MDWriter w(2);
        append(w, makeFrames(50, 2, 0));
        w.save(good);
    }
    const std::string bytes = flowforce::readFile(good);
    std::ofstream(dir / "truncated.h5", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    EXPECT_THROW(readH5MD((dir / "truncated.h5").string()), MDError);
    EXPECT_THROW(readH5MD(good, 10, "nosuchgroup"), MDError);
}

namespace {

FrameBlock makeBlock(size_t n, size_t atoms, size_t offset) {
    const Frames f = makeFrames(n, atoms, offset);
    FrameBlock b;
    b.steps = f.step, b.times = f.time, b.energies = f.energy, b.positions = f.pos, b.forces = f.force;
    return b;
}

}  // namespace

TEST(FrameJournal, KeepsTheCheckpointedFramesAndDropsATornTail) {
    const std::string path = (tempDir() / "journal.frames").string();
    fs::remove(path);
    {
        FrameJournal j(path, 2, "run-a");
        j.reset();
        j.append(makeBlock(3, 2, 0));
        j.append(makeBlock(2, 2, 3));
        EXPECT_EQ(j.frames(), 5u);
    }
    std::ofstream(path, std::ios::binary | std::ios::app) << "half a frame";  // a kill in the middle of a write
    {
        FrameJournal j(path, 2, "run-a");
        j.keep(4);  // the checkpoint counted 4 frames
        const FrameBlock b = j.read();
        const FrameBlock expected = makeBlock(4, 2, 0);
        EXPECT_EQ(b.steps, expected.steps);
        EXPECT_EQ(b.times, expected.times);
        EXPECT_EQ(b.energies, expected.energies);
        EXPECT_EQ(b.positions, expected.positions);
        EXPECT_EQ(b.forces, expected.forces);
        j.append(makeBlock(1, 2, 4));
        EXPECT_EQ(j.read().steps.back(), 5000);
        EXPECT_THROW(j.keep(6), MDError);  // fewer frames than a checkpoint claims
    }
    EXPECT_THROW(FrameJournal(path, 2, "run-b").keep(0), MDError);  // another run's journal
    EXPECT_THROW(FrameJournal(path, 3, "run-a").keep(0), MDError);  // another molecule
    FrameJournal j(path, 2, "run-a");
    EXPECT_THROW(FrameJournal(path, 2, "run-a"), MDError);  // locked while a run holds it
    j.remove();
    EXPECT_FALSE(fs::exists(path));
}

TEST(Molecule, ReadsAlanineDipeptide) {
    const Molecule m = readPDB(defaultMoleculePDB());
    ASSERT_EQ(m.numAtoms(), 22u);
    EXPECT_EQ(m.atoms[8].name, "CA");
    EXPECT_EQ(m.atoms[8].element, "C");
    EXPECT_EQ(m.atoms[0].element, "H");
    EXPECT_NEAR(m.positions[0][0], 0.3225, 1e-12);  // 3.225 Angstrom
    EXPECT_NEAR(m.positions[0][1], 2.7427, 1e-12);
    const auto masses = atomMasses(m);
    EXPECT_NEAR(masses[1], 12.01078, 1e-9);
    EXPECT_THROW(readPDB("/nonexistent/file.pdb"), MDError);
    const fs::path bad = tempDir() / "bad.pdb";
    std::ofstream(bad) << "ATOM      1  N   ALA A   1      xx.000   0.000   0.000\n";
    EXPECT_THROW(readPDB(bad.string()), MDError);
    std::ofstream(tempDir() / "empty.pdb") << "REMARK nothing\nEND\n";
    EXPECT_THROW(readPDB((tempDir() / "empty.pdb").string()), MDError);
}

TEST(Molecule, Dihedral) {
    using OpenMM::Vec3;
    const double pi = std::acos(-1.0);
    // trans: 180 degrees; cis: 0; a +90 degree twist.
    EXPECT_NEAR(std::abs(dihedral(Vec3(1, 1, 0), Vec3(0, 1, 0), Vec3(0, 0, 0), Vec3(-1, 0, 0))), pi, 1e-12);
    EXPECT_NEAR(dihedral(Vec3(1, 1, 0), Vec3(0, 1, 0), Vec3(0, 0, 0), Vec3(1, 0, 0)), 0.0, 1e-12);
    EXPECT_NEAR(std::abs(dihedral(Vec3(1, 1, 0), Vec3(0, 1, 0), Vec3(0, 0, 0), Vec3(0, 0, 1))), pi / 2, 1e-12);
    // IUPAC sign: looking down b->c, a clockwise rotation of the far bond is positive.
    const double d = dihedral(Vec3(1, 0, 0), Vec3(0, 0, 0), Vec3(0, 0, 1), Vec3(0, 1, 1));
    EXPECT_NEAR(d, pi / 2, 1e-12);
}

TEST(DCD, RoundTrip) {
    const std::string path = (tempDir() / "traj.dcd").string();
    std::vector<OpenMM::Vec3> x{{0.1, 0.2, 0.3}, {-1.0, 2.0, 0.5}};
    {
        DCDWriter w(path, 2, 10, 10, 0.001);
        w.write(x);
        x[1][0] = 3.0;
        w.write(x);
    }
    const DCDFile f = readDCD(path);
    EXPECT_EQ(f.atoms, 2);
    ASSERT_EQ(f.frames, 2);
    EXPECT_FLOAT_EQ(f.xyz[0], 1.0f);   // Angstrom
    EXPECT_FLOAT_EQ(f.xyz[3], -10.0f);
    EXPECT_FLOAT_EQ(f.xyz[6 + 3], 30.0f);
}

TEST(Platforms, LooksUpByNameAndListsTheAvailableOnes) {
    EXPECT_EQ(getPlatform("Reference").getName(), "Reference");
    try {
        getPlatform("NoSuchPlatform");
        FAIL();
    } catch (const MDError& e) {
        EXPECT_NE(std::string(e.what()).find("Reference"), std::string::npos) << e.what();
    }
}

TEST(ClassicalSystem, AlanineDipeptideFromCacheOrHelper) {
    ClassicalSystemOptions o;
    o.verbose = false;
    auto first = createClassicalSystem(defaultMoleculePDB(), o);
    ASSERT_TRUE(first.system);
    EXPECT_EQ(first.system->getNumParticles(), 22);
    EXPECT_GE(first.system->getNumForces(), 5);  // bonds, angles, torsions, nonbonded, GBSA-OBC
    auto second = createClassicalSystem(defaultMoleculePDB(), o);
    EXPECT_TRUE(second.fromCache);
    EXPECT_EQ(second.xmlPath, first.xmlPath);
    // A molecule the force field does not know: one-line error from the helper.
    const fs::path odd = tempDir() / "odd.pdb";
    std::ofstream(odd) << "HETATM    1 XX   UNK A   1       0.000   0.000   0.000  1.00  0.00          Xe\nEND\n";
    try {
        createClassicalSystem(odd.string(), o);
        FAIL();
    } catch (const MDError& e) {
        EXPECT_NE(std::string(e.what()).find("cannot build the classical System"), std::string::npos) << e.what();
    }
}
