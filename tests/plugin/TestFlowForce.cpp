// Tests of the FlowForce OpenMM plugin on the Reference and CPU platforms, with the small TorchScript
// models of make_test_models.py (FLOWFORCE_TEST_MODEL_DIR).
#include "FlowForce.h"
#include "FlowForceProxy.h"
#include "ReferenceFlowForceKernels.h"

#include "flowforce/flow/Physics.h"

#include <openmm/Context.h>
#include <openmm/HarmonicBondForce.h>
#include <openmm/OpenMMException.h>
#include <openmm/Platform.h>
#include <openmm/State.h>
#include <openmm/System.h>
#include <openmm/VerletIntegrator.h>
#include <openmm/serialization/XmlSerializer.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace OpenMM;
using FlowForcePlugin::FlowForce;

namespace {

const std::string kModelDir = FLOWFORCE_TEST_MODEL_DIR;
const std::string kPair = kModelDir + "/pair.pt";               // 4 particles, 350 K
const std::string kPairNoMeta = kModelDir + "/pair_nometa.pt";  // same u, declares nothing
constexpr double kB = flowforce::kBoltzmannKJPerMolK;            // kJ/mol/K

/** The pair model's u (nats) computed independently: sum_{i<j} 200 (r-0.15)^2 + 0.5 exp(-r/0.05). */
double pairU(const std::vector<Vec3>& x) {
    double u = 0;
    for (size_t i = 0; i < x.size(); ++i)
        for (size_t j = i + 1; j < x.size(); ++j) {
            const Vec3 d = x[i] - x[j];
            const double r = std::sqrt(d.dot(d));
            u += 0.5 * 400.0 * (r - 0.15) * (r - 0.15) + 0.5 * std::exp(-r / 0.05);
        }
    return u;
}

/** Four particles near a distorted tetrahedron (nm). */
std::vector<Vec3> tetrahedron() {
    return {Vec3(0.01, -0.02, 0.03), Vec3(0.16, 0.01, -0.01), Vec3(0.04, 0.14, 0.02), Vec3(0.05, 0.03, 0.17)};
}

System* makeSystem(int numParticles) {
    auto* system = new System();
    for (int i = 0; i < numParticles; ++i) system->addParticle(12.0 + i);
    return system;
}

struct Result {
    double energy;
    std::vector<Vec3> forces;
};

Result evaluate(const System& system, const std::vector<Vec3>& positions, const std::string& platform) {
    VerletIntegrator integrator(0.001);
    Context context(system, integrator, Platform::getPlatformByName(platform));
    context.setPositions(positions);
    State state = context.getState(State::Energy | State::Forces);
    return {state.getPotentialEnergy(), state.getForces()};
}

/** Runs f, expects an OpenMMException whose message contains `part`. */
void expectError(const std::function<void()>& f, const std::string& part) {
    try {
        f();
    } catch (const OpenMMException& e) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what();
        return;
    }
    ADD_FAILURE() << "no OpenMMException (expected one mentioning '" << part << "')";
}

std::string tempPath(const std::string& name) {
    return ::testing::TempDir() + "flowforce_test_" + name;
}

void writeBytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
}

std::string readBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class FlowForcePlatforms : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST(FlowForceApi, DefaultsAndAccessors) {
    FlowForce force(kPair);
    EXPECT_EQ(force.getModelFile(), kPair);
    EXPECT_TRUE(force.getParticles().empty());
    EXPECT_EQ(force.getNumParticles(), 4);
    EXPECT_EQ(force.getEffectiveParticles(), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_DOUBLE_EQ(force.getTemperature(), 350.0);  // declared by the model
    EXPECT_DOUBLE_EQ(force.getEnergyOffset(), 0.0);
    EXPECT_FALSE(force.usesPeriodicBoundaryConditions());
    EXPECT_EQ(force.getModelBytes(), readBytes(kPair));

    FlowForce noMeta(kPairNoMeta, {3, 0, 2, 1});
    EXPECT_DOUBLE_EQ(noMeta.getTemperature(), 300.0);  // the model declares none
    EXPECT_DOUBLE_EQ(noMeta.getModelTemperature(), 0.0);
    EXPECT_EQ(noMeta.getParticles(), (std::vector<int>{3, 0, 2, 1}));
    noMeta.setTemperature(123.5);
    noMeta.setEnergyOffset(-7.25);
    EXPECT_DOUBLE_EQ(noMeta.getTemperature(), 123.5);
    EXPECT_DOUBLE_EQ(noMeta.getEnergyOffset(), -7.25);
}

TEST_P(FlowForcePlatforms, EnergyIsKTTimesMinusLogP) {
    std::unique_ptr<System> system(makeSystem(4));
    system->addForce(new FlowForce(kPair));
    const auto x = tetrahedron();
    const Result r = evaluate(*system, x, GetParam());
    EXPECT_NEAR(r.energy, kB * 350.0 * pairU(x), 1e-12 * std::abs(r.energy));
}

TEST_P(FlowForcePlatforms, ForcesMatchFiniteDifferences) {
    std::unique_ptr<System> system(makeSystem(4));
    system->addForce(new FlowForce(kPair));
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, Platform::getPlatformByName(GetParam()));
    const auto x = tetrahedron();
    context.setPositions(x);
    const std::vector<Vec3> forces = context.getState(State::Forces).getForces();
    const double h = 1e-5;
    double err2 = 0, norm2 = 0;
    for (size_t i = 0; i < x.size(); ++i)
        for (int k = 0; k < 3; ++k) {
            auto xp = x, xm = x;
            xp[i][k] += h;
            xm[i][k] -= h;
            context.setPositions(xp);
            const double ep = context.getState(State::Energy).getPotentialEnergy();
            context.setPositions(xm);
            const double em = context.getState(State::Energy).getPotentialEnergy();
            const double fd = -(ep - em) / (2 * h);
            err2 += (fd - forces[i][k]) * (fd - forces[i][k]);
            norm2 += forces[i][k] * forces[i][k];
        }
    ASSERT_GT(norm2, 1.0);  // a configuration with real forces
    EXPECT_LT(std::sqrt(err2 / norm2), 1e-6);
}

TEST_P(FlowForcePlatforms, InvariantToRigidMotions) {
    std::unique_ptr<System> system(makeSystem(4));
    system->addForce(new FlowForce(kPair));
    const auto x = tetrahedron();
    const Result r0 = evaluate(*system, x, GetParam());
    // Rotation about the axis (1,2,2)/3 by 1.1 rad (Rodrigues), then a translation.
    const Vec3 a(1.0 / 3, 2.0 / 3, 2.0 / 3);
    const double c = std::cos(1.1), s = std::sin(1.1);
    auto rotate = [&](const Vec3& v) { return v * c + a.cross(v) * s + a * (a.dot(v) * (1 - c)); };
    std::vector<Vec3> y;
    for (const Vec3& v : x) y.push_back(rotate(v) + Vec3(1.3, -0.7, 2.1));
    const Result r1 = evaluate(*system, y, GetParam());
    EXPECT_NEAR(r1.energy, r0.energy, 1e-10 * std::abs(r0.energy));
    for (size_t i = 0; i < x.size(); ++i) {
        const Vec3 expected = rotate(r0.forces[i]);
        for (int k = 0; k < 3; ++k) EXPECT_NEAR(r1.forces[i][k], expected[k], 1e-8 * (1 + std::abs(expected[k])));
    }
}

TEST_P(FlowForcePlatforms, OtherParticlesUntouched) {
    // 7 particles, FlowForce on {5, 1, 3, 6}, a harmonic bond between 0 and 2.
    std::unique_ptr<System> system(makeSystem(7));
    const std::vector<int> selected = {5, 1, 3, 6};
    system->addForce(new FlowForce(kPairNoMeta, selected));
    auto* bond = new HarmonicBondForce();
    bond->addBond(0, 2, 0.1, 1000.0);
    system->addForce(bond);
    std::vector<Vec3> x(7);
    const auto t = tetrahedron();
    for (size_t i = 0; i < selected.size(); ++i) x[static_cast<size_t>(selected[i])] = t[i];
    x[0] = Vec3(1, 1, 1);
    x[2] = Vec3(1.2, 1, 1);
    x[4] = Vec3(-1, 0.5, 0.3);
    const Result r = evaluate(*system, x, GetParam());
    const double bondEnergy = 0.5 * 1000.0 * 0.1 * 0.1;
    EXPECT_NEAR(r.energy, kB * 300.0 * pairU(t) + bondEnergy, 1e-10 * std::abs(r.energy));
    EXPECT_EQ(r.forces[4], Vec3(0, 0, 0));
    EXPECT_NEAR(r.forces[0][0], 100.0, 1e-9);  // the bond alone: k (r - r0) = 1000 * 0.1
    EXPECT_NEAR(r.forces[2][0], -100.0, 1e-9);
    EXPECT_EQ(r.forces[0][1], 0.0);
}

TEST_P(FlowForcePlatforms, SelectedParticlesGetTheModelsForces) {
    std::unique_ptr<System> big(makeSystem(6));
    const std::vector<int> selected = {4, 0, 5, 2};
    big->addForce(new FlowForce(kPair, selected));
    std::unique_ptr<System> small(makeSystem(4));
    small->addForce(new FlowForce(kPair));
    const auto t = tetrahedron();
    std::vector<Vec3> x(6, Vec3(3, 3, 3));
    x[1] = Vec3(-2, 1, 0);
    for (size_t i = 0; i < selected.size(); ++i) x[static_cast<size_t>(selected[i])] = t[i];
    const Result rb = evaluate(*big, x, GetParam());
    const Result rs = evaluate(*small, t, GetParam());
    EXPECT_DOUBLE_EQ(rb.energy, rs.energy);
    for (size_t i = 0; i < selected.size(); ++i)
        for (int k = 0; k < 3; ++k) EXPECT_DOUBLE_EQ(rb.forces[static_cast<size_t>(selected[i])][k], rs.forces[i][k]);
    EXPECT_EQ(rb.forces[1], Vec3(0, 0, 0));
    EXPECT_EQ(rb.forces[3], Vec3(0, 0, 0));
}

TEST_P(FlowForcePlatforms, TemperatureAndOffset) {
    std::unique_ptr<System> system(makeSystem(4));
    auto* force = new FlowForce(kPair);
    system->addForce(force);
    const auto x = tetrahedron();
    const double u = pairU(x);
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, Platform::getPlatformByName(GetParam()));
    context.setPositions(x);
    const double e350 = context.getState(State::Energy).getPotentialEnergy();
    const Vec3 f350 = context.getState(State::Forces).getForces()[1];
    EXPECT_NEAR(e350, kB * 350 * u, 1e-12 * e350);
    force->setTemperature(410.0);
    force->setEnergyOffset(-12.5);
    // Not applied until updateParametersInContext.
    EXPECT_DOUBLE_EQ(context.getState(State::Energy).getPotentialEnergy(), e350);
    force->updateParametersInContext(context);
    const State s = context.getState(State::Energy | State::Forces);
    EXPECT_NEAR(s.getPotentialEnergy(), kB * 410 * u - 12.5, 1e-12 * std::abs(e350));
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(s.getForces()[1][k], f350[k] * 410.0 / 350.0, 1e-12 * std::abs(f350[k]) + 1e-12);
    // A fresh context picks up the force's current parameters.
    EXPECT_NEAR(evaluate(*system, x, GetParam()).energy, kB * 410 * u - 12.5, 1e-12 * std::abs(e350));
}

TEST_P(FlowForcePlatforms, ForceGroups) {
    std::unique_ptr<System> system(makeSystem(4));
    auto* force = new FlowForce(kPair);
    force->setForceGroup(3);
    system->addForce(force);
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, Platform::getPlatformByName(GetParam()));
    context.setPositions(tetrahedron());
    EXPECT_EQ(context.getState(State::Energy, false, 1 << 2).getPotentialEnergy(), 0.0);
    EXPECT_GT(std::abs(context.getState(State::Energy, false, 1 << 3).getPotentialEnergy()), 0.0);
}

TEST_P(FlowForcePlatforms, SerializationRoundTripWithoutTheFile) {
    const std::string path = tempPath("roundtrip-" + GetParam() + ".pt");
    writeBytes(path, readBytes(kPairNoMeta));
    std::unique_ptr<System> system(makeSystem(5));
    auto* force = new FlowForce(path, {4, 2, 0, 1});
    force->setTemperature(0.1 + 0.2 + 300);
    force->setEnergyOffset(1.0 / 3.0);
    force->setForceGroup(2);
    force->setName("flow");
    system->addForce(force);
    std::stringstream xml;
    XmlSerializer::serialize<System>(system.get(), "System", xml);
    std::remove(path.c_str());
    ASSERT_FALSE(std::ifstream(path).good());

    std::unique_ptr<System> copy(XmlSerializer::deserialize<System>(xml));
    ASSERT_EQ(copy->getNumForces(), 1);
    const auto* f = dynamic_cast<const FlowForce*>(&copy->getForce(0));
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->getParticles(), (std::vector<int>{4, 2, 0, 1}));
    EXPECT_EQ(f->getTemperature(), force->getTemperature());
    EXPECT_EQ(f->getEnergyOffset(), force->getEnergyOffset());
    EXPECT_EQ(f->getForceGroup(), 2);
    EXPECT_EQ(f->getName(), "flow");
    EXPECT_EQ(f->getModelFile(), path);
    EXPECT_EQ(f->getModelBytes(), force->getModelBytes());

    std::vector<Vec3> x = {Vec3(0.04, 0.14, 0.02), Vec3(0.05, 0.03, 0.17), Vec3(0.16, 0.01, -0.01), Vec3(2, 2, 2),
                           Vec3(0.01, -0.02, 0.03)};
    const Result a = evaluate(*system, x, GetParam());
    const Result b = evaluate(*copy, x, GetParam());
    EXPECT_EQ(a.energy, b.energy);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(a.forces[i], b.forces[i]);
}

TEST_P(FlowForcePlatforms, NveEnergyStaysBounded) {
    std::unique_ptr<System> system(makeSystem(4));
    system->addForce(new FlowForce(kPair));
    VerletIntegrator integrator(0.0005);  // 0.5 fs
    Context context(*system, integrator, Platform::getPlatformByName(GetParam()));
    context.setPositions(tetrahedron());
    context.setVelocitiesToTemperature(300.0, 1234);
    auto total = [&] {
        const State s = context.getState(State::Energy);
        return s.getPotentialEnergy() + s.getKineticEnergy();
    };
    const double e0 = total();
    const double ke0 = context.getState(State::Energy).getKineticEnergy();
    ASSERT_GT(ke0, 0.1);
    double maxDev = 0;
    for (int i = 0; i < 40; ++i) {
        integrator.step(10);
        const double e = total();
        ASSERT_TRUE(std::isfinite(e));
        maxDev = std::max(maxDev, std::abs(e - e0));
    }
    // Velocity Verlet with exact forces conserves the total energy to O(dt^2): a wrong force
    // (sign, scale, missing term) gives deviations of the order of the kinetic energy.
    EXPECT_LT(maxDev, 1e-3 * ke0) << "max |E(t)-E(0)| = " << maxDev << " kJ/mol, KE(0) = " << ke0;
}

TEST_P(FlowForcePlatforms, BadPositionsAndModelOutputs) {
    std::unique_ptr<System> system(makeSystem(4));
    system->addForce(new FlowForce(kPair));
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, Platform::getPlatformByName(GetParam()));
    auto x = tetrahedron();
    x[2][1] = std::numeric_limits<double>::quiet_NaN();
    // Our kernel says "not finite"; the CPU platform checks coordinates itself first ("... is nan").
    auto nonFinite = [&](int what) {
        try {
            context.getState(what);
        } catch (const OpenMMException& e) {
            const std::string m = e.what();
            EXPECT_TRUE(m.find("not finite") != std::string::npos || m.find("nan") != std::string::npos ||
                        m.find("inf") != std::string::npos)
                << m;
            return;
        }
        ADD_FAILURE() << "a non-finite position gave no OpenMMException";
    };
    context.setPositions(x);
    nonFinite(State::Energy);
    x[2][1] = std::numeric_limits<double>::infinity();
    context.setPositions(x);
    nonFinite(State::Forces);

    for (const std::string name : {"nan.pt", "vector.pt"}) {
        std::unique_ptr<System> bad(makeSystem(4));
        bad->addForce(new FlowForce(kModelDir + "/" + name));
        VerletIntegrator integ(0.001);
        Context c(*bad, integ, Platform::getPlatformByName(GetParam()));
        c.setPositions(tetrahedron());
        expectError([&] { c.getState(State::Energy | State::Forces); }, name == "nan.pt" ? "non-finite" : "scalar");
    }
}

TEST_P(FlowForcePlatforms, BadParticleLists) {
    {  // out of range of the System
        std::unique_ptr<System> system(makeSystem(4));
        system->addForce(new FlowForce(kPair, {0, 1, 2, 4}));
        VerletIntegrator integrator(0.001);
        expectError([&] { Context c(*system, integrator, Platform::getPlatformByName(GetParam())); }, "out of range");
    }
    {  // a model larger than the System
        std::unique_ptr<System> system(makeSystem(3));
        system->addForce(new FlowForce(kPair));
        VerletIntegrator integrator(0.001);
        expectError([&] { Context c(*system, integrator, Platform::getPlatformByName(GetParam())); }, "only 3");
    }
}

TEST(FlowForceApi, BadInputs) {
    expectError([] { FlowForce f(tempPath("does-not-exist.pt")); }, "cannot open model file");
    const std::string garbage = tempPath("garbage.pt");
    writeBytes(garbage, "this is not a model\n");
    expectError([&] { FlowForce f(garbage); }, "not a model file");
    const std::string empty = tempPath("empty.pt");
    writeBytes(empty, "");
    expectError([&] { FlowForce f(empty); }, "empty");
    const std::string truncated = tempPath("truncated.pt");
    writeBytes(truncated, readBytes(kPair).substr(0, 700));
    expectError([&] { FlowForce f(truncated); }, "not a valid TorchScript module");
    const std::string flowBad = tempPath("bad.flow");
    writeBytes(flowBad, std::string("\x20\0\0\0\0\0\0\0{\"__metadata__\":{\"format\":\"x\"}}   ", 8 + 32));
    expectError([&] { FlowForce f(flowBad); }, "not a FlowForce model file");
    expectError([&] { FlowForce f(kPair, {0, 1, 2}); }, "4 particles");
    expectError([&] { FlowForce f(kPair, {0, 1, 2, 3, 4}); }, "4 particles");
    expectError([&] { FlowForce f(kPair, {0, 1, 1, 3}); }, "more than once");
    expectError([&] { FlowForce f(kPair, {0, -1, 2, 3}); }, "negative");
    expectError([] { FlowForce f(kPairNoMeta); }, "num_particles");
    FlowForce f(kPair);
    expectError([&] { f.setTemperature(0.0); }, "temperature");
    expectError([&] { f.setTemperature(-5.0); }, "temperature");
    expectError([&] { f.setTemperature(std::numeric_limits<double>::quiet_NaN()); }, "temperature");
    expectError([&] { f.setEnergyOffset(std::numeric_limits<double>::infinity()); }, "offset");
    EXPECT_DOUBLE_EQ(f.getTemperature(), 350.0);
    expectError([] { delete FlowForce::createFromBytes("PK\x03\x04garbage", "embedded"); }, "embedded");
    expectError([] { FlowForce f(::testing::TempDir()); }, "is a folder");
    for (const std::string& path : {garbage, empty, truncated, flowBad}) std::remove(path.c_str());
}

TEST(FlowForceApi, FlowModelWithoutArchitectureIsRejected) {
    // A well-formed FlowForce model file header (no tensors, empty architecture): refused with a clear message.
    const std::string header = R"({"__metadata__":{"format":"flowforce","format_version":"1","architecture":"{}","info":"{}"}})";
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    bytes += header;
    const std::string path = tempPath("empty.flow");
    writeBytes(path, bytes);
    try {
        FlowForce f(path);
        ADD_FAILURE() << "an empty .flow model was accepted";
    } catch (const OpenMMException& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    std::remove(path.c_str());
}

TEST(FlowForceApi, Base64) {
    using FlowForcePlugin::decodeBase64;
    using FlowForcePlugin::encodeBase64;
    EXPECT_EQ(encodeBase64(""), "");
    EXPECT_EQ(encodeBase64("f"), "Zg==");
    EXPECT_EQ(encodeBase64("fo"), "Zm8=");
    EXPECT_EQ(encodeBase64("foo"), "Zm9v");
    EXPECT_EQ(encodeBase64("foobar"), "Zm9vYmFy");
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
    for (size_t n = 0; n < all.size(); n += 37) EXPECT_EQ(decodeBase64(encodeBase64(all.substr(0, n))), all.substr(0, n));
    EXPECT_EQ(decodeBase64("Zm9v\nYmFy"), "foobar");
    expectError([] { decodeBase64("Zm9"); }, "base64");
    expectError([] { decodeBase64("Zm9*"); }, "base64");
}

INSTANTIATE_TEST_SUITE_P(Platforms, FlowForcePlatforms, ::testing::Values("Reference", "CPU"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    // OpenMM's own plugins first (the CPU platform), then the FlowForce kernels on every platform.
    Platform::loadPluginsFromDirectory(Platform::getDefaultPluginsDirectory());
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    return RUN_ALL_TESTS();
}
