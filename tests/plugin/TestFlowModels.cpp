// FlowForce with FlowForce model files (*.flow): the alanine-dipeptide Boltzmann generators written by
// `flowforce init` (smooth mixtures and splines), on the Reference and CPU platforms. The models are
// untrained but seeded, so their densities are non-trivial functions of all 60 internal coordinates.
#include "FlowForce.h"
#include "ReferenceFlowForceKernels.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/NativeFlow.h"
#include "flowforce/flow/Physics.h"
#include "flowforce/md/Molecule.h"

#include <openmm/Context.h>
#include <openmm/LangevinIntegrator.h>
#include <openmm/OpenMMException.h>
#include <openmm/Platform.h>
#include <openmm/State.h>
#include <openmm/System.h>
#include <openmm/VerletIntegrator.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

using namespace OpenMM;
using FlowForcePlugin::FlowForce;

namespace {

const std::string kModelDir = FLOWFORCE_TEST_MODEL_DIR;

struct MoleculeSetup {
    std::unique_ptr<System> system;
    std::vector<Vec3> positions;  // nm
};

MoleculeSetup alanineDipeptide(const std::string& model, FlowForce::Precision precision = FlowForce::PlatformDefault,
                               FlowForce::Backend backend = FlowForce::Native) {
    const auto mol = flowforce::md::readPDB(flowforce::md::defaultMoleculePDB());
    MoleculeSetup s;
    s.system = std::make_unique<System>();
    for (double m : flowforce::md::atomMasses(mol)) s.system->addParticle(m);
    auto* force = new FlowForce(model);
    force->setPrecision(precision);
    force->setBackend(backend);
    s.system->addForce(force);
    s.positions = mol.positions;
    return s;
}

struct Result {
    double energy;
    std::vector<Vec3> forces;
};

Result evaluate(const MoleculeSetup& s, const std::vector<Vec3>& x, const std::string& platform) {
    VerletIntegrator integrator(0.001);
    Context context(*s.system, integrator, Platform::getPlatformByName(platform));
    context.setPositions(x);
    const State state = context.getState(State::Energy | State::Forces);
    return {state.getPotentialEnergy(), state.getForces()};
}

/** (model file, platform) */
class FlowModels : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
protected:
    std::string model() const { return kModelDir + "/" + std::get<0>(GetParam()); }
    std::string platform() const { return std::get<1>(GetParam()); }
};

}  // namespace

TEST_P(FlowModels, DeclaresParticlesAndTemperature) {
    FlowForce force(model());
    EXPECT_EQ(force.getNumParticles(), 22);
    EXPECT_DOUBLE_EQ(force.getTemperature(), 300.0);  // written by flowforce init
}

TEST_P(FlowModels, ForcesMatchFiniteDifferences) {
    // double precision on both platforms (single precision on CPU is checked against double elsewhere)
    const MoleculeSetup s = alanineDipeptide(model(), FlowForce::Double);
    VerletIntegrator integrator(0.001);
    Context context(*s.system, integrator, Platform::getPlatformByName(platform()));
    const auto& x = s.positions;
    context.setPositions(x);
    const State state = context.getState(State::Energy | State::Forces);
    ASSERT_TRUE(std::isfinite(state.getPotentialEnergy()));
    const std::vector<Vec3> forces = state.getForces();
    auto energyAt = [&](const std::vector<Vec3>& y) {
        context.setPositions(y);
        return context.getState(State::Energy).getPotentialEnergy();
    };
    // Central differences with Richardson extrapolation (error O(h^4)), every coordinate.
    const double h = 2e-5;  // nm
    double err2 = 0, norm2 = 0;
    for (size_t i = 0; i < x.size(); ++i)
        for (int k = 0; k < 3; ++k) {
            auto d = [&](double step) {
                auto xp = x, xm = x;
                xp[i][k] += step;
                xm[i][k] -= step;
                return -(energyAt(xp) - energyAt(xm)) / (2 * step);
            };
            const double fd = (4 * d(h / 2) - d(h)) / 3;
            err2 += (fd - forces[i][k]) * (fd - forces[i][k]);
            norm2 += forces[i][k] * forces[i][k];
        }
    ASSERT_GT(norm2, 1.0);  // real forces
    const double relative = std::sqrt(err2 / norm2);
    {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.3e", relative);
        RecordProperty("relative_force_error", buffer);
    }
    EXPECT_LT(relative, 1e-6) << "relative RMS error of the forces";
}

TEST_P(FlowModels, InvariantToRigidMotions) {
    const MoleculeSetup s = alanineDipeptide(model());
    const Result r0 = evaluate(s, s.positions, platform());
    const Vec3 a(2.0 / 7, 3.0 / 7, 6.0 / 7);  // unit axis
    const double c = std::cos(2.3), sn = std::sin(2.3);
    auto rotate = [&](const Vec3& v) { return v * c + a.cross(v) * sn + a * (a.dot(v) * (1 - c)); };
    std::vector<Vec3> y;
    for (const Vec3& v : s.positions) y.push_back(rotate(v) + Vec3(-0.4, 1.7, 0.9));
    const Result r1 = evaluate(s, y, platform());
    EXPECT_NEAR(r1.energy, r0.energy, 1e-9 * (1 + std::abs(r0.energy)));
    for (size_t i = 0; i < y.size(); ++i) {
        const Vec3 expected = rotate(r0.forces[i]);
        for (int k = 0; k < 3; ++k) EXPECT_NEAR(r1.forces[i][k], expected[k], 1e-7 * (1 + std::abs(expected[k])));
    }
    // Net force and torque vanish (the energy depends on internal coordinates only).
    Vec3 net, torque;
    for (size_t i = 0; i < y.size(); ++i) {
        net += r0.forces[i];
        torque += s.positions[i].cross(r0.forces[i]);
    }
    for (int k = 0; k < 3; ++k) {
        EXPECT_NEAR(net[k], 0.0, 1e-8);
        EXPECT_NEAR(torque[k], 0.0, 1e-8);
    }
}

/** Largest force difference relative to the largest force. */
double forceError(const Result& a, const Result& b) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < a.forces.size(); ++i) {
        err = std::max(err, std::sqrt((a.forces[i] - b.forces[i]).dot(a.forces[i] - b.forces[i])));
        scale = std::max(scale, std::sqrt(b.forces[i].dot(b.forces[i])));
    }
    return err / scale;
}

TEST(FlowModelsApi, PlatformsPrecisionsAndBackendsAgree) {
    for (const std::string name : {"ala2-smooth.flow", "ala2-spline.flow"}) {
        const std::string path = kModelDir + "/" + name;
        const auto mol = flowforce::md::readPDB(flowforce::md::defaultMoleculePDB());
        const Result ref = evaluate(alanineDipeptide(path), mol.positions, "Reference");  // native double
        // the same evaluator outside OpenMM: E = k_B T u, F = -k_B T du/dx
        auto native = flowforce::NativeFlow::compile(flowforce::readModelFile(path), name);
        flowforce::NativeEvaluator eval(native, flowforce::Precision::Double);
        std::vector<double> x, g(66);
        for (const auto& p : mol.positions) x.insert(x.end(), {p[0], p[1], p[2]});
        const double kT = flowforce::kBoltzmannKJPerMolK * 300.0;
        EXPECT_NEAR(ref.energy, kT * eval.energyAndGradient(x.data(), g.data()), 1e-12 * std::abs(ref.energy)) << name;
        for (size_t i = 0; i < 22; ++i)
            for (int k = 0; k < 3; ++k) EXPECT_NEAR(ref.forces[i][k], -kT * g[3 * i + static_cast<size_t>(k)], 1e-9) << name;
        // CPU in double: identical to Reference
        const Result cpuDouble = evaluate(alanineDipeptide(path, FlowForce::Double), mol.positions, "CPU");
        EXPECT_NEAR(cpuDouble.energy, ref.energy, 1e-12 * std::abs(ref.energy)) << name;
        EXPECT_LT(forceError(cpuDouble, ref), 1e-12) << name;
        // CPU's default, single precision: within 1e-5
        const Result cpu = evaluate(alanineDipeptide(path), mol.positions, "CPU");
        EXPECT_NEAR(cpu.energy, ref.energy, 1e-5 * std::abs(ref.energy)) << name;
        EXPECT_LT(forceError(cpu, ref), 1e-5) << name;
        EXPECT_GT(forceError(cpu, ref), 0.0) << name << ": the CPU platform should default to single precision";
        // the LibTorch backend (autograd, double): within 1e-10
        const Result torch = evaluate(alanineDipeptide(path, FlowForce::PlatformDefault, FlowForce::LibTorch), mol.positions, "Reference");
        EXPECT_NEAR(torch.energy, ref.energy, 1e-10 * std::abs(ref.energy)) << name;
        EXPECT_LT(forceError(torch, ref), 1e-10) << name;
    }
}

TEST(FlowModelsApi, PositionsOutsideTheSupportNameTheCoordinate) {
    const MoleculeSetup s = alanineDipeptide(kModelDir + "/ala2-smooth.flow");
    auto x = s.positions;
    x[1] = x[1] + Vec3(0.4, 0.0, 0.0);  // atom 1 far from its bond partner
    try {
        evaluate(s, x, "Reference");
        ADD_FAILURE() << "a bond of 0.4 nm was accepted";
    } catch (const OpenMMException& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("outside the model's support"), std::string::npos) << m;
        EXPECT_NE(m.find("nm"), std::string::npos) << m;
        EXPECT_NE(m.find("bond 0 (atoms 0-1) is 0.45"), std::string::npos) << m;  // the first bond of atom 1
    }
}

TEST_P(FlowModels, ShortLangevinRunStaysFinite) {
    const MoleculeSetup s = alanineDipeptide(model());
    LangevinIntegrator integrator(300.0, 10.0, 0.0005);
    integrator.setRandomNumberSeed(7);
    Context context(*s.system, integrator, Platform::getPlatformByName(platform()));
    context.setPositions(s.positions);
    context.setVelocitiesToTemperature(300.0, 11);
    integrator.step(50);
    const State state = context.getState(State::Energy | State::Positions);
    EXPECT_TRUE(std::isfinite(state.getPotentialEnergy()));
    for (const Vec3& p : state.getPositions())
        for (int k = 0; k < 3; ++k) EXPECT_TRUE(std::isfinite(p[k]));
}

TEST(FlowModelsApi, WrongParticleCountIsRejected) {
    // The model describes 22 particles: a selection of 21 is refused with a clear message.
    std::vector<int> particles;
    for (int i = 0; i < 21; ++i) particles.push_back(i);
    try {
        System system;
        for (int i = 0; i < 22; ++i) system.addParticle(12.0);
        system.addForce(new FlowForce(kModelDir + "/ala2-smooth.flow", particles));
        VerletIntegrator integrator(0.001);
        Context context(system, integrator, Platform::getPlatformByName("Reference"));
        ADD_FAILURE() << "a 21-particle selection of a 22-particle model was accepted";
    } catch (const OpenMMException& e) {
        EXPECT_NE(std::string(e.what()).find("22"), std::string::npos) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Models, FlowModels,
                         ::testing::Combine(::testing::Values("ala2-smooth.flow", "ala2-spline.flow"),
                                            ::testing::Values("Reference", "CPU")),
                         [](const auto& info) {
                             std::string name = std::get<0>(info.param).substr(5);
                             name = name.substr(0, name.find('.'));
                             return name + "_" + std::get<1>(info.param);
                         });

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    Platform::loadPluginsFromDirectory(Platform::getDefaultPluginsDirectory());
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    return RUN_ALL_TESTS();
}
