// flowforce train: trains a molecular flow on an H5MD dataset with the weighted loss of the seed
// paper (eqs. 2-5): w_n NLL + w_k KLD + w_f FM, Adam with a per-epoch learning-rate decay, 90/10
// train/validation split, validation metrics after every epoch, best model kept, resumable.
#include "Common.h"
#include "Molecular.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/md/H5MD.h"

#include <CLI/CLI.hpp>

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace flowforce::cli {

namespace {

struct TrainOptions {
    MoleculeOptions molecule;
    std::string data, model, out = "model.flow", json, checkpoint;
    std::string transform = "smooth";
    bool inverse = false, resume = false;
    int64_t epochs = 10, batch = 128, kldBatch = 0, maxFrames = 0, valMaxFrames = 2000, kldValSamples = 512;
    double lr = 5e-4, lrDecay = 0.7, wNll = -1.0, wFm = 0.0, wKld = 0.0, valFraction = 0.1;
    double temperature = 0.0;
    uint64_t seed = 1;
    int threads = 0;
};

/** Metrics of one evaluation pass; NaN where not computed. */
struct Metrics {
    double nll = NAN, fme = NAN, kld = NAN;
};

void runTrain(TrainOptions o) {
    setThreads(o.threads);
    if (o.data.empty()) throw Error("--data FILE.h5 is required");
    if (o.epochs < 1 || o.batch < 1) throw Error("--epochs and --batch must be positive");
    if (o.wFm < 0 || o.wKld < 0) throw Error("loss weights must be non-negative");
    if (o.wNll < 0) o.wNll = 1.0 - o.wFm - o.wKld;  // Table 1: w_n = 1 - w_k - w_f
    if (o.wNll < 0) throw Error("--w-fm + --w-kld exceed 1; give --w-nll explicitly");
    if (!(o.valFraction > 0 && o.valFraction < 1)) throw Error("--val-fraction must lie in (0, 1)");
    if (o.checkpoint.empty()) o.checkpoint = o.out + ".ckpt";
    if (o.kldBatch <= 0) o.kldBatch = o.batch;

    // --- model ---
    std::shared_ptr<Flow> flow;
    nlohmann::json info;
    if (!o.model.empty()) {
        flow = loadFlow(o.model, &info);
    } else {
        auto m = buildMolecularModel(o.molecule, o.transform, o.inverse, o.seed);
        flow = m.flow;
        info = m.info;
    }
    if (o.temperature <= 0) o.temperature = info.value("temperature_K", 300.0);
    info["temperature_K"] = o.temperature;
    const double kT = kBoltzmann * o.temperature;  // kJ/mol

    // --- data ---
    auto dataset = loadMolecularData(o.data, flow->dataDim(), o.maxFrames, o.wFm > 0);
    const int64_t frames = dataset.positions.size(0);
    if (frames < 10) throw Error(o.data + ": need at least 10 frames, found " + std::to_string(frames));
    auto perm = torch::randperm(frames, at::detail::createCPUGenerator(o.seed), torch::kLong);
    const int64_t nVal = std::max<int64_t>(1, static_cast<int64_t>(std::round(o.valFraction * static_cast<double>(frames))));
    auto valIdx = perm.narrow(0, 0, nVal), trainIdx = perm.narrow(0, nVal, frames - nVal);
    auto xTrain = dataset.positions.index_select(0, trainIdx), xVal = dataset.positions.index_select(0, valIdx);
    torch::Tensor fTrain, fVal;  // reference forces in units of k_B T (1/nm)
    if (dataset.forces.defined()) {
        fTrain = dataset.forces.index_select(0, trainIdx) / kT;
        fVal = dataset.forces.index_select(0, valIdx) / kT;
    }
    if (o.wFm > 0 && !fTrain.defined()) throw Error(o.data + ": force matching (--w-fm) needs forces in the dataset");

    std::unique_ptr<TargetEnergy> target;
    if (o.wKld > 0 || o.kldValSamples > 0) target = makeTargetEnergy(o.molecule, o.temperature);

    std::cerr << "train: " << flow->parameterCount() << " parameters; " << xTrain.size(0) << " training and " << xVal.size(0)
              << " validation frames of " << o.data << "; loss " << o.wNll << " NLL + " << o.wKld << " KLD + " << o.wFm
              << " FM; T = " << o.temperature << " K\n";

    torch::optim::Adam opt(flow->parameters(), torch::optim::AdamOptions(o.lr));
    nlohmann::json history = nlohmann::json::array();
    int64_t startEpoch = 0;
    double best = INFINITY;
    if (o.resume && std::filesystem::exists(o.checkpoint + ".json")) {
        auto state = nlohmann::json::parse(readFile(o.checkpoint + ".json"));
        auto ckptModel = loadFlow(o.checkpoint + ".flow");
        {
            torch::NoGradGuard ng;
            auto dst = flow->named_parameters();
            for (auto& p : ckptModel->named_parameters()) dst[p.key()].copy_(p.value());
        }
        torch::load(opt, o.checkpoint + ".optim");
        startEpoch = state.at("epoch").get<int64_t>();
        history = state.at("history");
        best = state.value("best_validation_loss", INFINITY);
        std::cerr << "train: resumed from " << o.checkpoint << " after epoch " << startEpoch << "\n";
    }

    auto lambdaCut = [](const torch::Tensor& e) {  // SI-2.5 energy cut for the reverse KL
        return torch::where(e <= 1e3, e, 1e3 + torch::log1p((e - 1e3).clamp_min(0.0))).clamp_max(1e9);
    };

    auto evaluate = [&]() {
        Metrics m;
        double nll = 0, fme = 0;
        const int64_t nFme = std::min<int64_t>(xVal.size(0), o.valMaxFrames);
        for (int64_t s = 0; s < xVal.size(0); s += 512) {
            const int64_t n = std::min<int64_t>(512, xVal.size(0) - s);
            auto x = xVal.narrow(0, s, n);
            if (fVal.defined() && s < nFme) {
                const int64_t nf = std::min<int64_t>(n, nFme - s);
                auto [u, grad] = flow->energyAndGradient(x.narrow(0, 0, nf));
                fme += (fVal.narrow(0, s, nf) + grad).pow(2).sum().item<double>();
                if (nf < n) {
                    torch::NoGradGuard ng;
                    u = torch::cat({u, -flow->logProb(x.narrow(0, nf, n - nf))});
                }
                nll += u.sum().item<double>();
            } else {
                torch::NoGradGuard ng;
                nll -= flow->logProb(x).sum().item<double>();
            }
        }
        m.nll = nll / static_cast<double>(xVal.size(0));
        if (fVal.defined()) m.fme = fme / static_cast<double>(nFme * xVal.size(1));  // per Cartesian component
        if (target && o.kldValSamples > 0) {
            torch::NoGradGuard ng;
            auto s = flow->sample(o.kldValSamples);
            auto u = target->energies(s.out);
            m.kld = (lambdaCut(u) + s.logdet).mean().item<double>();
        }
        return m;
    };
    auto validationLoss = [&](const Metrics& m) {
        double l = o.wNll * m.nll;
        if (o.wFm > 0) l += o.wFm * m.fme;
        if (o.wKld > 0) l += o.wKld * m.kld;
        return l;
    };

    const int64_t batchesPerEpoch = std::max<int64_t>(1, xTrain.size(0) / o.batch);
    for (int64_t epoch = startEpoch; epoch < o.epochs; ++epoch) {
        const double lr = o.lr * std::pow(o.lrDecay, static_cast<double>(epoch));
        static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options()).lr(lr);
        auto order = torch::randperm(xTrain.size(0), at::detail::createCPUGenerator(o.seed * 7919 + static_cast<uint64_t>(epoch)),
                                     torch::kLong);
        auto kldGen = at::detail::createCPUGenerator(o.seed * 104729 + static_cast<uint64_t>(epoch));
        Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(o.epochs), batchesPerEpoch);
        double running = 0;
        for (int64_t b = 0; b < batchesPerEpoch; ++b) {
            auto idx = order.narrow(0, b * o.batch, o.batch);
            auto x = xTrain.index_select(0, idx);
            torch::Tensor loss = torch::zeros({}, torch::kFloat64);
            if (o.wFm > 0) {
                auto [u, grad] = flow->energyAndGradient(x, /*createGraph=*/true);
                if (o.wNll > 0) loss = loss + o.wNll * u.mean();
                // FM per Cartesian component (mean over the 3n components): the normalisation under which
                // the paper's w_f = 0.001 (Table 1) balances NLL and FM, and its FME values compare.
                loss = loss + o.wFm * (fTrain.index_select(0, idx) + grad).pow(2).mean();
            } else if (o.wNll > 0) {
                loss = loss - o.wNll * flow->logProb(x).mean();
            }
            if (o.wKld > 0) {
                auto z = torch::rand({o.kldBatch, flow->dim()}, kldGen, torch::kFloat64);
                auto r = flow->inverse(z);
                auto u = target->energiesWithGradient(r.out);
                loss = loss + o.wKld * (lambdaCut(u) - r.logdet).mean();
            }
            if (!std::isfinite(loss.item<double>())) {
                std::cerr << "\nwarning: non-finite loss in epoch " << epoch + 1 << ", batch " << b + 1 << "; batch skipped\n";
                continue;
            }
            opt.zero_grad();
            loss.backward();
            opt.step();
            running = b == 0 ? loss.item<double>() : 0.95 * running + 0.05 * loss.item<double>();
            std::ostringstream s;
            s << "loss " << std::fixed << std::setprecision(3) << running << ", lr " << std::scientific << std::setprecision(1) << lr;
            progress.update(b + 1, s.str());
        }
        auto m = evaluate();
        const double vl = validationLoss(m);
        std::ostringstream s;
        s << std::setprecision(5) << "validation: NLL " << m.nll << " nats";
        if (!std::isnan(m.fme)) s << ", FME " << m.fme << " nm^-2";
        if (!std::isnan(m.kld)) s << ", KLD " << m.kld << " (+const)";
        progress.finish(s.str());
        nlohmann::json entry{{"epoch", epoch + 1}, {"learning_rate", lr}, {"train_loss", running}, {"val_nll_nats", m.nll}};
        if (!std::isnan(m.fme)) entry["val_fme_per_nm2"] = m.fme;
        if (!std::isnan(m.kld)) entry["val_kld"] = m.kld;
        history.push_back(entry);
        info["training"] = {{"data", o.data},       {"epochs_done", epoch + 1}, {"w_nll", o.wNll}, {"w_fm", o.wFm},
                            {"w_kld", o.wKld},      {"batch", o.batch},          {"lr", o.lr},      {"lr_decay", o.lrDecay},
                            {"history", history}};
        if (vl < best) {
            best = vl;
            saveFlow(*flow, o.out, info);
            std::cerr << "  best so far (validation loss " << vl << "): saved " << o.out << "\n";
        }
        // checkpoint: model, optimizer, progress (each written atomically; the JSON last)
        saveFlow(*flow, o.checkpoint + ".flow", info);
        torch::save(opt, o.checkpoint + ".optim.tmp");
        std::filesystem::rename(o.checkpoint + ".optim.tmp", o.checkpoint + ".optim");
        writeJson(o.checkpoint + ".json", {{"epoch", epoch + 1}, {"history", history}, {"best_validation_loss", best}});
    }
    nlohmann::json report{{"model", o.out},
                          {"parameters", flow->parameterCount()},
                          {"data", o.data},
                          {"train_frames", xTrain.size(0)},
                          {"validation_frames", xVal.size(0)},
                          {"weights", {{"nll", o.wNll}, {"kld", o.wKld}, {"fm", o.wFm}}},
                          {"temperature_K", o.temperature},
                          {"best_validation_loss", best},
                          {"history", history}};
    if (!o.json.empty()) writeJson(o.json, report);
    std::cout << "trained model: " << o.out << " (best validation loss " << best << ")\n";
}

}  // namespace

void registerTrain(CLI::App& app) {
    auto o = std::make_shared<TrainOptions>();
    auto* cmd = app.add_subcommand("train", "Train a molecular flow: w_n NLL + w_k KLD + w_f force matching");
    addMoleculeOptions(*cmd, o->molecule);
    cmd->add_option("--data", o->data, "H5MD dataset (positions; forces for --w-fm)")->required();
    cmd->add_option("--model", o->model, "start from this model file instead of a new one");
    cmd->add_option("--transform", o->transform, "new model's transform")->check(CLI::IsMember({"smooth", "spline"}))->capture_default_str();
    cmd->add_flag("--inverse", o->inverse, "new model with the smooth transforms in the inverse direction (density by root finding)");
    cmd->add_option("--out", o->out, "best model (by validation loss)")->capture_default_str();
    cmd->add_option("--epochs", o->epochs, "epochs")->capture_default_str();
    cmd->add_option("--batch", o->batch, "batch size")->capture_default_str();
    cmd->add_option("--lr", o->lr, "Adam learning rate")->capture_default_str();
    cmd->add_option("--lr-decay", o->lrDecay, "learning-rate factor per epoch")->capture_default_str();
    cmd->add_option("--w-nll", o->wNll, "NLL weight (default 1 - w_kld - w_fm)");
    cmd->add_option("--w-fm", o->wFm, "force-matching weight (FM: mean squared error per Cartesian component, 1/nm^2)")->capture_default_str();
    cmd->add_option("--w-kld", o->wKld, "reverse-KL weight (target energy by OpenMM)")->capture_default_str();
    cmd->add_option("--kld-batch", o->kldBatch, "flow samples per batch for the KLD (default: --batch)");
    cmd->add_option("--kld-val-samples", o->kldValSamples, "flow samples for the validation KLD (0: skip)")->capture_default_str();
    cmd->add_option("--val-fraction", o->valFraction, "validation fraction")->capture_default_str();
    cmd->add_option("--val-max-frames", o->valMaxFrames, "validation frames used for the FME")->capture_default_str();
    cmd->add_option("--max-frames", o->maxFrames, "use at most this many frames of the dataset (0: all)")->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "K (default: the model's, else 300)");
    cmd->add_option("--checkpoint", o->checkpoint, "checkpoint prefix (default: OUT.ckpt)");
    cmd->add_flag("--resume", o->resume, "continue from the checkpoint");
    cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
    cmd->add_option("--threads", o->threads, "LibTorch threads (0: all cores)")->capture_default_str();
    cmd->add_option("--json", o->json, "write the training report as JSON");
    cmd->callback([o]() { runTrain(*o); });
}

}  // namespace flowforce::cli
