// flowforce data: classical OpenMM MD of a molecule (default: alanine dipeptide, amber99sbildn +
// amber99_obc, 300 K, Langevin 1/ps, 1 fs, no constraints) written to H5MD: positions, forces and
// potential energies every --interval-ps.
//
// Resumable, and safe against a kill at any moment (SIGKILL included): rerunning the same command
// continues the run and ends with the very file an uninterrupted run writes. Three files carry the run:
//   <out>.frames  the frame journal: frames appended block by block, each block on disk (fsync)
//                 before the checkpoint that counts it;
//   <out>.ckpt    the checkpoint (OpenMM state and the number of frames it covers), replaced
//                 atomically after every block: the authority on how far the run got. A rerun keeps
//                 exactly the journal frames it counts and drops any later ones;
//   <out>         the H5MD file, built in memory from the journal and saved atomically at the end (and
//                 on an interruption by SIGINT/SIGTERM, marked incomplete): it is never half-written.
// The journal is locked while a run holds it, so a second run of the same output refuses to start.
#include "Common.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/md/ClassicalSystem.h"
#include "flowforce/md/FrameJournal.h"
#include "flowforce/md/H5MD.h"
#include "flowforce/md/Molecule.h"
#include "flowforce/md/Platforms.h"

#include <CLI/CLI.hpp>
#include <OpenMM.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace flowforce::cli {

namespace {

namespace fs = std::filesystem;

struct DataOptions {
    double ns = 1.0;
    double intervalPs = 1.0;
    double equilibrationPs = 100.0;
    double temperature = 300.0;
    double friction = 1.0;  // 1/ps
    double dtFs = 1.0;
    int seed = 1;
    std::string out, pdb, platform = "Reference", json;
    int flushFrames = 10;
    long stopAfterFrames = 0;  // testing aid: interrupt (SIGINT) after this many frames of this invocation
    bool overwrite = false;
};

/** What the options ask for, checked: time step, frames and the run's files. */
struct RunPlan {
    double dtPs = 0;
    long stepsPerFrame = 0, totalFrames = 0;
    std::string checkpoint, journal;  // <out>.ckpt, <out>.frames
};

std::atomic<bool> gInterrupted{false};
extern "C" void onInterrupt(int) { gInterrupted = true; }

/** Restores the previous SIGINT/SIGTERM handlers when it goes out of scope. */
struct InterruptGuard {
    using Handler = void (*)(int);
    Handler oldInt, oldTerm;
    InterruptGuard() {
        gInterrupted = false;
        oldInt = std::signal(SIGINT, onInterrupt);
        oldTerm = std::signal(SIGTERM, onInterrupt);
    }
    ~InterruptGuard() {
        std::signal(SIGINT, oldInt);
        std::signal(SIGTERM, oldTerm);
    }
};

constexpr const char* kCheckpointMagic = "FLOWFORCE-DATA-CHECKPOINT-1\n";

struct Checkpoint {
    std::string fingerprint;
    long frames = 0;
    std::string openmm;  // Context::createCheckpoint bytes
};

void saveCheckpoint(const std::string& path, OpenMM::Context& context, const std::string& fingerprint, long frames) {
    std::ostringstream state;
    context.createCheckpoint(state);
    const nlohmann::json header{{"fingerprint", fingerprint}, {"frames", frames}};
    writeFileAtomically(path, std::string(kCheckpointMagic) + header.dump() + "\n" + state.str());
}

Checkpoint loadCheckpoint(const std::string& path) {
    const std::string bytes = readFile(path);
    const std::string magic = kCheckpointMagic;
    const size_t eol = bytes.find('\n', magic.size());
    if (bytes.compare(0, magic.size(), magic) != 0 || eol == std::string::npos)
        throw Error("'" + path + "' is not a flowforce data checkpoint (delete it to start over)");
    Checkpoint c;
    try {
        auto header = nlohmann::json::parse(bytes.substr(magic.size(), eol - magic.size()));
        c.fingerprint = header.at("fingerprint").get<std::string>();
        c.frames = header.at("frames").get<long>();
    } catch (const std::exception&) {
        throw Error("checkpoint '" + path + "' is damaged (delete it to start over)");
    }
    c.openmm = bytes.substr(eol + 1);
    return c;
}

std::string formatNum(double v, int precision = 4) {
    std::ostringstream s;
    s.precision(precision);
    s << v;
    return s.str();
}

RunPlan checkOptions(const DataOptions& o) {
    if (o.out.empty()) throw Error("--out FILE.h5 is required");
    if (!(o.ns > 0) || !std::isfinite(o.ns)) throw Error("--ns must be positive");
    if (!(o.dtFs > 0) || !(o.intervalPs > 0) || !(o.temperature > 0) || !(o.friction >= 0) || !(o.equilibrationPs >= 0))
        throw Error("--dt-fs, --interval-ps and --temperature must be positive; --friction and --equilibration-ps not negative");
    RunPlan plan;
    plan.dtPs = o.dtFs * 1e-3;
    const double spfReal = o.intervalPs / plan.dtPs;
    plan.stepsPerFrame = std::lround(spfReal);
    if (plan.stepsPerFrame < 1 || std::abs(spfReal - static_cast<double>(plan.stepsPerFrame)) > 1e-6 * spfReal)
        throw Error("--interval-ps must be a whole number of time steps (--dt-fs)");
    plan.totalFrames = std::lround(o.ns * 1000.0 / o.intervalPs);
    if (plan.totalFrames < 1) throw Error("--ns is shorter than one --interval-ps: no frames to write");
    if (o.flushFrames < 1) throw Error("--flush-frames must be at least 1");
    const auto outDir = fs::absolute(o.out).parent_path();
    if (!fs::is_directory(outDir)) throw Error("output folder '" + outDir.string() + "' does not exist");
    if (fs::is_directory(o.out)) throw Error("--out '" + o.out + "' is a folder");
    plan.checkpoint = o.out + ".ckpt";
    plan.journal = o.out + ".frames";
    return plan;
}

/** The run's identity: a checkpoint or an existing file only continues the same run. */
std::string runFingerprint(const DataOptions& o, const std::string& pdbPath) {
    std::ostringstream fp;
    fp.precision(17);
    fp << hashHex(readFile(pdbPath)) << " T=" << o.temperature << " gamma=" << o.friction << " dt=" << o.dtFs
       << " interval=" << o.intervalPs << " eq=" << o.equilibrationPs << " seed=" << o.seed << " ff=amber99sbildn.xml,amber99_obc.xml";
    return hashHex(fp.str());
}

/** Deletes the temporaries writeFileAtomically leaves when a run is killed while it writes path
 *  (<path>.tmp.<pid>). Only call it while holding the run's journal lock. */
void removeStaleTemporaries(const std::string& path) {
    const fs::path p = fs::absolute(path);
    const std::string prefix = p.filename().string() + ".tmp.";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(p.parent_path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
            name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
            fs::remove(entry.path(), ec);
    }
}

/** Whether out is the finished file of this run. */
bool alreadyComplete(const std::string& out, const std::string& fingerprint, long totalFrames) {
    try {
        return md::readH5MDParameter(out, "complete") == "1" && md::readH5MDParameter(out, "fingerprint") == fingerprint &&
               static_cast<long>(md::countH5MDFrames(out)) == totalFrames;
    } catch (const std::exception&) {
        return false;
    }
}

/** The OpenMM side of the run: System, integrator and context. */
struct Simulation {
    std::unique_ptr<OpenMM::System> system;
    std::unique_ptr<OpenMM::LangevinMiddleIntegrator> integrator;
    std::unique_ptr<OpenMM::Context> context;
    std::vector<double> masses;  // Da
};

Simulation createSimulation(const DataOptions& o, const RunPlan& plan, const std::string& pdbPath, size_t atoms) {
    Simulation sim;
    sim.system = md::createClassicalSystem(pdbPath).system;
    if (static_cast<size_t>(sim.system->getNumParticles()) != atoms)
        throw Error("the System has " + std::to_string(sim.system->getNumParticles()) + " particles but the PDB " +
                    std::to_string(atoms) + " atoms");
    for (int i = 0; i < sim.system->getNumParticles(); ++i) sim.masses.push_back(sim.system->getParticleMass(i));
    sim.integrator = std::make_unique<OpenMM::LangevinMiddleIntegrator>(o.temperature, o.friction, plan.dtPs);
    sim.integrator->setRandomNumberSeed(o.seed);
    sim.context = std::make_unique<OpenMM::Context>(*sim.system, *sim.integrator, md::getPlatform(o.platform));
    return sim;
}

/** A new run: minimisation, Langevin equilibration, step 0 of production in the checkpoint. */
void startRun(const DataOptions& o, const RunPlan& plan, const md::Molecule& mol, Simulation& sim, const std::string& fingerprint) {
    std::cerr << "data: " << mol.numAtoms() << " atoms, " << o.platform << " platform; minimising the energy\n";
    OpenMM::Context& context = *sim.context;
    context.setPositions(mol.positions);
    OpenMM::LocalEnergyMinimizer::minimize(context, 1.0);
    context.setVelocitiesToTemperature(o.temperature, o.seed);
    const long eqSteps = std::lround(o.equilibrationPs / plan.dtPs);
    if (eqSteps > 0) {
        Progress progress("equilibration (" + formatNum(o.equilibrationPs) + " ps)", eqSteps);
        const long chunk = std::max<long>(1, std::min<long>(eqSteps / 50 + 1, 10000));
        for (long done = 0; done < eqSteps;) {
            const long n = std::min(chunk, eqSteps - done);
            sim.integrator->step(static_cast<int>(n));
            done += n;
            progress.update(done);
            if (gInterrupted) throw Error("interrupted during equilibration; rerun the same command to start again");
        }
        progress.finish();
    }
    context.setTime(0.0);
    context.setStepCount(0);
    saveCheckpoint(plan.checkpoint, context, fingerprint, 0);
}

/** Continues a run from its checkpoint; returns the number of frames it covers. */
long resumeRun(const DataOptions& o, const RunPlan& plan, Simulation& sim, md::FrameJournal& journal, const std::string& fingerprint) {
    const Checkpoint c = loadCheckpoint(plan.checkpoint);
    if (c.fingerprint != fingerprint)
        throw Error("checkpoint '" + plan.checkpoint + "' belongs to a run with other settings (use --overwrite to start over)");
    if (c.frames > plan.totalFrames)
        throw Error("checkpoint '" + plan.checkpoint + "' holds " + std::to_string(c.frames) + " frames, more than --ns asks for");
    try {
        std::istringstream in(c.openmm);
        sim.context->loadCheckpoint(in);
    } catch (const std::exception& e) {
        throw Error("cannot load checkpoint '" + plan.checkpoint + "': " + e.what() + " (use --overwrite to start over)");
    }
    try {
        journal.keep(static_cast<size_t>(c.frames));  // frames written after the checkpoint are dropped
    } catch (const md::MDError& e) {
        throw Error(std::string(e.what()) + " (use --overwrite to start over)");
    }
    std::cerr << "data: continuing '" << o.out << "' from frame " << c.frames << " of " << plan.totalFrames << "\n";
    return c.frames;
}

/** Saves the journal's frames as the H5MD file out (atomically), marked complete or not. */
void saveDataset(const DataOptions& o, const std::string& pdbPath, const std::string& fingerprint, const std::vector<double>& masses,
                 const md::FrameJournal& journal, bool complete) {
    md::H5MDWriterOptions wo;
    wo.masses = masses;
    md::H5MDWriter w(masses.size(), wo);
    const md::FrameBlock frames = journal.read();
    w.append(frames.size(), frames.positions.data(), frames.forces.data(), frames.energies.data(), frames.steps.data(),
             frames.times.data());
    w.setParameter("fingerprint", fingerprint);
    w.setParameter("complete", complete ? "1" : "0");
    w.setParameter("pdb", pdbPath);
    w.setParameter("force_field", "amber99sbildn.xml amber99_obc.xml");
    w.setParameter("temperature_K", o.temperature);
    w.setParameter("friction_per_ps", o.friction);
    w.setParameter("timestep_fs", o.dtFs);
    w.setParameter("interval_ps", o.intervalPs);
    w.setParameter("seed", static_cast<double>(o.seed));
    w.save(o.out);
}

struct Production {
    double wallSeconds = 0;
    bool interrupted = false;  // by SIGINT/SIGTERM; every frame made is in the journal and the checkpoint
};

/** Production from the journal's last frame to the end or an interruption: blocks of frames to the
 *  journal, each followed by the checkpoint that counts it. */
Production produce(const DataOptions& o, const RunPlan& plan, Simulation& sim, md::FrameJournal& journal, const std::string& fingerprint) {
    OpenMM::Context& context = *sim.context;
    md::FrameBlock block;
    auto flushBlock = [&]() {
        if (block.size() == 0) return;
        journal.append(block);  // on disk before the checkpoint that counts it
        saveCheckpoint(plan.checkpoint, context, fingerprint, static_cast<long>(journal.frames()));
        block.clear();
    };
    Progress progress("production", plan.totalFrames);
    const auto start = std::chrono::steady_clock::now();
    const size_t startFrames = journal.frames();
    auto nsPerDay = [&]() {
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double ns = static_cast<double>(journal.frames() + block.size() - startFrames) * o.intervalPs * 1e-3;
        return formatNum(wall > 0 ? ns / wall * 86400.0 : 0.0) + " ns/day";
    };
    long thisRun = 0;
    while (static_cast<long>(journal.frames() + block.size()) < plan.totalFrames && !gInterrupted) {
        sim.integrator->step(static_cast<int>(plan.stepsPerFrame));
        const OpenMM::State s = context.getState(OpenMM::State::Positions | OpenMM::State::Forces | OpenMM::State::Energy);
        const double e = s.getPotentialEnergy();
        if (!std::isfinite(e)) throw Error("the simulation became unstable (non-finite energy) at step " + std::to_string(s.getStepCount()));
        block.add(static_cast<int64_t>(s.getStepCount()), s.getTime(), e, s.getPositions(), s.getForces());
        if (o.stopAfterFrames > 0 && ++thisRun == o.stopAfterFrames) std::raise(SIGINT);
        const long doneNow = static_cast<long>(journal.frames() + block.size());
        progress.update(doneNow, nsPerDay());
        if (static_cast<int>(block.size()) >= o.flushFrames || doneNow == plan.totalFrames) flushBlock();
    }
    flushBlock();  // what an interruption left in the block
    progress.finish(nsPerDay());
    const bool interrupted = static_cast<long>(journal.frames()) < plan.totalFrames;
    return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), interrupted};
}

/** The run once its journal is locked: nothing to do, a new run or the continuation of one. */
void runLocked(const DataOptions& o, const RunPlan& plan, const md::Molecule& mol, const std::string& pdbPath,
               const std::string& fingerprint, md::FrameJournal& journal) {
    removeStaleTemporaries(o.out);
    removeStaleTemporaries(plan.checkpoint);
    if (o.overwrite) fs::remove(plan.checkpoint);
    const bool haveCheckpoint = fs::exists(plan.checkpoint);
    if (!haveCheckpoint && fs::exists(o.out) && !o.overwrite) {
        if (!alreadyComplete(o.out, fingerprint, plan.totalFrames))
            throw Error("'" + o.out + "' exists and has no checkpoint to continue from (use --overwrite to replace it)");
        journal.remove();
        std::cerr << "data: '" << o.out << "' is already complete (" << plan.totalFrames << " frames); nothing to do\n";
        if (!o.json.empty())
            writeJson(o.json, {{"out", o.out}, {"frames", plan.totalFrames}, {"ns", o.ns}, {"already_complete", true}});
        return;
    }

    Simulation sim = createSimulation(o, plan, pdbPath, mol.numAtoms());
    InterruptGuard guard;
    long resumedFrom = -1;
    if (haveCheckpoint) {
        resumedFrom = resumeRun(o, plan, sim, journal, fingerprint);
    } else {
        journal.reset();  // before the checkpoint: a run killed in between starts over
        startRun(o, plan, mol, sim, fingerprint);
    }
    const long startFrames = static_cast<long>(journal.frames());
    const Production run = produce(o, plan, sim, journal, fingerprint);
    saveDataset(o, pdbPath, fingerprint, sim.masses, journal, !run.interrupted);
    const long frames = static_cast<long>(journal.frames());
    if (run.interrupted)
        throw Error("interrupted after frame " + std::to_string(frames) + " of " + std::to_string(plan.totalFrames) + "; '" + o.out +
                    "' holds them all; rerun the same command to continue");
    fs::remove(plan.checkpoint);  // then the journal: a checkpoint never outlives its frames
    journal.remove();

    const double nsRun = static_cast<double>(frames - startFrames) * o.intervalPs * 1e-3;
    const double nsPerDay = run.wallSeconds > 0 ? nsRun / run.wallSeconds * 86400.0 : 0.0;
    std::cerr << "data: wrote " << frames << " frames (" << formatNum(o.ns) << " ns, " << mol.numAtoms() << " atoms) to " << o.out << "\n";
    if (!o.json.empty()) {
        writeJson(o.json, {{"out", o.out},
                           {"pdb", pdbPath},
                           {"frames", frames},
                           {"atoms", mol.numAtoms()},
                           {"ns", o.ns},
                           {"interval_ps", o.intervalPs},
                           {"timestep_fs", o.dtFs},
                           {"temperature_K", o.temperature},
                           {"seed", o.seed},
                           {"platform", o.platform},
                           {"resumed_from_frame", resumedFrom},
                           {"production_wall_s", run.wallSeconds},
                           {"ns_simulated_this_run", nsRun},
                           {"ns_per_day", nsPerDay}});
    }
}

void runData(const DataOptions& o) {
    const RunPlan plan = checkOptions(o);
    const std::string pdbPath = o.pdb.empty() ? md::defaultMoleculePDB() : o.pdb;
    const md::Molecule mol = md::readPDB(pdbPath);
    const std::string fingerprint = runFingerprint(o, pdbPath);
    md::FrameJournal journal(plan.journal, mol.numAtoms(), fingerprint);  // locks the run's files
    try {
        runLocked(o, plan, mol, pdbPath, fingerprint, journal);
    } catch (...) {
        std::error_code ec;
        if (!fs::exists(plan.checkpoint, ec)) fs::remove(plan.journal, ec);  // frames no checkpoint counts are worthless
        throw;
    }
}

}  // namespace

void registerData(CLI::App& app) {
    auto o = std::make_shared<DataOptions>();
    auto* cmd = app.add_subcommand("data", "Classical OpenMM MD of a molecule to an H5MD dataset (positions, forces, energies)");
    cmd->add_option("--out", o->out,
                    "output H5MD file (.h5), written when the run ends; <out>.frames and <out>.ckpt hold the run while it is "
                    "unfinished (rerun the same command to continue it, even after a kill)")
        ->required();
    cmd->add_option("--ns", o->ns, "production length in ns")->capture_default_str();
    cmd->add_option("--interval-ps", o->intervalPs, "a frame every this many ps")->capture_default_str();
    cmd->add_option("--equilibration-ps", o->equilibrationPs, "Langevin equilibration after minimisation, ps")->capture_default_str();
    cmd->add_option("--seed", o->seed, "random seed (velocities and Langevin noise)")->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "temperature in K")->capture_default_str();
    cmd->add_option("--friction", o->friction, "Langevin friction in 1/ps")->capture_default_str();
    cmd->add_option("--dt-fs", o->dtFs, "time step in fs")->capture_default_str();
    cmd->add_option("--pdb", o->pdb, "molecule (PDB with hydrogens; default: the built-in alanine dipeptide)");
    cmd->add_option("--platform", o->platform, "OpenMM platform (Reference is fastest for small molecules)")->capture_default_str();
    cmd->add_option("--flush-frames", o->flushFrames, "frames per block written to <out>.frames (and checkpoint)")->capture_default_str();
    cmd->add_flag("--overwrite", o->overwrite, "start over: replace an existing output and ignore a checkpoint");
    cmd->add_option("--json", o->json, "write the run's figures as JSON to this file");
    cmd->add_option("--stop-after-frames", o->stopAfterFrames, "testing aid: behave as if interrupted after N frames")
        ->group("");
    cmd->callback([o]() {
        try {
            runData(*o);
        } catch (const OpenMM::OpenMMException& e) {
            throw Error(std::string("OpenMM: ") + e.what());
        }
    });
}

}  // namespace flowforce::cli
