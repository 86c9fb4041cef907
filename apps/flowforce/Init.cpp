// flowforce init: an untrained, seeded Boltzmann generator for a molecule (seed paper SI-2.4).
#include "Common.h"
#include "Molecular.h"

#include "flowforce/flow/ModelFile.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace flowforce::cli {

namespace {

struct InitOptions {
    MoleculeOptions molecule;
    std::string transform = "smooth", out = "model.flow", json, activation = "sin";
    bool inverse = false;
    uint64_t seed = 1;
    double temperature = 300.0, sharpnessSpan = 10.0;
};

void runInit(const InitOptions& o) {
    if (!(o.temperature > 0)) throw Error("--temperature must be positive (K)");
    ModelChoice c;
    c.transform = o.transform, c.inverse = o.inverse, c.activation = o.activation, c.seed = o.seed, c.temperature = o.temperature;
    c.sharpnessSpan = o.sharpnessSpan;
    auto m = buildMolecularModel(o.molecule, c);
    saveFlow(*m.flow, o.out, m.info);
    const int64_t params = m.flow->parameterCount();
    std::cout << "untrained " << o.transform << " flow (" << (o.inverse ? "inverse" : "forward")
              << " direction), " << m.flow->dataDim() / 3 << " atoms, " << m.flow->dim() << " internal coordinates, "
              << params << " parameters (paper: 758,168 smooth, 398,691 spline): " << o.out << "\n";
    if (!o.json.empty())
        writeJson(o.json, {{"model", o.out}, {"transform", o.transform}, {"parameters", params}, {"atoms", m.flow->dataDim() / 3}});
}

}  // namespace

void registerInit(CLI::App& app) {
    auto io = std::make_shared<InitOptions>();
    auto* init = app.add_subcommand("init", "Write an untrained, seeded Boltzmann-generator model for a molecule");
    addMoleculeOptions(*init, io->molecule);
    init->add_option("--transform", io->transform, "smooth (8 bump components) or spline (8 bins)")
        ->check(CLI::IsMember({"smooth", "spline"}))
        ->capture_default_str();
    init->add_option("--activation", io->activation, "conditioner activation (the paper's: sin)")
        ->check(CLI::IsMember({"sin", "silu", "tanh"}))
        ->capture_default_str();
    init->add_option("--sharpness-span", io->sharpnessSpan,
                     "smooth transforms' ramp sharpness range: alpha in [0.866, 0.866 + span] (the paper's span: 10)")
        ->check(CLI::Range(0.0, 10.0))
        ->capture_default_str();
    init->add_flag("--inverse", io->inverse, "smooth transforms in the inverse direction (density by root finding)");
    init->add_option("--temperature", io->temperature, "temperature stored in the model (K)")->capture_default_str();
    init->add_option("--seed", io->seed, "random seed")->capture_default_str();
    init->add_option("--out", io->out, "model file")->capture_default_str();
    init->add_option("--json", io->json, "write a JSON summary");
    init->callback([io]() { runInit(*io); });
}

}  // namespace flowforce::cli
