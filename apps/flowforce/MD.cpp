// flowforce md: MD with a FlowForce model or the classical force field.
//   --ensemble nve (default): the paper's energy-conservation experiment (Fig. 4): replicas started from
//     the first dataset frames (or the PDB), Maxwell-Boltzmann velocities, Langevin equilibration
//     (10/ps), then velocity Verlet; per replica and overall: std of the total energy per degree of
//     freedom, linear drift, explosion, cost per step.
//   --ensemble langevin: thermostatted runs writing a DCD trajectory and a phi/psi time series.
#include "Common.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/md/ClassicalSystem.h"
#include "flowforce/md/DCD.h"
#include "flowforce/md/H5MD.h"
#include "flowforce/md/Molecule.h"
#include "flowforce/md/Platforms.h"

#include "FlowForce.h"
#include "ReferenceFlowForceKernels.h"

#include <CLI/CLI.hpp>
#include <OpenMM.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace flowforce::cli {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct MDOptions {
    std::string model, data, pdb, platform = "Reference", ensemble = "nve";
    int threads = 0;
    bool classical = false;
    int replicas = -1;  // default: 10 (nve), 1 (langevin)
    long steps = 5000;
    long equilibrationSteps = 1000;
    double dtFs = 1.0;
    double temperature = 0.0;  // 0: the model's, else 300 K
    double equilibrationFriction = 10.0;
    double friction = 1.0;  // langevin ensemble, 1/ps
    int seed = 1;
    long energyInterval = 10;   // nve: steps between total-energy samples
    long frameInterval = 1000;  // langevin: steps between DCD frames / dihedral samples
    double explosionKJ = 1000.0;
    std::string json, plots, out, csv;
    std::vector<int> phi, psi;
};

struct Potential {
    std::unique_ptr<OpenMM::System> system;
    std::string description;
    double temperature = 300.0;
};

std::string fmt(double v, int precision = 3, bool sci = false) {
    std::ostringstream s;
    if (sci) s << std::scientific;
    s << std::setprecision(precision) << v;
    return s.str();
}

Potential buildPotential(const MDOptions& o, const md::Molecule& mol, const std::string& pdbPath) {
    Potential p;
    if (o.classical) {
        auto c = md::createClassicalSystem(pdbPath);
        p.system = std::move(c.system);
        p.description = "classical amber99sbildn + amber99_obc";
        p.temperature = o.temperature > 0 ? o.temperature : 300.0;
        if (static_cast<size_t>(p.system->getNumParticles()) != mol.numAtoms())
            throw Error("the classical System and the PDB disagree on the number of atoms");
        return p;
    }
    p.system = std::make_unique<OpenMM::System>();
    for (double m : md::atomMasses(mol)) p.system->addParticle(m);
    auto force = std::make_unique<FlowForcePlugin::FlowForce>(o.model);  // throws OpenMMException on a bad model
    if (static_cast<size_t>(force->getNumParticles()) > mol.numAtoms())
        throw Error("model '" + o.model + "' describes " + std::to_string(force->getNumParticles()) + " particles, the molecule has " +
                    std::to_string(mol.numAtoms()));
    if (o.temperature > 0) force->setTemperature(o.temperature);
    p.temperature = force->getTemperature();
    p.description = "FlowForce " + o.model + " (" + force->getModelDescription() + ", T = " + fmt(p.temperature, 4) + " K)";
    p.system->addForce(force.release());
    return p;
}

struct Stats {
    double mean = 0, std = 0, slope = 0;
};
Stats statistics(const std::vector<double>& t, const std::vector<double>& y) {
    Stats s;
    const size_t n = y.size();
    if (n == 0) return s;
    double mt = 0, my = 0;
    for (size_t i = 0; i < n; ++i) mt += t[i], my += y[i];
    mt /= static_cast<double>(n), my /= static_cast<double>(n);
    double vy = 0, vt = 0, cty = 0;
    for (size_t i = 0; i < n; ++i) {
        vy += (y[i] - my) * (y[i] - my);
        vt += (t[i] - mt) * (t[i] - mt);
        cty += (t[i] - mt) * (y[i] - my);
    }
    s.mean = my;
    s.std = std::sqrt(vy / static_cast<double>(n));
    s.slope = vt > 0 ? cty / vt : 0.0;
    return s;
}


/** Default phi/psi atoms for alanine dipeptide (0-based; C-N-CA-C and N-CA-C-N), checked by atom name. */
void defaultDihedrals(const md::Molecule& mol, std::vector<int>& phi, std::vector<int>& psi) {
    const std::vector<int> p{4, 6, 8, 14}, q{6, 8, 14, 16};
    const std::vector<std::string> pn{"C", "N", "CA", "C"}, qn{"N", "CA", "C", "N"};
    if (mol.numAtoms() != 22) return;
    for (int k = 0; k < 4; ++k)
        if (mol.atoms[static_cast<size_t>(p[static_cast<size_t>(k)])].name != pn[static_cast<size_t>(k)] ||
            mol.atoms[static_cast<size_t>(q[static_cast<size_t>(k)])].name != qn[static_cast<size_t>(k)])
            return;
    phi = p, psi = q;
}

std::string replicaPath(const std::string& path, int replica, int replicas) {
    if (replicas == 1) return path;
    std::filesystem::path p(path);
    return (p.parent_path() / (p.stem().string() + "-r" + std::to_string(replica) + p.extension().string())).string();
}

void runMD(MDOptions o) {
    // --- validate input
    if (o.classical == !o.model.empty()) throw Error("give exactly one of --model FILE and --classical");
    if (o.ensemble != "nve" && o.ensemble != "langevin") throw Error("--ensemble must be nve or langevin");
    const bool nve = o.ensemble == "nve";
    if (o.replicas < 0) o.replicas = nve ? 10 : 1;
    if (o.replicas < 1) throw Error("--replicas must be at least 1");
    if (o.steps < 1 || o.equilibrationSteps < 0) throw Error("--steps must be positive and --equilibration-steps not negative");
    if (!(o.dtFs > 0) || !std::isfinite(o.dtFs)) throw Error("--dt-fs must be positive");
    if (o.temperature < 0 || !std::isfinite(o.temperature)) throw Error("--temperature must be positive");
    if (o.energyInterval < 1 || o.frameInterval < 1) throw Error("--energy-interval and --frame-interval must be positive");
    if (!o.classical) setThreads(o.threads);
    if (!nve && o.out.empty()) throw Error("--ensemble langevin needs --out FILE.dcd for the trajectory");
    if (!o.model.empty() && !std::filesystem::exists(o.model)) throw Error("model file '" + o.model + "' does not exist");
    if ((o.phi.size() != 0 && o.phi.size() != 4) || (o.psi.size() != 0 && o.psi.size() != 4))
        throw Error("--phi and --psi take four atom indices each");
    const double dtPs = o.dtFs * 1e-3;

    const std::string pdbPath = o.pdb.empty() ? md::defaultMoleculePDB() : o.pdb;
    const md::Molecule mol = md::readPDB(pdbPath);
    const size_t n = mol.numAtoms();
    for (int idx : o.phi)
        if (idx < 0 || static_cast<size_t>(idx) >= n) throw Error("--phi atom index out of range");
    for (int idx : o.psi)
        if (idx < 0 || static_cast<size_t>(idx) >= n) throw Error("--psi atom index out of range");
    if (o.phi.empty() && o.psi.empty()) defaultDihedrals(mol, o.phi, o.psi);

    // Starting configurations: the first dataset frames, else the PDB.
    std::vector<std::vector<OpenMM::Vec3>> starts;
    if (!o.data.empty()) {
        const md::Dataset ds = md::readH5MD(o.data, static_cast<size_t>(o.replicas));
        if (ds.atoms != n)
            throw Error("dataset '" + o.data + "' has " + std::to_string(ds.atoms) + " atoms, the molecule " + std::to_string(n));
        if (ds.frames < static_cast<size_t>(o.replicas))
            std::cerr << "md: warning: '" << o.data << "' has only " << ds.frames << " frames; replicas reuse them\n";
        for (size_t f = 0; f < ds.frames; ++f) {
            std::vector<OpenMM::Vec3> x(n);
            for (size_t i = 0; i < n; ++i) x[i] = OpenMM::Vec3(ds.position(f)[3 * i], ds.position(f)[3 * i + 1], ds.position(f)[3 * i + 2]);
            starts.push_back(std::move(x));
        }
    } else {
        starts.push_back(mol.positions);
    }

    md::loadDefaultOpenMMPlugins();
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    Potential pot = buildPotential(o, mol, pdbPath);
    const double T = pot.temperature;
    const int ndof = std::max<int>(1, 3 * static_cast<int>(n) - 6);

    OpenMM::CompoundIntegrator integrator;
    auto* equilibrate = new OpenMM::LangevinMiddleIntegrator(T, o.equilibrationFriction, dtPs);
    equilibrate->setRandomNumberSeed(o.seed);
    integrator.addIntegrator(equilibrate);
    if (nve) {
        integrator.addIntegrator(new OpenMM::VerletIntegrator(dtPs));
    } else {
        auto* production = new OpenMM::LangevinMiddleIntegrator(T, o.friction, dtPs);
        production->setRandomNumberSeed(o.seed + 7919);
        integrator.addIntegrator(production);
    }
    OpenMM::Platform& platform = md::getPlatform(o.platform);
    OpenMM::Context context(*pot.system, integrator, platform);
    std::cerr << "md: " << pot.description << "; " << n << " atoms, " << o.replicas << " replica(s), " << o.ensemble << ", "
              << o.steps << " steps of " << o.dtFs << " fs on " << o.platform << "\n";

    nlohmann::json replicaReports = nlohmann::json::array();
    nlohmann::json plotReplicas = nlohmann::json::array();
    std::ostringstream csv;
    csv << "replica,step,time_ps,potential_energy_kj_mol" << (o.phi.empty() ? "" : ",phi_deg,psi_deg") << "\n";
    csv << std::setprecision(10);
    std::vector<double> allPhi, allPsi;
    double totalStepSeconds = 0;
    long totalSteps = 0;
    std::vector<double> stdsPerDof, drifts;
    int exploded = 0;

    for (int r = 0; r < o.replicas; ++r) {
        nlohmann::json rep{{"replica", r}};
        bool blewUp = false;
        std::string reason;
        long explodedAt = -1;   // NVE step of an explosion (-1: none, or during equilibration)
        long equilibrated = 0;  // Langevin equilibration steps completed
        double stepSeconds = 0; // wall time inside integrator.step (equilibration and production)
        auto timedSteps = [&](long k) {
            const auto t0 = std::chrono::steady_clock::now();
            integrator.step(static_cast<int>(k));
            stepSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        };
        const auto& x0 = starts[static_cast<size_t>(r) % starts.size()];
        auto energies = [&](double& pe, double& ke) {
            const OpenMM::State s = context.getState(OpenMM::State::Energy);
            pe = s.getPotentialEnergy(), ke = s.getKineticEnergy();
        };
        // --- equilibration (Langevin, 10/ps)
        try {
            context.setPositions(x0);
            context.setTime(0.0);
            context.setStepCount(0);
            context.setVelocitiesToTemperature(T, o.seed + r);
            integrator.setCurrentIntegrator(0);
            while (equilibrated < o.equilibrationSteps && !blewUp) {
                timedSteps(std::min<long>(100, o.equilibrationSteps - equilibrated));
                equilibrated = context.getStepCount();
                double pe, ke;
                energies(pe, ke);
                if (!std::isfinite(pe + ke))
                    blewUp = true, reason = "non-finite energy after " + std::to_string(equilibrated) + " equilibration steps";
            }
        } catch (const std::exception& e) {
            equilibrated = context.getStepCount();
            blewUp = true, reason = "in equilibration step " + std::to_string(equilibrated + 1) + ": " + e.what();
        }
        context.setTime(0.0);
        context.setStepCount(0);
        integrator.setCurrentIntegrator(1);

        std::vector<double> t, etot, epot;
        long stepsDone = 0;
        std::unique_ptr<md::DCDWriter> dcd;
        std::string dcdPath;
        Progress progress("replica " + std::to_string(r + 1) + "/" + std::to_string(o.replicas), o.steps);
        const long interval = nve ? o.energyInterval : o.frameInterval;
        if (!nve) {
            dcdPath = replicaPath(o.out, r, o.replicas);
            dcd = std::make_unique<md::DCDWriter>(dcdPath, static_cast<int>(n), static_cast<int>(interval), static_cast<int>(interval), dtPs);
        }
        double e0 = 0;
        if (!blewUp) {
            try {
                double pe, ke;
                energies(pe, ke);
                e0 = pe + ke;
                if (nve) t.push_back(0.0), etot.push_back(e0), epot.push_back(pe);
                while (stepsDone < o.steps) {
                    const long k = std::min(interval, o.steps - stepsDone);
                    timedSteps(k);
                    stepsDone += k;
                    const OpenMM::State s =
                        context.getState(OpenMM::State::Energy | (nve ? 0 : OpenMM::State::Positions));
                    const double e = s.getPotentialEnergy() + s.getKineticEnergy();
                    t.push_back(s.getTime()), etot.push_back(e), epot.push_back(s.getPotentialEnergy());
                    if (!std::isfinite(e)) {
                        blewUp = true, reason = "non-finite energy", explodedAt = stepsDone;
                        t.pop_back(), etot.pop_back(), epot.pop_back();
                    } else if (nve && std::abs(e - e0) > o.explosionKJ) {
                        blewUp = true, reason = "|E - E0| > " + fmt(o.explosionKJ) + " kJ/mol", explodedAt = stepsDone;
                    }
                    if (!nve && !blewUp) {
                        const auto& x = s.getPositions();
                        dcd->write(x);
                        csv << r << "," << s.getStepCount() << "," << s.getTime() << "," << s.getPotentialEnergy();
                        if (!o.phi.empty()) {
                            auto at = [&](const std::vector<int>& v, int k2) { return x[static_cast<size_t>(v[static_cast<size_t>(k2)])]; };
                            const double ph = md::dihedral(at(o.phi, 0), at(o.phi, 1), at(o.phi, 2), at(o.phi, 3)) * 180.0 / kPi;
                            const double ps = md::dihedral(at(o.psi, 0), at(o.psi, 1), at(o.psi, 2), at(o.psi, 3)) * 180.0 / kPi;
                            csv << "," << ph << "," << ps;
                            allPhi.push_back(ph), allPsi.push_back(ps);
                        }
                        csv << "\n";
                    }
                    progress.update(stepsDone, "E = " + fmt(e, 6) + " kJ/mol");
                    if (blewUp) break;
                }
            } catch (const std::exception& e) {
                blewUp = true, reason = e.what(), explodedAt = stepsDone;
            }
        }
        progress.finish(blewUp ? "exploded: " + reason : "");
        if (dcd) dcd->close();

        const Stats st = statistics(t, etot);
        const Stats sp = statistics(t, epot);
        const long allSteps = equilibrated + stepsDone;
        const double msPerStep = allSteps > 0 ? stepSeconds * 1e3 / static_cast<double>(allSteps) : 0.0;
        totalStepSeconds += stepSeconds, totalSteps += allSteps;
        rep["exploded"] = blewUp;
        if (blewUp) {
            ++exploded;
            rep["explosion_reason"] = reason;
            rep["exploded_at_step"] = explodedAt;
        }
        rep["equilibration_steps_done"] = equilibrated;
        rep["steps_done"] = stepsDone;
        rep["ms_per_step"] = msPerStep;
        rep["mean_potential_energy_kj_mol"] = sp.mean;
        if (nve) {
            const bool haveSeries = etot.size() >= 2;
            rep["total_energy_initial_kj_mol"] = haveSeries ? nlohmann::json(e0) : nlohmann::json();
            rep["total_energy_std_kj_mol"] = haveSeries ? nlohmann::json(st.std) : nlohmann::json();
            rep["total_energy_std_per_dof_kj_mol"] = haveSeries ? nlohmann::json(st.std / ndof) : nlohmann::json();
            rep["total_energy_drift_kj_mol_per_ps"] = haveSeries ? nlohmann::json(st.slope) : nlohmann::json();
            double maxDev = 0;
            for (double e : etot) maxDev = std::max(maxDev, std::abs(e - e0));
            rep["total_energy_max_deviation_kj_mol"] = maxDev;
            if (!blewUp) stdsPerDof.push_back(st.std / ndof), drifts.push_back(st.slope);
            plotReplicas.push_back({{"replica", r}, {"time_ps", t}, {"total_energy", etot}, {"exploded", blewUp}});
            const std::string name = "  replica " + std::to_string(r + 1) + "/" + std::to_string(o.replicas) + ": ";
            if (blewUp && equilibrated < o.equilibrationSteps)
                std::cerr << name << "EXPLODED in Langevin equilibration after " << equilibrated << " steps\n";
            else if (blewUp)
                std::cerr << name << "EXPLODED after " << stepsDone << " NVE steps\n";
            else
                std::cerr << name << "E std/DOF = " << fmt(st.std / ndof, 3, true) << " kJ/mol, drift = "
                          << fmt(st.slope, 3, true) << " kJ/mol/ps, " << fmt(msPerStep, 3) << " ms/step\n";
        } else {
            rep["dcd"] = dcdPath;
            rep["frames"] = dcd ? dcd->frames() : 0;
            plotReplicas.push_back({{"replica", r}, {"time_ps", t}, {"potential_energy", epot}, {"exploded", blewUp}});
            std::cerr << "  replica " << r + 1 << "/" << o.replicas << ": " << (dcd ? dcd->frames() : 0) << " frames to " << dcdPath << ", "
                      << fmt(msPerStep, 3) << " ms/step" << (blewUp ? "  EXPLODED (" + reason + ")" : "") << "\n";
        }
        replicaReports.push_back(rep);
    }

    nlohmann::json report{{"potential", pot.description},
                          {"model", o.model},
                          {"classical", o.classical},
                          {"pdb", pdbPath},
                          {"data", o.data},
                          {"ensemble", o.ensemble},
                          {"platform", o.platform},
                          {"atoms", n},
                          {"degrees_of_freedom", ndof},
                          {"temperature_K", T},
                          {"timestep_fs", o.dtFs},
                          {"steps", o.steps},
                          {"equilibration_steps", o.equilibrationSteps},
                          {"replicas", o.replicas},
                          {"replicas_exploded", exploded},
                          {"ms_per_step", totalSteps > 0 ? totalStepSeconds * 1e3 / static_cast<double>(totalSteps) : 0.0},
                          {"per_replica", replicaReports}};
    if (nve) {
        report["energy_sample_interval_steps"] = o.energyInterval;
        report["explosion_threshold_kj_mol"] = o.explosionKJ;
        if (!stdsPerDof.empty()) {
            auto sorted = stdsPerDof;
            std::sort(sorted.begin(), sorted.end());
            double mean = 0, meanDrift = 0;
            for (double v : stdsPerDof) mean += v;
            for (double v : drifts) meanDrift += v;
            report["total_energy_std_per_dof_kj_mol_mean"] = mean / static_cast<double>(stdsPerDof.size());
            report["total_energy_std_per_dof_kj_mol_median"] = sorted[sorted.size() / 2];
            report["total_energy_std_per_dof_kj_mol_max"] = sorted.back();
            report["total_energy_drift_kj_mol_per_ps_mean"] = meanDrift / static_cast<double>(drifts.size());
        }
        std::cout << "md (" << pot.description << "): " << o.replicas - exploded << "/" << o.replicas << " replicas stable";
        if (!stdsPerDof.empty())
            std::cout << ", total-energy std per DOF " << fmt(report["total_energy_std_per_dof_kj_mol_mean"].get<double>(), 3, true)
                      << " kJ/mol (mean; median " << fmt(report["total_energy_std_per_dof_kj_mol_median"].get<double>(), 3, true)
                      << "), drift " << fmt(report["total_energy_drift_kj_mol_per_ps_mean"].get<double>(), 3, true) << " kJ/mol/ps";
        std::cout << ", " << fmt(report["ms_per_step"].get<double>(), 3) << " ms/step\n";
    } else {
        const std::string csvPath = o.csv.empty()
                                        ? (std::filesystem::path(o.out).parent_path() / (std::filesystem::path(o.out).stem().string() + "-dihedrals.csv")).string()
                                        : o.csv;
        writeFileAtomically(csvPath, csv.str());
        report["timeseries_csv"] = csvPath;
        report["frame_interval_steps"] = o.frameInterval;
        if (!o.phi.empty()) report["dihedral_atoms"] = {{"phi", o.phi}, {"psi", o.psi}};
        std::cout << "md (" << pot.description << "): langevin, " << o.replicas - exploded << "/" << o.replicas
                  << " replicas stable; trajectory " << o.out << (o.replicas > 1 ? " (one per replica)" : "") << ", time series "
                  << csvPath << ", " << fmt(report["ms_per_step"].get<double>(), 3) << " ms/step\n";
    }
    if (!o.json.empty()) writeJson(o.json, report);
    if (!o.plots.empty()) {
        nlohmann::json payload{{"title", pot.description}, {"ndof", ndof}, {"replicas", plotReplicas}};
        if (nve) {
            makePlots("md_energy", payload, o.plots);
        } else {
            payload["phi"] = allPhi, payload["psi"] = allPsi;
            makePlots("md_langevin", payload, o.plots);
        }
    }
}

}  // namespace

void registerMD(CLI::App& app) {
    auto o = std::make_shared<MDOptions>();
    auto* cmd = app.add_subcommand("md", "MD with a FlowForce model or the classical force field: NVE energy conservation or Langevin runs");
    cmd->add_option("--model", o->model, "FlowForce model (.flow or TorchScript) acting on the molecule's atoms");
    cmd->add_flag("--classical", o->classical, "use the classical force field (amber99sbildn + amber99_obc) instead");
    cmd->add_option("--ensemble", o->ensemble, "nve (energy conservation) or langevin (trajectory, phi/psi)")->capture_default_str();
    cmd->add_option("--data", o->data, "H5MD dataset whose first frames start the replicas (default: the PDB)");
    cmd->add_option("--pdb", o->pdb, "molecule (default: the built-in alanine dipeptide)");
    cmd->add_option("--replicas", o->replicas, "independent runs (default 10 for nve, 1 for langevin)");
    cmd->add_option("--steps", o->steps, "production steps per replica")->capture_default_str();
    cmd->add_option("--equilibration-steps", o->equilibrationSteps, "Langevin steps before production")->capture_default_str();
    cmd->add_option("--dt-fs", o->dtFs, "time step in fs")->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "temperature in K (default: the model's, else 300)");
    cmd->add_option("--equilibration-friction", o->equilibrationFriction, "equilibration friction, 1/ps")->capture_default_str();
    cmd->add_option("--friction", o->friction, "friction of --ensemble langevin, 1/ps")->capture_default_str();
    cmd->add_option("--seed", o->seed, "random seed (velocities, Langevin noise)")->capture_default_str();
    cmd->add_option("--platform", o->platform, "OpenMM platform")->capture_default_str();
    cmd->add_option("--threads", o->threads, "LibTorch threads for the model (0: all cores)")->capture_default_str();
    cmd->add_option("--energy-interval", o->energyInterval, "nve: steps between total-energy samples")->capture_default_str();
    cmd->add_option("--frame-interval", o->frameInterval, "langevin: steps between trajectory frames")->capture_default_str();
    cmd->add_option("--explosion-threshold", o->explosionKJ, "nve: |E - E0| in kJ/mol that counts as exploded")->capture_default_str();
    cmd->add_option("--out", o->out, "langevin: DCD trajectory file (replica r > 1 run: <stem>-r<r>.dcd)");
    cmd->add_option("--csv", o->csv, "langevin: time series (energy, phi, psi) CSV (default <out stem>-dihedrals.csv)");
    cmd->add_option("--phi", o->phi, "four 0-based atom indices of phi (default for alanine dipeptide: 4 6 8 14)")->expected(4);
    cmd->add_option("--psi", o->psi, "four 0-based atom indices of psi (default for alanine dipeptide: 6 8 14 16)")->expected(4);
    cmd->add_option("--json", o->json, "write the report as JSON to this file");
    cmd->add_option("--plots", o->plots, "write PNG plots (total energy vs time; Ramachandran) into this folder");
    cmd->callback([o]() {
        try {
            runMD(*o);
        } catch (const OpenMM::OpenMMException& e) {
            throw Error(std::string("OpenMM: ") + e.what());
        }
    });
}

}  // namespace flowforce::cli
