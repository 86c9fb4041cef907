# Finds OpenMM without relying on a CMake config (Debian's OpenMM 7.7 ships none).
# Looks in OPENMM_DIR (variable or environment; a conda/pip prefix works), then the system.
# Defines OpenMM_FOUND, OpenMM_INCLUDE_DIR, OpenMM_LIBRARY, OpenMM_PLUGIN_DIR and the
# imported target OpenMM::OpenMM.
if(NOT OPENMM_DIR AND DEFINED ENV{OPENMM_DIR})
  set(OPENMM_DIR $ENV{OPENMM_DIR})
endif()
set(OPENMM_DIR "${OPENMM_DIR}" CACHE PATH "OpenMM installation prefix (empty: the system)")

find_path(OpenMM_INCLUDE_DIR OpenMM.h HINTS ${OPENMM_DIR}/include)
find_library(OpenMM_LIBRARY OpenMM HINTS ${OPENMM_DIR}/lib)

if(OpenMM_LIBRARY AND NOT OpenMM_PLUGIN_DIR)
  get_filename_component(_openmm_libdir ${OpenMM_LIBRARY} DIRECTORY)
  if(EXISTS ${_openmm_libdir}/plugins)
    set(OpenMM_PLUGIN_DIR ${_openmm_libdir}/plugins CACHE PATH "OpenMM plugin folder")
  elseif(EXISTS ${_openmm_libdir}/openmm/plugins)
    set(OpenMM_PLUGIN_DIR ${_openmm_libdir}/openmm/plugins CACHE PATH "OpenMM plugin folder")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenMM REQUIRED_VARS OpenMM_LIBRARY OpenMM_INCLUDE_DIR)

if(OpenMM_FOUND AND NOT TARGET OpenMM::OpenMM)
  add_library(OpenMM::OpenMM SHARED IMPORTED)
  set_target_properties(OpenMM::OpenMM PROPERTIES
    IMPORTED_LOCATION ${OpenMM_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${OpenMM_INCLUDE_DIR})
endif()
mark_as_advanced(OpenMM_INCLUDE_DIR OpenMM_LIBRARY)
