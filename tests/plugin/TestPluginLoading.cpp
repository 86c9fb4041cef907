// The Reference plugin loaded the way OpenMM loads plugins: from a folder (FLOWFORCE_PLUGIN_DIR),
// by a program that does not link it.
#include "FlowForce.h"

#include <openmm/Context.h>
#include <openmm/OpenMMException.h>
#include <openmm/Platform.h>
#include <openmm/State.h>
#include <openmm/System.h>
#include <openmm/VerletIntegrator.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

using namespace OpenMM;

TEST(FlowForcePluginFolder, LoadsAndServesReferenceAndCpu) {
    Platform::loadPluginsFromDirectory(Platform::getDefaultPluginsDirectory());
    {  // Before our plugin is loaded, no platform has the kernel.
        System system;
        for (int i = 0; i < 4; ++i) system.addParticle(1.0);
        system.addForce(new FlowForcePlugin::FlowForce(std::string(FLOWFORCE_TEST_MODEL_DIR) + "/pair.pt"));
        VerletIntegrator integrator(0.001);
        EXPECT_THROW(Context(system, integrator, Platform::getPlatformByName("Reference")), OpenMMException);
    }
    const std::vector<std::string> loaded = Platform::loadPluginsFromDirectory(FLOWFORCE_PLUGIN_DIR);
    EXPECT_TRUE(std::any_of(loaded.begin(), loaded.end(),
                            [](const std::string& p) { return p.find("FlowForceReference") != std::string::npos; }));
    EXPECT_TRUE(Platform::getPluginLoadFailures().empty()) << Platform::getPluginLoadFailures().front();
    for (const std::string name : {"Reference", "CPU"}) {
        System system;
        for (int i = 0; i < 4; ++i) system.addParticle(1.0);
        system.addForce(new FlowForcePlugin::FlowForce(std::string(FLOWFORCE_TEST_MODEL_DIR) + "/pair.pt"));
        VerletIntegrator integrator(0.001);
        Context context(system, integrator, Platform::getPlatformByName(name));
        context.setPositions({Vec3(0, 0, 0), Vec3(0.15, 0, 0), Vec3(0, 0.15, 0), Vec3(0, 0, 0.15)});
        const double e = context.getState(State::Energy).getPotentialEnergy();
        EXPECT_TRUE(std::isfinite(e));
        EXPECT_GT(e, 0.0) << name;
    }
}
