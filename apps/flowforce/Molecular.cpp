#include "Molecular.h"

#include "Common.h"

#include "flowforce/flow/InternalCoordinates.h"
#include "flowforce/flow/Molecular.h"
#include "flowforce/flow/Physics.h"
#include "flowforce/md/H5MD.h"
#include "flowforce/md/Molecule.h"

#include <CLI/CLI.hpp>
#include <OpenMM.h>

#include <cmath>

namespace flowforce::cli {

void addMoleculeOptions(CLI::App& cmd, MoleculeOptions& options) {
    cmd.add_option("--pdb", options.pdb, "molecule PDB (default: built-in alanine dipeptide)")->check(CLI::ExistingFile);
    cmd.add_option("--zmatrix", options.zmatrix, "z-matrix file: rows 'atom bond-ref angle-ref torsion-ref' (-1: none)")
        ->check(CLI::ExistingFile);
}

namespace {

ZMatrix moleculeZMatrix(const MoleculeOptions& m) {
    if (m.pdb.empty() != m.zmatrix.empty()) throw Error("--pdb and --zmatrix go together (a molecule needs both)");
    try {
        return m.zmatrix.empty() ? ZMatrix::builtinAlanineDipeptide() : ZMatrix::fromFile(m.zmatrix);
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
}

}  // namespace

std::string moleculePDB(const MoleculeOptions& m) {
    try {
        return m.pdb.empty() ? md::defaultMoleculePDB() : m.pdb;
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
}

MolecularModel buildMolecularModel(const MoleculeOptions& molecule, const ModelChoice& c) {
    const ZMatrix z = moleculeZMatrix(molecule);
    const auto pdb = md::readPDB(moleculePDB(molecule));
    if (pdb.numAtoms() != static_cast<size_t>(z.numAtoms()))
        throw Error("the PDB has " + std::to_string(pdb.numAtoms()) + " atoms but the z-matrix covers " +
                    std::to_string(z.numAtoms()));
    if (c.transform != "smooth" && c.transform != "spline") throw Error("the transform must be smooth or spline");
    Activation activation;
    try {
        activation = activationFromName(c.activation);
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    nlohmann::json t = c.transform == "smooth" ? nlohmann::json{{"type", "smooth"}, {"components", 8}}
                                               : nlohmann::json{{"type", "spline"}, {"bins", 8}};
    if (!(c.sharpnessSpan >= 0.0 && c.sharpnessSpan <= 10.0))
        throw Error("the sharpness span must lie in [0, 10] (the paper's range is the widest allowed)");
    if (c.transform == "smooth" && c.sharpnessSpan != 10.0) t["sharpness_span"] = c.sharpnessSpan;  // else the paper's
    auto arch = boltzmannGeneratorArchitecture(z, t, {64, 64}, activation, c.inverse && c.transform == "smooth");
    const bool fitted = c.rangeFrames.defined();
    if (fitted) {
        try {
            const auto global = EmbeddingSpec::fromJson(arch["embedding"]);
            if (c.rangeFit != "data" && c.rangeFit != "gauss") throw Error("the fitted ranges must be data or gauss");
            arch["embedding"] = (c.rangeFit == "gauss" ? fitDataGaussians(global, c.rangeFrames, c.gaussScale)
                                                       : fitDataRanges(global, c.rangeFrames, c.rangeMargin))
                                    .toJson();
        } catch (const std::exception& e) {
            throw Error(e.what());
        }
    }
    torch::manual_seed(c.seed);
    MolecularModel m;
    m.flow = std::make_shared<Flow>(arch);
    m.flow->to(torch::kFloat64);
    m.info = {{"temperature_K", c.temperature},
              {"molecule", molecule.pdb.empty() ? "alanine dipeptide (built in)" : molecule.pdb},
              {"atoms", z.numAtoms()},
              {"transform", c.transform},
              {"inverse", c.inverse},
              {"activation", c.activation},
              {"seed", c.seed},
              {"ic_ranges", fitted ? c.rangeFit : "paper"}};
    if (fitted) {
        if (c.rangeFit == "data") m.info["ic_range_margin"] = c.rangeMargin;
        if (c.rangeFit == "gauss") m.info["ic_gauss_scale"] = c.gaussScale;
        m.info["ic_range_frames"] = c.rangeFrames.size(0);
    }
    return m;
}

MolecularData loadMolecularData(const std::string& path, int64_t dataDim, int64_t maxFrames, bool needForces) {
    md::Dataset d;
    try {
        d = md::readH5MD(path, maxFrames > 0 ? static_cast<size_t>(maxFrames) : std::numeric_limits<size_t>::max());
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    if (static_cast<int64_t>(d.atoms * 3) != dataDim)
        throw Error(path + ": frames have " + std::to_string(d.atoms) + " atoms but the model describes " +
                    std::to_string(dataDim / 3));
    if (needForces && !d.hasForces()) throw Error(path + ": the dataset has no forces");
    const auto F = static_cast<int64_t>(d.frames);
    MolecularData out;
    out.positions = torch::from_blob(d.positions.data(), {F, dataDim}, torch::kFloat64).clone();
    if (d.hasForces()) out.forces = torch::from_blob(d.forces.data(), {F, dataDim}, torch::kFloat64).clone();
    if (d.hasEnergies()) out.energies = torch::from_blob(d.energies.data(), {F}, torch::kFloat64).clone();
    if (!torch::isfinite(out.positions).all().item<bool>()) throw Error(path + ": the dataset has non-finite positions");
    return out;
}

namespace {

/** u(x) and -F/kT from an OpenMM Context on the Reference platform (fastest for small molecules). */
class OpenMMTargetEnergy : public TargetEnergy {
public:
    OpenMMTargetEnergy(std::unique_ptr<OpenMM::System> system, double temperature)
        : system_(std::move(system)), integrator_(0.001), kT_(kBoltzmannKJPerMolK * temperature),
          context_(*system_, integrator_, OpenMM::Platform::getPlatformByName("Reference")),
          n_(system_->getNumParticles()) {}

    /** Energies [B] (k_B T) and gradients du/dx [B, 3n] (1/nm); non-finite energies become
     *  kEnergyCeilingKT with zero gradient, so the KLD's energy cut handles clashes and importance
     *  sampling leaves them out. */
    std::pair<torch::Tensor, torch::Tensor> compute(const torch::Tensor& xIn) {
        auto x = xIn.detach().to(torch::kFloat64).contiguous();
        const int64_t B = x.size(0);
        if (x.size(1) != 3 * n_) throw Error("target energy: expected " + std::to_string(3 * n_) + " coordinates");
        auto u = torch::empty({B}, torch::kFloat64), g = torch::zeros({B, 3 * n_}, torch::kFloat64);
        const double* px = x.data_ptr<double>();
        double* pu = u.data_ptr<double>();
        double* pg = g.data_ptr<double>();
        std::vector<OpenMM::Vec3> pos(static_cast<size_t>(n_));
        for (int64_t b = 0; b < B; ++b) {
            bool finite = true;
            for (int i = 0; i < n_; ++i) {
                const double* p = px + b * 3 * n_ + 3 * i;
                pos[static_cast<size_t>(i)] = OpenMM::Vec3(p[0], p[1], p[2]);
                finite = finite && std::isfinite(p[0]) && std::isfinite(p[1]) && std::isfinite(p[2]);
            }
            if (!finite) {
                pu[b] = kEnergyCeilingKT;
                continue;
            }
            context_.setPositions(pos);
            auto state = context_.getState(OpenMM::State::Energy | OpenMM::State::Forces);
            const double e = state.getPotentialEnergy() / kT_;
            if (!std::isfinite(e)) {
                pu[b] = kEnergyCeilingKT;
                continue;
            }
            pu[b] = e;
            const auto& f = state.getForces();
            for (int i = 0; i < n_; ++i)
                for (int k = 0; k < 3; ++k) pg[b * 3 * n_ + 3 * i + k] = -f[static_cast<size_t>(i)][k] / kT_;
        }
        return {u, g};
    }

    torch::Tensor energies(const torch::Tensor& x) override { return compute(x).first; }
    torch::Tensor forces(const torch::Tensor& x) override { return -compute(x).second; }
    std::pair<torch::Tensor, torch::Tensor> energiesAndGradients(const torch::Tensor& x) override { return compute(x); }
    torch::Tensor energiesWithGradient(const torch::Tensor& x) override;

private:
    std::unique_ptr<OpenMM::System> system_;
    OpenMM::VerletIntegrator integrator_;
    double kT_;
    OpenMM::Context context_;
    int n_;
};

struct TargetEnergyFunction : public torch::autograd::Function<TargetEnergyFunction> {
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                                                  OpenMMTargetEnergy* target) {
        auto [u, g] = target->compute(x);
        ctx->save_for_backward({g});
        return {u};
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto g = ctx->get_saved_variables()[0];
        return {grads[0].unsqueeze(1) * g, torch::Tensor()};
    }
};

torch::Tensor OpenMMTargetEnergy::energiesWithGradient(const torch::Tensor& x) {
    return TargetEnergyFunction::apply(x, this)[0];
}

}  // namespace

std::unique_ptr<TargetEnergy> makeTargetEnergy(const MoleculeOptions& molecule, double temperature) {
    try {
        static bool pluginsLoaded = false;
        if (!pluginsLoaded) {
            OpenMM::Platform::loadPluginsFromDirectory(OpenMM::Platform::getDefaultPluginsDirectory());
            pluginsLoaded = true;
        }
        auto sys = md::createClassicalSystem(moleculePDB(molecule));
        return std::make_unique<OpenMMTargetEnergy>(std::move(sys.system), temperature);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(std::string("classical target energy: ") + e.what());
    }
}

}  // namespace flowforce::cli
