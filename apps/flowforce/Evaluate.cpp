// flowforce eval: the metrics of a model on a dataset and on its own samples (seed paper section 6.3,
// SI-2.6).
#include "Common.h"
#include "Molecular.h"

#include "flowforce/flow/Features.h"
#include "flowforce/flow/InternalCoordinates.h"
#include "flowforce/flow/Losses.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/flow/NativeFlow.h"
#include "flowforce/flow/Physics.h"
#include "flowforce/md/Molecule.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <thread>

namespace flowforce::cli {

namespace {

struct EvalOptions {
    MoleculeOptions molecule;
    std::string model, data, json, plots;
    int64_t samples = 2000, maxFrames = 10000;
    double temperature = 0.0, timestepFs = 1.0;
    int64_t featureFrames = 200, stiffnessFrames = 20;
    uint64_t seed = 1;
    int threads = 0;
};

/** phi/psi (rad) of alanine dipeptide frames [B, 66]; empty for other molecules. */
std::pair<std::vector<double>, std::vector<double>> ramachandran(const torch::Tensor& x) {
    if (x.size(1) != 66) return {};
    auto t = dihedrals(x, {kAlanineDipeptidePhi, kAlanineDipeptidePsi});  // [B, 2]
    auto phi = t.select(1, 0).contiguous(), psi = t.select(1, 1).contiguous();
    return {std::vector<double>(phi.data_ptr<double>(), phi.data_ptr<double>() + phi.numel()),
            std::vector<double>(psi.data_ptr<double>(), psi.data_ptr<double>() + psi.numel())};
}

/** Index of the i-th of m frames spread evenly over n (first and last included). */
int64_t spreadFrame(int64_t i, int64_t m, int64_t n) {
    return m == 1 ? 0 : static_cast<int64_t>(std::llround(static_cast<double>(i) * static_cast<double>(n - 1) / static_cast<double>(m - 1)));
}

std::vector<double> toVector(const torch::Tensor& t) {
    auto c = t.detach().reshape(-1).contiguous().to(torch::kFloat64);
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void runEval(EvalOptions o) {
    setThreads(o.threads);
    // the model file read once: the LibTorch flow (samples, the narrowest feature) and the native
    // evaluator (the dataset) are built from the same parsed file
    ModelFile file;
    std::shared_ptr<Flow> flow;
    std::shared_ptr<const NativeFlow> native;
    try {
        file = readModelFile(o.model);
        flow = buildFlow(file, "model file '" + o.model + "'");
        native = NativeFlow::compile(file, o.model);
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    if (!flow->embedding()) throw Error(o.model + ": not a molecular model");
    if (o.temperature <= 0) o.temperature = file.info.value("temperature_K", 300.0);
    const double kT = kBoltzmannKJPerMolK * o.temperature;
    auto data = loadMolecularData(o.data, flow->dataDim(), o.maxFrames, false);
    const int64_t frames = data.positions.size(0);
    std::cerr << "eval: " << o.model << " on " << frames << " frames of " << o.data << " and " << o.samples << " samples, T = "
              << o.temperature << " K\n";
    auto target = makeTargetEnergy(o.molecule, o.temperature);

    // --- dataset: the native evaluator (double precision, the conditioner heads on all threads) ---
    const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    NativeEvaluator evaluator(native, Precision::Double, threads);
    const int64_t D = native->dataDim();
    auto positions = data.positions.to(torch::kFloat64).contiguous();
    for (int64_t f = 0; f < frames; ++f) {
        const auto v = evaluator.checkSupport(positions.data_ptr<double>() + f * D);
        if (v.coordinate >= 0) throw Error(o.data + ": frame " + std::to_string(f) + " is outside the model's support: " + v.description);
    }
    auto u = torch::empty({frames}, torch::kFloat64), grad = torch::empty({frames, D}, torch::kFloat64);
    Progress progress("dataset", frames);
    for (int64_t s = 0; s < frames; s += 256) {
        const int64_t n = std::min<int64_t>(256, frames - s);
        evaluator.evaluate(n, positions.data_ptr<double>() + s * D, u.data_ptr<double>() + s, grad.data_ptr<double>() + s * D);
        progress.update(s + n);
    }
    progress.finish();
    nlohmann::json report{{"model", o.model}, {"data", o.data}, {"frames", frames}, {"temperature_K", o.temperature}};
    nlohmann::json ds{{"nll_nats", u.mean().item<double>()}};
    nlohmann::json plot{{"temperature_K", o.temperature}};
    auto uTargetData = data.energies.defined() ? data.energies / kT : target->energies(data.positions);
    const int64_t nPlot = std::min<int64_t>(frames, 20000);
    if (data.forces.defined()) {
        auto fRef = data.forces / kT;
        ds["fme_per_nm2"] = forceMatchingLoss(fRef, grad).item<double>();
        auto fFlow = -grad * kT;
        ds["force_rmse_kJ_per_mol_nm"] = torch::sqrt((fFlow - data.forces).pow(2).mean()).item<double>();
        ds["force_rms_reference_kJ_per_mol_nm"] = torch::sqrt(data.forces.pow(2).mean()).item<double>();
        plot["data_force_rmse"] = ds["force_rmse_kJ_per_mol_nm"];
        const int64_t shown = std::min<int64_t>(frames, 300);
        plot["data_force_frames"] = shown;
        plot["data_force_target"] = toVector(data.forces.narrow(0, 0, shown));
        plot["data_force_flow"] = toVector(fFlow.narrow(0, 0, shown));
    }
    report["dataset"] = ds;

    const md::Molecule molecule = md::readPDB(moleculePDB(o.molecule));
    const auto masses = md::atomMasses(molecule);  // Da

    // --- the narrowest feature of the density on (a spread of) the data, against one MD step ---
    {
        const int64_t m = std::min(frames, std::max<int64_t>(1, o.featureFrames));
        auto rows = torch::linspace(0, static_cast<double>(frames - 1), m).round().to(torch::kLong);
        FeatureReport f = narrowestFeature(*flow, positions.index_select(0, rows), masses, o.temperature,
                                           o.timestepFs * 1e-3);
        nlohmann::json nf{{"found", f.found}, {"timestep_fs", o.timestepFs}, {"frames", m}};
        if (f.found) {
            nf.update({{"layer", f.layer},
                       {"dim", f.dim},
                       {"coordinate", f.coordinate},
                       {"unit", f.unit},
                       {"width_at_half_height", f.width},
                       {"step_displacement_rms", f.stepDisplacement},
                       {"width_over_step", f.ratio},
                       {"significant_features", f.significantFeatures},
                       {"narrower_than_one_step", f.belowOneStep}});
        }
        report["narrowest_feature"] = nf;
    }

    // --- the stiffest vibration of the flow and of the force field on (a spread of) the data ---
    const PotentialFunction flowEnergy = [&](int64_t k, const double* xs, double* us, double* gs) {  // kJ/mol, kJ/mol/nm
        evaluator.evaluate(k, xs, us, gs);  // no gradient for gs null
        for (int64_t i = 0; i < k; ++i) us[i] *= kT;
        for (int64_t i = 0; gs && i < k * D; ++i) gs[i] *= kT;
    };
    const PotentialFunction fieldEnergy = [&](int64_t k, const double* xs, double* us, double* gs) {
        const auto x = torch::from_blob(const_cast<double*>(xs), {k, D}, torch::kFloat64);
        if (!gs) {
            const auto u = (target->energies(x) * kT).contiguous();
            std::copy(u.data_ptr<double>(), u.data_ptr<double>() + k, us);
            return;
        }
        auto [u, g] = target->energiesAndGradients(x);
        u = (u * kT).contiguous(), g = (g * kT).contiguous();
        std::copy(u.data_ptr<double>(), u.data_ptr<double>() + k, us);
        std::copy(g.data_ptr<double>(), g.data_ptr<double>() + k * D, gs);
    };
    // the stiffest mode of the flow (and, with withField, of the force field) over m configurations spread
    // over xs [N, D]; the force field's own figure (on the data) is the reference of both reports
    nlohmann::json fieldOnData;
    auto stiffness = [&](const torch::Tensor& xs, const std::string& what, bool withField) {
        const int64_t N = xs.size(0), m = std::min(N, o.stiffnessFrames);
        auto xc = xs.to(torch::kFloat64).contiguous();
        nlohmann::json st{{"frames", m}, {"timestep_fs", o.timestepFs}};
        std::vector<std::vector<double>> omegas(2);
        std::vector<StiffestMode> stiffest(2);
        std::vector<int64_t> at(2, -1);
        Progress sp("stiffest mode (" + what + ")", m);
        for (int64_t i = 0; i < m; ++i) {
            const int64_t f = spreadFrame(i, m, N);
            for (size_t side = 0; side < (withField ? 2u : 1u); ++side) {
                StiffestMode mode;
                try {
                    mode = stiffestMode(side == 0 ? flowEnergy : fieldEnergy, xc.data_ptr<double>() + f * D, masses);
                } catch (const std::exception& e) {
                    throw Error("stiffest mode at " + what + " " + std::to_string(f) + ": " + e.what());
                }
                omegas[side].push_back(mode.omega);
                if (at[side] < 0 || mode.omega > stiffest[side].omega) stiffest[side] = mode, at[side] = f;
            }
            sp.update(i + 1);
        }
        sp.finish();
        for (size_t side = 0; side < (withField ? 2u : 1u); ++side) {
            std::sort(omegas[side].begin(), omegas[side].end());
            st[side == 0 ? "flow" : "force_field"] = {{"omega_max_per_ps", stiffest[side].omega},
                                                      {"omega_median_per_ps", omegas[side][omegas[side].size() / 2]},
                                                      {"period_min_fs", stiffest[side].periodFs},
                                                      {"omega_dt", stiffest[side].omega * o.timestepFs * 1e-3},
                                                      {"at", at[side]},
                                                      {"atoms", stiffest[side].atoms()}};
        }
        if (withField) fieldOnData = st["force_field"];
        st["force_field_on_data"] = fieldOnData;
        st.erase("force_field");
        st["omega_max_ratio"] = stiffest[0].omega / fieldOnData["omega_max_per_ps"].get<double>();
        return st;
    };
    if (o.stiffnessFrames > 0) report["stiffest_mode"] = stiffness(positions, "frame", true);

    // --- sub-step roughness: along one random thermal MD step from each frame, how far each potential departs
    //     from the cubic its end energies and forces determine (structure narrower than the step) ---
    if (o.stiffnessFrames > 0) {
        const int64_t m = std::min(frames, o.stiffnessFrames);
        auto gen = at::detail::createCPUGenerator(o.seed + 104729);
        std::vector<double> offFlow, offField;  // kJ/mol
        Progress rp("sub-step roughness", m);
        for (int64_t i = 0; i < m; ++i) {
            const int64_t f = spreadFrame(i, m, frames);
            const double* a = positions.data_ptr<double>() + f * D;
            const auto step = thermalSteps(masses, o.temperature, o.timestepFs, 1, gen).contiguous();
            std::vector<double> b(a, a + D);
            for (int64_t j = 0; j < D; ++j) b[static_cast<size_t>(j)] += step.data_ptr<double>()[j];
            try {
                const double off[2] = {offCubicAlongSegment(flowEnergy, a, b.data(), D),
                                       offCubicAlongSegment(fieldEnergy, a, b.data(), D)};
                offFlow.push_back(off[0]), offField.push_back(off[1]);
            } catch (const std::exception&) {
                // a step that leaves the model's support: skipped
            }
            rp.update(i + 1);
        }
        rp.finish();
        auto summary = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            return nlohmann::json{{"median_kj_mol", v[v.size() / 2]}, {"max_kj_mol", v.back()}};
        };
        if (!offFlow.empty())
            report["sub_step_roughness"] = {{"frames", offFlow.size()},
                                            {"timestep_fs", o.timestepFs},
                                            {"flow", summary(offFlow)},
                                            {"force_field", summary(offField)}};

        // the fourth difference along thermal steps (five energies a frame, no gradients): cheap, so over
        // ten times as many frames; with its mean square in nats^2, the figure train --w-rough penalises
        const int64_t m4 = std::min(frames, 10 * o.stiffnessFrames);
        auto steps = thermalSteps(masses, o.temperature, o.timestepFs, m4, at::detail::createCPUGenerator(o.seed + 15485863))
                         .contiguous();
        std::vector<double> d4Flow, d4Field;  // |fourth difference|, kJ/mol
        double squares[2] = {0, 0};
        Progress dp("fourth difference", m4);
        for (int64_t i = 0; i < m4; ++i) {
            const double* a = positions.data_ptr<double>() + spreadFrame(i, m4, frames) * D;
            try {
                const double d4[2] = {fourthDifferenceAlongStep(flowEnergy, a, steps.data_ptr<double>() + i * D, D),
                                      fourthDifferenceAlongStep(fieldEnergy, a, steps.data_ptr<double>() + i * D, D)};
                d4Flow.push_back(std::abs(d4[0])), d4Field.push_back(std::abs(d4[1]));
                for (int k = 0; k < 2; ++k) squares[k] += (d4[k] / kT) * (d4[k] / kT);
            } catch (const std::exception&) {
                // a stencil that leaves the model's support: skipped
            }
            dp.update(i + 1);
        }
        dp.finish();
        if (!d4Flow.empty()) {
            const auto n = static_cast<double>(d4Flow.size());
            auto flow = summary(d4Flow), field = summary(d4Field);
            flow["mean_square_nats2"] = squares[0] / n, field["mean_square_nats2"] = squares[1] / n;
            report["fourth_difference"] = {{"frames", d4Flow.size()}, {"timestep_fs", o.timestepFs}, {"flow", flow}, {"force_field", field}};
        }
    }
    auto [phiD, psiD] = ramachandran(data.positions.narrow(0, 0, nPlot));
    plot["data_phi"] = phiD;
    plot["data_psi"] = psiD;
    plot["data_energy_flow_kT"] = toVector(u.narrow(0, 0, nPlot));
    plot["data_energy_target_kT"] = toVector(uTargetData.narrow(0, 0, nPlot));

    // --- samples ---
    if (o.samples > 0) {
        torch::manual_seed(o.seed);
        Progress sp("samples", o.samples);
        std::vector<torch::Tensor> xs, lps;
        for (int64_t s = 0; s < o.samples; s += 256) {
            const int64_t n = std::min<int64_t>(256, o.samples - s);
            torch::NoGradGuard ng;
            auto r = flow->sample(n);
            xs.push_back(r.out);
            lps.push_back(r.logdet);
            sp.update(s + n);
        }
        sp.finish();
        auto x = torch::cat(xs), logp = torch::cat(lps);
        auto [uT, gT] = target->energiesAndGradients(x);
        auto fT = -gT;  // k_B T / nm
        auto [uF, gF] = flow->energyAndGradient(x);
        const auto is = importanceEstimates(uT, logp);
        nlohmann::json sm{{"count", o.samples},
                          {"kld_plus_const", reverseKL(uT, logp).item<double>()},
                          {"ess_fraction", is.essFraction},
                          {"log_partition_function", is.logPartitionFunction},
                          {"energy_offset_kJ_per_mol", -kT * is.logPartitionFunction},
                          {"finite_target_energy_fraction", is.valid.to(torch::kFloat64).mean().item<double>()}};
        auto ok = is.valid.nonzero().squeeze(1);
        if (ok.numel() > 0) {
            auto dF = (-gF.index_select(0, ok) - fT.index_select(0, ok)) * kT;
            sm["force_rmse_kJ_per_mol_nm"] = torch::sqrt(dF.pow(2).mean()).item<double>();
            sm["fme_per_nm2"] = forceMatchingLoss(fT.index_select(0, ok), gF.index_select(0, ok)).item<double>();
            plot["sample_force_rmse"] = sm["force_rmse_kJ_per_mol_nm"];
            const int64_t m = std::min<int64_t>(ok.numel(), 300);
            plot["sample_force_frames"] = m;
            plot["sample_force_target"] = toVector(fT.index_select(0, ok.narrow(0, 0, m)) * kT);
            plot["sample_force_flow"] = toVector(-gF.index_select(0, ok.narrow(0, 0, m)) * kT);
            plot["sample_energy_flow_kT"] = toVector(uF.index_select(0, ok));
            plot["sample_energy_target_kT"] = toVector(uT.index_select(0, ok));
        }
        report["samples"] = sm;
        // where MD with the flow goes: the flow's own samples are its Boltzmann distribution
        if (o.stiffnessFrames > 0 && ok.numel() > 0) report["stiffest_mode_samples"] = stiffness(x.index_select(0, ok), "sample", false);
        auto [phiS, psiS] = ramachandran(x);
        plot["sample_phi"] = phiS;
        plot["sample_psi"] = psiS;
    }
    report["units"] = {{"nll_nats", "nats per configuration (positions in nm)"},
                       {"fme_per_nm2", "mean over configurations and Cartesian components of (F/kT - d log p/dx)^2, (1/nm)^2 (x 3n: the squared-norm form)"},
                       {"force_rmse_kJ_per_mol_nm", "root mean square over force components, kJ/mol/nm"},
                       {"kld_plus_const", "E[u(x) + log p(x)] over flow samples, k_B T, up to the constant"},
                       {"log_partition_function", "log Z estimate, k_B T units"},
                       {"omega_max_per_ps", "largest angular frequency of the mass-weighted Hessian of the energy (kJ/mol), 1/ps; "
                                            "velocity Verlet is stable for omega dt < 2, its energy error grows like (omega dt)^2"},
                       {"period_min_fs", "2 pi / omega_max, fs"},
                       {"sub_step_roughness", "max over 65 points of |U - the Hermite cubic of U and dU/ds at both ends| along a straight "
                                              "step x -> x + v dt (Maxwell-Boltzmann v), kJ/mol"},
                       {"fourth_difference", "|U(x-2s) - 4U(x-s) + 6U(x) - 4U(x+s) + U(x+2s)| along random thermal steps s = v dt from "
                                             "10 x stiffness-frames frames, kJ/mol; mean_square_nats2 of (it / kT): "
                                             "what train --w-rough penalises (zero for a cubic)"},
                       {"at", "index of the frame (stiffest_mode) or sample (stiffest_mode_samples) where omega_max was found"}};

    std::cout << std::setprecision(5) << "eval " << o.model << "\n  dataset (" << frames << " frames): NLL "
              << ds["nll_nats"].get<double>() << " nats";
    if (ds.contains("fme_per_nm2"))
        std::cout << ", FME " << ds["fme_per_nm2"].get<double>() << " nm^-2, force RMSE "
                  << ds["force_rmse_kJ_per_mol_nm"].get<double>() << " kJ/mol/nm";
    std::cout << "\n";
    if (const auto& nf = report["narrowest_feature"]; nf["found"].get<bool>()) {
        const double ratio = nf["width_over_step"].get<double>();
        std::cout << "  narrowest feature: " << nf["width_at_half_height"].get<double>() << " " << nf["unit"].get<std::string>()
                  << " wide at half height (" << nf["coordinate"].get<std::string>() << ", layer " << nf["layer"].get<int64_t>()
                  << "); one " << o.timestepFs << " fs step moves it " << nf["step_displacement_rms"].get<double>() << " "
                  << nf["unit"].get<std::string>() << " rms: " << std::setprecision(3) << ratio << " steps wide, "
                  << nf["narrower_than_one_step"].get<int64_t>() << " of " << nf["significant_features"].get<int64_t>()
                  << " bumps narrower than a step"
                  << (ratio < 1 ? " (UNSAFE for MD at this step)" : ratio < 3 ? " (marginal for MD at this step)" : " (safe for MD)")
                  << std::setprecision(5) << "\n";
    }
    for (const auto& [key, where] : {std::pair<std::string, std::string>{"stiffest_mode", "frames"}, {"stiffest_mode_samples", "samples"}}) {
        if (!report.contains(key)) continue;
        const auto& st = report[key];
        const auto &fl = st["flow"], &ff = st["force_field_on_data"];
        const double wdt = fl["omega_dt"].get<double>(), ratio = st["omega_max_ratio"].get<double>();
        std::cout << std::setprecision(3) << "  stiffest mode (" << st["frames"].get<int64_t>() << " " << where << "): flow "
                  << fl["period_min_fs"].get<double>() << " fs period (omega dt " << wdt << " at " << o.timestepFs
                  << " fs; atoms " << fl["atoms"].get<std::string>() << "), force field on the data " << ff["period_min_fs"].get<double>()
                  << " fs (" << ff["omega_dt"].get<double>() << "; atoms " << ff["atoms"].get<std::string>() << "): "
                  << ratio << "x as fast, Verlet's energy error ~ (omega dt)^2 " << ratio * ratio << "x the force field's"
                  << (wdt >= 2 ? " (UNSTABLE at this step)" : ratio > 1.15 ? " (stiffer than the force field)" : " (as the force field)")
                  << std::setprecision(5) << "\n";
    }
    if (report.contains("sub_step_roughness")) {
        const auto& r = report["sub_step_roughness"];
        const double fm = r["flow"]["median_kj_mol"].get<double>(), cm = r["force_field"]["median_kj_mol"].get<double>();
        std::cout << std::setprecision(3) << "  sub-step roughness (" << r["frames"].get<size_t>() << " random " << o.timestepFs
                  << " fs steps): the energy departs from the cubic of the step's ends by " << fm << " kJ/mol (median; max "
                  << r["flow"]["max_kj_mol"].get<double>() << ") for the flow, " << cm << " (max "
                  << r["force_field"]["max_kj_mol"].get<double>() << ") for the force field"
                  << " (" << fm / std::max(cm, 1e-300) << "x" << (fm > 10 * cm ? ": structure narrower than a step" : "") << ")"
                  << std::setprecision(5) << "\n";
    }
    if (report.contains("fourth_difference")) {
        const auto& r = report["fourth_difference"];
        const double fm = r["flow"]["median_kj_mol"].get<double>(), cm = r["force_field"]["median_kj_mol"].get<double>();
        std::cout << std::setprecision(3) << "  fourth difference of U along random thermal steps (what train --w-rough penalises): "
                  << fm << " kJ/mol (median over " << r["frames"].get<size_t>() << " steps; max " << r["flow"]["max_kj_mol"].get<double>()
                  << "; mean square " << r["flow"]["mean_square_nats2"].get<double>() << " nats^2) for the flow, " << cm << " (max "
                  << r["force_field"]["max_kj_mol"].get<double>() << "; " << r["force_field"]["mean_square_nats2"].get<double>()
                  << " nats^2) for the force field (" << fm / std::max(cm, 1e-300) << "x)" << std::setprecision(5) << "\n";
    }
    if (report.contains("samples")) {
        const auto& sm = report["samples"];
        std::cout << "  samples (" << o.samples << "): KLD " << sm["kld_plus_const"].get<double>() << " k_B T (+const), ESS/N "
                  << sm["ess_fraction"].get<double>() << ", log Z " << sm["log_partition_function"].get<double>() << " (offset "
                  << sm["energy_offset_kJ_per_mol"].get<double>() << " kJ/mol)";
        if (sm.contains("force_rmse_kJ_per_mol_nm"))
            std::cout << ", force RMSE " << sm["force_rmse_kJ_per_mol_nm"].get<double>() << " kJ/mol/nm";
        std::cout << "\n";
    }
    if (!o.json.empty()) {
        writeJson(o.json, report);
        std::cout << "  report: " << o.json << "\n";
    }
    if (!o.plots.empty() && makePlots("eval", plot, o.plots)) std::cout << "  plots: " << o.plots << "/\n";
}

}  // namespace

void registerEval(CLI::App& app) {
    auto eo = std::make_shared<EvalOptions>();
    auto* ev = app.add_subcommand("eval", "Metrics of a model on a dataset and on its own samples; plots");
    addMoleculeOptions(*ev, eo->molecule);
    ev->add_option("--model", eo->model, "model file")->required();
    ev->add_option("--data", eo->data, "H5MD dataset (test data)")->required();
    ev->add_option("--samples", eo->samples, "flow samples for KLD, ESS, log Z (0: none)")->capture_default_str();
    ev->add_option("--max-frames", eo->maxFrames, "dataset frames to use")->capture_default_str();
    ev->add_option("--temperature", eo->temperature, "K (default: the model's)");
    ev->add_option("--seed", eo->seed, "random seed")->capture_default_str();
    ev->add_option("--timestep", eo->timestepFs, "MD time step the narrowest feature and the stiffest mode are compared with (fs)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    ev->add_option("--feature-frames", eo->featureFrames, "frames (spread over the data) scanned for the narrowest feature")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    ev->add_option("--stiffness-frames", eo->stiffnessFrames,
                   "frames (spread over the data) where the stiffest vibration of flow and force field is found (0: skip)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    ev->add_option("--threads", eo->threads, "threads of LibTorch and of the native evaluator (0: all cores)")
        ->capture_default_str();
    ev->add_option("--json", eo->json, "write the metrics as JSON");
    ev->add_option("--plots", eo->plots, "write PNG plots into this folder");
    ev->callback([eo]() { runEval(*eo); });
}

}  // namespace flowforce::cli
