// FlowForce with FlowForce model files (*.flow): the alanine-dipeptide Boltzmann generators written by
// `flowforce init` (smooth mixtures and splines), on the Reference and CPU platforms. The models are
// untrained but seeded, so their densities are non-trivial functions of all 60 internal coordinates.
#include "FlowForce.h"
#include "ReferenceFlowForceKernels.h"

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
constexpr double kB = 0.008314462618;  // kJ/mol/K

struct MoleculeSetup {
    std::unique_ptr<System> system;
    std::vector<Vec3> positions;  // nm
};

MoleculeSetup alanineDipeptide(const std::string& model) {
    const auto mol = flowforce::md::readPDB(flowforce::md::defaultMoleculePDB());
    MoleculeSetup s;
    s.system = std::make_unique<System>();
    for (double m : flowforce::md::atomMasses(mol)) s.system->addParticle(m);
    s.system->addForce(new FlowForce(model));
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
    const MoleculeSetup s = alanineDipeptide(model());
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

TEST(FlowModelsApi, SameResultsOnReferenceAndCpu) {
    for (const std::string name : {"ala2-smooth.flow", "ala2-spline.flow"}) {
        const MoleculeSetup s = alanineDipeptide(kModelDir + "/" + name);
        const Result ref = evaluate(s, s.positions, "Reference");
        const Result cpu = evaluate(s, s.positions, "CPU");
        EXPECT_NEAR(cpu.energy, ref.energy, 1e-12 * (1 + std::abs(ref.energy))) << name;
        for (size_t i = 0; i < ref.forces.size(); ++i)
            for (int k = 0; k < 3; ++k)
                EXPECT_NEAR(cpu.forces[i][k], ref.forces[i][k], 1e-10 * (1 + std::abs(ref.forces[i][k]))) << name;
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
