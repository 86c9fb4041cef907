// flowforce data: classical OpenMM MD of a molecule (default: alanine dipeptide, amber99sbildn +
// amber99_obc, 300 K, Langevin 1/ps, 1 fs, no constraints) written to H5MD: positions, forces and
// potential energies every --interval-ps. Resumable: a checkpoint next to the output (<out>.ckpt,
// written atomically after every flushed block of frames) lets the same command continue after an
// interruption without losing or duplicating frames.
#include "Common.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/md/ClassicalSystem.h"
#include "flowforce/md/H5MD.h"
#include "flowforce/md/Molecule.h"
#include "flowforce/md/Platforms.h"

#include <CLI/CLI.hpp>
#include <OpenMM.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace flowforce::cli {

namespace {

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

void runData(const DataOptions& o) {
    // --- validate input
    if (o.out.empty()) throw Error("--out FILE.h5 is required");
    if (!(o.ns > 0) || !std::isfinite(o.ns)) throw Error("--ns must be positive");
    if (!(o.dtFs > 0) || !(o.intervalPs > 0) || !(o.temperature > 0) || !(o.friction >= 0) || !(o.equilibrationPs >= 0))
        throw Error("--dt-fs, --interval-ps and --temperature must be positive; --friction and --equilibration-ps not negative");
    const double dtPs = o.dtFs * 1e-3;
    const double spfReal = o.intervalPs / dtPs;
    const long stepsPerFrame = std::lround(spfReal);
    if (stepsPerFrame < 1 || std::abs(spfReal - static_cast<double>(stepsPerFrame)) > 1e-6 * spfReal)
        throw Error("--interval-ps must be a whole number of time steps (--dt-fs)");
    const long totalFrames = std::lround(o.ns * 1000.0 / o.intervalPs);
    if (totalFrames < 1) throw Error("--ns is shorter than one --interval-ps: no frames to write");
    if (o.flushFrames < 1) throw Error("--flush-frames must be at least 1");
    const auto outDir = std::filesystem::absolute(o.out).parent_path();
    if (!std::filesystem::is_directory(outDir)) throw Error("output folder '" + outDir.string() + "' does not exist");
    if (std::filesystem::is_directory(o.out)) throw Error("--out '" + o.out + "' is a folder");
    const std::string ckptPath = o.out + ".ckpt";

    // --- molecule and System
    const std::string pdbPath = o.pdb.empty() ? md::defaultMoleculePDB() : o.pdb;
    const md::Molecule mol = md::readPDB(pdbPath);
    auto classical = md::createClassicalSystem(pdbPath);
    OpenMM::System& system = *classical.system;
    if (static_cast<size_t>(system.getNumParticles()) != mol.numAtoms())
        throw Error("the System has " + std::to_string(system.getNumParticles()) + " particles but the PDB " +
                    std::to_string(mol.numAtoms()) + " atoms");
    std::vector<double> masses;
    for (int i = 0; i < system.getNumParticles(); ++i) masses.push_back(system.getParticleMass(i));

    // The run's identity: a checkpoint or an existing file only continues the same run.
    std::ostringstream fp;
    fp.precision(17);
    fp << hashHex(readFile(pdbPath)) << " T=" << o.temperature << " gamma=" << o.friction << " dt=" << o.dtFs
       << " interval=" << o.intervalPs << " eq=" << o.equilibrationPs << " seed=" << o.seed << " ff=amber99sbildn.xml,amber99_obc.xml";
    const std::string fingerprint = hashHex(fp.str());

    if (o.overwrite) {
        std::filesystem::remove(ckptPath);
    }
    const bool haveCkpt = std::filesystem::exists(ckptPath);
    if (!haveCkpt && std::filesystem::exists(o.out) && !o.overwrite) {
        // A finished run of the same command is not redone.
        std::string complete, oldFp;
        try {
            complete = md::readH5MDParameter(o.out, "complete");
            oldFp = md::readH5MDParameter(o.out, "fingerprint");
        } catch (const std::exception&) {
        }
        if (complete == "1" && oldFp == fingerprint && static_cast<long>(md::countH5MDFrames(o.out)) == totalFrames) {
            std::cerr << "data: '" << o.out << "' is already complete (" << totalFrames << " frames); nothing to do\n";
            if (!o.json.empty())
                writeJson(o.json, {{"out", o.out}, {"frames", totalFrames}, {"ns", o.ns}, {"already_complete", true}});
            return;
        }
        throw Error("'" + o.out + "' exists and has no checkpoint to continue from (use --overwrite to replace it)");
    }

    // --- OpenMM
    OpenMM::Platform& platform = md::getPlatform(o.platform);
    OpenMM::LangevinMiddleIntegrator integrator(o.temperature, o.friction, dtPs);
    integrator.setRandomNumberSeed(o.seed);
    OpenMM::Context context(system, integrator, platform);

    auto writeRunParameters = [&](md::H5MDWriter& w) {
        w.setParameter("fingerprint", fingerprint);
        w.setParameter("complete", "0");
        w.setParameter("pdb", pdbPath);
        w.setParameter("force_field", "amber99sbildn.xml amber99_obc.xml");
        w.setParameter("temperature_K", o.temperature);
        w.setParameter("friction_per_ps", o.friction);
        w.setParameter("timestep_fs", o.dtFs);
        w.setParameter("interval_ps", o.intervalPs);
        w.setParameter("seed", static_cast<double>(o.seed));
        w.flush();
    };
    InterruptGuard guard;
    std::unique_ptr<md::H5MDWriter> writer;
    long frames = 0, resumedFrom = -1;
    if (haveCkpt) {
        const Checkpoint c = loadCheckpoint(ckptPath);
        if (c.fingerprint != fingerprint)
            throw Error("checkpoint '" + ckptPath + "' belongs to a run with other settings (use --overwrite to start over)");
        if (c.frames > totalFrames)
            throw Error("checkpoint '" + ckptPath + "' holds " + std::to_string(c.frames) + " frames, more than --ns asks for");
        try {
            std::istringstream in(c.openmm);
            context.loadCheckpoint(in);
        } catch (const std::exception& e) {
            throw Error("cannot load checkpoint '" + ckptPath + "': " + e.what() + " (use --overwrite to start over)");
        }
        if (c.frames == 0) {  // interrupted before the first block: the file may be missing
            md::H5MDWriterOptions wo;
            wo.masses = masses;
            writer = std::make_unique<md::H5MDWriter>(o.out, mol.numAtoms(), wo);
            writeRunParameters(*writer);
        } else {
            writer = md::H5MDWriter::openForAppend(o.out, static_cast<size_t>(c.frames));
        }
        frames = resumedFrom = c.frames;
        std::cerr << "data: continuing '" << o.out << "' from frame " << frames << " of " << totalFrames << "\n";
    } else {
        std::cerr << "data: " << mol.numAtoms() << " atoms, " << o.platform << " platform; minimising the energy\n";
        context.setPositions(mol.positions);
        OpenMM::LocalEnergyMinimizer::minimize(context, 1.0);
        context.setVelocitiesToTemperature(o.temperature, o.seed);
        const long eqSteps = std::lround(o.equilibrationPs / dtPs);
        if (eqSteps > 0) {
            Progress progress("equilibration (" + formatNum(o.equilibrationPs) + " ps)", eqSteps);
            const long chunk = std::max<long>(1, std::min<long>(eqSteps / 50 + 1, 10000));
            for (long done = 0; done < eqSteps;) {
                const long n = std::min(chunk, eqSteps - done);
                integrator.step(static_cast<int>(n));
                done += n;
                progress.update(done);
                if (gInterrupted) throw Error("interrupted during equilibration; nothing written");
            }
            progress.finish();
        }
        context.setTime(0.0);
        context.setStepCount(0);
        saveCheckpoint(ckptPath, context, fingerprint, 0);  // before the file: a run killed now continues
        md::H5MDWriterOptions wo;
        wo.masses = masses;
        writer = std::make_unique<md::H5MDWriter>(o.out, mol.numAtoms(), wo);
        writeRunParameters(*writer);
    }

    // --- production
    const size_t n = mol.numAtoms();
    std::vector<double> pos, force, energy, time;
    std::vector<int64_t> steps;
    auto flushBlock = [&]() {
        if (steps.empty()) return;
        writer->append(steps.size(), pos.data(), force.data(), energy.data(), steps.data(), time.data());
        writer->flush();
        frames += static_cast<long>(steps.size());
        saveCheckpoint(ckptPath, context, fingerprint, frames);  // after the frames are on disk
        pos.clear(), force.clear(), energy.clear(), time.clear(), steps.clear();
    };
    Progress progress("production", totalFrames);
    const auto start = std::chrono::steady_clock::now();
    long thisRun = 0;
    const long startFrames = frames;
    while (frames + static_cast<long>(steps.size()) < totalFrames) {
        integrator.step(static_cast<int>(stepsPerFrame));
        const OpenMM::State s = context.getState(OpenMM::State::Positions | OpenMM::State::Forces | OpenMM::State::Energy);
        const double e = s.getPotentialEnergy();
        if (!std::isfinite(e)) throw Error("the simulation became unstable (non-finite energy) at step " + std::to_string(s.getStepCount()));
        for (const auto& p : s.getPositions()) pos.insert(pos.end(), {p[0], p[1], p[2]});
        for (const auto& f : s.getForces()) force.insert(force.end(), {f[0], f[1], f[2]});
        energy.push_back(e);
        steps.push_back(static_cast<int64_t>(s.getStepCount()));
        time.push_back(s.getTime());
        ++thisRun;
        if (o.stopAfterFrames > 0 && thisRun == o.stopAfterFrames) std::raise(SIGINT);
        const long doneNow = frames + static_cast<long>(steps.size());
        if (static_cast<int>(steps.size()) >= o.flushFrames || doneNow == totalFrames || gInterrupted) flushBlock();
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double nsDone = static_cast<double>(doneNow - startFrames) * o.intervalPs * 1e-3;
        progress.update(doneNow, formatNum(wall > 0 ? nsDone / wall * 86400.0 : 0.0) + " ns/day");
        if (gInterrupted)
            throw Error("interrupted after frame " + std::to_string(frames) + " of " + std::to_string(totalFrames) +
                        "; '" + o.out + "' holds them all; rerun the same command to continue");
    }
    flushBlock();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double nsRun = static_cast<double>(frames - startFrames) * o.intervalPs * 1e-3;
    const double nsPerDay = wall > 0 ? nsRun / wall * 86400.0 : 0.0;
    progress.finish(formatNum(nsPerDay) + " ns/day");
    writer->setParameter("complete", "1");
    writer->close();
    std::filesystem::remove(ckptPath);
    std::cerr << "data: wrote " << frames << " frames (" << formatNum(o.ns) << " ns, " << n << " atoms) to " << o.out << "\n";
    if (!o.json.empty()) {
        writeJson(o.json, {{"out", o.out},
                           {"pdb", pdbPath},
                           {"frames", frames},
                           {"atoms", n},
                           {"ns", o.ns},
                           {"interval_ps", o.intervalPs},
                           {"timestep_fs", o.dtFs},
                           {"temperature_K", o.temperature},
                           {"seed", o.seed},
                           {"platform", o.platform},
                           {"resumed_from_frame", resumedFrom},
                           {"production_wall_s", wall},
                           {"ns_simulated_this_run", nsRun},
                           {"ns_per_day", nsPerDay}});
    }
}

}  // namespace

void registerData(CLI::App& app) {
    auto o = std::make_shared<DataOptions>();
    auto* cmd = app.add_subcommand("data", "Classical OpenMM MD of a molecule to an H5MD dataset (positions, forces, energies)");
    cmd->add_option("--out", o->out, "output H5MD file (.h5); <out>.ckpt holds the checkpoint while running")->required();
    cmd->add_option("--ns", o->ns, "production length in ns")->capture_default_str();
    cmd->add_option("--interval-ps", o->intervalPs, "a frame every this many ps")->capture_default_str();
    cmd->add_option("--equilibration-ps", o->equilibrationPs, "Langevin equilibration after minimisation, ps")->capture_default_str();
    cmd->add_option("--seed", o->seed, "random seed (velocities and Langevin noise)")->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "temperature in K")->capture_default_str();
    cmd->add_option("--friction", o->friction, "Langevin friction in 1/ps")->capture_default_str();
    cmd->add_option("--dt-fs", o->dtFs, "time step in fs")->capture_default_str();
    cmd->add_option("--pdb", o->pdb, "molecule (PDB with hydrogens; default: the built-in alanine dipeptide)");
    cmd->add_option("--platform", o->platform, "OpenMM platform (Reference is fastest for small molecules)")->capture_default_str();
    cmd->add_option("--flush-frames", o->flushFrames, "frames per written block (and checkpoint)")->capture_default_str();
    cmd->add_flag("--overwrite", o->overwrite, "replace an existing output instead of continuing or refusing");
    cmd->add_option("--json", o->json, "write the run's figures as JSON to this file");
    cmd->add_option("--stop-after-frames", o->stopAfterFrames, "testing aid: behave as if interrupted after N frames")
        ->group("");
    cmd->callback([o]() {
        try {
            runData(*o);
        } catch (const OpenMM::OpenMMException& e) {
            throw Error(std::string("OpenMM: ") + e.what());
        } catch (const md::MDError& e) {
            throw Error(e.what());
        }
    });
}

}  // namespace flowforce::cli
