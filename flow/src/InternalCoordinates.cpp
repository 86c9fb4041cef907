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

std::string rowLabel(size_t k, const ZMatrix::Row& r) {
    return "z-matrix row " + std::to_string(k + 1) + " (atom " + std::to_string(r[0]) + ")";
}

std::string joinInts(const std::vector<int64_t>& v, const std::string& sep) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + std::to_string(v[i]);
    return s;
}

int64_t refCount(const ZMatrix::Row& r) { return (r[1] >= 0) + (r[2] >= 0) + (r[3] >= 0); }

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
// ZMatrix

ZMatrix::ZMatrix(std::vector<Row> r) : rows(std::move(r)) { validate(); }

ZMatrix ZMatrix::parse(const std::string& text) {
    std::vector<Row> rows;
    std::istringstream in(text);
    std::string line;
    int lineNo = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        const auto hash = line.find('#');
        const std::string body = hash == std::string::npos ? line : line.substr(0, hash);
        if (body.find_first_not_of(" \t\r\n") == std::string::npos) continue;
        std::istringstream ls(body);
        Row r{};
        std::string rest;
        if (!(ls >> r[0] >> r[1] >> r[2] >> r[3]) || (ls >> rest))
            throw std::invalid_argument("z-matrix line " + std::to_string(lineNo) +
                                        ": expected four integers 'atom bond-ref angle-ref torsion-ref' (-1 = none), got '" +
                                        body + "'");
        rows.push_back(r);
    }
    if (rows.empty()) throw std::invalid_argument("z-matrix: no rows (expected lines 'atom bond-ref angle-ref torsion-ref')");
    return ZMatrix(std::move(rows));
}

ZMatrix ZMatrix::fromFile(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw std::invalid_argument(path + ": cannot open z-matrix file");
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return parse(ss.str());
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(path + ": " + e.what());
    }
}

ZMatrix ZMatrix::fromJson(const nlohmann::json& j) {
    if (!j.is_array()) throw std::invalid_argument("z-matrix: expected a JSON array of rows [atom, bond, angle, torsion]");
    std::vector<Row> rows;
    for (const auto& r : j) {
        if (!r.is_array() || r.size() != 4)
            throw std::invalid_argument("z-matrix: every row must be [atom, bond, angle, torsion], got " + r.dump());
        Row row{};
        for (size_t k = 0; k < 4; ++k) {
            if (!r[k].is_number_integer()) throw std::invalid_argument("z-matrix: non-integer entry in row " + r.dump());
            row[k] = r[k].get<int64_t>();
        }
        rows.push_back(row);
    }
    return ZMatrix(std::move(rows));
}

ZMatrix ZMatrix::builtinAlanineDipeptide() {
    // data/ala2-zmatrix.txt: bgmol's DEFAULT_GLOBAL_Z_MATRIX, atom order of data/alanine-dipeptide.pdb.
    return ZMatrix(std::vector<Row>{{0, 1, 4, 6},     {1, 4, 6, 8},     {2, 1, 4, 0},     {3, 1, 4, 0},
                                    {4, 6, 8, 14},    {5, 4, 6, 8},     {7, 6, 8, 4},     {11, 10, 8, 6},
                                    {12, 10, 8, 11},  {13, 10, 8, 11},  {15, 14, 8, 16},  {16, 14, 8, 6},
                                    {17, 16, 14, 15}, {18, 16, 14, 8},  {19, 18, 16, 14}, {20, 18, 16, 19},
                                    {21, 18, 16, 19}, {9, 8, 6, 14},    {10, 8, 14, 6},   {6, 8, 14, -1},
                                    {8, 14, -1, -1},  {14, -1, -1, -1}});
}

nlohmann::json ZMatrix::toJson() const {
    auto j = nlohmann::json::array();
    for (const auto& r : rows) j.push_back({r[0], r[1], r[2], r[3]});
    return j;
}

void ZMatrix::validate(int64_t expectedAtoms) const {
    if (rows.empty()) throw std::invalid_argument("z-matrix: no rows");
    int64_t maxAtom = -1;
    for (size_t k = 0; k < rows.size(); ++k) {
        const auto& r = rows[k];
        if (r[0] < 0) throw std::invalid_argument(rowLabel(k, r) + ": the atom index must be >= 0");
        for (int c = 1; c < 4; ++c)
            if (r[c] < -1)
                throw std::invalid_argument(rowLabel(k, r) + ": reference " + std::to_string(r[c]) +
                                            " is negative (use -1 for none)");
        maxAtom = std::max(maxAtom, r[0]);
    }
    const int64_t n = expectedAtoms >= 0 ? expectedAtoms : std::max<int64_t>(static_cast<int64_t>(rows.size()), maxAtom + 1);
    for (size_t k = 0; k < rows.size(); ++k) {
        const auto& r = rows[k];
        if (r[0] >= n)
            throw std::invalid_argument(rowLabel(k, r) + ": atom " + std::to_string(r[0]) + " is out of range (atoms 0.." +
                                        std::to_string(n - 1) + ")");
        for (int c = 1; c < 4; ++c)
            if (r[c] >= n)
                throw std::invalid_argument(rowLabel(k, r) + ": reference " + std::to_string(r[c]) +
                                            " is out of range (atoms 0.." + std::to_string(n - 1) + ")");
    }
    // every atom exactly once
    std::map<int64_t, std::vector<int64_t>> rowsOf;
    for (size_t k = 0; k < rows.size(); ++k) rowsOf[rows[k][0]].push_back(static_cast<int64_t>(k) + 1);
    for (const auto& [atom, rs] : rowsOf)
        if (rs.size() > 1)
            throw std::invalid_argument("z-matrix: atom " + std::to_string(atom) + " appears in " +
                                        std::to_string(rs.size()) + " rows (rows " + joinInts(rs, ", ") +
                                        "); every atom needs exactly one row");
    std::vector<int64_t> missing;
    for (int64_t a = 0; a < n; ++a)
        if (!rowsOf.count(a)) missing.push_back(a);
    if (!missing.empty())
        throw std::invalid_argument("z-matrix: atom" + std::string(missing.size() > 1 ? "s " : " ") + joinInts(missing, ", ") +
                                    (missing.size() > 1 ? " have" : " has") + " no row; every atom 0.." +
                                    std::to_string(n - 1) + " needs exactly one row");
    if (n < 3) throw std::invalid_argument("z-matrix: at least 3 atoms are needed, got " + std::to_string(n));
    // row structure
    std::vector<int64_t> byCount[4];
    for (size_t k = 0; k < rows.size(); ++k) {
        const auto& r = rows[k];
        if ((r[1] < 0 && (r[2] >= 0 || r[3] >= 0)) || (r[2] < 0 && r[3] >= 0))
            throw std::invalid_argument(rowLabel(k, r) +
                                        ": -1 may only stand at the end (a torsion reference needs an angle reference, "
                                        "an angle reference a bond reference)");
        for (int c = 1; c < 4; ++c) {
            if (r[c] == r[0])
                throw std::invalid_argument(rowLabel(k, r) + ": the row references its own atom " + std::to_string(r[0]));
            for (int d = c + 1; d < 4; ++d)
                if (r[c] >= 0 && r[c] == r[d])
                    throw std::invalid_argument(rowLabel(k, r) + ": references atom " + std::to_string(r[c]) +
                                                " twice (bond, angle and torsion references must differ)");
        }
        byCount[refCount(r)].push_back(static_cast<int64_t>(k) + 1);
    }
    const char* what[3] = {"origin row 'atom -1 -1 -1'", "bond-only row 'atom b -1 -1'", "frame row 'atom b a -1'"};
    for (int c = 0; c < 3; ++c)
        if (byCount[c].size() != 1)
            throw std::invalid_argument("z-matrix: needs exactly one " + std::string(what[c]) + ", found " +
                                        std::to_string(byCount[c].size()) +
                                        (byCount[c].empty() ? "" : " (rows " + joinInts(byCount[c], ", ") + ")"));
    placementOrder();  // throws on cycles
}

std::vector<int64_t> ZMatrix::placementOrder() const {
    const auto nRows = rows.size();
    int64_t maxIndex = -1;
    for (const auto& r : rows)
        for (auto v : r) maxIndex = std::max(maxIndex, v);
    std::vector<char> placed(static_cast<size_t>(maxIndex + 1), 0), rowDone(nRows, 0);
    std::vector<int64_t> order;
    bool progress = true;
    while (progress && order.size() < nRows) {
        progress = false;
        for (size_t k = 0; k < nRows; ++k) {
            if (rowDone[k]) continue;
            const auto& r = rows[k];
            bool ready = true;
            for (int c = 1; c < 4; ++c) ready = ready && (r[c] < 0 || placed[static_cast<size_t>(r[c])]);
            if (!ready) continue;
            rowDone[k] = 1;
            placed[static_cast<size_t>(r[0])] = 1;
            order.push_back(static_cast<int64_t>(k));
            progress = true;
        }
    }
    if (order.size() == nRows) return order;
    // Unplaceable: every remaining row waits on an unplaced atom. Follow such references to a cycle.
    std::map<int64_t, size_t> rowOfAtom;
    for (size_t k = 0; k < nRows; ++k) rowOfAtom[rows[k][0]] = k;
    size_t k = 0;
    while (rowDone[k]) ++k;
    std::vector<int64_t> path;
    std::set<int64_t> seen;
    int64_t atom = rows[k][0];
    while (!seen.count(atom)) {
        seen.insert(atom);
        path.push_back(atom);
        const auto& r = rows[rowOfAtom.at(atom)];
        int64_t next = -1;
        for (int c = 1; c < 4 && next < 0; ++c)
            if (r[c] >= 0 && !placed[static_cast<size_t>(r[c])]) next = r[c];
        if (next < 0 || !rowOfAtom.count(next)) {  // waits on an atom without a row (invalid z-matrix)
            throw std::invalid_argument("z-matrix: atom " + std::to_string(atom) +
                                        " cannot be placed: it references atom " + std::to_string(next) +
                                        " which has no row");
        }
        atom = next;
    }
    const auto start = std::find(path.begin(), path.end(), atom);
    std::vector<int64_t> cycle(start, path.end());
    cycle.push_back(atom);
    throw std::invalid_argument("z-matrix: cyclic references " + joinInts(cycle, " -> ") +
                                " (each atom's row references atoms that must be placed before it)");
}

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
    : zmatrix_(std::move(zmatrix)), bondRange_(bondRange), angleRange_(angleRange) {
    zmatrix_.validate();
    if (!(bondRange_[0] >= 0.0 && bondRange_[1] > bondRange_[0] && std::isfinite(bondRange_[1])))
        throw std::invalid_argument("internal coordinates: bond_range must be [lo, hi] nm with 0 <= lo < hi");
    if (!(angleRange_[0] >= 0.0 && angleRange_[1] > angleRange_[0] && angleRange_[1] <= M_PI))
        throw std::invalid_argument("internal coordinates: angle_range must be [lo, hi] rad with 0 <= lo < hi <= pi");
    order_ = zmatrix_.placementOrder();
    const auto nRows = zmatrix_.rows.size();
    rowBondDim_.assign(nRows, -1);
    rowAngleDim_.assign(nRows, -1);
    rowTorsionDim_.assign(nRows, -1);
    for (size_t k = 0; k < nRows; ++k) {
        const auto& r = zmatrix_.rows[k];
        if (r[1] >= 0) bondRows_.push_back(static_cast<int64_t>(k));
        if (r[2] >= 0) angleRows_.push_back(static_cast<int64_t>(k));
        if (r[3] >= 0) torsionRows_.push_back(static_cast<int64_t>(k));
        const auto c = refCount(r);
        if (c == 0) originRow_ = static_cast<int64_t>(k);
        if (c == 1) axisRow_ = static_cast<int64_t>(k);
        if (c == 2) planeRow_ = static_cast<int64_t>(k);
    }
    const auto nb = numBonds(), na = numAngles();
    for (int64_t i = 0; i < nb; ++i) rowBondDim_[static_cast<size_t>(bondRows_[static_cast<size_t>(i)])] = i;
    for (int64_t i = 0; i < na; ++i) rowAngleDim_[static_cast<size_t>(angleRows_[static_cast<size_t>(i)])] = nb + i;
    for (int64_t i = 0; i < numTorsions(); ++i)
        rowTorsionDim_[static_cast<size_t>(torsionRows_[static_cast<size_t>(i)])] = nb + na + i;
    logDetConstant_ = -static_cast<double>(nb) * std::log(bondRange_[1] - bondRange_[0]) -
                      static_cast<double>(na) * std::log(angleRange_[1] - angleRange_[0]) -
                      static_cast<double>(numTorsions()) * std::log(2.0 * M_PI);
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
        for (auto k : rowIdx) atoms.push_back(zmatrix_.rows[static_cast<size_t>(k)][static_cast<size_t>(col)]);
        return xa.index_select(1, torch::tensor(atoms, idx));  // [B, m, 3]
    };
    auto bonds = rowNorm(gather(bondRows_, 0) - gather(bondRows_, 1));
    auto angles = angleAt(gather(angleRows_, 0), gather(angleRows_, 1), gather(angleRows_, 2));
    auto torsions =
        dihedralOf(gather(torsionRows_, 0), gather(torsionRows_, 1), gather(torsionRows_, 2), gather(torsionRows_, 3));
    return torch::cat({bonds, angles, torsions}, 1);
}

FlowResult InternalCoordinateLayer::forward(const torch::Tensor& x) {
    auto q = internalCoordinates(x);
    const auto nb = numBonds(), na = numAngles(), nt = numTorsions();
    auto r = q.narrow(1, 0, nb), theta = q.narrow(1, nb, na), phi = q.narrow(1, nb + na, nt);
    auto ub = (r - bondRange_[0]) / (bondRange_[1] - bondRange_[0]);
    auto ua = (theta - angleRange_[0]) / (angleRange_[1] - angleRange_[0]);
    auto ut = (phi + M_PI) / (2.0 * M_PI);
    ut = ut - torch::floor(ut);  // phi = pi -> 0
    auto logdet = -2.0 * torch::log(r).sum(1) - torch::log(torch::sin(theta)).sum(1) + logDetConstant_;
    return {torch::cat({ub, ua, ut}, 1), logdet};
}

FlowResult InternalCoordinateLayer::inverse(const torch::Tensor& u) {
    if (u.dim() != 2 || u.size(1) != outputDim())
        throw std::invalid_argument("internal coordinates: expected internal coordinates [B, " +
                                    std::to_string(outputDim()) + "]");
    const auto B = u.size(0);
    const auto nb = numBonds(), na = numAngles(), nt = numTorsions();
    auto r = bondRange_[0] + u.narrow(1, 0, nb) * (bondRange_[1] - bondRange_[0]);
    auto theta = angleRange_[0] + u.narrow(1, nb, na) * (angleRange_[1] - angleRange_[0]);
    auto phi = u.narrow(1, nb + na, nt) * (2.0 * M_PI) - M_PI;
    auto logdet = 2.0 * torch::log(r).sum(1) + torch::log(torch::sin(theta)).sum(1) - logDetConstant_;

    auto opts = u.options();
    auto ex = torch::tensor({1.0, 0.0, 0.0}, opts).expand({B, 3});
    auto ey = torch::tensor({0.0, 1.0, 0.0}, opts).expand({B, 3});
    std::vector<torch::Tensor> pos(static_cast<size_t>(numAtoms()));
    auto at = [&](int64_t atom) -> const torch::Tensor& { return pos[static_cast<size_t>(atom)]; };
    auto col = [](const torch::Tensor& t, int64_t dim, int64_t offset) { return t.select(1, dim - offset).unsqueeze(1); };
    for (auto k : order_) {
        const auto& row = zmatrix_.rows[static_cast<size_t>(k)];
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
    return {{"type", "internal_coordinates"},
            {"zmatrix", zmatrix_.toJson()},
            {"bond_range", {bondRange_[0], bondRange_[1]}},
            {"angle_range", {angleRange_[0], angleRange_[1]}}};
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
    i.atom = zmatrix_.rows[static_cast<size_t>(i.row)][0];
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
    for (size_t k = 0; k < zmatrix_.rows.size(); ++k)
        if (zmatrix_.rows[k][0] == atom)
            return kind == ICKind::Bond ? rowBondDim_[k] : kind == ICKind::Angle ? rowAngleDim_[k] : rowTorsionDim_[k];
    return -1;
}

std::shared_ptr<InternalCoordinateLayer> makeInternalCoordinateLayer(const nlohmann::json& config) {
    try {
        if (config.value("type", std::string()) != "internal_coordinates")
            throw std::invalid_argument("internal coordinates: config type must be 'internal_coordinates'");
        if (!config.contains("zmatrix")) throw std::invalid_argument("internal coordinates: config lacks 'zmatrix'");
        auto range = [&](const char* key, std::array<double, 2> fallback) {
            if (!config.contains(key)) return fallback;
            const auto& j = config.at(key);
            if (!j.is_array() || j.size() != 2 || !j[0].is_number() || !j[1].is_number())
                throw std::invalid_argument(std::string("internal coordinates: '") + key + "' must be [lo, hi]");
            return std::array<double, 2>{j[0].get<double>(), j[1].get<double>()};
        };
        return std::make_shared<InternalCoordinateLayer>(ZMatrix::fromJson(config.at("zmatrix")),
                                                         range("bond_range", {0.05, 0.3}),
                                                         range("angle_range", {0.15 * M_PI, M_PI}));
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
