#include "flowforce/flow/Inversion.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <stdexcept>

namespace flowforce {

int64_t bisectionSteps(int64_t bins, double tolerance) {
    if (bins < 2) throw std::invalid_argument("multi-bin bisection: bins must be >= 2");
    if (!(tolerance > 0.0 && tolerance < 1.0)) throw std::invalid_argument("multi-bin bisection: tolerance must lie in (0, 1)");
    // after n steps the bracket is K^-n wide
    const double n = std::log(1.0 / tolerance) / std::log(static_cast<double>(bins));
    return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(n - 1e-9)));
}

torch::Tensor multiBinBisection(const ElementwiseTransform::Evaluator& f, const torch::Tensor& yIn, int64_t bins,
                                double tolerance) {
    const int64_t steps = bisectionSteps(bins, tolerance);
    torch::NoGradGuard noGrad;
    auto y = yIn.detach();
    auto lo = torch::zeros_like(y), hi = torch::ones_like(y);
    auto flo = f(lo), fhi = f(hi);
    auto fractions = torch::arange(1, bins, y.options()) / static_cast<double>(bins);  // interior points
    auto target = y.unsqueeze(-1);
    for (int64_t s = 0; s < steps; ++s) {
        auto grid = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * fractions;  // [..., K-1]
        auto fgrid = f(grid);
        auto idx = (fgrid <= target).sum(-1, /*keepdim=*/true);  // bin in [0, K-1]
        auto xs = torch::cat({lo.unsqueeze(-1), grid, hi.unsqueeze(-1)}, -1);
        auto fs = torch::cat({flo.unsqueeze(-1), fgrid, fhi.unsqueeze(-1)}, -1);
        lo = xs.gather(-1, idx).squeeze(-1);
        hi = xs.gather(-1, idx + 1).squeeze(-1);
        flo = fs.gather(-1, idx).squeeze(-1);
        fhi = fs.gather(-1, idx + 1).squeeze(-1);
    }
    // secant step within the final bracket
    auto df = fhi - flo;
    auto t = torch::where(df > 0, (y - flo) / df.clamp_min(1e-300), torch::full({}, 0.5, y.options())).clamp(0.0, 1.0);
    return lo + t * (hi - lo);
}

namespace {

struct ImplicitInverse : public torch::autograd::Function<ImplicitInverse> {
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, torch::Tensor y,
                                                  torch::Tensor params, const ElementwiseTransform* transform) {
        auto x = multiBinBisection(transform->prepare(params.detach()), y, transform->inversion.bins,
                                   transform->inversion.tolerance);
        auto logdet = -transform->forward(x, params).logdet;
        ctx->save_for_backward({x, params});
        ctx->saved_data["transform"] = reinterpret_cast<int64_t>(transform);
        return {x, logdet};
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const auto* transform = reinterpret_cast<const ElementwiseTransform*>(ctx->saved_data["transform"].toInt());
        auto saved = ctx->get_saved_variables();
        const bool createGraph = torch::GradMode::is_enabled();
        torch::AutoGradMode enable(true);
        // Partial derivatives are taken with respect to x and a private copy of the parameters, so each
        // counts only its own path. For second order (create_graph) x stays the function's saved output: the
        // gradients built here then depend on y and the parameters through x = f^-1(y) as well, and
        // differentiating them again runs this first-order rule for x.
        auto x = saved[0];
        auto params = saved[1];
        if (createGraph && x.requires_grad()) {
            params = params.requires_grad() ? params.clone() : params.detach().requires_grad_(true);
        } else {
            x = x.detach().requires_grad_(true);
            params = params.detach().requires_grad_(true);
        }

        auto gx = grads[0].defined() ? grads[0] : torch::zeros_like(x);
        auto gl = grads[1].defined() ? grads[1] : torch::zeros_like(x);

        auto r = transform->forward(x, params);
        auto fprime = torch::exp(r.logdet);
        // d log f' / dx = f''/f' (element-wise, so the gradient of the sum is the diagonal)
        auto dlogfp = torch::autograd::grad({r.logdet}, {x}, {torch::ones_like(r.logdet)}, /*retain_graph=*/true,
                                            /*create_graph=*/createGraph)[0];
        auto coef = (gx - gl * dlogfp) / fprime;  // = dL/dy
        torch::Tensor gparams;
        if (ctx->needs_input_grad(1)) {
            gparams = torch::autograd::grad({r.out, r.logdet}, {params}, {-coef, -gl}, /*retain_graph=*/createGraph,
                                            /*create_graph=*/createGraph)[0];
        }
        return {coef, gparams, torch::Tensor()};
    }
};

}  // namespace

ElementwiseResult invertWithImplicitGradients(const ElementwiseTransform& transform, const torch::Tensor& y,
                                              const torch::Tensor& params) {
    auto lead = params.sizes().vec();
    lead.pop_back();
    auto shape = at::infer_size(y.sizes(), lead);
    auto pshape = shape;
    pshape.push_back(params.size(-1));
    auto out = ImplicitInverse::apply(y.expand(shape), params.expand(pshape), &transform);
    return {out[0], out[1]};
}

}  // namespace flowforce
