# flowforce_use_torch_pch(<target>): compile <target> with the project's precompiled LibTorch header
# (flowforce_torch_pch, built with -fPIC). Executables are compiled with -fPIC too (instead of -fPIE)
# so that GCC accepts the shared header.
function(flowforce_use_torch_pch target)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  target_precompile_headers(${target} REUSE_FROM flowforce_torch_pch)
endfunction()

# flowforce_plugin_install_dir(<var>): where `cmake --install` puts the OpenMM platform plugins
# (libFlowForceReference), relative to the install prefix unless the user set <var> (-D<var>=...).
# Installing into OpenMM's own prefix (CMAKE_INSTALL_PREFIX = OpenMM's, as openmm-torch does) puts them
# into OpenMM's plugin folder, which OpenMM loads by default; any other prefix gets <prefix>/lib/plugins,
# which programs load with Platform::loadPluginsFromDirectory. Needs find_package(OpenMM) first.
function(flowforce_plugin_install_dir var)
  if(${var})
    return()
  endif()
  set(_dir "${CMAKE_INSTALL_LIBDIR}/plugins")
  if(OpenMM_INCLUDE_DIR AND OpenMM_PLUGIN_DIR)
    get_filename_component(_openmm_prefix "${OpenMM_INCLUDE_DIR}" DIRECTORY)
    get_filename_component(_openmm_prefix "${_openmm_prefix}" REALPATH)
    get_filename_component(_prefix "${CMAKE_INSTALL_PREFIX}" REALPATH)
    get_filename_component(_plugins "${OpenMM_PLUGIN_DIR}" REALPATH)
    if(_prefix STREQUAL _openmm_prefix)
      file(RELATIVE_PATH _dir "${_openmm_prefix}" "${_plugins}")
    endif()
  endif()
  set(${var} "${_dir}" PARENT_SCOPE)
endfunction()

# flowforce_install_rpath(<var> <from-dir> <to-dir>...): the INSTALL_RPATH entries for a binary installed in
# <from-dir> that needs the libraries in the <to-dir>s (relative to the install prefix, or absolute).
# Installed binaries find each other relative to themselves ($ORIGIN), so any prefix works
# (cmake --install --prefix).
function(flowforce_install_rpath var from)
  set(paths)
  foreach(to IN LISTS ARGN)
    if(IS_ABSOLUTE "${from}" OR IS_ABSOLUTE "${to}")
      get_filename_component(_to "${to}" ABSOLUTE BASE_DIR "${CMAKE_INSTALL_PREFIX}")
      list(APPEND paths "${_to}")
    else()
      file(RELATIVE_PATH _rel "/${from}" "/${to}")
      if(_rel STREQUAL "")
        list(APPEND paths "$ORIGIN")
      else()
        list(APPEND paths "$ORIGIN/${_rel}")
      endif()
    endif()
  endforeach()
  set(${var} "${paths}" PARENT_SCOPE)
endfunction()
