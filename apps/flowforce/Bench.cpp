// flowforce bench: performance figures. `bench inverse` reproduces the paper's Table SI-1: a
// rational-quadratic spline coupling (conditioner with `dim` inputs and 64 hidden units) inverted
// analytically and by multi-bin bisection on the same transform.
#include "Common.h"

#include "flowforce/flow/Flow.h"
#include "flowforce/flow/Inversion.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>

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
}

}  // namespace flowforce::cli
