// Alanine dipeptide in vacuum driven by a FlowForce model: a minimal OpenMM application.
//
//   flowforce-example-ala2 MODEL [PDB] [STEPS]
//
// MODEL: a FlowForce model (*.flow) or TorchScript file for the molecule (its first n atoms).
// PDB:   the molecule (default: <exe>/../share/flowforce/alanine-dipeptide.pdb, where FlowForce installs
//        it, else alanine-dipeptide.pdb in the current folder).
// Builds a System with one particle per PDB atom (masses from the elements) and the FlowForce as
// its only force, runs Langevin dynamics at the model's temperature and prints the energies.
#include "FlowForce.h"
#include "ReferenceFlowForceKernels.h"

#include <OpenMM.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

// The default molecule: the alanine dipeptide of FlowForce's share folder next to this program.
std::string defaultPdb() {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const auto pdb = self.parent_path().parent_path() / "share" / "flowforce" / "alanine-dipeptide.pdb";
        if (std::filesystem::exists(pdb, ec)) return pdb.string();
    }
    return "alanine-dipeptide.pdb";
}

struct Molecule {
    std::vector<OpenMM::Vec3> positions;  // nm
    std::vector<double> masses;           // Da
};

// Reads the ATOM/HETATM records of a PDB file (coordinates in Angstrom).
Molecule readPdb(const std::string& path) {
    static const std::map<char, double> mass{{'H', 1.008}, {'C', 12.011}, {'N', 14.007}, {'O', 15.999}, {'S', 32.06}};
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    Molecule m;
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("ATOM", 0) != 0 && line.rfind("HETATM", 0) != 0) continue;
        if (line.size() < 54) throw std::runtime_error("short ATOM record in " + path);
        const double x = std::stod(line.substr(30, 8)), y = std::stod(line.substr(38, 8)), z = std::stod(line.substr(46, 8));
        m.positions.emplace_back(0.1 * x, 0.1 * y, 0.1 * z);
        // element: columns 77-78, else the first letter of the atom name
        std::string element = line.size() >= 78 ? line.substr(76, 2) : "";
        char e = element.find_first_not_of(' ') != std::string::npos ? element[element.find_first_not_of(' ')]
                                                                   : line[12] == ' ' ? line[13] : line[12];
        auto it = mass.find(e);
        if (it == mass.end()) throw std::runtime_error(std::string("no mass for element ") + e);
        m.masses.push_back(it->second);
    }
    if (m.positions.empty()) throw std::runtime_error("no atoms in " + path);
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 4) {
        std::cerr << "usage: " << argv[0] << " MODEL [PDB] [STEPS]\n";
        return 2;
    }
    try {
        const std::string modelFile = argv[1];
        const std::string pdb = argc > 2 ? argv[2] : defaultPdb();
        const int steps = argc > 3 ? std::atoi(argv[3]) : 100;
        if (steps <= 0) throw std::runtime_error("STEPS must be positive");

        // OpenMM's own platforms first, then the FlowForce kernels for Reference and CPU.
        OpenMM::Platform::loadPluginsFromDirectory(OpenMM::Platform::getDefaultPluginsDirectory());
        FlowForcePlugin::registerFlowForceReferenceKernelFactories();

        const Molecule mol = readPdb(pdb);
        OpenMM::System system;
        for (double m : mol.masses) system.addParticle(m);
        auto* flow = new FlowForcePlugin::FlowForce(modelFile);  // the model's first n atoms
        system.addForce(flow);                                    // the System owns it
        const double temperature = flow->getTemperature();       // K (the model's, default 300)
        std::cout << "model: " << flow->getModelDescription() << ", " << flow->getNumParticles() << " of "
                  << system.getNumParticles() << " atoms, T = " << temperature << " K\n";

        OpenMM::LangevinMiddleIntegrator integrator(temperature, 1.0, 0.001);  // 1/ps, 1 fs
        integrator.setRandomNumberSeed(1);
        OpenMM::Context context(system, integrator, OpenMM::Platform::getPlatformByName("Reference"));
        context.setPositions(mol.positions);
        context.setVelocitiesToTemperature(temperature, 1);

        std::printf("%8s %16s %16s %16s\n", "step", "potential", "kinetic", "total (kJ/mol)");
        for (int done = 0; done <= steps; done += 10) {
            if (done > 0) integrator.step(10);
            const OpenMM::State s = context.getState(OpenMM::State::Energy);
            std::printf("%8d %16.6f %16.6f %16.6f\n", done, s.getPotentialEnergy(), s.getKineticEnergy(),
                        s.getPotentialEnergy() + s.getKineticEnergy());
        }
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
