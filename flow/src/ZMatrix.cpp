#include "flowforce/flow/ZMatrix.h"

#include <algorithm>
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

}  // namespace

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
    const auto nRows = static_cast<int64_t>(rows.size());
    const int64_t n = expectedAtoms >= 0 ? expectedAtoms : std::max<int64_t>(nRows, maxAtom + 1);
    // Every atom 0..n-1 needs exactly one row, so n cannot exceed the rows by much; refuse before any
    // work proportional to n (a corrupt index such as 2^62 must not make validation run for ever).
    if (n > nRows + 16)
        throw std::invalid_argument("z-matrix: " + std::to_string(nRows) + " rows cannot describe " + std::to_string(n) +
                                    " atoms (atom indices must lie in 0.." + std::to_string(nRows - 1) +
                                    ", one row per atom)");
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
        byCount[referenceCount(r)].push_back(static_cast<int64_t>(k) + 1);
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

}  // namespace flowforce
