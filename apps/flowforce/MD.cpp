// flowforce md: MD with a FlowForce model or the classical force field.
//   --ensemble nve (default): the paper's energy-conservation experiment (Fig. 4): replicas started from
//     the first dataset frames (or the PDB), Maxwell-Boltzmann velocities, Langevin equilibration
//     (10/ps), then velocity Verlet with the total energy sampled every step; per replica and overall:
//     std of the total energy per degree of freedom, linear drift, largest change between consecutive
//     samples, explosion, cost per step.
//   --ensemble langevin: thermostatted runs writing a DCD trajectory and a phi/psi time series.
#include "Common.h"

#include "flowforce/flow/Features.h"
#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/Physics.h"
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
#include <utility>

namespace flowforce::cli {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct MDOptions {
    std::string model, data, pdb, platform = "Reference", ensemble = "nve";
    int threads = 0;
    bool classical = false;
    bool subset = false;  // let a model cover only the molecule's first atoms
    int replicas = -1;    // default: 10 (nve), 1 (langevin)
    long steps = 5000;
    long equilibrationSteps = 1000;
    double dtFs = 1.0;
    double temperature = 0.0;  // 0: the model's, else 300 K
    double equilibrationFriction = 10.0;
    double friction = 1.0;  // langevin ensemble, 1/ps
    int seed = 1;
    long energyInterval = 1;    // nve: steps between total-energy samples
    long frameInterval = 1000;  // langevin: steps between DCD frames / dihedral samples
    double explosionKJ = 1000.0;
    std::string json, plots, out, csv;
    std::vector<int> phi, psi;

    bool nve() const { return ensemble == "nve"; }
};

/** The System the replicas run: the molecule's particles with the model's or the classical forces. */
struct SimulatedPotential {
    std::unique_ptr<OpenMM::System> system;
    std::string description;
    double temperature = 300.0;  // K
    int modelAtoms = 0;          // atoms the FlowForce model covers (0: classical)
};

/** The integrators (0: Langevin equilibration, 1: production) and the context; for NVE a second context
 *  on the same System that probes forces at given positions (the stiffest mode where the energy jumped). */
struct Engine {
    std::unique_ptr<OpenMM::CompoundIntegrator> integrator;
    std::unique_ptr<OpenMM::Context> context;
    std::unique_ptr<OpenMM::VerletIntegrator> probeIntegrator;
    std::unique_ptr<OpenMM::Context> probe;
};

/** What one replica did, and its energy samples (NVE: total energy; langevin: potential energy). */
struct ReplicaRun {
    int index = 0;
    bool exploded = false;
    std::string reason;
    long explodedAt = -1;    // production step of an explosion (-1: none, or during equilibration)
    long equilibrated = 0;   // Langevin equilibration steps completed
    long stepsDone = 0;      // production steps completed
    double stepSeconds = 0;  // wall time inside integrator.step (equilibration and production)
    double e0 = 0;           // total energy at the start of production, kJ/mol
    std::vector<double> t, etot, epot;  // ps, kJ/mol
    std::string dcdPath;
    int dcdFrames = 0;
    // NVE: the largest change of the total energy between samples, the configurations before and after
    // it, and the stiffest vibration of the potential at either (omega 0: not computed)
    double maxStepChange = -1;
    long maxStepAt = -1;
    std::vector<OpenMM::Vec3> xBeforeMaxStep, xAfterMaxStep;
    StiffestMode stiffestAtMaxStep;
    double offCubic = -1;  // max |U - Hermite cubic of the end energies and forces| along the straight step, kJ/mol

    bool blewUpInEquilibration(long equilibrationSteps) const { return exploded && equilibrated < equilibrationSteps; }
    long allSteps() const { return equilibrated + stepsDone; }
    double msPerStep() const { return allSteps() > 0 ? stepSeconds * 1e3 / static_cast<double>(allSteps()) : 0.0; }
};

/** The langevin ensemble's time series of all replicas: CSV rows and the dihedrals in degrees. */
struct LangevinSeries {
    std::ostringstream csv;
    std::vector<double> phi, psi;
};

std::string fmt(double v, int precision = 3, bool sci = false) {
    std::ostringstream s;
    if (sci) s << std::scientific;
    s << std::setprecision(precision) << v;
    return s.str();
}

// ---------------------------------------------------------------- options and inputs

/** Checks the options that need no files; fills in the ensemble's default replica count. */
void checkOptions(MDOptions& o) {
    if (o.classical == !o.model.empty()) throw Error("give exactly one of --model FILE and --classical");
    if (o.classical && o.subset) throw Error("--subset applies to --model only");
    if (o.ensemble != "nve" && o.ensemble != "langevin") throw Error("--ensemble must be nve or langevin");
    if (o.replicas < 0) o.replicas = o.nve() ? 10 : 1;
    if (o.replicas < 1) throw Error("--replicas must be at least 1");
    if (o.steps < 1 || o.equilibrationSteps < 0) throw Error("--steps must be positive and --equilibration-steps not negative");
    if (!(o.dtFs > 0) || !std::isfinite(o.dtFs)) throw Error("--dt-fs must be positive");
    if (o.temperature < 0 || !std::isfinite(o.temperature)) throw Error("--temperature must be positive");
    if (o.energyInterval < 1 || o.frameInterval < 1) throw Error("--energy-interval and --frame-interval must be positive");
    if (!o.nve() && o.out.empty()) throw Error("--ensemble langevin needs --out FILE.dcd for the trajectory");
    if (!o.model.empty() && !std::filesystem::exists(o.model)) throw Error("model file '" + o.model + "' does not exist");
    if ((o.phi.size() != 0 && o.phi.size() != 4) || (o.psi.size() != 0 && o.psi.size() != 4))
        throw Error("--phi and --psi take four atom indices each");
}

/** Alanine dipeptide's phi/psi atoms (Physics.h) if the molecule is alanine dipeptide in the order of
 *  data/alanine-dipeptide.pdb (checked by atom name: C-N-CA-C and N-CA-C-N), else none. */
void defaultDihedrals(const md::Molecule& mol, std::vector<int>& phi, std::vector<int>& psi) {
    const std::vector<int> p(kAlanineDipeptidePhi.begin(), kAlanineDipeptidePhi.end());
    const std::vector<int> q(kAlanineDipeptidePsi.begin(), kAlanineDipeptidePsi.end());
    const std::vector<std::string> pn{"C", "N", "CA", "C"}, qn{"N", "CA", "C", "N"};
    if (mol.numAtoms() != 22) return;
    for (size_t k = 0; k < 4; ++k)
        if (mol.atoms[static_cast<size_t>(p[k])].name != pn[k] || mol.atoms[static_cast<size_t>(q[k])].name != qn[k]) return;
    phi = p, psi = q;
}

/** Checks --phi/--psi against the molecule, or sets alanine dipeptide's. */
void resolveDihedrals(MDOptions& o, const md::Molecule& mol) {
    for (int idx : o.phi)
        if (idx < 0 || static_cast<size_t>(idx) >= mol.numAtoms()) throw Error("--phi atom index out of range");
    for (int idx : o.psi)
        if (idx < 0 || static_cast<size_t>(idx) >= mol.numAtoms()) throw Error("--psi atom index out of range");
    if (o.phi.empty() && o.psi.empty()) defaultDihedrals(mol, o.phi, o.psi);
}

/** Starting configurations of the replicas: the first dataset frames, else the PDB's. */
std::vector<std::vector<OpenMM::Vec3>> startingConfigurations(const MDOptions& o, const md::Molecule& mol) {
    if (o.data.empty()) return {mol.positions};
    const size_t n = mol.numAtoms();
    const md::Dataset ds = md::readH5MD(o.data, static_cast<size_t>(o.replicas));
    if (ds.atoms != n) throw Error("dataset '" + o.data + "' has " + std::to_string(ds.atoms) + " atoms, the molecule " + std::to_string(n));
    if (ds.frames < static_cast<size_t>(o.replicas))
        std::cerr << "md: warning: '" << o.data << "' has only " << ds.frames << " frames; replicas reuse them\n";
    std::vector<std::vector<OpenMM::Vec3>> starts;
    for (size_t f = 0; f < ds.frames; ++f) {
        const double* x = ds.position(f);
        std::vector<OpenMM::Vec3> config(n);
        for (size_t i = 0; i < n; ++i) config[i] = OpenMM::Vec3(x[3 * i], x[3 * i + 1], x[3 * i + 2]);
        starts.push_back(std::move(config));
    }
    return starts;
}

// ---------------------------------------------------------------- potential and engine

SimulatedPotential classicalPotential(const MDOptions& o, const md::Molecule& mol, const std::string& pdbPath) {
    SimulatedPotential p;
    p.system = md::createClassicalSystem(pdbPath).system;
    p.description = "classical amber99sbildn + amber99_obc";
    p.temperature = o.temperature > 0 ? o.temperature : 300.0;
    if (static_cast<size_t>(p.system->getNumParticles()) != mol.numAtoms())
        throw Error("the classical System and the PDB disagree on the number of atoms");
    return p;
}

/** The molecule's particles with the model as their force; refuses a model that leaves atoms without
 *  force unless --subset. */
SimulatedPotential modelPotential(const MDOptions& o, const md::Molecule& mol) {
    SimulatedPotential p;
    p.system = std::make_unique<OpenMM::System>();
    for (double m : md::atomMasses(mol)) p.system->addParticle(m);
    auto force = std::make_unique<FlowForcePlugin::FlowForce>(o.model);  // throws OpenMMException on a bad model
    const size_t n = mol.numAtoms(), covered = static_cast<size_t>(force->getNumParticles());
    if (covered > n)
        throw Error("model '" + o.model + "' describes " + std::to_string(covered) + " particles, the molecule has " + std::to_string(n));
    if (covered < n && !o.subset)
        throw Error("model '" + o.model + "' covers " + std::to_string(covered) + " of the molecule's " + std::to_string(n) +
                    " atoms; the others would feel no force (--subset runs it on the first " + std::to_string(covered) + " atoms anyway)");
    if (o.temperature > 0) force->setTemperature(o.temperature);
    p.temperature = force->getTemperature();
    p.modelAtoms = static_cast<int>(covered);
    p.description = "FlowForce " + o.model + " (" + force->getModelDescription() + ", T = " + fmt(p.temperature, 4) + " K" +
                    (covered < n ? ", first " + std::to_string(covered) + " of " + std::to_string(n) + " atoms" : "") + ")";
    p.system->addForce(force.release());
    return p;
}

SimulatedPotential buildPotential(const MDOptions& o, const md::Molecule& mol, const std::string& pdbPath) {
    md::loadDefaultOpenMMPlugins();
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    return o.classical ? classicalPotential(o, mol, pdbPath) : modelPotential(o, mol);
}

Engine createEngine(const MDOptions& o, const SimulatedPotential& pot) {
    const double dtPs = o.dtFs * 1e-3;
    Engine e;
    e.integrator = std::make_unique<OpenMM::CompoundIntegrator>();
    auto* equilibrate = new OpenMM::LangevinMiddleIntegrator(pot.temperature, o.equilibrationFriction, dtPs);
    equilibrate->setRandomNumberSeed(o.seed);
    e.integrator->addIntegrator(equilibrate);
    if (o.nve()) {
        e.integrator->addIntegrator(new OpenMM::VerletIntegrator(dtPs));
    } else {
        auto* production = new OpenMM::LangevinMiddleIntegrator(pot.temperature, o.friction, dtPs);
        production->setRandomNumberSeed(o.seed + 7919);
        e.integrator->addIntegrator(production);
    }
    e.context = std::make_unique<OpenMM::Context>(*pot.system, *e.integrator, md::getPlatform(o.platform));
    if (o.nve()) {
        e.probeIntegrator = std::make_unique<OpenMM::VerletIntegrator>(dtPs);
        e.probe = std::make_unique<OpenMM::Context>(*pot.system, *e.probeIntegrator, md::getPlatform(o.platform));
    }
    return e;
}

// ---------------------------------------------------------------- one replica

/** Runs k steps, adding their wall time to the replica's. */
void timedSteps(Engine& engine, ReplicaRun& run, long k) {
    const auto t0 = std::chrono::steady_clock::now();
    engine.integrator->step(static_cast<int>(k));
    run.stepSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double totalEnergy(const OpenMM::State& s) { return s.getPotentialEnergy() + s.getKineticEnergy(); }

/** Langevin equilibration (--equilibration-friction) from x0 with fresh velocities; marks the
 *  replica exploded if the energy becomes non-finite or a step fails. */
void equilibrate(const MDOptions& o, Engine& engine, double temperature, const std::vector<OpenMM::Vec3>& x0, ReplicaRun& run) {
    OpenMM::Context& context = *engine.context;
    try {
        context.setPositions(x0);
        context.setTime(0.0);
        context.setStepCount(0);
        context.setVelocitiesToTemperature(temperature, o.seed + run.index);
        engine.integrator->setCurrentIntegrator(0);
        while (run.equilibrated < o.equilibrationSteps) {
            timedSteps(engine, run, std::min<long>(100, o.equilibrationSteps - run.equilibrated));
            run.equilibrated = context.getStepCount();
            if (!std::isfinite(totalEnergy(context.getState(OpenMM::State::Energy)))) {
                run.exploded = true;
                run.reason = "non-finite energy after " + std::to_string(run.equilibrated) + " equilibration steps";
                return;
            }
        }
    } catch (const std::exception& e) {
        run.equilibrated = context.getStepCount();
        run.exploded = true;
        run.reason = "in equilibration step " + std::to_string(run.equilibrated + 1) + ": " + e.what();
    }
}

/** The dihedrals (degrees) of a configuration. */
std::pair<double, double> dihedralsDegrees(const MDOptions& o, const std::vector<OpenMM::Vec3>& x) {
    auto angle = [&](const std::vector<int>& a) {
        auto at = [&](size_t k) { return x[static_cast<size_t>(a[k])]; };
        return md::dihedral(at(0), at(1), at(2), at(3)) * 180.0 / kPi;
    };
    return {angle(o.phi), angle(o.psi)};
}

/** Records a langevin sample: a DCD frame and a CSV row (energy, phi, psi). */
void recordLangevinFrame(const MDOptions& o, const OpenMM::State& s, int replica, md::DCDWriter& dcd, LangevinSeries& series) {
    const auto& x = s.getPositions();
    dcd.write(x);
    series.csv << replica << "," << s.getStepCount() << "," << s.getTime() << "," << s.getPotentialEnergy();
    if (!o.phi.empty()) {
        const auto [phi, psi] = dihedralsDegrees(o, x);
        series.csv << "," << phi << "," << psi;
        series.phi.push_back(phi), series.psi.push_back(psi);
    }
    series.csv << "\n";
}

std::string replicaPath(const std::string& path, int replica, int replicas) {
    if (replicas == 1) return path;
    std::filesystem::path p(path);
    return (p.parent_path() / (p.stem().string() + "-r" + std::to_string(replica) + p.extension().string())).string();
}

/** Production (velocity Verlet or Langevin) after equilibration: energy samples every interval; for
 *  langevin also the trajectory. Stops at a non-finite energy or (NVE) |E - E0| > --explosion-threshold. */
void produce(const MDOptions& o, Engine& engine, ReplicaRun& run, LangevinSeries& series) {
    OpenMM::Context& context = *engine.context;
    context.setTime(0.0);
    context.setStepCount(0);
    engine.integrator->setCurrentIntegrator(1);
    std::unique_ptr<md::DCDWriter> dcd;
    const long interval = o.nve() ? o.energyInterval : o.frameInterval;
    if (!o.nve()) {
        run.dcdPath = replicaPath(o.out, run.index, o.replicas);
        dcd = std::make_unique<md::DCDWriter>(run.dcdPath, context.getSystem().getNumParticles(), static_cast<int>(interval),
                                              static_cast<int>(interval), o.dtFs * 1e-3);
    }
    Progress progress("replica " + std::to_string(run.index + 1) + "/" + std::to_string(o.replicas), o.steps);
    constexpr long kProgressSteps = 100;  // redraw the progress line at most every this many steps
    long shown = 0;
    try {
        const int what = OpenMM::State::Energy | OpenMM::State::Positions;
        const OpenMM::State s0 = context.getState(what);
        run.e0 = totalEnergy(s0);
        std::vector<OpenMM::Vec3> previous = s0.getPositions();
        double ePrevious = run.e0;
        long stepPrevious = 0;
        if (o.nve()) run.t.push_back(0.0), run.etot.push_back(run.e0), run.epot.push_back(s0.getPotentialEnergy());
        while (run.stepsDone < o.steps && !run.exploded) {
            timedSteps(engine, run, std::min(interval, o.steps - run.stepsDone));
            run.stepsDone = context.getStepCount();
            const OpenMM::State s = context.getState(what);
            const double e = totalEnergy(s);
            if (!std::isfinite(e)) {
                run.exploded = true, run.reason = "non-finite energy", run.explodedAt = run.stepsDone;
                break;
            }
            run.t.push_back(s.getTime()), run.etot.push_back(e), run.epot.push_back(s.getPotentialEnergy());
            if (o.nve() && std::abs(e - ePrevious) > run.maxStepChange)
                run.maxStepChange = std::abs(e - ePrevious), run.maxStepAt = stepPrevious, run.xBeforeMaxStep = previous,
                run.xAfterMaxStep = s.getPositions();
            if (o.nve()) previous = s.getPositions(), ePrevious = e, stepPrevious = run.stepsDone;
            if (o.nve() && std::abs(e - run.e0) > o.explosionKJ)
                run.exploded = true, run.reason = "|E - E0| > " + fmt(o.explosionKJ) + " kJ/mol", run.explodedAt = run.stepsDone;
            if (dcd && !run.exploded) recordLangevinFrame(o, s, run.index, *dcd, series);
            if (run.stepsDone - shown >= kProgressSteps || run.stepsDone == o.steps)
                progress.update(shown = run.stepsDone, "E = " + fmt(e, 6) + " kJ/mol");
        }
    } catch (const std::exception& e) {
        run.exploded = true, run.reason = e.what(), run.explodedAt = run.stepsDone;
    }
    progress.finish(run.exploded ? "exploded: " + run.reason : "");
    if (dcd) {
        dcd->close();
        run.dcdFrames = dcd->frames();
    }
}

ReplicaRun runReplica(const MDOptions& o, Engine& engine, double temperature, const std::vector<OpenMM::Vec3>& x0, int index,
                      LangevinSeries& series) {
    ReplicaRun run;
    run.index = index;
    equilibrate(o, engine, temperature, x0, run);
    if (!run.exploded) produce(o, engine, run, series);
    if (engine.probe && !run.xBeforeMaxStep.empty()) {
        // the stiffest vibration of the potential where the largest energy change began or ended (forces by the probe context)
        OpenMM::Context& probe = *engine.probe;
        const OpenMM::System& system = probe.getSystem();
        const int n = system.getNumParticles();
        std::vector<double> masses;
        for (int i = 0; i < n; ++i) masses.push_back(system.getParticleMass(i));
        const PotentialFunction energy = [&](int64_t k, const double* xs, double* us, double* gs) {
            std::vector<OpenMM::Vec3> pos(static_cast<size_t>(n));
            for (int64_t c = 0; c < k; ++c) {
                for (int i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = {xs[c * 3 * n + 3 * i], xs[c * 3 * n + 3 * i + 1], xs[c * 3 * n + 3 * i + 2]};
                probe.setPositions(pos);
                const OpenMM::State st = probe.getState(gs ? OpenMM::State::Energy | OpenMM::State::Forces : OpenMM::State::Energy);
                us[c] = st.getPotentialEnergy();
                for (int i = 0; gs && i < n; ++i)
                    for (int d = 0; d < 3; ++d) gs[c * 3 * n + 3 * i + d] = -st.getForces()[static_cast<size_t>(i)][d];
            }
        };
        auto flat = [](const std::vector<OpenMM::Vec3>& positions) {
            std::vector<double> x;
            for (const auto& v : positions) x.insert(x.end(), {v[0], v[1], v[2]});
            return x;
        };
        const std::vector<double> a = flat(run.xBeforeMaxStep), b = flat(run.xAfterMaxStep);
        for (const auto* x : {&a, &b}) {  // the stiffer of both ends
            try {
                const StiffestMode mode = stiffestMode(energy, x->data(), masses);
                if (mode.omega > run.stiffestAtMaxStep.omega) run.stiffestAtMaxStep = mode;
            } catch (const std::exception&) {
                // outside the support or not finite nearby: that end is not reported
            }
        }
        // the potential along the straight segment between both ends against the cubic that their energies and
        // forces determine: a large difference is structure narrower than the step (a spike the ends do not see)
        try {
            run.offCubic = offCubicAlongSegment(energy, a.data(), b.data(), 3 * n);
        } catch (const std::exception&) {
            // a point of the segment outside the support: not reported
        }
    }
    return run;
}

// ---------------------------------------------------------------- reports

/** NVE figures of a total-energy series, kJ/mol (per DOF where named). */
struct EnergyConservation {
    double std = 0, stdPerDof = 0, drift = 0;  // drift: least-squares slope, kJ/mol/ps
    double maxDeviation = 0;                   // max |E(t) - E(0)|
    double maxStepChange = 0;                  // max |E(t + interval) - E(t)| over consecutive samples
};

EnergyConservation energyConservation(const ReplicaRun& run, int ndof) {
    EnergyConservation c;
    const auto& t = run.t;
    const auto& y = run.etot;
    const size_t n = y.size();
    if (n == 0) return c;
    double mt = 0, my = 0;
    for (size_t i = 0; i < n; ++i) mt += t[i], my += y[i];
    mt /= static_cast<double>(n), my /= static_cast<double>(n);
    double vy = 0, vt = 0, cty = 0;
    for (size_t i = 0; i < n; ++i) {
        vy += (y[i] - my) * (y[i] - my);
        vt += (t[i] - mt) * (t[i] - mt);
        cty += (t[i] - mt) * (y[i] - my);
        c.maxDeviation = std::max(c.maxDeviation, std::abs(y[i] - run.e0));
        if (i > 0) c.maxStepChange = std::max(c.maxStepChange, std::abs(y[i] - y[i - 1]));
    }
    c.std = std::sqrt(vy / static_cast<double>(n));
    c.stdPerDof = c.std / ndof;
    c.drift = vt > 0 ? cty / vt : 0.0;
    return c;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}

/** One replica's JSON report; NVE figures go into `stable` (when it did not explode) for the summary. */
nlohmann::json replicaReport(const MDOptions& o, const ReplicaRun& run, int ndof, std::vector<EnergyConservation>& stable) {
    nlohmann::json rep{{"replica", run.index},
                       {"exploded", run.exploded},
                       {"equilibration_steps_done", run.equilibrated},
                       {"steps_done", run.stepsDone},
                       {"ms_per_step", run.msPerStep()}};
    if (run.exploded) rep["explosion_reason"] = run.reason, rep["exploded_at_step"] = run.explodedAt;
    double meanPotential = 0;
    for (double e : run.epot) meanPotential += e / static_cast<double>(run.epot.size());
    rep["mean_potential_energy_kj_mol"] = meanPotential;
    const std::string name = "  replica " + std::to_string(run.index + 1) + "/" + std::to_string(o.replicas) + ": ";
    if (!o.nve()) {
        rep["dcd"] = run.dcdPath;
        rep["frames"] = run.dcdFrames;
        std::cerr << name << run.dcdFrames << " frames to " << run.dcdPath << ", " << fmt(run.msPerStep(), 3) << " ms/step"
                  << (run.exploded ? "  EXPLODED (" + run.reason + ")" : "") << "\n";
        return rep;
    }
    const EnergyConservation c = energyConservation(run, ndof);
    const bool haveSeries = run.etot.size() >= 2;
    auto figure = [&](double v) { return haveSeries ? nlohmann::json(v) : nlohmann::json(); };
    rep["total_energy_initial_kj_mol"] = figure(run.e0);
    rep["total_energy_std_kj_mol"] = figure(c.std);
    rep["total_energy_std_per_dof_kj_mol"] = figure(c.stdPerDof);
    rep["total_energy_drift_kj_mol_per_ps"] = figure(c.drift);
    rep["total_energy_max_deviation_kj_mol"] = c.maxDeviation;
    rep["total_energy_max_step_change_kj_mol"] = figure(c.maxStepChange);
    const StiffestMode& sm = run.stiffestAtMaxStep;
    if (sm.omega > 0)
        rep["stiffest_mode_at_max_step_change"] = {{"step", run.maxStepAt},
                                                   {"omega_per_ps", sm.omega},
                                                   {"period_fs", sm.periodFs},
                                                   {"omega_dt", sm.omega * o.dtFs * 1e-3},
                                                   {"atoms", sm.atoms()}};
    if (run.offCubic >= 0) rep["potential_off_cubic_along_max_step_change_kj_mol"] = run.offCubic;
    if (!run.xBeforeMaxStep.empty()) {  // where the largest change began, to replay or analyse it
        nlohmann::json x = nlohmann::json::array();
        for (const auto& v : run.xBeforeMaxStep) x.push_back({v[0], v[1], v[2]});
        rep["positions_before_max_step_change_nm"] = x;
        rep["max_step_change_at_step"] = run.maxStepAt;
    }
    if (!run.exploded) stable.push_back(c);
    if (run.blewUpInEquilibration(o.equilibrationSteps))
        std::cerr << name << "EXPLODED in Langevin equilibration after " << run.equilibrated << " steps\n";
    else if (run.exploded)
        std::cerr << name << "EXPLODED after " << run.stepsDone << " NVE steps\n";
    else
        std::cerr << name << "E std/DOF = " << fmt(c.stdPerDof, 3, true) << " kJ/mol, max step change = "
                  << fmt(c.maxStepChange, 3, true) << " kJ/mol"
                  << (sm.omega > 0 ? " (at step " + std::to_string(run.maxStepAt) + ", stiffest mode " + fmt(sm.periodFs, 3) +
                                         " fs, omega dt " + fmt(sm.omega * o.dtFs * 1e-3, 3) + ", atoms " + sm.atoms() +
                                         (run.offCubic >= 0 ? "; U off the step's cubic by " + fmt(run.offCubic, 3) + " kJ/mol" : "") + ")"
                                   : std::string())
                  << ", drift = " << fmt(c.drift, 3, true) << " kJ/mol/ps, " << fmt(run.msPerStep(), 3) << " ms/step\n";
    return rep;
}

/** The NVE summary over the replicas that did not explode, into the report and on stdout. */
void summarizeNVE(const MDOptions& o, const std::vector<EnergyConservation>& stable, const std::string& description, nlohmann::json& report) {
    report["energy_sample_interval_steps"] = o.energyInterval;
    report["explosion_threshold_kj_mol"] = o.explosionKJ;
    std::cout << "md (" << description << "): " << stable.size() << "/" << o.replicas << " replicas stable";
    if (!stable.empty()) {
        std::vector<double> stds, drifts, jumps;
        for (const auto& c : stable) stds.push_back(c.stdPerDof), drifts.push_back(c.drift), jumps.push_back(c.maxStepChange);
        const double jumpMax = *std::max_element(jumps.begin(), jumps.end());
        report["total_energy_std_per_dof_kj_mol_mean"] = mean(stds);
        report["total_energy_std_per_dof_kj_mol_median"] = median(stds);
        report["total_energy_std_per_dof_kj_mol_max"] = *std::max_element(stds.begin(), stds.end());
        report["total_energy_drift_kj_mol_per_ps_mean"] = mean(drifts);
        report["total_energy_max_step_change_kj_mol_median"] = median(jumps);
        report["total_energy_max_step_change_kj_mol_max"] = jumpMax;
        std::cout << ", total-energy std per DOF " << fmt(mean(stds), 3, true) << " kJ/mol (mean; median " << fmt(median(stds), 3, true)
                  << "), drift " << fmt(mean(drifts), 3, true) << " kJ/mol/ps, largest change between samples "
                  << fmt(median(jumps), 3, true) << " kJ/mol (median; max " << fmt(jumpMax, 3, true) << "; a sample every "
                  << o.energyInterval << " step" << (o.energyInterval > 1 ? "s" : "") << ")";
    }
    std::cout << ", " << fmt(report["ms_per_step"].get<double>(), 3) << " ms/step\n";
}

/** The langevin time series (CSV, written atomically) into the report and on stdout. */
void summarizeLangevin(const MDOptions& o, const LangevinSeries& series, int stable, const std::string& description, nlohmann::json& report) {
    const std::filesystem::path out(o.out);
    const std::string csvPath = o.csv.empty() ? (out.parent_path() / (out.stem().string() + "-dihedrals.csv")).string() : o.csv;
    writeFileAtomically(csvPath, series.csv.str());
    report["timeseries_csv"] = csvPath;
    report["frame_interval_steps"] = o.frameInterval;
    if (!o.phi.empty()) report["dihedral_atoms"] = {{"phi", o.phi}, {"psi", o.psi}};
    std::cout << "md (" << description << "): langevin, " << stable << "/" << o.replicas << " replicas stable; trajectory " << o.out
              << (o.replicas > 1 ? " (one per replica)" : "") << ", time series " << csvPath << ", "
              << fmt(report["ms_per_step"].get<double>(), 3) << " ms/step\n";
}

/** Plots of the energy series (and, langevin, the Ramachandran plot). */
void plotReplicas(const MDOptions& o, const std::vector<ReplicaRun>& runs, const LangevinSeries& series, const std::string& title, int ndof) {
    nlohmann::json replicas = nlohmann::json::array();
    for (const auto& r : runs)
        replicas.push_back({{"replica", r.index}, {"time_ps", r.t}, {o.nve() ? "total_energy" : "potential_energy", o.nve() ? r.etot : r.epot},
                            {"exploded", r.exploded}});
    nlohmann::json payload{{"title", title}, {"ndof", ndof}, {"replicas", replicas}};
    if (!o.nve()) payload["phi"] = series.phi, payload["psi"] = series.psi;
    makePlots(o.nve() ? "md_energy" : "md_langevin", payload, o.plots);
}

void runMD(MDOptions o) {
    checkOptions(o);
    if (!o.classical) setThreads(o.threads);
    const std::string pdbPath = o.pdb.empty() ? md::defaultMoleculePDB() : o.pdb;
    const md::Molecule mol = md::readPDB(pdbPath);
    resolveDihedrals(o, mol);
    const auto starts = startingConfigurations(o, mol);
    const SimulatedPotential pot = buildPotential(o, mol, pdbPath);
    const int ndof = std::max<int>(1, 3 * static_cast<int>(mol.numAtoms()) - 6);
    Engine engine = createEngine(o, pot);
    std::cerr << "md: " << pot.description << "; " << mol.numAtoms() << " atoms, " << o.replicas << " replica(s), " << o.ensemble << ", "
              << o.steps << " steps of " << o.dtFs << " fs on " << o.platform << "\n";

    LangevinSeries series;
    series.csv << "replica,step,time_ps,potential_energy_kj_mol" << (o.phi.empty() ? "" : ",phi_deg,psi_deg") << "\n";
    series.csv << std::setprecision(10);
    std::vector<ReplicaRun> runs;
    std::vector<EnergyConservation> stable;
    nlohmann::json replicaReports = nlohmann::json::array();
    double stepSeconds = 0;
    long steps = 0;
    int exploded = 0;
    for (int r = 0; r < o.replicas; ++r) {
        runs.push_back(runReplica(o, engine, pot.temperature, starts[static_cast<size_t>(r) % starts.size()], r, series));
        replicaReports.push_back(replicaReport(o, runs.back(), ndof, stable));
        stepSeconds += runs.back().stepSeconds, steps += runs.back().allSteps(), exploded += runs.back().exploded;
    }

    nlohmann::json report{{"potential", pot.description},
                          {"model", o.model},
                          {"classical", o.classical},
                          {"model_atoms", o.classical ? nlohmann::json() : nlohmann::json(pot.modelAtoms)},
                          {"subset", o.subset},
                          {"pdb", pdbPath},
                          {"data", o.data},
                          {"ensemble", o.ensemble},
                          {"platform", o.platform},
                          {"atoms", mol.numAtoms()},
                          {"degrees_of_freedom", ndof},
                          {"temperature_K", pot.temperature},
                          {"timestep_fs", o.dtFs},
                          {"steps", o.steps},
                          {"equilibration_steps", o.equilibrationSteps},
                          {"replicas", o.replicas},
                          {"replicas_exploded", exploded},
                          {"ms_per_step", steps > 0 ? stepSeconds * 1e3 / static_cast<double>(steps) : 0.0},
                          {"per_replica", replicaReports}};
    if (o.nve())
        summarizeNVE(o, stable, pot.description, report);
    else
        summarizeLangevin(o, series, o.replicas - exploded, pot.description, report);
    if (!o.json.empty()) writeJson(o.json, report);
    if (!o.plots.empty()) plotReplicas(o, runs, series, pot.description, ndof);
}

}  // namespace

void registerMD(CLI::App& app) {
    auto o = std::make_shared<MDOptions>();
    auto* cmd = app.add_subcommand("md", "MD with a FlowForce model or the classical force field: NVE energy conservation or Langevin runs");
    cmd->add_option("--model", o->model, "FlowForce model (.flow or TorchScript) for all of the molecule's atoms");
    cmd->add_flag("--subset", o->subset,
                  "allow a --model that covers fewer atoms than the molecule: it acts on the first n atoms (n: the model's "
                  "particle count) and the other atoms feel no force at all");
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
    cmd->add_option("--energy-interval", o->energyInterval,
                    "nve: steps between total-energy samples (1: every step, so the largest change between samples is per step)")
        ->capture_default_str();
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
