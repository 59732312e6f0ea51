# Install rules and the package config, so that find_package(flatgather) works.
#
# Two export sets, so that a project using only the core needs no LibTorch:
#   flatgatherTargets       flatgather::flatgather (needs OpenMP, and CUDA::cudart in CUDA builds)
#   flatgatherTorchTargets  flatgather::torch      (needs LibTorch; component "torch")
# The package config includes the second one when LibTorch can be found, and fails only when
# the caller asked for it: find_package(flatgather REQUIRED COMPONENTS torch).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(_fg_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/flatgather)

# _fg_install_exported(TARGET EXPORT_SET): installs the target and its export set, and writes
# the same set into the build tree (usable with CMAKE_PREFIX_PATH=<build dir>).
function(_fg_install_exported target export_set)
  install(TARGETS ${target} EXPORT ${export_set}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT ${export_set} NAMESPACE flatgather:: DESTINATION ${_fg_cmake_dir})
  export(EXPORT ${export_set} NAMESPACE flatgather::
    FILE ${CMAKE_CURRENT_BINARY_DIR}/${export_set}.cmake)
endfunction()

_fg_install_exported(flatgather flatgatherTargets)

if(TARGET flatgather_torch)
  # The installed shared library finds LibTorch where it was linked against, also when that
  # is a Python wheel's torch/lib rather than a system directory.
  set_target_properties(flatgather_torch PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
  _fg_install_exported(flatgather_torch flatgatherTorchTargets)
endif()

# Public headers only: the library's own sources and kernels stay private.
install(DIRECTORY include/flatgather DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(FILES ${FLATGATHER_GENERATED_INCLUDE_DIR}/flatgather/build_config.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flatgather)

set(FLATGATHER_CONFIG_CUDA ${FLATGATHER_CUDA})
set(FLATGATHER_CONFIG_TORCH OFF)
if(TARGET flatgather_torch)
  set(FLATGATHER_CONFIG_TORCH ON)
endif()
configure_package_config_file(cmake/flatgatherConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfig.cmake
  INSTALL_DESTINATION ${_fg_cmake_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/flatgatherConfigVersion.cmake
  DESTINATION ${_fg_cmake_dir})
