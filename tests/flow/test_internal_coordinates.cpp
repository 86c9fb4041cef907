// Global internal coordinates: z-matrix parsing and validation, round trips x -> u -> x (up to the
// rigid motion the transform drops), log-determinants against autograd Jacobians (Gram determinant
// and the rigid-motion-augmented square Jacobian), invariance to rigid motions, hand-computed small
// molecules, phi/psi of alanine dipeptide, gradients against finite differences.
#include "TestUtil.h"

#include "flowforce/flow/InternalCoordinates.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

using namespace flowforce;
using namespace flowforce::test;

namespace {

std::string dataPath(const std::string& name) {
    return (std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "data" / name).lexically_normal().string();
}

/** Positions [1, 3n] in nm from the ATOM/HETATM lines of a PDB file (Angstrom). */
torch::Tensor readPdbNm(const std::string& path) {
    std::ifstream f(path);
    EXPECT_TRUE(f.good()) << "cannot open " << path;
    std::vector<double> xyz;
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("ATOM", 0) != 0 && line.rfind("HETATM", 0) != 0) continue;
        for (int k = 0; k < 3; ++k) xyz.push_back(0.1 * std::stod(line.substr(30 + 8 * k, 8)));
    }
    return torch::tensor(xyz, f64()).reshape({1, -1});
}

torch::Tensor ala2Pdb() { return readPdbNm(dataPath("alanine-dipeptide.pdb")); }

/** The PDB geometry and B-1 copies perturbed by N(0, sigma^2) nm per coordinate. */
torch::Tensor ala2Batch(int64_t B, double sigma = 0.005, uint64_t seed = 11) {
    auto x0 = ala2Pdb();
    auto gen = at::detail::createCPUGenerator(seed);
    auto noise = torch::randn({B, x0.size(1)}, gen, f64()) * sigma;
    noise[0].zero_();
    return x0 + noise;
}

/** Smallest signed difference of two circle values in [0,1). */
torch::Tensor circularDiff(const torch::Tensor& a, const torch::Tensor& b) {
    auto d = a - b;
    return d - torch::round(d);
}

/** u differences with torsion channels compared on the circle. */
torch::Tensor uDiff(const InternalCoordinateLayer& ic, const torch::Tensor& a, const torch::Tensor& b) {
    const auto nl = ic.numBonds() + ic.numAngles();
    return torch::cat({a.narrow(1, 0, nl) - b.narrow(1, 0, nl),
                       circularDiff(a.narrow(1, nl, ic.numTorsions()), b.narrow(1, nl, ic.numTorsions()))},
                      1);
}

/** Random rotation matrices [B, 3, 3] (uniform unit quaternions). */
torch::Tensor randomRotations(int64_t B, uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    auto q = torch::randn({B, 4}, gen, f64());
    q = q / q.norm(2, 1, true);
    auto w = q.select(1, 0), x = q.select(1, 1), y = q.select(1, 2), z = q.select(1, 3);
    return torch::stack({1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),  //
                         2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),  //
                         2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)},
                        1)
        .reshape({B, 3, 3});
}

/** x [B, 3n] rotated by R [B,3,3] and translated by t [B,3]. */
torch::Tensor rigidMotion(const torch::Tensor& x, const torch::Tensor& R, const torch::Tensor& t) {
    auto xa = x.reshape({x.size(0), -1, 3});
    return (torch::matmul(xa, R.transpose(1, 2)) + t.unsqueeze(1)).reshape({x.size(0), -1});
}

/** Interatomic distance matrices [B, n, n]. */
torch::Tensor distances(const torch::Tensor& x) {
    auto xa = x.reshape({x.size(0), -1, 3});
    return (xa.unsqueeze(2) - xa.unsqueeze(1)).pow(2).sum(-1).sqrt();
}

/** Largest atom displacement between a [n,3]-reshaped row of `moved` and `ref` after the optimal
 *  proper rigid superposition (Kabsch) of moved onto ref. */
double kabschDeviation(const torch::Tensor& moved, const torch::Tensor& ref) {
    auto A = moved.reshape({-1, 3}), Bm = ref.reshape({-1, 3});
    A = A - A.mean(0, true);
    auto Bc = Bm - Bm.mean(0, true);
    auto H = torch::matmul(A.t(), Bc);
    auto [U, S, Vh] = torch::linalg_svd(H, false);
    auto V = Vh.t();
    const double d = torch::det(torch::matmul(V, U.t())).item<double>() < 0 ? -1.0 : 1.0;
    auto D = torch::diag(torch::tensor({1.0, 1.0, d}, f64()));
    auto R = torch::matmul(V, torch::matmul(D, U.t()));
    auto aligned = torch::matmul(A, R.t());
    return (aligned - Bc).pow(2).sum(1).sqrt().max().item<double>();
}

/** Jacobian d out / d in of a map of a single row, [out, in], by autograd (keeps no graph). */
torch::Tensor jacobianOf(const std::function<torch::Tensor(const torch::Tensor&)>& f, const torch::Tensor& in) {
    auto v = in.clone().requires_grad_(true);
    auto y = f(v).reshape({-1});
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < y.size(0); ++i)
        rows.push_back(torch::autograd::grad({y[i]}, {v}, {}, true, false, true)[0].reshape({-1}));
    return torch::stack(rows, 0);
}

/** Checks that f throws std::invalid_argument whose message contains `needle`. */
void expectInvalid(const std::function<void()>& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "expected std::invalid_argument containing '" << needle << "'";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
    }
}

std::vector<ZMatrix::Row> ala2Rows() { return ZMatrix::builtinAlanineDipeptide().rows; }

/** A 4-atom chain 0-1-2-3 (origin 0). */
ZMatrix chain4() { return ZMatrix({{0, -1, -1, -1}, {1, 0, -1, -1}, {2, 1, 0, -1}, {3, 2, 1, 0}}); }

/** A branched 5-atom molecule, rows out of placement order, frame atom bonded to the origin. */
ZMatrix branched5() { return ZMatrix({{3, 1, 0, 2}, {4, 0, 1, 3}, {2, 0, 1, -1}, {1, 0, -1, -1}, {0, -1, -1, -1}}); }

/** Typical geometry of a z-matrix: placed from mid-range internal coordinates with torsions spread. */
torch::Tensor typicalU(const InternalCoordinateLayer& ic, int64_t B, uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    auto u = torch::rand({B, ic.outputDim()}, gen, f64());
    const auto nl = ic.numBonds() + ic.numAngles();
    u.narrow(1, 0, nl).mul_(0.6).add_(0.2);  // bonds 0.1..0.25 nm, angles ~0.32..0.83 pi
    return u;
}

/** The frame term of the Gram relation: 2 log r_axis + log r_frame + log sin theta_frame. */
torch::Tensor frameTerm(InternalCoordinateLayer& ic, const torch::Tensor& u) {
    int64_t axisRow = -1, planeRow = -1;
    for (size_t k = 0; k < ic.zmatrix().rows.size(); ++k) {
        const auto& r = ic.zmatrix().rows[k];
        if (r[1] >= 0 && r[2] < 0) axisRow = static_cast<int64_t>(k);
        if (r[2] >= 0 && r[3] < 0) planeRow = static_cast<int64_t>(k);
    }
    const auto& z = ic.zmatrix().rows;
    auto q = ic.internalCoordinates(ic.inverse(u).out);  // raw bonds and angles, whatever the maps to [0,1]
    auto r1 = q.select(1, ic.outputDimOf(ICKind::Bond, z[static_cast<size_t>(axisRow)][0]));
    auto r2 = q.select(1, ic.outputDimOf(ICKind::Bond, z[static_cast<size_t>(planeRow)][0]));
    auto th = q.select(1, ic.outputDimOf(ICKind::Angle, z[static_cast<size_t>(planeRow)][0]));
    return 2 * torch::log(r1) + torch::log(r2) + torch::log(torch::sin(th));
}

/** Scalar dihedral by the textbook two-plane construction (acos of the plane normals, sign from
 *  the orientation), independent of the library's atan2 formula. */
double dihedralByPlanes(const torch::Tensor& xrow, int64_t i, int64_t j, int64_t k, int64_t l) {
    auto p = xrow.reshape({-1, 3});
    auto P = [&](int64_t a) { return std::array<double, 3>{p[a][0].item<double>(), p[a][1].item<double>(), p[a][2].item<double>()}; };
    auto sub = [](std::array<double, 3> a, std::array<double, 3> b) { return std::array<double, 3>{a[0] - b[0], a[1] - b[1], a[2] - b[2]}; };
    auto crs = [](std::array<double, 3> a, std::array<double, 3> b) {
        return std::array<double, 3>{a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
    };
    auto dt = [](std::array<double, 3> a, std::array<double, 3> b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; };
    auto a = sub(P(j), P(i)), b = sub(P(k), P(j)), c = sub(P(l), P(k));
    auto n1 = crs(a, b), n2 = crs(b, c);
    const double cosv = dt(n1, n2) / std::sqrt(dt(n1, n1) * dt(n2, n2));
    const double mag = std::acos(std::max(-1.0, std::min(1.0, cosv)));
    return dt(crs(n1, n2), b) >= 0 ? mag : -mag;  // IUPAC: positive = clockwise seen along j -> k
}

/** Hessian-vector product of a scalar function by double backward through grad(p, createGraph) (its
 *  gradient at p) against central differences of gradients along v. */
void expectHessianVectorProductMatchesDifferences(const std::function<torch::Tensor(const torch::Tensor&, bool)>& grad,
                                                  const torch::Tensor& p, const torch::Tensor& v, double h = 1e-6) {
    auto pg = p.clone().requires_grad_(true);
    auto hv = torch::autograd::grad({(grad(pg, true) * v).sum()}, {pg})[0];
    auto fd = (grad((p + h * v).requires_grad_(true), false) - grad((p - h * v).requires_grad_(true), false)) / (2 * h);
    EXPECT_LT(maxAbs(fd - hv), 1e-5 * (1.0 + maxAbs(fd)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Z-matrix parsing and validation

TEST(ZMatrixTest, DataFileMatchesBuiltin) {
    auto fromFile = ZMatrix::fromFile(dataPath("ala2-zmatrix.txt"));
    auto builtin = ZMatrix::builtinAlanineDipeptide();
    EXPECT_EQ(fromFile.rows, builtin.rows);
    EXPECT_EQ(builtin.numAtoms(), 22);
    EXPECT_EQ(builtin.toJson().size(), 22u);
    EXPECT_EQ(ZMatrix::fromJson(builtin.toJson()).rows, builtin.rows);
    auto order = builtin.placementOrder();
    ASSERT_EQ(order.size(), 22u);
    EXPECT_EQ(builtin.rows[static_cast<size_t>(order[0])][0], 14);  // origin, bond-only and frame atoms first
    EXPECT_EQ(builtin.rows[static_cast<size_t>(order[1])][0], 8);
    EXPECT_EQ(builtin.rows[static_cast<size_t>(order[2])][0], 6);
    std::vector<bool> placed(22, false);
    for (auto k : order) {
        const auto& r = builtin.rows[static_cast<size_t>(k)];
        for (size_t c = 1; c < 4; ++c) {
            if (r[c] >= 0) {
                EXPECT_TRUE(placed[static_cast<size_t>(r[c])]) << "atom " << r[0];
            }
        }
        placed[static_cast<size_t>(r[0])] = true;
    }
}

TEST(ZMatrixTest, ParsesCommentsAndBlankLinesAndRejectsMalformedLines) {
    auto z = ZMatrix::parse("# header\n\n  2 1 0 -1  # frame\n1 0 -1 -1\n\t\n0 -1 -1 -1\n3 2 1 0\n");
    EXPECT_EQ(z.numAtoms(), 4);
    EXPECT_EQ(z.rows[0], (ZMatrix::Row{2, 1, 0, -1}));
    expectInvalid([] { ZMatrix::parse("0 -1 -1 -1\n1 0 -1\n"); }, "line 2");
    expectInvalid([] { ZMatrix::parse("0 -1 -1 -1\n1 0 -1 -1 7\n"); }, "line 2");
    expectInvalid([] { ZMatrix::parse("0 -1 -1 -1\n1 x -1 -1\n"); }, "four integers");
    expectInvalid([] { ZMatrix::parse("# nothing\n"); }, "no rows");
    expectInvalid([] { ZMatrix::fromFile("/nonexistent/zmatrix.txt"); }, "cannot open");
}

TEST(ZMatrixTest, MissingAtomIsNamed) {
    auto rows = ala2Rows();
    rows.erase(rows.begin() + 5);  // atom 5
    expectInvalid([&] { ZMatrix{rows}; }, "atom 5 has no row");
    // the last atom missing is caught when the atom count is known (e.g. from the PDB)
    auto z = ZMatrix::builtinAlanineDipeptide();
    expectInvalid([&] { z.validate(23); }, "atom 22 has no row");
}

TEST(ZMatrixTest, DuplicateAtomIsNamed) {
    auto rows = ala2Rows();
    rows.push_back({3, 1, 4, 6});
    expectInvalid([&] { ZMatrix{rows}; }, "atom 3 appears in 2 rows");
}

TEST(ZMatrixTest, SelfAndRepeatedReferences) {
    auto rows = ala2Rows();
    rows[2] = {2, 1, 2, 0};
    expectInvalid([&] { ZMatrix{rows}; }, "references its own atom 2");
    rows = ala2Rows();
    rows[2] = {2, 1, 4, 1};
    expectInvalid([&] { ZMatrix{rows}; }, "references atom 1 twice");
}

TEST(ZMatrixTest, OutOfRangeAndNegativeReferences) {
    auto rows = ala2Rows();
    rows[2] = {2, 1, 4, 30};
    expectInvalid([&] { ZMatrix{rows}; }, "reference 30 is out of range (atoms 0..21)");
    rows[2] = {2, 1, 4, -3};
    expectInvalid([&] { ZMatrix{rows}; }, "reference -3 is negative");
    expectInvalid([&] { ZMatrix::builtinAlanineDipeptide().validate(21); }, "out of range (atoms 0..20)");
    rows = ala2Rows();
    rows[2] = {2, 1, -1, 0};
    expectInvalid([&] { ZMatrix{rows}; }, "-1 may only stand at the end");
}

TEST(ZMatrixTest, FrameRowsMustBeUnique) {
    expectInvalid([] { ZMatrix({{0, -1, -1, -1}, {1, -1, -1, -1}, {2, 1, 0, -1}, {3, 2, 1, 0}}); },
                  "exactly one origin row");
    expectInvalid([] { ZMatrix({{0, -1, -1, -1}, {1, 0, -1, -1}, {2, 1, -1, -1}, {3, 2, 1, 0}}); },
                  "exactly one bond-only row");
    expectInvalid([] { ZMatrix({{0, -1, -1, -1}, {1, 0, -1, -1}, {2, 1, 0, -1}, {3, 2, 1, -1}}); },
                  "exactly one frame row");
    expectInvalid([] { ZMatrix({{0, -1, -1, -1}, {1, 0, -1, -1}}); }, "at least 3 atoms");
}

TEST(ZMatrixTest, CyclesAreReported) {
    // 3 and 4 reference each other.
    expectInvalid([] { ZMatrix({{0, -1, -1, -1}, {1, 0, -1, -1}, {2, 1, 0, -1}, {3, 4, 1, 0}, {4, 3, 1, 0}}); },
                  "cyclic references 3 -> 4 -> 3");
    // a longer cycle in alanine dipeptide: CA (8) placed from one of its own descendants.
    // in alanine dipeptide: the carbonyl C (4) placed from its own O (5), which is placed from 4
    auto rows = ala2Rows();
    rows[4] = {4, 5, 6, 8};
    expectInvalid([&] { ZMatrix{rows}; }, "cyclic references 4 -> 5 -> 4");
}

// ---------------------------------------------------------------------------------------------
// The layer

TEST(InternalCoordinatesTest, LayoutAccessorsAndConfig) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    EXPECT_EQ(ic.inputDim(), 66);
    EXPECT_EQ(ic.outputDim(), 60);
    EXPECT_EQ(ic.numBonds(), 21);
    EXPECT_EQ(ic.numAngles(), 20);
    EXPECT_EQ(ic.numTorsions(), 19);
    auto circ = ic.circularFlags();
    ASSERT_EQ(circ.size(), 60u);
    for (int64_t i = 0; i < 60; ++i) EXPECT_EQ(circ[static_cast<size_t>(i)], i >= 41) << i;
    // bonds in row order of the rows with a bond reference; the frame's bonds/angle come last
    EXPECT_EQ(ic.outputIndex(0).atom, 0);
    EXPECT_EQ(ic.outputIndex(0).kind, ICKind::Bond);
    EXPECT_EQ(ic.outputIndex(20).atom, 8);
    EXPECT_EQ(ic.outputIndex(21).kind, ICKind::Angle);
    EXPECT_EQ(ic.outputIndex(40).atom, 6);
    EXPECT_EQ(ic.outputIndex(41).kind, ICKind::Torsion);
    EXPECT_EQ(ic.outputIndex(59).atom, 10);
    EXPECT_EQ(ic.outputIndex(59).row, 18);
    EXPECT_THROW(ic.outputIndex(60), std::out_of_range);
    EXPECT_EQ(ic.outputDimOf(ICKind::Torsion, 4), 41 + 4);  // phi: row "4 6 8 14"
    EXPECT_EQ(ic.outputDimOf(ICKind::Torsion, 6), -1);
    EXPECT_EQ(ic.outputDimOf(ICKind::Bond, 14), -1);
    EXPECT_EQ(ic.outputDims(ICKind::Angle).front(), 21);
    EXPECT_EQ(ic.outputDims(ICKind::Angle).size(), 20u);
    for (int64_t d = 0; d < 60; ++d) {
        auto idx = ic.outputIndex(d);
        EXPECT_EQ(ic.outputDimOf(idx.kind, idx.atom), d);
    }
    auto cfg = ic.config();
    EXPECT_EQ(cfg.at("type"), "internal_coordinates");
    EXPECT_EQ(cfg.at("zmatrix").size(), 22u);
    EXPECT_DOUBLE_EQ(cfg.at("bond_range")[1].get<double>(), 0.3);
    EXPECT_DOUBLE_EQ(cfg.at("angle_range")[0].get<double>(), 0.15 * M_PI);
    auto rebuilt = makeInternalCoordinateLayer(cfg);
    EXPECT_EQ(rebuilt->config(), cfg);
    auto x = ala2Batch(3);
    auto a = ic.forward(x), b = rebuilt->forward(x);
    EXPECT_TRUE(torch::equal(a.out, b.out));
    EXPECT_TRUE(torch::equal(a.logdet, b.logdet));
    auto narrow = makeInternalCoordinateLayer({{"type", "internal_coordinates"}, {"zmatrix", cfg["zmatrix"]},
                                               {"bond_range", {0.0, 0.5}}});
    EXPECT_DOUBLE_EQ(narrow->bondRange()[1], 0.5);
    EXPECT_DOUBLE_EQ(narrow->angleRange()[1], M_PI);
    expectInvalid([&] { makeInternalCoordinateLayer({{"type", "box"}}); }, "internal_coordinates");
    expectInvalid([&] { makeInternalCoordinateLayer({{"type", "internal_coordinates"}}); }, "zmatrix");
    expectInvalid([&] { InternalCoordinateLayer(ZMatrix::builtinAlanineDipeptide(), {0.3, 0.05}); }, "bond_range");
    expectInvalid([&] { ic.forward(torch::zeros({2, 63}, f64())); }, "[B, 66]");
    expectInvalid([&] { ic.inverse(torch::zeros({2, 66}, f64())); }, "[B, 60]");
}

TEST(InternalCoordinatesTest, RawCoordinatesMatchDirectGeometry) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Pdb();
    auto q = ic.internalCoordinates(x)[0];
    auto u = ic.forward(x).out[0];
    auto p = x.reshape({22, 3});
    for (int64_t d = 0; d < ic.outputDim(); ++d) {
        auto idx = ic.outputIndex(d);
        const auto& r = ic.zmatrix().rows[static_cast<size_t>(idx.row)];
        double expected = 0, expectedU = 0;
        if (idx.kind == ICKind::Bond) {
            expected = (p[r[0]] - p[r[1]]).norm().item<double>();
            expectedU = (expected - 0.05) / 0.25;
        } else if (idx.kind == ICKind::Angle) {
            auto v1 = p[r[0]] - p[r[1]], v2 = p[r[2]] - p[r[1]];
            expected = std::acos((v1.dot(v2) / (v1.norm() * v2.norm())).item<double>());
            expectedU = (expected - 0.15 * M_PI) / (0.85 * M_PI);
        } else {
            expected = dihedralByPlanes(x, r[0], r[1], r[2], r[3]);
            expectedU = (expected + M_PI) / (2 * M_PI);
        }
        EXPECT_NEAR(q[d].item<double>(), expected, 1e-12) << icKindName(idx.kind) << " of atom " << idx.atom;
        EXPECT_NEAR(u[d].item<double>(), expectedU, 1e-12) << icKindName(idx.kind) << " of atom " << idx.atom;
    }
}

TEST(InternalCoordinatesTest, PdbGeometryAndPerturbationsMapIntoUnitInterval) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Batch(200, 0.01);
    auto r = ic.forward(x);
    EXPECT_GE(r.out.min().item<double>(), 0.0);
    EXPECT_LT(r.out.max().item<double>(), 1.0);
    // the log-det is the negative of the inverse's at the image (both finite: NaN fails the comparison)
    EXPECT_LT(maxAbs(r.logdet + ic.inverse(r.out).logdet), 1e-10);
    // thermal-size perturbations (0.005 nm per coordinate) keep bonds and angles well inside:
    // the PDB's shortest bond (N-H, 0.101 nm) sits at u = 0.2, its smallest angle at u = 0.51
    const auto nl = ic.numBonds() + ic.numAngles();
    auto thermal = ic.forward(ala2Batch(200, 0.005, 12)).out.narrow(1, 0, nl);
    EXPECT_GT(thermal.min().item<double>(), 0.1);
    EXPECT_LT(thermal.max().item<double>(), 0.9);
    auto pdb = ic.forward(ala2Pdb()).out.narrow(1, 0, nl);
    EXPECT_NEAR(pdb.min().item<double>(), (0.101 - 0.05) / 0.25, 1e-3);
}

TEST(InternalCoordinatesTest, PhiPsiMatchTorsionChannels) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Batch(20, 0.01);
    auto pp = dihedrals(x, {{4, 6, 8, 14}, {6, 8, 14, 16}});
    ASSERT_EQ(pp.sizes(), (std::vector<int64_t>{20, 2}));
    auto ppAtoms = dihedrals(x.reshape({20, 22, 3}), {{4, 6, 8, 14}, {6, 8, 14, 16}});
    EXPECT_TRUE(torch::equal(pp, ppAtoms));
    auto q = ic.internalCoordinates(x);
    // phi is the torsion of row "4 6 8 14"; psi that of row "16 14 8 6" (the reversed quadruple)
    EXPECT_LT(maxAbs(pp.select(1, 0) - q.select(1, ic.outputDimOf(ICKind::Torsion, 4))), 1e-13);
    EXPECT_LT(maxAbs(pp.select(1, 1) - q.select(1, ic.outputDimOf(ICKind::Torsion, 16))), 1e-13);
    auto u = ic.forward(x).out;
    EXPECT_LT(maxAbs(circularDiff(u.select(1, ic.outputDimOf(ICKind::Torsion, 4)), (pp.select(1, 0) + M_PI) / (2 * M_PI))),
              1e-13);
    for (int64_t b = 0; b < 20; ++b) {
        EXPECT_NEAR(pp[b][0].item<double>(), dihedralByPlanes(x[b], 4, 6, 8, 14), 1e-10);
        EXPECT_NEAR(pp[b][1].item<double>(), dihedralByPlanes(x[b], 6, 8, 14, 16), 1e-10);
    }
    // dihedral(i,j,k,l) == dihedral(l,k,j,i); mirror image flips the sign
    EXPECT_LT(maxAbs(dihedrals(x, {{14, 8, 6, 4}}).select(1, 0) - pp.select(1, 0)), 1e-13);
    auto mirrored = x.reshape({20, 22, 3}) * torch::tensor({1.0, 1.0, -1.0}, f64());
    EXPECT_LT(maxAbs(dihedrals(mirrored, {{4, 6, 8, 14}}).select(1, 0) + pp.select(1, 0)), 1e-13);
    // the PDB geometry: phi = -90.0 deg, psi = 127.8 deg (beta region)
    EXPECT_NEAR(pp[0][0].item<double>() * 180 / M_PI, -90.0, 0.01);
    EXPECT_NEAR(pp[0][1].item<double>() * 180 / M_PI, 127.81, 0.01);
    std::cout << "PDB phi = " << pp[0][0].item<double>() * 180 / M_PI << " deg, psi = " << pp[0][1].item<double>() * 180 / M_PI
              << " deg\n";
    expectInvalid([&] { dihedrals(x, {{0, 1, 2, 22}}); }, "out of range");
}

TEST(InternalCoordinatesTest, RoundTripRecoversGeometryUpToRigidMotion) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = rigidMotion(ala2Batch(50, 0.01), randomRotations(50, 3), torch::randn({50, 3}, f64()));
    auto fwd = ic.forward(x);
    auto back = ic.inverse(fwd.out);
    EXPECT_LT(maxAbs(distances(back.out) - distances(x)), 1e-10);
    EXPECT_LT(maxAbs(uDiff(ic, ic.forward(back.out).out, fwd.out)), 1e-12);
    for (int64_t b = 0; b < 50; ++b) EXPECT_LT(kabschDeviation(back.out[b], x[b]), 1e-10) << b;
    EXPECT_LT(maxAbs(back.logdet + fwd.logdet), 1e-10);
    // the fixed frame: origin atom 14 at 0, atom 8 on +x, atom 6 in the xy-plane with y > 0
    auto p = back.out.reshape({50, 22, 3});
    EXPECT_EQ(maxAbs(p.select(1, 14)), 0.0);
    EXPECT_EQ(maxAbs(p.select(1, 8).narrow(1, 1, 2)), 0.0);
    EXPECT_GT(p.select(1, 8).select(1, 0).min().item<double>(), 0.0);
    EXPECT_EQ(maxAbs(p.select(1, 6).select(1, 2)), 0.0);
    EXPECT_GT(p.select(1, 6).select(1, 1).min().item<double>(), 0.0);
}

TEST(InternalCoordinatesTest, InverseThenForwardIsIdentity) {
    for (auto z : {ZMatrix::builtinAlanineDipeptide(), chain4(), branched5()}) {
        InternalCoordinateLayer ic(z);
        auto u = typicalU(ic, 100, 5);
        auto inv = ic.inverse(u);
        auto fwd = ic.forward(inv.out);
        EXPECT_LT(maxAbs(uDiff(ic, fwd.out, u)), 1e-12) << z.numAtoms() << " atoms";
        EXPECT_LT(maxAbs(fwd.logdet + inv.logdet), 1e-10);
    }
}

TEST(InternalCoordinatesTest, InvariantToRigidMotions) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Batch(30, 0.01);
    auto ref = ic.forward(x);
    for (uint64_t s = 0; s < 5; ++s) {
        auto gen = at::detail::createCPUGenerator(100 + s);
        auto t = torch::randn({30, 3}, gen, f64()) * 5.0;
        auto moved = ic.forward(rigidMotion(x, randomRotations(30, 200 + s), t));
        EXPECT_LT(maxAbs(uDiff(ic, moved.out, ref.out)), 1e-10);
        EXPECT_LT(maxAbs(moved.logdet - ref.logdet), 1e-10);
    }
}

TEST(InternalCoordinatesTest, HandComputedFourAtomChain) {
    InternalCoordinateLayer ic(chain4());
    // 0 at origin, 1 on x, 2 at a right angle at 1, 3 at a right angle at 2 out of the plane
    auto x = torch::tensor({0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.12, 0.0, 0.2, 0.12, 0.08}, f64()).reshape({1, 12});
    const double r3 = std::sqrt(0.0164), phi = M_PI - std::atan(0.8);
    auto q = ic.internalCoordinates(x)[0];
    const double expected[6] = {0.1, 0.12, r3, M_PI / 2, M_PI / 2, phi};  // bonds 1,2,3; angles 2,3; torsion 3
    for (int k = 0; k < 6; ++k) EXPECT_NEAR(q[k].item<double>(), expected[k], 1e-14) << k;
    const double intervals = 3 * std::log(0.25) + 2 * std::log(0.85 * M_PI) + std::log(2 * M_PI);
    const double handForward = -(2 * std::log(0.1) + 2 * std::log(0.12) + 2 * std::log(r3) + 0.0 + 0.0) - intervals;
    auto fwd = ic.forward(x);
    EXPECT_NEAR(fwd.logdet.item<double>(), handForward, 1e-12);
    // Gram determinant of the inverse: only atom 3 (r^2 sin theta) and the in-plane polar factor r_2
    // of atom 2 survive; the frame term 2 log r_1 + log(r_2 sin theta_2) is the rigid-orbit volume.
    auto J = jacobianOf([&](const torch::Tensor& u) { return ic.inverse(u).out; }, fwd.out);
    ASSERT_EQ(J.sizes(), (std::vector<int64_t>{12, 6}));
    const double gram = 0.5 * std::get<1>(torch::linalg_slogdet(torch::matmul(J.t(), J))).item<double>();
    const double handGram = std::log(0.12) + 2 * std::log(r3) + std::log(std::sin(M_PI / 2)) + intervals;
    EXPECT_NEAR(gram, handGram, 1e-10);
    EXPECT_NEAR(gram + 2 * std::log(0.1) + std::log(0.12 * std::sin(M_PI / 2)), -handForward, 1e-10);
    // the inverse reproduces the hand geometry exactly (it is already in the fixed frame)
    EXPECT_LT(maxAbs(ic.inverse(fwd.out).out - x), 1e-14);
}

TEST(InternalCoordinatesTest, InverseLogDetMatchesGramDeterminantPlusFrameTerm) {
    // inverse logdet = 0.5 log det(J^T J) + 2 log r_axis + log r_frame + log sin theta_frame
    for (auto z : {ZMatrix::builtinAlanineDipeptide(), chain4(), branched5()}) {
        InternalCoordinateLayer ic(z);
        auto u = z.numAtoms() == 22 ? ic.forward(ala2Batch(4, 0.01)).out : typicalU(ic, 4, 9);
        auto inv = ic.inverse(u);
        auto frame = frameTerm(ic, u);
        for (int64_t b = 0; b < u.size(0); ++b) {
            auto J = jacobianOf([&](const torch::Tensor& v) { return ic.inverse(v.unsqueeze(0)).out; }, u[b]);
            const double gram = 0.5 * std::get<1>(torch::linalg_slogdet(torch::matmul(J.t(), J))).item<double>();
            EXPECT_NEAR(inv.logdet[b].item<double>(), gram + frame[b].item<double>(), 1e-9)
                << z.numAtoms() << " atoms, sample " << b;
        }
    }
}

TEST(InternalCoordinatesTest, InverseLogDetIsTheCartesianVolumeWithRigidMotions) {
    // x(t, w, u) = R(w) x_frame(u) + t: at t = 0, w = 0 the square Jacobian has columns e_k (translation),
    // e_k x x_i (rotation; d^3 w is the Haar measure of SO(3) there) and d x / d u. Its log|det| is the
    // inverse logdet: the density p_u(u) exp(forward logdet) is normalised over Cartesian space per
    // unit translation volume and Haar volume.
    for (auto z : {ZMatrix::builtinAlanineDipeptide(), chain4(), branched5()}) {
        InternalCoordinateLayer ic(z);
        const auto n = z.numAtoms();
        auto u = z.numAtoms() == 22 ? ic.forward(ala2Batch(3, 0.01)).out : typicalU(ic, 3, 13);
        auto inv = ic.inverse(u);
        for (int64_t b = 0; b < u.size(0); ++b) {
            auto Ju = jacobianOf([&](const torch::Tensor& v) { return ic.inverse(v.unsqueeze(0)).out; }, u[b]);
            auto p = inv.out[b].reshape({n, 3});
            auto Jt = torch::eye(3, f64()).repeat({n, 1});  // [3n, 3]
            std::vector<torch::Tensor> rot;
            for (int k = 0; k < 3; ++k) {
                auto e = torch::zeros({n, 3}, f64());
                e.select(1, k).fill_(1.0);
                rot.push_back(at::linalg_cross(e, p, -1).reshape({-1}));
            }
            auto J = torch::cat({Jt, torch::stack(rot, 1), Ju}, 1);
            ASSERT_EQ(J.size(0), J.size(1));
            const double logabs = std::get<1>(torch::linalg_slogdet(J)).item<double>();
            EXPECT_NEAR(logabs, inv.logdet[b].item<double>(), 1e-9) << n << " atoms, sample " << b;
        }
    }
}

TEST(InternalCoordinatesTest, GradientsMatchFiniteDifferences) {
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = rigidMotion(ala2Batch(2, 0.01), randomRotations(2, 8), torch::zeros({2, 3}, f64()));
    auto xg = x.clone().requires_grad_(true);
    auto fwd = ic.forward(xg);
    auto gLogdet = torch::autograd::grad({fwd.logdet.sum()}, {xg}, {}, true)[0];
    std::vector<torch::Tensor> jrows;  // du_i/dx for all samples at once: [B, 60, 66]
    for (int64_t i = 0; i < ic.outputDim(); ++i)
        jrows.push_back(torch::autograd::grad({fwd.out.select(1, i).sum()}, {xg}, {}, true)[0]);
    auto J = torch::stack(jrows, 1);
    const double h = 1e-6;
    torch::NoGradGuard ng;
    for (int64_t j = 0; j < ic.inputDim(); ++j) {
        auto xp = x.clone(), xm = x.clone();
        xp.select(1, j) += h;
        xm.select(1, j) -= h;
        auto fp = ic.forward(xp), fm = ic.forward(xm);
        auto fdLogdet = (fp.logdet - fm.logdet) / (2 * h);
        EXPECT_LT(maxAbs(fdLogdet - gLogdet.select(1, j)), 1e-6 * (1.0 + maxAbs(fdLogdet))) << "coordinate " << j;
        auto fdU = uDiff(ic, fp.out, fm.out) / (2 * h);
        EXPECT_LT(maxAbs(fdU - J.select(2, j)), 1e-6 * (1.0 + maxAbs(fdU))) << "coordinate " << j;
    }
}

TEST(InternalCoordinatesTest, SecondDerivativesMatchFiniteDifferences) {
    // Force matching differentiates the gradient again: Hessian-vector products of
    // s(x) = logdet + sum_i sin(2 pi u_i) by double backward against differences of gradients.
    InternalCoordinateLayer ic(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Batch(2, 0.01, 21);
    auto gen = at::detail::createCPUGenerator(4);
    auto v = torch::randn(x.sizes(), gen, f64());
    auto gradAt = [&](const torch::Tensor& xx, bool graph) {
        auto r = ic.forward(xx);
        auto s = r.logdet.sum() + torch::sin(2 * M_PI * r.out).sum();
        return torch::autograd::grad({s}, {xx}, {}, true, graph)[0];
    };
    expectHessianVectorProductMatchesDifferences(gradAt, x, v);
    // the inverse is twice differentiable as well (reverse KL differentiates samples)
    auto gradInverseAt = [&](const torch::Tensor& u, bool graph) {
        auto inv = ic.inverse(u);
        return torch::autograd::grad({inv.logdet.sum() + inv.out.pow(2).sum()}, {u}, {}, true, graph)[0];
    };
    auto u = ic.forward(x).out.detach();
    expectHessianVectorProductMatchesDifferences(gradInverseAt, u, torch::randn(u.sizes(), gen, f64()));
}

// ---------------------------------------------------------------------------------------------
// The smooth-wall map of bonds and angles

namespace {
InternalCoordinateLayer wallLayer(const ZMatrix& z, double sharpness = 1.0) {
    EmbeddingSpec spec;
    spec.zmatrix = z;
    spec.boundary = EmbeddingSpec::Boundary::Wall;
    spec.wallSharpness = sharpness;
    return InternalCoordinateLayer(spec);
}
}  // namespace

TEST(InternalCoordinatesWall, RoundTripsAndCartesianVolume) {
    for (auto z : {ZMatrix::builtinAlanineDipeptide(), chain4(), branched5()}) {
        auto ic = wallLayer(z);
        EXPECT_EQ(ic.config().at("boundary"), "wall");
        auto u = typicalU(ic, 50, 5);
        auto inv = ic.inverse(u);
        auto fwd = ic.forward(inv.out);
        EXPECT_LT(maxAbs(uDiff(ic, fwd.out, u)), 1e-12) << z.numAtoms() << " atoms";
        EXPECT_LT(maxAbs(fwd.logdet + inv.logdet), 1e-10);
        // the inverse logdet is still the Cartesian volume with the rigid-motion frame term
        auto frame = frameTerm(ic, u.narrow(0, 0, 3));
        for (int64_t b = 0; b < 3; ++b) {
            auto J = jacobianOf([&](const torch::Tensor& v) { return ic.inverse(v.unsqueeze(0)).out; }, u[b]);
            const double gram = 0.5 * std::get<1>(torch::linalg_slogdet(torch::matmul(J.t(), J))).item<double>();
            EXPECT_NEAR(inv.logdet[b].item<double>(), gram + frame[b].item<double>(), 1e-9);
        }
    }
}

TEST(InternalCoordinatesWall, GradientsMatchFiniteDifferences) {
    auto ic = wallLayer(ZMatrix::builtinAlanineDipeptide());
    auto x = ala2Batch(2, 0.01, 17);
    auto xg = x.clone().requires_grad_(true);
    auto s = [&](const torch::Tensor& xx) {
        auto r = ic.forward(xx);
        return r.logdet + torch::sin(2 * M_PI * r.out).sum(1);
    };
    auto g = torch::autograd::grad({s(xg).sum()}, {xg})[0];
    const double h = 1e-6;
    torch::NoGradGuard ng;
    for (int64_t j = 0; j < ic.inputDim(); ++j) {
        auto xp = x.clone(), xm = x.clone();
        xp.select(1, j) += h;
        xm.select(1, j) -= h;
        auto fd = (s(xp) - s(xm)) / (2 * h);
        EXPECT_LT(maxAbs(fd - g.select(1, j)), 1e-6 * (1.0 + maxAbs(fd))) << "coordinate " << j;
    }
}

TEST(InternalCoordinatesWall, DensityVanishesSmoothlyAtTheEndsOfTheRanges) {
    // Stretching a bond towards the end of its range (0.3 nm) and opening an angle towards 180 degrees:
    // with the wall, -logdet grows without bound, smoothly and monotonically near the end; with the linear
    // map it stays bounded (the bond) or even falls (the angle: -log sin theta -> -infinity).
    auto z = chain4();
    auto wall = wallLayer(z);
    InternalCoordinateLayer linear(z);
    auto config = [](double r3, double theta3) {
        // atoms 0, 1 on x; 2 at a right angle at 1; atom 3 bonded to 2 at angle theta3 in the xy plane
        return torch::tensor({0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.12, 0.0, 0.1 + r3 * std::sin(theta3), 0.12 - r3 * std::cos(theta3), 0.0},
                             f64())
            .reshape({1, 12});
    };
    std::vector<double> wallU, linearU;
    for (double r : {0.2, 0.25, 0.28, 0.29, 0.295, 0.299}) {
        wallU.push_back(-wall.forward(config(r, 1.9)).logdet.item<double>());
        linearU.push_back(-linear.forward(config(r, 1.9)).logdet.item<double>());
    }
    for (size_t i = 1; i < wallU.size(); ++i) EXPECT_GT(wallU[i], wallU[i - 1]);
    EXPECT_GT(wallU.back() - wallU.front(), 100.0);        // a wall of > 100 k_B T within 0.1 nm
    EXPECT_LT(std::abs(linearU.back() - linearU.front()), 5.0);  // the linear map: only the 2 log r term
    const double nearPi = M_PI - 0.01;
    EXPECT_GT(-wall.forward(config(0.15, nearPi)).logdet.item<double>() - (-wall.forward(config(0.15, 2.0)).logdet.item<double>()),
              50.0);
    EXPECT_LT(-linear.forward(config(0.15, nearPi)).logdet.item<double>(), -linear.forward(config(0.15, 2.0)).logdet.item<double>());
}

// ---------------------------------------------------------------------------------------------
// Per-coordinate bond and angle ranges fitted to data (fitDataRanges)

namespace {
/** For a layer with per-coordinate bond and angle maps (41 of them, alanine dipeptide) and frames data: u of the
 *  first 20 frames with bonds and angles redrawn uniformly in [uLow, uLow + uWidth] round-trips, the log-dets are
 *  opposite, the inverse logdet is the Cartesian volume (Gram determinant plus frame term), and the forward map's
 *  gradients match central differences on every stride-th coordinate of two frames. */
void expectBijectiveVolumeAndGradients(InternalCoordinateLayer& ic, const torch::Tensor& data, double uLow, double uWidth,
                                       uint64_t seed, int64_t stride, const std::string& label) {
    auto gen = at::detail::createCPUGenerator(seed);
    auto u = ic.forward(data.narrow(0, 0, 20)).out.detach();
    u.narrow(1, 0, 41).copy_(uLow + uWidth * torch::rand({20, 41}, gen, f64()));
    auto inv = ic.inverse(u);
    auto fwd = ic.forward(inv.out);
    EXPECT_LT(maxAbs(uDiff(ic, fwd.out, u)), 1e-12) << label;
    EXPECT_LT(maxAbs(fwd.logdet + inv.logdet), 1e-10) << label;
    auto frame = frameTerm(ic, u.narrow(0, 0, 2));
    for (int64_t b = 0; b < 2; ++b) {
        auto J = jacobianOf([&](const torch::Tensor& v) { return ic.inverse(v.unsqueeze(0)).out; }, u[b]);
        const double gram = 0.5 * std::get<1>(torch::linalg_slogdet(torch::matmul(J.t(), J))).item<double>();
        EXPECT_NEAR(inv.logdet[b].item<double>(), gram + frame[b].item<double>(), 1e-9) << label;
    }
    auto x = data.narrow(0, 1, 2).clone();
    auto s = [&](const torch::Tensor& xx) {
        auto r = ic.forward(xx);
        return r.logdet + torch::sin(2 * M_PI * r.out).sum(1);
    };
    auto xg = x.clone().requires_grad_(true);
    auto g = torch::autograd::grad({s(xg).sum()}, {xg})[0];
    const double h = 1e-7;
    torch::NoGradGuard ng;
    for (int64_t j = 0; j < ic.inputDim(); j += stride) {
        auto xp = x.clone(), xm = x.clone();
        xp.select(1, j) += h;
        xm.select(1, j) -= h;
        auto fd = (s(xp) - s(xm)) / (2 * h);
        EXPECT_LT(maxAbs(fd - g.select(1, j)), 1e-5 * (1.0 + maxAbs(fd))) << "coordinate " << j << " " << label;
    }
}

EmbeddingSpec fittedSpec(const torch::Tensor& data, double margin, bool wall) {
    EmbeddingSpec global;
    global.zmatrix = ZMatrix::builtinAlanineDipeptide();
    global.boundary = wall ? EmbeddingSpec::Boundary::Wall : EmbeddingSpec::Boundary::Linear;
    return fitDataRanges(global, data, margin);
}
}  // namespace

TEST(InternalCoordinatesRanges, FittedRangesPutTheDataInTheMiddleOfEachRange) {
    auto data = ala2Batch(200, 0.002, 31);
    for (double margin : {0.0, 0.5, 1.0}) {
        auto spec = fittedSpec(data, margin, false);
        ASSERT_EQ(spec.bondRanges.size(), 21u);
        ASSERT_EQ(spec.angleRanges.size(), 20u);
        InternalCoordinateLayer ic(spec);
        auto u = ic.forward(data).out.narrow(1, 0, 41);
        auto lo = std::get<0>(u.min(0)), hi = std::get<0>(u.max(0));
        // the linear map sends the data's [min, max] of every coordinate to [m/(1+2m), (1+m)/(1+2m)]
        const double a = margin / (1 + 2 * margin), b = (1 + margin) / (1 + 2 * margin);
        EXPECT_LT(maxAbs(lo - a), 1e-12) << "margin " << margin;
        EXPECT_LT(maxAbs(hi - b), 1e-12) << "margin " << margin;
        // much narrower than the paper's fixed ranges: a C-H bond spreads over ~1 % of [0.05, 0.3] nm
        EXPECT_LT(spec.bondRanges[0][1] - spec.bondRanges[0][0], 0.05 * (1 + 2 * margin));
    }
    // clipped to the global range, never wider than the paper's
    auto wide = fittedSpec(data, 1e6, false);
    for (const auto& r : wide.bondRanges) EXPECT_TRUE(r[0] == 0.05 && r[1] == 0.3);
    for (const auto& r : wide.angleRanges) EXPECT_TRUE(r[0] == 0.15 * M_PI && r[1] == M_PI);
}

TEST(InternalCoordinatesRanges, ConfigRoundTripsAndTheMapStaysAVolumeOfCartesianSpace) {
    auto data = ala2Batch(100, 0.004, 32);
    for (bool wall : {false, true}) {
        auto spec = fittedSpec(data, 0.5, wall);
        InternalCoordinateLayer ic(spec);
        auto cfg = ic.config();
        ASSERT_TRUE(cfg.contains("bond_ranges") && cfg.contains("angle_ranges"));
        auto rebuilt = makeInternalCoordinateLayer(cfg);
        EXPECT_EQ(rebuilt->config(), cfg);
        expectBijectiveVolumeAndGradients(ic, data, 0.1, 0.8, 5, 5, std::string("wall ") + (wall ? "1" : "0"));
    }
}

TEST(InternalCoordinatesRanges, BadRangesAndDataAreRejectedWithTheReason) {
    auto data = ala2Batch(50, 0.004, 33);
    auto cfg = fittedSpec(data, 0.5, true).toJson();
    auto with = [&](const char* key, nlohmann::json v) {
        auto c = cfg;
        c[key] = std::move(v);
        return c;
    };
    auto fewer = cfg["bond_ranges"];
    fewer.erase(fewer.size() - 1);
    expectInvalid([&] { makeInternalCoordinateLayer(with("bond_ranges", fewer)); }, "21 ranges");
    auto reversed = cfg["angle_ranges"];
    reversed[3] = {2.0, 1.9};
    expectInvalid([&] { makeInternalCoordinateLayer(with("angle_ranges", reversed)); }, "entry 3");
    auto beyondPi = cfg["angle_ranges"];
    beyondPi[0] = {2.0, 3.5};
    expectInvalid([&] { makeInternalCoordinateLayer(with("angle_ranges", beyondPi)); }, "entry 0");
    expectInvalid([&] { makeInternalCoordinateLayer(with("bond_ranges", "wide")); }, "bond_ranges");
    EmbeddingSpec global;
    global.zmatrix = ZMatrix::builtinAlanineDipeptide();
    expectInvalid([&] { fitDataRanges(global, data.narrow(0, 0, 1), 0.5); }, "2 frames");
    expectInvalid([&] { fitDataRanges(global, data, -1.0); }, "margin");
    auto stretched = data.clone();
    stretched.select(1, 3 * 1) += 0.5;  // atom 1 far from its bond partner: beyond the paper's 0.3 nm
    expectInvalid([&] { fitDataRanges(global, stretched, 0.5); }, "outside the model's range");
    // the support rule follows the per-coordinate ranges: the PDB is inside; the H-C bond 0 (atoms 0-1)
    // just inside and just beyond the end of its own range (far inside the paper's 0.3 nm) is in and out
    auto spec = fittedSpec(data, 0.5, true);
    auto x = data[0].contiguous();
    EXPECT_TRUE(spec.checkSupport(x.data_ptr<double>()).inside());
    const double r0 = (x.narrow(0, 0, 3) - x.narrow(0, 3, 3)).norm().item<double>(), end = spec.bondRanges[0][1];
    ASSERT_LT(end, 0.2);
    auto withBond0 = [&](double r) {
        auto y = x.clone();
        y.narrow(0, 0, 3).sub_(x.narrow(0, 3, 3)).mul_(r / r0).add_(x.narrow(0, 3, 3));  // atom 0 along the bond
        return spec.checkSupport(y.contiguous().data_ptr<double>());
    };
    EXPECT_TRUE(withBond0(end - 1e-4).inside());
    auto v = withBond0(end + 1e-4);
    EXPECT_FALSE(v.inside());
    EXPECT_NE(v.description.find("bond 0"), std::string::npos) << v.description;
}

// ---------------------------------------------------------------------------------------------
// The gauss map of bonds and angles (fitDataGaussians)

namespace {
EmbeddingSpec gaussSpec(const torch::Tensor& data) {
    EmbeddingSpec global;
    global.zmatrix = ZMatrix::builtinAlanineDipeptide();
    return fitDataGaussians(global, data);
}
}  // namespace

TEST(InternalCoordinatesGauss, FittedDataAreStandardNormalBeforeTheCdf) {
    auto data = ala2Batch(300, 0.003, 41);
    auto spec = gaussSpec(data);
    ASSERT_EQ(spec.boundary, EmbeddingSpec::Boundary::Gauss);
    ASSERT_EQ(spec.bondRanges.size(), 21u);
    ASSERT_EQ(spec.angleRanges.size(), 20u);
    InternalCoordinateLayer ic(spec);
    EXPECT_EQ(ic.config().at("boundary"), "gauss");
    // Phi^-1(u) of the training frames is (q - mean) / std: mean 0 and standard deviation 1 per coordinate
    auto s = torch::special::ndtri(ic.forward(data).out.narrow(1, 0, 41));
    EXPECT_LT(maxAbs(s.mean(0)), 1e-9);
    EXPECT_LT(maxAbs(s.std(0, false) - 1.0), 1e-9);
    // the config round-trips through JSON
    EXPECT_EQ(makeInternalCoordinateLayer(ic.config())->config(), ic.config());
}

TEST(InternalCoordinatesGauss, RoundTripsVolumeAndGradients) {
    auto data = ala2Batch(100, 0.004, 42);
    InternalCoordinateLayer ic(gaussSpec(data));
    expectBijectiveVolumeAndGradients(ic, data, 0.001, 0.998, 6, 4, "gauss");  // u out to 3 standard deviations
}

TEST(InternalCoordinatesGauss, UniformLatentGivesExactlyHarmonicBondsAndAngles) {
    // With the identity flow (uniform density in u), -log p = sum (q - mu)^2 / (2 sigma^2) + 2 log r +
    // log sin theta + const: the map's own part is a quadratic in each coordinate, also far outside the data
    // (where the paper's ranges ended), so its fourth difference along any line in q vanishes.
    auto data = ala2Batch(200, 0.003, 43);
    auto spec = gaussSpec(data);
    InternalCoordinateLayer ic(spec);
    auto x = ala2Batch(5, 0.02, 44);  // 7x wider than the data: far into the tails
    auto q = ic.internalCoordinates(x);
    auto r = q.narrow(1, 0, 21), th = q.narrow(1, 21, 20);
    const auto ranges = spec.coordinateRanges();
    std::vector<double> mu, sigma;
    for (const auto& rg : ranges) mu.push_back(0.5 * (rg[0] + rg[1])), sigma.push_back(0.5 * (rg[1] - rg[0]));
    auto muT = torch::tensor(mu, f64()), sgT = torch::tensor(sigma, f64());
    auto quad = ((q.narrow(1, 0, 41) - muT) / sgT).pow(2).sum(1) / 2.0;
    auto mapPart = -ic.forward(x).logdet - 2.0 * torch::log(r).sum(1) - torch::log(torch::sin(th)).sum(1);
    auto offset = mapPart - quad;  // the same constant for every configuration
    EXPECT_LT(maxAbs(offset - offset[0]), 1e-9);
    const double c = (torch::log(sgT).sum() + 41 * 0.5 * std::log(2 * M_PI) + 19 * std::log(2 * M_PI)).item<double>();
    EXPECT_NEAR(offset[0].item<double>(), c, 1e-9);
    // a stretched bond far beyond the paper's 0.3 nm is inside the support, with a large harmonic energy
    auto y = x[0].clone();
    y.narrow(0, 0, 3).add_(torch::tensor({0.4, 0.0, 0.0}, f64()));
    EXPECT_TRUE(spec.checkSupport(y.contiguous().data_ptr<double>()).inside());
    EXPECT_GT(-ic.forward(y.unsqueeze(0)).logdet.item<double>(), 1000.0);
    auto collapsed = x[0].clone();
    collapsed.narrow(0, 0, 3).copy_(collapsed.narrow(0, 3, 3));  // atom 0 on its bond partner
    auto v = spec.checkSupport(collapsed.contiguous().data_ptr<double>());
    EXPECT_FALSE(v.inside());
    EXPECT_NE(v.description.find("not positive"), std::string::npos) << v.description;
}

TEST(InternalCoordinatesGauss, BadInputIsRejectedWithTheReason) {
    auto data = ala2Batch(50, 0.004, 45);
    auto cfg = gaussSpec(data).toJson();
    auto noRanges = cfg;
    noRanges.erase("angle_ranges");
    expectInvalid([&] { makeInternalCoordinateLayer(noRanges); }, "boundary 'gauss' needs");
    auto odd = cfg;
    odd["boundary"] = "gaussian";
    expectInvalid([&] { makeInternalCoordinateLayer(odd); }, "'linear', 'wall' or 'gauss'");
    EmbeddingSpec global;
    global.zmatrix = ZMatrix::builtinAlanineDipeptide();
    expectInvalid([&] { fitDataGaussians(global, data.narrow(0, 0, 1)); }, "2 frames");
    expectInvalid([&] { fitDataGaussians(global, data, 0.0); }, "scale");
    expectInvalid([&] { fitDataGaussians(global, data, std::nan("")); }, "scale");
}
