// The few declarations of OpenMM's own SWIG module that FlowForce needs (Debian ships no OpenMM
// .i files). Imported with %import(module="openmm"): SWIG emits no wrappers for them, only type
// information; at run time the types are shared with openmm's module through SWIG's runtime type
// table, so a FlowForce proxy is an openmm.Force and openmm.Context objects can be passed in.
%module openmm

namespace OpenMM {

class Force {
public:
    virtual ~Force();
    int getForceGroup() const;
    void setForceGroup(int group);
    virtual bool usesPeriodicBoundaryConditions() const;
};

class Context;

}  // namespace OpenMM
