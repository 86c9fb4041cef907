#include "flowforce/flow/Features.h"

#include "flowforce/flow/InternalCoordinates.h"
#include "flowforce/flow/Physics.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace flowforce {

namespace {

/** sigma'(t) of the ramp (Transforms.cpp): exponential z = s ((1-t)^-beta - t^-beta), monomial order s. */
double bumpDensity(double t, double s, RampType ramp, int beta) {
    if (!(t > 0.0 && t < 1.0)) return 0.0;
    const double u = 1.0 - t;
    if (ramp == RampType::Monomial) {
        const double tk = std::pow(t, s), uk = std::pow(u, s), den = tk + uk;
        return s * std::pow(t, s - 1) * std::pow(u, s - 1) / (den * den);
    }
    const double z = s * (std::pow(u, -beta) - std::pow(t, -beta));
    const double dz = s * beta * (std::pow(u, -beta - 1) + std::pow(t, -beta - 1));
    const double e = std::exp(-std::fabs(z));
    return e / ((1.0 + e) * (1.0 + e)) * dz;
}

std::string describeCoordinate(const InternalCoordinateLayer& ic, int64_t dim) {
    const auto idx = ic.outputIndex(dim);
    const auto& r = ic.zmatrix().rows[static_cast<size_t>(idx.row)];
    std::string atoms;
    const int refs = idx.kind == ICKind::Bond ? 1 : idx.kind == ICKind::Angle ? 2 : 3;
    for (int k = 0; k <= refs; ++k) atoms += (k ? "-" : "") + std::to_string(r[static_cast<size_t>(k)]);
    const int64_t first = idx.kind == ICKind::Bond ? 0 : idx.kind == ICKind::Angle ? ic.numBonds() : ic.numBonds() + ic.numAngles();
    return icKindName(idx.kind) + " " + std::to_string(dim - first) + " (atoms " + atoms + ")";
}

}  // namespace

double bumpHalfWidth(double s, RampType ramp, int beta) {
    // unimodal and symmetric about 1/2 for the allowed sharpnesses: half-height point by bisection on (0, 1/2)
    const double peak = bumpDensity(0.5, s, ramp, beta);
    double lo = 0.0, hi = 0.5;
    for (int i = 0; i < 60; ++i) {
        const double mid = 0.5 * (lo + hi);
        (bumpDensity(mid, s, ramp, beta) < 0.5 * peak ? lo : hi) = mid;
    }
    return 2.0 * (0.5 - 0.5 * (lo + hi));
}

FeatureReport narrowestFeature(Flow& flow, const torch::Tensor& xIn, const std::vector<double>& masses, double temperatureK,
                               double timestepPs, double significance) {
    FeatureReport report;
    const auto ic = std::dynamic_pointer_cast<InternalCoordinateLayer>(flow.embedding());
    if (!ic) return report;
    auto x = xIn.to(torch::kFloat64).contiguous();
    const int64_t B = x.size(0), dim = flow.dim();
    if (static_cast<int64_t>(masses.size()) != ic->numAtoms())
        throw std::invalid_argument("narrowestFeature: need one mass per atom");

    // thermal displacement per step of every internal coordinate, per configuration [B, dim]
    torch::Tensor step;
    {
        torch::AutoGradMode enable(true);
        auto xg = x.clone().requires_grad_(true);
        auto q = ic->internalCoordinates(xg);
        auto invMass = torch::tensor(masses, torch::kFloat64).reciprocal().repeat_interleave(3);  // [3n]
        std::vector<torch::Tensor> v2;
        for (int64_t i = 0; i < dim; ++i) {
            auto g = torch::autograd::grad({q.select(1, i).sum()}, {xg}, {}, true)[0];
            v2.push_back((g * g * invMass).sum(1));
        }
        step = torch::sqrt(kBoltzmannKJPerMolK * temperatureK * torch::stack(v2, 1)) * timestepPs;
    }
    torch::NoGradGuard noGrad;
    auto h = ic->forward(x).out;
    auto stretch = ic->unitDerivative(ic->internalCoordinates(x));  // d(layer coordinate)/d(internal coordinate)
    double best = INFINITY;
    for (size_t l = 0; l < flow.layers().size(); ++l) {
        BijectionPtr layer = flow.layers()[l];
        bool inverted = false;
        while (auto inv = std::dynamic_pointer_cast<InvertedLayer>(layer)) {
            layer = inv->inner();
            inverted = !inverted;
        }
        auto coupling = std::dynamic_pointer_cast<CouplingLayer>(layer);
        if (!coupling) {
            h = flow.layers()[l]->forward(h).out;
            continue;
        }
        const auto& spec = coupling->spec();
        const bool forwardTransform = spec.invertTransform == inverted;  // element transform applied forward
        auto params = coupling->parameters(h);
        const auto ti = torch::tensor(spec.transformed, torch::kLong);
        auto xt = h.index_select(1, ti);
        const auto& transform = coupling->transform();
        auto r = forwardTransform ? transform.forward(xt, params) : transform.inverse(xt, params);
        if (auto smooth = dynamic_cast<const SmoothMixtureTransform*>(&transform)) {
            const auto& o = smooth->options();
            auto m = smooth->shape(params);  // [B, d, K]
            const int64_t K = o.components, d = static_cast<int64_t>(spec.transformed.size());
            auto a = m.a.expand_as(m.w), s = m.s.expand_as(m.w);
            // each component's peak contribution against the mixture's density at its centre
            auto pe = params.unsqueeze(2).expand({B, d, K, params.size(-1)});
            auto mix = torch::exp(transform.forward(m.b, pe).logdet);  // F'(b_k) [B, d, K]
            auto ends = [&](const torch::Tensor& t) { return smooth->sigmoid(t, m.s).first; };
            auto norm = transform.circular() ? torch::ones_like(a) : ends(a * (1.0 - m.b) + 0.5) - ends(0.5 - a * m.b);
            const auto wT = m.w.contiguous(), cT = m.c.contiguous(), aT = a.contiguous(), sT = s.contiguous();
            const auto nT = norm.contiguous(), mT = mix.contiguous(), lT = r.logdet.contiguous();
            const auto stT = stretch.contiguous(), stepT = step.contiguous();
            auto wc = wT.accessor<double, 3>(), cc = cT.accessor<double, 3>(), ac = aT.accessor<double, 3>(), sc = sT.accessor<double, 3>();
            auto nc = nT.accessor<double, 3>(), mc = mT.accessor<double, 3>();
            auto logdet = lT.accessor<double, 2>();
            auto stretchA = stT.accessor<double, 2>(), stepA = stepT.accessor<double, 2>();
            for (int64_t b = 0; b < B; ++b)
                for (int64_t e = 0; e < d; ++e) {
                    const int64_t dimIdx = spec.transformed[static_cast<size_t>(e)];
                    // stretch of this layer's coordinate: forward it is the input; inverted, widths found in the
                    // output (z) map to the input through dx/dz = f'(z)
                    const double localStretch = forwardTransform ? 1.0 : std::exp(-logdet[b][e]);
                    for (int64_t k = 0; k < K; ++k) {
                        const double sk = sc[b][e][k], ak = ac[b][e][k];
                        const double peak = wc[b][e][k] * (1.0 - cc[b][e][k]) * ak * bumpDensity(0.5, sk, o.ramp, o.beta) / nc[b][e][k];
                        if (peak < significance * mc[b][e][k]) continue;
                        ++report.significantFeatures;
                        const double widthLayer = bumpHalfWidth(sk, o.ramp, o.beta) / ak / localStretch;
                        const double widthQ = widthLayer / stretchA[b][dimIdx];
                        const double stepQ = stepA[b][dimIdx];
                        if (widthQ < stepQ) ++report.belowOneStep;
                        if (widthQ / stepQ < best) {
                            best = widthQ / stepQ;
                            report.found = true;
                            report.layer = static_cast<int64_t>(l);
                            report.dim = dimIdx;
                            report.width = widthQ;
                            report.stepDisplacement = stepQ;
                            report.ratio = best;
                        }
                    }
                }
        }
        // the stretch of the transformed dimensions grows by this layer's element-wise derivatives
        auto st = stretch.index_select(1, ti) * torch::exp(r.logdet);
        stretch = stretch.index_copy(1, ti, st);
        h = h.index_copy(1, ti, r.out);
    }
    if (report.found) {
        report.coordinate = describeCoordinate(*ic, report.dim);
        report.unit = ic->outputIndex(report.dim).kind == ICKind::Bond ? "nm" : "rad";
    }
    return report;
}

std::string StiffestMode::atoms(double minimumShare) const {
    std::vector<size_t> order(share.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return share[a] > share[b]; });
    std::ostringstream out;
    for (size_t k = 0; k < order.size(); ++k) {
        if (k > 0 && share[order[k]] < minimumShare) break;
        out << (k ? ", " : "") << order[k] << " (" << static_cast<int>(std::lround(100 * share[order[k]])) << "%)";
    }
    return out.str();
}

StiffestMode stiffestMode(const PotentialFunction& energy, const double* x, const std::vector<double>& masses, double h) {
    const auto n = static_cast<int64_t>(masses.size()), D = 3 * n;
    if (n < 1) throw std::invalid_argument("stiffest mode: no atoms");
    for (double m : masses)
        if (!(m > 0 && std::isfinite(m))) throw std::invalid_argument("stiffest mode: masses must be positive");
    if (!(h > 0)) throw std::invalid_argument("stiffest mode: the difference step must be positive");
    // 2D displaced configurations: x + h e_i, then x - h e_i
    std::vector<double> xs(static_cast<size_t>(2 * D * D)), us(static_cast<size_t>(2 * D)), gs(static_cast<size_t>(2 * D * D));
    for (int64_t i = 0; i < 2 * D; ++i) {
        std::copy(x, x + D, xs.begin() + i * D);
        xs[static_cast<size_t>(i * D + i % D)] += i < D ? h : -h;
    }
    energy(2 * D, xs.data(), us.data(), gs.data());
    auto H = torch::empty({D, D}, torch::kFloat64);
    auto* hp = H.data_ptr<double>();
    for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j) {
            const double d2 = (gs[static_cast<size_t>(i * D + j)] - gs[static_cast<size_t>((D + i) * D + j)]) / (2 * h);
            hp[i * D + j] = d2 / std::sqrt(masses[static_cast<size_t>(i / 3)] * masses[static_cast<size_t>(j / 3)]);
        }
    H = 0.5 * (H + H.t());
    if (!torch::isfinite(H).all().item<bool>()) throw std::invalid_argument("stiffest mode: the gradient is not finite around x");
    auto [values, vectors] = torch::linalg_eigh(H);
    StiffestMode mode;
    const double top = values[D - 1].item<double>();
    mode.omega = top > 0 ? std::sqrt(top) : 0.0;
    mode.periodFs = top > 0 ? 2 * M_PI / mode.omega * 1e3 : INFINITY;
    auto v = vectors.select(1, D - 1).pow(2).reshape({n, 3}).sum(1).contiguous();
    mode.share.assign(v.data_ptr<double>(), v.data_ptr<double>() + n);
    return mode;
}

double offCubicAlongSegment(const PotentialFunction& energy, const double* a, const double* b, int64_t dim, int points) {
    if (points < 2 || dim < 1) throw std::invalid_argument("off-cubic: need at least 2 points and 1 dimension");
    const auto k = static_cast<int64_t>(points) + 1;
    std::vector<double> xs(static_cast<size_t>(k * dim)), us(static_cast<size_t>(k)), gs(static_cast<size_t>(k * dim));
    for (int64_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(p) / points;
        for (int64_t i = 0; i < dim; ++i) xs[static_cast<size_t>(p * dim + i)] = (1 - t) * a[i] + t * b[i];
    }
    energy(k, xs.data(), us.data(), gs.data());
    for (double u : us)
        if (!std::isfinite(u)) throw std::invalid_argument("off-cubic: the potential is not finite along the segment");
    double s0 = 0, s1 = 0;  // dU/ds at both ends
    for (int64_t i = 0; i < dim; ++i) {
        s0 += gs[static_cast<size_t>(i)] * (b[i] - a[i]);
        s1 += gs[static_cast<size_t>((k - 1) * dim + i)] * (b[i] - a[i]);
    }
    if (!std::isfinite(s0) || !std::isfinite(s1)) throw std::invalid_argument("off-cubic: the gradient is not finite at the ends of the segment");
    double off = 0;
    for (int64_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(p) / points, t2 = t * t, t3 = t2 * t;
        const double cubic = (2 * t3 - 3 * t2 + 1) * us.front() + (t3 - 2 * t2 + t) * s0 + (-2 * t3 + 3 * t2) * us.back() + (t3 - t2) * s1;
        off = std::max(off, std::abs(us[static_cast<size_t>(p)] - cubic));
    }
    return off;
}

double fourthDifferenceAlongStep(const PotentialFunction& energy, const double* x, const double* step, int64_t dim) {
    if (dim < 1) throw std::invalid_argument("fourth difference: need at least 1 dimension");
    std::vector<double> xs(static_cast<size_t>(5 * dim)), us(5);
    for (int64_t p = 0; p < 5; ++p)
        for (int64_t i = 0; i < dim; ++i) xs[static_cast<size_t>(p * dim + i)] = x[i] + static_cast<double>(p - 2) * step[i];
    energy(5, xs.data(), us.data(), nullptr);  // energies only
    for (double u : us)
        if (!std::isfinite(u)) throw std::invalid_argument("fourth difference: the potential is not finite along the step");
    return us[0] - 4 * us[1] + 6 * us[2] - 4 * us[3] + us[4];
}

}  // namespace flowforce
