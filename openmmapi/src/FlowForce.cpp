#include "FlowForce.h"

#include "internal/FlowForceImpl.h"

#include "flowforce/flow/Potential.h"

#include <openmm/OpenMMException.h>
#include <openmm/internal/ContextImpl.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

using OpenMM::OpenMMException;

namespace FlowForcePlugin {

namespace {

std::string readModelFile(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw OpenMMException("FlowForce: model file '" + path + "' is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw OpenMMException("FlowForce: cannot open model file '" + path + "': " + std::strerror(errno));
    std::string bytes;
    try {
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::exception& e) {
        throw OpenMMException("FlowForce: cannot read model file '" + path + "': " + e.what());
    }
    if (in.bad()) throw OpenMMException("FlowForce: cannot read model file '" + path + "'");
    if (bytes.empty()) throw OpenMMException("FlowForce: model file '" + path + "' is empty");
    return bytes;
}

}  // namespace

FlowForce::FlowForce(const std::string& modelFile, const std::vector<int>& particles)
    : modelFile_(modelFile), modelBytes_(readModelFile(modelFile)) {
    init(particles);
}

FlowForce::FlowForce(FromBytes, const std::string& modelBytes, const std::string& modelName, const std::vector<int>& particles)
    : modelFile_(modelName), modelBytes_(modelBytes) {
    init(particles);
}

FlowForce* FlowForce::createFromBytes(const std::string& modelBytes, const std::string& modelName,
                                      const std::vector<int>& particles) {
    return new FlowForce(FromBytes{}, modelBytes, modelName, particles);
}

void FlowForce::init(const std::vector<int>& particles) {
    std::set<int> seen;
    for (size_t i = 0; i < particles.size(); ++i) {
        if (particles[i] < 0)
            throw OpenMMException("FlowForce: particle index " + std::to_string(particles[i]) + " (entry " +
                                  std::to_string(i) + " of the particle list) is negative");
        if (!seen.insert(particles[i]).second)
            throw OpenMMException("FlowForce: particle " + std::to_string(particles[i]) +
                                  " appears more than once in the particle list");
    }
    particles_ = particles;
    std::unique_ptr<flowforce::Potential> potential;
    try {
        potential = flowforce::loadPotentialFromBytes(modelBytes_, "model file '" + modelFile_ + "'",
                                                      particles.empty() ? -1 : static_cast<int>(particles.size()));
    } catch (const OpenMMException&) {
        throw;
    } catch (const std::exception& e) {
        throw OpenMMException(std::string("FlowForce: ") + e.what());
    }
    numParticles_ = potential->numParticles();
    if (!particles.empty() && numParticles_ != static_cast<int>(particles.size()))
        throw OpenMMException("FlowForce: the model describes " + std::to_string(numParticles_) + " particles but the particle list has " +
                              std::to_string(particles.size()));
    modelTemperature_ = potential->modelTemperature();
    modelDescription_ = potential->describe();
    temperature_ = modelTemperature_ > 0 ? modelTemperature_ : 300.0;
}

std::vector<int> FlowForce::getEffectiveParticles() const {
    if (!particles_.empty()) return particles_;
    std::vector<int> all(static_cast<size_t>(numParticles_));
    for (int i = 0; i < numParticles_; ++i) all[static_cast<size_t>(i)] = i;
    return all;
}

void FlowForce::setTemperature(double temperature) {
    if (!(temperature > 0) || !std::isfinite(temperature))
        throw OpenMMException("FlowForce: the temperature must be a positive number of kelvin, got " + std::to_string(temperature));
    temperature_ = temperature;
}

void FlowForce::setEnergyOffset(double offset) {
    if (!std::isfinite(offset)) throw OpenMMException("FlowForce: the energy offset must be finite (kJ/mol)");
    energyOffset_ = offset;
}

void FlowForce::updateParametersInContext(OpenMM::Context& context) {
    dynamic_cast<FlowForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

OpenMM::ForceImpl* FlowForce::createImpl() const { return new FlowForceImpl(*this); }

}  // namespace FlowForcePlugin
