// flowforce toy: the seed paper's 2-D illustrative examples (section 6.1, SI-2.1): smooth mixtures
// against rational-quadratic splines, trained by maximum likelihood, compared on density and forces.
#include "Common.h"

#include "flowforce/flow/Flow.h"

#include <torch/csrc/autograd/autograd.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace flowforce::cli {

namespace {

/** A 2-D energy u(x) (dimensionless, k_B T) on the box [-pi, pi]^2. */
struct ToyEnergy {
    std::string name;
    bool periodic;
    double sigma;
    std::vector<double> radii{1.0, 2.0, 1.5, 2.5};
    std::vector<double> weights{1.0, 0.8, 0.6, 0.4};

    /** The ring coordinate: |x| (rings, eq. 84) or cos x1 + cos x2 + 2 (torus, eqs. 85-86). */
    torch::Tensor radius(const torch::Tensor& x) const {
        if (!periodic) return torch::sqrt((x * x).sum(-1));
        return torch::cos(x.select(-1, 0)) + torch::cos(x.select(-1, 1)) + 2.0;
    }
    torch::Tensor energy(const torch::Tensor& x) const {
        auto r = radius(x).unsqueeze(-1);
        auto rad = torch::tensor(radii, x.options()), w = torch::tensor(weights, x.options());
        return -torch::logsumexp(torch::log(w) - (r - rad).pow(2) / (2.0 * sigma * sigma), -1);
    }
    /** Exact force -du/dx. */
    torch::Tensor force(const torch::Tensor& x) const {
        torch::AutoGradMode enable(true);
        auto xg = x.detach().requires_grad_(true);
        return -torch::autograd::grad({energy(xg).sum()}, {xg})[0];
    }
    double maxDensity() const {  // exp(-u) <= sum of weights
        double s = 0;
        for (double w : weights) s += w;
        return s;
    }
};

ToyEnergy makeEnergy(const std::string& name) {
    if (name == "rings") return {"rings", false, 0.06};
    if (name == "torus") return {"torus", true, 0.05};
    throw Error("unknown energy '" + name + "' (rings or torus)");
}

constexpr double kLow = -M_PI, kHigh = M_PI;

torch::Tensor wrap(const torch::Tensor& x) { return x - 2.0 * M_PI * torch::floor((x - kLow) / (2.0 * M_PI)); }

/** log Z = log of the integral of exp(-u) over the box, by the midpoint rule on an n x n grid. */
double logPartitionFunction(const ToyEnergy& e, int64_t n) {
    torch::NoGradGuard ng;
    const double h = (kHigh - kLow) / static_cast<double>(n);
    auto c = kLow + h * (torch::arange(n, torch::kFloat64) + 0.5);
    double maxLog = -1e300;
    std::vector<double> rowLse;
    for (int64_t i = 0; i < n; ++i) {  // row by row to bound memory
        auto x = torch::stack({torch::full({n}, c[i].item<double>(), torch::kFloat64), c}, 1);
        double v = torch::logsumexp(-e.energy(x), 0).item<double>();
        rowLse.push_back(v);
        maxLog = std::max(maxLog, v);
    }
    double s = 0;
    for (double v : rowLse) s += std::exp(v - maxLog);
    return maxLog + std::log(s) + 2.0 * std::log(h);
}

/** Metropolis-Hastings data as in SI-2.1: chains started on a regular grid, 1000 steps, then 10
 *  more steps with one sample kept per step. Proposals alternate local Gaussian moves (step 0.1) with
 *  uniform moves over the box (both satisfy detailed balance) so chains also hop between rings. */
torch::Tensor metropolisSamples(const ToyEnergy& e, int64_t chains, int64_t burnIn, int64_t keepSteps, torch::Generator& gen) {
    torch::NoGradGuard ng;
    const auto side = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(chains))));
    auto g = torch::linspace(kLow + 0.05, kHigh - 0.05, side, torch::kFloat64);
    auto mesh = torch::meshgrid({g, g}, "ij");
    auto x = torch::stack({mesh[0].reshape(-1), mesh[1].reshape(-1)}, 1).narrow(0, 0, chains).clone();
    auto u = e.energy(x);
    std::vector<torch::Tensor> kept;
    for (int64_t step = 0; step < burnIn + keepSteps; ++step) {
        torch::Tensor proposal;
        if (step % 2 == 0) proposal = x + 0.1 * torch::randn({chains, 2}, gen, torch::kFloat64);
        else proposal = kLow + (kHigh - kLow) * torch::rand({chains, 2}, gen, torch::kFloat64);
        if (e.periodic) proposal = wrap(proposal);
        auto inside = (proposal > kLow).logical_and(proposal < kHigh).all(1);
        auto up = e.energy(proposal);
        auto accept = inside.logical_and(torch::rand({chains}, gen, torch::kFloat64) < torch::exp(u - up));
        x = torch::where(accept.unsqueeze(1), proposal, x);
        u = torch::where(accept, up, u);
        if (step >= burnIn) kept.push_back(x.clone());
    }
    return torch::cat(kept, 0);
}

/** Exact samples by rejection from the uniform distribution on the box. */
torch::Tensor exactSamples(const ToyEnergy& e, int64_t n, torch::Generator& gen) {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> parts;
    int64_t have = 0;
    while (have < n) {
        auto x = kLow + (kHigh - kLow) * torch::rand({200000, 2}, gen, torch::kFloat64);
        auto acc = torch::rand({200000}, gen, torch::kFloat64) < torch::exp(-e.energy(x)) / e.maxDensity();
        auto sel = x.index({acc});
        parts.push_back(sel);
        have += sel.size(0);
    }
    return torch::cat(parts, 0).narrow(0, 0, n);
}

struct ToyOptions {
    std::string energy = "rings";
    int64_t iterations = 3000;
    int64_t batch = 1000;
    double lr = 1e-3;
    int64_t components = 40;
    int64_t layers = 4;
    int64_t hidden = 100;
    int64_t chains = 10000;
    int64_t testSamples = 20000;
    uint64_t seed = 1;
    int threads = 0;
    std::string json, plots;
    std::vector<std::string> transforms{"spline", "smooth"};
};

struct FlowReport {
    nlohmann::json metrics;
    torch::Tensor gridLogDensity, forceError, flowForce;
};

FlowReport trainAndEvaluate(const std::string& kind, const ToyEnergy& e, const ToyOptions& o, const torch::Tensor& train,
                            const torch::Tensor& test, const torch::Tensor& testForce, const torch::Tensor& grid) {
    torch::manual_seed(o.seed);
    nlohmann::json transform = kind == "smooth" ? nlohmann::json{{"type", "smooth"}, {"components", o.components}}
                                                : nlohmann::json{{"type", "spline"}, {"bins", o.components}};
    auto arch = alternatingCouplingArchitecture(2, {e.periodic, e.periodic}, o.layers, transform, {o.hidden, o.hidden},
                                                Activation::SiLU);
    arch["layers"].insert(arch["layers"].begin(),
                          nlohmann::json{{"type", "box"}, {"low", {kLow, kLow}}, {"high", {kHigh, kHigh}}});
    Flow flow(arch);
    flow.to(torch::kFloat64);
    torch::optim::Adam opt(flow.parameters(), torch::optim::AdamOptions(o.lr));
    auto gen = at::detail::createCPUGenerator(o.seed + 17);
    Progress progress("train " + kind + " flow", o.iterations);
    double ema = 0;
    nlohmann::json curve = nlohmann::json::array();
    for (int64_t it = 1; it <= o.iterations; ++it) {
        // cosine decay of the learning rate to 5% of its start
        const double lr = o.lr * (0.05 + 0.95 * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(it - 1) / static_cast<double>(o.iterations))));
        static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options()).lr(lr);
        auto idx = torch::randint(train.size(0), {o.batch}, gen, torch::kLong);
        auto loss = -flow.logProb(train.index_select(0, idx)).mean();
        opt.zero_grad();
        loss.backward();
        opt.step();
        const double l = loss.item<double>();
        ema = it == 1 ? l : 0.98 * ema + 0.02 * l;
        if (it % 100 == 0) curve.push_back({{"iteration", it}, {"train_nll_nats", ema}});
        if (it % 20 == 0 || it == o.iterations) {
            std::ostringstream s;
            s << "NLL " << std::fixed << std::setprecision(3) << ema << " nats";
            progress.update(it, s.str());
        }
    }
    progress.finish();

    // held-out NLL and forces on exact samples
    FlowReport r;
    double nll = 0;
    std::vector<torch::Tensor> forces;
    for (int64_t s = 0; s < test.size(0); s += 5000) {
        auto chunk = test.narrow(0, s, std::min<int64_t>(5000, test.size(0) - s));
        auto [u, grad] = flow.energyAndGradient(chunk);
        nll += u.sum().item<double>();
        forces.push_back(-grad);
    }
    nll /= static_cast<double>(test.size(0));
    r.flowForce = torch::cat(forces, 0);
    r.forceError = (r.flowForce - testForce).norm(2, 1);
    auto sorted = std::get<0>(r.forceError.sort());
    auto quantile = [&](double q) {
        return sorted[static_cast<int64_t>(q * static_cast<double>(sorted.size(0) - 1))].item<double>();
    };
    {
        torch::NoGradGuard ng;
        r.gridLogDensity = flow.logProb(grid);
    }
    r.metrics = {{"transform", kind},
                 {"parameters", flow.parameterCount()},
                 {"heldout_nll_nats", nll},
                 {"force_rmse_kT_per_unit", torch::sqrt(r.forceError.pow(2).mean()).item<double>()},
                 {"force_error_median_kT_per_unit", quantile(0.5)},
                 {"force_error_p99_kT_per_unit", quantile(0.99)},
                 {"training_curve", curve}};
    return r;
}

std::vector<double> toVector(const torch::Tensor& t) {
    auto c = t.detach().contiguous().to(torch::kFloat64);
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void runToy(const ToyOptions& o) {
    setThreads(o.threads);
    const ToyEnergy e = makeEnergy(o.energy);
    if (o.iterations < 1 || o.batch < 1 || o.components < 1 || o.layers < 1 || o.chains < 1 || o.testSamples < 100)
        throw Error("iterations, batch, components, layers and chains must be positive, test samples >= 100");
    std::cerr << "toy '" << e.name << "': " << (e.periodic ? "torus" : "box") << " [-pi, pi]^2, sigma " << e.sigma
              << "; MLE training, " << o.iterations << " iterations of batch " << o.batch << "\n";
    auto gen = at::detail::createCPUGenerator(o.seed);
    auto train = metropolisSamples(e, o.chains, 1000, 10, gen);
    auto test = exactSamples(e, o.testSamples, gen);
    const double logZ = logPartitionFunction(e, 2000);
    torch::Tensor exactU, exactForce;
    {
        torch::NoGradGuard ng;
        exactU = e.energy(test);
    }
    exactForce = e.force(test);
    const double exactNll = exactU.mean().item<double>() + logZ;
    const double rmsForce = torch::sqrt(exactForce.pow(2).sum(1).mean()).item<double>();
    std::cerr << "data: " << train.size(0) << " Metropolis samples for training, " << test.size(0)
              << " exact held-out samples; exact NLL " << std::fixed << std::setprecision(4) << exactNll
              << " nats, RMS exact force " << rmsForce << " kT/unit\n";

    const int64_t gridN = 200;
    auto g = kLow + (kHigh - kLow) * (torch::arange(gridN, torch::kFloat64) + 0.5) / static_cast<double>(gridN);
    auto mesh = torch::meshgrid({g, g}, "xy");
    auto grid = torch::stack({mesh[0].reshape(-1), mesh[1].reshape(-1)}, 1);

    nlohmann::json report{{"energy", e.name},
                          {"definition", e.periodic ? "u = -log sum_i a_i exp(-(cos x1 + cos x2 + 2 - r_i)^2 / (2 s^2)) on the torus [-pi,pi)^2"
                                                    : "u = -log sum_i a_i exp(-(|x| - r_i)^2 / (2 s^2)) on the box [-pi,pi]^2"},
                          {"sigma", e.sigma},
                          {"radii", e.radii},
                          {"weights", e.weights},
                          {"train_samples", train.size(0)},
                          {"test_samples", test.size(0)},
                          {"iterations", o.iterations},
                          {"batch", o.batch},
                          {"learning_rate", o.lr},
                          {"exact_nll_nats", exactNll},
                          {"log_partition_function", logZ},
                          {"exact_force_rms_kT_per_unit", rmsForce},
                          {"flows", nlohmann::json::array()}};
    nlohmann::json plot{{"energy", e.name}, {"grid_n", gridN}, {"low", kLow}, {"high", kHigh}};
    {
        torch::NoGradGuard ng;
        plot["exact_log_density"] = toVector(-e.energy(grid) - logZ);
    }
    const int64_t nPlot = std::min<int64_t>(4000, test.size(0));
    plot["samples"] = toVector(test.narrow(0, 0, nPlot));
    plot["exact_force"] = toVector(exactForce.narrow(0, 0, nPlot));
    plot["flows"] = nlohmann::json::array();

    for (const auto& kind : o.transforms) {
        auto r = trainAndEvaluate(kind, e, o, train, test, exactForce, grid);
        const double rmse = r.metrics["force_rmse_kT_per_unit"];
        r.metrics["nll_gap_nats"] = r.metrics["heldout_nll_nats"].get<double>() - exactNll;
        r.metrics["force_rmse_over_rms_force"] = rmse / rmsForce;
        report["flows"].push_back(r.metrics);
        plot["flows"].push_back({{"transform", kind},
                                 {"log_density", toVector(r.gridLogDensity)},
                                 {"force", toVector(r.flowForce.narrow(0, 0, nPlot))},
                                 {"force_error", toVector(r.forceError.narrow(0, 0, nPlot))},
                                 {"force_rmse", rmse}});
    }

    // summary table
    std::cout << "\nflowforce toy '" << e.name << "' (held-out: " << test.size(0) << " exact samples; forces in k_B T per unit length)\n";
    std::cout << "  exact NLL " << std::setprecision(4) << exactNll << " nats, RMS exact force " << std::setprecision(3)
              << rmsForce << "\n";
    std::cout << "  transform  params   NLL [nats]  gap [nats]  force RMSE  median err  p99 err  RMSE/RMS(F)\n";
    for (const auto& f : report["flows"]) {
        std::cout << "  " << std::left << std::setw(9) << f["transform"].get<std::string>() << std::right << std::setw(8)
                  << f["parameters"].get<int64_t>() << std::setw(12) << std::setprecision(4) << f["heldout_nll_nats"].get<double>()
                  << std::setw(12) << f["nll_gap_nats"].get<double>() << std::setw(12) << std::setprecision(3)
                  << f["force_rmse_kT_per_unit"].get<double>() << std::setw(12) << f["force_error_median_kT_per_unit"].get<double>()
                  << std::setw(9) << f["force_error_p99_kT_per_unit"].get<double>() << std::setw(13)
                  << f["force_rmse_over_rms_force"].get<double>() << "\n";
    }
    if (report["flows"].size() == 2) {
        const double ratio = report["flows"][0]["force_rmse_kT_per_unit"].get<double>() /
                             report["flows"][1]["force_rmse_kT_per_unit"].get<double>();
        report["force_rmse_ratio_first_over_second"] = ratio;
        std::cout << "  force RMSE ratio " << o.transforms[0] << "/" << o.transforms[1] << ": " << std::setprecision(2) << ratio << "\n";
    }
    if (!o.json.empty()) {
        writeJson(o.json, report);
        std::cout << "  report: " << o.json << "\n";
    }
    if (!o.plots.empty() && makePlots("toy", plot, o.plots))
        std::cout << "  plots: " << o.plots << "/toy-" << e.name << "-forces.png, " << o.plots << "/toy-" << e.name
                  << "-force-scatter.png\n";
}

}  // namespace

void registerToy(CLI::App& app) {
    auto opts = std::make_shared<ToyOptions>();
    auto* cmd = app.add_subcommand("toy", "The paper's 2-D examples: smooth mixtures vs splines, density and forces");
    cmd->add_option("--energy", opts->energy, "rings (eq. 84, box) or torus (eqs. 85-86, periodic)")
        ->check(CLI::IsMember({"rings", "torus"}))
        ->capture_default_str();
    cmd->add_option("--iterations", opts->iterations, "training iterations per flow")->capture_default_str();
    cmd->add_option("--batch", opts->batch, "batch size")->capture_default_str();
    cmd->add_option("--lr", opts->lr, "initial Adam learning rate (cosine decay to 5%)")->capture_default_str();
    cmd->add_option("--components", opts->components, "mixture components / spline bins")->capture_default_str();
    cmd->add_option("--layers", opts->layers, "coupling layers")->capture_default_str();
    cmd->add_option("--hidden", opts->hidden, "hidden units of the two conditioner layers")->capture_default_str();
    cmd->add_option("--chains", opts->chains, "Metropolis chains (10 samples each)")->capture_default_str();
    cmd->add_option("--test-samples", opts->testSamples, "exact held-out samples")->capture_default_str();
    cmd->add_option("--transforms", opts->transforms, "flows to compare (spline, smooth)")
        ->check(CLI::IsMember({"spline", "smooth"}))
        ->capture_default_str();
    cmd->add_option("--seed", opts->seed, "random seed")->capture_default_str();
    cmd->add_option("--threads", opts->threads, "LibTorch threads (0: all cores)")->capture_default_str();
    cmd->add_option("--json", opts->json, "write the metrics as JSON to this file");
    cmd->add_option("--plots", opts->plots, "write PNG plots into this folder");
    cmd->callback([opts]() { runToy(*opts); });
}

}  // namespace flowforce::cli
