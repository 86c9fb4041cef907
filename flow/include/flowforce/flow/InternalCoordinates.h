#pragma once
// Global internal coordinates of a molecule from a z-matrix (paper section 1 and SI-2.4): Cartesian
// positions x (nm) <-> bonds, angles and torsions, each mapped to [0,1] so that a flow on the unit
// hypercube can follow. The global position and orientation of the molecule (6 degrees of freedom)
// are fixed by the z-matrix frame: forward() drops them, inverse() places the molecule in a fixed
// frame (origin atom at 0, the bond-only atom on +x, the frame atom in the xy-plane with y > 0).
//
// Z-matrix rows are (atom, bond-ref, angle-ref, torsion-ref), 0-based, -1 = none. An atom with all
// three references is placed at distance r from its bond reference b, at angle theta = angle(atom, b, a)
// with the angle reference a, and with torsion phi = dihedral(atom, b, a, t) with the torsion
// reference t. Exactly one row (the origin) has no reference, one has only a bond reference and one
// only bond and angle references; they fix the frame.
//
// Units: nm for positions and bonds, radians for angles and torsions.

#include "flowforce/flow/Export.h"

#include "flowforce/flow/Architecture.h"
#include "flowforce/flow/Flow.h"
#include "flowforce/flow/ZMatrix.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace flowforce {

/** Kind of an internal coordinate. */
enum class ICKind { Bond, Angle, Torsion };
/** "bond", "angle" or "torsion". */
FLOWFORCE_FLOW_EXPORT std::string icKindName(ICKind kind);

/** What one output dimension of an InternalCoordinateLayer is: its kind, the atom it places and the
 *  z-matrix row (index into ZMatrix::rows) it comes from. */
struct FLOWFORCE_FLOW_EXPORT ICIndex {
    ICKind kind;
    int64_t atom;
    int64_t row;
};

/**
 * Global internal-coordinate transform as a (dimension-changing) bijection:
 *   forward:  x [B, 3n] (nm, atom-major: x0 y0 z0 x1 ...) -> u [B, 3n-6] in [0,1],
 *   inverse:  u [B, 3n-6] -> x [B, 3n] in the fixed frame.
 * Output layout: all bonds (rows with a bond reference, in row order), then all angles (rows with an
 * angle reference, in row order), then all torsions (rows with a torsion reference, in row order).
 * Bonds map linearly from [bondMin, bondMax] (nm), angles from [angleMin, angleMax] (rad) to [0,1]
 * (values outside the range map outside [0,1]; they are not clamped), through the smooth wall, or
 * through the normal CDF at each coordinate's mean and standard deviation (EmbeddingSpec::Boundary); the ranges are global or per coordinate (EmbeddingSpec::bondRanges, fitDataRanges);
 * torsions map from (-pi, pi] onto the circle [0,1) by u = (phi + pi) / 2pi, wrapped.
 *
 * Log-determinant convention (p(x) = p_u(u(x)) * exp(forward logdet) is a density on Cartesian space
 * with respect to dx, normalised over the internal coordinates times the rigid-body orbit, whose
 * measure is d^3(translation) times the Haar measure of SO(3) that is d^3(rotation vector) at the
 * identity, total volume 8 pi^2):
 *   forward logdet = - sum_{bonds} 2 log r_i - sum_{angles} log sin theta_i
 *                    - sum_{bonds} log(bondMax_i - bondMin_i) - sum_{angles} log(angleMax_i - angleMin_i)
 *                    - nTorsions log 2pi  (+ sum log W'(t_i) over bonds and angles for the wall and gauss maps)
 * where the sums include the frame atoms (the bond of the bond-only atom, the bond and angle of the
 * frame atom). inverse logdet is exactly minus that at the same configuration. It is the log of
 * |det d x / d(t, omega, u)| of x = R(omega) x_frame(u) + t at t = 0, omega = 0; the Gram determinant
 * of the [3n, 3n-6] inverse Jacobian alone relates to it by
 *   inverse logdet = 0.5 log det(J^T J) + 2 log r_1 + log(r_2 sin theta_2)
 * with r_1 the bond of the bond-only atom and r_2, theta_2 the bond and angle of the frame atom (the
 * rigid-body orbit's volume factor). Invariant to global translations and rotations.
 * Double precision recommended; differentiable by autograd to any order away from degenerate
 * geometries (zero bonds, straight angles, collinear torsion atoms).
 */
class FLOWFORCE_FLOW_EXPORT InternalCoordinateLayer : public Bijection {
public:
    /** Default ranges: bonds [0.05, 0.3] nm, angles [0.15 pi, pi] rad. Throws std::invalid_argument
     *  on an invalid z-matrix or empty/reversed ranges. */
    explicit InternalCoordinateLayer(ZMatrix zmatrix, std::array<double, 2> bondRange = {0.05, 0.3},
                                     std::array<double, 2> angleRange = {0.15 * M_PI, M_PI});
    /** From a validated embedding spec (Architecture.h), with the linear or the smooth-wall map. */
    explicit InternalCoordinateLayer(const EmbeddingSpec& spec);

    /** x [B, 3n] (nm) -> u [B, 3n-6] in [0,1], log|det du/dx| [B] (convention above). */
    FlowResult forward(const torch::Tensor& x) override;
    /** u [B, 3n-6] -> x [B, 3n] (nm) in the fixed frame, logdet = -forward logdet at that x. */
    FlowResult inverse(const torch::Tensor& u) override;
    /** {"type": "internal_coordinates", "zmatrix": [[a,b,c,d],...], "bond_range": [lo, hi] (nm),
     *   "angle_range": [lo, hi] (rad)}. */
    nlohmann::json config() const override;

    /** Raw internal coordinates of x [B, 3n]: bonds (nm), angles (rad), torsions (rad, (-pi, pi]) in
     *  the output layout, [B, 3n-6], before the maps to [0,1]. */
    torch::Tensor internalCoordinates(const torch::Tensor& x) const;
    /** du/dq of the maps to [0,1] at raw internal coordinates q [B, 3n-6] (1/nm, 1/rad): 1/range (linear),
     *  W'(t)/range (wall, gauss), 1/(2 pi) for torsions. */
    torch::Tensor unitDerivative(const torch::Tensor& q) const;

    /** The z-matrix. */
    const ZMatrix& zmatrix() const { return spec_.zmatrix; }
    /** Number of atoms n. */
    int64_t numAtoms() const { return spec_.zmatrix.numAtoms(); }
    /** Input (Cartesian) dimension 3n. */
    int64_t inputDim() const { return 3 * numAtoms(); }
    /** Output (internal-coordinate) dimension 3n-6. */
    int64_t outputDim() const { return 3 * numAtoms() - 6; }
    /** Number of bonds n-1, angles n-2 and torsions n-3. */
    int64_t numBonds() const { return static_cast<int64_t>(bondRows_.size()); }
    int64_t numAngles() const { return static_cast<int64_t>(angleRows_.size()); }
    int64_t numTorsions() const { return static_cast<int64_t>(torsionRows_.size()); }
    /** Per output dimension: false for bonds and angles, true for torsions. */
    std::vector<bool> circularFlags() const;
    /** Kind, atom and z-matrix row of output dimension dim (throws std::out_of_range). */
    ICIndex outputIndex(int64_t dim) const;
    /** Output dimensions of one kind, ascending (bonds: 0..n-2, angles: n-1..2n-4, torsions: the rest). */
    std::vector<int64_t> outputDims(ICKind kind) const;
    /** Output dimension of the coordinate of this kind that places atom, or -1 if it has none. */
    int64_t outputDimOf(ICKind kind, int64_t atom) const;
    /** Global bond range [lo, hi] in nm and angle range [lo, hi] in rad (per-coordinate ranges, where the
     *  embedding has them, are in embedding()). */
    std::array<double, 2> bondRange() const { return spec_.bondRange; }
    std::array<double, 2> angleRange() const { return spec_.angleRange; }
    /** The embedding this layer was built from. */
    const EmbeddingSpec& embedding() const { return spec_; }

private:
    EmbeddingSpec spec_;                                     // z-matrix, ranges, wall
    std::vector<double> lower_, width_;                      // per bond, then per angle: range start and width
    std::vector<int64_t> order_;                             // placement order (row indices)
    std::vector<int64_t> bondRows_, angleRows_, torsionRows_;  // rows of each output block
    std::vector<int64_t> rowBondDim_, rowAngleDim_, rowTorsionDim_;  // per row: output dim or -1
    int64_t originRow_ = -1, axisRow_ = -1, planeRow_ = -1;  // frame rows
    /** t in [0,1] -> (W(t), log W'(t)) and its inverse u -> (t, log W'(t)) (identity for the linear map). */
    std::pair<torch::Tensor, torch::Tensor> toUnit(const torch::Tensor& t) const;
    std::pair<torch::Tensor, torch::Tensor> fromUnit(const torch::Tensor& u) const;
    /** lower_ and width_ as tensors [nBonds + nAngles] with these options. */
    std::pair<torch::Tensor, torch::Tensor> rangeTensors(const torch::TensorOptions& options) const;
    double logDetConstant_ = 0.0;                            // forward log-jacobian of the interval maps
};

/** The embedding with per-coordinate bond and angle ranges fitted to data: each coordinate's range is
 *  [min - margin (max - min), max + margin (max - min)] over the frames x [B, 3n] (nm), clipped to the
 *  embedding's global range (never wider than the paper's fixed ranges). With margin 0.5 the data fill
 *  the middle half of every range, so the flow starts near the data instead of having to concentrate a
 *  uniform density on a few percent of [0,1]. Throws std::invalid_argument on fewer than 2 frames, on a
 *  negative margin, or on data outside the global ranges. */
FLOWFORCE_FLOW_EXPORT EmbeddingSpec fitDataRanges(const EmbeddingSpec& embedding, const torch::Tensor& x, double margin);

/** The embedding with the gauss map (EmbeddingSpec) fitted to data: each bond's and angle's [lo, hi] is
 *  [mu - scale sigma, mu + scale sigma] with mu and sigma the coordinate's mean and standard deviation over
 *  the frames x [B, 3n] (nm). With scale 1 a Gaussian coordinate is uniform on [0,1] after the map, which is
 *  what the flow's uniform base has; the flow then only learns the departures from harmonic. Throws
 *  std::invalid_argument with the reason on fewer than 2 frames, a scale not finite and > 0, or data whose
 *  fitted interval leaves bonds > 0 / angles <= pi. */
FLOWFORCE_FLOW_EXPORT EmbeddingSpec fitDataGaussians(const EmbeddingSpec& embedding, const torch::Tensor& x, double scale = 1.0);

/** Builds an InternalCoordinateLayer from its config() (throws std::invalid_argument). */
FLOWFORCE_FLOW_EXPORT std::shared_ptr<InternalCoordinateLayer> makeInternalCoordinateLayer(const nlohmann::json& config);

/** Dihedral angles (rad, (-pi, pi], IUPAC sign convention) of atom quadruples (i, j, k, l) from
 *  positions x [B, n, 3] or [B, 3n] (nm): the angle between the planes (i, j, k) and (j, k, l), [B, K].
 *  Differentiable; dihedral(i, j, k, l) == dihedral(l, k, j, i). */
FLOWFORCE_FLOW_EXPORT torch::Tensor dihedrals(const torch::Tensor& x, const std::vector<std::array<int64_t, 4>>& quadruples);

}  // namespace flowforce
