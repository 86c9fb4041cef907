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
