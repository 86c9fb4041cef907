#include "FlowForce.h"

#include "internal/FlowForceImpl.h"

#include "flowforce/flow/FileIO.h"
#include "flowforce/flow/Potential.h"

#include <openmm/OpenMMException.h>
#include <openmm/internal/ContextImpl.h>

#include <cmath>
#include <set>

using OpenMM::OpenMMException;

namespace FlowForcePlugin {

namespace {

std::string readModelFile(const std::string& path) {
    std::string bytes;
    try {
        bytes = flowforce::readFile(path);
    } catch (const std::exception& e) {
        throw OpenMMException(std::string("FlowForce: cannot open model file (") + e.what() + ")");
    }
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
    flowforce::ModelSummary summary;
    try {
        summary = flowforce::summarizeModel(modelBytes_, "model file '" + modelFile_ + "'",
                                            particles.empty() ? -1 : static_cast<int>(particles.size()));
    } catch (const std::exception& e) {
        throw OpenMMException(std::string("FlowForce: ") + e.what());
    }
    numParticles_ = summary.numParticles;
    if (!particles.empty() && numParticles_ != static_cast<int>(particles.size()))
        throw OpenMMException("FlowForce: the model describes " + std::to_string(numParticles_) + " particles but the particle list has " +
                              std::to_string(particles.size()));
    modelTemperature_ = summary.temperature;
    modelDescription_ = summary.description;
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

void FlowForce::setPrecision(Precision precision) {
    if (precision != PlatformDefault && precision != Single && precision != Double)
        throw OpenMMException("FlowForce: unknown precision " + std::to_string(static_cast<int>(precision)));
    precision_ = precision;
}

void FlowForce::setBackend(Backend backend) {
    if (backend != Native && backend != LibTorch)
        throw OpenMMException("FlowForce: unknown backend " + std::to_string(static_cast<int>(backend)));
    backend_ = backend;
}

void FlowForce::updateParametersInContext(OpenMM::Context& context) {
    dynamic_cast<FlowForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

OpenMM::ForceImpl* FlowForce::createImpl() const { return new FlowForceImpl(*this); }

}  // namespace FlowForcePlugin
