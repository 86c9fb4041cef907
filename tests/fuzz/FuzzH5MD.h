#pragma once
// The H5MD check of the fuzz target flowforce_fuzz_h5md and of the corpus test (test_fuzz_corpus): H5MD files through flowforce_md's reader (readH5MD, countH5MDFrames,
// readH5MDParameter), structure-aware: the input bytes describe an H5MD layout (which elements exist,
// as groups or plain datasets; every dataset's rank, dimensions (small, or huge and unallocated),
// element type and values; unit attributes; step/time as arrays or scalars with an offset; the
// /parameters attributes), the harness writes it with the HDF5 library to a file in /dev/shm and the
// reader reads it. So every number the reader takes from a file is fuzzed, while HDF5's own parsing of
// corrupt bytes (libhdf5, not instrumented, with known hangs and leaks on damaged files) is not under
// test. Byte 0 selects the usual choice everywhere, so the empty input is a valid two-frame H5MD file.
#include "FuzzCommon.h"

#include "flowforce/md/Error.h"
#include "flowforce/md/H5MD.h"

#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace flowforce::fuzz {

namespace h5md_detail {

/** The input as a stream of choices; 0 once exhausted. */
class Bytes {
public:
    Bytes(const uint8_t* d, size_t n) : d_(d), n_(n) {}
    uint8_t next() { return i_ < n_ ? d_[i_++] : 0; }
    /** 0..k-1 */
    unsigned choice(unsigned k) { return next() % k; }
    double value(size_t index) {
        if (i_ + 8 > n_) return 0.01 * static_cast<double>(index % 97);
        double v;
        std::memcpy(&v, d_ + i_, 8);
        i_ += 8;
        return v;
    }
    std::string text(size_t maxLength) {
        const size_t len = next() % (maxLength + 1);
        std::string s;
        for (size_t k = 0; k < len; ++k) s.push_back(static_cast<char>(next()));
        return s;
    }

private:
    const uint8_t* d_;
    size_t n_, i_ = 0;
};

/** A dimension: 0 -> the usual size, 1..200 -> 0..199, above -> huge. */
inline hsize_t dimension(Bytes& in, hsize_t usual, bool& huge) {
    const unsigned b = in.next();
    if (b == 0) return usual;
    if (b <= 200) return b - 1;
    huge = true;
    static const hsize_t hugeSizes[] = {1000, 1u << 20, hsize_t(1) << 31, hsize_t(1) << 40, hsize_t(1) << 62,
                                        hsize_t(3) << 61, ~hsize_t(0) >> 1};
    return hugeSizes[b % 7];
}

inline void stringAttribute(hid_t obj, const char* name, const std::string& value, bool variable) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, variable ? H5T_VARIABLE : std::max<size_t>(1, value.size()));
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
        if (variable) {
            const char* p = value.c_str();
            H5Awrite(attr, type, &p);
        } else {
            std::string v = value.empty() ? std::string(1, '\0') : value;
            H5Awrite(attr, type, v.data());
        }
        H5Aclose(attr);
    }
    H5Sclose(space);
    H5Tclose(type);
}

/** An attribute: absent, the usual text, other texts, fuzzed text, or a number. */
inline void attribute(Bytes& in, hid_t obj, const char* name, const char* usual, const char* other) {
    switch (in.choice(7)) {
        case 0: stringAttribute(obj, name, usual, false); break;
        case 1: break;
        case 2: stringAttribute(obj, name, usual, true); break;
        case 3: stringAttribute(obj, name, other, false); break;
        case 4: stringAttribute(obj, name, in.text(24), in.choice(2) == 0); break;
        case 5: {
            hid_t space = H5Screate(H5S_SCALAR);
            hid_t attr = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
            const double v = in.value(0);
            if (attr >= 0) H5Awrite(attr, H5T_NATIVE_DOUBLE, &v), H5Aclose(attr);
            H5Sclose(space);
            break;
        }
        default: {  // a 2-element array of strings
            hid_t type = H5Tcopy(H5T_C_S1);
            H5Tset_size(type, H5T_VARIABLE);
            const hsize_t two = 2;
            hid_t space = H5Screate_simple(1, &two, nullptr);
            hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
            const char* p[2] = {usual, other};
            if (attr >= 0) H5Awrite(attr, type, p), H5Aclose(attr);
            H5Sclose(space);
            H5Tclose(type);
        }
    }
}

/** A dataset of the given usual shape (rank and dims fuzzed), its type and values. */
inline void dataset(Bytes& in, hid_t loc, const char* name, std::vector<hsize_t> usual, const char* unit, const char* otherUnit) {
    const unsigned rankChoice = in.choice(6);  // 0: usual rank; else 0..4
    const size_t rank = rankChoice == 0 ? usual.size() : rankChoice - 1;
    std::vector<hsize_t> dims(rank);
    bool huge = false;
    hsize_t total = 1;
    for (size_t k = 0; k < rank; ++k) {
        dims[k] = dimension(in, k < usual.size() ? usual[k] : 3, huge);
        total = dims[k] != 0 && total > (hsize_t(1) << 62) / dims[k] ? (hsize_t(1) << 62) : total * dims[k];
    }
    static const hid_t* fileTypes[] = {&H5T_IEEE_F64LE_g, &H5T_IEEE_F32LE_g, &H5T_STD_I64LE_g, &H5T_STD_I32LE_g, &H5T_STD_U8LE_g, &H5T_IEEE_F64BE_g};
    const unsigned typeChoice = in.choice(7);
    hid_t type = typeChoice < 6 ? H5Tcopy(*fileTypes[typeChoice]) : H5Tcopy(H5T_C_S1);
    if (typeChoice == 6) H5Tset_size(type, 4);
    hid_t space = H5Screate_simple(static_cast<int>(rank), dims.data(), nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const bool unallocated = huge || total > 4096;
    if (unallocated && rank > 0) {  // declared but never written: chunked, no storage
        H5Sclose(space);
        std::vector<hsize_t> maxdims(rank, H5S_UNLIMITED), chunk(rank);
        for (size_t k = 0; k < rank; ++k) chunk[k] = std::max<hsize_t>(1, std::min<hsize_t>(dims[k], 4));
        space = H5Screate_simple(static_cast<int>(rank), dims.data(), maxdims.data());
        H5Pset_chunk(dcpl, static_cast<int>(rank), chunk.data());
    }
    hid_t d = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) {
        if (!unallocated && typeChoice < 6) {
            std::vector<double> v(static_cast<size_t>(total));
            for (size_t k = 0; k < v.size(); ++k) v[k] = in.value(k);
            H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());  // converted (may clip)
        }
        if (unit) attribute(in, d, "unit", unit, otherUnit);
        if (rank == 0 && in.choice(2)) stringAttribute(d, "offset", in.text(8), false);
        H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(type);
}

inline hid_t group(hid_t loc, const std::string& name) { return H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT); }

/** An H5MD element: a group with value (and step, time), a plain dataset, a group without value, or absent. */
inline void element(Bytes& in, hid_t loc, const char* name, std::vector<hsize_t> inner, const char* unit, const char* otherUnit,
             bool optional) {
    const unsigned kind = in.choice(optional ? 5 : 4);  // optional elements: 0 = absent
    if (optional && kind == 0) return;
    if (kind == (optional ? 2u : 1u)) {
        dataset(in, loc, name, inner, unit, otherUnit);
        return;
    }
    hid_t g = group(loc, name);
    if (g < 0) return;
    if (kind != (optional ? 3u : 2u)) {
        std::vector<hsize_t> shape{2};
        shape.insert(shape.end(), inner.begin(), inner.end());
        dataset(in, g, "value", shape, unit, otherUnit);
        const unsigned st = in.choice(3);  // 0: arrays, 1: scalars, 2: absent
        if (st == 0) dataset(in, g, "step", {2}, nullptr, nullptr), dataset(in, g, "time", {2}, nullptr, nullptr);
        if (st == 1) dataset(in, g, "step", {}, nullptr, nullptr), dataset(in, g, "time", {}, nullptr, nullptr);
    }
    H5Gclose(g);
}

inline bool writeFile(Bytes& in, const std::string& path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return false;
    if (in.choice(4) != 3) {  // /particles
        hid_t particles = group(file, "particles");
        const unsigned groups = 1 + in.choice(2);
        for (unsigned k = 0; k < groups; ++k) {
            std::string name = k == 0 ? "all" : "other";
            if (in.choice(4) == 3) {
                name = in.text(6);
                for (char& c : name)
                    if (c == '/' || c == '.' || c == '\0') c = '_';
                if (name.empty()) name = "g";
            }
            hid_t g = group(particles, name);
            if (g < 0) continue;
            element(in, g, "position", {3, 3}, "nm", "Angstrom", false);
            element(in, g, "force", {3, 3}, "kJ mol-1 nm-1", "kcal", true);
            if (in.choice(2)) dataset(in, g, "mass", {3}, nullptr, nullptr);
            H5Gclose(g);
        }
        H5Gclose(particles);
    }
    if (in.choice(2) == 0) {
        hid_t obs = group(file, "observables");
        element(in, obs, "potential_energy", {}, "kJ mol-1", "eV", true);
        H5Gclose(obs);
    }
    if (in.choice(2) == 0) {
        hid_t params = group(file, "parameters");
        hid_t ff = group(params, "flowforce");
        attribute(in, ff, "model", "model.flow", "");
        H5Gclose(ff);
        H5Gclose(params);
    }
    return H5Fclose(file) >= 0;
}


template <class F>
inline void expectCleanly(const char* what, F&& f) {
    try {
        f();
    } catch (const flowforce::md::MDError& e) {
        flowforce::fuzz::checkMessage(e.what(), "MDError");
    } catch (const std::exception& e) {
        flowforce::fuzz::finding(std::string(what) + " threw an undocumented exception: " + e.what());
    }
}

}  // namespace h5md_detail

/** Writes the H5MD layout the bytes describe to path and reads it back with flowforce_md's reader; aborts
 *  on a finding. */
inline void checkH5MDLayout(const uint8_t* data, size_t size, const std::string& path) {
    using namespace h5md_detail;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the harness's own HDF5 calls may fail quietly
    Bytes in(data, size);
    if (!writeFile(in, path)) return;
    expectCleanly("readH5MD", [&] {
        const auto ds = flowforce::md::readH5MD(path);
        if (ds.frames == 0 || ds.atoms == 0) finding("readH5MD returned no frames without an error");
        if (ds.positions.size() != ds.frames * ds.atoms * 3) finding("positions do not match frames x atoms");
        if (!ds.forces.empty() && ds.forces.size() != ds.positions.size()) finding("forces do not match the positions");
        if (!ds.energies.empty() && ds.energies.size() != ds.frames) finding("energies do not match the frames");
        if (!ds.masses.empty() && ds.masses.size() != ds.atoms) finding("masses do not match the atoms");
        if (!ds.step.empty() && ds.step.size() != ds.frames) finding("steps do not match the frames");
        if (!ds.time.empty() && ds.time.size() != ds.frames) finding("times do not match the frames");
        (void)flowforce::md::readH5MD(path, 1);
    });
    expectCleanly("countH5MDFrames", [&] { (void)flowforce::md::countH5MDFrames(path); });
    expectCleanly("readH5MDParameter", [&] { (void)flowforce::md::readH5MDParameter(path, "model"); });
    std::remove(path.c_str());
}

/** A scratch file name for this process (in /dev/shm where it can). */
inline std::string h5mdScratchPath() {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return std::string(dir) + "/flowforce-fuzz-h5md-" + std::to_string(::getpid()) + ".h5";
}

}  // namespace flowforce::fuzz
