// H5MD 1.1 reader and writer on the HDF5 C API.
#include "flowforce/md/H5MD.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/md/Error.h"

#include <hdf5.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <type_traits>

namespace flowforce::md {

namespace {

/** Owns an HDF5 identifier and closes it with the matching function. */
class Id {
public:
    Id() = default;
    Id(hid_t id, herr_t (*closer)(hid_t)) : id_(id), close_(closer) {}
    Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    Id& operator=(Id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_, close_ = o.close_;
            o.id_ = -1;
        }
        return *this;
    }
    Id(const Id&) = delete;
    Id& operator=(const Id&) = delete;
    ~Id() { reset(); }
    void reset() {
        if (id_ >= 0 && close_) close_(id_);
        id_ = -1;
    }
    hid_t get() const { return id_; }
    /** Gives up ownership (the caller closes it). */
    hid_t release() {
        hid_t id = id_;
        id_ = -1;
        return id;
    }
    operator hid_t() const { return id_; }
    bool valid() const { return id_ >= 0; }

private:
    hid_t id_ = -1;
    herr_t (*close_)(hid_t) = nullptr;
};

void quietHdf5() {
    static bool done = false;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        done = true;
    }
}

void check(herr_t status, const std::string& what) {
    if (status < 0) throw MDError(what);
}

Id checked(hid_t id, herr_t (*closer)(hid_t), const std::string& what) {
    if (id < 0) throw MDError(what);
    return Id(id, closer);
}

bool linkExists(hid_t loc, const std::string& path) {
    // Check every component so that a missing intermediate group is not an error.
    size_t pos = 0;
    while (true) {
        pos = path.find('/', pos + 1);
        const std::string part = path.substr(0, pos);
        if (!part.empty() && part != "/" && H5Lexists(loc, part.c_str(), H5P_DEFAULT) <= 0) return false;
        if (pos == std::string::npos) return true;
    }
}

H5O_type_t objectType(hid_t loc, const std::string& path) {
    H5O_info_t info;
    if (H5Oget_info_by_name(loc, path.c_str(), &info, H5P_DEFAULT) < 0) return H5O_TYPE_UNKNOWN;
    return info.type;
}

void writeStringAttribute(hid_t obj, const std::string& name, const std::string& value) {
    if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
    Id type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    check(H5Tset_size(type, H5T_VARIABLE), "H5Tset_size");
    check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset");
    Id space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    Id attr = checked(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      "cannot create attribute '" + name + "'");
    const char* p = value.c_str();
    check(H5Awrite(attr, type, &p), "cannot write attribute '" + name + "'");
}

void writeStringArrayAttribute(hid_t obj, const std::string& name, const std::vector<std::string>& values) {
    Id type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    check(H5Tset_size(type, H5T_VARIABLE), "H5Tset_size");
    check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset");
    const hsize_t n = values.size();
    Id space = checked(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple");
    Id attr = checked(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      "cannot create attribute '" + name + "'");
    std::vector<const char*> ptrs;
    for (const auto& v : values) ptrs.push_back(v.c_str());
    check(H5Awrite(attr, type, ptrs.data()), "cannot write attribute '" + name + "'");
}

void writeIntArrayAttribute(hid_t obj, const std::string& name, const std::vector<int>& values) {
    const hsize_t n = values.size();
    Id space = checked(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate");
    Id attr = checked(H5Acreate2(obj, name.c_str(), H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      "cannot create attribute '" + name + "'");
    check(H5Awrite(attr, H5T_NATIVE_INT, values.data()), "cannot write attribute '" + name + "'");
}

void writeDoubleAttribute(hid_t obj, const std::string& name, double value) {
    if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
    Id space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
    Id attr = checked(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                      "cannot create attribute '" + name + "'");
    check(H5Awrite(attr, H5T_NATIVE_DOUBLE, &value), "cannot write attribute '" + name + "'");
}

/** A string (or, converted to text, a numeric scalar) attribute; "" if missing. */
std::string readAttributeText(hid_t obj, const std::string& name) {
    if (H5Aexists(obj, name.c_str()) <= 0) return "";
    Id attr = checked(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, "cannot open attribute '" + name + "'");
    Id type = checked(H5Aget_type(attr), H5Tclose, "H5Aget_type");
    Id space = checked(H5Aget_space(attr), H5Sclose, "H5Aget_space");
    if (H5Sget_simple_extent_npoints(space) != 1) return "";
    const H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_STRING) {
        if (H5Tis_variable_str(type) > 0) {
            Id mem = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
            H5Tset_size(mem, H5T_VARIABLE);
            H5Tset_cset(mem, H5Tget_cset(type));
            char* p = nullptr;
            if (H5Aread(attr, mem, &p) < 0) return "";
            std::string s = p ? p : "";
            H5free_memory(p);
            return s;
        }
        const size_t size = H5Tget_size(type);
        if (size == 0 || size > H5Aget_storage_size(attr)) return "";  // a size the file does not hold
        std::string s(size, '\0');
        Id mem = checked(H5Tcopy(type), H5Tclose, "H5Tcopy");
        if (H5Aread(attr, mem, s.data()) < 0) return "";
        s.resize(std::strlen(s.c_str()));
        return s;
    }
    if (cls == H5T_FLOAT || cls == H5T_INTEGER) {
        double v = 0;
        if (H5Aread(attr, H5T_NATIVE_DOUBLE, &v) < 0) return "";
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", v);
        return buf;
    }
    return "";
}

Id createGroup(hid_t loc, const std::string& name) {
    return checked(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
                   "cannot create group '" + name + "'");
}

/** An extendable dataset [0, inner...] chunked along its first axis. */
Id createExtendable(hid_t loc, const std::string& name, hid_t fileType, const std::vector<hsize_t>& inner, size_t chunkFrames) {
    std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED}, chunk{std::max<hsize_t>(1, chunkFrames)};
    for (hsize_t d : inner) dims.push_back(d), maxdims.push_back(d), chunk.push_back(d);
    Id space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.data()), H5Sclose, "H5Screate_simple");
    Id plist = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate");
    check(H5Pset_chunk(plist, static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
    return checked(H5Dcreate2(loc, name.c_str(), fileType, space, H5P_DEFAULT, plist, H5P_DEFAULT), H5Dclose,
                   "cannot create dataset '" + name + "'");
}

/** Appends n rows to an extendable dataset whose first axis currently has `have` rows. */
void appendRows(hid_t dset, hid_t memType, size_t have, size_t n, const void* data, const std::string& what) {
    Id space0 = checked(H5Dget_space(dset), H5Sclose, "H5Dget_space");
    const int rank = H5Sget_simple_extent_ndims(space0);
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    H5Sget_simple_extent_dims(space0, dims.data(), nullptr);
    dims[0] = have + n;
    check(H5Dset_extent(dset, dims.data()), "cannot extend '" + what + "'");
    Id space = checked(H5Dget_space(dset), H5Sclose, "H5Dget_space");
    std::vector<hsize_t> start(dims.size(), 0), count = dims;
    start[0] = have, count[0] = n;
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "H5Sselect_hyperslab");
    Id mem = checked(H5Screate_simple(rank, count.data(), nullptr), H5Sclose, "H5Screate_simple");
    check(H5Dwrite(dset, memType, mem, space, H5P_DEFAULT, data), "cannot write '" + what + "'");
}

std::vector<hsize_t> datasetDims(hid_t dset) {
    Id space = checked(H5Dget_space(dset), H5Sclose, "H5Dget_space");
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
    if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    return dims;
}

/** a * b, or false if it overflows. */
bool multiply(uint64_t a, uint64_t b, uint64_t& product) {
    if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
    product = a * b;
    return true;
}

/** Throws unless a dataset can hold `values` values in the bytes the file stores for it: a dataset's
 *  dimensions are only numbers in its header (a chunked dataset may declare any size and store nothing),
 *  so they are checked against its storage before anything is allocated for them. Compression (deflate:
 *  at most ~1032:1) and 1-byte types (8 bytes each as double) bound the ratio of values to stored bytes. */
void checkStored(hid_t dset, uint64_t values, const std::string& what) {
    constexpr uint64_t kMaxValuesPerStoredByte = 1100;
    const uint64_t stored = H5Dget_storage_size(dset);
    uint64_t limit = 0;
    if (!multiply(stored, kMaxValuesPerStoredByte, limit) || values > limit)
        throw MDError("'" + what + "' declares " + std::to_string(values) + " values but the file stores " +
                      std::to_string(stored) + " bytes for it (corrupt or truncated file?)");
}

/** Reads the first `rows` rows of a dataset (all of it if rank 0) converted to memType. */
template <class T>
std::vector<T> readRows(hid_t dset, hid_t memType, size_t rows, const std::string& what) {
    auto dims = datasetDims(dset);
    uint64_t per = 1;
    for (size_t i = 1; i < dims.size(); ++i)
        if (!multiply(per, dims[i], per)) throw MDError("'" + what + "' has impossible dimensions (corrupt file?)");
    std::vector<T> out;
    if (dims.empty()) {
        checkStored(dset, 1, what);
        out.resize(1);
        check(H5Dread(dset, memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "cannot read '" + what + "'");
        return out;
    }
    rows = std::min<size_t>(rows, dims[0]);
    uint64_t values = 0;
    if (!multiply(rows, per, values)) throw MDError("'" + what + "' has impossible dimensions (corrupt file?)");
    if (values > 0) checkStored(dset, values, what);
    out.resize(values);
    if (rows == 0) return out;
    Id space = checked(H5Dget_space(dset), H5Sclose, "H5Dget_space");
    std::vector<hsize_t> start(dims.size(), 0), count = dims;
    count[0] = rows;
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "H5Sselect_hyperslab");
    Id mem = checked(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose, "H5Screate_simple");
    check(H5Dread(dset, memType, mem, space, H5P_DEFAULT, out.data()), "cannot read '" + what + "' (file damaged?)");
    return out;
}

Id openFileForReading(const std::string& path) {
    quietHdf5();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw MDError("no such file: '" + path + "'");
    if (std::filesystem::is_directory(path, ec)) throw MDError("'" + path + "' is a folder, not an H5MD file");
    const htri_t is = H5Fis_hdf5(path.c_str());
    if (is <= 0) throw MDError("'" + path + "' is not an HDF5 file (corrupt or wrong format)");
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) throw MDError("cannot open '" + path + "' (corrupt or truncated HDF5 file?)");
    return Id(f, H5Fclose);
}

/** The particles group holding positions: the requested one, else the first (in name order). */
std::string findParticlesGroup(hid_t file, const std::string& path, const std::string& requested) {
    if (!linkExists(file, "/particles")) throw MDError("'" + path + "' is not an H5MD file with particles (no /particles group)");
    if (!requested.empty()) {
        if (!linkExists(file, "/particles/" + requested + "/position"))
            throw MDError("'" + path + "' has no positions in /particles/" + requested);
        return requested;
    }
    Id g = checked(H5Gopen2(file, "/particles", H5P_DEFAULT), H5Gclose, "cannot open /particles");
    H5G_info_t info;
    check(H5Gget_info(g, &info), "H5Gget_info");
    for (hsize_t i = 0; i < info.nlinks; ++i) {
        const ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
        if (len <= 0) continue;
        std::string name(static_cast<size_t>(len) + 1, '\0');
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
        name.resize(static_cast<size_t>(len));
        if (linkExists(file, "/particles/" + name + "/position")) return name;
    }
    throw MDError("'" + path + "' has no particle positions (no /particles/<group>/position)");
}

/** Opens the value dataset of an H5MD element (a group with value/step/time, or a plain dataset). */
Id openElementValue(hid_t file, const std::string& element, bool& timeDependent) {
    const H5O_type_t t = objectType(file, element);
    if (t == H5O_TYPE_DATASET) {
        timeDependent = false;
        return checked(H5Dopen2(file, element.c_str(), H5P_DEFAULT), H5Dclose, "cannot open '" + element + "'");
    }
    if (t == H5O_TYPE_GROUP && linkExists(file, element + "/value")) {
        timeDependent = true;
        return checked(H5Dopen2(file, (element + "/value").c_str(), H5P_DEFAULT), H5Dclose, "cannot open '" + element + "/value'");
    }
    throw MDError("'" + element + "' is neither an H5MD element group with 'value' nor a dataset");
}

double lengthScaleToNm(const std::string& unit, const std::string& what) {
    if (unit.empty() || unit == "nm") return 1.0;
    if (unit == "Angstrom" || unit == "A" || unit == "angstrom") return 0.1;
    if (unit == "pm") return 0.001;
    throw MDError(what + ": unsupported unit '" + unit + "' (expected nm or Angstrom)");
}

/** step or time of an element: a dataset [frames], or a scalar interval (with optional offset). */
template <class T>
std::vector<T> readStepOrTime(hid_t file, const std::string& path, hid_t memType, size_t frames) {
    if (!linkExists(file, path)) return {};
    Id d = checked(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, "cannot open '" + path + "'");
    auto dims = datasetDims(d);
    if (dims.empty()) {
        auto interval = readRows<T>(d, memType, 1, path);
        const std::string off = readAttributeText(d, "offset");
        const double offset = off.empty() ? 0.0 : std::atof(off.c_str());
        std::vector<T> v(frames);
        for (size_t i = 0; i < frames; ++i) {
            const double x = offset + static_cast<double>(i) * static_cast<double>(interval[0]);
            // An integer step must be representable (a double outside int64's range does not convert).
            const bool fits = std::isfinite(x) && (!std::is_integral_v<T> || (x >= -9.2233720368547758e18 && x < 9.2233720368547758e18));
            if (!fits)
                throw MDError("'" + path + "': interval " + std::to_string(static_cast<double>(interval[0])) + " with offset '" + off +
                              "' gives frame " + std::to_string(i) + " the value " + std::to_string(x) + ", out of range");
            v[i] = static_cast<T>(x);
        }
        return v;
    }
    auto v = readRows<T>(d, memType, frames, path);
    if (v.size() != frames) return {};
    return v;
}

}  // namespace

// ---------------------------------------------------------------- reader

namespace {

Dataset readH5MDImpl(const std::string& path, size_t maxFrames, const std::string& group) {
    Id file = openFileForReading(path);
    Dataset ds;
    ds.path = path;
    ds.group = findParticlesGroup(file, path, group);
    const std::string base = "/particles/" + ds.group;
    bool timeDependent = true;
    Id pos = openElementValue(file, base + "/position", timeDependent);
    auto dims = datasetDims(pos);
    if (!timeDependent) {
        if (dims.size() == 2 && dims[1] == 3) dims.insert(dims.begin(), 1);  // one configuration
    }
    if (dims.size() != 3 || dims[2] != 3)
        throw MDError("'" + path + "': " + base + "/position/value must have shape [frames, atoms, 3]");
    ds.atoms = dims[1];
    const double posScale = lengthScaleToNm(readAttributeText(pos, "unit"), path + ": " + base + "/position");
    ds.positions = readRows<double>(pos, H5T_NATIVE_DOUBLE, maxFrames, base + "/position/value");
    ds.frames = ds.atoms ? ds.positions.size() / (ds.atoms * 3) : 0;
    if (ds.frames == 0 || ds.atoms == 0) throw MDError("'" + path + "' holds no frames");
    for (double& x : ds.positions) x *= posScale;
    if (timeDependent) {
        ds.step = readStepOrTime<int64_t>(file, base + "/position/step", H5T_NATIVE_INT64, ds.frames);
        ds.time = readStepOrTime<double>(file, base + "/position/time", H5T_NATIVE_DOUBLE, ds.frames);
    }
    if (linkExists(file, base + "/force")) {
        bool td = true;
        Id f = openElementValue(file, base + "/force", td);
        auto fd = datasetDims(f);
        if (fd.size() != 3 || fd[1] != ds.atoms || fd[2] != 3 || fd[0] < ds.frames)
            throw MDError("'" + path + "': " + base + "/force/value does not match the positions' shape");
        const std::string unit = readAttributeText(f, "unit");
        if (!unit.empty() && unit != "kJ mol-1 nm-1")
            throw MDError("'" + path + "': unsupported force unit '" + unit + "' (expected kJ mol-1 nm-1)");
        ds.forces = readRows<double>(f, H5T_NATIVE_DOUBLE, ds.frames, base + "/force/value");
    }
    if (linkExists(file, "/observables/potential_energy")) {
        bool td = true;
        Id e = openElementValue(file, "/observables/potential_energy", td);
        auto ed = datasetDims(e);
        if (ed.size() == 1 && ed[0] >= ds.frames) {
            const std::string unit = readAttributeText(e, "unit");
            if (!unit.empty() && unit != "kJ mol-1")
                throw MDError("'" + path + "': unsupported energy unit '" + unit + "' (expected kJ mol-1)");
            ds.energies = readRows<double>(e, H5T_NATIVE_DOUBLE, ds.frames, "/observables/potential_energy/value");
        }
    }
    if (linkExists(file, base + "/mass") && objectType(file, base + "/mass") == H5O_TYPE_DATASET) {
        Id m = checked(H5Dopen2(file, (base + "/mass").c_str(), H5P_DEFAULT), H5Dclose, "cannot open mass");
        auto md = datasetDims(m);
        if (md.size() == 1 && md[0] == ds.atoms) ds.masses = readRows<double>(m, H5T_NATIVE_DOUBLE, ds.atoms, base + "/mass");
    }
    return ds;
}

size_t countH5MDFramesImpl(const std::string& path) {
    Id file = openFileForReading(path);
    const std::string base = "/particles/" + findParticlesGroup(file, path, "");
    bool td = true;
    Id pos = openElementValue(file, base + "/position", td);
    auto dims = datasetDims(pos);
    if (!td) return 1;
    return dims.empty() ? 0 : dims[0];
}

std::string readH5MDParameterImpl(const std::string& path, const std::string& name) {
    Id file = openFileForReading(path);
    if (!linkExists(file, "/parameters/flowforce")) return "";
    Id g = checked(H5Gopen2(file, "/parameters/flowforce", H5P_DEFAULT), H5Gclose, "cannot open /parameters/flowforce");
    return readAttributeText(g, name);
}

/** Messages quote names and units from the file, which may hold any bytes: one printable line. */
MDError oneLine(const MDError& e) {
    std::string m;
    const std::string what = e.what();
    for (char c : what.substr(0, 500)) m += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    return MDError(what.size() > 500 ? m + "..." : m);
}

}  // namespace

Dataset readH5MD(const std::string& path, size_t maxFrames, const std::string& group) {
    try {
        return readH5MDImpl(path, maxFrames, group);
    } catch (const MDError& e) {
        throw oneLine(e);
    }
}

size_t countH5MDFrames(const std::string& path) {
    try {
        return countH5MDFramesImpl(path);
    } catch (const MDError& e) {
        throw oneLine(e);
    }
}

std::string readH5MDParameter(const std::string& path, const std::string& name) {
    try {
        return readH5MDParameterImpl(path, name);
    } catch (const MDError& e) {
        throw oneLine(e);
    }
}

// ---------------------------------------------------------------- writer

struct H5MDWriter::Impl {
    Id file;
    size_t atoms = 0, frames = 0;
    bool forces = false, energies = false;
    Id posValue, posStep, posTime, forValue, forStep, forTime, enValue, enStep, enTime, params;
};

namespace {

/** A new HDF5 file that lives in memory only (core driver without a backing store). */
Id createInMemoryFile() {
    static int counter = 0;  // names only tell HDF5's open files apart
    const std::string name = "flowforce-h5md-in-memory-" + std::to_string(++counter) + ".h5";
    Id fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate");
    check(H5Pset_fapl_core(fapl, 1 << 20, 0), "H5Pset_fapl_core");
    return checked(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose, "cannot create an in-memory HDF5 file");
}

}  // namespace

H5MDWriter::H5MDWriter(size_t atoms, const H5MDWriterOptions& o) : impl_(std::make_unique<Impl>()) {
    quietHdf5();
    if (atoms == 0) throw MDError("H5MD: no atoms");
    auto& d = *impl_;
    d.atoms = atoms;
    d.file = createInMemoryFile();
    {
        Id h5md = createGroup(d.file, "/h5md");
        writeIntArrayAttribute(h5md, "version", {1, 1});
        Id author = createGroup(h5md, "author");
        writeStringAttribute(author, "name", o.author);
        Id creator = createGroup(h5md, "creator");
        writeStringAttribute(creator, "name", o.creator);
        writeStringAttribute(creator, "version", o.creatorVersion);
    }
    const hsize_t n = atoms;
    {
        Id particles = createGroup(d.file, "/particles");
        Id g = createGroup(particles, o.group);
        Id box = createGroup(g, "box");
        writeIntArrayAttribute(box, "dimension", {3});
        writeStringArrayAttribute(box, "boundary", {"none", "none", "none"});
        auto element = [&](const std::string& name, const std::string& unit, Id& value, Id& step, Id& time) {
            Id e = createGroup(g, name);
            value = createExtendable(e, "value", H5T_IEEE_F64LE, {n, 3}, o.chunkFrames);
            writeStringAttribute(value, "unit", unit);
            step = createExtendable(e, "step", H5T_STD_I64LE, {}, std::max<size_t>(o.chunkFrames, 256));
            time = createExtendable(e, "time", H5T_IEEE_F64LE, {}, std::max<size_t>(o.chunkFrames, 256));
            writeStringAttribute(time, "unit", "ps");
        };
        element("position", "nm", d.posValue, d.posStep, d.posTime);
        d.forces = o.forces;
        if (o.forces) element("force", "kJ mol-1 nm-1", d.forValue, d.forStep, d.forTime);
        if (!o.masses.empty()) {
            if (o.masses.size() != atoms) throw MDError("H5MD: masses do not match the number of atoms");
            Id space = checked(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple");
            Id m = checked(H5Dcreate2(g, "mass", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                           "cannot create mass");
            check(H5Dwrite(m, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, o.masses.data()), "cannot write mass");
            writeStringAttribute(m, "unit", "u");
        }
    }
    d.energies = o.energies;
    if (o.energies) {
        Id obs = createGroup(d.file, "/observables");
        Id e = createGroup(obs, "potential_energy");
        d.enValue = createExtendable(e, "value", H5T_IEEE_F64LE, {}, std::max<size_t>(o.chunkFrames, 256));
        writeStringAttribute(d.enValue, "unit", "kJ mol-1");
        d.enStep = createExtendable(e, "step", H5T_STD_I64LE, {}, std::max<size_t>(o.chunkFrames, 256));
        d.enTime = createExtendable(e, "time", H5T_IEEE_F64LE, {}, std::max<size_t>(o.chunkFrames, 256));
        writeStringAttribute(d.enTime, "unit", "ps");
    }
    createGroup(d.file, "/parameters");
    d.params = createGroup(d.file, "/parameters/flowforce");
}

H5MDWriter::~H5MDWriter() = default;

void H5MDWriter::append(size_t n, const double* positions, const double* forces, const double* energies, const int64_t* steps,
                        const double* times) {
    auto& d = *impl_;
    if (n == 0) return;
    if (d.forces && !forces) throw MDError("H5MD: forces required for this file");
    if (d.energies && !energies) throw MDError("H5MD: energies required for this file");
    appendRows(d.posValue, H5T_NATIVE_DOUBLE, d.frames, n, positions, "position");
    appendRows(d.posStep, H5T_NATIVE_INT64, d.frames, n, steps, "position step");
    appendRows(d.posTime, H5T_NATIVE_DOUBLE, d.frames, n, times, "position time");
    if (d.forces) {
        appendRows(d.forValue, H5T_NATIVE_DOUBLE, d.frames, n, forces, "force");
        appendRows(d.forStep, H5T_NATIVE_INT64, d.frames, n, steps, "force step");
        appendRows(d.forTime, H5T_NATIVE_DOUBLE, d.frames, n, times, "force time");
    }
    if (d.energies) {
        appendRows(d.enValue, H5T_NATIVE_DOUBLE, d.frames, n, energies, "potential energy");
        appendRows(d.enStep, H5T_NATIVE_INT64, d.frames, n, steps, "energy step");
        appendRows(d.enTime, H5T_NATIVE_DOUBLE, d.frames, n, times, "energy time");
    }
    d.frames += n;
}

void H5MDWriter::setParameter(const std::string& name, const std::string& value) { writeStringAttribute(impl_->params, name, value); }
void H5MDWriter::setParameter(const std::string& name, double value) { writeDoubleAttribute(impl_->params, name, value); }
size_t H5MDWriter::frames() const { return impl_->frames; }

std::string H5MDWriter::fileImage() const {
    const hid_t file = impl_->file;
    check(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush the H5MD file");
    const ssize_t size = H5Fget_file_image(file, nullptr, 0);
    if (size < 0) throw MDError("cannot take the H5MD file's image");
    std::string bytes(static_cast<size_t>(size), '\0');
    if (H5Fget_file_image(file, bytes.data(), bytes.size()) != size) throw MDError("cannot take the H5MD file's image");
    return bytes;
}

void H5MDWriter::save(const std::string& path) const {
    try {
        writeFileAtomically(path, fileImage());
    } catch (const std::runtime_error& e) {
        throw MDError(e.what());
    }
}

}  // namespace flowforce::md
