// The native evaluator (NativeFlow.h): a model file compiled into a flat program of steps, evaluated
// forward (data -> latent, accumulating log-determinants) and, for gradients, backward by hand.
#include "flowforce/flow/NativeFlow.h"

#include "Elementwise.h"
#include "Kernels.h"
#include "ThreadTeam.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <type_traits>

namespace flowforce {

std::string precisionName(Precision p) { return p == Precision::Double ? "double" : "single"; }

Precision precisionFromName(const std::string& name) {
    if (name == "double") return Precision::Double;
    if (name == "single" || name == "mixed") return Precision::Single;
    throw std::invalid_argument("unknown precision '" + name + "' (double or single)");
}

namespace native {

constexpr double kPi = 3.14159265358979323846;

struct Dense {
    int64_t in = 0, out = 0;
    size_t w = 0, b = 0;  // offsets into the weight array
};

struct Network {
    std::vector<Dense> layers;
    int64_t count = 0;   // parameters per transformed element
    int64_t offset = 0;  // where they start among the element's parameters
};

struct Coupling {
    std::vector<int64_t> cond, trans;
    std::vector<int64_t> condLinear, condCircular;  // flow dimensions, in the networks' feature order
    int64_t inputs = 0, P = 0;                      // network inputs; raw parameters per element
    TransformSpec transform;
    Activation activation = Activation::SiLU;
    std::vector<Network> nets;
    bool inverse = false;  // element transform applied in its inverse direction (data -> latent)
    int64_t maxWidth = 0;  // widest network layer
};

struct Box {
    std::vector<double> lo, hi;
    std::vector<char> circular;
    double logVolume = 0;
    bool inverse = false;
};

struct Step {
    bool coupling = true;
    size_t index = 0;
};

struct Embedding {
    int64_t atoms = 0, nb = 0, na = 0, nt = 0;
    std::vector<std::array<int64_t, 2>> bonds;
    std::vector<std::array<int64_t, 3>> angles;     // (atom, vertex, other)
    std::vector<std::array<int64_t, 4>> torsions;   // (atom, b, a, t)
    std::vector<double> lower, width;  // per bond, then per angle: range start and width (nm or rad)
    double logDetConstant = 0;
    EmbeddingSpec::Boundary boundary = EmbeddingSpec::Boundary::Linear;  // map of bonds and angles to [0,1]
    double wallSharpness = 1.0;
};

struct Program {
    ArchitectureSpec spec;
    int64_t dim = 0, dataDim = 0;
    bool hasEmbedding = false;
    Embedding ic;
    std::vector<Coupling> couplings;
    std::vector<Box> boxes;
    std::vector<Step> steps;
    std::vector<double> weights;
    int64_t parameterCount = 0;
};

namespace {

// ---------------------------------------------------------------------------------------------
// Internal coordinates (the formulas of InternalCoordinates.cpp) with their gradients

struct V3 {
    double x, y, z;
};
inline V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V3 operator+(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline V3 operator*(double s, V3 a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline V3 cross(V3 a, V3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
inline double norm(V3 a) { return std::sqrt(dot(a, a)); }
inline V3 at(const double* x, int64_t i) { return {x[3 * i], x[3 * i + 1], x[3 * i + 2]}; }
inline void add(double* g, int64_t i, V3 v) {
    g[3 * i] += v.x;
    g[3 * i + 1] += v.y;
    g[3 * i + 2] += v.z;
}

/** Angle at b between a and c: atan2(|u x v|, u . v), u = a - b, v = c - b. */
double angleValue(V3 a, V3 b, V3 c) {
    const V3 u = a - b, v = c - b;
    return std::atan2(norm(cross(u, v)), dot(u, v));
}

/** Dihedral (IUPAC sign) of p0-p1-p2-p3 in (-pi, pi]. */
double dihedralValue(V3 p0, V3 p1, V3 p2, V3 p3) {
    const V3 b1 = p1 - p0, b2 = p2 - p1, b3 = p3 - p2;
    const V3 n1 = cross(b1, b2), n2 = cross(b2, b3);
    const double phi = std::atan2(norm(b2) * dot(b1, n2), dot(n1, n2));
    return phi <= -kPi ? phi + 2.0 * kPi : phi;
}

/** A map of t to [0,1] at one t: W(t), log W'(t), W'(t) and d log W'(t)/dt (Architecture.h, EmbeddingSpec). */
struct UnitMapValue {
    double W, logDeriv, deriv, dlogDeriv;
};
/** The smooth wall at t in (0,1). */
UnitMapValue wallAt(double t, double s) {
    const double it = 1.0 / t, iu = 1.0 / (1.0 - t);
    const double z = s * (iu - it);
    const double dphi = iu * iu + it * it, ddphi = 2.0 * (iu * iu * iu - it * it * it);
    const double e = std::exp(-std::fabs(z)), sg = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    UnitMapValue w;
    w.W = sg;
    // log sigma(z) + log sigma(-z) = -(|z| + 2 log(1 + e^-|z|))
    w.logDeriv = -(std::fabs(z) + 2.0 * std::log1p(e)) + std::log(s * dphi);
    w.deriv = std::exp(w.logDeriv);
    w.dlogDeriv = (1.0 - 2.0 * sg) * s * dphi + ddphi / dphi;
    return w;
}

/** The gauss map at t: Phi(s), s = 2t - 1. */
UnitMapValue gaussAt(double t) {
    const double s = 2.0 * t - 1.0;
    UnitMapValue w;
    w.W = 0.5 * std::erfc(-s / std::sqrt(2.0));
    w.logDeriv = std::log(2.0) - 0.5 * std::log(2.0 * kPi) - 0.5 * s * s;
    w.deriv = std::exp(w.logDeriv);
    w.dlogDeriv = -2.0 * s;
    return w;
}

/** The map of t = (q - lo) / width to [0,1] with its log-derivative (Linear: the identity, not called). */
UnitMapValue unitMap(const Embedding& e, double t) {
    return e.boundary == EmbeddingSpec::Boundary::Gauss ? gaussAt(t) : wallAt(t, e.wallSharpness);
}

/** Unit coordinates u [dim] and the log-determinant of the internal-coordinate map. */
double icForward(const Embedding& e, const double* x, double* u) {
    double logdet = e.logDetConstant;
    auto unit = [&](double t, double& out) {
        if (e.boundary == EmbeddingSpec::Boundary::Linear) {
            out = t;
            return;
        }
        const UnitMapValue w = unitMap(e, t);
        out = w.W;
        logdet += w.logDeriv;
    };
    for (int64_t i = 0; i < e.nb; ++i) {
        const auto& q = e.bonds[static_cast<size_t>(i)];
        const double r = norm(at(x, q[0]) - at(x, q[1]));
        unit((r - e.lower[static_cast<size_t>(i)]) / e.width[static_cast<size_t>(i)], u[i]);
        logdet -= 2.0 * std::log(r);
    }
    for (int64_t i = 0; i < e.na; ++i) {
        const auto& q = e.angles[static_cast<size_t>(i)];
        const double th = angleValue(at(x, q[0]), at(x, q[1]), at(x, q[2]));
        const auto k = static_cast<size_t>(e.nb + i);
        unit((th - e.lower[k]) / e.width[k], u[e.nb + i]);
        logdet -= std::log(std::sin(th));
    }
    for (int64_t i = 0; i < e.nt; ++i) {
        const auto& q = e.torsions[static_cast<size_t>(i)];
        const double phi = dihedralValue(at(x, q[0]), at(x, q[1]), at(x, q[2]), at(x, q[3]));
        double v = (phi + kPi) / (2.0 * kPi);
        v -= std::floor(v);
        u[e.nb + e.na + i] = v;
    }
    return logdet;
}

/** Cotangent of t = (q - lo)/width from the cotangents of the unit coordinate and of the log-determinant. */
double unitBackward(const Embedding& e, double t, double ubar, double ldbar) {
    if (e.boundary == EmbeddingSpec::Boundary::Linear) return ubar;
    const UnitMapValue w = unitMap(e, t);
    return ubar * w.deriv + ldbar * w.dlogDeriv;
}

/** Gradient with respect to x of  sum_i ubar_i u_i(x) + ldbar * logdet(x), added to g [3n]. */
void icBackward(const Embedding& e, const double* x, const double* ubar, double ldbar, double* g) {
    for (int64_t i = 0; i < e.nb; ++i) {
        const auto& q = e.bonds[static_cast<size_t>(i)];
        const V3 d = at(x, q[0]) - at(x, q[1]);
        const double r = norm(d);
        const double lo = e.lower[static_cast<size_t>(i)], w = e.width[static_cast<size_t>(i)];
        const double rbar = unitBackward(e, (r - lo) / w, ubar[i], ldbar) / w - ldbar * 2.0 / r;
        const V3 gr = (rbar / r) * d;
        add(g, q[0], gr);
        add(g, q[1], -1.0 * gr);
    }
    for (int64_t i = 0; i < e.na; ++i) {
        const auto& q = e.angles[static_cast<size_t>(i)];
        const V3 u = at(x, q[0]) - at(x, q[1]), v = at(x, q[2]) - at(x, q[1]);
        const double nu = norm(u), nv = norm(v);
        const double sn = norm(cross(u, v)) / (nu * nv), cs = dot(u, v) / (nu * nv);
        const double th = std::atan2(sn, cs);
        const double lo = e.lower[static_cast<size_t>(e.nb + i)], w = e.width[static_cast<size_t>(e.nb + i)];
        const double thbar = unitBackward(e, (th - lo) / w, ubar[e.nb + i], ldbar) / w -
                             ldbar * std::cos(th) / std::sin(th);
        const V3 uh = (1.0 / nu) * u, vh = (1.0 / nv) * v;
        const V3 da = (1.0 / (nu * sn)) * (cs * uh - vh);  // d theta / d a
        const V3 dc = (1.0 / (nv * sn)) * (cs * vh - uh);  // d theta / d c
        add(g, q[0], thbar * da);
        add(g, q[2], thbar * dc);
        add(g, q[1], -thbar * (da + dc));
    }
    for (int64_t i = 0; i < e.nt; ++i) {
        const auto& q = e.torsions[static_cast<size_t>(i)];
        const double phibar = ubar[e.nb + e.na + i] / (2.0 * kPi);
        if (phibar == 0.0) continue;
        const V3 p0 = at(x, q[0]), p1 = at(x, q[1]), p2 = at(x, q[2]), p3 = at(x, q[3]);
        const V3 b1 = p1 - p0, b2 = p2 - p1, b3 = p3 - p2;
        const V3 n1 = cross(b1, b2), n2 = cross(b2, b3);
        const double lb2 = norm(b2), n1sq = dot(n1, n1), n2sq = dot(n2, n2);
        const V3 d0 = (-lb2 / n1sq) * n1;  // d phi / d p0
        const V3 d3 = (lb2 / n2sq) * n2;   // d phi / d p3
        const double f1 = dot(b1, b2) / (lb2 * lb2), f3 = dot(b3, b2) / (lb2 * lb2);
        const V3 d1 = (-1.0 - f1) * d0 + f3 * d3;
        const V3 d2 = f1 * d0 + (-1.0 - f3) * d3;
        add(g, q[0], phibar * d0);
        add(g, q[1], phibar * d1);
        add(g, q[2], phibar * d2);
        add(g, q[3], phibar * d3);
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The evaluator, for network arithmetic in T (float or double)

class EvaluatorBase {
public:
    virtual ~EvaluatorBase() = default;
    virtual void run(int64_t batch, const double* x, double* u, double* gradient) = 0;
    virtual double weightStreaming(int repeats) = 0;
};

template <class T>
class Evaluator : public EvaluatorBase {
    /** What one thread needs to run networks: activations, float sums. */
    struct Scratch {
        std::vector<T> actA, actB;
        std::vector<double> acc;
        std::vector<const T*> dptr;
    };

public:
    Evaluator(const Program& p, int threads) : p_(p) {
        if constexpr (std::is_same_v<T, double>) {
            weights_ = p_.weights.data();
        } else {
            own_.assign(p_.weights.begin(), p_.weights.end());
            weights_ = own_.data();
        }
        for (const auto& c : p_.couplings)
            transforms_.push_back(CouplingTransform::create(c.transform, static_cast<int64_t>(c.trans.size())));
        // per-configuration sizes of the saved quantities
        stateSize_ = static_cast<size_t>(p_.dim) * (p_.steps.size() + 1);
        for (const auto& c : p_.couplings) {
            CouplingSizes s;
            s.features = static_cast<size_t>(c.inputs);
            for (const auto& net : c.nets)
                for (size_t k = 0; k + 1 < net.layers.size(); ++k) s.derivs += static_cast<size_t>(net.layers[k].out);
            s.params = static_cast<size_t>(static_cast<int64_t>(c.trans.size()) * c.P);
            s.saved = transforms_[sizes_.size()]->savedSize();
            sizes_.push_back(s);
            maxTrans_ = std::max(maxTrans_, static_cast<int64_t>(c.trans.size()));
            maxWidth_ = std::max(maxWidth_, c.maxWidth);
            maxInputs_ = std::max(maxInputs_, c.inputs);
            int64_t outs = 0;
            for (const auto& net : c.nets) outs = std::max(outs, net.layers.back().out);
            maxOut_ = std::max(maxOut_, outs);
            maxParams_ = std::max(maxParams_, c.P);
            maxNets_ = std::max(maxNets_, static_cast<int64_t>(c.nets.size()));
            // where each network's derivative arrays start (per configuration)
            std::vector<size_t> offsets;
            size_t hidden = 0;
            for (const auto& net : c.nets) {
                offsets.push_back(hidden);
                for (size_t k = 0; k + 1 < net.layers.size(); ++k) hidden += static_cast<size_t>(net.layers[k].out);
            }
            derivOffsets_.push_back(offsets);
            order_.push_back(largestFirst(c));
            shared_.push_back(worthSharing(c, order_.back()));
        }
        const bool anyShared = std::find(shared_.begin(), shared_.end(), true) != shared_.end();
        const int used = anyShared ? threads : 1;
        if (used > 1) team_ = std::make_unique<ThreadTeam>(used);
        scratch_.resize(static_cast<size_t>(used));
    }

    static int64_t cost(const Network& net) {
        int64_t c = 0;
        for (const auto& d : net.layers) c += d.in * d.out;
        return c;
    }

    /** A coupling's networks (its conditioner heads), largest first: the order in which threads claim them. */
    static std::vector<size_t> largestFirst(const Coupling& c) {
        std::vector<size_t> order(c.nets.size());
        for (size_t n = 0; n < order.size(); ++n) order[n] = n;
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost(c.nets[a]) > cost(c.nets[b]); });
        return order;
    }

    /** Whether a coupling's networks (in largestFirst order) go to the team: two or more, the second
     *  largest worth a hand-over. */
    static bool worthSharing(const Coupling& c, const std::vector<size_t>& order) {
        constexpr int64_t kMinWork = 4096;  // multiply-adds per configuration; a hand-over costs ~1 us
        if (c.nets.size() < 2) return false;
        return cost(c.nets[order[1]]) >= kMinWork;
    }

    void run(int64_t B, const double* x, double* u, double* gradient) override {
        reserve(B);
        const int64_t D = p_.dim;
        double* h0 = state_.data();
        // --- forward
        for (int64_t b = 0; b < B; ++b) {
            logdet_[static_cast<size_t>(b)] = p_.hasEmbedding ? icForward(p_.ic, x + b * p_.dataDim, h0 + b * D) : 0.0;
            if (!p_.hasEmbedding) std::memcpy(h0 + b * D, x + b * p_.dataDim, sizeof(double) * static_cast<size_t>(D));
        }
        for (size_t s = 0; s < p_.steps.size(); ++s) {
            const double* in = state_.data() + s * static_cast<size_t>(B * D);
            double* out = state_.data() + (s + 1) * static_cast<size_t>(B * D);
            if (p_.steps[s].coupling) couplingForward(p_.steps[s].index, B, in, out, gradient != nullptr);
            else boxForward(p_.boxes[p_.steps[s].index], B, in, out);
        }
        for (int64_t b = 0; b < B; ++b) u[b] = -logdet_[static_cast<size_t>(b)];
        if (!gradient) return;
        // --- backward: u = -sum of log-determinants; the uniform base density adds nothing
        std::fill(gOut_.begin(), gOut_.begin() + B * D, 0.0);
        for (size_t s = p_.steps.size(); s-- > 0;) {
            if (p_.steps[s].coupling) couplingBackward(p_.steps[s].index, B, gOut_.data(), gIn_.data());
            else boxBackward(p_.boxes[p_.steps[s].index], B, gOut_.data(), gIn_.data());
            std::swap(gOut_, gIn_);
        }
        for (int64_t b = 0; b < B; ++b) {
            double* g = gradient + b * p_.dataDim;
            if (p_.hasEmbedding) {
                std::fill(g, g + p_.dataDim, 0.0);
                icBackward(p_.ic, x + b * p_.dataDim, gOut_.data() + b * D, -1.0, g);
            } else {
                std::memcpy(g, gOut_.data() + b * D, sizeof(double) * static_cast<size_t>(D));
            }
        }
    }

    double weightStreaming(int repeats) override {
        // the products of energyAndGradient in its order: every layer forward (couplings in order), then
        // every layer transposed in reverse, on fixed vectors: the weights streamed once forward and once back
        const size_t width = static_cast<size_t>(std::max(maxWidth_, std::max(maxInputs_, maxOut_)));
        std::vector<T> a(width, T(0.01)), out(width, T(0)), g(width, T(0.01)), gIn(width, T(0));
        double checksum = 0;
        for (int r = 0; r < repeats; ++r) {
            for (const auto& c : p_.couplings)
                for (const auto& net : c.nets)
                    for (const auto& d : net.layers) {
                        dense(d, 1, a.data(), out.data(), scratch_[0].acc);
                        checksum += static_cast<double>(out[0]);
                    }
            for (auto c = p_.couplings.rbegin(); c != p_.couplings.rend(); ++c)
                for (const auto& net : c->nets)
                    for (auto d = net.layers.rbegin(); d != net.layers.rend(); ++d) {
                        denseBackward(weights_ + d->w, d->out, d->in, 1, g.data(), gIn.data());
                        checksum += static_cast<double>(gIn[0]);
                    }
        }
        return checksum;
    }

private:
    struct CouplingSizes {
        size_t features = 0, derivs = 0, params = 0, saved = 0;
    };

    void reserve(int64_t B) {
        if (B <= capacity_) return;
        capacity_ = B;
        const auto Bs = static_cast<size_t>(B);
        state_.assign(stateSize_ * Bs, 0.0);
        logdet_.assign(Bs, 0.0);
        gOut_.assign(static_cast<size_t>(p_.dim) * Bs, 0.0);
        gIn_.assign(static_cast<size_t>(p_.dim) * Bs, 0.0);
        features_.clear();
        derivs_.clear();
        params_.clear();
        saved_.clear();
        trig_.clear();
        for (const auto& c : p_.couplings) trig_.emplace_back(3 * c.condCircular.size() * Bs);
        for (const auto& s : sizes_) {
            features_.emplace_back(s.features * Bs);
            derivs_.emplace_back(s.derivs * Bs);
            params_.emplace_back(s.params * Bs);
            saved_.emplace_back(s.saved * Bs);
        }
        xt_.assign(static_cast<size_t>(maxTrans_), 0.0);
        yt_.assign(static_cast<size_t>(maxTrans_), 0.0);
        const size_t wide = static_cast<size_t>(std::max(maxWidth_, std::max(maxInputs_, maxOut_))) * Bs;
        for (Scratch& s : scratch_) {
            s.actA.assign(wide, T(0));
            s.actB.assign(wide, T(0));
            s.acc.assign(wide, 0.0);
        }
        gFeat_.assign(static_cast<size_t>(maxInputs_) * Bs, 0.0);
        gFeatNet_.assign(static_cast<size_t>(maxNets_), std::vector<double>(static_cast<size_t>(maxInputs_) * Bs, 0.0));
        pBar_.clear();
        for (const auto& s : sizes_) pBar_.emplace_back(s.params * Bs);
    }

    /** z = layer d applied to a, for B configurations. */
    void dense(const Dense& d, int64_t B, const T* a, T* z, std::vector<double>& acc) {
        if constexpr (std::is_same_v<T, double>) {
            denseForward(weights_ + d.w, weights_ + d.b, d.out, d.in, B, a, z);
        } else {
            if (acc.size() < static_cast<size_t>(B * d.out)) acc.resize(static_cast<size_t>(B * d.out));
            denseForward(weights_ + d.w, weights_ + d.b, d.out, d.in, B, a, z, acc.data());
        }
    }

    void couplingForward(size_t ci, int64_t B, const double* in, double* out, bool keep) {
        const Coupling& c = p_.couplings[ci];
        const int64_t D = p_.dim, nIn = c.inputs, nT = static_cast<int64_t>(c.trans.size());
        T* feat = features_[ci].data();
        // circular inputs as (cos, sin) of 2 pi x, kept in double for the backward pass
        const auto nc = static_cast<int64_t>(c.condCircular.size());
        double* angle = trig_[ci].data();
        double* sine = angle + B * nc;
        double* cosine = sine + B * nc;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < nc; ++j) angle[b * nc + j] = 2.0 * kPi * in[b * D + c.condCircular[static_cast<size_t>(j)]];
        sinCos(B * nc, angle, sine, cosine);
        for (int64_t b = 0; b < B; ++b) {
            const double* h = in + b * D;
            T* f = feat + b * nIn;
            int64_t k = 0;
            for (auto i : c.condLinear) f[k++] = static_cast<T>(2.0 * h[i] - 1.0);
            for (int64_t j = 0; j < nc; ++j) {
                f[k + j] = static_cast<T>(cosine[b * nc + j]);
                f[k + nc + j] = static_cast<T>(sine[b * nc + j]);
            }
        }
        // networks -> raw parameters [B, nT, P], the heads spread over the team's threads
        auto head = [&](int item, int t) {
            networkForward(ci, order_[ci][static_cast<size_t>(item)], B, feat, scratch_[static_cast<size_t>(t)]);
        };
        runHeads(ci, head);
        // element-wise transforms
        CouplingTransform& tr = *transforms_[ci];
        const size_t savedSize = sizes_[ci].saved;
        const double* params = params_[ci].data();
        for (int64_t b = 0; b < B; ++b) {
            const double* h = in + b * D;
            double* o = out + b * D;
            std::memcpy(o, h, sizeof(double) * static_cast<size_t>(D));
            for (int64_t e = 0; e < nT; ++e) xt_[static_cast<size_t>(e)] = h[c.trans[static_cast<size_t>(e)]];
            double* saved = keep ? saved_[ci].data() + static_cast<size_t>(b) * savedSize : nullptr;
            logdet_[static_cast<size_t>(b)] += tr.forward(params + b * nT * c.P, xt_.data(), yt_.data(), c.inverse, saved);
            for (int64_t e = 0; e < nT; ++e) o[c.trans[static_cast<size_t>(e)]] = yt_[static_cast<size_t>(e)];
        }
    }

    /** head(item, thread) for each of coupling ci's networks: on the team if it is worth sharing. */
    template <class F>
    void runHeads(size_t ci, F& head) {
        const int count = static_cast<int>(p_.couplings[ci].nets.size());
        if (team_ && shared_[ci]) team_->run(count, head);
        else
            for (int i = 0; i < count; ++i) head(i, 0);
    }

    /** Network n of coupling ci on the features: its raw parameters into params_, its activations'
     *  derivatives into derivs_. */
    void networkForward(size_t ci, size_t n, int64_t B, const T* feat, Scratch& s) {
        const Coupling& c = p_.couplings[ci];
        const Network& net = c.nets[n];
        const int64_t nT = static_cast<int64_t>(c.trans.size());
        double* params = params_[ci].data();
        T* derivs = derivs_[ci].data() + derivOffsets_[ci][n] * static_cast<size_t>(B);
        const T* a = feat;
        for (size_t k = 0; k < net.layers.size(); ++k) {
            const Dense& d = net.layers[k];
            T* z = (k % 2 == 0) ? s.actA.data() : s.actB.data();
            dense(d, B, a, z, s.acc);
            if (k + 1 < net.layers.size()) {
                activate(c.activation, B * d.out, z, derivs);
                derivs += B * d.out;
            } else {
                for (int64_t b = 0; b < B; ++b)
                    for (int64_t e = 0; e < nT; ++e)
                        for (int64_t j = 0; j < net.count; ++j)
                            params[(b * nT + e) * c.P + net.offset + j] = static_cast<double>(z[b * d.out + e * net.count + j]);
            }
            a = z;
        }
    }

    /** Network n of coupling ci backward: the raw-parameter cotangents (pBar_) to its feature cotangents,
     *  written to gFeatNet_[n] (summed over the networks in their order afterwards, so that the result does
     *  not depend on which thread ran which network). */
    void networkBackward(size_t ci, size_t n, int64_t B, Scratch& s) {
        const Coupling& c = p_.couplings[ci];
        const Network& net = c.nets[n];
        const int64_t nT = static_cast<int64_t>(c.trans.size()), nIn = c.inputs;
        const double* pBar = pBar_[ci].data();
        const T* derivs = derivs_[ci].data() + derivOffsets_[ci][n] * static_cast<size_t>(B);
        const Dense& last = net.layers.back();
        T* g = s.actA.data();
        for (int64_t b = 0; b < B; ++b)
            for (int64_t e = 0; e < nT; ++e)
                for (int64_t j = 0; j < net.count; ++j)
                    g[b * last.out + e * net.count + j] = static_cast<T>(pBar[(b * nT + e) * c.P + net.offset + j]);
        // derivative arrays of this network's hidden layers, in order
        std::vector<const T*>& dptr = s.dptr;
        dptr.clear();
        const T* dp = derivs;
        for (size_t k = 0; k + 1 < net.layers.size(); ++k) {
            dptr.push_back(dp);
            dp += B * net.layers[k].out;
        }
        for (size_t k = net.layers.size(); k-- > 0;) {
            const Dense& d = net.layers[k];
            T* gin = (g == s.actA.data()) ? s.actB.data() : s.actA.data();
            denseBackward(weights_ + d.w, d.out, d.in, B, g, gin);
            if (k > 0) {
                const T* dv = dptr[k - 1];
                const int64_t m = B * d.in;
                for (int64_t i = 0; i < m; ++i) gin[i] *= dv[i];
            } else {
                double* gf = gFeatNet_[n].data();
                for (int64_t i = 0; i < B * nIn; ++i) gf[i] = static_cast<double>(gin[i]);
            }
            g = gin;
        }
    }

    void couplingBackward(size_t ci, int64_t B, const double* gOut, double* gIn) {
        const Coupling& c = p_.couplings[ci];
        const int64_t D = p_.dim, nT = static_cast<int64_t>(c.trans.size());
        const double* params = params_[ci].data();
        double* pBar = pBar_[ci].data();
        CouplingTransform& tr = *transforms_[ci];
        const size_t savedSize = sizes_[ci].saved;
        // element-wise transforms: cotangents of the transformed inputs and of the raw parameters.
        // Each log-determinant enters u with weight -1.
        for (int64_t b = 0; b < B; ++b) {
            const double* go = gOut + b * D;
            double* gi = gIn + b * D;
            std::memcpy(gi, go, sizeof(double) * static_cast<size_t>(D));  // conditioning dims pass through
            for (int64_t e = 0; e < nT; ++e) yt_[static_cast<size_t>(e)] = go[c.trans[static_cast<size_t>(e)]];
            tr.backward(params + b * nT * c.P, saved_[ci].data() + static_cast<size_t>(b) * savedSize, yt_.data(), -1.0,
                        c.inverse, xt_.data(), pBar + b * nT * c.P);
            for (int64_t e = 0; e < nT; ++e) gi[c.trans[static_cast<size_t>(e)]] = xt_[static_cast<size_t>(e)];
        }
        // networks backward: raw-parameter cotangents -> feature cotangents, per network, then summed in
        // the networks' order
        const int64_t nIn = c.inputs;
        auto head = [&](int item, int t) {
            networkBackward(ci, order_[ci][static_cast<size_t>(item)], B, scratch_[static_cast<size_t>(t)]);
        };
        runHeads(ci, head);
        std::copy(gFeatNet_[0].begin(), gFeatNet_[0].begin() + B * nIn, gFeat_.begin());
        for (size_t n = 1; n < c.nets.size(); ++n)
            for (int64_t m = 0; m < B * nIn; ++m) gFeat_[static_cast<size_t>(m)] += gFeatNet_[n][static_cast<size_t>(m)];
        // features -> conditioning dims: 2x - 1, and (cos, sin) of 2 pi x (kept in double by the forward pass)
        const auto nc = static_cast<int64_t>(c.condCircular.size());
        const double* sine = trig_[ci].data() + B * nc;
        const double* cosine = sine + B * nc;
        for (int64_t b = 0; b < B; ++b) {
            double* gi = gIn + b * D;
            const double* gf = gFeat_.data() + b * nIn;
            int64_t k = 0;
            for (auto i : c.condLinear) gi[i] += 2.0 * gf[k++];
            for (int64_t j = 0; j < nc; ++j) {
                const int64_t i = c.condCircular[static_cast<size_t>(j)];
                gi[i] += 2.0 * kPi * (-sine[b * nc + j] * gf[k + j] + cosine[b * nc + j] * gf[k + nc + j]);
            }
        }
    }

    void boxForward(const Box& box, int64_t B, const double* in, double* out) {
        const int64_t D = p_.dim;
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t i = 0; i < D; ++i) {
                const double lo = box.lo[static_cast<size_t>(i)], hi = box.hi[static_cast<size_t>(i)];
                double v;
                if (!box.inverse) {
                    v = (in[b * D + i] - lo) / (hi - lo);
                    if (box.circular[static_cast<size_t>(i)]) v -= std::floor(v);
                } else {
                    v = lo + in[b * D + i] * (hi - lo);
                }
                out[b * D + i] = v;
            }
            logdet_[static_cast<size_t>(b)] += box.inverse ? box.logVolume : -box.logVolume;
        }
    }

    void boxBackward(const Box& box, int64_t B, const double* gOut, double* gIn) {
        const int64_t D = p_.dim;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < D; ++i) {
                const double w = box.hi[static_cast<size_t>(i)] - box.lo[static_cast<size_t>(i)];
                gIn[b * D + i] = box.inverse ? gOut[b * D + i] * w : gOut[b * D + i] / w;
            }
    }

    const Program& p_;
    const T* weights_ = nullptr;
    std::vector<T> own_;
    std::vector<std::unique_ptr<CouplingTransform>> transforms_;
    std::vector<CouplingSizes> sizes_;
    size_t stateSize_ = 0;
    int64_t maxWidth_ = 0, maxInputs_ = 0, maxOut_ = 0, maxParams_ = 0, maxTrans_ = 0, maxNets_ = 1;
    int64_t capacity_ = 0;
    std::vector<double> state_, logdet_, gOut_, gIn_, gFeat_;
    std::vector<std::vector<double>> gFeatNet_;  // [network]: feature cotangents of one coupling's networks
    std::vector<std::vector<T>> features_, derivs_;
    std::vector<std::vector<double>> params_, pBar_, saved_, trig_;
    std::vector<double> xt_, yt_;
    std::vector<std::vector<size_t>> derivOffsets_;  // [coupling][network]: start of its derivatives / B
    std::vector<std::vector<size_t>> order_;         // [coupling]: its networks, largest first
    std::vector<bool> shared_;                       // [coupling]: networks run on the team
    std::vector<Scratch> scratch_;                   // per thread
    std::unique_ptr<ThreadTeam> team_;               // only when some coupling's heads are spread
};

}  // namespace native

// ---------------------------------------------------------------------------------------------
// Compilation

namespace {

void addLayer(native::Program& p, const LayerSpec& spec, bool inverted, std::map<std::string, size_t>& offsets,
              const std::string& prefix) {
    using native::Coupling;
    if (spec.kind == LayerSpec::Kind::Inverted) {
        addLayer(p, *spec.inner, !inverted, offsets, prefix + ".inner");
        return;
    }
    if (spec.kind == LayerSpec::Kind::Box) {
        native::Box box;
        box.lo = spec.box.low;
        box.hi = spec.box.high;
        for (size_t i = 0; i < box.lo.size(); ++i) {
            box.circular.push_back(p.spec.circular[i] ? 1 : 0);
            box.logVolume += std::log(box.hi[i] - box.lo[i]);
        }
        box.inverse = inverted;
        p.steps.push_back({false, p.boxes.size()});
        p.boxes.push_back(std::move(box));
        return;
    }
    const auto& cs = spec.coupling;
    Coupling c;
    c.cond = cs.conditioning;
    c.trans = cs.transformed;
    for (auto i : c.cond) (p.spec.circular[static_cast<size_t>(i)] ? c.condCircular : c.condLinear).push_back(i);
    c.inputs = cs.networkInputs(p.spec.circular);
    c.transform = cs.transform;
    c.P = cs.transform.numParams();
    c.activation = cs.activation;
    c.inverse = cs.invertTransform != inverted;
    int64_t offset = 0;
    for (const auto& net : cs.networks()) {
        native::Network n;
        n.count = net.count;
        n.offset = offset;
        offset += net.count;
        int64_t in = c.inputs;
        auto sizes = cs.hidden;
        sizes.push_back(static_cast<int64_t>(c.trans.size()) * net.count);
        for (size_t k = 0; k < sizes.size(); ++k) {
            const std::string base = prefix + "." + net.name + ".linear" + std::to_string(k);
            native::Dense d;
            d.in = in;
            d.out = sizes[k];
            d.w = offsets.at(base + ".weight");
            d.b = offsets.at(base + ".bias");
            c.maxWidth = std::max(c.maxWidth, std::max(d.in, d.out));
            n.layers.push_back(d);
            in = sizes[k];
        }
        c.nets.push_back(std::move(n));
    }
    p.steps.push_back({true, p.couplings.size()});
    p.couplings.push_back(std::move(c));
}

}  // namespace

NativeFlow::~NativeFlow() = default;

std::shared_ptr<const NativeFlow> NativeFlow::compile(const ModelFile& model, const std::string& source) {
    auto p = std::make_unique<native::Program>();
    p->spec = validatedArchitecture(model, source);
    const auto& spec = p->spec;
    std::map<std::string, size_t> offsets;
    size_t total = 0;
    const auto shapes = spec.parameterShapes();
    for (const auto& [name, shape] : shapes) total += model.tensors.at(name).values.size();
    p->weights.reserve(total);
    for (const auto& [name, shape] : shapes) {
        const auto& v = model.tensors.at(name).values;
        offsets[name] = p->weights.size();
        if (shape.size() == 2) {  // [out, in] -> transposed [in, out] (Kernels.h)
            const auto out = static_cast<size_t>(shape[0]), in = static_cast<size_t>(shape[1]);
            for (size_t i = 0; i < in; ++i)
                for (size_t o = 0; o < out; ++o) p->weights.push_back(v[o * in + i]);
        } else {
            p->weights.insert(p->weights.end(), v.begin(), v.end());
        }
    }
    p->parameterCount = static_cast<int64_t>(total);
    p->dim = spec.dim;
    p->dataDim = spec.dataDim();
    if (spec.embedding) {
        p->hasEmbedding = true;
        auto& e = p->ic;
        const auto& z = spec.embedding->zmatrix;
        e.atoms = z.numAtoms();
        for (const auto& r : z.rows) {
            if (r[1] >= 0) e.bonds.push_back({r[0], r[1]});
            if (r[2] >= 0) e.angles.push_back({r[0], r[1], r[2]});
            if (r[3] >= 0) e.torsions.push_back({r[0], r[1], r[2], r[3]});
        }
        e.nb = static_cast<int64_t>(e.bonds.size());
        e.na = static_cast<int64_t>(e.angles.size());
        e.nt = static_cast<int64_t>(e.torsions.size());
        e.boundary = spec.embedding->boundary;
        e.wallSharpness = spec.embedding->wallSharpness;
        e.logDetConstant = -static_cast<double>(e.nt) * std::log(2.0 * native::kPi);
        for (const auto& r : spec.embedding->coordinateRanges()) {
            e.lower.push_back(r[0]);
            e.width.push_back(r[1] - r[0]);
            e.logDetConstant -= std::log(r[1] - r[0]);
        }
    }
    for (size_t i = 0; i < spec.layers.size(); ++i) addLayer(*p, spec.layers[i], false, offsets, "layer" + std::to_string(i));
    std::shared_ptr<NativeFlow> flow(new NativeFlow());
    flow->program_ = std::move(p);
    return flow;
}

const ArchitectureSpec& NativeFlow::spec() const { return program_->spec; }
int64_t NativeFlow::dataDim() const { return program_->dataDim; }
int NativeFlow::numParticles() const { return program_->hasEmbedding ? static_cast<int>(program_->ic.atoms) : 0; }
int64_t NativeFlow::parameterCount() const { return program_->parameterCount; }

// ---------------------------------------------------------------------------------------------

struct NativeEvaluator::Impl {
    std::shared_ptr<const NativeFlow> flow;
    Precision precision;
    int threads = 1;
    std::unique_ptr<native::EvaluatorBase> eval;
    double u1 = 0;
};

NativeEvaluator::NativeEvaluator(std::shared_ptr<const NativeFlow> flow, Precision precision, int threads)
    : impl_(new Impl) {
    if (!flow) throw std::invalid_argument("native evaluator: no flow");
    if (threads < 1) throw std::invalid_argument("native evaluator: threads must be at least 1");
    impl_->threads = threads;
    impl_->flow = std::move(flow);
    impl_->precision = precision;
    const auto& prog = impl_->flow->program();
    if (precision == Precision::Double) impl_->eval = std::make_unique<native::Evaluator<double>>(prog, threads);
    else impl_->eval = std::make_unique<native::Evaluator<float>>(prog, threads);
}

NativeEvaluator::~NativeEvaluator() = default;
Precision NativeEvaluator::precision() const { return impl_->precision; }
int NativeEvaluator::threads() const { return impl_->threads; }
const NativeFlow& NativeEvaluator::flow() const { return *impl_->flow; }

double NativeEvaluator::energy(const double* x) {
    impl_->eval->run(1, x, &impl_->u1, nullptr);
    return impl_->u1;
}

double NativeEvaluator::energyAndGradient(const double* x, double* gradient) {
    impl_->eval->run(1, x, &impl_->u1, gradient);
    return impl_->u1;
}

void NativeEvaluator::evaluate(int64_t batch, const double* x, double* u, double* gradient) {
    if (batch < 1) return;
    impl_->eval->run(batch, x, u, gradient);
}

double NativeEvaluator::weightStreamingOnly(int repeats) { return impl_->eval->weightStreaming(repeats); }

SupportViolation NativeEvaluator::checkSupport(const double* x) const {
    const auto& spec = impl_->flow->spec();
    if (spec.embedding) return spec.embedding->checkSupport(x);
    SupportViolation v;
    for (int64_t i = 0; i < spec.dim; ++i)
        if (!std::isfinite(x[i])) {
            v.coordinate = i;
            v.description = "value " + std::to_string(i) + " is not finite";
            return v;
        }
    return v;
}

}  // namespace flowforce
