#ifndef FLOWFORCE_OPENMM_EXPORT_H_
#define FLOWFORCE_OPENMM_EXPORT_H_

// Symbol visibility for the FlowForce OpenMM libraries.
#if defined(_WIN32)
#if defined(FLOWFORCE_BUILDING_LIBRARY)
#define FLOWFORCE_EXPORT __declspec(dllexport)
#else
#define FLOWFORCE_EXPORT __declspec(dllimport)
#endif
#else
#define FLOWFORCE_EXPORT __attribute__((visibility("default")))
#endif

#endif  // FLOWFORCE_OPENMM_EXPORT_H_
