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
    flowforce::cli::registerInit(app);
    flowforce::cli::registerEval(app);
    flowforce::cli::registerTrain(app);
    flowforce::cli::registerBench(app);
    flowforce::cli::registerData(app);
    flowforce::cli::registerMD(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::string cmd;  // the chain of subcommands, e.g. " bench inverse"
        for (CLI::App* sub = &app; !sub->get_subcommands().empty(); sub = sub->get_subcommands().front())
            cmd += " " + sub->get_subcommands().front()->get_name();
        std::cerr << "flowforce" << cmd << ": error: " << flowforce::cli::errorMessage(e) << "\n";
        return 1;
    }
    return 0;
}
