// flowforce: command-line tool of FlowForce (smooth normalizing flows as molecular potentials).
#include "Common.h"

#include "flowforce/Version.h"

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
    CLI::App app{"FlowForce: smooth normalizing flows as molecular potentials.\n"
                 "Units: positions nm, energies kJ/mol, forces kJ/mol/nm, temperatures K; -log p in nats."};
    app.require_subcommand(1);
    app.set_version_flag("--version", "flowforce " FLOWFORCE_VERSION);
    flowforce::cli::registerToy(app);
    flowforce::cli::registerModelCommands(app);
    flowforce::cli::registerTrain(app);
    flowforce::cli::registerBench(app);
    flowforce::cli::registerData(app);
    flowforce::cli::registerMD(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::string cmd;
        for (auto* sub : app.get_subcommands()) cmd += " " + sub->get_name();
        std::cerr << "flowforce" << cmd << ": error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
