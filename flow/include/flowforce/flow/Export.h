#pragma once
// Symbol visibility for the flow libraries (libflowforce_native, libflowforce_flow). The project
// compiles with hidden visibility by default; FLOWFORCE_FLOW_EXPORT marks the classes and functions
// other libraries and programs use (libFlowForce, the Reference plugin, the flowforce tool, the tests).

#if defined(_WIN32)
#if defined(FLOWFORCE_BUILDING_FLOW)
#define FLOWFORCE_FLOW_EXPORT __declspec(dllexport)
#else
#define FLOWFORCE_FLOW_EXPORT __declspec(dllimport)
#endif
#else
#define FLOWFORCE_FLOW_EXPORT __attribute__((visibility("default")))
#endif
