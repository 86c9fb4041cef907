#include "flowforce/flow/InternalCoordinates.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace flowforce {

namespace {

// Row-wise vector algebra on [..., 3] tensors (differentiable to any order).
torch::Tensor rowDot(const torch::Tensor& a, const torch::Tensor& b) { return (a * b).sum(-1); }
torch::Tensor rowNorm(const torch::Tensor& a) { return rowDot(a, a).sqrt(); }
torch::Tensor rowCross(const torch::Tensor& a, const torch::Tensor& b) { return at::linalg_cross(a, b, -1); }

/** Angle at b between a and c, atan2(|u x v|, u . v): accurate over [0, pi] without clamping. */
torch::Tensor angleAt(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
    auto u = a - b, v = c - b;
    return torch::atan2(rowNorm(rowCross(u, v)), rowDot(u, v));
}

/** Dihedral (IUPAC sign) of p0-p1-p2-p3 in (-pi, pi]. */
torch::Tensor dihedralOf(const torch::Tensor& p0, const torch::Tensor& p1, const torch::Tensor& p2,
                         const torch::Tensor& p3) {
    auto b1 = p1 - p0, b2 = p2 - p1, b3 = p3 - p2;
    auto n1 = rowCross(b1, b2), n2 = rowCross(b2, b3);
    auto phi = torch::atan2(rowNorm(b2) * rowDot(b1, n2), rowDot(n1, n2));
    return torch::where(phi <= -M_PI, phi + 2.0 * M_PI, phi);  // atan2(-0, x<0) = -pi -> pi
}

/** Positions [B, n, 3] from [B, n, 3] or [B, 3n]. */
torch::Tensor asAtoms(const torch::Tensor& x, const char* who) {
    if (x.dim() == 3 && x.size(2) == 3) return x;
    if (x.dim() == 2 && x.size(1) % 3 == 0) return x.reshape({x.size(0), x.size(1) / 3, 3});
    throw std::invalid_argument(std::string(who) + ": positions must be [B, n, 3] or [B, 3n]");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// InternalCoordinateLayer

std::string icKindName(ICKind kind) {
    switch (kind) {
        case ICKind::Bond: return "bond";
        case ICKind::Angle: return "angle";
        case ICKind::Torsion: return "torsion";
    }
    return "bond";
}

InternalCoordinateLayer::InternalCoordinateLayer(ZMatrix zmatrix, std::array<double, 2> bondRange,
                                                 std::array<double, 2> angleRange)
    : InternalCoordinateLayer(EmbeddingSpec::fromJson([&] {
          EmbeddingSpec e;
          e.zmatrix = std::move(zmatrix);
          e.bondRange = bondRange;
          e.angleRange = angleRange;
          return e.toJson();
      }())) {}

InternalCoordinateLayer::InternalCoordinateLayer(const EmbeddingSpec& spec)
    : spec_(spec) {
    order_ = spec_.zmatrix.placementOrder();
    const auto nRows = spec_.zmatrix.rows.size();
    rowBondDim_.assign(nRows, -1);
    rowAngleDim_.assign(nRows, -1);
    rowTorsionDim_.assign(nRows, -1);
    for (size_t k = 0; k < nRows; ++k) {
        const auto& r = spec_.zmatrix.rows[k];
        if (r[1] >= 0) bondRows_.push_back(static_cast<int64_t>(k));
        if (r[2] >= 0) angleRows_.push_back(static_cast<int64_t>(k));
        if (r[3] >= 0) torsionRows_.push_back(static_cast<int64_t>(k));
        const auto c = ZMatrix::referenceCount(r);
        if (c == 0) originRow_ = static_cast<int64_t>(k);
        if (c == 1) axisRow_ = static_cast<int64_t>(k);
        if (c == 2) planeRow_ = static_cast<int64_t>(k);
    }
    const auto nb = numBonds(), na = numAngles();
    for (int64_t i = 0; i < nb; ++i) rowBondDim_[static_cast<size_t>(bondRows_[static_cast<size_t>(i)])] = i;
    for (int64_t i = 0; i < na; ++i) rowAngleDim_[static_cast<size_t>(angleRows_[static_cast<size_t>(i)])] = nb + i;
    for (int64_t i = 0; i < numTorsions(); ++i)
        rowTorsionDim_[static_cast<size_t>(torsionRows_[static_cast<size_t>(i)])] = nb + na + i;
    if (!spec_.bondRanges.empty() && static_cast<int64_t>(spec_.bondRanges.size()) != nb)
        throw std::invalid_argument("internal coordinates: bond_ranges needs one range per bond");
    if (!spec_.angleRanges.empty() && static_cast<int64_t>(spec_.angleRanges.size()) != na)
        throw std::invalid_argument("internal coordinates: angle_ranges needs one range per angle");
    logDetConstant_ = -static_cast<double>(numTorsions()) * std::log(2.0 * M_PI);
    for (const auto& r : spec_.coordinateRanges()) {
        lower_.push_back(r[0]);
        width_.push_back(r[1] - r[0]);
        logDetConstant_ -= std::log(r[1] - r[0]);
    }
}

torch::Tensor InternalCoordinateLayer::internalCoordinates(const torch::Tensor& x) const {
    if (x.dim() != 2 || x.size(1) != inputDim())
        throw std::invalid_argument("internal coordinates: expected positions [B, " + std::to_string(inputDim()) +
                                    "], got " + std::to_string(x.dim()) + "-dimensional input" +
                                    (x.dim() == 2 ? " with " + std::to_string(x.size(1)) + " columns" : ""));
    auto xa = x.reshape({x.size(0), numAtoms(), 3});
    const auto idx = torch::TensorOptions().dtype(torch::kLong).device(x.device());
    auto gather = [&](const std::vector<int64_t>& rowIdx, int col) {
        std::vector<int64_t> atoms;
        for (auto k : rowIdx) atoms.push_back(spec_.zmatrix.rows[static_cast<size_t>(k)][static_cast<size_t>(col)]);
        return xa.index_select(1, torch::tensor(atoms, idx));  // [B, m, 3]
    };
    auto bonds = rowNorm(gather(bondRows_, 0) - gather(bondRows_, 1));
    auto angles = angleAt(gather(angleRows_, 0), gather(angleRows_, 1), gather(angleRows_, 2));
    auto torsions =
        dihedralOf(gather(torsionRows_, 0), gather(torsionRows_, 1), gather(torsionRows_, 2), gather(torsionRows_, 3));
    return torch::cat({bonds, angles, torsions}, 1);
}

namespace {
/** log d Phi(2t - 1)/dt at s = 2t - 1: log 2 + log phi(s) = log 2 - log sqrt(2 pi) - s^2 / 2. */
torch::Tensor gaussLogDeriv(const torch::Tensor& s) { return (std::log(2.0) - 0.5 * std::log(2.0 * M_PI)) - 0.5 * s * s; }
}  // namespace

std::pair<torch::Tensor, torch::Tensor> InternalCoordinateLayer::toUnit(const torch::Tensor& t) const {
    using B = EmbeddingSpec::Boundary;
    if (spec_.boundary == B::Linear) return {t, torch::zeros_like(t)};
    if (spec_.boundary == B::Gauss) {
        auto s = 2.0 * t - 1.0;  // (q - mu) / sigma
        return {torch::special::ndtr(s), gaussLogDeriv(s)};
    }
    // W = logistic(z), z = s (1/(1-t) - 1/t); log W' = log sigma(z) + log sigma(-z) + log(s (1/t^2 + 1/(1-t)^2))
    namespace F = torch::nn::functional;
    const double s = spec_.wallSharpness;
    auto z = s * (1.0 / (1.0 - t) - 1.0 / t);
    auto logDeriv = -F::softplus(z) - F::softplus(-z) + std::log(s) + torch::log(1.0 / (t * t) + 1.0 / ((1.0 - t) * (1.0 - t)));
    return {torch::sigmoid(z), logDeriv};
}

std::pair<torch::Tensor, torch::Tensor> InternalCoordinateLayer::fromUnit(const torch::Tensor& u) const {
    using B = EmbeddingSpec::Boundary;
    if (spec_.boundary == B::Linear) return {u, torch::zeros_like(u)};
    if (spec_.boundary == B::Gauss) {
        auto s = torch::special::ndtri(u);
        return {0.5 * (s + 1.0), gaussLogDeriv(s)};
    }
    // z = logit(u); t solves z t^2 + (2s - z) t - s = 0: t = 2s / (2s - z + sqrt(4s^2 + z^2)) (stable for all z)
    const double s = spec_.wallSharpness;
    auto z = torch::log(u) - torch::log1p(-u);
    auto t = 2.0 * s / (2.0 * s - z + torch::sqrt(4.0 * s * s + z * z));
    return {t, toUnit(t).second};
}

std::pair<torch::Tensor, torch::Tensor> InternalCoordinateLayer::rangeTensors(const torch::TensorOptions& options) const {
    return {torch::tensor(lower_, torch::kFloat64).to(options), torch::tensor(width_, torch::kFloat64).to(options)};
}

torch::Tensor InternalCoordinateLayer::unitDerivative(const torch::Tensor& q) const {
    const auto nb = numBonds(), na = numAngles(), nt = numTorsions();
    auto [lo, w] = rangeTensors(q.options());
    auto l = toUnit((q.narrow(1, 0, nb + na) - lo) / w).second;
    return torch::cat({torch::exp(l) / w, torch::full({q.size(0), nt}, 1.0 / (2.0 * M_PI), q.options())}, 1);
}

FlowResult InternalCoordinateLayer::forward(const torch::Tensor& x) {
    auto q = internalCoordinates(x);
    const auto nb = numBonds(), na = numAngles(), nt = numTorsions();
    auto r = q.narrow(1, 0, nb), theta = q.narrow(1, nb, na), phi = q.narrow(1, nb + na, nt);
    auto [lo, w] = rangeTensors(q.options());
    auto [uba, l] = toUnit((q.narrow(1, 0, nb + na) - lo) / w);
    auto ut = (phi + M_PI) / (2.0 * M_PI);
    ut = ut - torch::floor(ut);  // phi = pi -> 0
    auto logdet = -2.0 * torch::log(r).sum(1) - torch::log(torch::sin(theta)).sum(1) + logDetConstant_;
    if (spec_.boundary != EmbeddingSpec::Boundary::Linear) logdet = logdet + l.sum(1);
    return {torch::cat({uba, ut}, 1), logdet};
}

FlowResult InternalCoordinateLayer::inverse(const torch::Tensor& u) {
    if (u.dim() != 2 || u.size(1) != outputDim())
        throw std::invalid_argument("internal coordinates: expected internal coordinates [B, " +
                                    std::to_string(outputDim()) + "]");
    const auto B = u.size(0);
    const auto nb = numBonds(), na = numAngles(), nt = numTorsions();
    auto [lo, w] = rangeTensors(u.options());
    auto [t, l] = fromUnit(u.narrow(1, 0, nb + na));
    auto q = lo + t * w;
    auto r = q.narrow(1, 0, nb), theta = q.narrow(1, nb, na);
    auto phi = u.narrow(1, nb + na, nt) * (2.0 * M_PI) - M_PI;
    auto logdet = 2.0 * torch::log(r).sum(1) + torch::log(torch::sin(theta)).sum(1) - logDetConstant_;
    if (spec_.boundary != EmbeddingSpec::Boundary::Linear) logdet = logdet - l.sum(1);

    auto opts = u.options();
    auto ex = torch::tensor({1.0, 0.0, 0.0}, opts).expand({B, 3});
    auto ey = torch::tensor({0.0, 1.0, 0.0}, opts).expand({B, 3});
    std::vector<torch::Tensor> pos(static_cast<size_t>(numAtoms()));
    auto at = [&](int64_t atom) -> const torch::Tensor& { return pos[static_cast<size_t>(atom)]; };
    auto col = [](const torch::Tensor& t, int64_t dim, int64_t offset) { return t.select(1, dim - offset).unsqueeze(1); };
    for (auto k : order_) {
        const auto& row = spec_.zmatrix.rows[static_cast<size_t>(k)];
        const auto ks = static_cast<size_t>(k);
        torch::Tensor p;
        if (k == originRow_) {
            p = torch::zeros({B, 3}, opts);
        } else if (k == axisRow_) {  // on +x from its bond reference (the origin)
            p = at(row[1]) + col(r, rowBondDim_[ks], 0) * ex;
        } else {
            auto rb = col(r, rowBondDim_[ks], 0), th = col(theta, rowAngleDim_[ks], nb);
            auto C = at(row[1]), Bp = at(row[2]);
            auto bc = C - Bp;
            bc = bc / rowNorm(bc).unsqueeze(1);
            if (k == planeRow_) {  // in the xy-plane, y > 0 (bc is +-x here)
                p = C + rb * (-torch::cos(th) * bc + torch::sin(th) * ey);
            } else {  // natural extension reference frame: torsion (atom, C, B, A) = phi
                auto ph = col(phi, rowTorsionDim_[ks], nb + na);
                auto A = at(row[3]);
                auto nv = rowCross(Bp - A, bc);
                nv = nv / rowNorm(nv).unsqueeze(1);
                auto m = rowCross(nv, bc);
                p = C + rb * (-torch::cos(th) * bc + torch::sin(th) * (torch::cos(ph) * m + torch::sin(ph) * nv));
            }
        }
        pos[static_cast<size_t>(row[0])] = p;
    }
    return {torch::stack(pos, 1).reshape({B, inputDim()}), logdet};
}

nlohmann::json InternalCoordinateLayer::config() const {
    return spec_.toJson();
}

namespace {
/** The bonds (nm) and angles (rad) of frames x [B, 3n] under the embedding's z-matrix, [B, nb + na], with nb;
 *  at least 2 frames (else std::invalid_argument naming what). */
std::pair<torch::Tensor, int64_t> bondsAndAnglesOf(const EmbeddingSpec& embedding, const torch::Tensor& x, const std::string& what) {
    if (x.dim() != 2 || x.size(0) < 2) throw std::invalid_argument(what + ": need at least 2 frames");
    EmbeddingSpec plain = embedding;  // only the geometry is read: global ranges and the linear map always build
    plain.bondRanges.clear();
    plain.angleRanges.clear();
    plain.boundary = EmbeddingSpec::Boundary::Linear;
    InternalCoordinateLayer ic(plain);
    torch::NoGradGuard noGrad;
    const auto nb = ic.numBonds(), na = ic.numAngles();
    return {ic.internalCoordinates(x.to(torch::kFloat64)).narrow(1, 0, nb + na).contiguous(), nb};
}
}  // namespace

EmbeddingSpec fitDataRanges(const EmbeddingSpec& embedding, const torch::Tensor& x, double margin) {
    if (!(margin >= 0.0 && std::isfinite(margin))) throw std::invalid_argument("fit ranges: the margin must be finite and >= 0");
    const auto [q, nb] = bondsAndAnglesOf(embedding, x, "fit ranges");
    EmbeddingSpec fitted = embedding;
    fitted.bondRanges.clear();
    fitted.angleRanges.clear();
    auto qmin = std::get<0>(q.min(0)).contiguous(), qmax = std::get<0>(q.max(0)).contiguous();
    const double* mn = qmin.data_ptr<double>();
    const double* mx = qmax.data_ptr<double>();
    for (int64_t i = 0; i < q.size(1); ++i) {
        const bool bond = i < nb;
        const auto g = bond ? embedding.bondRange : embedding.angleRange;  // the global range
        const std::string name = std::string(bond ? "bond " : "angle ") + std::to_string(bond ? i : i - nb);
        if (!(mn[i] > g[0] && mx[i] < g[1]))
            throw std::invalid_argument("fit ranges: the data's " + name + " spans [" + std::to_string(mn[i]) + ", " +
                                        std::to_string(mx[i]) + "], outside the model's range [" + std::to_string(g[0]) +
                                        ", " + std::to_string(g[1]) + "]" + (bond ? " nm" : " rad"));
        const double spread = std::max(mx[i] - mn[i], 1e-6 * (g[1] - g[0]));
        const std::array<double, 2> r{std::max(g[0], mn[i] - margin * spread), std::min(g[1], mx[i] + margin * spread)};
        (bond ? fitted.bondRanges : fitted.angleRanges).push_back(r);
    }
    return fitted;
}

EmbeddingSpec fitDataGaussians(const EmbeddingSpec& embedding, const torch::Tensor& x, double scale) {
    if (!(scale > 0.0 && std::isfinite(scale))) throw std::invalid_argument("fit gaussians: the scale must be finite and > 0");
    const auto [q, nb] = bondsAndAnglesOf(embedding, x, "fit gaussians");
    EmbeddingSpec fitted = embedding;
    fitted.bondRanges.clear();
    fitted.angleRanges.clear();
    fitted.boundary = EmbeddingSpec::Boundary::Gauss;
    auto mean = q.mean(0).contiguous(), sd = q.std(0, /*unbiased=*/false).contiguous();
    const double* mu = mean.data_ptr<double>();
    const double* sg = sd.data_ptr<double>();
    for (int64_t i = 0; i < q.size(1); ++i) {
        const bool bond = i < nb;
        const std::string name = std::string(bond ? "bond " : "angle ") + std::to_string(bond ? i : i - nb);
        const double half = scale * std::max(sg[i], 1e-9);  // a constant coordinate still gets a (narrow) Gaussian
        const std::array<double, 2> r{mu[i] - half, mu[i] + half};
        if (!std::isfinite(mu[i]) || !(r[0] >= 0.0) || (!bond && !(r[1] <= M_PI)))
            throw std::invalid_argument("fit gaussians: the data's " + name + " has mean " + std::to_string(mu[i]) +
                                        " and spread " + std::to_string(half) + (bond ? " nm" : " rad") +
                                        ", which leaves " + (bond ? "bond lengths > 0" : "angles in (0, pi]"));
        (bond ? fitted.bondRanges : fitted.angleRanges).push_back(r);
    }
    return fitted;
}

std::vector<bool> InternalCoordinateLayer::circularFlags() const {
    std::vector<bool> c(static_cast<size_t>(outputDim()), false);
    for (int64_t i = numBonds() + numAngles(); i < outputDim(); ++i) c[static_cast<size_t>(i)] = true;
    return c;
}

ICIndex InternalCoordinateLayer::outputIndex(int64_t dim) const {
    const auto nb = numBonds(), na = numAngles();
    if (dim < 0 || dim >= outputDim())
        throw std::out_of_range("internal coordinates: output dimension " + std::to_string(dim) + " out of range 0.." +
                                std::to_string(outputDim() - 1));
    ICIndex i{ICKind::Bond, -1, -1};
    if (dim < nb) {
        i.row = bondRows_[static_cast<size_t>(dim)];
    } else if (dim < nb + na) {
        i.kind = ICKind::Angle;
        i.row = angleRows_[static_cast<size_t>(dim - nb)];
    } else {
        i.kind = ICKind::Torsion;
        i.row = torsionRows_[static_cast<size_t>(dim - nb - na)];
    }
    i.atom = spec_.zmatrix.rows[static_cast<size_t>(i.row)][0];
    return i;
}

std::vector<int64_t> InternalCoordinateLayer::outputDims(ICKind kind) const {
    const auto nb = numBonds(), na = numAngles();
    const int64_t begin = kind == ICKind::Bond ? 0 : kind == ICKind::Angle ? nb : nb + na;
    const int64_t count = kind == ICKind::Bond ? nb : kind == ICKind::Angle ? na : numTorsions();
    std::vector<int64_t> d(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) d[static_cast<size_t>(i)] = begin + i;
    return d;
}

int64_t InternalCoordinateLayer::outputDimOf(ICKind kind, int64_t atom) const {
    for (size_t k = 0; k < spec_.zmatrix.rows.size(); ++k)
        if (spec_.zmatrix.rows[k][0] == atom)
            return kind == ICKind::Bond ? rowBondDim_[k] : kind == ICKind::Angle ? rowAngleDim_[k] : rowTorsionDim_[k];
    return -1;
}

std::shared_ptr<InternalCoordinateLayer> makeInternalCoordinateLayer(const nlohmann::json& config) {
    try {
        return std::make_shared<InternalCoordinateLayer>(EmbeddingSpec::fromJson(config));
    } catch (const nlohmann::json::exception& e) {
        throw std::invalid_argument(std::string("internal coordinates: bad config: ") + e.what());
    }
}

torch::Tensor dihedrals(const torch::Tensor& x, const std::vector<std::array<int64_t, 4>>& quadruples) {
    auto xa = asAtoms(x, "dihedrals");
    const auto n = xa.size(1);
    std::vector<int64_t> idx[4];
    for (const auto& q : quadruples)
        for (int c = 0; c < 4; ++c) {
            if (q[static_cast<size_t>(c)] < 0 || q[static_cast<size_t>(c)] >= n)
                throw std::invalid_argument("dihedrals: atom index " + std::to_string(q[static_cast<size_t>(c)]) +
                                            " out of range 0.." + std::to_string(n - 1));
            idx[c].push_back(q[static_cast<size_t>(c)]);
        }
    if (quadruples.empty()) return torch::zeros({xa.size(0), 0}, xa.options());
    const auto io = torch::TensorOptions().dtype(torch::kLong).device(x.device());
    auto p = [&](int c) { return xa.index_select(1, torch::tensor(idx[c], io)); };
    return dihedralOf(p(0), p(1), p(2), p(3));
}

}  // namespace flowforce
