// summarizeModel / loadPotential / loadPotentialFromBytes: the model behind the OpenMM plugin (Potential.h).
// Two kinds of files:
//  - TorchScript modules (a zip archive, starting with "PK"): forward(positions [n,3] float64, nm) -> -log p
//    (a scalar). Optional module attributes: `num_particles` (int) and `temperature` (float, K).
//  - FlowForce model files (*.flow, safetensors layout): molecular flows (internal-coordinate embedding),
//    evaluated by the native evaluator (default) or the LibTorch flow.
#include "flowforce/flow/Potential.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/ModelFile.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>

namespace flowforce {

namespace {

/** The first line of a (possibly multi-line, backtrace-carrying) LibTorch error message. */
std::string firstLine(const std::string& text) {
    const auto end = text.find('\n');
    return end == std::string::npos ? text : text.substr(0, end);
}

bool looksLikeTorchScript(const std::string& bytes) {
    return bytes.size() >= 4 && bytes.compare(0, 2, "PK") == 0;
}

/** A TorchScript module evaluated with autograd. */
class TorchScriptPotential : public Potential {
public:
    TorchScriptPotential(torch::jit::Module module, const std::string& name, int numParticles)
        : module_(std::move(module)), name_(name) {
        module_.eval();
        int declared = -1;
        if (module_.hasattr("num_particles")) {
            const auto v = module_.attr("num_particles");
            if (!v.isInt() || v.toInt() <= 0)
                throw std::runtime_error(name_ + ": attribute num_particles of the TorchScript module must be a positive int");
            declared = static_cast<int>(v.toInt());
        }
        if (module_.hasattr("temperature")) {
            const auto v = module_.attr("temperature");
            if (!(v.isDouble() || v.isInt()) || !(v.toScalar().toDouble() > 0) || !std::isfinite(v.toScalar().toDouble()))
                throw std::runtime_error(name_ + ": attribute temperature of the TorchScript module must be a positive number (K)");
            temperature_ = v.toScalar().toDouble();
        }
        if (declared > 0 && numParticles > 0 && declared != numParticles)
            throw std::runtime_error(name_ + ": the model describes " + std::to_string(declared) + " particles but " +
                                     std::to_string(numParticles) + " were given");
        n_ = numParticles > 0 ? numParticles : declared;
        if (n_ <= 0)
            throw std::runtime_error(name_ + ": the TorchScript module does not declare its number of particles "
                                             "(int attribute num_particles); give the particles explicitly");
        if (!module_.find_method("forward"))
            throw std::runtime_error(name_ + ": the TorchScript module has no forward method");
    }

    int numParticles() const override { return n_; }
    double modelTemperature() const override { return temperature_; }
    std::string describe() const override { return "TorchScript module, " + std::to_string(n_) + " particles, LibTorch"; }
    double energy(const std::vector<double>& positions) override {
        std::vector<double> g;
        return evaluate(positions, g);
    }

    double evaluate(const std::vector<double>& positions, std::vector<double>& gradient) override {
        const size_t size = static_cast<size_t>(n_) * 3;
        if (positions.size() != size)
            throw std::runtime_error(name_ + ": expected " + std::to_string(size) + " coordinates, got " +
                                     std::to_string(positions.size()));
        for (size_t i = 0; i < size; ++i)
            if (!std::isfinite(positions[i]))
                throw std::runtime_error(name_ + ": coordinate " + std::to_string(i % 3) + " of particle " +
                                         std::to_string(i / 3) + " is not finite");
        torch::AutoGradMode gradMode(true);
        auto x = torch::tensor(positions, torch::dtype(torch::kFloat64)).reshape({n_, 3}).requires_grad_(true);
        torch::Tensor u;
        try {
            auto out = module_.forward({x});
            if (!out.isTensor()) throw std::runtime_error("forward did not return a tensor");
            u = out.toTensor();
        } catch (const c10::Error& e) {
            throw std::runtime_error(name_ + ": evaluating the TorchScript module failed: " + firstLine(e.what_without_backtrace()));
        } catch (const std::runtime_error& e) {
            throw std::runtime_error(name_ + ": evaluating the TorchScript module failed: " + firstLine(e.what()));
        }
        if (u.numel() != 1)
            throw std::runtime_error(name_ + ": forward must return a scalar (-log p), but returned shape " + c10::str(u.sizes()));
        if (!u.is_floating_point())
            throw std::runtime_error(name_ + ": forward must return a floating-point scalar");
        u = u.reshape({}).to(torch::kFloat64);
        const double value = u.item<double>();
        if (!std::isfinite(value)) throw std::runtime_error(name_ + ": the model returned a non-finite energy (-log p = " + std::to_string(value) + ")");
        gradient.assign(size, 0.0);
        if (u.requires_grad()) {
            auto grads = torch::autograd::grad({u}, {x}, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                               /*allow_unused=*/true);
            if (grads.at(0).defined()) {
                auto g = grads[0].to(torch::kFloat64).contiguous();
                const double* p = g.data_ptr<double>();
                for (size_t i = 0; i < size; ++i) {
                    if (!std::isfinite(p[i]))
                        throw std::runtime_error(name_ + ": the model returned a non-finite gradient for particle " +
                                                 std::to_string(i / 3));
                    gradient[i] = p[i];
                }
            }
        }
        return value;
    }

private:
    torch::jit::Module module_;
    std::string name_;
    int n_ = -1;
    double temperature_ = 0.0;
};

std::unique_ptr<Potential> loadTorchScriptPotential(const std::string& bytes, const std::string& name, int numParticles) {
    torch::jit::Module module;
    try {
        std::istringstream in(bytes);
        module = torch::jit::load(in, torch::kCPU);
    } catch (const c10::Error& e) {
        throw std::runtime_error(name + ": not a valid TorchScript module (" + firstLine(e.what_without_backtrace()) + ")");
    } catch (const std::exception& e) {
        throw std::runtime_error(name + ": not a valid TorchScript module (" + firstLine(e.what()) + ")");
    }
    return std::make_unique<TorchScriptPotential>(std::move(module), name, numParticles);
}

// ---------------------------------------------------------------------------------------------
// FlowForce model files (*.flow): molecular flows whose embedding maps Cartesian positions to
// internal coordinates, so -log p includes the internal-coordinate Jacobian and is invariant to
// rigid motions. Outside the support (EmbeddingSpec::checkSupport) the density is zero: an error.
// ---------------------------------------------------------------------------------------------

/** What the two backends share: the molecule's size, the support rule, checks of the outputs. */
class FlowPotentialBase : public Potential {
public:
    FlowPotentialBase(const ArchitectureSpec& spec, const std::string& name, double temperature, std::string description)
        : embedding_(*spec.embedding), name_(name), n_(static_cast<int>(spec.embedding->numAtoms())), temperature_(temperature),
          description_(std::move(description)) {}
    int numParticles() const override { return n_; }
    double modelTemperature() const override { return temperature_; }
    std::string describe() const override { return description_; }
    double energy(const std::vector<double>& positions) override {
        check(positions);
        return checked(energyImpl(positions));
    }
    double evaluate(const std::vector<double>& positions, std::vector<double>& gradient) override {
        check(positions);
        gradient.resize(positions.size());
        const double u = checked(evaluateImpl(positions, gradient));
        for (size_t i = 0; i < gradient.size(); ++i)
            if (!std::isfinite(gradient[i]))
                throw std::runtime_error(name_ + ": non-finite gradient for particle " + std::to_string(i / 3));
        return u;
    }

protected:
    virtual double energyImpl(const std::vector<double>& positions) = 0;
    virtual double evaluateImpl(const std::vector<double>& positions, std::vector<double>& gradient) = 0;

private:
    void check(const std::vector<double>& positions) const {
        const size_t size = static_cast<size_t>(n_) * 3;
        if (positions.size() != size)
            throw std::runtime_error(name_ + ": expected " + std::to_string(size) + " coordinates, got " +
                                     std::to_string(positions.size()));
        const auto v = embedding_.checkSupport(positions.data());
        if (!v.inside())
            throw std::runtime_error(name_ + ": the configuration is outside the model's support (the flow's density is "
                                             "zero there): " + v.description);
    }
    double checked(double u) const {
        if (!std::isfinite(u)) throw std::runtime_error(name_ + ": the flow returned a non-finite energy (-log p = " + std::to_string(u) + ")");
        return u;
    }
    EmbeddingSpec embedding_;
    std::string name_;
    int n_;
    double temperature_;
    std::string description_;
};

/** The native evaluator (the default). */
class NativePotential : public FlowPotentialBase {
public:
    NativePotential(std::shared_ptr<const NativeFlow> flow, Precision precision, int threads, const std::string& name,
                    double temperature, const std::string& description)
        : FlowPotentialBase(flow->spec(), name, temperature,
                            description + ", native " + precisionName(precision) +
                                (threads > 1 ? ", " + std::to_string(threads) + " threads" : std::string())),
          eval_(std::move(flow), precision, threads) {}

protected:
    double energyImpl(const std::vector<double>& x) override { return eval_.energy(x.data()); }
    double evaluateImpl(const std::vector<double>& x, std::vector<double>& g) override {
        return eval_.energyAndGradient(x.data(), g.data());
    }

private:
    NativeEvaluator eval_;
};

/** The LibTorch flow with autograd, in double precision (cross-checks). */
class TorchFlowPotential : public FlowPotentialBase {
public:
    TorchFlowPotential(std::shared_ptr<Flow> flow, const std::string& name, double temperature, const std::string& description)
        : FlowPotentialBase(flow->spec(), name, temperature, description + ", LibTorch double"), flow_(std::move(flow)) {
        flow_->eval();
    }

protected:
    double energyImpl(const std::vector<double>& x) override {
        torch::NoGradGuard ng;
        return -flow_->logProb(asTensor(x)).item<double>();
    }
    double evaluateImpl(const std::vector<double>& x, std::vector<double>& g) override {
        auto [u, grad] = flow_->energyAndGradient(asTensor(x));
        auto gc = grad.contiguous();
        std::copy(gc.data_ptr<double>(), gc.data_ptr<double>() + gc.numel(), g.begin());
        return u.item<double>();
    }

private:
    static torch::Tensor asTensor(const std::vector<double>& x) {
        return torch::from_blob(const_cast<double*>(x.data()), {1, static_cast<int64_t>(x.size())}, torch::kFloat64);
    }
    std::shared_ptr<Flow> flow_;
};

}  // namespace

std::string backendName(Backend b) { return b == Backend::Native ? "native" : "libtorch"; }

ModelSummary summarizeModel(const std::string& bytes, const std::string& name, int numParticles) {
    checkModelParticleCount(numParticles, name);
    if (bytes.empty()) throw std::runtime_error(name + ": the model file is empty");
    ModelSummary s;
    if (looksLikeTorchScript(bytes)) {
        auto p = loadTorchScriptPotential(bytes, name, numParticles);
        s.numParticles = p->numParticles();
        s.temperature = p->modelTemperature();
        s.description = "TorchScript module, " + std::to_string(s.numParticles) + " particles";
        s.torchScript = true;
        return s;
    }
    return summarizeFlowModel(bytes, name, numParticles);
}

std::unique_ptr<Potential> loadPotentialFromBytes(const std::string& bytes, const std::string& name, int numParticles,
                                                  const PotentialOptions& options) {
    checkModelParticleCount(numParticles, name);
    if (bytes.empty()) throw std::runtime_error(name + ": the model file is empty");
    if (looksLikeTorchScript(bytes)) return loadTorchScriptPotential(bytes, name, numParticles);
    auto m = readMolecularModel(bytes, name, numParticles);
    if (options.backend == Backend::LibTorch)
        return std::make_unique<TorchFlowPotential>(buildFlow(m.file, name), name, m.temperature, m.description);
    return std::make_unique<NativePotential>(NativeFlow::compile(m.file, name), options.precision,
                                             std::max(1, options.threads), name, m.temperature, m.description);
}

std::unique_ptr<Potential> loadPotential(const std::string& path, int numParticles, const PotentialOptions& options) {
    return loadPotentialFromBytes(readFile(path), "model file '" + path + "'", numParticles, options);
}

}  // namespace flowforce
