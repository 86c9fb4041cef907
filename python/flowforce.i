// SWIG interface of the Python module `flowforce`: the FlowForce OpenMM force.
%module flowforce

%pythonbegin %{
# OpenMM first: importing it loads OpenMM's platform plugins (CPU, ...), so that the FlowForce
# kernels registered below reach every platform.
import openmm as _openmm
import openmm.unit as _unit
%}

%{
#include "FlowForce.h"
#include "FlowForceProxy.h"
#include "ReferenceFlowForceKernels.h"

#include "flowforce/flow/Physics.h"

#include <openmm/OpenMMException.h>

#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

// Raises openmm.OpenMMException (or Exception if it cannot be found) with the given message.
static void flowforce_raise(const char* message) {
    PyObject* module = PyImport_ImportModule("openmm");
    PyObject* cls = module ? PyObject_GetAttrString(module, "OpenMMException") : NULL;
    Py_XDECREF(module);
    if (cls == NULL) {
        PyErr_Clear();
        cls = PyExc_Exception;
        Py_INCREF(cls);
    }
    PyErr_SetString(cls, message);
    Py_DECREF(cls);
}
%}

%import(module="openmm") "openmm_base.i"

%exception {
    try {
        $action
    } catch (const std::exception& e) {
        flowforce_raise(e.what());
        SWIG_fail;
    }
}

// std::vector<int> <-> Python sequences of ints (lists, tuples, numpy arrays); returned as lists.
%typemap(in) const std::vector<int>& (std::vector<int> temp) {
    PyObject* seq = PySequence_Fast($input, "expected a sequence of particle indices (ints)");
    if (seq == NULL) SWIG_fail;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    temp.reserve((size_t) n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* index = PyNumber_Index(PySequence_Fast_GET_ITEM(seq, i));
        long value = index ? PyLong_AsLong(index) : -1;
        Py_XDECREF(index);
        if (PyErr_Occurred() || value < INT_MIN || value > INT_MAX) {
            Py_DECREF(seq);
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "particle indices must be ints");
            SWIG_fail;
        }
        temp.push_back((int) value);
    }
    Py_DECREF(seq);
    $1 = &temp;
}
%typemap(typecheck, precedence=SWIG_TYPECHECK_INT32_ARRAY) const std::vector<int>& {
    $1 = PySequence_Check($input) && !PyUnicode_Check($input) && !PyBytes_Check($input) ? 1 : 0;
}
%typemap(out) const std::vector<int>& {
    $result = PyList_New((Py_ssize_t) $1->size());
    for (size_t i = 0; i < $1->size(); ++i) PyList_SET_ITEM($result, (Py_ssize_t) i, PyLong_FromLong((*$1)[i]));
}
%typemap(out) std::vector<int> {
    $result = PyList_New((Py_ssize_t) $1.size());
    for (size_t i = 0; i < $1.size(); ++i) PyList_SET_ITEM($result, (Py_ssize_t) i, PyLong_FromLong($1[i]));
}

%include <std_string.i>

// Model bytes: Python bytes (or bytearray) in.
%typemap(freearg) const std::string& modelBytes ""
%typemap(in) const std::string& modelBytes (std::string temp) {
    char* data = NULL;
    Py_ssize_t size = 0;
    if (PyByteArray_Check($input)) {
        data = PyByteArray_AsString($input);
        size = PyByteArray_Size($input);
    } else if (PyBytes_AsStringAndSize($input, &data, &size) != 0) {
        SWIG_fail;
    }
    temp.assign(data, (size_t) size);
    $1 = &temp;
}
%typemap(typecheck, precedence=SWIG_TYPECHECK_STRING) const std::string& modelBytes {
    $1 = PyBytes_Check($input) || PyByteArray_Check($input);
}

/** k_B N_A in kJ/mol/K: the value FlowForce and OpenMM's C++ core use (E = k_B T u). */
%constant double BOLTZMANN_KJ_PER_MOL_K = flowforce::kBoltzmannKJPerMolK;

%newobject FlowForcePlugin::FlowForce::createFromBytes;
%ignore FlowForcePlugin::FlowForce::getModelBytes;
%ignore FlowForcePlugin::FlowForce::createImpl;
// Unit-aware Python versions of these are defined below.
%rename(_getTemperature) FlowForcePlugin::FlowForce::getTemperature;
%rename(_setTemperature) FlowForcePlugin::FlowForce::setTemperature;
%rename(_getModelTemperature) FlowForcePlugin::FlowForce::getModelTemperature;
%rename(_getEnergyOffset) FlowForcePlugin::FlowForce::getEnergyOffset;
%rename(_setEnergyOffset) FlowForcePlugin::FlowForce::setEnergyOffset;

#define FLOWFORCE_EXPORT
%include "FlowForce.h"

%extend FlowForcePlugin::FlowForce {
    /** Recovers a FlowForce from a generic Force (e.g. system.getForce(i)); raises if it is not one. */
    static FlowForcePlugin::FlowForce& cast(OpenMM::Force& force) {
        FlowForcePlugin::FlowForce* f = dynamic_cast<FlowForcePlugin::FlowForce*>(&force);
        if (f == NULL) throw OpenMM::OpenMMException("FlowForce.cast: the force is not a FlowForce");
        return *f;
    }
    /** Whether a generic Force is a FlowForce. */
    static bool isinstance(OpenMM::Force& force) {
        return dynamic_cast<FlowForcePlugin::FlowForce*>(&force) != NULL;
    }
    /** The complete contents of the model file (bytes). */
    PyObject* modelBytes() const {
        const std::string& b = $self->getModelBytes();
        return PyBytes_FromStringAndSize(b.data(), (Py_ssize_t) b.size());
    }

    %pythoncode %{
    def getTemperature(self):
        """The temperature T (a Quantity in kelvin) scaling -log p into E = k_B T u + offset."""
        return _unit.Quantity(self._getTemperature(), _unit.kelvin)

    def setTemperature(self, temperature):
        """Sets T: a Quantity of temperature, or a number of kelvin (must be positive)."""
        self._setTemperature(_in_units(temperature, _unit.kelvin, "temperature"))

    def getModelTemperature(self):
        """The temperature the model declares (a Quantity in kelvin), or None if it declares none."""
        t = self._getModelTemperature()
        return _unit.Quantity(t, _unit.kelvin) if t > 0 else None

    def getEnergyOffset(self):
        """The constant added to the energy (a Quantity in kJ/mol)."""
        return _unit.Quantity(self._getEnergyOffset(), _unit.kilojoule_per_mole)

    def setEnergyOffset(self, offset):
        """Sets the constant added to the energy: a Quantity of molar energy, or a number of kJ/mol."""
        self._setEnergyOffset(_in_units(offset, _unit.kilojoule_per_mole, "energy offset"))
    %}
}

%inline %{
/** Registers the FlowForce kernels (Reference, CPU) and the XmlSerializer proxy. Idempotent. */
void registerFlowForcePlugin() {
    FlowForcePlugin::registerFlowForceReferenceKernelFactories();
    FlowForcePlugin::registerFlowForceSerializationProxies();
}
%}

%pythoncode %{
def _in_units(value, unit, what):
    if _unit.is_quantity(value):
        if not value.unit.is_compatible(unit):
            raise TypeError("FlowForce: the %s must be in units compatible with %s, got %s" % (what, unit, value.unit))
        return float(value.value_in_unit(unit))
    return float(value)

registerFlowForcePlugin()
%}
