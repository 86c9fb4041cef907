// flowforce-client MODEL PDB: the FlowForce energy of the PDB's positions on the Reference platform,
// with the kernels loaded from the installed plugin folder (not linked).
#include <FlowForce.h>
#include <OpenMM.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: " << argv[0] << " MODEL PDB\n";
        return 2;
    }
    try {
        std::vector<OpenMM::Vec3> positions;
        std::ifstream in(argv[2]);
        for (std::string line; std::getline(in, line);)
            if (line.rfind("ATOM", 0) == 0 || line.rfind("HETATM", 0) == 0)
                positions.emplace_back(0.1 * std::stod(line.substr(30, 8)), 0.1 * std::stod(line.substr(38, 8)),
                                       0.1 * std::stod(line.substr(46, 8)));
        OpenMM::Platform::loadPluginsFromDirectory(OpenMM::Platform::getDefaultPluginsDirectory());
        OpenMM::Platform::loadPluginsFromDirectory(FLOWFORCE_PLUGIN_DIR);
        for (const std::string& failure : OpenMM::Platform::getPluginLoadFailures()) std::cerr << "plugin: " << failure << "\n";

        OpenMM::System system;
        for (size_t i = 0; i < positions.size(); i++) system.addParticle(12.0);
        system.addForce(new FlowForcePlugin::FlowForce(argv[1]));
        OpenMM::VerletIntegrator integrator(0.001);
        OpenMM::Context context(system, integrator, OpenMM::Platform::getPlatformByName("Reference"));
        context.setPositions(positions);
        const double energy = context.getState(OpenMM::State::Energy).getPotentialEnergy();
        if (!std::isfinite(energy)) throw std::runtime_error("energy is not finite");
        std::cout << "client: FlowForce energy on Reference " << energy << " kJ/mol\n";
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
