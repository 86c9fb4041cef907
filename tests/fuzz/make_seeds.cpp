// Writes the seed corpus of the model and XML fuzz targets (tests/fuzz/corpus/<target>/): tiny model files
// (2-D toy flows on the square, the box and the torus; a 4-atom molecular flow with internal coordinates)
// and FlowForce XML. (The H5MD seeds come from make_h5md_seeds.py.) Built in the fuzz build (`make fuzz-seeds` regenerates the committed files; the
// weights come from a fixed seed, so the output is reproducible).
#include "FlowForce.h"

#include "flowforce/flow/Architecture.h"
#include "flowforce/flow/ModelFormat.h"
#include "flowforce/flow/NativeFlow.h"

#include <openmm/serialization/XmlSerializer.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>

using namespace flowforce;
using nlohmann::json;

namespace {

std::string modelBytes(const json& architecture, const json& info, TensorType type, unsigned seed) {
    const auto spec = ArchitectureSpec::fromJson(architecture);
    ModelFile m;
    m.architecture = architecture;
    m.info = info;
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 0.3);
    for (const auto& [name, shape] : spec.parameterShapes()) {
        StoredTensor t;
        t.type = type;
        t.shape = shape;
        t.values.resize(static_cast<size_t>(t.numel()));
        for (double& v : t.values) v = normal(rng);
        m.tensors[name] = t;
    }
    const std::string bytes = serializeModelFile(m);
    (void)NativeFlow::compile(parseModelFile(bytes, "seed"), "seed");  // the seeds are valid models
    return bytes;
}

void write(const std::filesystem::path& path, const std::string& bytes) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    std::cout << path.string() << " (" << bytes.size() << " bytes)\n";
}

json coupling(std::vector<int> cond, std::vector<int> trans, json transform, std::vector<int> hidden, const char* activation = "silu",
              const char* heads = "shared", bool invert = false) {
    return {{"type", "coupling"},
            {"conditioning", cond},
            {"transformed", trans},
            {"transform", transform},
            {"conditioner", {{"hidden", hidden}, {"activation", activation}, {"heads", heads}}},
            {"invert_transform", invert}};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: flowforce_fuzz_make_seeds <corpus folder>\n";
        return 2;
    }
    const std::filesystem::path out = argv[1];
    const json smooth2 = {{"type", "smooth"}, {"components", 2}};
    const json spline3 = {{"type", "spline"}, {"bins", 3}};

    // --- model files
    const json square = {{"dim", 2},
                         {"layers",
                          {coupling({0}, {1}, smooth2, {3}), coupling({1}, {0}, smooth2, {3}, "tanh", "separate")}}};
    write(out / "fuzz_model" / "toy2d-smooth.flow", modelBytes(square, {{"temperature_K", 300.0}}, TensorType::F64, 1));
    const json box = {{"dim", 2},
                      {"layers",
                       {{{"type", "box"}, {"low", {-2.0, -1.0}}, {"high", {2.0, 3.0}}},
                        coupling({0}, {1}, spline3, {3}, "relu"),
                        {{"type", "inverted"},
                         {"layer", coupling({1}, {0}, {{"type", "smooth"}, {"components", 2}, {"ramp", "monomial"}, {"order", 2}}, {2})}}}}};
    write(out / "fuzz_model" / "toy2d-box-spline-inverted.flow", modelBytes(box, json::object(), TensorType::F32, 2));
    const json torus = {{"dim", 2},
                        {"circular", {true, true}},
                        {"layers",
                         {coupling({0}, {1}, {{"type", "smooth"}, {"components", 2}, {"scale", 2.0}, {"beta", 2}}, {3}, "sin", "separate"),
                          coupling({1}, {0}, spline3, {2}, "sin", "shared", true)}}};
    write(out / "fuzz_model" / "torus-smooth-spline.flow", modelBytes(torus, json::object(), TensorType::F64, 3));
    const json zmatrix = {{0, -1, -1, -1}, {1, 0, -1, -1}, {2, 1, 0, -1}, {3, 2, 1, 0}};
    const json molecule = {{"dim", 6},
                           {"circular", {false, false, false, false, false, true}},
                           {"embedding",
                            {{"type", "internal_coordinates"},
                             {"zmatrix", zmatrix},
                             {"bond_range", {0.05, 0.3}},
                             {"angle_range", {0.5, 3.0}},
                             {"boundary", "wall"},
                             {"wall_sharpness", 1.0}}},
                           {"layers",
                            {coupling({0, 1, 2}, {3, 4}, smooth2, {2}),
                             coupling({0, 3, 4}, {5}, smooth2, {2}, "sin", "separate"),
                             coupling({5, 3}, {0, 1, 2}, spline3, {2}, "silu", "shared", true)}}};
    const std::string moleculeBytes = modelBytes(molecule, {{"temperature_K", 300.0}, {"molecule", "toy-4"}}, TensorType::F64, 4);
    write(out / "fuzz_model" / "molecule4-wall.flow", moleculeBytes);
    json moleculeLinear = molecule;
    moleculeLinear["embedding"].erase("boundary");
    moleculeLinear["embedding"].erase("wall_sharpness");
    write(out / "fuzz_model" / "molecule4-linear-f32.flow", modelBytes(moleculeLinear, json::object(), TensorType::F32, 5));
    json moleculeGauss = moleculeLinear;  // the gauss map: [mean - std, mean + std] per bond and angle
    moleculeGauss["embedding"]["boundary"] = "gauss";
    moleculeGauss["embedding"]["bond_ranges"] = {{0.105, 0.111}, {0.150, 0.156}, {0.120, 0.126}};
    moleculeGauss["embedding"]["angle_ranges"] = {{1.85, 1.95}, {2.05, 2.15}};
    write(out / "fuzz_model" / "molecule4-gauss.flow", modelBytes(moleculeGauss, json::object(), TensorType::F64, 6));

    // --- FlowForce XML
    {
        std::unique_ptr<FlowForcePlugin::FlowForce> force(FlowForcePlugin::FlowForce::createFromBytes(moleculeBytes, "molecule4-wall.flow"));
        std::stringstream s;
        OpenMM::XmlSerializer::serialize<OpenMM::Force>(force.get(), "Force", s);
        write(out / "fuzz_xml" / "flowforce-all-particles.xml", s.str());
    }
    {
        std::unique_ptr<FlowForcePlugin::FlowForce> force(
            FlowForcePlugin::FlowForce::createFromBytes(moleculeBytes, "molecule4-wall.flow", {7, 2, 5, 0}));
        force->setTemperature(310.0);
        force->setEnergyOffset(-12.5);
        force->setPrecision(FlowForcePlugin::FlowForce::Single);
        force->setForceGroup(3);
        force->setName("flow");
        std::stringstream s;
        OpenMM::XmlSerializer::serialize<OpenMM::Force>(force.get(), "Force", s);
        write(out / "fuzz_xml" / "flowforce-particles-options.xml", s.str());
    }
    return 0;
}
