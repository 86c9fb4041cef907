// loadPotential / loadPotentialFromBytes: the model behind the OpenMM plugin (Potential.h).
// Two kinds of files:
//  - TorchScript modules (a zip archive, starting with "PK"): forward(positions [n,3] float64, nm) -> -log p
//    (a scalar). Optional module attributes: `num_particles` (int) and `temperature` (float, K).
//  - FlowForce model files (*.flow, safetensors layout): see loadFlowPotential below.
#include "flowforce/flow/Potential.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/ModelFile.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

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
    std::string describe() const override { return "TorchScript module, " + std::to_string(n_) + " particles"; }

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
// rigid motions. Evaluated with LibTorch autograd in double precision.
// ---------------------------------------------------------------------------------------------
class FlowPotential : public Potential {
public:
    FlowPotential(std::shared_ptr<Flow> flow, const std::string& name, double temperature)
        : flow_(std::move(flow)), name_(name), n_(static_cast<int>(flow_->dataDim() / 3)), temperature_(temperature) {
        flow_->eval();
    }
    int numParticles() const override { return n_; }
    double modelTemperature() const override { return temperature_; }
    std::string describe() const override {
        return "FlowForce flow, " + std::to_string(n_) + " particles, " + std::to_string(flow_->parameterCount()) + " parameters";
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
        auto x = torch::from_blob(const_cast<double*>(positions.data()), {1, static_cast<int64_t>(size)}, torch::kFloat64);
        auto [u, grad] = flow_->energyAndGradient(x);
        const double value = u.item<double>();
        if (!std::isfinite(value))
            throw std::runtime_error(name_ + ": the flow density is zero or undefined at this configuration "
                                             "(-log p = " + std::to_string(value) + "): is a bond or angle outside the model's range?");
        auto g = grad.contiguous();
        const double* p = g.data_ptr<double>();
        gradient.assign(p, p + size);
        for (size_t i = 0; i < size; ++i)
            if (!std::isfinite(gradient[i]))
                throw std::runtime_error(name_ + ": non-finite gradient for particle " + std::to_string(i / 3));
        return value;
    }

private:
    std::shared_ptr<Flow> flow_;
    std::string name_;
    int n_;
    double temperature_;
};

std::unique_ptr<Potential> loadFlowPotential(const ModelFile& model, const std::string& name, int numParticles) {
    auto flow = buildFlow(model, name);
    if (!flow->embedding() || flow->dataDim() % 3 != 0)
        throw std::runtime_error(name + ": not a molecular model (it has no internal-coordinate embedding); "
                                        "FlowForce needs a model of particle positions");
    const int n = static_cast<int>(flow->dataDim() / 3);
    if (numParticles > 0 && numParticles != n)
        throw std::runtime_error(name + ": the model describes " + std::to_string(n) + " particles but " +
                                 std::to_string(numParticles) + " were given");
    return std::make_unique<FlowPotential>(std::move(flow), name, modelTemperature(model, name));
}

}  // namespace

std::unique_ptr<Potential> loadPotentialFromBytes(const std::string& bytes, const std::string& name, int numParticles) {
    if (numParticles == 0 || numParticles < -1)
        throw std::runtime_error(name + ": invalid number of particles " + std::to_string(numParticles));
    if (bytes.empty()) throw std::runtime_error(name + ": the model file is empty");
    if (looksLikeTorchScript(bytes)) return loadTorchScriptPotential(bytes, name, numParticles);
    if (looksLikeModelFile(bytes)) {
        const ModelFile model = parseModelFile(bytes, name);  // throws ModelFileError (a runtime_error)
        return loadFlowPotential(model, name, numParticles);
    }
    throw std::runtime_error(name + ": not a model file (neither a FlowForce model *.flow nor a TorchScript module)");
}

std::unique_ptr<Potential> loadPotential(const std::string& path, int numParticles) {
    return loadPotentialFromBytes(readFile(path), "model file '" + path + "'", numParticles);
}

}  // namespace flowforce
