#include "flowforce/md/Molecule.h"

#include "flowforce/md/Share.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

namespace flowforce::md {

namespace {

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string field(const std::string& line, size_t begin, size_t length) {
    return begin < line.size() ? line.substr(begin, std::min(length, line.size() - begin)) : std::string();
}

double parseNumber(const std::string& text, const std::string& what, const std::string& where) {
    const std::string t = trim(text);
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v))
        throw MDError(where + ": bad " + what + " '" + t + "'");
    return v;
}

/** Element from the atom name (columns 13-16): PDB convention puts one-letter elements in column 14. */
std::string guessElement(const std::string& rawName) {
    std::string name = trim(rawName);
    std::string letters;
    for (char c : name)
        if (std::isalpha(static_cast<unsigned char>(c))) letters += c;
    if (letters.empty()) return "";
    // Two-letter elements are left-aligned in column 13 ("CL  "); otherwise the first letter is it.
    if (rawName.size() >= 2 && rawName[0] != ' ' && !std::isdigit(static_cast<unsigned char>(rawName[0])) && letters.size() >= 2) {
        std::string two{letters[0], static_cast<char>(std::tolower(static_cast<unsigned char>(letters[1])))};
        static const char* known[] = {"Cl", "Br", "Na", "Mg", "Zn", "Fe", "Ca", "Li"};
        for (const char* k : known)
            if (two == k) return two;
    }
    return std::string(1, static_cast<char>(std::toupper(static_cast<unsigned char>(letters[0]))));
}

}  // namespace

Molecule readPDB(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw MDError("cannot read PDB file '" + path + "'");
    Molecule m;
    m.pdbPath = path;
    std::string line;
    int lineNo = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        const std::string rec = field(line, 0, 6);
        if (trim(rec) == "ENDMDL" || trim(rec) == "END") break;
        if (rec != "ATOM  " && rec != "HETATM") continue;
        const std::string where = path + ":" + std::to_string(lineNo);
        if (line.size() < 54) throw MDError(where + ": ATOM record too short for coordinates");
        Atom a;
        a.name = trim(field(line, 12, 4));
        a.residueName = trim(field(line, 17, 3));
        a.residueNumber = static_cast<int>(parseNumber(field(line, 22, 4), "residue number", where));
        a.element = trim(field(line, 76, 2));
        if (a.element.empty()) a.element = guessElement(field(line, 12, 4));
        else a.element = std::string(1, static_cast<char>(std::toupper(static_cast<unsigned char>(a.element[0])))) +
                         (a.element.size() > 1 ? std::string(1, static_cast<char>(std::tolower(static_cast<unsigned char>(a.element[1])))) : "");
        const double x = parseNumber(field(line, 30, 8), "x coordinate", where);
        const double y = parseNumber(field(line, 38, 8), "y coordinate", where);
        const double z = parseNumber(field(line, 46, 8), "z coordinate", where);
        m.atoms.push_back(a);
        m.positions.emplace_back(0.1 * x, 0.1 * y, 0.1 * z);  // Angstrom -> nm
    }
    if (m.atoms.empty()) throw MDError("PDB file '" + path + "' has no ATOM/HETATM records");
    return m;
}

std::string defaultMoleculePDB() { return findShareFile("alanine-dipeptide.pdb"); }

double elementMass(const std::string& element) {
    static const std::map<std::string, double> masses = {
        {"H", 1.007947}, {"D", 2.014}, {"C", 12.01078}, {"N", 14.00672}, {"O", 15.99943}, {"F", 18.9984032},
        {"P", 30.9737622}, {"S", 32.0655}, {"Cl", 35.4532}, {"Br", 79.9041}, {"I", 126.904473}, {"Na", 22.989769282},
        {"K", 39.09831}, {"Mg", 24.30506}, {"Ca", 40.0784}, {"Zn", 65.4094}, {"Fe", 55.8452}, {"Li", 6.9412}};
    auto it = masses.find(element);
    if (it == masses.end()) throw MDError("unknown element '" + element + "' (no mass)");
    return it->second;
}

std::vector<double> atomMasses(const Molecule& molecule) {
    std::vector<double> m;
    m.reserve(molecule.numAtoms());
    for (const auto& a : molecule.atoms) {
        try {
            m.push_back(elementMass(a.element));
        } catch (const MDError& e) {
            throw MDError(molecule.pdbPath + ": atom '" + a.name + "': " + e.what());
        }
    }
    return m;
}

double dihedral(const OpenMM::Vec3& a, const OpenMM::Vec3& b, const OpenMM::Vec3& c, const OpenMM::Vec3& d) {
    const OpenMM::Vec3 b1 = b - a, b2 = c - b, b3 = d - c;
    const OpenMM::Vec3 n1 = b1.cross(b2), n2 = b2.cross(b3);
    const double b2len = std::sqrt(b2.dot(b2));
    const double y = b2len * b1.dot(n2);
    const double x = n1.dot(n2);
    return std::atan2(y, x);
}

}  // namespace flowforce::md
