#pragma once
// Z-matrices: which atoms define the bond, angle and torsion that place each atom (paper SI-2.4).
// Free of LibTorch: the native evaluator, the model-file validation and the tools share it.

#include "flowforce/flow/Export.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace flowforce {

/** A z-matrix: one row (atom, bond-ref, angle-ref, torsion-ref) per atom, -1 = no reference. */
struct FLOWFORCE_FLOW_EXPORT ZMatrix {
    using Row = std::array<int64_t, 4>;
    std::vector<Row> rows;

    ZMatrix() = default;
    /** Takes the rows and validates them (throws std::invalid_argument, see validate()). */
    explicit ZMatrix(std::vector<Row> rows);

    /** Parses the text format of data/ala2-zmatrix.txt: four integers per line, '#' starts a comment,
     *  blank lines are ignored; every numeric line is a row. Validates the result. */
    static ZMatrix parse(const std::string& text);
    /** Reads and parses a z-matrix file (the file name is prefixed to error messages). */
    static ZMatrix fromFile(const std::string& path);
    /** Rows from JSON [[atom, bond, angle, torsion], ...]; validates them. */
    static ZMatrix fromJson(const nlohmann::json& rows);
    /** The global z-matrix of alanine dipeptide (bgmol's DEFAULT_GLOBAL_Z_MATRIX, 22 atoms in the atom
     *  order of data/alanine-dipeptide.pdb), compiled in. */
    static ZMatrix builtinAlanineDipeptide();

    /** Rows as JSON [[atom, bond, angle, torsion], ...]. */
    nlohmann::json toJson() const;
    /** Number of references (0..3) of a row: 0 for the origin, 1 for the bond-only row, 2 for the frame row. */
    static int referenceCount(const Row& r) { return (r[1] >= 0) + (r[2] >= 0) + (r[3] >= 0); }
    /** Number of atoms n (= number of rows of a valid z-matrix). */
    int64_t numAtoms() const { return static_cast<int64_t>(rows.size()); }

    /**
     * Checks the rows and throws std::invalid_argument with a message naming the offending row/atom:
     * at least 3 atoms; every atom 0..n-1 is the atom of exactly one row (n = 1 + the largest index
     * used anywhere, or expectedAtoms if given); references are -1 or in 0..n-1, trailing -1 only
     * (a torsion reference needs an angle reference, which needs a bond reference); no row references
     * its own atom or one atom twice; exactly one origin row, one bond-only row and one bond+angle row;
     * the rows are placeable (no cyclic references).
     */
    void validate(int64_t expectedAtoms = -1) const;
    /** Row indices in an order in which every row's references are placed before its atom
     *  (a topological order, stable with respect to the row order); throws on cycles. */
    std::vector<int64_t> placementOrder() const;
};

}  // namespace flowforce
