// flowforce bench: performance figures.
//   bench inverse: the paper's Table SI-1: a rational-quadratic spline coupling (conditioner with `dim`
//     inputs and 64 hidden units) inverted analytically and by multi-bin bisection on the same transform.
//   bench force: the cost of a flow force: native evaluator (double, single), LibTorch autograd, the
//     weight-streaming limit of the same layout, and MD steps with the flow and the classical force field.
#include "Common.h"
#include "Molecular.h"

#include "FlowForce.h"
#include "ReferenceFlowForceKernels.h"

#include "flowforce/flow/Flow.h"
#include "flowforce/flow/Inversion.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/flow/NativeFlow.h"
#include "flowforce/md/Molecule.h"
#include "flowforce/md/Platforms.h"

#include <CLI/CLI.hpp>
#include <OpenMM.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>

namespace flowforce::cli {

namespace {

struct BenchInverseOptions {
    std::vector<int64_t> dims{2, 8, 32, 128, 512, 2048};
    std::vector<int64_t> bins{2, 4, 8, 16, 32, 64, 128, 256};
    int64_t batch = 64;
    int64_t splineBins = 8;
    double tolerance = 1e-6;
    double minSeconds = 0.3;
    int64_t maxGridElements = 20'000'000;  // skip bin counts whose grid would not fit comfortably
    int threads = 0;
    std::string json;
    std::string dtype = "float32";
};

/** Median wall time of fn in milliseconds over repeated calls (at least 3, about minSeconds in all). */
template <class Fn>
double timeMs(Fn&& fn, double minSeconds) {
    fn();  // warm-up
    std::vector<double> times;
    const auto start = std::chrono::steady_clock::now();
    while (times.size() < 3 || (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < minSeconds &&
                                times.size() < 200)) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
    return times[times.size() / 2];
}

void runBenchInverse(const BenchInverseOptions& o) {
    setThreads(o.threads);
    const auto dtype = o.dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
    std::cerr << "bench inverse: spline coupling (" << o.splineBins << " bins), conditioner dim -> 64 -> 64, batch "
              << o.batch << ", " << o.dtype << ", bisection tolerance " << o.tolerance << ", " << at::get_num_threads()
              << " thread(s)\n";
    nlohmann::json rows = nlohmann::json::array();
    std::cout << "  dim | inversion: K_opt  analytic [ms]  root-finding [ms]  factor | inversion+backward: K_opt  analytic [ms]  root-finding [ms]  factor\n";
    for (int64_t dim : o.dims) {
        torch::manual_seed(1);
        SplineOptions so;
        so.bins = o.splineBins;
        RationalQuadraticSplineTransform spline(false, so);
        Conditioner conditioner(std::vector<bool>(static_cast<size_t>(dim), false), dim * spline.numParams(), {64, 64},
                                Activation::SiLU);
        conditioner.to(dtype);
        auto xc = torch::rand({o.batch, dim}, dtype);
        auto y = torch::rand({o.batch, dim}, dtype);
        auto params = [&] { return conditioner.forward(xc).view({o.batch, dim, spline.numParams()}); };

        nlohmann::json row{{"dim", dim}};
        {
            torch::NoGradGuard ng;
            row["forward_ms"] = timeMs([&] { spline.forward(y, params()); }, o.minSeconds);
        }
        auto inverseTime = [&](bool backward, int64_t K) {
            auto run = [&] {
                torch::Tensor x, ld;
                if (K == 0) {
                    auto r = spline.inverse(y, params());
                    x = r.out, ld = r.logdet;
                } else {
                    auto r = spline.inverseByBisection(y, params());
                    x = r.out, ld = r.logdet;
                }
                if (backward) (x.sum() + ld.sum()).backward();
            };
            if (!backward) {
                torch::NoGradGuard ng;
                return timeMs(run, o.minSeconds);
            }
            return timeMs(run, o.minSeconds);
        };
        for (bool backward : {false, true}) {
            const std::string key = backward ? "inverse_backward" : "inverse";
            nlohmann::json entry;
            entry["analytic_ms"] = inverseTime(backward, 0);
            nlohmann::json perK = nlohmann::json::object();
            double best = 1e300;
            int64_t bestK = 0;
            for (int64_t K : o.bins) {
                if (o.batch * dim * (K - 1) > o.maxGridElements) continue;
                spline.inversion = {K, o.tolerance};
                const double t = inverseTime(backward, K);
                perK[std::to_string(K)] = t;
                if (t < best) best = t, bestK = K;
            }
            entry["root_finding_ms"] = best;
            entry["k_opt"] = bestK;
            entry["factor"] = best / entry["analytic_ms"].get<double>();
            entry["root_finding_ms_by_bins"] = perK;
            row[key] = entry;
        }
        const auto& a = row["inverse"];
        const auto& b = row["inverse_backward"];
        std::cout << std::fixed << std::setw(5) << dim << " | " << std::setw(16) << a["k_opt"].get<int64_t>() << std::setw(15)
                  << std::setprecision(3) << a["analytic_ms"].get<double>() << std::setw(19) << a["root_finding_ms"].get<double>()
                  << std::setw(8) << std::setprecision(1) << a["factor"].get<double>() << " | " << std::setw(25)
                  << b["k_opt"].get<int64_t>() << std::setw(15) << std::setprecision(3) << b["analytic_ms"].get<double>()
                  << std::setw(19) << b["root_finding_ms"].get<double>() << std::setw(8) << std::setprecision(1)
                  << b["factor"].get<double>() << std::endl;
        rows.push_back(row);
    }
    if (!o.json.empty()) {
        writeJson(o.json, {{"benchmark", "inverse"},
                           {"description", "RQ-spline coupling inverted analytically vs by multi-bin bisection (paper Table SI-1)"},
                           {"batch", o.batch},
                           {"spline_bins", o.splineBins},
                           {"tolerance", o.tolerance},
                           {"dtype", o.dtype},
                           {"threads", at::get_num_threads()},
                           {"rows", rows}});
        std::cout << "  report: " << o.json << "\n";
    }
}


// ---------------------------------------------------------------------------------------------
// bench force

struct BenchForceOptions {
    MoleculeOptions molecule;
    std::string model, json;
    int64_t batch = 64;
    double minSeconds = 1.0;
    long mdSteps = 3000;
    int threads = 1;
    uint64_t seed = 1;
};

/** Median and minimum time per call (microseconds) of fn(), over blocks of calls for about minSeconds. */
struct Timing {
    double median = 0, minimum = 0;
};
template <class Fn>
Timing timeCalls(Fn&& fn, double minSeconds, int callsPerBlock) {
    for (int i = 0; i < callsPerBlock; ++i) fn();  // warm-up: caches, first-call allocations
    std::vector<double> perCall;
    const auto start = std::chrono::steady_clock::now();
    while (perCall.size() < 5 ||
           (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < minSeconds && perCall.size() < 100000)) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < callsPerBlock; ++i) fn();
        perCall.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / callsPerBlock);
    }
    std::sort(perCall.begin(), perCall.end());
    return {perCall[perCall.size() / 2], perCall.front()};
}

/** Microseconds per MD step (velocity Verlet, 1 fs) of a System from the PDB positions at 300 K; 0 if the run fails. */
double mdStepMicroseconds(const OpenMM::System& system, const std::vector<OpenMM::Vec3>& positions, const std::string& platform,
                          int threads, long steps, std::string& error) {
    try {
        OpenMM::VerletIntegrator integrator(0.001);
        std::map<std::string, std::string> properties;
        if (platform == "CPU") properties["Threads"] = std::to_string(threads);
        OpenMM::Context context(system, integrator, md::getPlatform(platform), properties);
        context.setPositions(positions);
        context.setVelocitiesToTemperature(300.0, 1);
        integrator.step(50);  // warm-up
        const long chunk = 100;
        std::vector<double> perStep;
        for (long done = 0; done < steps; done += chunk) {
            const auto t0 = std::chrono::steady_clock::now();
            integrator.step(static_cast<int>(chunk));
            perStep.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / chunk);
        }
        std::sort(perStep.begin(), perStep.end());
        return perStep[perStep.size() / 2];
    } catch (const std::exception& e) {
        error = e.what();
        return 0.0;
    }
}

void runBenchForce(const BenchForceOptions& o) {
    if (o.batch < 1 || o.mdSteps < 100 || !(o.minSeconds > 0)) throw Error("--batch must be positive, --md-steps >= 100, --min-seconds > 0");
    // LibTorch computes on one thread until its own figure (last): an OpenMP team left spinning after
    // LibTorch work would take a core from the native evaluator's and OpenMM's threads
    setThreads(1);
    // --- the model and configurations
    ModelFile file;
    std::string source;
    if (o.model.empty()) {
        auto m = buildMolecularModel(o.molecule, [&] {
            ModelChoice c;
            c.seed = o.seed;
            return c;
        }());
        file = toModelFile(*m.flow, m.info);
        source = "untrained smooth Boltzmann generator (paper layout, seed " + std::to_string(o.seed) + ")";
    } else {
        try {
            file = readModelFile(o.model);
        } catch (const std::exception& e) {
            throw Error(e.what());
        }
        source = o.model;
    }
    std::shared_ptr<const NativeFlow> native;
    std::shared_ptr<Flow> flow;
    try {
        native = NativeFlow::compile(file, source);
        flow = buildFlow(file, source);
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    if (!native->numParticles()) throw Error(source + ": not a molecular model");
    const int n = native->numParticles();
    const md::Molecule mol = md::readPDB(moleculePDB(o.molecule));
    if (static_cast<int>(mol.numAtoms()) != n)
        throw Error("the model describes " + std::to_string(n) + " atoms but the molecule has " + std::to_string(mol.numAtoms()));
    std::vector<double> x1;
    for (const auto& p : mol.positions) x1.insert(x1.end(), {p[0], p[1], p[2]});
    std::mt19937_64 rng(o.seed);
    std::normal_distribution<double> noise(0.0, 0.003);
    std::vector<double> xB;
    for (int64_t b = 0; b < o.batch; ++b)
        for (double v : x1) xB.push_back(v + noise(rng));
    const int64_t D = 3 * n;
    std::cerr << "bench force: " << source << ", " << native->parameterCount() << " weights, " << n << " atoms; " << o.threads
              << " thread(s); about " << o.minSeconds << " s per figure\n";

    nlohmann::json report{{"benchmark", "force"},
                          {"model", source},
                          {"weights", native->parameterCount()},
                          {"atoms", n},
                          {"threads", o.threads},
                          {"batch", o.batch},
                          {"units", "microseconds per energy+force (batch: per configuration), per MD step for md_*"}};
    std::vector<double> g(static_cast<size_t>(D)), uB(static_cast<size_t>(o.batch)), gB(static_cast<size_t>(o.batch * D));
    double sink = 0;
    for (Precision p : {Precision::Double, Precision::Single}) {
        const std::string name = precisionName(p);
        NativeEvaluator eval(native, p);
        const auto eg = timeCalls([&] { sink += eval.energyAndGradient(x1.data(), g.data()); }, o.minSeconds, 20);
        const auto e = timeCalls([&] { sink += eval.energy(x1.data()); }, o.minSeconds, 20);
        const auto lim = timeCalls([&] { sink += eval.weightStreamingOnly(1); }, o.minSeconds, 20);
        const auto batch = timeCalls([&] { eval.evaluate(o.batch, xB.data(), uB.data(), gB.data()); }, o.minSeconds, 1);
        report["native_" + name + "_us"] = eg.median;
        report["native_" + name + "_min_us"] = eg.minimum;
        report["native_" + name + "_energy_only_us"] = e.median;
        report["limit_" + name + "_us"] = lim.median;
        report["limit_" + name + "_min_us"] = lim.minimum;
        report["native_" + name + "_batch_us"] = batch.median / static_cast<double>(o.batch);
        std::cerr << "  native " << name << ": " << std::fixed << std::setprecision(1) << eg.median << " us per energy+force (limit "
                  << lim.median << " us), " << e.median << " us energy only, " << batch.median / static_cast<double>(o.batch)
                  << " us per configuration at batch " << o.batch << "\n";
        if (o.threads > 1) {  // the conditioner heads of each coupling side by side (NativeEvaluator threads)
            NativeEvaluator team(native, p, o.threads);
            const auto t = timeCalls([&] { sink += team.energyAndGradient(x1.data(), g.data()); }, o.minSeconds, 20);
            report["native_" + name + "_threads_us"] = t.median;
            std::cerr << "  native " << name << " on " << o.threads << " threads: " << t.median << " us per energy+force\n";
        }
    }
    // --- MD steps: FlowForce (platform default precision: double on Reference, single on CPU) and classical
    md::loadDefaultOpenMMPlugins();
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    OpenMM::System flowSystem;
    for (double m : md::atomMasses(mol)) flowSystem.addParticle(m);
    flowSystem.addForce(FlowForcePlugin::FlowForce::createFromBytes(serializeModelFile(file), source));
    auto classical = md::createClassicalSystem(moleculePDB(o.molecule));
    for (const std::string platform : {"Reference", "CPU"}) {
        std::string key = platform == "Reference" ? "reference" : "cpu";
        for (const auto& [kind, system] : {std::pair<std::string, const OpenMM::System*>{"flow", &flowSystem},
                                           std::pair<std::string, const OpenMM::System*>{"classical", classical.system.get()}}) {
            std::string error;
            const double us = mdStepMicroseconds(*system, mol.positions, platform, o.threads, o.mdSteps, error);
            const std::string k = "md_" + kind + "_" + key + "_us";
            if (us > 0) {
                report[k] = us;
                report["md_" + kind + "_" + key + "_ns_per_day"] = 86400.0 / us;
                std::cerr << "  MD " << kind << " on " << platform << ": " << us << " us per step (" << std::setprecision(0)
                          << 86400.0 / us << " ns/day at 1 fs)" << std::setprecision(1) << "\n";
            } else {
                report[k] = nullptr;
                report["md_" + kind + "_" + key + "_error"] = error;
                std::cerr << "  MD " << kind << " on " << platform << ": failed: " << error << "\n";
            }
        }
    }
    {
        setThreads(o.threads);
        auto xt = torch::from_blob(x1.data(), {1, D}, torch::kFloat64).clone();
        auto xbt = torch::from_blob(xB.data(), {o.batch, D}, torch::kFloat64).clone();
        flow->eval();
        const auto lt = timeCalls([&] { sink += flow->energyAndGradient(xt).first.item<double>(); }, o.minSeconds, 2);
        const auto ltb = timeCalls([&] { sink += flow->energyAndGradient(xbt).first.sum().item<double>(); }, o.minSeconds, 1);
        report["libtorch_us"] = lt.median;
        report["libtorch_batch_us"] = ltb.median / static_cast<double>(o.batch);
        std::cerr << "  LibTorch autograd: " << lt.median << " us per energy+force, " << ltb.median / static_cast<double>(o.batch)
                  << " us per configuration at batch " << o.batch << "\n";
    }
    auto ratio = [&](const std::string& a, const std::string& b) -> nlohmann::json {
        if (!report.contains(a) || !report.contains(b) || !report[a].is_number() || !report[b].is_number()) return nullptr;
        return report[a].get<double>() / report[b].get<double>();
    };
    report["ratios"] = {{"libtorch_over_native_double", ratio("libtorch_us", "native_double_us")},
                        {"native_double_over_limit", ratio("native_double_us", "limit_double_us")},
                        {"native_single_over_limit", ratio("native_single_us", "limit_single_us")},
                        {"md_flow_over_classical_reference", ratio("md_flow_reference_us", "md_classical_reference_us")},
                        {"md_flow_over_classical_cpu", ratio("md_flow_cpu_us", "md_classical_cpu_us")}};
    report["checksum"] = sink;

    auto cell = [&](const std::string& key) {
        std::ostringstream s;
        if (report.contains(key) && report[key].is_number()) s << std::fixed << std::setprecision(1) << report[key].get<double>();
        else s << "-";
        return s.str();
    };
    auto r = [&](const std::string& key) {
        std::ostringstream s;
        const auto& v = report["ratios"][key];
        if (v.is_number()) s << std::fixed << std::setprecision(2) << v.get<double>() << "x";
        else s << "-";
        return s.str();
    };
    std::cout << "flow force, " << report["weights"].get<int64_t>() << " weights, " << n << " atoms, " << o.threads
              << " thread(s); microseconds per energy+force\n"
              << "                     batch 1   batch " << o.batch << " (per configuration)   weight-streaming limit\n"
              << "  native double  " << std::setw(10) << cell("native_double_us") << std::setw(12) << cell("native_double_batch_us")
              << std::setw(31) << cell("limit_double_us") << "   (" << r("native_double_over_limit") << " the limit)\n"
              << "  native single  " << std::setw(10) << cell("native_single_us") << std::setw(12) << cell("native_single_batch_us")
              << std::setw(31) << cell("limit_single_us") << "   (" << r("native_single_over_limit") << " the limit)\n"
              << (o.threads > 1 ? "  native double, " + std::to_string(o.threads) + " threads " + cell("native_double_threads_us") +
                                      "\n  native single, " + std::to_string(o.threads) + " threads " +
                                      cell("native_single_threads_us") + "\n"
                                : std::string())
              << "  LibTorch       " << std::setw(10) << cell("libtorch_us") << std::setw(12) << cell("libtorch_batch_us")
              << "   (" << r("libtorch_over_native_double") << " native double)\n"
              << "MD at 1 fs, microseconds per step (ns/day)\n"
              << "  Reference: flow " << cell("md_flow_reference_us") << " (" << cell("md_flow_reference_ns_per_day") << "), classical "
              << cell("md_classical_reference_us") << " (" << cell("md_classical_reference_ns_per_day") << "): flow/classical "
              << r("md_flow_over_classical_reference") << "\n"
              << "  CPU:       flow " << cell("md_flow_cpu_us") << " (" << cell("md_flow_cpu_ns_per_day") << "), classical "
              << cell("md_classical_cpu_us") << " (" << cell("md_classical_cpu_ns_per_day") << "): flow/classical "
              << r("md_flow_over_classical_cpu") << "\n";
    if (!o.json.empty()) {
        writeJson(o.json, report);
        std::cout << "  report: " << o.json << "\n";
    }
}

}  // namespace

void registerBench(CLI::App& app) {
    auto* bench = app.add_subcommand("bench", "Performance figures");
    bench->require_subcommand(1);
    auto o = std::make_shared<BenchInverseOptions>();
    auto* inv = bench->add_subcommand("inverse", "Analytic vs multi-bin bisection inversion of a spline coupling (Table SI-1)");
    inv->add_option("--dims", o->dims, "transformed dimensions")->capture_default_str();
    inv->add_option("--bins", o->bins, "bisection bin counts K to try (the fastest is reported)")->capture_default_str();
    inv->add_option("--batch", o->batch, "batch size")->capture_default_str();
    inv->add_option("--tolerance", o->tolerance, "bisection tolerance")->capture_default_str();
    inv->add_option("--dtype", o->dtype, "float32 or float64")->check(CLI::IsMember({"float32", "float64"}))->capture_default_str();
    inv->add_option("--min-seconds", o->minSeconds, "time spent per measurement (s)")->capture_default_str();
    inv->add_option("--threads", o->threads, "LibTorch threads (0: all cores)")->capture_default_str();
    inv->add_option("--json", o->json, "write the table as JSON to this file");
    inv->callback([o]() { runBenchInverse(*o); });

    auto fo = std::make_shared<BenchForceOptions>();
    auto* force = bench->add_subcommand("force", "Cost of a flow force: native double/single, LibTorch, the weight-streaming "
                                                 "limit, MD steps with the flow and the classical force field");
    addMoleculeOptions(*force, fo->molecule);
    force->add_option("--model", fo->model, "model file (default: an untrained paper-layout smooth flow of the molecule)");
    force->add_option("--batch", fo->batch, "configurations per batched evaluation")->capture_default_str();
    force->add_option("--min-seconds", fo->minSeconds, "time spent per figure (s)")->capture_default_str();
    force->add_option("--md-steps", fo->mdSteps, "MD steps per MD figure")->capture_default_str();
    force->add_option("--threads", fo->threads,
                      "threads of LibTorch, of OpenMM's CPU platform (and so of FlowForce on it), and of the native "
                      "evaluator's threaded figures")->capture_default_str();
    force->add_option("--seed", fo->seed, "seed of the default model and of the batch's perturbations")->capture_default_str();
    force->add_option("--json", fo->json, "write the figures as JSON to this file");
    force->callback([fo]() {
        try {
            runBenchForce(*fo);
        } catch (const OpenMM::OpenMMException& e) {
            throw Error(std::string("OpenMM: ") + e.what());
        }
    });
}

}  // namespace flowforce::cli
