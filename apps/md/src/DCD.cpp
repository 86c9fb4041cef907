// DCD writer/reader. Layout (every record framed by its byte length as int32 before and after):
//   1. "CORD" + 20 int32 control words: [0] frames, [1] first step, [2] steps between frames,
//      [3] last step, [9] time step (float32, AKMA units), [10] unit-cell flag (0), [19] CHARMM version 24
//   2. title: int32 line count + 80-character lines
//   3. int32 atom count
//   then per frame three records: x, y, z as float32 (Angstrom).
#include "flowforce/md/DCD.h"

#include "flowforce/md/Error.h"

#include <cstring>
#include <ctime>

namespace flowforce::md {

namespace {

constexpr double kAkmaTimePs = 0.0488882129;  // one AKMA time unit in ps

template <class T>
void put(std::ostream& out, T v) {
    out.write(reinterpret_cast<const char*>(&v), sizeof v);
}

void putRecord(std::ostream& out, const void* data, int32_t bytes) {
    put(out, bytes);
    out.write(static_cast<const char*>(data), bytes);
    put(out, bytes);
}

template <class T>
T get(std::istream& in, const std::string& path) {
    T v{};
    if (!in.read(reinterpret_cast<char*>(&v), sizeof v)) throw MDError("'" + path + "': truncated DCD file");
    return v;
}

std::string getRecord(std::istream& in, const std::string& path) {
    const int32_t n = get<int32_t>(in, path);
    if (n < 0 || n > (1 << 30)) throw MDError("'" + path + "': bad DCD record length");
    std::string s(static_cast<size_t>(n), '\0');
    if (!in.read(s.data(), n)) throw MDError("'" + path + "': truncated DCD file");
    if (get<int32_t>(in, path) != n) throw MDError("'" + path + "': DCD record markers do not match");
    return s;
}

}  // namespace

DCDWriter::DCDWriter(const std::string& path, int atoms, int firstStep, int interval, double dtPs)
    : path_(path), atoms_(atoms), firstStep_(firstStep), interval_(interval) {
    out_.open(path, std::ios::in | std::ios::out | std::ios::binary | std::ios::trunc);
    if (!out_) throw MDError("cannot create DCD file '" + path + "'");
    char header[84] = {};
    std::memcpy(header, "CORD", 4);
    int32_t control[20] = {};
    control[1] = firstStep;
    control[2] = interval;
    control[3] = firstStep;
    const float delta = static_cast<float>(dtPs / kAkmaTimePs);
    std::memcpy(&control[9], &delta, sizeof delta);
    control[19] = 24;
    std::memcpy(header + 4, control, sizeof control);
    putRecord(out_, header, 84);
    char title[4 + 2 * 80];
    const int32_t lines = 2;
    std::memcpy(title, &lines, 4);
    std::memset(title + 4, ' ', 160);
    const std::string t1 = "REMARKS written by flowforce (FlowForce)";
    char t2[81];
    const std::time_t now = std::time(nullptr);
    std::strftime(t2, sizeof t2, "REMARKS created %Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
    std::memcpy(title + 4, t1.data(), t1.size());
    std::memcpy(title + 84, t2, std::strlen(t2));
    putRecord(out_, title, sizeof title);
    const int32_t n = atoms;
    putRecord(out_, &n, 4);
    out_.flush();
    if (!out_) throw MDError("cannot write DCD file '" + path + "'");
}

void DCDWriter::write(const std::vector<OpenMM::Vec3>& positions) {
    if (static_cast<int>(positions.size()) != atoms_) throw MDError("DCD: wrong number of atoms in a frame");
    std::vector<float> c(static_cast<size_t>(atoms_));
    for (int axis = 0; axis < 3; ++axis) {
        for (int i = 0; i < atoms_; ++i) c[static_cast<size_t>(i)] = static_cast<float>(10.0 * positions[static_cast<size_t>(i)][axis]);
        putRecord(out_, c.data(), static_cast<int32_t>(4 * atoms_));
    }
    ++frames_;
    // Frame count and last step in the header, so that the file is valid after every frame.
    const auto end = out_.tellp();
    out_.seekp(8);
    put(out_, static_cast<int32_t>(frames_));
    out_.seekp(20);
    put(out_, static_cast<int32_t>(firstStep_ + interval_ * (frames_ - 1)));
    out_.seekp(end);
    out_.flush();
    if (!out_) throw MDError("cannot write DCD file '" + path_ + "'");
}

void DCDWriter::close() {
    if (out_.is_open()) out_.close();
}

DCDFile readDCD(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw MDError("cannot read DCD file '" + path + "'");
    const std::string header = getRecord(in, path);
    if (header.size() != 84 || header.compare(0, 4, "CORD") != 0) throw MDError("'" + path + "' is not a DCD file");
    int32_t control[20];
    std::memcpy(control, header.data() + 4, sizeof control);
    getRecord(in, path);  // title
    const std::string natoms = getRecord(in, path);
    if (natoms.size() != 4) throw MDError("'" + path + "': bad atom-count record");
    DCDFile f;
    std::memcpy(&f.atoms, natoms.data(), 4);
    f.frames = control[0];
    for (int frame = 0; frame < f.frames; ++frame) {
        if (control[10]) getRecord(in, path);
        std::vector<std::string> xyz;
        for (int axis = 0; axis < 3; ++axis) xyz.push_back(getRecord(in, path));
        for (int i = 0; i < f.atoms; ++i)
            for (int axis = 0; axis < 3; ++axis) {
                float v;
                std::memcpy(&v, xyz[static_cast<size_t>(axis)].data() + 4 * i, 4);
                f.xyz.push_back(v);
            }
    }
    return f;
}

}  // namespace flowforce::md
