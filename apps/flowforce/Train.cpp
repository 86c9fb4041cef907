// flowforce train: trains a molecular flow on an H5MD dataset with the weighted loss of the seed
// paper (eqs. 2-5): w_n NLL + w_k KLD + w_f FM, Adam with a per-epoch learning-rate decay, 90/10
// train/validation split, validation metrics after every epoch, best model kept. Interruptible: a
// checkpoint after every epoch lets the same command continue where it stopped, and with --threads 1
// the continued run ends with the same bytes as an uninterrupted one.
#include "Common.h"
#include "Molecular.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/Losses.h"
#include "flowforce/flow/ModelFile.h"
#include "flowforce/flow/Physics.h"
#include "flowforce/md/Molecule.h"

#include <CLI/CLI.hpp>

#include <algorithm>
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
    std::string transform = "smooth", icRanges = "paper", activation = "sin";
    double icMargin = 0.5, icGaussScale = 1.0, sharpnessSpan = 10.0;
    bool inverse = false, resume = false, restart = false;
    int64_t epochs = 10, batch = 128, kldBatch = 0, maxFrames = 0, valMaxFrames = 2000, kldValSamples = 512;
    double lr = 5e-4, lrDecay = 0.7, wNll = -1.0, wFm = 0.0, wKld = 0.0, valFraction = 0.1;
    double temperature = 0.0;
    double wRough = 0.0, roughStepFs = 1.0;  // sub-step roughness penalty (nats^2) and its MD step (fs)
    int64_t roughBatch = 32, roughSamples = 0;  // data frames per batch; flow samples drawn per epoch
    uint64_t seed = 1;
    int threads = 0;
};

/** Metrics of one evaluation pass; NaN where not computed. */
struct Metrics {
    double nll = NAN, fme = NAN, kld = NAN, rough = NAN, roughFlow = NAN;  // roughness on data frames, on flow samples
};

/** Where a run stands after its last completed epoch. */
struct TrainingProgress {
    int64_t epoch = 0;
    nlohmann::json history = nlohmann::json::array();
    double best = INFINITY;  // lowest finite validation loss so far
    int64_t bestEpoch = 0;
};

// Random streams: each epoch draws its batch order, its reverse-KL latents and its validation samples
// from generators seeded by the run's seed, the stream and the epoch, so an epoch draws the same numbers
// whether or not the run was interrupted before it.
constexpr uint64_t kOrderStream = 7919, kKldStream = 104729, kValidationStream = 1299709, kRoughStream = 15485863,
                   kRoughPoolStream = 32452843;
at::Generator epochGenerator(uint64_t seed, uint64_t stream, int64_t epoch) {
    return at::detail::createCPUGenerator(seed * stream + static_cast<uint64_t>(epoch));
}

/** A file's identity: its absolute path, size and a hash of its bytes. */
nlohmann::json fileFingerprint(const std::string& path) {
    std::string bytes;
    try {
        bytes = readFile(path);
    } catch (const std::exception& e) {
        throw Error(e.what());
    }
    return {{"path", std::filesystem::absolute(path).string()}, {"bytes", bytes.size()}, {"fnv1a64", hashHex(bytes)}};
}

/** The identity of a training run: everything that decides its result except the number of epochs (a run
 *  may be extended) and the thread count. A checkpoint continues only the run it belongs to. */
nlohmann::json runIdentity(const TrainOptions& o, const Flow& flow) {
    nlohmann::json id{{"data", fileFingerprint(o.data)},
            {"start_model", o.model.empty() ? nlohmann::json("new") : fileFingerprint(o.model)},
            {"architecture", hashHex(flow.config().dump())},
            {"seed", o.seed},
            {"w_nll", o.wNll},
            {"w_fm", o.wFm},
            {"w_kld", o.wKld},
            {"batch", o.batch},
            {"kld_batch", o.kldBatch},
            {"lr", o.lr},
            {"lr_decay", o.lrDecay},
            {"temperature_K", o.temperature},
            {"val_fraction", o.valFraction},
            {"max_frames", o.maxFrames},
            {"val_max_frames", o.valMaxFrames},
            {"kld_val_samples", o.kldValSamples}};
    if (o.wRough > 0) {  // only then: checkpoints of runs without the penalty stay continuable
        id["w_rough"] = o.wRough;
        id["rough_batch"] = o.roughBatch;
        id["rough_step_fs"] = o.roughStepFs;
        if (o.roughSamples > 0) id["rough_samples"] = o.roughSamples;
    }
    return id;
}

/** The entries in which two run identities differ, e.g. "seed, data". */
std::string differences(const nlohmann::json& a, const nlohmann::json& b) {
    std::string names;
    for (const auto& [key, value] : b.items())
        if (!a.contains(key) || a[key] != value) names += (names.empty() ? "" : ", ") + key;
    return names;
}

/**
 * The checkpoint of a run, after every epoch: <prefix>.state holds the weights, the optimizer state and
 * the progress in one LibTorch archive, so that one atomic rename commits an epoch (separate files could
 * be caught half-way by a kill, with weights and optimizer of different epochs); <prefix>.json repeats
 * the progress and the run's identity for people, written after it.
 */
struct Checkpoint {
    std::string prefix;

    std::string statePath() const { return prefix + ".state"; }
    std::string jsonPath() const { return prefix + ".json"; }
    bool exists() const { return std::filesystem::exists(statePath()); }
    void remove() const {
        std::filesystem::remove(statePath());
        std::filesystem::remove(jsonPath());
    }

    void save(const Flow& flow, torch::optim::Optimizer& opt, const nlohmann::json& identity, const TrainingProgress& p) const {
        const nlohmann::json progress{{"run", identity},
                                      {"epoch", p.epoch},
                                      {"history", p.history},
                                      {"best_validation_loss", p.best},  // null while no epoch gave a finite one
                                      {"best_epoch", p.bestEpoch}};
        torch::serialize::OutputArchive archive, weights, optimizer;
        flow.save(weights);
        opt.save(optimizer);
        archive.write("weights", weights);
        archive.write("optimizer", optimizer);
        archive.write("progress", c10::IValue(progress.dump()));
        std::ostringstream bytes;
        archive.save_to(bytes);
        try {
            writeFileAtomically(statePath(), bytes.str());
        } catch (const std::exception& e) {
            throw Error(e.what());
        }
        writeJson(jsonPath(), progress);
    }

    /** Restores weights and optimizer state of a checkpoint of the run with this identity, and returns its
     *  progress; refuses (Error) a damaged checkpoint or one of another run. */
    TrainingProgress load(Flow& flow, torch::optim::Optimizer& opt, const nlohmann::json& identity) const {
        const std::string restart = "; --restart discards it, another --checkpoint keeps it";
        torch::serialize::InputArchive archive, weights, optimizer;
        nlohmann::json progress;
        try {
            const std::string bytes = readFile(statePath());
            archive.load_from(bytes.data(), bytes.size());
            c10::IValue text;
            archive.read("progress", text);
            progress = nlohmann::json::parse(text.toStringRef());
        } catch (const std::exception& e) {
            throw Error("checkpoint '" + statePath() + "' is damaged (" + errorMessage(e) + ")" + restart);
        }
        if (!progress.contains("run") || progress["run"] != identity)
            throw Error("checkpoint '" + statePath() + "' belongs to another run (different " +
                        differences(progress.value("run", nlohmann::json::object()), identity) + ")" + restart);
        try {
            archive.read("weights", weights);
            flow.load(weights);
            archive.read("optimizer", optimizer);
            opt.load(optimizer);
            TrainingProgress p;
            p.epoch = progress.at("epoch").get<int64_t>();
            p.history = progress.at("history");
            if (progress.at("best_validation_loss").is_number()) p.best = progress["best_validation_loss"].get<double>();
            p.bestEpoch = progress.at("best_epoch").get<int64_t>();
            return p;
        } catch (const std::exception& e) {
            throw Error("checkpoint '" + statePath() + "' is damaged (" + errorMessage(e) + ")" + restart);
        }
    }
};

/** Checks the options and fills in their defaults. */
void checkOptions(TrainOptions& o) {
    if (o.data.empty()) throw Error("--data FILE.h5 is required");
    if (o.epochs < 1 || o.batch < 1) throw Error("--epochs and --batch must be positive");
    if (o.wFm < 0 || o.wKld < 0) throw Error("loss weights must be non-negative");
    if (!(o.wRough >= 0 && std::isfinite(o.wRough))) throw Error("--w-rough must be >= 0");
    if (o.wRough > 0 && (o.roughBatch < 1 || !(o.roughStepFs > 0)))
        throw Error("--rough-batch and --rough-step-fs must be positive");
    if (o.roughSamples < 0) throw Error("--rough-samples must be >= 0");
    if (o.wNll < 0) o.wNll = 1.0 - o.wFm - o.wKld;  // Table 1: w_n = 1 - w_k - w_f
    if (o.wNll < 0) throw Error("--w-fm + --w-kld exceed 1; give --w-nll explicitly");
    if (!(o.valFraction > 0 && o.valFraction < 1)) throw Error("--val-fraction must lie in (0, 1)");
    if (!o.model.empty() && std::filesystem::exists(o.model) && std::filesystem::exists(o.out) &&
        std::filesystem::equivalent(o.model, o.out))
        throw Error("--model and --out are the same file: the best model would replace the starting point (give another --out)");
    if (o.checkpoint.empty()) o.checkpoint = o.out + ".ckpt";
    if (o.kldBatch <= 0) o.kldBatch = o.batch;
    if (!(o.icMargin >= 0 && std::isfinite(o.icMargin))) throw Error("--ic-margin must be >= 0");
    if (!(o.icGaussScale > 0 && std::isfinite(o.icGaussScale))) throw Error("--ic-gauss-scale must be > 0");
    if (o.icRanges != "paper" && !o.model.empty())
        throw Error("--ic-ranges " + o.icRanges + " fits a new model's ranges; --model brings its own");
    if (o.sharpnessSpan != 10.0 && !o.model.empty())
        throw Error("--sharpness-span shapes a new model's transforms; --model brings its own");
}

/** The new model's make-up from the options. */
ModelChoice modelChoice(const TrainOptions& o) {
    ModelChoice c;
    c.transform = o.transform, c.inverse = o.inverse, c.activation = o.activation, c.seed = o.seed;
    c.sharpnessSpan = o.sharpnessSpan;
    return c;
}

void runTrain(TrainOptions o) {
    setThreads(o.threads);
    checkOptions(o);
    const Checkpoint checkpoint{o.checkpoint};
    for (const auto& path : {o.out, o.json, checkpoint.statePath(), checkpoint.jsonPath()})
        if (!path.empty()) removeStaleTemporaries(path);  // left by a run that was killed while writing
    if (o.restart) checkpoint.remove();
    if (o.resume && !checkpoint.exists()) throw Error("--resume: no checkpoint '" + checkpoint.statePath() + "' to continue from");

    // --- model ---
    std::shared_ptr<Flow> flow;
    nlohmann::json info;
    if (!o.model.empty()) {
        try {
            flow = loadFlow(o.model, &info);
        } catch (const std::exception& e) {
            throw Error(e.what());
        }
    } else {
        auto m = buildMolecularModel(o.molecule, modelChoice(o));
        flow = m.flow;
        info = m.info;
    }
    if (o.temperature <= 0) o.temperature = info.value("temperature_K", 300.0);
    info["temperature_K"] = o.temperature;
    const double kT = kBoltzmannKJPerMolK * o.temperature;  // kJ/mol

    // --- data ---
    auto dataset = loadMolecularData(o.data, flow->dataDim(), o.maxFrames, o.wFm > 0);
    const int64_t frames = dataset.positions.size(0);
    if (frames < 10) throw Error(o.data + ": need at least 10 frames, found " + std::to_string(frames));
    auto perm = torch::randperm(frames, at::detail::createCPUGenerator(o.seed), torch::kLong);
    const int64_t nVal = std::max<int64_t>(1, static_cast<int64_t>(std::round(o.valFraction * static_cast<double>(frames))));
    auto valIdx = perm.narrow(0, 0, nVal), trainIdx = perm.narrow(0, nVal, frames - nVal);
    auto xTrain = dataset.positions.index_select(0, trainIdx), xVal = dataset.positions.index_select(0, valIdx);
    if (o.batch > xTrain.size(0))
        throw Error("--batch " + std::to_string(o.batch) + " exceeds the " + std::to_string(xTrain.size(0)) + " training frames of " + o.data);
    torch::Tensor fTrain, fVal;  // reference forces in units of k_B T (1/nm)
    if (dataset.forces.defined()) {
        fTrain = dataset.forces.index_select(0, trainIdx) / kT;
        fVal = dataset.forces.index_select(0, valIdx) / kT;
    }
    if (o.wFm > 0 && !fTrain.defined()) throw Error(o.data + ": force matching (--w-fm) needs forces in the dataset");
    if (o.model.empty() && o.icRanges != "paper") {  // the same untrained weights, with ranges fitted to the training frames
        ModelChoice c = modelChoice(o);
        c.temperature = o.temperature, c.rangeFrames = xTrain, c.rangeFit = o.icRanges, c.rangeMargin = o.icMargin;
        c.gaussScale = o.icGaussScale;
        auto m = buildMolecularModel(o.molecule, c);
        flow = m.flow;
        info = m.info;
        info["temperature_K"] = o.temperature;
        if (o.icRanges == "gauss")
            std::cerr << "train: bonds and angles enter through Gaussians fitted to the " << xTrain.size(0)
                      << " training frames (each coordinate's mean; " << o.icGaussScale << " x its standard deviation)\n";
        else
            std::cerr << "train: bond and angle ranges fitted to the " << xTrain.size(0) << " training frames (margin "
                      << o.icMargin << " of each coordinate's spread)\n";
    }

    // sub-step roughness: thermal steps need the atoms' masses
    std::vector<double> masses;
    if (o.wRough > 0) {
        masses = md::atomMasses(md::readPDB(moleculePDB(o.molecule)));
        if (static_cast<int64_t>(3 * masses.size()) != flow->dataDim())
            throw Error("--w-rough: the molecule has " + std::to_string(masses.size()) + " atoms, the model " +
                        std::to_string(flow->dataDim() / 3));
    }
    const int64_t roughVal = std::min<int64_t>(xVal.size(0), 256);  // validation frames for the roughness

    std::unique_ptr<TargetEnergy> target;
    if (o.wKld > 0 || o.kldValSamples > 0) target = makeTargetEnergy(o.molecule, o.temperature);

    std::cerr << "train: " << flow->parameterCount() << " parameters; " << xTrain.size(0) << " training and " << xVal.size(0)
              << " validation frames of " << o.data << "; loss " << o.wNll << " NLL + " << o.wKld << " KLD + " << o.wFm
              << " FM";
    if (o.wRough > 0)
        std::cerr << " + " << o.wRough << " sub-step roughness (" << o.roughStepFs << " fs steps, on data frames"
                  << (o.roughSamples > 0 ? " and " + std::to_string(o.roughSamples) + " flow samples per epoch" : std::string()) << ")";
    std::cerr << "; T = " << o.temperature << " K\n";

    torch::optim::Adam opt(flow->parameters(), torch::optim::AdamOptions(o.lr));
    const nlohmann::json identity = runIdentity(o, *flow);
    TrainingProgress progress;
    if (checkpoint.exists()) {
        progress = checkpoint.load(*flow, opt, identity);
        if (progress.epoch > o.epochs)
            throw Error("checkpoint '" + checkpoint.statePath() + "' is at epoch " + std::to_string(progress.epoch) +
                        ", past --epochs " + std::to_string(o.epochs) + " (--restart discards it)");
        std::cerr << "train: resumed from " << checkpoint.statePath() << " after epoch " << progress.epoch
                  << " (--restart starts over)\n";
    }

    // Flow samples as base points of the roughness penalty: MD with the flow's energy samples the flow's own
    // density, so its configurations are where the integrator needs the energy smooth (data frames alone leave
    // the places the flow reaches off the data unchecked). Rows with a non-finite density are dropped.
    const bool roughOnSamples = o.wRough > 0 && o.roughSamples > 0;
    auto flowSamples = [&](int64_t n, at::Generator gen) {
        torch::NoGradGuard ng;
        auto s = flow->sample(n, torch::kFloat64, gen);
        auto finite = torch::isfinite(s.logdet).logical_and(torch::isfinite(s.out).all(1));
        return s.out.index({finite}).contiguous();
    };

    auto evaluate = [&](int64_t epoch) {
        Metrics m;
        double nll = 0, fme = 0;
        const int64_t nFme = fVal.defined() ? std::min<int64_t>(xVal.size(0), o.valMaxFrames) : 0;
        for (int64_t s = 0; s < xVal.size(0); s += 512) {
            const int64_t n = std::min<int64_t>(512, xVal.size(0) - s);
            const int64_t nf = std::clamp<int64_t>(nFme - s, 0, n);  // of which with the FME
            if (nf > 0) {
                auto l = dataLosses(*flow, xVal.narrow(0, s, nf), fVal.narrow(0, s, nf));
                nll += l.nll.item<double>() * static_cast<double>(nf);
                fme += l.fm.item<double>() * static_cast<double>(nf);
            }
            if (nf < n) {
                torch::NoGradGuard ng;
                nll += dataLosses(*flow, xVal.narrow(0, s + nf, n - nf)).nll.item<double>() * static_cast<double>(n - nf);
            }
        }
        m.nll = nll / static_cast<double>(xVal.size(0));
        if (nFme > 0) m.fme = fme / static_cast<double>(nFme);
        if (target && o.kldValSamples > 0) {
            torch::NoGradGuard ng;
            auto s = flow->sample(o.kldValSamples, torch::kFloat64, epochGenerator(o.seed, kValidationStream, epoch));
            m.kld = reverseKL(target->energies(s.out), s.logdet).item<double>();
        }
        if (o.wRough > 0) {
            torch::NoGradGuard ng;
            auto steps = thermalSteps(masses, o.temperature, o.roughStepFs, roughVal, epochGenerator(o.seed, kRoughStream, 0));
            m.rough = roughnessLoss(*flow, xVal.narrow(0, 0, roughVal), steps).item<double>();
            if (roughOnSamples) {  // the same latents and steps every epoch: epochs compare like with like
                auto x = flowSamples(roughVal, epochGenerator(o.seed, kRoughPoolStream, 0));
                m.roughFlow = roughnessLoss(*flow, x, steps.narrow(0, 0, x.size(0))).item<double>();
            }
        }
        return m;
    };
    auto validationLoss = [&](const Metrics& m) {
        double l = o.wNll * m.nll;
        if (o.wFm > 0) l += o.wFm * m.fme;
        if (o.wKld > 0) l += o.wKld * m.kld;
        if (o.wRough > 0) l += o.wRough * (roughOnSamples ? 0.5 * (m.rough + m.roughFlow) : m.rough);
        return l;
    };

    const int64_t batchesPerEpoch = std::max<int64_t>(1, xTrain.size(0) / o.batch);
    for (int64_t epoch = progress.epoch; epoch < o.epochs; ++epoch) {
        const double lr = o.lr * std::pow(o.lrDecay, static_cast<double>(epoch));
        static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options()).lr(lr);
        auto order = torch::randperm(xTrain.size(0), epochGenerator(o.seed, kOrderStream, epoch), torch::kLong);
        auto kldGen = epochGenerator(o.seed, kKldStream, epoch);
        auto roughGen = epochGenerator(o.seed, kRoughStream, epoch + 1);  // stream 0 is the validation's
        torch::Tensor pool;  // this epoch's flow samples for the roughness penalty
        if (roughOnSamples) {
            std::cerr << "epoch " << epoch + 1 << "/" << o.epochs << ": drawing " << o.roughSamples
                      << " flow samples for the roughness penalty\n";
            pool = flowSamples(o.roughSamples, epochGenerator(o.seed, kRoughPoolStream, epoch + 1));  // 0 is the validation's
        }
        Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(o.epochs), batchesPerEpoch);
        double running = NAN;
        int64_t skipped = 0;
        for (int64_t b = 0; b < batchesPerEpoch; ++b) {
            auto idx = order.narrow(0, b * o.batch, o.batch);
            torch::Tensor loss = torch::zeros({}, torch::kFloat64);
            if (o.wNll > 0 || o.wFm > 0) {
                auto l = dataLosses(*flow, xTrain.index_select(0, idx), o.wFm > 0 ? fTrain.index_select(0, idx) : torch::Tensor(),
                                    /*createGraph=*/true);
                if (o.wNll > 0) loss = loss + o.wNll * l.nll;
                if (o.wFm > 0) loss = loss + o.wFm * l.fm;
            }
            if (o.wRough > 0) {
                const int64_t n = std::min(o.roughBatch, o.batch);
                auto x = xTrain.index_select(0, idx.narrow(0, 0, n));
                if (pool.defined() && pool.size(0) > 0) {  // as many flow samples, taken in turn from the pool
                    auto rows = torch::arange(b * n, (b + 1) * n, torch::kLong).remainder(pool.size(0));
                    x = torch::cat({x, pool.index_select(0, rows)});
                }
                auto steps = thermalSteps(masses, o.temperature, o.roughStepFs, x.size(0), roughGen);
                loss = loss + o.wRough * roughnessLoss(*flow, x, steps);
            }
            if (o.wKld > 0) {
                auto s = flow->sample(o.kldBatch, torch::kFloat64, kldGen);
                loss = loss + o.wKld * reverseKL(target->energiesWithGradient(s.out), s.logdet);
            }
            const double value = loss.item<double>();
            if (!std::isfinite(value)) {
                ++skipped;
                continue;
            }
            opt.zero_grad();
            loss.backward();
            opt.step();
            running = std::isnan(running) ? value : 0.95 * running + 0.05 * value;
            std::ostringstream s;
            s << "loss " << std::fixed << std::setprecision(3) << running << ", lr " << std::scientific << std::setprecision(1) << lr;
            bar.update(b + 1, s.str());
        }
        auto m = evaluate(epoch);
        const double vl = validationLoss(m);
        std::ostringstream s;
        s << std::setprecision(5) << "validation: NLL " << m.nll << " nats";
        if (!std::isnan(m.fme)) s << ", FME " << m.fme << " nm^-2";
        if (!std::isnan(m.kld)) s << ", KLD " << m.kld << " k_B T (+const)";
        if (!std::isnan(m.rough)) s << ", roughness " << m.rough << " nats^2";
        if (!std::isnan(m.roughFlow)) s << " (on flow samples " << m.roughFlow << ")";
        bar.finish(s.str());
        if (skipped > 0)
            std::cerr << "warning: epoch " << epoch + 1 << ": " << skipped << " of " << batchesPerEpoch
                      << " batches had a non-finite loss and were skipped\n";
        nlohmann::json entry{{"epoch", epoch + 1}, {"learning_rate", lr}, {"train_loss", running}, {"val_nll_nats", m.nll}};
        if (!std::isnan(m.fme)) entry["val_fme_per_nm2"] = m.fme;
        if (!std::isnan(m.kld)) entry["val_kld"] = m.kld;
        if (!std::isnan(m.rough)) entry["val_roughness_nats2"] = m.rough;
        if (!std::isnan(m.roughFlow)) entry["val_roughness_flow_samples_nats2"] = m.roughFlow;
        progress.history.push_back(entry);
        progress.epoch = epoch + 1;
        info["training"] = {{"data", o.data},       {"epochs_done", epoch + 1},           {"w_nll", o.wNll},
                            {"w_fm", o.wFm},        {"w_kld", o.wKld},                    {"w_rough", o.wRough},
                            {"rough_samples", o.roughSamples}, {"batch", o.batch},       {"lr", o.lr},
                            {"lr_decay", o.lrDecay}, {"seed", o.seed},                    {"history", progress.history}};
        if (std::isfinite(vl) && vl < progress.best) {
            progress.best = vl;
            progress.bestEpoch = epoch + 1;
            saveFlow(*flow, o.out, info);
            std::cerr << "  best so far (validation loss " << vl << "): saved " << o.out << "\n";
        }
        checkpoint.save(*flow, opt, identity, progress);
    }
    if (progress.bestEpoch == 0)
        throw Error("no epoch gave a finite validation loss (" + std::to_string(progress.epoch) +
                    " trained); no model written (try a smaller --lr, check the data)");
    if (!std::filesystem::exists(o.out))
        throw Error("the checkpoint says training is complete but '" + o.out + "' is missing (--restart trains again)");
    nlohmann::json report{{"model", o.out},
                          {"parameters", flow->parameterCount()},
                          {"data", o.data},
                          {"train_frames", xTrain.size(0)},
                          {"validation_frames", xVal.size(0)},
                          {"weights", {{"nll", o.wNll}, {"kld", o.wKld}, {"fm", o.wFm}, {"rough", o.wRough}}},
                          {"temperature_K", o.temperature},
                          {"best_validation_loss", progress.best},
                          {"best_epoch", progress.bestEpoch},
                          {"history", progress.history}};
    if (!o.json.empty()) writeJson(o.json, report);
    std::cout << "trained model: " << o.out << " (best of " << o.epochs << " epochs: epoch " << progress.bestEpoch
              << ", validation loss " << progress.best << " = " << o.wNll << " NLL [nats] + " << o.wFm << " FME [nm^-2] + "
              << o.wKld << " KLD [k_B T]";
    if (o.wRough > 0) std::cout << " + " << o.wRough << " roughness [nats^2]";
    std::cout << ")\n";
}

}  // namespace

void registerTrain(CLI::App& app) {
    auto o = std::make_shared<TrainOptions>();
    auto* cmd = app.add_subcommand("train", "Train a molecular flow: w_n NLL + w_k KLD + w_f force matching; rerun the same "
                                            "command to continue after an interruption");
    addMoleculeOptions(*cmd, o->molecule);
    cmd->add_option("--data", o->data, "H5MD dataset (positions; forces for --w-fm)")->required();
    cmd->add_option("--model", o->model, "start from this model file instead of a new one");
    cmd->add_option("--transform", o->transform, "new model's transform")->check(CLI::IsMember({"smooth", "spline"}))->capture_default_str();
    cmd->add_flag("--inverse", o->inverse, "new model with the smooth transforms in the inverse direction (density by root finding)");
    cmd->add_option("--sharpness-span", o->sharpnessSpan,
                    "new smooth model's ramp sharpness range: alpha in [0.866, 0.866 + span] (the paper's span: 10; "
                    "smaller keeps bumps wider)")
        ->check(CLI::Range(0.0, 10.0))
        ->capture_default_str();
    cmd->add_option("--activation", o->activation, "new model's conditioner activation (the paper's: sin)")
        ->check(CLI::IsMember({"sin", "silu", "tanh"}))
        ->capture_default_str();
    cmd->add_option("--ic-ranges", o->icRanges,
                    "new model's bond and angle maps: paper (fixed ranges [0.05, 0.3] nm and [0.15 pi, pi] rad), data "
                    "(per-coordinate ranges fitted to the training frames) or gauss (per-coordinate normal CDF at the "
                    "training frames' mean and standard deviation: an untrained flow is harmonic in bonds and angles)")
        ->check(CLI::IsMember({"paper", "data", "gauss"}))
        ->capture_default_str();
    cmd->add_option("--ic-margin", o->icMargin, "with --ic-ranges data: margin on each side, in units of the coordinate's spread in the data")
        ->capture_default_str();
    cmd->add_option("--ic-gauss-scale", o->icGaussScale,
                    "with --ic-ranges gauss: each map's standard deviation in units of the coordinate's in the data")
        ->capture_default_str();
    cmd->add_option("--out", o->out, "best model (by validation loss)")->capture_default_str();
    cmd->add_option("--epochs", o->epochs, "epochs")->capture_default_str();
    cmd->add_option("--batch", o->batch, "batch size")->capture_default_str();
    cmd->add_option("--lr", o->lr, "Adam learning rate")->capture_default_str();
    cmd->add_option("--lr-decay", o->lrDecay, "learning-rate factor per epoch")->capture_default_str();
    cmd->add_option("--w-nll", o->wNll, "NLL weight (default 1 - w_kld - w_fm)");
    cmd->add_option("--w-fm", o->wFm, "force-matching weight (FM: mean squared error per Cartesian component, 1/nm^2)")->capture_default_str();
    cmd->add_option("--w-kld", o->wKld, "reverse-KL weight (target energy by OpenMM)")->capture_default_str();
    cmd->add_option("--w-rough", o->wRough,
                    "sub-step roughness weight: penalises the squared fourth difference of -log p (nats^2) along random "
                    "thermal MD steps from training frames, structure narrower than a step that Verlet cannot integrate")
        ->capture_default_str();
    cmd->add_option("--rough-batch", o->roughBatch, "frames per batch for the roughness penalty")->capture_default_str();
    cmd->add_option("--rough-samples", o->roughSamples,
                    "flow samples drawn at the start of each epoch as further base points of the roughness penalty (where MD "
                    "with the flow goes); each batch adds --rough-batch of them to its data frames (0: data frames only)")
        ->capture_default_str();
    cmd->add_option("--rough-step-fs", o->roughStepFs,
                    "time step of the roughness penalty's thermal steps, fs: structure up to about this step's length is "
                    "smoothed, so a step longer than the MD's leaves a margin (smoother energy, less accurate forces)")
        ->capture_default_str();
    cmd->add_option("--kld-batch", o->kldBatch, "flow samples per batch for the KLD (default: --batch)");
    cmd->add_option("--kld-val-samples", o->kldValSamples, "flow samples for the validation KLD (0: skip)")->capture_default_str();
    cmd->add_option("--val-fraction", o->valFraction, "validation fraction")->capture_default_str();
    cmd->add_option("--val-max-frames", o->valMaxFrames, "validation frames used for the FME")->capture_default_str();
    cmd->add_option("--max-frames", o->maxFrames, "use at most this many frames of the dataset (0: all)")->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "K (default: the model's, else 300)");
    cmd->add_option("--checkpoint", o->checkpoint,
                    "checkpoint prefix (default: OUT.ckpt): PREFIX.state after every epoch, PREFIX.json; a checkpoint of "
                    "the same run is continued, one of another run (data, model, seed, loss, batch, learning rate) refused");
    auto* resume = cmd->add_flag("--resume", o->resume, "require a checkpoint to continue from (without it one is used if present)");
    cmd->add_flag("--restart", o->restart, "discard the checkpoint and start over")->excludes(resume);
    cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
    cmd->add_option("--threads", o->threads, "LibTorch threads (0: all cores; 1: reproducible bit for bit)")->capture_default_str();
    cmd->add_option("--json", o->json, "write the training report as JSON");
    cmd->callback([o]() { runTrain(*o); });
}

}  // namespace flowforce::cli
